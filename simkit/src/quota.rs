//! [`Quota`]: an AWS-style token bucket, a burst capacity refilled at a steady rate per second,
//! as pure state taking `now`. AWS throttles its APIs this way (Step Functions' StartExecution
//! and StateTransition quotas, Lambda's scaling rate); the service models use it to decide when
//! a call is throttled and when it may go ahead.
//!
//! Exact integer arithmetic on nanoseconds, like [`crate::limiter::Bucket`]: a call retried
//! exactly at the wait it was told is admitted.

use std::time::Duration;

const NS_PER_SEC: u128 = 1_000_000_000;

/// A token bucket: up to `burst` tokens, refilled at `rate` per second, starting full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quota {
    burst: u64,
    rate: u64,
    /// Tokens × 10^9 (refilling `rate` per second adds `rate` per nanosecond).
    level: u128,
    /// Tokens × 10^9 reserved beyond the level ([`Quota::reserve`]), paid by refills first.
    debt: u128,
    last: Duration,
}

impl Quota {
    /// A full bucket of `burst` tokens, refilled at `rate` per second (`rate` ≥ 1).
    pub fn new(burst: u64, rate: u64) -> Self {
        assert!(rate > 0, "a quota that never refills is a bug in its caller");
        Self {
            burst,
            rate,
            level: u128::from(burst) * NS_PER_SEC,
            debt: 0,
            last: Duration::ZERO,
        }
    }

    /// Step Functions Standard `StateTransition`: a bucket of 5,000 refilled at 1,500 per second in
    /// the large regions (AWS Step Functions quotas, archived 2022 table; *check* for a region).
    pub fn step_functions_state_transitions() -> Self {
        Self::new(5_000, 1_500)
    }

    /// Step Functions `StartExecution`: a bucket of 1,300 refilled at 300 per second (same source).
    pub fn step_functions_start_execution() -> Self {
        Self::new(1_300, 300)
    }

    /// Lambda scaling: at most 1,000 new execution environments every 10 s per function,
    /// refilled continuously and never accumulated beyond that (Lambda developer guide, "Lambda
    /// scaling behavior").
    pub fn lambda_scaling() -> Self {
        Self::new(1_000, 100)
    }

    fn refill(&mut self, now: Duration) {
        if now > self.last {
            let mut add = (now - self.last).as_nanos().saturating_mul(u128::from(self.rate));
            let paid = add.min(self.debt);
            self.debt -= paid;
            add -= paid;
            self.level = self.level.saturating_add(add).min(u128::from(self.burst) * NS_PER_SEC);
            self.last = now;
        }
    }

    /// Takes `n` tokens at `now` if they are there; otherwise takes nothing and says how long
    /// until they would be. `Err(None)` when `n` exceeds the burst (it can never fit).
    pub fn try_take(&mut self, now: Duration, n: u64) -> Result<(), Option<Duration>> {
        if n > self.burst {
            return Err(None);
        }
        self.refill(now);
        let need = u128::from(n) * NS_PER_SEC;
        if self.debt == 0 && need <= self.level {
            self.level -= need;
            Ok(())
        } else {
            let ns = (self.debt + need - self.level).div_ceil(u128::from(self.rate));
            Err(Some(Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))))
        }
    }

    /// Takes `n` tokens at `now` whether or not they are there, and says how long until they
    /// are: callers that wait that long are served in the order they asked, each waking once
    /// (a throttled service that queues rather than refuses). What is missing becomes a debt
    /// that refills pay before anything else, so later calls wait behind it.
    pub fn reserve(&mut self, now: Duration, n: u64) -> Duration {
        self.refill(now);
        let need = u128::from(n) * NS_PER_SEC;
        if self.debt == 0 && need <= self.level {
            self.level -= need;
            return Duration::ZERO;
        }
        self.debt += need - self.level;
        self.level = 0;
        let ns = self.debt.div_ceil(u128::from(self.rate));
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// Whole tokens available at `now`.
    pub fn available(&mut self, now: Duration) -> u64 {
        self.refill(now);
        (self.level / NS_PER_SEC) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_burst_is_admitted_at_once_then_the_rate_governs() {
        // StartExecution: 1,300 at once, the 1,301st waits 1/300 s, and after 1 s 300 more fit.
        let mut q = Quota::step_functions_start_execution();
        assert_eq!(q.try_take(Duration::ZERO, 1_300), Ok(()));
        assert_eq!(
            q.try_take(Duration::ZERO, 1),
            Err(Some(Duration::from_nanos(3_333_334)))
        );
        assert_eq!(q.available(Duration::from_secs(1)), 300);
        assert_eq!(q.try_take(Duration::from_secs(1), 300), Ok(()));
        assert_eq!(
            q.try_take(Duration::from_secs(1), 2_000),
            Err(None),
            "more than the burst never fits"
        );
    }

    #[test]
    fn reservations_queue_in_order_each_told_its_own_wait() {
        // A bucket of 2 refilled at 10/s: two at once, then each reservation waits 0.1 s more
        // than the one before, and a try_take finds nothing until the debt is paid.
        let mut q = Quota::new(2, 10);
        let ms = Duration::from_millis;
        let waits: Vec<Duration> = (0..5).map(|_| q.reserve(Duration::ZERO, 1)).collect();
        assert_eq!(waits, vec![ms(0), ms(0), ms(100), ms(200), ms(300)]);
        assert_eq!(q.try_take(ms(250), 1), Err(Some(ms(150))), "the 300 ms of debt first");
        assert_eq!(q.try_take(ms(400), 1), Ok(()));
    }

    #[test]
    fn lambda_scaling_never_accumulates_beyond_a_thousand() {
        // An idle hour does not bank more than 1,000 new environments.
        let mut q = Quota::lambda_scaling();
        assert_eq!(q.available(Duration::from_secs(3_600)), 1_000);
        q.try_take(Duration::from_secs(3_600), 1_000).expect("a full bucket");
        assert_eq!(
            q.available(Duration::from_secs(3_610)),
            1_000,
            "10 s refill the whole burst"
        );
    }

    proptest! {
        /// Whatever the calls, the tokens taken over any span [a, b] never exceed the burst plus
        /// the refill over the span, and a call retried exactly at its wait is admitted.
        #[test]
        fn taken_never_exceeds_burst_plus_refill(
            burst in 1u64..500, rate in 1u64..200,
            calls in proptest::collection::vec((0u64..2_000, 1u64..50), 1..100),
        ) {
            let mut q = Quota::new(burst, rate);
            let mut now = 0u64;
            let mut taken: Vec<(u64, u64)> = vec![];
            for (gap, n) in calls {
                now += gap;
                match q.try_take(Duration::from_millis(now), n) {
                    Ok(()) => taken.push((now, n)),
                    Err(Some(wait)) => {
                        let mut again = q.clone();
                        let at = Duration::from_millis(now) + wait;
                        prop_assert_eq!(again.try_take(at, n), Ok(()));
                    }
                    Err(None) => prop_assert!(n > burst),
                }
            }
            for i in 0..taken.len() {
                for j in i..taken.len() {
                    let total: u64 = taken[i..=j].iter().map(|t| t.1).sum();
                    let span_ms = taken[j].0 - taken[i].0;
                    prop_assert!(u128::from(total) * 1000 <= u128::from(burst) * 1000 + u128::from(rate) * u128::from(span_ms));
                }
            }
        }
    }
}
