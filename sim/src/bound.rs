//! `ideal_makespan_s`: a lower bound on the time needed to do the work a run completed, that no
//! strategy can beat.
//!
//! For the set S of chunks whose results the run kept, it is the largest of:
//! 1. **arrivals**: for each chunk in S, its file's arrival plus the chunk's minimum latency;
//! 2. **tokens**: the time until the TPM limit could have admitted the charges of all of S
//!    (a full bucket at the start plus the refill, or one limit per window with the azure
//!    profile), plus the smallest minimum latency in S;
//! 3. **requests**: the same for the request limit and |S| requests;
//! 4. **capacity**: with a cap of k concurrent generations, the sum of minimum latencies over k.
//!
//! Every chunk in S needed at least one admitted request with its charge and at least its minimum
//! latency after its file arrived, so each term is a lower bound, and so is their maximum. Outages
//! and throttling only make real runs slower. Because S is the work the run actually completed,
//! `efficiency = ideal / makespan` never exceeds 1, whatever was rejected or cancelled.

use std::num::NonZeroU64;
use std::time::Duration;

use mock_llm::{Profile, ProviderConfig};

use crate::results::ResultStore;
use crate::workload::Workload;

/// Computes the bound. `provider` must carry the run's schedule of limit changes.
pub fn ideal_makespan(workload: &Workload, provider: &ProviderConfig, results: &ResultStore) -> Duration {
    let mut arrival_bound = Duration::ZERO;
    let (mut charge, mut count, mut sum_min, mut min_min) = (0u64, 0u64, Duration::ZERO, Duration::MAX);
    for f in workload.files() {
        if results.committed_count(f.id) == 0 {
            continue;
        }
        for c in 0..f.chunks {
            if results.committed(f.id, c).is_none() {
                continue;
            }
            let spec = workload.chunk(f.id, c);
            let lat = provider.latency.minimum(spec.completion_tokens.min(spec.max_tokens));
            arrival_bound = arrival_bound.max(f.arrival + lat);
            charge += provider.charge(spec.prompt_tokens, spec.max_tokens);
            count += 1;
            sum_min += lat;
            min_min = min_min.min(lat);
        }
    }
    if count == 0 {
        return Duration::ZERO;
    }
    let tokens = time_to_admit(provider, charge, |_, tpm, _| tpm, Duration::from_secs(60));
    let requests = time_to_admit(provider, count, |p, tpm, rpm| p.effective_rpm(tpm, rpm), Duration::ZERO);
    let capacity = provider
        .capacity
        .map_or(Duration::ZERO, |k| sum_min / k.get().min(u64::from(u32::MAX)) as u32);
    let rate_bound = tokens.max(requests).map_or(Duration::ZERO, |t| t + min_min);
    arrival_bound.max(rate_bound).max(capacity)
}

/// The earliest time by which `amount` units could have been admitted under the limit picked by
/// `pick` (`None`: the limit is absent). `window` is the azure TPM window; for the request limit
/// the azure window follows the provider's rule.
fn time_to_admit(
    provider: &ProviderConfig,
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
        // Unlimited for at least a while: no bound from this limit.
        return None;
    }
    let limit_at = |i: usize| segments[i].1.expect("checked above").get();
    match provider.profile {
        Profile::Openai => {
            // A full bucket at the start, then a refill of limit/60 per second (the level never
            // jumps when a limit rises), so admitted(t) <= L0 + integral of L(s)/60.
            let mut admitted = limit_at(0) as f64;
            let need = amount as f64;
            if admitted >= need {
                return Some(Duration::ZERO);
            }
            for i in 0..segments.len() {
                let rate = limit_at(i) as f64 / 60.0;
                let end = segments.get(i + 1).map(|s| s.0);
                let dt = (need - admitted) / rate;
                let reach = segments[i].0.as_secs_f64() + dt;
                match end {
                    Some(e) if reach > e.as_secs_f64() => admitted += rate * (e - segments[i].0).as_secs_f64(),
                    _ => return Some(Duration::from_secs_f64(reach)),
                }
            }
            None
        }
        Profile::Azure => {
            // Fixed windows: each window admits at most the largest limit in force during it.
            let (len, per_window): (Duration, Box<dyn Fn(u64) -> u64>) = if window.is_zero() {
                if limit_at(0) >= 60 {
                    (Duration::from_secs(1), Box::new(|r| r / 60))
                } else {
                    (Duration::from_secs(10), Box::new(|r| (r / 6).max(1)))
                }
            } else {
                (window, Box::new(|t| t))
            };
            let mut admitted = 0u64;
            let mut k = 0u64;
            loop {
                let start = Duration::from_nanos((len.as_nanos() * u128::from(k)) as u64);
                let end = start + len;
                let max_limit = (0..segments.len())
                    .filter(|&i| segments[i].0 < end && segments.get(i + 1).is_none_or(|n| n.0 > start))
                    .map(|i| per_window(limit_at(i)).max(1))
                    .max()
                    .unwrap_or(1);
                admitted += max_limit;
                if admitted >= amount {
                    return Some(start);
                }
                k += 1;
            }
        }
    }
}
