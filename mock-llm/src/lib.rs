//! The LLM provider that orchbench runs against: OpenAI's rate-limit, latency and fault model.
//!
//! Start at [`provider::Provider::admit`]: it takes `now` and a [`provider::ModelRequest`] and
//! answers with an [`provider::Admission`]. Nothing in this crate reads a clock or does I/O, so the
//! same model serves the simulated backend (in-process, virtual time) and the HTTP server.
//!
//! - [`config`]: the provider's settings (limits, profile, TPM charge rule, latency, faults);
//! - [`limiter`]: which limit a decision is about; the buckets (OpenAI) and fixed windows (Azure)
//!   themselves come from [`simkit`], shared with the AWS service models;
//! - [`headers`]: the `x-ratelimit-*` values and OpenAI's duration format;
//! - [`verdict`]: the deterministic validation result per chunk;
//! - [`rng`]: the seeded generator every orchbench crate draws from (re-exported from [`simkit`]);
//! - [`error`]: the error type, [`MockError`];
//! - `server` (feature `server`): the OpenAI-compatible HTTP server around the model.

#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod headers;
pub mod limiter;
pub mod provider;
/// The seeded random numbers every orchbench crate draws from (from [`simkit`]).
pub use simkit::rng;
#[cfg(feature = "server")]
pub mod server;
pub mod verdict;

pub use config::{LatencyConfig, Profile, ProviderConfig, TpmCharge};
pub use error::MockError;
pub use headers::RateLimitHeaders;
pub use limiter::LimitKind;
pub use provider::{
    Admission, Admitted, Failed, FailureKind, ModelRequest, Provider, ProviderStats, Slot, Throttled, Usage,
};
pub use verdict::Verdict;
