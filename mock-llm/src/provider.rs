//! The provider model: admission against the limits, latency, faults, verdicts.
//!
//! It is plain state: [`Provider::admit`] takes `now` (time since the provider started) and
//! returns a decision, with no clock and no I/O inside. The simulated backend calls it in-process;
//! the HTTP server wraps the very same model.

use std::collections::BTreeSet;
use std::num::NonZeroU64;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{LatencyConfig, Probability, Profile, ProviderConfig, RefusedCharge};
use crate::headers::RateLimitHeaders;
use crate::limiter::{Bucket, Limit, LimitKind, Window};
use crate::rng::{SimRng, Stream, derive_seed};
use crate::verdict::Verdict;

/// What the model needs to know of a chat-completion request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRequest {
    /// Prompt tokens (counted or estimated by the caller).
    pub prompt_tokens: u32,
    /// The request's `max_tokens`.
    pub max_tokens: u32,
    /// How many tokens the model would write if not cut off by `max_tokens`.
    pub completion_tokens: u32,
    /// The identity of the work item (a chunk), from which the verdict is derived.
    pub key: u64,
    /// Which attempt at the work item this is (0 for the first), when the client says. With it,
    /// the request's random draws (server error, hang, latency noise) are a function of
    /// (key, attempt), so every strategy meets the same noise for the same chunk and attempt;
    /// without it (a foreign client), they come from the provider's own stream in arrival order.
    #[serde(default)]
    pub attempt: Option<u32>,
}

/// Token counts of an answer, as in OpenAI's `usage` object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Completion tokens.
    pub completion_tokens: u32,
}

impl Usage {
    /// Prompt plus completion tokens.
    pub fn total(self) -> u64 {
        u64::from(self.prompt_tokens) + u64::from(self.completion_tokens)
    }
}

/// The model's decision on one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Admission {
    /// Admitted: the answer arrives after `latency`.
    Admitted(Admitted),
    /// Refused by a rate limit (HTTP 429 `rate_limit_exceeded`); retrying after `retry_after` helps.
    Throttled(Throttled),
    /// Failed: server error, outage, hang, or a request too large for any retry to help.
    Failed(Failed),
}

/// An admitted request.
#[derive(Clone, Debug, PartialEq)]
pub struct Admitted {
    /// Time from admission to the complete answer (queueing for capacity included).
    pub latency: Duration,
    /// Of `latency`, the time spent waiting for a free generation slot.
    pub queued: Duration,
    /// Token counts of the answer.
    pub usage: Usage,
    /// `true` when `max_tokens` cut the completion short (`finish_reason: "length"`).
    pub truncated: bool,
    /// The validator's answer.
    pub verdict: Verdict,
    /// Rate-limit values after this request was charged.
    pub headers: RateLimitHeaders,
    /// The generation slot it holds, with a capacity configured (see [`Provider::release`]).
    pub slot: Option<Slot>,
}

/// A generation slot held by an admitted request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    end: Duration,
    id: u64,
}

/// A request refused by a rate limit.
#[derive(Clone, Debug, PartialEq)]
pub struct Throttled {
    /// Which limit refused it (the one that needs the longer wait).
    pub limit: LimitKind,
    /// The limit's value (per minute, or per window with the azure profile).
    pub limit_value: u64,
    /// How much of the limit is in use now.
    pub used: u64,
    /// How much this request asked for of that limit.
    pub requested: u64,
    /// Exact time until the request would be admitted if nothing else arrived.
    pub retry_after: Duration,
    /// Time the refusal takes to reach the client.
    pub after: Duration,
    /// Rate-limit values now.
    pub headers: RateLimitHeaders,
}

/// A request that failed.
#[derive(Clone, Debug, PartialEq)]
pub struct Failed {
    /// Why.
    pub kind: FailureKind,
    /// When the client hears of it: `None` means never (a hung request; the client's timeout ends it).
    pub after: Option<Duration>,
    /// Rate-limit values now.
    pub headers: RateLimitHeaders,
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// A random server error with this status (charged against TPM all the same).
    ServerError(u16),
    /// A scheduled outage: every request fails with this status, nothing is charged.
    Outage(u16),
    /// Admitted and charged, but the answer never comes.
    Hung,
    /// Larger than the whole limit: 429 "Request too large", and no retry can help (OpenAI).
    TooLarge {
        /// Which limit it exceeds.
        limit: LimitKind,
        /// The limit.
        limit_value: u64,
        /// What it asked for.
        requested: u64,
    },
}

impl FailureKind {
    /// The HTTP status the client sees.
    pub fn status(self) -> Option<u16> {
        match self {
            FailureKind::ServerError(s) | FailureKind::Outage(s) => Some(s),
            FailureKind::TooLarge { .. } => Some(429),
            FailureKind::Hung => None,
        }
    }
}

/// Running totals kept by the provider.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderStats {
    /// Requests admitted (answered or not).
    pub admitted: u64,
    /// Requests refused by a limit.
    pub throttled: u64,
    /// Requests that failed (server error, outage, hang, too large).
    pub failed: u64,
    /// Tokens charged against TPM at admission.
    pub tokens_charged: u64,
    /// Tokens billed: prompt + completion of every answered request.
    pub tokens_billed: u64,
    /// Of those, prompt tokens (priced as input).
    pub prompt_tokens_billed: u64,
}

/// The provider model. See the module docs.
#[derive(Debug)]
pub struct Provider {
    config: ProviderConfig,
    requests: Option<Limit>,
    tokens: Option<Limit>,
    rng: SimRng,
    noise_seed: u64,
    verdict_seed: u64,
    /// Generation slots in use, as (end, slot id): ordered, so the earliest to free is first, and
    /// removable, so a client that disconnects frees its slot.
    busy: BTreeSet<(Duration, u64)>,
    next_slot: u64,
    next_change: usize,
    stats: ProviderStats,
}

impl Provider {
    /// A provider with full buckets at time zero.
    pub fn new(config: ProviderConfig) -> Self {
        let rng = SimRng::new(derive_seed(config.seed, "provider"));
        let verdict_seed = derive_seed(config.seed, "verdicts");
        let mut p = Self {
            requests: None,
            tokens: None,
            rng,
            noise_seed: derive_seed(config.seed, "noise"),
            verdict_seed,
            busy: BTreeSet::new(),
            next_slot: 0,
            next_change: 0,
            stats: ProviderStats::default(),
            config,
        };
        p.rebuild_limits(Duration::ZERO, p.config.tpm, p.config.rpm);
        p
    }

    /// The configuration in force (limits as last changed).
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// Running totals.
    pub fn stats(&self) -> ProviderStats {
        self.stats
    }

    fn rebuild_limits(&mut self, now: Duration, tpm: Option<NonZeroU64>, rpm: Option<NonZeroU64>) {
        let rpm = self.config.effective_rpm(tpm, rpm);
        match self.config.profile {
            Profile::Openai => {
                self.tokens = update_bucket(self.tokens.take(), now, tpm);
                self.requests = update_bucket(self.requests.take(), now, rpm);
            }
            Profile::Azure => {
                // Azure counts TPM per minute, and RPM per 1 s or 10 s window (Azure OpenAI quota
                // docs). A limit change keeps the counters: what the current window used stays
                // counted against the new limit, so no window admits more than the largest limit
                // in force during it.
                self.tokens = update_window(self.tokens.take(), tpm, |_| Duration::from_secs(60), |t, _| t);
                self.requests = update_window(
                    self.requests.take(),
                    rpm,
                    crate::config::azure_request_window,
                    crate::config::azure_per_window,
                );
            }
        }
    }

    /// Changes the limits from `now` on (an admin call, or a scheduled change).
    pub fn set_limits(&mut self, now: Duration, tpm: Option<NonZeroU64>, rpm: Option<NonZeroU64>) {
        let tpm = tpm.or(self.config.tpm);
        let rpm = rpm.or(self.config.rpm);
        self.config.tpm = tpm;
        self.config.rpm = rpm;
        self.rebuild_limits(now, tpm, rpm);
    }

    fn apply_schedule(&mut self, now: Duration) {
        while let Some(change) = self.config.schedule.limit_changes.get(self.next_change).copied() {
            if change.at > now {
                break;
            }
            self.next_change += 1;
            self.set_limits(change.at, change.tpm, change.rpm);
        }
    }

    /// The rate-limit values at `now`. The azure profile sends only `x-ratelimit-remaining-*`,
    /// counted in the current window (Azure OpenAI sends no limit or reset headers: C. Siebler,
    /// "Understanding Azure OpenAI's x-ratelimit-remaining-tokens and
    /// x-ratelimit-remaining-requests headers", whose 120 RPM deployment reports 19 requests left
    /// after one: a 10 s window of 20).
    pub fn headers(&mut self, now: Duration) -> RateLimitHeaders {
        let mut h = self.all_headers(now);
        if self.config.profile == crate::config::Profile::Azure {
            (h.limit_requests, h.limit_tokens, h.reset_requests, h.reset_tokens) = (None, None, None, None);
        }
        h
    }

    fn all_headers(&mut self, now: Duration) -> RateLimitHeaders {
        let (req, tok) = (self.requests.as_mut(), self.tokens.as_mut());
        let (limit_requests, remaining_requests, reset_requests) = match req {
            Some(l) => (Some(l.limit()), Some(l.remaining(now)), Some(l.reset(now))),
            None => (None, None, None),
        };
        let (limit_tokens, remaining_tokens, reset_tokens) = match tok {
            Some(l) => (Some(l.limit()), Some(l.remaining(now)), Some(l.reset(now))),
            None => (None, None, None),
        };
        RateLimitHeaders {
            limit_requests,
            limit_tokens,
            remaining_requests,
            remaining_tokens,
            reset_requests,
            reset_tokens,
            observed: None,
        }
    }

    /// Decides on a request arriving at `now` (time since the provider started).
    ///
    /// Order: outage (nothing charged), request too large, rate limits (nothing charged when
    /// refused), charge, then random failure or hang (charged: failed requests count against the
    /// limit, per the OpenAI cookbook), then latency with queueing for capacity.
    ///
    /// With a time scale K (see [`ProviderConfig::time_scale`]), `now` is real time: the model
    /// decides at `now × K` and every duration in the answer is divided by K.
    pub fn admit(&mut self, now: Duration, req: &ModelRequest) -> Admission {
        let k = self.config.time_scale;
        if k == 1.0 {
            return self.admit_at(now, req);
        }
        let mut a = self.admit_at(now.mul_f64(k), req);
        let real = |d: Duration| d.div_f64(k);
        let headers = |h: &mut RateLimitHeaders| {
            h.reset_requests = h.reset_requests.map(real);
            h.reset_tokens = h.reset_tokens.map(real);
        };
        match &mut a {
            Admission::Admitted(x) => {
                x.latency = real(x.latency);
                x.queued = real(x.queued);
                headers(&mut x.headers);
            }
            Admission::Throttled(x) => {
                x.retry_after = real(x.retry_after);
                x.after = real(x.after);
                headers(&mut x.headers);
            }
            Admission::Failed(x) => {
                x.after = x.after.map(real);
                headers(&mut x.headers);
            }
        }
        a
    }

    /// [`Provider::admit`] in model time.
    fn admit_at(&mut self, now: Duration, req: &ModelRequest) -> Admission {
        self.apply_schedule(now);
        let reject = self.config.latency.reject();
        if let Some(o) = self
            .config
            .schedule
            .outages
            .iter()
            .find(|o| o.start <= now && now < o.end)
        {
            self.stats.failed += 1;
            let kind = FailureKind::Outage(o.status);
            return Admission::Failed(Failed {
                kind,
                after: Some(reject),
                headers: self.headers(now),
            });
        }
        let charge = self.config.charge(req.prompt_tokens, req.max_tokens);
        let mut worst: Option<(Duration, LimitKind)> = None;
        for (kind, amount) in [(LimitKind::Requests, 1), (LimitKind::Tokens, charge)] {
            let limit = match kind {
                LimitKind::Requests => self.requests.as_mut(),
                LimitKind::Tokens => self.tokens.as_mut(),
            };
            let Some(limit) = limit else { continue };
            match limit.wait_for(now, amount) {
                None => {
                    self.stats.failed += 1;
                    let kind = FailureKind::TooLarge {
                        limit: kind,
                        limit_value: limit.limit(),
                        requested: amount,
                    };
                    return Admission::Failed(Failed {
                        kind,
                        after: Some(reject),
                        headers: self.headers(now),
                    });
                }
                Some(w) if w > Duration::ZERO && worst.is_none_or(|(d, _)| w > d) => worst = Some((w, kind)),
                Some(_) => {}
            }
        }
        if let Some((retry_after, kind)) = worst {
            self.stats.throttled += 1;
            let retry_after = self.charge_refusal(now, charge).unwrap_or(retry_after);
            let (limit, requested) = match kind {
                LimitKind::Requests => (self.requests.as_mut().expect("a limit that throttled exists"), 1),
                LimitKind::Tokens => (self.tokens.as_mut().expect("a limit that throttled exists"), charge),
            };
            let limit_value = limit.limit();
            let used = limit_value.saturating_sub(limit.remaining(now));
            return Admission::Throttled(Throttled {
                limit: kind,
                limit_value,
                used,
                requested,
                retry_after,
                after: reject,
                headers: self.headers(now),
            });
        }
        if let Some(l) = self.requests.as_mut() {
            l.take(now, 1);
        }
        if let Some(l) = self.tokens.as_mut() {
            l.take(now, charge);
        }
        self.stats.admitted += 1;
        self.stats.tokens_charged += charge;
        let headers = self.headers(now);
        let mut draw = match req.attempt {
            Some(a) => Stream::new(self.noise_seed, req.key, u64::from(a)),
            None => Stream::new(self.noise_seed, self.rng.next_u64(), u64::MAX),
        };
        if draw.chance(self.config.error_rate.0) {
            self.stats.failed += 1;
            let kind = FailureKind::ServerError(self.config.error_status.0);
            return Admission::Failed(Failed {
                kind,
                after: Some(reject),
                headers,
            });
        }
        if draw.chance(self.config.hang_rate.0) {
            self.stats.failed += 1;
            return Admission::Failed(Failed {
                kind: FailureKind::Hung,
                after: None,
                headers,
            });
        }
        let completion = req.completion_tokens.min(req.max_tokens);
        let z = if self.config.latency.sigma.0 > 0.0 {
            draw.standard_normal()
        } else {
            0.0
        };
        let spike = self
            .config
            .schedule
            .slowdowns
            .iter()
            .filter(|s| s.start <= now && now < s.end)
            .map(|s| s.factor)
            .fold(1.0, f64::max);
        let service = self
            .config
            .latency
            .nominal(completion)
            .mul_f64(self.config.latency.noise_factor(z) * spike);
        let (queued, slot) = self.queue_for_capacity(now, service);
        let usage = Usage {
            prompt_tokens: req.prompt_tokens,
            completion_tokens: completion,
        };
        self.stats.tokens_billed += usage.total();
        self.stats.prompt_tokens_billed += u64::from(usage.prompt_tokens);
        Admission::Admitted(Admitted {
            latency: queued + service,
            queued,
            usage,
            truncated: completion < req.completion_tokens,
            verdict: self.verdict(req.key),
            headers,
            slot,
        })
    }

    /// Charges a refused request as [`RefusedCharge`] says, and returns its new wait (the charge
    /// makes it longer), so that a request retried exactly then is still admitted. `None` when
    /// nothing is charged.
    fn charge_refusal(&mut self, now: Duration, charge: u64) -> Option<Duration> {
        let tokens = match self.config.refused_charge {
            RefusedCharge::None => return None,
            RefusedCharge::Requests => 0,
            RefusedCharge::RequestsAndTokens => charge,
        };
        if let Some(l) = self.requests.as_mut() {
            l.charge(now, 1);
        }
        if tokens > 0
            && let Some(l) = self.tokens.as_mut()
        {
            l.charge(now, tokens);
            self.stats.tokens_charged += tokens;
        }
        let wait = |l: Option<&mut Limit>, amount: u64| l.and_then(|l| l.wait_for(now, amount)).unwrap_or_default();
        let requests = wait(self.requests.as_mut(), 1);
        Some(requests.max(wait(self.tokens.as_mut(), charge)))
    }

    /// The verdict this provider gives for the work item `key`.
    pub fn verdict(&self, key: u64) -> Verdict {
        Verdict::for_chunk(self.verdict_seed, key, self.config.invalid_rate.0)
    }

    /// With a capacity, a generation starts when a slot is free (FIFO); returns the wait and the
    /// slot it holds.
    fn queue_for_capacity(&mut self, now: Duration, service: Duration) -> (Duration, Option<Slot>) {
        let Some(cap) = self.config.capacity else {
            return (Duration::ZERO, None);
        };
        while self.busy.first().is_some_and(|(end, _)| *end <= now) {
            self.busy.pop_first();
        }
        let start = if (self.busy.len() as u64) < cap.get() {
            now
        } else {
            self.busy.pop_first().map_or(now, |(end, _)| end)
        };
        self.next_slot += 1;
        let slot = Slot {
            end: start + service,
            id: self.next_slot,
        };
        self.busy.insert((slot.end, slot.id));
        (start - now, Some(slot))
    }

    /// Frees a generation slot early (its client went away).
    pub fn release(&mut self, slot: Slot) {
        self.busy.remove(&(slot.end, slot.id));
    }

    /// Fails every request from `start` to `end` with `status` (an admin call).
    pub fn add_outage(&mut self, start: Duration, end: Duration, status: u16) {
        self.config
            .schedule
            .outages
            .push(crate::config::Outage { start, end, status });
    }

    /// Changes latency and fault settings from now on (an admin call).
    pub fn set_behaviour(
        &mut self,
        latency: Option<LatencyConfig>,
        error_rate: Option<Probability>,
        hang_rate: Option<Probability>,
    ) {
        if let Some(l) = latency {
            self.config.latency = l;
        }
        if let Some(e) = error_rate {
            self.config.error_rate = e;
        }
        if let Some(h) = hang_rate {
            self.config.hang_rate = h;
        }
    }
}

/// An Azure window counter for `limit` per minute: the old counter with its new limit (same
/// length, same usage), or a new one.
fn update_window(
    old: Option<Limit>,
    limit: Option<NonZeroU64>,
    length: impl Fn(u64) -> Duration,
    per_window: impl Fn(u64, Duration) -> u64,
) -> Option<Limit> {
    let l = limit?.get();
    match old {
        Some(Limit::Window(mut w)) => {
            let len = w.length();
            w.set_limit(per_window(l, len));
            Some(Limit::Window(w))
        }
        _ => {
            let len = length(l);
            Some(Limit::Window(Window::new(len, per_window(l, len))))
        }
    }
}

fn update_bucket(old: Option<Limit>, now: Duration, limit: Option<NonZeroU64>) -> Option<Limit> {
    match (old, limit) {
        (_, None) => None,
        (Some(Limit::Bucket(mut b)), Some(l)) => {
            b.set_limit(now, l.get());
            Some(Limit::Bucket(b))
        }
        (_, Some(l)) => Some(Limit::Bucket(Bucket::new(l.get()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LatencyConfig, Outage, Probability, Schedule, Sigma, TpmCharge};
    use proptest::prelude::*;

    fn cfg(tpm: Option<u64>, rpm: Option<u64>) -> ProviderConfig {
        ProviderConfig {
            tpm: tpm.and_then(NonZeroU64::new),
            rpm: rpm.and_then(NonZeroU64::new),
            latency: LatencyConfig {
                sigma: Sigma(0.0),
                ..LatencyConfig::default()
            },
            ..ProviderConfig::default()
        }
    }

    fn req(prompt: u32, max: u32) -> ModelRequest {
        ModelRequest {
            prompt_tokens: prompt,
            max_tokens: max,
            completion_tokens: max / 2,
            key: 1,
            attempt: None,
        }
    }

    const T0: Duration = Duration::ZERO;

    #[test]
    fn tpm_charge_is_prompt_plus_max_tokens_by_default() {
        // 1000 TPM, a request of 300 + 200: two fit in the full bucket, the third does not.
        let mut p = Provider::new(cfg(Some(1000), None));
        assert!(matches!(p.admit(T0, &req(300, 200)), Admission::Admitted(_)));
        assert!(matches!(p.admit(T0, &req(300, 200)), Admission::Admitted(_)));
        let Admission::Throttled(t) = p.admit(T0, &req(300, 200)) else {
            panic!("should throttle")
        };
        assert_eq!(t.limit, LimitKind::Tokens);
        assert_eq!((t.limit_value, t.used, t.requested), (1000, 1000, 500));
        // 500 tokens at 1000/min take exactly 30 s to come back.
        assert_eq!(t.retry_after, Duration::from_secs(30));
    }

    #[test]
    fn a_refused_request_costs_what_refused_charge_says() {
        // 1,000 TPM, requests of 500: two fill the bucket. Three more at once are refused. Charged
        // nothing, each is told 30 s (the time 500 tokens take to come back). Charged their tokens,
        // each refusal deepens the debt: 30 s, then 60 s, then 90 s, as "continuously resending a
        // request won't work" warns. Charged a request only, the token wait does not grow.
        let waits = |refused: RefusedCharge| -> Vec<u64> {
            let mut c = cfg(Some(1000), Some(1_000));
            c.refused_charge = refused;
            let mut p = Provider::new(c);
            p.admit(T0, &req(300, 200));
            p.admit(T0, &req(300, 200));
            (0..3)
                .map(|_| match p.admit(T0, &req(300, 200)) {
                    Admission::Throttled(t) => t.retry_after.as_secs(),
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(waits(RefusedCharge::None), [30, 30, 30]);
        assert_eq!(waits(RefusedCharge::Requests), [30, 30, 30]);
        assert_eq!(waits(RefusedCharge::RequestsAndTokens), [60, 90, 120]);
    }

    #[test]
    fn max_of_prompt_and_max_charges_the_larger() {
        let mut c = cfg(Some(1000), None);
        c.tpm_charge = TpmCharge::MaxOfPromptAndMax;
        let mut p = Provider::new(c);
        for _ in 0..3 {
            assert!(
                matches!(p.admit(T0, &req(300, 200)), Admission::Admitted(_)),
                "300 each: three fit"
            );
        }
        assert!(matches!(p.admit(T0, &req(300, 200)), Admission::Throttled(_)));
    }

    #[test]
    fn a_request_larger_than_the_whole_limit_is_too_large_not_throttled() {
        let mut p = Provider::new(cfg(Some(1000), None));
        let Admission::Failed(f) = p.admit(T0, &req(900, 200)) else {
            panic!("too large")
        };
        assert_eq!(
            f.kind,
            FailureKind::TooLarge {
                limit: LimitKind::Tokens,
                limit_value: 1000,
                requested: 1100
            }
        );
        assert_eq!(f.kind.status(), Some(429));
    }

    #[test]
    fn headers_report_limit_remaining_and_reset() {
        let mut p = Provider::new(cfg(Some(60_000), Some(60)));
        let Admission::Admitted(a) = p.admit(T0, &req(1000, 500)) else {
            panic!()
        };
        let h = a.headers;
        assert_eq!((h.limit_tokens, h.remaining_tokens), (Some(60_000), Some(58_500)));
        assert_eq!((h.limit_requests, h.remaining_requests), (Some(60), Some(59)));
        // 1500 tokens at 1000/s and 1 request at 1/s both take 1.5 s and 1 s to refill.
        assert_eq!(h.reset_tokens, Some(Duration::from_millis(1500)));
        assert_eq!(h.reset_requests, Some(Duration::from_secs(1)));
    }

    #[test]
    fn latency_is_base_plus_per_token_time_without_noise() {
        let mut p = Provider::new(cfg(None, None));
        let Admission::Admitted(a) = p.admit(T0, &req(10, 100)) else {
            panic!()
        };
        // 400 ms + 15 ms × 50 tokens.
        assert_eq!(a.latency, Duration::from_millis(1150));
        assert_eq!(
            a.usage,
            Usage {
                prompt_tokens: 10,
                completion_tokens: 50
            }
        );
    }

    #[test]
    fn an_answer_admitted_in_a_slowdown_takes_its_factor_times_as_long() {
        // A latency spike from 10 s to 20 s, 4 times slower: 1,150 ms becomes 4,600 ms inside
        // it, and is back to 1,150 ms at its end (the window is [start, end)).
        let mut c = cfg(None, None);
        c.schedule.slowdowns.push(crate::config::Slowdown {
            start: Duration::from_secs(10),
            end: Duration::from_secs(20),
            factor: 4.0,
        });
        let mut p = Provider::new(c);
        let latency = |p: &mut Provider, at: u64| match p.admit(Duration::from_secs(at), &req(10, 100)) {
            Admission::Admitted(a) => a.latency,
            other => panic!("{other:?}"),
        };
        assert_eq!(latency(&mut p, 9), Duration::from_millis(1150));
        assert_eq!(latency(&mut p, 10), Duration::from_millis(4600));
        assert_eq!(latency(&mut p, 19), Duration::from_millis(4600));
        assert_eq!(latency(&mut p, 20), Duration::from_millis(1150));
    }

    #[test]
    fn noise_never_goes_below_the_documented_minimum() {
        let mut c = cfg(None, None);
        c.latency.sigma = Sigma(0.8);
        let min = c.latency.minimum(50);
        let mut p = Provider::new(c);
        for _ in 0..5_000 {
            let Admission::Admitted(a) = p.admit(T0, &req(10, 100)) else {
                panic!()
            };
            assert!(a.latency >= min, "{:?} < {:?}", a.latency, min);
        }
    }

    #[test]
    fn capacity_queues_excess_generations_in_order() {
        // One slot: the second request waits for the first to finish, the third for the second.
        let mut c = cfg(None, None);
        c.capacity = NonZeroU64::new(1);
        let mut p = Provider::new(c);
        let lat: Vec<Duration> = (0..3)
            .map(|_| match p.admit(T0, &req(10, 100)) {
                Admission::Admitted(a) => a.latency,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(lat, [1150, 2300, 3450].map(Duration::from_millis));
    }

    #[test]
    fn a_released_slot_is_free_for_the_next_request() {
        // One slot: a client that goes away frees it, so the next request does not queue.
        let mut c = cfg(None, None);
        c.capacity = NonZeroU64::new(1);
        let mut p = Provider::new(c);
        let Admission::Admitted(first) = p.admit(T0, &req(10, 100)) else {
            panic!()
        };
        p.release(first.slot.expect("a slot with a capacity"));
        let Admission::Admitted(second) = p.admit(T0, &req(10, 100)) else {
            panic!()
        };
        assert_eq!(second.queued, Duration::ZERO);
    }

    #[test]
    fn a_time_scaled_provider_runs_faster_with_the_same_decisions() {
        // At K = 10, 30 s of model time pass in 3 s: a request that would wait 30 s waits 3 s,
        // and latencies shrink tenfold.
        let mut c = cfg(Some(1000), None);
        c.time_scale = 10.0;
        let mut p = Provider::new(c);
        let Admission::Admitted(a) = p.admit(T0, &req(300, 200)) else {
            panic!()
        };
        assert_eq!(
            a.latency,
            Duration::from_millis(190),
            "(400 ms + 15 ms × 100 tokens) / 10"
        );
        assert!(matches!(p.admit(T0, &req(300, 200)), Admission::Admitted(_)));
        let Admission::Throttled(t) = p.admit(T0, &req(300, 200)) else {
            panic!()
        };
        assert_eq!(t.retry_after, Duration::from_secs(3));
        assert!(matches!(
            p.admit(Duration::from_secs(3), &req(300, 200)),
            Admission::Admitted(_)
        ));
    }

    #[test]
    fn noise_follows_the_chunk_and_attempt_not_the_arrival_order() {
        // Two providers meet the same (key, attempt) requests in opposite orders: each request
        // gets the same latency and the same fate from both, as two strategies would.
        let mut c = cfg(None, None);
        c.latency.sigma = Sigma(0.5);
        c.error_rate = Probability(0.3);
        let reqs: Vec<ModelRequest> = (0..40)
            .map(|i| ModelRequest {
                key: i / 2,
                attempt: Some((i % 2) as u32),
                ..req(100, 100)
            })
            .collect();
        let fate = |a: &Admission| match a {
            Admission::Admitted(x) => Some(x.latency),
            _ => None,
        };
        let mut forward = Provider::new(c.clone());
        let a: Vec<_> = reqs.iter().map(|r| fate(&forward.admit(T0, r))).collect();
        let mut backward = Provider::new(c);
        let mut b: Vec<_> = reqs.iter().rev().map(|r| fate(&backward.admit(T0, r))).collect();
        b.reverse();
        assert_eq!(a, b);
        assert!(
            a.iter().any(Option::is_none) && a.iter().any(Option::is_some),
            "both fates occur"
        );
        // Another attempt at the same chunk is another draw.
        assert_ne!(a[0], a[1], "attempts 0 and 1 of chunk 0 differ");
    }

    #[test]
    fn outage_fails_everything_and_charges_nothing() {
        let mut c = cfg(Some(1000), None);
        c.schedule = Schedule {
            outages: vec![Outage {
                start: Duration::from_secs(10),
                end: Duration::from_secs(20),
                status: 503,
            }],
            limit_changes: vec![],
            slowdowns: vec![],
        };
        let mut p = Provider::new(c);
        let Admission::Failed(f) = p.admit(Duration::from_secs(10), &req(300, 200)) else {
            panic!()
        };
        assert_eq!(f.kind, FailureKind::Outage(503));
        assert_eq!(p.stats().tokens_charged, 0);
        assert!(matches!(
            p.admit(Duration::from_secs(20), &req(300, 200)),
            Admission::Admitted(_)
        ));
    }

    #[test]
    fn scheduled_limit_change_applies_at_its_time() {
        let mut c = cfg(Some(1000), None);
        c.schedule.limit_changes.push(crate::config::LimitChange {
            at: Duration::from_secs(5),
            tpm: NonZeroU64::new(100),
            rpm: None,
        });
        let mut p = Provider::new(c);
        assert_eq!(p.headers(Duration::from_secs(1)).limit_tokens, Some(1000));
        let Admission::Failed(f) = p.admit(Duration::from_secs(6), &req(100, 100)) else {
            panic!()
        };
        assert!(matches!(f.kind, FailureKind::TooLarge { limit_value: 100, .. }));
    }

    #[test]
    fn server_errors_are_charged_and_hangs_never_answer() {
        let mut c = cfg(Some(1_000_000), None);
        c.error_rate = Probability(1.0);
        let mut p = Provider::new(c.clone());
        let Admission::Failed(f) = p.admit(T0, &req(100, 100)) else {
            panic!()
        };
        assert_eq!(f.kind, FailureKind::ServerError(500));
        assert_eq!(p.stats().tokens_charged, 200);
        c.error_rate = Probability(0.0);
        c.hang_rate = Probability(1.0);
        let mut p = Provider::new(c);
        let Admission::Failed(f) = p.admit(T0, &req(100, 100)) else {
            panic!()
        };
        assert_eq!((f.kind, f.after), (FailureKind::Hung, None));
    }

    #[test]
    fn azure_derives_rpm_from_tpm_and_enforces_it_per_second() {
        // 100,000 TPM → 600 RPM → at most 10 requests in one second.
        let mut c = cfg(Some(100_000), None);
        c.profile = Profile::Azure;
        let mut p = Provider::new(c);
        for _ in 0..10 {
            assert!(matches!(
                p.admit(Duration::from_millis(100), &req(10, 10)),
                Admission::Admitted(_)
            ));
        }
        let Admission::Throttled(t) = p.admit(Duration::from_millis(100), &req(10, 10)) else {
            panic!()
        };
        assert_eq!(
            (t.limit, t.retry_after),
            (LimitKind::Requests, Duration::from_millis(900))
        );
    }

    fn profile() -> impl Strategy<Value = Profile> {
        prop_oneof![Just(Profile::Openai), Just(Profile::Azure)]
    }

    proptest! {
        /// Whatever arrives, the tokens admitted in any window [a, b] never exceed what the limit
        /// allows: one minute's worth plus the refill over the window (OpenAI), or the limit once
        /// per minute window touched (Azure).
        #[test]
        fn admitted_tokens_never_exceed_what_the_limit_allows(
            tpm in 1_000u64..50_000,
            profile in profile(),
            reqs in proptest::collection::vec((0u64..4_000, 1u32..800, 1u32..400), 1..120),
        ) {
            let mut c = cfg(Some(tpm), Some(1_000_000));
            c.profile = profile;
            let mut p = Provider::new(c);
            let mut now = 0u64;
            let mut admitted: Vec<(u64, u64)> = vec![];
            for (gap, prompt, max) in reqs {
                now += gap;
                if let Admission::Admitted(_) = p.admit(Duration::from_millis(now), &req(prompt, max)) {
                    admitted.push((now, u64::from(prompt) + u64::from(max)));
                }
            }
            for i in 0..admitted.len() {
                for j in i..admitted.len() {
                    let total: u64 = admitted[i..=j].iter().map(|a| a.1).sum();
                    let (a, b) = (admitted[i].0, admitted[j].0);
                    let allowed = match profile {
                        Profile::Openai => u128::from(tpm) * 60_000 + u128::from(tpm) * u128::from(b - a),
                        Profile::Azure => u128::from(tpm) * u128::from(b / 60_000 - a / 60_000 + 1) * 60_000,
                    };
                    prop_assert!(u128::from(total) * 60_000 <= allowed, "{total} tokens in [{a}, {b}] ms");
                }
            }
        }

        /// Azure, limits changing at random times: no minute window admits more tokens than the
        /// largest TPM limit in force during it, because a change keeps what the window used
        /// (a counter started afresh at each change would admit both limits in one window).
        #[test]
        fn an_azure_window_never_admits_more_than_its_largest_limit(
            tpm in 1_000u64..50_000,
            changes in proptest::collection::vec((1u64..180_000, 1_000u64..50_000), 1..6),
            reqs in proptest::collection::vec((0u64..3_000, 1u32..800), 1..200),
        ) {
            let mut c = cfg(Some(tpm), Some(1_000_000));
            c.profile = Profile::Azure;
            let mut changes = changes;
            changes.sort();
            for (at, t) in &changes {
                c.schedule.limit_changes.push(crate::config::LimitChange {
                    at: Duration::from_millis(*at),
                    tpm: NonZeroU64::new(*t),
                    rpm: None,
                });
            }
            let mut p = Provider::new(c);
            let mut now = 0u64;
            let mut per_window = std::collections::BTreeMap::<u64, u64>::new();
            for (gap, prompt) in reqs {
                now += gap;
                if let Admission::Admitted(_) = p.admit(Duration::from_millis(now), &req(prompt, 100)) {
                    *per_window.entry(now / 60_000).or_default() += u64::from(prompt) + 100;
                }
            }
            for (w, used) in per_window {
                let (start, end) = (w * 60_000, (w + 1) * 60_000);
                let mut in_force = vec![];
                let mut current = tpm;
                for (at, t) in &changes {
                    if *at <= start { current = *t; }
                }
                in_force.push(current);
                in_force.extend(changes.iter().filter(|(at, _)| *at > start && *at < end).map(|(_, t)| *t));
                let max = in_force.into_iter().max().expect("one limit at least");
                prop_assert!(used <= max, "window {} used {} > {}", w, used, max);
            }
        }

        /// A request refused with a retry-after is admitted when retried exactly then, if
        /// nothing else arrived in between.
        #[test]
        fn throttled_request_is_admitted_at_its_retry_after(
            tpm in 1_000u64..100_000,
            rpm in 1u64..600,
            profile in profile(),
            refused in prop_oneof![Just(RefusedCharge::None), Just(RefusedCharge::Requests), Just(RefusedCharge::RequestsAndTokens)],
            warmup in proptest::collection::vec((0u64..2_000, 1u32..500), 0..60),
            last in (1u32..500, 1u32..400),
        ) {
            let mut c = cfg(Some(tpm), Some(rpm));
            c.profile = profile;
            c.refused_charge = refused;
            let mut p = Provider::new(c);
            let mut now = Duration::ZERO;
            for (gap, prompt) in warmup {
                now += Duration::from_millis(gap);
                let _ = p.admit(now, &req(prompt, 100));
            }
            let r = req(last.0, last.1);
            if let Admission::Throttled(t) = p.admit(now, &r) {
                prop_assert!(t.retry_after > Duration::ZERO);
                let again = p.admit(now + t.retry_after, &r);
                prop_assert!(matches!(again, Admission::Admitted(_)), "{:?}", again);
            }
        }
    }
}
