//! The adaptive strategy's controllers, as pure state that takes `now` (no clock, no I/O), so that
//! their contracts are property-tested on their own.
//!
//! - [`Pacer`]: a client-side mirror of the provider's token and request buckets. Its budget is
//!   `target-tpm × throttle-threshold` (read live), capped by the limits the provider's
//!   `x-ratelimit-limit-*` headers reveal, so a wrong target is corrected by the first answer. It
//!   reserves each request's charge (prompt + `max_tokens`, what the provider charges) before the
//!   send, settles its optimism from `x-ratelimit-remaining-*` when the answer comes back, and
//!   stops sending until a 429's retry hint has passed. (REFERENCE.md, "Token reservations":
//!   reserve an estimate, settle from what the provider reports.)
//! - [`Aimd`]: additive increase, multiplicative decrease on a concurrency limit, once per control
//!   interval (Netflix concurrency-limits AIMD; a 429 is a drop, never a latency sample).

use std::time::Duration;

/// One mirrored bucket: a minute's worth of its limit, refilled at limit/60 per second, starting
/// full (the provider's rule, OpenAI rate-limit guide).
#[derive(Clone, Debug, PartialEq)]
struct Mirror {
    per_minute: f64,
    level: f64,
    last: Duration,
}

impl Mirror {
    fn new(per_minute: f64) -> Self {
        Self {
            per_minute,
            level: per_minute,
            last: Duration::ZERO,
        }
    }

    fn refill(&mut self, now: Duration) {
        let dt = now.saturating_sub(self.last).as_secs_f64();
        self.level = (self.level + self.per_minute * dt / 60.0).min(self.per_minute);
        self.last = self.last.max(now);
    }

    /// Changes the limit; the level is kept, capped at the new capacity (as the provider does).
    fn set(&mut self, now: Duration, per_minute: f64) {
        self.refill(now);
        self.per_minute = per_minute;
        self.level = self.level.min(per_minute);
    }

    /// Time until `amount` is there.
    fn wait_for(&self, amount: f64) -> Duration {
        if amount <= self.level {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64((amount - self.level) * 60.0 / self.per_minute).unwrap_or(Duration::MAX)
    }
}

/// What an answer's rate-limit headers said (`x-ratelimit-*`), as the pacer reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Feedback {
    /// `x-ratelimit-limit-tokens`.
    pub limit_tokens: Option<u64>,
    /// `x-ratelimit-limit-requests`.
    pub limit_requests: Option<u64>,
    /// `x-ratelimit-remaining-tokens`.
    pub remaining_tokens: Option<u64>,
    /// `x-ratelimit-remaining-requests`.
    pub remaining_requests: Option<u64>,
    /// `x-ratelimit-reset-tokens`.
    pub reset_tokens: Option<Duration>,
    /// `x-ratelimit-reset-requests`.
    pub reset_requests: Option<Duration>,
}

/// How much the provider had left, from a `remaining` header (a whole number, rounded down: the
/// real level lies in [remaining, remaining + 1)) refined by the matching `reset` (time until the
/// bucket is full, so the level is `limit - reset × limit / 60`, to the millisecond), kept inside
/// that band. Taking `remaining` alone would make the mirror half a request pessimistic on
/// average, which at 120 RPM is a quarter of a second lost for good (measured on `rpm-squeeze`).
fn level_left(remaining: u64, limit: Option<u64>, reset: Option<Duration>) -> f64 {
    let floor = remaining as f64;
    match (limit, reset) {
        (Some(limit), Some(reset)) => {
            let limit = limit as f64;
            (limit - reset.as_secs_f64() * limit / 60.0).clamp(floor, floor + 1.0)
        }
        _ => floor,
    }
}

/// The token and request pacer. See the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct Pacer {
    tokens: Mirror,
    requests: Mirror,
    budget_tpm: f64,
    known_tpm: Option<f64>,
    known_rpm: Option<f64>,
    blocked_until: Duration,
    answered: bool,
    /// Changes whenever the mirror is corrected or its limits change: a reservation made in an
    /// older generation carries a snapshot the mirror has already accounted for (or one taken
    /// under other limits), and settling it again would correct twice.
    generation: u64,
}

/// What [`Pacer::reserve`] took, for settling when the answer comes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reservation {
    /// The mirrored token level right after the reservation.
    pub tokens_after: f64,
    /// The mirrored request level right after it.
    pub requests_after: f64,
    /// The mirror's generation then.
    pub generation: u64,
}

impl Pacer {
    /// A pacer with a token budget of `budget_tpm` per minute and no request budget until the
    /// provider reveals its limits.
    pub fn new(budget_tpm: f64) -> Self {
        let budget = budget_tpm.max(1.0);
        Self {
            tokens: Mirror::new(budget),
            requests: Mirror::new(f64::MAX / 4.0),
            budget_tpm: budget,
            known_tpm: None,
            known_rpm: None,
            blocked_until: Duration::ZERO,
            answered: false,
            generation: 0,
        }
    }

    /// The token rate it paces to now: the budget, or the provider's limit when lower.
    pub fn rate_tpm(&self) -> f64 {
        self.known_tpm.map_or(self.budget_tpm, |k| k.min(self.budget_tpm))
    }

    /// Whether any answer has come back yet (with its limits, when the provider has any).
    pub fn answered(&self) -> bool {
        self.answered
    }

    /// A new budget (the parameter store changed).
    pub fn set_budget(&mut self, now: Duration, budget_tpm: f64) {
        let budget = budget_tpm.max(1.0);
        if budget != self.budget_tpm {
            self.budget_tpm = budget;
            let rate = self.rate_tpm();
            self.tokens.set(now, rate);
            self.generation += 1;
        }
    }

    /// How long until a request of `charge` tokens may be sent (zero: now).
    pub fn wait(&mut self, now: Duration, charge: f64) -> Duration {
        self.tokens.refill(now);
        self.requests.refill(now);
        let blocked = self.blocked_until.saturating_sub(now);
        let charge = charge.min(self.tokens.per_minute);
        blocked
            .max(self.tokens.wait_for(charge))
            .max(self.requests.wait_for(1.0))
    }

    /// Reserves a request of `charge` tokens at `now` (call when [`Pacer::wait`] says zero).
    pub fn reserve(&mut self, now: Duration, charge: f64) -> Reservation {
        self.tokens.refill(now);
        self.requests.refill(now);
        self.tokens.level -= charge.min(self.tokens.per_minute);
        self.requests.level -= 1.0;
        Reservation {
            tokens_after: self.tokens.level,
            requests_after: self.requests.level,
            generation: self.generation,
        }
    }

    /// An answer's rate-limit headers, for a request reserved as `r`: learns the limits, and
    /// takes back any optimism (the provider had less left than the mirror thought).
    pub fn observe(&mut self, now: Duration, r: Reservation, h: &Feedback) {
        self.answered = true;
        if let Some(l) = h.limit_tokens
            && self.known_tpm != Some(l as f64)
        {
            self.known_tpm = Some(l as f64);
            let rate = self.rate_tpm();
            self.tokens.set(now, rate);
            self.generation += 1;
        }
        if let Some(l) = h.limit_requests
            && self.known_rpm != Some(l as f64)
        {
            self.known_rpm = Some(l as f64);
            self.requests.set(now, l as f64);
            self.generation += 1;
        }
        if r.generation != self.generation {
            return;
        }
        self.tokens.refill(now);
        self.requests.refill(now);
        // A `remaining` describes the mirrored bucket only under a known per-minute limit: a
        // provider that counts in windows and says no limit (Azure) reports what is left of the
        // current window, which would drain a bucket mirror for nothing.
        let left = |rem: Option<u64>, limit: Option<u64>, reset: Option<Duration>| {
            rem.filter(|_| limit.is_some()).map(|rem| level_left(rem, limit, reset))
        };
        let token_optimism =
            left(h.remaining_tokens, h.limit_tokens, h.reset_tokens).map_or(0.0, |rem| r.tokens_after - rem);
        let request_optimism =
            left(h.remaining_requests, h.limit_requests, h.reset_requests).map_or(0.0, |rem| r.requests_after - rem);
        if token_optimism > 0.0 || request_optimism > 0.0 {
            self.tokens.level -= token_optimism.max(0.0);
            self.requests.level -= request_optimism.max(0.0);
            self.generation += 1;
        }
    }

    /// How long sends stay paused by the last 429's hint (zero: not paused).
    pub fn blocked_for(&self, now: Duration) -> Duration {
        self.blocked_until.saturating_sub(now)
    }

    /// A 429 with the server's hint: nothing is sent until it has passed, and the mirror is
    /// emptied (it ran ahead of the provider).
    pub fn refused(&mut self, now: Duration, hint: Option<Duration>) {
        self.tokens.refill(now);
        self.requests.refill(now);
        self.tokens.level = self.tokens.level.min(0.0);
        self.blocked_until = self.blocked_until.max(now + hint.unwrap_or(Duration::from_secs(1)));
        self.generation += 1;
    }
}

/// Additive increase, multiplicative decrease on a concurrency limit.
#[derive(Clone, Debug, PartialEq)]
pub struct Aimd {
    limit: f64,
    decrease: f64,
}

impl Aimd {
    /// Starting at `initial`, cutting by `decrease` (in (0, 1)) on a drop.
    pub fn new(initial: u32, decrease: f64) -> Self {
        Self {
            limit: f64::from(initial.max(1)),
            decrease,
        }
    }

    /// The limit now.
    pub fn limit(&self) -> u32 {
        self.limit as u32
    }

    /// One control interval: × `decrease` if anything dropped (a 429, a 5xx, a timeout); + 1 if
    /// the limit was nearly reached with work waiting; always within [1, `max`].
    pub fn update(&mut self, max: u32, dropped: bool, in_flight_peak: u32, work_waiting: bool) -> u32 {
        if dropped {
            self.limit *= self.decrease;
        } else if work_waiting && f64::from(in_flight_peak) * 2.0 >= self.limit {
            self.limit += 1.0;
        }
        self.limit = self.limit.clamp(1.0, f64::from(max.max(1)));
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn the_first_answer_caps_a_budget_above_the_real_limit() {
        // Budget 45,000 against a 40,000 limit: once the headers say 40,000, the pacer runs at 40,000.
        let mut p = Pacer::new(45_000.0);
        let r = p.reserve(ms(0), 1_000.0);
        assert_eq!(p.rate_tpm(), 45_000.0);
        let h = Feedback {
            limit_tokens: Some(40_000),
            limit_requests: Some(300),
            remaining_tokens: Some(39_000),
            remaining_requests: Some(299),
            ..Feedback::default()
        };
        p.observe(ms(500), r, &h);
        assert_eq!(p.rate_tpm(), 40_000.0);
        assert!(p.answered());
    }

    #[test]
    fn a_refusal_blocks_sends_until_its_hint_has_passed() {
        let mut p = Pacer::new(60_000.0);
        p.refused(ms(1_000), Some(ms(644)));
        assert_eq!(p.wait(ms(1_000), 10.0), ms(644));
        assert_eq!(p.wait(ms(1_644), 0.0), Duration::ZERO);
    }

    proptest! {
        /// Whatever the charges, gaps, budget changes, answers and refusals, the tokens reserved
        /// over any window [a, b] never exceed the largest budget's minute plus its refill over
        /// the window: the pacer never spends more than its budget.
        #[test]
        fn the_pacer_never_spends_more_than_its_budget_over_any_window(
            budget in 1_000.0f64..100_000.0,
            ops in proptest::collection::vec((0u64..3_000, 1.0f64..5_000.0, 0u8..4, 1_000.0f64..100_000.0), 1..150),
        ) {
            let mut p = Pacer::new(budget);
            let mut now = 0u64;
            let mut max_budget = budget;
            let mut sent: Vec<(u64, f64)> = vec![];
            for (gap, charge, op, new_budget) in ops {
                now += gap;
                let t = ms(now);
                match op {
                    0 => {
                        max_budget = max_budget.max(new_budget);
                        p.set_budget(t, new_budget);
                    }
                    1 => p.refused(t, Some(ms(gap / 2))),
                    _ => {
                        if p.wait(t, charge).is_zero() {
                            let r = p.reserve(t, charge);
                            sent.push((now, charge.min(max_budget)));
                            if op == 3 {
                                let h = Feedback {
                                    limit_tokens: Some(max_budget as u64),
                                    remaining_tokens: Some(0),
                                    ..Feedback::default()
                                };
                                p.observe(t, r, &h);
                            }
                        }
                    }
                }
            }
            for i in 0..sent.len() {
                for j in i..sent.len() {
                    let total: f64 = sent[i..=j].iter().map(|s| s.1).sum();
                    let span = (sent[j].0 - sent[i].0) as f64 / 60_000.0;
                    prop_assert!(total <= max_budget * (1.0 + span) + 1e-6, "{} tokens in {} min", total, span);
                }
            }
        }

        /// Over any feedback, the AIMD limit stays within [1, max], whatever max does.
        #[test]
        fn the_aimd_limit_stays_within_one_and_max(
            initial in 1u32..50,
            steps in proptest::collection::vec((1u32..60, any::<bool>(), 0u32..80, any::<bool>()), 1..200),
        ) {
            let mut a = Aimd::new(initial, 0.7);
            for (max, dropped, peak, waiting) in steps {
                let l = a.update(max, dropped, peak, waiting);
                prop_assert!((1..=max).contains(&l), "limit {} outside [1, {}]", l, max);
            }
        }
    }
}
