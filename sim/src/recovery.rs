//! Recovery time after a disruption: how long after it until the run works at 90% of what it
//! could. Two kinds, each measured against its own yardstick:
//!
//! - **Down** (an outage or an orchestrator crash), against the run's own pace before it: chunks
//!   validated per second over the 60 s before the disruption started. Recovered: the first second
//!   s at or after the end such that the 10 s from s validate at least 90% of that pace (scaled
//!   down where the run ends inside those 10 s). When nothing was validated before, the first
//!   validated chunk after the end counts as recovery.
//! - **Limits** (the provider's TPM or RPM changed), against the new limits themselves. The run
//!   has recovered at the first second s at or after the change from which, for a minute, it
//!   never falls behind 90% of the new rate: for every t in that minute, the tokens the provider
//!   admitted over [s, t] (the `charged` column) are at least 90% of the token rate times t - s,
//!   less one largest request (whole requests cannot track a rate more closely: a perfect pacer
//!   sends one when the bucket holds its charge), or the same holds for admitted requests
//!   against the request rate, less one request. A stall of more than about one request's
//!   interval therefore cannot hide inside the minute, as it would in a windowed average. This
//!   yardstick assumes the run has the work to fill the limit (a backlog); a run whose arrivals
//!   cannot fill it shows a long recovery, never a flattering one.
//!
//! A run that ends before recovering counts as recovered at its end (there was no more work to
//! recover for). `recovery_s` is the longest over all disruptions.
//!
//! **Backlog** ([`longest_backlog_clearance`], `backlog_cleared_s`): after an outage or a crash,
//! seconds from its end until the files waiting (arrived, not yet ended) are no more than the
//! most there were over the 60 s before it. Under steady arrivals the pace comes back at once
//! (the retries of the work held up validate faster than new work arrives), while the files
//! that queued up meanwhile are still waiting: this is when they are worked off. A strategy that
//! fails what it could not finish has no backlog to work off, so read it beside the failures.

use std::time::Duration;

use crate::recorder::SecondRow;

/// Something a run has to recover from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Disruption {
    /// Nothing could be admitted from `start` to `end` (an outage, or a crash until the restart).
    Down {
        /// When it began.
        start: Duration,
        /// When it ended.
        end: Duration,
    },
    /// The provider's limits became `tpm` and `rpm` (per minute; `None`: no such limit) at `at`.
    Limits {
        /// When they changed.
        at: Duration,
        /// The token limit from then on.
        tpm: Option<u64>,
        /// The request limit from then on.
        rpm: Option<u64>,
        /// The largest charge of one request of the work (see the module docs).
        largest_charge: u64,
    },
}

impl Disruption {
    fn start(&self) -> Duration {
        match *self {
            Disruption::Down { start, .. } => start,
            Disruption::Limits { at, .. } => at,
        }
    }
}

/// Seconds to recover from each disruption that began before `run_end`, the longest of them;
/// `None` when there was none.
pub fn longest_recovery(series: &[SecondRow], disruptions: &[Disruption], run_end: Duration) -> Option<f64> {
    disruptions
        .iter()
        .filter(|d| d.start() < run_end)
        .map(|d| match *d {
            Disruption::Down { start, end } => down_recovery(series, start, end, run_end),
            Disruption::Limits {
                at,
                tpm,
                rpm,
                largest_charge,
            } => limits_recovery(series, at, (tpm, rpm), largest_charge, run_end),
        })
        .reduce(f64::max)
}

/// Seconds from the end of each outage or crash that began before `run_end` until its backlog
/// was worked off (see the module docs), the longest of them; `None` when there was none.
/// `arrivals` are the files' arrival times, in order.
pub fn longest_backlog_clearance(
    series: &[SecondRow],
    disruptions: &[Disruption],
    arrivals: &[Duration],
    run_end: Duration,
) -> Option<f64> {
    // Files arrived by the end of second s, less files ended by then.
    let mut ended = Vec::with_capacity(series.len());
    let mut total = 0i64;
    for r in series {
        total += i64::from(r.files_done);
        ended.push(total);
    }
    let backlog = |s: u64| {
        let arrived = arrivals.partition_point(|a| a.as_secs() <= s) as i64;
        let done = ended.get(s as usize).or(ended.last()).copied().unwrap_or(0);
        arrived - done
    };
    let last = run_end.as_secs();
    disruptions
        .iter()
        .filter(|d| d.start() < run_end)
        .filter_map(|d| match *d {
            Disruption::Down { start, end } => Some((start, end)),
            Disruption::Limits { .. } => None,
        })
        .map(|(start, end)| {
            let start_s = start.as_secs();
            let pre_from = start_s.saturating_sub(60);
            let before = (pre_from..start_s.max(pre_from + 1)).map(backlog).max().unwrap_or(0);
            let cleared = (end.as_secs()..=last).find(|&s| backlog(s) <= before).unwrap_or(last);
            (cleared as f64 - end.as_secs_f64()).max(0.0)
        })
        .reduce(f64::max)
}

fn down_recovery(series: &[SecondRow], start: Duration, end: Duration, run_end: Duration) -> f64 {
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

/// How long a run must keep pace after a limit change to count as recovered.
const KEEP_PACE: u64 = 60;

fn limits_recovery(
    series: &[SecondRow],
    at: Duration,
    (tpm, rpm): (Option<u64>, Option<u64>),
    largest_charge: u64,
    run_end: Duration,
) -> f64 {
    let row = |s: u64| series.get(s as usize);
    let charged = |s: u64| row(s).map_or(0, |r| r.charged) as f64;
    // Requests the provider admitted: sent, less those refused or failed.
    let admitted = |s: u64| row(s).map_or(0, |r| r.requests.saturating_sub(r.throttled + r.errors)) as f64;
    let (at_s, last) = (at.as_secs(), run_end.as_secs());
    // Whether, from `s`, the run keeps within `slack` of 90% of `per_minute` for the window.
    let keeps_pace = |s: u64, per_minute: Option<u64>, slack: f64, got: &dyn Fn(u64) -> f64| {
        let Some(limit) = per_minute else { return false };
        let rate = 0.9 * limit as f64 / 60.0;
        let mut sum = 0.0;
        (s..(s + KEEP_PACE).min(last + 1)).all(|t| {
            sum += got(t);
            sum + slack >= rate * (t + 1 - s) as f64
        })
    };
    for s in at_s..=last {
        if keeps_pace(s, tpm, largest_charge as f64, &charged) || keeps_pace(s, rpm, 1.0, &admitted) {
            return (s as f64 - at.as_secs_f64()).max(0.0);
        }
    }
    (run_end.as_secs_f64() - at.as_secs_f64()).max(0.0)
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
        let down = Disruption::Down {
            start: secs(60),
            end: secs(80),
        };
        let r = longest_recovery(&s, &[down], secs(124)).expect("one disruption");
        assert_eq!(r, 13.0);
    }

    #[test]
    fn a_backlog_left_by_an_outage_is_cleared_when_the_waiting_files_are_worked_off() {
        // One file a second arrives and ends the same second, one chunk each, for 60 s; a 20 s
        // outage ends none, and afterwards the run ends 2 files a second (1 new + 1 of the
        // backlog). The pace is back at once (2 chunks/s against 1 before), but 20 files are
        // waiting at the outage's end, one fewer each second: the backlog is back to its level
        // before (0) at second 99, 19 s after the end.
        let secs = Duration::from_secs;
        let arrivals: Vec<Duration> = (0..130).map(secs).collect();
        let rows: Vec<SecondRow> = (0..130u32)
            .map(|s| {
                let per = match s {
                    0..60 => 1,
                    60..80 => 0,
                    80..100 => 2,
                    _ => 1,
                };
                SecondRow {
                    second: u64::from(s),
                    chunks_validated: per,
                    files_done: per,
                    ..SecondRow::default()
                }
            })
            .collect();
        let down = Disruption::Down {
            start: secs(60),
            end: secs(80),
        };
        let cleared = longest_backlog_clearance(&rows, &[down], &arrivals, secs(129));
        assert_eq!(cleared, Some(19.0));
        assert_eq!(longest_recovery(&rows, &[down], secs(129)), Some(0.0), "the pace alone");
        // A limit change builds no backlog figure.
        assert_eq!(
            longest_backlog_clearance(&rows, &[limits(100, 30_000, 1_000)], &arrivals, secs(129)),
            None
        );
    }

    #[test]
    fn no_disruption_means_no_recovery_figure() {
        assert_eq!(longest_recovery(&series(&[1, 1]), &[], Duration::from_secs(2)), None);
    }

    fn charged(per_second: &[u64]) -> Vec<SecondRow> {
        per_second
            .iter()
            .enumerate()
            .map(|(i, c)| SecondRow {
                second: i as u64,
                requests: u32::from(*c > 0),
                charged: *c,
                ..SecondRow::default()
            })
            .collect()
    }

    fn limits(at: u64, tpm: u64, largest_charge: u64) -> Disruption {
        Disruption::Limits {
            at: Duration::from_secs(at),
            tpm: Some(tpm),
            rpm: None,
            largest_charge,
        }
    }

    #[test]
    fn recovery_from_a_limit_cut_is_time_until_the_run_keeps_pace_with_the_new_limit() {
        // 60,000 TPM cut to 30,000 (500 tokens/s, 90% = 450/s) at 100 s; requests of at most
        // 1,000 tokens. The run stalls 20 s, then admits 500/s. From 118 (two idle seconds), it
        // has 0, 0, 500, 1,000… against 450, 900, 1,350, 1,800… less 1,000: never more than
        // 1,000 behind, and gaining 50/s: it keeps pace. From 117, three idle seconds put it
        // 1,350 behind: it does not. So 18 s. A windowed average over the minute would have said
        // 14 s (54 busy seconds of 60 are 90%).
        let mut per = vec![1_000; 100];
        per.extend(vec![0; 20]);
        per.extend(vec![500; 200]);
        let s = charged(&per);
        let secs = Duration::from_secs;
        assert_eq!(
            longest_recovery(&s, &[limits(100, 30_000, 1_000)], secs(319)),
            Some(18.0)
        );
        // A run that keeps sending at the old rate fills the new limit from the start.
        let steady = charged(&vec![1_000; 320]);
        assert_eq!(
            longest_recovery(&steady, &[limits(100, 30_000, 1_000)], secs(319)),
            Some(0.0)
        );
    }

    #[test]
    fn a_run_that_never_fills_the_new_limit_counts_its_whole_remainder() {
        // 400/s against a limit of 500/s: 80%, below 90%, so it falls 50/s behind and exceeds
        // the 1,000 slack after 20 s, wherever it starts, until the last 20 s of the run (too
        // short to fall further behind): recovery 180 s of the 199 left.
        let s = charged(&vec![400; 300]);
        assert_eq!(
            longest_recovery(&s, &[limits(100, 30_000, 1_000)], Duration::from_secs(299)),
            Some(180.0)
        );
    }

    #[test]
    fn a_perfect_pacer_with_lumpy_requests_keeps_pace() {
        // 30,000 TPM and requests of 1,900 tokens: a pacer sends one every 3.8 s, so most
        // seconds admit nothing. It still keeps pace from the change on.
        let per: Vec<u64> = (0..400u64)
            .map(|t| {
                let sent = |t: u64| (t as f64 * 500.0 / 1_900.0).floor() as u64;
                (sent(t + 1) - sent(t)) * 1_900
            })
            .collect();
        let s = charged(&per);
        assert_eq!(
            longest_recovery(&s, &[limits(100, 30_000, 1_900)], Duration::from_secs(399)),
            Some(0.0)
        );
    }
}
