//! Settings of the `cookbook` strategy, read from `[strategies.cookbook]`: the script's own
//! command-line arguments.

use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};
use sim::scenario::Dur;

/// `[strategies.cookbook]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookbookConfig {
    /// `--max_requests_per_minute`: the request budget it paces itself to. Default 1,500 (the
    /// script's default, 3,000 × 0.5).
    #[serde(default = "default_rpm")]
    pub max_requests_per_minute: Budget,
    /// `--max_tokens_per_minute`: the token budget. Absent (default): the parameter store's
    /// `target-tpm × throttle-threshold` at the start, the budget every strategy is given (the
    /// script reads its arguments once).
    #[serde(default)]
    pub max_tokens_per_minute: Option<Budget>,
    /// `--max_attempts`: attempts per request, the first included. Default 5.
    #[serde(default = "default_attempts", deserialize_with = "crate::range::attempts")]
    pub max_attempts: NonZeroU32,
    /// `seconds_to_pause_after_rate_limit_error`: after a 429, no new request is sent until this
    /// long after it. Default `"15s"`.
    #[serde(default = "default_pause")]
    pub pause_after_rate_limit: Dur,
    /// `seconds_to_sleep_each_loop`: the main loop's pass, at most one send each. Default `"1ms"`.
    #[serde(default = "default_loop")]
    pub loop_sleep: Dur,
}

impl Default for CookbookConfig {
    fn default() -> Self {
        Self {
            max_requests_per_minute: default_rpm(),
            max_tokens_per_minute: None,
            max_attempts: default_attempts(),
            pause_after_rate_limit: default_pause(),
            loop_sleep: default_loop(),
        }
    }
}

/// A per-minute budget: a finite number ≥ 1 (the script takes floats).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Budget(pub f64);

impl TryFrom<f64> for Budget {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if v.is_finite() && (1.0..=1e15).contains(&v) {
            Ok(Budget(v))
        } else {
            Err(format!("{v:?} must be a number in [1, 1e15] (per minute)"))
        }
    }
}

impl From<Budget> for f64 {
    fn from(b: Budget) -> f64 {
        b.0
    }
}

fn default_rpm() -> Budget {
    Budget(3_000.0 * 0.5)
}
fn default_attempts() -> NonZeroU32 {
    NonZeroU32::new(5).expect("5 is not zero")
}
fn default_pause() -> Dur {
    Dur(std::time::Duration::from_secs(15))
}
fn default_loop() -> Dur {
    Dur(std::time::Duration::from_millis(1))
}
