//! Rate limiters as pure state: continuously refilling buckets and fixed windows, each taking
//! `now` (time since its start) as an argument and never reading a clock.
//!
//! Both use exact integer arithmetic on nanoseconds, so that "a request retried exactly at its
//! retry-after is admitted" holds to the nanosecond, with no floating-point drift.

use std::time::Duration;

/// Nanoseconds in a minute: a bucket's level is kept in tokens × this, so that refilling at
/// `limit` tokens per minute adds exactly `limit` units per nanosecond.
const NS_PER_MIN: u128 = 60_000_000_000;

/// A bucket holding one minute's worth of a limit, refilled continuously at limit/60 per second,
/// starting full. (OpenAI rate-limit guide; the OpenAI cookbook's `api_request_parallel_processor.py`
/// models each limit exactly so.)
#[derive(Clone, Debug)]
pub struct Bucket {
    limit: u64,
    level: u128,
    /// What was charged beyond an empty bucket (see [`Bucket::charge`]): the refill pays it
    /// back before the level rises again. Zero unless something charges past empty.
    debt: u128,
    last: Duration,
}

impl Bucket {
    /// A full bucket for `limit` per minute.
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            level: u128::from(limit) * NS_PER_MIN,
            debt: 0,
            last: Duration::ZERO,
        }
    }

    fn capacity(&self) -> u128 {
        u128::from(self.limit) * NS_PER_MIN
    }

    fn refill(&mut self, now: Duration) {
        if now > self.last {
            let mut add = (now - self.last).as_nanos() * u128::from(self.limit);
            if self.debt > 0 {
                let paid = add.min(self.debt);
                self.debt -= paid;
                add -= paid;
            }
            self.level = (self.level + add).min(self.capacity());
            self.last = now;
        }
    }

    /// How long until `amount` fits, or zero if it fits now. `None` if it can never fit.
    pub fn wait_for(&mut self, now: Duration, amount: u64) -> Option<Duration> {
        if amount > self.limit {
            return None;
        }
        self.refill(now);
        let need = u128::from(amount) * NS_PER_MIN;
        if need <= self.level {
            return Some(Duration::ZERO);
        }
        Some(ns(div_ceil(need + self.debt - self.level, u128::from(self.limit))))
    }

    /// Charges `amount` whether or not it fits: what does not fit becomes a debt that the refill
    /// pays back first (a refused request charged against the limit, as OpenAI's help centre says
    /// "unsuccessful requests contribute to your per-minute limit").
    pub fn charge(&mut self, now: Duration, amount: u64) {
        self.refill(now);
        let need = u128::from(amount) * NS_PER_MIN;
        if need <= self.level {
            self.level -= need;
        } else {
            self.debt += need - self.level;
            self.level = 0;
        }
    }

    /// Takes `amount` (the caller checked that it fits).
    pub fn take(&mut self, now: Duration, amount: u64) {
        self.refill(now);
        self.level = self.level.saturating_sub(u128::from(amount) * NS_PER_MIN);
    }

    /// Changes the limit from `now` on; the level is kept but capped at the new capacity.
    pub fn set_limit(&mut self, now: Duration, limit: u64) {
        self.refill(now);
        self.limit = limit;
        self.level = self.level.min(self.capacity());
    }

    /// The limit, per minute.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whole units available now.
    pub fn remaining(&mut self, now: Duration) -> u64 {
        self.refill(now);
        div_floor(self.level, NS_PER_MIN) as u64
    }

    /// Time until the bucket is full again.
    pub fn reset(&mut self, now: Duration) -> Duration {
        self.refill(now);
        ns(div_ceil(
            self.capacity() + self.debt - self.level,
            u128::from(self.limit),
        ))
    }
}

/// A counter over fixed windows aligned to the run's start (Azure OpenAI counts TPM per minute and
/// RPM per 1 s or 10 s window).
#[derive(Clone, Debug)]
pub struct Window {
    length: Duration,
    limit: u64,
    index: u64,
    used: u64,
}

impl Window {
    /// A window counter allowing `limit` per `length`.
    pub fn new(length: Duration, limit: u64) -> Self {
        Self {
            length,
            limit,
            index: 0,
            used: 0,
        }
    }

    /// Moves to the window containing `now`, never back: a request stamped a little earlier than
    /// the last one (two server threads reading the clock in a different order than they take
    /// the lock) is counted in the current window rather than resetting it.
    fn roll(&mut self, now: Duration) {
        let index = (now.as_nanos() / self.length.as_nanos()) as u64;
        if index > self.index {
            self.index = index;
            self.used = 0;
        }
    }

    fn end(&self) -> Duration {
        ns(u128::from(self.index + 1) * self.length.as_nanos())
    }

    /// The window's length.
    pub fn length(&self) -> Duration {
        self.length
    }

    /// How long until `amount` fits, or zero if it fits now. `None` if it can never fit.
    pub fn wait_for(&mut self, now: Duration, amount: u64) -> Option<Duration> {
        if amount > self.limit {
            return None;
        }
        self.roll(now);
        if self.used + amount <= self.limit {
            Some(Duration::ZERO)
        } else {
            Some(self.end().saturating_sub(now).max(Duration::from_nanos(1)))
        }
    }

    /// Takes `amount` (the caller checked that it fits).
    pub fn take(&mut self, now: Duration, amount: u64) {
        self.roll(now);
        self.used += amount;
    }

    /// Changes the limit; what this window already used stays counted.
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// The limit per window.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Units still available in the current window.
    pub fn remaining(&mut self, now: Duration) -> u64 {
        self.roll(now);
        self.limit.saturating_sub(self.used)
    }

    /// Time until the window resets.
    pub fn reset(&mut self, now: Duration) -> Duration {
        self.roll(now);
        if self.used == 0 {
            Duration::ZERO
        } else {
            self.end().saturating_sub(now)
        }
    }
}

/// One limit, enforced either way.
#[derive(Clone, Debug)]
pub enum Limit {
    /// A continuously refilling bucket (OpenAI).
    Bucket(Bucket),
    /// Fixed windows (Azure).
    Window(Window),
}

impl Limit {
    /// How long until `amount` fits (zero: now); `None` if it never can.
    pub fn wait_for(&mut self, now: Duration, amount: u64) -> Option<Duration> {
        match self {
            Limit::Bucket(b) => b.wait_for(now, amount),
            Limit::Window(w) => w.wait_for(now, amount),
        }
    }
    /// Takes `amount`.
    pub fn take(&mut self, now: Duration, amount: u64) {
        match self {
            Limit::Bucket(b) => b.take(now, amount),
            Limit::Window(w) => w.take(now, amount),
        }
    }
    /// Charges `amount` whether or not it fits (a bucket goes into debt; a window counts past
    /// its limit until it ends).
    pub fn charge(&mut self, now: Duration, amount: u64) {
        match self {
            Limit::Bucket(b) => b.charge(now, amount),
            Limit::Window(w) => w.take(now, amount),
        }
    }
    /// The limit per its period.
    pub fn limit(&self) -> u64 {
        match self {
            Limit::Bucket(b) => b.limit(),
            Limit::Window(w) => w.limit(),
        }
    }
    /// What is available now.
    pub fn remaining(&mut self, now: Duration) -> u64 {
        match self {
            Limit::Bucket(b) => b.remaining(now),
            Limit::Window(w) => w.remaining(now),
        }
    }
    /// Time until fully available again.
    pub fn reset(&mut self, now: Duration) -> Duration {
        match self {
            Limit::Bucket(b) => b.reset(now),
            Limit::Window(w) => w.reset(now),
        }
    }
}

/// `a / b` rounded up; in 64 bits when both fit (a 128-bit division is a library call many
/// times slower, and every request of a run divides a few times).
fn div_ceil(a: u128, b: u128) -> u128 {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) => u128::from(a.div_ceil(b)),
        _ => a.div_ceil(b),
    }
}

/// `a / b` rounded down, in 64 bits when both fit.
fn div_floor(a: u128, b: u128) -> u128 {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) => u128::from(a / b),
        _ => a / b,
    }
}

fn ns(n: u128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn bucket_refills_at_one_sixtieth_of_its_limit_per_second() {
        // 600 per minute = 10 per second: after draining, 1 s brings back exactly 10.
        let mut b = Bucket::new(600);
        b.take(Duration::ZERO, 600);
        assert_eq!(b.remaining(Duration::ZERO), 0);
        assert_eq!(b.remaining(S), 10);
        assert_eq!(b.wait_for(S, 11), Some(Duration::from_millis(100)));
        assert_eq!(b.reset(S), Duration::from_secs(59));
    }

    #[test]
    fn a_charge_past_empty_is_a_debt_the_refill_pays_first() {
        // 600 per minute (10/s), drained, then charged 20 more: nothing is available until the
        // 20 are paid back (2 s), and 10 fit one second after that.
        let mut b = Bucket::new(600);
        b.take(Duration::ZERO, 600);
        b.charge(Duration::ZERO, 20);
        assert_eq!(b.remaining(S), 0);
        assert_eq!(b.wait_for(S, 10), Some(Duration::from_secs(2)));
        assert_eq!(b.remaining(Duration::from_secs(3)), 10);
        assert_eq!(b.reset(Duration::from_secs(3)), Duration::from_secs(59));
    }

    #[test]
    fn a_request_larger_than_the_limit_can_never_fit() {
        assert_eq!(Bucket::new(100).wait_for(Duration::ZERO, 101), None);
        assert_eq!(Window::new(S, 100).wait_for(Duration::ZERO, 101), None);
    }

    #[test]
    fn a_window_never_moves_back_when_time_arrives_out_of_order() {
        // Two server threads stamp requests at 1.2 s and 0.9 s and take the lock in that order.
        // The late-stamped one is counted in the current window: it must not reset the window
        // and let a third request through past the limit of 2.
        let mut w = Window::new(S, 2);
        w.take(Duration::from_millis(1200), 1);
        assert_eq!(w.wait_for(Duration::from_millis(900), 1), Some(Duration::ZERO));
        w.take(Duration::from_millis(900), 1);
        assert_eq!(w.remaining(Duration::from_millis(1300)), 0);
        assert!(w.wait_for(Duration::from_millis(1300), 1) > Some(Duration::ZERO));
    }

    #[test]
    fn window_waits_until_the_next_window_starts() {
        let mut w = Window::new(S, 2);
        w.take(Duration::from_millis(100), 2);
        assert_eq!(
            w.wait_for(Duration::from_millis(300), 1),
            Some(Duration::from_millis(700))
        );
        assert_eq!(w.wait_for(S, 1), Some(Duration::ZERO));
    }

    proptest! {
        /// Over any sequence of requests, the tokens a bucket admits in any window [a, b] never
        /// exceed one minute's worth plus the refill over the window.
        #[test]
        fn bucket_never_admits_more_than_capacity_plus_refill(
            limit in 1u64..5_000,
            reqs in proptest::collection::vec((0u64..3_000, 1u64..2_000), 1..80),
        ) {
            let mut b = Bucket::new(limit);
            let mut now = 0u64;
            let mut admitted: Vec<(u64, u64)> = vec![];
            for (gap_ms, amount) in reqs {
                now += gap_ms;
                let t = Duration::from_millis(now);
                if b.wait_for(t, amount) == Some(Duration::ZERO) {
                    b.take(t, amount);
                    admitted.push((now, amount));
                }
            }
            for i in 0..admitted.len() {
                for j in i..admitted.len() {
                    let total: u128 = admitted[i..=j].iter().map(|a| u128::from(a.1)).sum();
                    let span_ms = u128::from(admitted[j].0 - admitted[i].0);
                    // capacity + limit × span / 60 s, in exact integers (× 60_000 ms)
                    prop_assert!(total * 60_000 <= u128::from(limit) * 60_000 + u128::from(limit) * span_ms);
                }
            }
        }

        /// A refused amount fits exactly at the wait the bucket gave, and not one nanosecond before.
        #[test]
        fn bucket_wait_is_exact(limit in 1u64..100_000, drain in 0u64..100_000, amount in 1u64..100_000, at_ms in 0u64..120_000) {
            prop_assume!(drain <= limit && amount <= limit);
            let mut b = Bucket::new(limit);
            b.take(Duration::ZERO, drain);
            let t = Duration::from_millis(at_ms);
            let wait = b.wait_for(t, amount).expect("amount fits the limit");
            prop_assert_eq!(b.clone().wait_for(t + wait, amount), Some(Duration::ZERO));
            if wait > Duration::ZERO {
                prop_assert!(b.clone().wait_for(t + wait - Duration::from_nanos(1), amount) != Some(Duration::ZERO));
            }
        }
    }
}
