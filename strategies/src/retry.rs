//! Retry policy shared by strategies: exponential backoff with a rate, a cap and jitter, honouring
//! a server's hint. It takes the hint as a plain duration, so it serves LLM calls, the ASL
//! `Retry` field and queue redelivery alike.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sim::LlmError;
use sim::scenario::Dur;

/// The longest server retry hint honoured: openai-python (3.57, `_constants.py`
/// `MAX_RETRY_AFTER_DELAY`) waits out `retry-after` up to two minutes, and does not retry at all
/// when the server asks for longer (`_base_client.py` `_should_retry`).
pub const MAX_HONOURED_HINT: Duration = Duration::from_secs(120);

/// How much randomness a backoff delay gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Jitter {
    /// openai-python's: the delay times (1 − 0.25·rand).
    #[default]
    Openai,
    /// "Full jitter": a uniform draw in [0, delay] (AWS Architecture Blog; ASL `JitterStrategy: FULL`).
    Full,
    /// None: every client retries in lockstep.
    None,
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again after this delay.
    After(Duration),
    /// Do not retry: the server asked for a wait longer than [`MAX_HONOURED_HINT`].
    GiveUp,
}

/// Exponential backoff: `initial × rate^n`, capped at `max`, with jitter; a server hint, when
/// honoured, replaces it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawBackoff", into = "RawBackoff")]
pub struct Backoff {
    /// Delay before the first retry. Default `"500ms"` (openai-python `INITIAL_RETRY_DELAY`).
    pub initial: Dur,
    /// Largest delay. Default `"8s"` (openai-python `MAX_RETRY_DELAY`).
    pub max: Dur,
    /// Growth per retry, in [1, 100]. Default 2 (openai-python; ASL `BackoffRate` default 2.0).
    pub rate: f64,
    /// Jitter: `openai` (default), `full` or `none`.
    pub jitter: Jitter,
    /// Wait what the server says (`retry-after-ms` / `retry-after`, up to [`MAX_HONOURED_HINT`],
    /// giving up beyond it) instead of backing off, as openai-python does. Default true.
    pub honour_retry_after: bool,
}

/// `[strategies.NAME] backoff` as written: every key optional.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    #[serde(default = "default_initial")]
    initial: Dur,
    #[serde(default = "default_max")]
    max: Dur,
    #[serde(default = "default_rate")]
    rate: f64,
    #[serde(default)]
    jitter: Jitter,
    #[serde(default = "yes")]
    honour_retry_after: bool,
}

impl TryFrom<RawBackoff> for Backoff {
    type Error = String;
    fn try_from(r: RawBackoff) -> Result<Self, String> {
        if !(r.rate.is_finite() && (1.0..=100.0).contains(&r.rate)) {
            return Err(format!("backoff `rate` = {:?} must lie in [1, 100]", r.rate));
        }
        if r.initial.0 > r.max.0 {
            return Err(format!(
                "backoff `initial` ({}) is longer than `max` ({})",
                String::from(r.initial),
                String::from(r.max)
            ));
        }
        Ok(Backoff {
            initial: r.initial,
            max: r.max,
            rate: r.rate,
            jitter: r.jitter,
            honour_retry_after: r.honour_retry_after,
        })
    }
}

impl From<Backoff> for RawBackoff {
    fn from(b: Backoff) -> Self {
        RawBackoff {
            initial: b.initial,
            max: b.max,
            rate: b.rate,
            jitter: b.jitter,
            honour_retry_after: b.honour_retry_after,
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: default_initial(),
            max: default_max(),
            rate: default_rate(),
            jitter: Jitter::Openai,
            honour_retry_after: true,
        }
    }
}

fn default_initial() -> Dur {
    Dur(Duration::from_millis(500))
}
fn default_max() -> Dur {
    Dur(Duration::from_secs(8))
}
fn default_rate() -> f64 {
    2.0
}
fn yes() -> bool {
    true
}

impl Backoff {
    /// The backoff delay before retry number `retry` (0 for the first retry), with no hint,
    /// given a uniform draw `u` in [0, 1): `initial × rate^retry`, capped at `max`, then jittered.
    pub fn backoff(&self, retry: u32, u: f64) -> Duration {
        let growth = self.rate.powi(retry.min(1_000) as i32);
        let base = if growth.is_finite() && self.initial.0.as_secs_f64() * growth < self.max.0.as_secs_f64() {
            self.initial.0.mul_f64(growth)
        } else {
            self.max.0
        };
        match self.jitter {
            Jitter::Openai => base.mul_f64(1.0 - 0.25 * u),
            Jitter::Full => base.mul_f64(u),
            Jitter::None => base,
        }
    }

    /// What to do before retry number `retry`, given the server's hint (if any) and a uniform
    /// draw `u` in [0, 1).
    pub fn decide(&self, hint: Option<Duration>, retry: u32, u: f64) -> RetryDecision {
        match hint {
            Some(h) if self.honour_retry_after && h > MAX_HONOURED_HINT => RetryDecision::GiveUp,
            Some(h) if self.honour_retry_after && !h.is_zero() => RetryDecision::After(h),
            _ => RetryDecision::After(self.backoff(retry, u)),
        }
    }

    /// [`Backoff::decide`] for a failed LLM call, with the hint it carried.
    pub fn after(&self, err: &LlmError, retry: u32, u: f64) -> RetryDecision {
        self.decide(err.retry_after(), retry, u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn server_error() -> LlmError {
        LlmError::Server {
            status: 500,
            retry_after: None,
            rate_limit: Default::default(),
        }
    }

    fn ms(d: RetryDecision) -> u64 {
        match d {
            RetryDecision::After(d) => d.as_millis() as u64,
            RetryDecision::GiveUp => panic!("gave up"),
        }
    }

    #[test]
    fn backoff_doubles_from_half_a_second_up_to_eight() {
        let b = Backoff {
            jitter: Jitter::None,
            ..Backoff::default()
        };
        let d: Vec<u64> = (0..6).map(|n| ms(b.after(&server_error(), n, 0.5))).collect();
        assert_eq!(d, [500, 1000, 2000, 4000, 8000, 8000]);
    }

    #[test]
    fn a_rate_follows_the_asl_worked_example() {
        // AWS's example: IntervalSeconds 3, BackoffRate 1.5 gives waits of 3 s, then 4.5 s.
        let b = Backoff {
            initial: Dur(Duration::from_secs(3)),
            max: Dur(Duration::from_secs(3600)),
            rate: 1.5,
            jitter: Jitter::None,
            honour_retry_after: false,
        };
        assert_eq!(
            (b.backoff(0, 0.0), b.backoff(1, 0.0)),
            (Duration::from_secs(3), Duration::from_millis(4500))
        );
    }

    #[test]
    fn a_server_hint_replaces_backoff_up_to_two_minutes_and_beyond_it_ends_the_retries() {
        let throttled = |ms: u64| LlmError::Throttled {
            limit: None,
            retry_after: Some(Duration::from_millis(ms)),
            rate_limit: Default::default(),
        };
        assert_eq!(ms(Backoff::default().after(&throttled(644), 3, 0.9)), 644);
        // 90 s is honoured (openai-python 3.57 honours up to 120 s; older clients stopped at 60).
        assert_eq!(ms(Backoff::default().after(&throttled(90_000), 0, 0.9)), 90_000);
        assert_eq!(
            Backoff::default().after(&throttled(121_000), 0, 0.9),
            RetryDecision::GiveUp
        );
        let ignoring = Backoff {
            honour_retry_after: false,
            jitter: Jitter::None,
            ..Backoff::default()
        };
        assert_eq!(ms(ignoring.after(&throttled(644), 0, 0.9)), 500);
        assert_eq!(ms(ignoring.after(&throttled(500_000), 0, 0.9)), 500);
    }

    #[test]
    fn impossible_settings_are_refused_by_name() {
        let err = toml::from_str::<Backoff>("initial = \"10s\"\nmax = \"1s\"\n").expect_err("initial > max");
        assert!(
            err.to_string().contains("`initial` (10s) is longer than `max` (1s)"),
            "{err}"
        );
        let err = toml::from_str::<Backoff>("rate = 0.5\n").expect_err("shrinking backoff");
        assert!(err.to_string().contains("`rate` = 0.5"), "{err}");
    }

    proptest! {
        /// Whatever the attempt, rate and draw, a jittered delay stays within [0.75, 1] × base
        /// (openai) or [0, 1] × base (full), and never above the cap.
        #[test]
        fn jittered_delays_stay_within_their_bounds(retry in 0u32..2_000, u in 0.0f64..1.0, rate in 1.0f64..100.0) {
            let b = Backoff { rate, ..Backoff::default() };
            let none = Backoff { jitter: Jitter::None, ..b }.backoff(retry, u);
            let openai = b.backoff(retry, u);
            let full = Backoff { jitter: Jitter::Full, ..b }.backoff(retry, u);
            prop_assert!(none <= Duration::from_secs(8));
            prop_assert!(openai <= none && openai >= none.mul_f64(0.75));
            prop_assert!(full <= none);
        }
    }
}
