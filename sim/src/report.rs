//! The report: what a run produced, as data. Everything downstream (tables, files, comparisons,
//! regression checks) is a function of these types.
//!
//! The format of `report.json` is pinned: later versions add fields, never rename them.

use serde::{Deserialize, Serialize};

pub use crate::numbers::round6;
use crate::params::Params;
use crate::recorder::{Event, SecondRow};
use crate::scenario::{Action, ResultsMode, Scenario};

/// The version of the `report.json` format.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole `report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportFile {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// What was run.
    pub scenario: ScenarioInfo,
    /// One entry per strategy run (per strategy and value, for a sweep).
    pub runs: Vec<RunReport>,
    /// What was swept, for a report written by `orchbench sweep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepInfo>,
}

/// The parameter a sweep varied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepInfo {
    /// The parameter (`max-parallelism`, `target-tpm`, `throttle-threshold`, `tpm`, `rpm`).
    pub param: String,
    /// Its values, in run order.
    pub values: Vec<f64>,
}

/// The scenario, as a report shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioInfo {
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// The seed used.
    pub seed: u64,
    /// Number of files.
    pub files: u32,
    /// Number of users.
    pub users: u32,
    /// Total chunks.
    pub chunks_total: u64,
    /// The provider's model.
    pub model: String,
    /// The limiter profile (`openai`, `azure`).
    pub profile: String,
    /// TPM limit at the start (null: none).
    pub tpm: Option<u64>,
    /// RPM limit at the start (null: none).
    pub rpm: Option<u64>,
    /// `max_tokens` of every request.
    pub max_tokens: u32,
    /// When results are stored.
    pub results: ResultsMode,
    /// The parameter store's initial values.
    pub params: Params,
    /// The timeline.
    pub timeline: Vec<TimelineInfo>,
}

impl ScenarioInfo {
    /// A scenario as a report shows it.
    pub fn of(s: &Scenario) -> Self {
        let workload = crate::workload::Workload::generate(&s.workload, s.seed);
        let provider = s.provider_config();
        ScenarioInfo {
            name: s.name.clone(),
            description: s.description.clone(),
            seed: s.seed,
            files: s.workload.files,
            users: s.workload.users.get(),
            chunks_total: workload.chunks_total(),
            model: provider.model.clone(),
            profile: match provider.profile {
                mock_llm::Profile::Openai => "openai".into(),
                mock_llm::Profile::Azure => "azure".into(),
            },
            tpm: provider.tpm.map(|t| t.get()),
            rpm: provider.effective_rpm(provider.tpm, provider.rpm).map(|r| r.get()),
            max_tokens: s.workload.max_tokens.get(),
            results: s.results,
            params: s.params.clone(),
            timeline: s
                .events()
                .iter()
                .map(|e| TimelineInfo::new(e.at.0, &e.action))
                .collect(),
        }
    }
}

/// A timeline entry, as a report shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineInfo {
    /// Seconds from the start.
    pub at_s: f64,
    /// What happens.
    pub action: serde_json::Value,
}

impl TimelineInfo {
    /// From a parsed entry.
    pub fn new(at: std::time::Duration, action: &Action) -> Self {
        Self {
            at_s: at.as_secs_f64(),
            action: serde_json::to_value(action).expect("timeline actions always serialize"),
        }
    }
}

/// How a run was executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// In virtual time, in-process.
    Simulated,
    /// In real time, over HTTP.
    Live,
}

/// One strategy's run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The strategy's name.
    pub strategy: String,
    /// Simulated or live.
    pub mode: Mode,
    /// The swept parameter's value for this run, in a sweep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep_value: Option<f64>,
    /// The figures.
    pub summary: Summary,
    /// LLM call latency distribution: `[milliseconds, count]` per histogram bucket.
    pub latency_histogram_ms: Vec<(f64, u64)>,
    /// File latency distribution: `[seconds, count]` per histogram bucket.
    pub file_latency_histogram_s: Vec<(f64, u64)>,
    /// One row per second.
    pub timeseries: Vec<SecondRow>,
    /// The event log (bounded).
    pub events: Vec<Event>,
    /// Events not kept in the log.
    pub events_dropped: u64,
    /// The strategy's own artifacts by name (e.g. execution histories), written to the report
    /// folder as JSON Lines beside `report.json`, not inside it.
    #[serde(skip)]
    pub artifacts: std::collections::BTreeMap<String, crate::context::Artifact>,
    /// The run's trace, when [`crate::RunOptions::trace`] asked for it (not in the JSON).
    #[serde(skip)]
    pub trace: Option<Box<crate::trace::Trace>>,
}

/// The headline figures of a run. See README.md ("Report fields") for each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Time from the start until the last file reached a final state, in seconds.
    pub makespan_s: f64,
    /// Files in the workload.
    pub files_total: u64,
    /// Files whose every chunk has a result.
    pub files_completed: u64,
    /// Files that ended with chunks that could not be validated.
    pub files_failed: u64,
    /// Files refused by the quota.
    pub files_rejected: u64,
    /// Files cancelled.
    pub files_cancelled: u64,
    /// Failed files that were reopened and fed again (redrive), each time counted.
    #[serde(default)]
    pub files_redriven: u64,
    /// Files the run had to finish: every file the timeline does not cancel (rejected files
    /// count). The same for every strategy.
    #[serde(default)]
    pub files_required: u64,
    /// Chunks of those files.
    #[serde(default)]
    pub chunks_required: u64,
    /// Share of the required work done: chunks of completed required files over
    /// `chunks_required` (a file counts only once complete). 1 when nothing is required.
    #[serde(default)]
    pub completion: f64,
    /// Chunks in the workload.
    pub chunks_total: u64,
    /// Chunks with a result in the result store at the end.
    pub chunks_validated: u64,
    /// Of those, found invalid by the validator.
    pub chunks_invalid: u64,
    /// LLM requests sent.
    pub llm_requests: u64,
    /// Requests refused with 429.
    pub llm_throttled: u64,
    /// Requests failed otherwise (5xx, timeouts, too large).
    pub llm_errors: u64,
    /// Those failures by kind: `connect` (refused, unreachable), `tls`, `timeout`, `4xx`, `5xx`,
    /// `too_large`, `broken` (a connection broken mid-call), `bad_response`. Only kinds seen.
    #[serde(default)]
    pub errors_by_kind: std::collections::BTreeMap<String, u64>,
    /// Requests that were retries.
    pub retries: u64,
    /// Tokens billed by the provider (prompt + completion of every answered request).
    pub tokens_billed: u64,
    /// Billed tokens whose result was not kept (duplicates, cancelled or crashed work, lost
    /// at-end results).
    pub tokens_wasted: u64,
    /// Tokens of the results kept, per minute of makespan.
    pub throughput_tokens_per_min: f64,
    /// TPM limit at the start (null: none).
    pub tpm_limit: Option<u64>,
    /// A lower bound on the makespan of the required work that no strategy can beat (see
    /// `sim::bound`): one constant per scenario and seed, the same for every strategy.
    pub ideal_makespan_s: f64,
    /// How close the run came to doing all the required work in the ideal time:
    /// `completion × min(1, ideal_makespan_s / makespan_s)`. At most 1; a run that failed most
    /// of its files scores about the share it finished, however fast it gave up.
    pub efficiency: f64,
    /// How busy the run kept the limits while it worked: the bound over the chunks it kept,
    /// divided by its makespan (at most 1). Unlike `efficiency`, giving up on work does not
    /// lower it.
    #[serde(default)]
    pub limit_utilization: f64,
    /// Latency of successful LLM calls, in ms (429s are not latency samples).
    pub latency_ms: Percentiles,
    /// Arrival-to-completion time of completed files, in seconds.
    pub file_latency_s: Percentiles,
    /// Cancellation request to the file's last LLM call ended, in seconds (null: no cancellation).
    pub cancel_latency_s: Option<Percentiles>,
    /// Results that arrived for a chunk already stored.
    pub duplicate_results: u64,
    /// Results taken from the journal of an earlier run (`run --journal`), not validated again.
    #[serde(default)]
    pub results_resumed: u64,
    /// Answers that arrived for a file already ended or being cancelled: never stored, their
    /// tokens wasted.
    #[serde(default)]
    pub results_discarded: u64,
    /// LLM calls in flight for a file at the moment its cancellation was requested, summed over
    /// the cancelled files: whether a cancel met work in flight (a cancel of files not started,
    /// or already finished, shows 0 here and says nothing about a strategy's cancellation).
    #[serde(default)]
    pub calls_in_flight_at_cancel: u64,
    /// A digest of every stored result (hex): runs that stored the same verdicts for the same
    /// chunks have the same digest, whatever the strategy.
    pub results_digest: String,
    /// What the run cost.
    pub cost: crate::cost::Cost,
    /// Orchestration units billed, by kind (empty for strategies that bill none).
    pub orchestration_units: std::collections::BTreeMap<crate::cost::Unit, f64>,
    /// Seconds from the end of the worst outage or crash until validation was back at 90% of its
    /// earlier pace (see `sim::recovery`); null when the scenario has neither.
    pub recovery_s: Option<f64>,
    /// After an outage or a crash, seconds from its end until the files waiting are back to
    /// their level before it (the longest over all; `None`: no outage or crash). See
    /// `sim::recovery`.
    #[serde(default)]
    pub backlog_cleared_s: Option<f64>,
    /// Orchestrator restarts after crashes.
    pub restarts: u32,
    /// Per user with required work: files, completions, and throughput while the user had work.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserFigures>,
    /// Jain's fairness index over the users' throughput (see [`jain`]): 1 when every user got the
    /// same tokens per minute while it had work, down to 1/n when one user got everything. Null
    /// when no user had required work.
    #[serde(default)]
    pub fairness: Option<f64>,
    /// The strategy's own figures by name (e.g. transitions, deliveries), watched by
    /// `regress --metric NAME`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub strategy_metrics: std::collections::BTreeMap<String, f64>,
    /// Wall-clock time the run took, in seconds (the only field that varies between identical runs).
    pub wall_time_s: f64,
    /// Live runs: what the transport (HTTP, network, scheduling) added to each call; `None` in
    /// simulated runs, and when the endpoint does not say its processing time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
}

/// What the transport added to the calls of a live run (see `sim::http::Overhead`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transport {
    /// Answered calls measured.
    pub samples: u64,
    /// Median overhead per call, real ms.
    pub p50_ms: f64,
    /// 99th-percentile overhead per call, real ms.
    pub p99_ms: f64,
    /// The time scale of the run.
    pub time_scale: f64,
    /// How much the median overhead stretches the median call in scenario time:
    /// `p50_ms × time_scale / latency_ms.p50`. Above [`Transport::WARN`] the live figures are
    /// measurably distorted against the simulation's.
    pub distortion: f64,
}

impl Transport {
    /// The distortion above which a live run warns: 1%.
    pub const WARN: f64 = 0.01;
}

/// One user's share of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserFigures {
    /// The user.
    pub user: crate::scenario::UserId,
    /// Its required files (the timeline does not cancel them).
    pub files: u64,
    /// Of those, completed.
    pub files_completed: u64,
    /// Tokens of its kept results.
    pub tokens_kept: u64,
    /// From its first file's arrival to its last file's final state, in seconds.
    pub active_s: f64,
    /// `tokens_kept` per minute of `active_s`: what the user was served while it had work.
    pub throughput_tokens_per_min: f64,
}

/// Jain's fairness index of allocations `x` (Jain, Chiu and Hawe, DEC-TR-301, 1984):
/// `(Σx)² / (n·Σx²)`, 1 when all are equal, 1/n when one gets everything. `None` for no
/// allocations; 1 when all are zero (equally nothing).
pub fn jain(x: &[f64]) -> Option<f64> {
    if x.is_empty() {
        return None;
    }
    let sum: f64 = x.iter().sum();
    let squares: f64 = x.iter().map(|v| v * v).sum();
    Some(if squares == 0.0 {
        1.0
    } else {
        sum * sum / (x.len() as f64 * squares)
    })
}

/// Percentiles of a distribution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

impl Percentiles {
    /// From a histogram, with values divided by `scale`. Each value is the lowest of its
    /// histogram bucket (3 significant figures), so whole values on a bucket boundary are exact.
    pub fn of(h: &hdrhistogram::Histogram<u64>, scale: f64) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let v = |x: u64| round6(h.lowest_equivalent(x) as f64 / scale);
        Self {
            p50: v(h.value_at_quantile(0.5)),
            p90: v(h.value_at_quantile(0.9)),
            p99: v(h.value_at_quantile(0.99)),
            max: v(h.max()),
        }
    }
}

/// Histogram buckets as `(value / scale, count)` pairs, each value the lowest of its bucket.
pub fn buckets(h: &hdrhistogram::Histogram<u64>, scale: f64) -> Vec<(f64, u64)> {
    h.iter_recorded()
        .map(|v| {
            (
                round6(h.lowest_equivalent(v.value_iterated_to()) as f64 / scale),
                v.count_since_last_iteration(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jains_index_is_one_when_equal_and_one_over_n_when_one_takes_all() {
        assert_eq!(jain(&[5.0, 5.0, 5.0]), Some(1.0));
        assert_eq!(jain(&[9.0, 0.0, 0.0]), Some(1.0 / 3.0));
        assert_eq!(jain(&[0.0, 0.0]), Some(1.0), "equally nothing");
        assert_eq!(jain(&[]), None);
        // Two users at 1 and 3: (4)^2 / (2 × 10) = 0.8.
        assert_eq!(jain(&[1.0, 3.0]), Some(0.8));
    }
}
