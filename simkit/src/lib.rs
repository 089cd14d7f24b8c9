//! Clock-free building blocks for service models: the seeded random numbers every orchbench crate
//! draws from, and rate limiters as pure state that take `now` as an argument.
//!
//! The provider model (`mock-llm`) and the AWS service models (Lambda, SQS, DynamoDB, Step
//! Functions) are written on these, the same way: plain state, `now` passed in, no clock and no
//! I/O inside, so that the same model runs in virtual time and behind a live server. A service
//! model depends on this crate, never on the LLM mock.
//!
//! - [`rng`]: [`rng::SimRng`] (xoshiro256++, value-stable), [`rng::Stream`] (counter-based draws
//!   keyed by an event), and the seed-mixing functions;
//! - [`limiter`]: OpenAI-style buckets (one minute's worth, refilled continuously) and
//!   fixed-window counters (Azure);
//! - [`quota`]: AWS-style token buckets (a burst refilled at a rate per second), with the
//!   Step Functions and Lambda quotas.

#![warn(missing_docs)]

pub mod limiter;
pub mod quota;
pub mod rng;
