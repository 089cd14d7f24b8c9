//! Settings of the `adaptive` strategy, read from `[strategies.adaptive]`.

use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};
use sim::scenario::Dur;

use crate::retry::Backoff;

/// Which controller decides how much is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Controller {
    /// A token and request pacer that mirrors the provider's buckets, capped at
    /// `target-tpm × throttle-threshold` and at the limits the headers reveal; concurrency up to
    /// `max-parallelism` (the default).
    #[default]
    Pacer,
    /// AIMD on concurrency (up to `max-parallelism`), without a pacer.
    Aimd,
}

/// `[strategies.adaptive]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// `pacer` (default) or `aimd`.
    #[serde(default)]
    pub controller: Controller,
    /// How often the controller reads the parameter store and adjusts, from 1 ms to 1 h.
    /// Default `"1s"`.
    #[serde(default = "default_interval")]
    pub interval: Interval,
    /// AIMD's multiplicative decrease on a drop, in (0, 1). Default 0.7 (CUBIC's β, as the AWS
    /// SDKs' adaptive retry uses).
    #[serde(default = "default_decrease")]
    pub decrease: Decrease,
    /// Attempts per chunk that may fail other than by a 429 (5xx, timeouts), the first included.
    /// A 429 does not count: it is a pacing signal. Default 20.
    #[serde(default = "default_attempts", deserialize_with = "crate::range::attempts")]
    pub max_attempts: NonZeroU32,
    /// Delays between attempts (hints honoured up to 120 s, as openai-python).
    #[serde(default)]
    pub backoff: Backoff,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            controller: Controller::default(),
            interval: default_interval(),
            decrease: default_decrease(),
            max_attempts: default_attempts(),
            backoff: Backoff::default(),
        }
    }
}

/// A multiplicative decrease: a number in (0, 1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Decrease(pub f64);

impl TryFrom<f64> for Decrease {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if v > 0.0 && v < 1.0 {
            Ok(Decrease(v))
        } else {
            Err(format!("{v:?} must lie in (0, 1)"))
        }
    }
}

impl From<Decrease> for f64 {
    fn from(d: Decrease) -> f64 {
        d.0
    }
}

/// A control interval: from 1 ms (the virtual clock's resolution; a zero interval would spin
/// without letting time advance) to 1 h.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Dur", into = "Dur")]
pub struct Interval(pub Dur);

impl TryFrom<Dur> for Interval {
    type Error = String;
    fn try_from(d: Dur) -> Result<Self, String> {
        let ms = std::time::Duration::from_millis(1);
        if (ms..=std::time::Duration::from_secs(3600)).contains(&d.0) {
            Ok(Interval(d))
        } else {
            Err(format!("interval `{}` must lie between 1ms and 1h", String::from(d)))
        }
    }
}

impl From<Interval> for Dur {
    fn from(i: Interval) -> Dur {
        i.0
    }
}

fn default_interval() -> Interval {
    Interval(Dur(std::time::Duration::from_secs(1)))
}
fn default_decrease() -> Decrease {
    Decrease(0.7)
}
fn default_attempts() -> NonZeroU32 {
    NonZeroU32::new(20).expect("20 is not zero")
}
