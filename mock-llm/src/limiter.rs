//! Rate limiters: OpenAI's continuously refilling buckets and Azure's fixed windows (the pure
//! limiters themselves live in [`simkit::limiter`], shared with the AWS service models), and
//! which limit a decision is about.

pub use simkit::limiter::{Bucket, Limit, Window};

/// Which limit a decision is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
}
