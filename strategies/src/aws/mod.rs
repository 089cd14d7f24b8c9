//! The AWS services the serverless designs run on, simulated as pure state that takes `now`
//! (no clock, no I/O), each rule with its source in its module's docs and a test beside it.
//! Both `stepfn` and the SQS choreography use them.
//!
//! - [`lambda`]: execution environments, cold starts, concurrency limits, scaling, billing;
//! - [`sqs`]: a standard queue with visibility timeouts, receive counts, a dead-letter queue,
//!   delays, batches, retention and at-least-once duplicates;
//! - [`dynamo`]: a table with conditional writes, atomic counters and provisioned capacity;
//! - [`esm`]: a Lambda event source mapping's concurrency over an SQS queue;
//! - [`api`]: the queue and the table as small async traits ([`api::MessageQueue`],
//!   [`api::KeyValueTable`]) with in-process, virtual-time implementations over the models:
//!   what a choreography is written against. Start reading there for the SQS design.

pub mod api;
pub mod dynamo;
pub mod esm;
pub mod lambda;
pub mod sqs;

/// An insertion-ordered map hashed with a fixed hash (`FxHasher`): nothing in it depends on the
/// process or the run, so its order is the same on every run. The services' and the SQS design's
/// maps that are looked up on every request.
pub(crate) type FxIndexMap<K, V> = indexmap::IndexMap<K, V, std::hash::BuildHasherDefault<rustc_hash::FxHasher>>;
