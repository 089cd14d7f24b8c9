//! Retry delays shared by strategies: exponential backoff with jitter, honouring server hints.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sim::LlmError;
use sim::scenario::Dur;

/// The longest server retry hint honoured; longer hints fall back to backoff (openai-python
/// `_base_client.py` honours `retry-after` up to 60 s).
pub const MAX_HONOURED_HINT: Duration = Duration::from_secs(60);

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

/// Exponential backoff: `initial × 2^n`, capped at `max`, with jitter.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// Delay before the first retry. Default `"500ms"` (openai-python `INITIAL_RETRY_DELAY`).
    #[serde(default = "default_initial")]
    pub initial: Dur,
    /// Largest delay. Default `"8s"` (openai-python `MAX_RETRY_DELAY`).
    #[serde(default = "default_max")]
    pub max: Dur,
    /// Jitter: `openai` (default), `full` or `none`.
    #[serde(default)]
    pub jitter: Jitter,
    /// Wait what the server says (`retry-after-ms` / `retry-after`, up to 60 s) instead of backing
    /// off, as openai-python does. Default true.
    #[serde(default = "yes")]
    pub honour_retry_after: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: default_initial(),
            max: default_max(),
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
fn yes() -> bool {
    true
}

impl Backoff {
    /// The delay before retry number `retry` (0 for the first retry), given a uniform draw `u` in
    /// [0, 1), after the error `err`.
    pub fn delay(&self, err: &LlmError, retry: u32, u: f64) -> Duration {
        if self.honour_retry_after
            && let Some(hint) = err.retry_after()
            && hint <= MAX_HONOURED_HINT
        {
            return hint;
        }
        let base = self.initial.0.saturating_mul(1u32 << retry.min(20)).min(self.max.0);
        match self.jitter {
            Jitter::Openai => base.mul_f64(1.0 - 0.25 * u),
            Jitter::Full => base.mul_f64(u),
            Jitter::None => base,
        }
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
        }
    }

    #[test]
    fn backoff_doubles_from_half_a_second_up_to_eight() {
        let b = Backoff {
            jitter: Jitter::None,
            ..Backoff::default()
        };
        let d: Vec<u64> = (0..6)
            .map(|n| b.delay(&server_error(), n, 0.5).as_millis() as u64)
            .collect();
        assert_eq!(d, [500, 1000, 2000, 4000, 8000, 8000]);
    }

    #[test]
    fn a_server_hint_replaces_backoff_when_honoured() {
        let e = LlmError::Throttled {
            limit: None,
            retry_after: Some(Duration::from_millis(644)),
            rate_limit: Default::default(),
        };
        assert_eq!(Backoff::default().delay(&e, 3, 0.9), Duration::from_millis(644));
        let ignoring = Backoff {
            honour_retry_after: false,
            jitter: Jitter::None,
            ..Backoff::default()
        };
        assert_eq!(ignoring.delay(&e, 0, 0.9), Duration::from_millis(500));
    }

    proptest! {
        /// Whatever the attempt and draw, a jittered delay stays within [0.75, 1] × base (openai)
        /// or [0, 1] × base (full), and never above the cap.
        #[test]
        fn jittered_delays_stay_within_their_bounds(retry in 0u32..40, u in 0.0f64..1.0) {
            let none = Backoff { jitter: Jitter::None, ..Backoff::default() }.delay(&server_error(), retry, u);
            let openai = Backoff::default().delay(&server_error(), retry, u);
            let full = Backoff { jitter: Jitter::Full, ..Backoff::default() }.delay(&server_error(), retry, u);
            prop_assert!(none <= Duration::from_secs(8));
            prop_assert!(openai <= none && openai >= none.mul_f64(0.75));
            prop_assert!(full <= none);
        }
    }
}
