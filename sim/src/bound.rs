//! `ideal_makespan_s`: a lower bound on the time needed to do a set of work, that no strategy can
//! beat.
//!
//! The engine computes it twice. Over the **required work** (every chunk of every file that the
//! timeline does not cancel; rejected files count), it is one constant per scenario and seed, the
//! same for every strategy: the yardstick of `efficiency`. Over the chunks a run actually kept, it
//! gives `limit_utilization` (how busy the run kept the limits while it worked).
//!
//! For a set S of chunks, it is the largest of:
//! 1. **arrivals**: for each chunk in S, the first moment its file could be sent (its arrival, or
//!    the end of a blackout covering it) plus the chunk's minimum latency;
//! 2. **tokens**: the time until the TPM limit could have admitted the charges of all of S, plus
//!    the smallest minimum latency in S. With the OpenAI profile this is a fluid bucket (full at
//!    the start, refilled at limit/60 per second, capped at one minute's worth) drained greedily
//!    whenever admission is possible; with the azure profile, one limit per window;
//! 3. **requests**: the same for the request limit and |S| requests;
//! 4. **capacity**: with a cap of k concurrent generations, the sum of minimum latencies over k.
//!
//! **Blackouts** are the intervals in which no request can be admitted whatever the strategy
//! does: scheduled outages (the provider fails every request) and crash downtimes (the
//! orchestrator is down until its restart). A bucket still refills during a blackout, but only up
//! to its cap, so the greedy fluid schedule loses exactly the overflow no strategy can avoid.
//!
//! Every chunk in S needed at least one admitted request with its charge and at least its minimum
//! latency after its file arrived, so each term is a lower bound, and so is their maximum.
//! Throttling, retries, errors and waiting only make real runs slower.

use std::num::NonZeroU64;
use std::time::Duration;

use mock_llm::{Profile, ProviderConfig};

use crate::scenario::FileId;
use crate::workload::Workload;

/// Intervals `[start, end)` in which nothing can be admitted, sorted and merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Blackouts(Vec<(Duration, Duration)>);

impl Blackouts {
    /// From any intervals (overlapping, unsorted, empty ones ignored).
    pub fn new(mut spans: Vec<(Duration, Duration)>) -> Self {
        spans.retain(|(a, b)| b > a);
        spans.sort();
        let mut merged: Vec<(Duration, Duration)> = Vec::with_capacity(spans.len());
        for (a, b) in spans {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        Self(merged)
    }

    /// The first moment at or after `t` outside every blackout.
    pub fn first_allowed(&self, t: Duration) -> Duration {
        self.0.iter().find(|(a, b)| *a <= t && t < *b).map_or(t, |(_, b)| *b)
    }

    /// Whether `[a, b)` lies wholly inside one blackout.
    fn covers(&self, a: Duration, b: Duration) -> bool {
        self.0.iter().any(|(s, e)| *s <= a && b <= *e)
    }

    fn inside(&self, t: Duration) -> bool {
        self.0.iter().any(|(a, b)| *a <= t && t < *b)
    }

    fn edges(&self) -> impl Iterator<Item = Duration> + '_ {
        self.0.iter().flat_map(|(a, b)| [*a, *b])
    }
}

/// Computes the bound over the chunks `include` selects. `provider` must carry the run's
/// schedule of limit changes and outages; `blackouts` holds them and any crash downtime.
pub fn ideal_makespan(
    workload: &Workload,
    provider: &ProviderConfig,
    blackouts: &Blackouts,
    include: impl Fn(FileId, u32) -> bool,
) -> Duration {
    ideal_makespans(workload, provider, blackouts, |f, c| [include(f, c)])[0]
}

/// Computes `N` bounds in one pass over the chunks (each chunk's sizes are derived once):
/// `include` says, per chunk, which of the `N` sets it belongs to.
pub fn ideal_makespans<const N: usize>(
    workload: &Workload,
    provider: &ProviderConfig,
    blackouts: &Blackouts,
    include: impl Fn(FileId, u32) -> [bool; N],
) -> [Duration; N] {
    let mut sets = [Accumulated::default(); N];
    for f in workload.files() {
        let sendable = blackouts.first_allowed(f.arrival);
        for c in 0..f.chunks {
            let member = include(f.id, c);
            if !member.contains(&true) {
                continue;
            }
            let spec = workload.chunk(f.id, c);
            let lat = provider.latency.minimum(spec.completion_tokens.min(spec.max_tokens));
            let charge = provider.charge(spec.prompt_tokens, spec.max_tokens);
            for (set, _) in sets.iter_mut().zip(member).filter(|(_, m)| *m) {
                set.add(sendable + lat, charge, lat);
            }
        }
    }
    sets.map(|s| s.bound(provider, blackouts))
}

/// What the bound needs of a set of chunks.
#[derive(Clone, Copy, Debug)]
struct Accumulated {
    arrival_bound: Duration,
    charge: u64,
    count: u64,
    sum_min: Duration,
    min_min: Duration,
}

impl Default for Accumulated {
    fn default() -> Self {
        Self {
            arrival_bound: Duration::ZERO,
            charge: 0,
            count: 0,
            sum_min: Duration::ZERO,
            min_min: Duration::MAX,
        }
    }
}

impl Accumulated {
    fn add(&mut self, earliest_end: Duration, charge: u64, lat: Duration) {
        self.arrival_bound = self.arrival_bound.max(earliest_end);
        self.charge += charge;
        self.count += 1;
        self.sum_min += lat;
        self.min_min = self.min_min.min(lat);
    }

    fn bound(&self, provider: &ProviderConfig, blackouts: &Blackouts) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let tokens = time_to_admit(
            provider,
            blackouts,
            self.charge,
            |_, tpm, _| tpm,
            Duration::from_secs(60),
        );
        let requests = time_to_admit(
            provider,
            blackouts,
            self.count,
            |p, tpm, rpm| p.effective_rpm(tpm, rpm),
            Duration::ZERO,
        );
        let capacity = provider.capacity.map_or(Duration::ZERO, |k| {
            self.sum_min / k.get().min(u64::from(u32::MAX)) as u32
        });
        let rate_bound = tokens.max(requests).map_or(Duration::ZERO, |t| t + self.min_min);
        self.arrival_bound.max(rate_bound).max(capacity)
    }
}

/// The earliest time by which `amount` units could have been admitted under the limit picked by
/// `pick` (`None`: the limit is absent for a while, so it gives no bound). `window` is the azure
/// TPM window; zero means the azure request window, whose length follows the provider's rule.
fn time_to_admit(
    provider: &ProviderConfig,
    blackouts: &Blackouts,
    amount: u64,
    pick: impl Fn(&ProviderConfig, Option<NonZeroU64>, Option<NonZeroU64>) -> Option<NonZeroU64>,
    window: Duration,
) -> Option<Duration> {
    // Limits in force over time: (from, limit per minute).
    let mut segments = vec![(Duration::ZERO, pick(provider, provider.tpm, provider.rpm))];
    let (mut tpm, mut rpm) = (provider.tpm, provider.rpm);
    for c in &provider.schedule.limit_changes {
        tpm = c.tpm.or(tpm);
        rpm = c.rpm.or(rpm);
        segments.push((c.at, pick(provider, tpm, rpm)));
    }
    if segments.iter().any(|s| s.1.is_none()) {
        return None;
    }
    let segments: Vec<(Duration, u64)> = segments
        .into_iter()
        .map(|(t, l)| (t, l.expect("checked above").get()))
        .collect();
    match provider.profile {
        Profile::Openai => Some(fluid_bucket(&segments, blackouts, amount)),
        Profile::Azure => {
            let (len, per_window): (Duration, Box<dyn Fn(u64) -> u64>) = if window.is_zero() {
                let len = mock_llm::config::azure_request_window(segments[0].1);
                (len, Box::new(move |r| mock_llm::config::azure_per_window(r, len)))
            } else {
                (window, Box::new(|t| t))
            };
            let limit_at = |t: Duration| segments.iter().rev().find(|s| s.0 <= t).map_or(segments[0].1, |s| s.1);
            let mut admitted = 0u64;
            let mut k = 0u64;
            loop {
                let start = Duration::from_nanos((len.as_nanos() * u128::from(k)) as u64);
                let end = start + len;
                k += 1;
                if blackouts.covers(start, end) {
                    continue;
                }
                // The window admits at most the largest limit in force during it: a counter keeps
                // what it used across a limit change (see `mock_llm::limiter::Window::set_limit`).
                let max_limit = segments
                    .iter()
                    .enumerate()
                    .filter(|&(i, s)| s.0 < end && segments.get(i + 1).is_none_or(|n| n.0 > start))
                    .map(|(_, s)| per_window(s.1))
                    .chain(std::iter::once(per_window(limit_at(start))))
                    .max()
                    .unwrap_or(1);
                admitted += max_limit;
                if admitted >= amount {
                    return Some(blackouts.first_allowed(start));
                }
            }
        }
    }
}

/// When a fluid bucket (starting full, refilled at limit/60 per second, capped at one minute's
/// worth, its level kept but capped when the limit changes) drained greedily outside blackouts
/// has admitted `amount`. Greedy draining is optimal: it keeps the level lowest, so it loses the
/// least to the cap during blackouts.
fn fluid_bucket(segments: &[(Duration, u64)], blackouts: &Blackouts, amount: u64) -> Duration {
    let need = amount as f64;
    let mut edges: Vec<Duration> = segments
        .iter()
        .map(|s| s.0)
        .chain(blackouts.edges())
        .filter(|t| !t.is_zero())
        .collect();
    edges.sort();
    edges.dedup();
    let limit_at = |t: Duration| segments.iter().rev().find(|s| s.0 <= t).map_or(segments[0].1, |s| s.1) as f64;
    let mut t = Duration::ZERO;
    let mut level = segments[0].1 as f64;
    let mut admitted = 0.0f64;
    let mut next_edge = edges.into_iter();
    loop {
        let limit = limit_at(t);
        let rate = limit / 60.0; // per second
        level = level.min(limit);
        let end = next_edge.next();
        let span = end.map(|e| (e - t).as_secs_f64());
        if blackouts.inside(t) {
            let span = span.expect("a blackout ends");
            level = (level + rate * span).min(limit);
        } else {
            admitted += level;
            level = 0.0;
            if admitted >= need {
                return t;
            }
            let reach = (need - admitted) / rate;
            match span {
                Some(s) if reach > s => admitted += rate * s,
                _ => return t + Duration::from_secs_f64(reach),
            }
        }
        t = end.expect("the last segment returns");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_bucket_without_blackouts_admits_its_capacity_then_its_refill() {
        // 60,000 per minute: 60,000 at once, then 1,000 per second: 90,000 takes 30 s.
        let t = fluid_bucket(&[(Duration::ZERO, 60_000)], &Blackouts::default(), 90_000);
        assert_eq!(t, secs(30));
    }

    #[test]
    fn an_outage_costs_its_length_once_the_bucket_is_full_again() {
        // The same, with an outage from 10 s to 100 s. By 10 s: 60,000 + 10,000 admitted. During
        // the outage the bucket refills to its cap of 60,000 (after 60 s) and wastes the rest.
        // At 100 s: 60,000 more at once (130,000), then 1,000/s: 140,000 at 110 s.
        let b = Blackouts::new(vec![(secs(10), secs(100))]);
        assert_eq!(fluid_bucket(&[(Duration::ZERO, 60_000)], &b, 140_000), secs(110));
        // A short outage (5 s) loses nothing: the 5,000 it refilled are admitted at its end.
        let b = Blackouts::new(vec![(secs(10), secs(15))]);
        assert_eq!(fluid_bucket(&[(Duration::ZERO, 60_000)], &b, 90_000), secs(30));
    }

    #[test]
    fn blackouts_merge_and_push_arrivals_to_their_end() {
        let b = Blackouts::new(vec![(secs(5), secs(10)), (secs(8), secs(20)), (secs(30), secs(30))]);
        assert_eq!(b, Blackouts(vec![(secs(5), secs(20))]));
        assert_eq!(b.first_allowed(secs(7)), secs(20));
        assert_eq!(b.first_allowed(secs(20)), secs(20));
        assert_eq!(b.first_allowed(secs(2)), secs(2));
    }
}
