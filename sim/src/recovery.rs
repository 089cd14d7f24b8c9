//! Recovery time after a disruption (an outage or an orchestrator crash): how long after it ends
//! until the run validates chunks at 90% of its pace before it began.
//!
//! Pace before: chunks validated per second over the 60 s before the disruption started. Recovered:
//! the first second s at or after the end such that the 10 s from s validate at least 90% of that
//! pace (scaled down where the run ends inside those 10 s). When nothing was validated before the
//! disruption, the first validated chunk after it counts as recovery. A run that ends before
//! recovering counts as recovered at its end: there was no more work to recover for.

use std::time::Duration;

use crate::recorder::SecondRow;

/// Seconds to recover from each disruption `(start, end)` that began before `run_end`, the longest
/// of them; `None` when there was none.
pub fn longest_recovery(series: &[SecondRow], disruptions: &[(Duration, Duration)], run_end: Duration) -> Option<f64> {
    disruptions
        .iter()
        .filter(|(start, _)| *start < run_end)
        .map(|&(start, end)| recovery(series, start, end, run_end))
        .reduce(f64::max)
}

fn recovery(series: &[SecondRow], start: Duration, end: Duration, run_end: Duration) -> f64 {
    let validated = |s: u64| series.get(s as usize).map_or(0, |r| u64::from(r.chunks_validated));
    let (start_s, end_s, last) = (start.as_secs(), end.as_secs(), run_end.as_secs());
    let pre_from = start_s.saturating_sub(60);
    let pre_len = start_s - pre_from;
    let pre_rate = if pre_len == 0 {
        0.0
    } else {
        (pre_from..start_s).map(validated).sum::<u64>() as f64 / pre_len as f64
    };
    let end_f = end.as_secs_f64();
    for s in end_s..=last {
        let recovered = if pre_rate == 0.0 {
            validated(s) > 0
        } else {
            let to = (s + 10).min(last + 1);
            let got = (s..to).map(validated).sum::<u64>() as f64;
            got >= 0.9 * pre_rate * (to - s) as f64
        };
        if recovered {
            return (s as f64 - end_f).max(0.0);
        }
    }
    (run_end.as_secs_f64() - end_f).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(rates: &[u32]) -> Vec<SecondRow> {
        rates
            .iter()
            .enumerate()
            .map(|(i, r)| SecondRow {
                second: i as u64,
                chunks_validated: *r,
                ..SecondRow::default()
            })
            .collect()
    }

    #[test]
    fn recovery_is_time_from_the_end_until_the_old_pace_is_back() {
        // 2/s for 60 s, nothing during a 20 s outage, 1/s for 15 s, then 2/s again.
        let mut rates = vec![2; 60];
        rates.extend(vec![0; 20]);
        rates.extend(vec![1; 15]);
        rates.extend(vec![2; 30]);
        let s = series(&rates);
        let secs = Duration::from_secs;
        // Before: 2/s, so recovery needs 18 chunks in 10 s. 1/s runs over seconds 80-94 and 2/s
        // from 95: the first such window starts at 93 (2×1 + 8×2 = 18), 13 s after the end.
        let r = longest_recovery(&s, &[(secs(60), secs(80))], secs(124)).expect("one disruption");
        assert_eq!(r, 13.0);
    }

    #[test]
    fn no_disruption_means_no_recovery_figure() {
        assert_eq!(longest_recovery(&series(&[1, 1]), &[], Duration::from_secs(2)), None);
    }
}
