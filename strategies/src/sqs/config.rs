//! Settings of the `sqs` strategy, read from `[strategies.sqs]`.

use serde::{Deserialize, Serialize};
use sim::scenario::Dur;

use crate::stepfn::{LambdaConfig, Share};

/// How a validator avoids a second LLM call for a message delivered twice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dedupe {
    /// Nothing: a redelivered message costs a second LLM call (its result is still stored once).
    None,
    /// A conditional claim in the table before the call; a claim older than the visibility
    /// timeout has expired and may be taken over (the default).
    #[default]
    Claim,
}

/// What a validator does with a message whose LLM call was refused with 429.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnThrottle {
    /// ChangeMessageVisibility to the retry hint (the default).
    #[default]
    Backoff,
    /// Nothing: the message returns when its visibility timeout runs out.
    Timeout,
}

/// `[strategies.sqs]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsConfig {
    /// Messages per Lambda batch (the event source mapping's BatchSize, 1 to 10). Default 10.
    #[serde(default = "default_batch")]
    pub batch_size: u32,
    /// The chunk queue's visibility timeout. Default `"30s"`.
    #[serde(default = "default_visibility")]
    pub visibility_timeout: Dur,
    /// The redrive policy's maxReceiveCount: past it a message goes to the dead-letter queue and
    /// its chunk fails, 1 to 1,000 (the SQS range). Default 5.
    #[serde(
        default = "default_receives",
        deserialize_with = "crate::range::u32_in::<_, 1, 1_000>"
    )]
    pub max_receive_count: u32,
    /// The chance that a delivery leaves its message visible (at-least-once). Default 0.
    #[serde(default)]
    pub duplicate_rate: Share,
    /// `claim` (default) or `none`.
    #[serde(default)]
    pub dedupe: Dedupe,
    /// `backoff` (default) or `timeout`.
    #[serde(default)]
    pub on_throttle: OnThrottle,
    /// How many times an operator moves a chunk's message from the dead-letter queue back to
    /// the chunk queue (a DLQ redrive, `StartMessageMoveTask`) before the chunk fails for good.
    /// From 0 to 1,000. Default 0: the DLQ is final.
    #[serde(default, deserialize_with = "crate::range::u32_in::<_, 0, 1_000>")]
    pub dlq_redrives: u32,
    /// How long after a message reaches the dead-letter queue it is moved back (at most 15 min:
    /// modelled as a send with that DelaySeconds). Default `"5m"`.
    #[serde(default = "default_redrive_after")]
    pub dlq_redrive_after: Dur,
    /// The event source mapping's MaximumBatchingWindowInSeconds: how long it keeps receiving
    /// to fill a batch before invoking (0 to 5m). Default 0: a batch goes with what one receive
    /// returned.
    #[serde(default = "zero")]
    pub batching_window: Dur,
    /// The table's provisioned read capacity units per second; with `table_write_capacity`,
    /// the table is provisioned (300 s of burst, then throttled: the validators' SDK retries).
    /// From 1 to 1,000,000. Default none: on-demand, never throttled.
    #[serde(default, deserialize_with = "crate::range::opt_u64_in::<_, 1, 1_000_000>")]
    pub table_read_capacity: Option<u64>,
    /// The table's provisioned write capacity units per second, 1 to 1,000,000 (see
    /// `table_read_capacity`).
    #[serde(default, deserialize_with = "crate::range::opt_u64_in::<_, 1, 1_000_000>")]
    pub table_write_capacity: Option<u64>,
    /// The Lambda account.
    #[serde(default)]
    pub lambda: LambdaConfig,
}

impl Default for SqsConfig {
    fn default() -> Self {
        Self {
            batch_size: default_batch(),
            visibility_timeout: default_visibility(),
            max_receive_count: default_receives(),
            duplicate_rate: Share(0.0),
            dedupe: Dedupe::default(),
            on_throttle: OnThrottle::default(),
            dlq_redrives: 0,
            dlq_redrive_after: default_redrive_after(),
            batching_window: zero(),
            table_read_capacity: None,
            table_write_capacity: None,
            lambda: LambdaConfig::default(),
        }
    }
}

fn default_batch() -> u32 {
    10
}
fn default_visibility() -> Dur {
    Dur(std::time::Duration::from_secs(30))
}
fn default_receives() -> u32 {
    5
}
fn default_redrive_after() -> Dur {
    Dur(std::time::Duration::from_secs(300))
}
fn zero() -> Dur {
    Dur(std::time::Duration::ZERO)
}
