//! A Lambda event source mapping over an SQS queue: how many batches it processes at once, as
//! pure state taking `now`.
//!
//! Rules (AWS Lambda Developer Guide, "Configuring scaling behavior for SQS event source
//! mappings" and "Using Lambda with Amazon SQS"):
//! - when messages are available the mapping starts with five concurrent batches; while messages
//!   are still available it adds up to 300 concurrent batches per minute, up to 1,000, or up to
//!   `MaximumConcurrency` (2 to 1,000) when set;
//! - when traffic is low it scales back to five (as few as two without `MaximumConcurrency`);
//! - a batch holds up to `BatchSize` messages (1 to 10,000; default 10), waiting up to
//!   `MaximumBatchingWindowInSeconds` (0 to 300) to fill; more than 10 needs a window of at
//!   least 1 s;
//! - when invocations fail or are throttled, Lambda backs off. The guide states no figure; here
//!   the concurrency halves on each such batch, never below five (*unverified*).

use std::time::Duration;

/// The mapping's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EsmConfig {
    /// Messages per batch, 1 to 10,000. Default 10.
    pub batch_size: u32,
    /// How long a batch waits to fill, at most 300 s. Default 0.
    pub batching_window: Duration,
    /// `ScalingConfig.MaximumConcurrency`, 2 to 1,000. Default none.
    pub maximum_concurrency: Option<u32>,
}

impl Default for EsmConfig {
    fn default() -> Self {
        Self {
            batch_size: 10,
            batching_window: Duration::ZERO,
            maximum_concurrency: None,
        }
    }
}

impl EsmConfig {
    /// Checks the ranges AWS accepts; what is wrong, in words.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=10_000).contains(&self.batch_size) {
            return Err(format!("batch_size {} must lie in 1..=10000", self.batch_size));
        }
        if self.batching_window > Duration::from_secs(300) {
            return Err("batching_window must be at most 300 s".into());
        }
        if self.batch_size > 10 && self.batching_window < Duration::from_secs(1) {
            return Err("a batch_size above 10 needs a batching_window of at least 1 s".into());
        }
        if let Some(m) = self.maximum_concurrency
            && !(2..=1_000).contains(&m)
        {
            return Err(format!("maximum_concurrency {m} must lie in 2..=1000"));
        }
        Ok(())
    }
}

/// Concurrent batches at the start, and the floor after backing off.
pub const START: u32 = 5;
/// The most concurrent batches of one mapping.
pub const MAX: u32 = 1_000;
/// Concurrent batches added per minute while messages wait.
pub const PER_MINUTE: u32 = 300;

/// The mapping's concurrency over time.
#[derive(Clone, Debug, PartialEq)]
pub struct Scaler {
    config: EsmConfig,
    /// The concurrency, as a float so that 300 per minute grows smoothly.
    level: f64,
    last: Duration,
}

impl Scaler {
    /// A mapping at five concurrent batches.
    pub fn new(config: EsmConfig) -> Self {
        Self {
            config,
            level: f64::from(START.min(Self::cap(&config))),
            last: Duration::ZERO,
        }
    }

    fn cap(config: &EsmConfig) -> u32 {
        config.maximum_concurrency.unwrap_or(MAX).min(MAX)
    }

    /// The concurrency at `now`: grown at 300 per minute since the last call while messages
    /// were waiting (`backlog`), back to five when the queue is drained.
    pub fn at(&mut self, now: Duration, backlog: bool) -> u32 {
        let cap = f64::from(Self::cap(&self.config));
        let dt = now.saturating_sub(self.last).as_secs_f64();
        self.last = self.last.max(now);
        if backlog {
            self.level = (self.level + dt * f64::from(PER_MINUTE) / 60.0).min(cap);
        } else {
            self.level = f64::from(START).min(cap);
        }
        self.level.floor() as u32
    }

    /// A batch failed or was throttled: the mapping backs off.
    pub fn backoff(&mut self) {
        self.level = (self.level / 2.0).max(f64::from(START.min(Self::cap(&self.config))));
    }

    /// Changes the settings (the parameter store changed); the level is kept within the new cap.
    pub fn set_config(&mut self, config: EsmConfig) {
        self.config = config;
        self.level = self.level.min(f64::from(Self::cap(&config)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn it_starts_at_five_and_adds_three_hundred_a_minute_while_messages_wait() {
        let mut s = Scaler::new(EsmConfig::default());
        assert_eq!(s.at(secs(0), true), 5);
        assert_eq!(s.at(secs(60), true), 305);
        assert_eq!(s.at(secs(240), true), 1_000, "at most 1,000");
        assert_eq!(s.at(secs(241), false), 5, "back to five when drained");
    }

    #[test]
    fn maximum_concurrency_caps_it_and_its_range_is_checked() {
        let config = EsmConfig {
            maximum_concurrency: Some(50),
            ..EsmConfig::default()
        };
        let mut s = Scaler::new(config);
        assert_eq!(s.at(secs(600), true), 50);
        assert!(
            EsmConfig {
                maximum_concurrency: Some(1),
                ..EsmConfig::default()
            }
            .check()
            .is_err()
        );
        assert!(
            EsmConfig {
                batch_size: 100,
                ..EsmConfig::default()
            }
            .check()
            .is_err(),
            "needs a window"
        );
        assert!(
            EsmConfig {
                batch_size: 100,
                batching_window: secs(1),
                ..EsmConfig::default()
            }
            .check()
            .is_ok()
        );
    }

    #[test]
    fn failures_halve_it_but_never_below_five() {
        let mut s = Scaler::new(EsmConfig::default());
        assert_eq!(s.at(secs(60), true), 305);
        s.backoff();
        assert_eq!(s.at(secs(60), true), 152);
        for _ in 0..10 {
            s.backoff();
        }
        assert_eq!(s.at(secs(60), true), 5);
    }
}
