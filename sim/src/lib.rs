//! The orchbench engine: scenarios, the seeded workload, the simulated clock and backend, the
//! stores, and the metrics that become a report.
//!
//! Start reading at [`engine::simulate`]: it builds a paused-time tokio runtime, creates a
//! [`context::RunContext`] for the strategy, drives arrivals and the timeline, and returns a
//! [`report::RunReport`].
//!
//! - [`scenario`]: the scenario file (strict TOML; errors name the key and the line);
//! - [`dist`], [`workload`]: the seeded files and chunks;
//! - [`backend`]: the [`backend::LlmBackend`] seam and the simulated backend over the provider model;
//! - `http` (feature `http`): the HTTP backend (any OpenAI-compatible endpoint, TLS included);
//! - [`context`]: what a strategy sees (file feed, instrumented calls, cancellation) and the run's
//!   bookkeeping (gatekeeper quotas, file states);
//! - [`params`]: the parameter store; [`results`]: the result store (each chunk's terminal state);
//! - [`rng`]: a strategy's seeded generators ([`context::RunContext::rng`]);
//! - [`recorder`]: histograms, per-second series, event log; [`report`]: the report types;
//! - [`journal`]: the durable result journal a run resumes from (`run --journal`);
//! - [`trace`]: a run's per-call, per-chunk trace, kept on request for checking invariants;
//! - [`bound`]: the ideal makespan (a lower bound no strategy can beat);
//! - [`error`]: the error type, [`SimError`].
//!
//! Determinism: time comes only from `tokio::time`, randomness only from seeded
//! [`simkit::rng::SimRng`] streams, and iteration order from vectors and ordered maps.

#![warn(missing_docs)]

pub mod backend;
pub mod bound;
pub mod context;
pub mod cost;
pub mod dist;
pub mod engine;
pub mod error;
#[cfg(feature = "http")]
pub mod http;
pub mod journal;
pub mod numbers;
pub mod params;
pub mod recorder;
pub mod recovery;
pub mod report;
pub mod results;
pub mod rng;
pub mod scenario;
pub mod trace;
pub mod workload;

pub use backend::{ChatRequest, ChatResponse, LlmBackend, LlmError, Scheduled, SimBackend};
pub use context::{Artifact, ChunkOutcome, FileStatus, FileTask, Progress, ProgressFn, RedriveRefused, RunContext};
pub use engine::{RunOptions, StrategyFn, execute, simulate};
pub use error::SimError;
pub use report::{Mode, ReportFile, RunReport, ScenarioInfo, Summary};
pub use scenario::Scenario;
