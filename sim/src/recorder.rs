//! Metrics of one run: HDR histograms, a per-second time series, and a bounded event log.
//! Memory grows with simulated seconds (the series) and the histograms' buckets, never with the
//! number of calls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use mock_llm::Usage;
use serde::{Deserialize, Serialize};

use crate::scenario::{FileId, UserId};

/// Events kept in a report; later ones are counted in `events_dropped`.
pub const MAX_EVENTS: usize = 20_000;

/// One simulated (or wall-clock, when live) second of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SecondRow {
    /// Seconds since the start.
    pub second: u64,
    /// LLM requests sent in this second.
    pub requests: u32,
    /// Of those, refused with 429.
    pub throttled: u32,
    /// Of those, failed otherwise (5xx, timeout, too large).
    pub errors: u32,
    /// Tokens (prompt + completion) of the successful requests sent in this second.
    pub tokens: u64,
    /// What the provider charged against its TPM limit for the successful requests sent in this
    /// second, by its `tpm_charge` rule (prompt + `max_tokens` by default). This, not `tokens`,
    /// is what a TPM limit caps; recovery after a limit change is measured on it.
    #[serde(default)]
    pub charged: u64,
    /// Most LLM calls in flight at once during this second.
    pub in_flight_max: u32,
    /// Chunk results stored in this second.
    pub chunks_validated: u32,
    /// Files that reached a final state in this second.
    pub files_done: u32,
    /// The strategy's concurrency limit at the end of this second, where it has one.
    pub concurrency_limit: Option<u32>,
    /// The strategy's gauges (queue depth, warm functions, pacer rate…) at the end of this
    /// second, by name (see `RunContext::gauge`). The names are shared: every second carries
    /// every gauge, and a copy of each name per row was most of a long run's allocations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gauges: BTreeMap<Arc<str>, f64>,
}

/// What an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A file arrived.
    FileArrived,
    /// A file waits for its user's quota.
    FileQueued,
    /// A file was refused by the quota.
    FileRejected,
    /// A file was handed to the orchestrator.
    FileAdmitted,
    /// Every chunk of a file has a result.
    FileCompleted,
    /// A file ended with chunks that could not be validated.
    FileFailed,
    /// A file was cancelled.
    FileCancelled,
    /// A failed file was reopened (redrive).
    FileRedriven,
    /// A cancellation was requested.
    CancelRequested,
    /// Parameter-store values changed.
    ParamsChanged,
    /// The provider went down.
    OutageStarted,
    /// The provider's answers slowed down (a latency spike).
    SlowdownStarted,
    /// The provider's limits changed.
    LimitsChanged,
    /// The orchestrator crashed.
    Crashed,
    /// The orchestrator restarted.
    Restarted,
    /// A strategy's own note.
    Note,
}

/// One entry of the event log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the start.
    pub t_ms: u64,
    /// What happened.
    pub kind: EventKind,
    /// The file, if about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileId>,
    /// The user, if about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    /// Details, in words.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub detail: String,
}

/// The recorder. Counters are public; series and histograms go through methods.
#[derive(Debug)]
pub struct Recorder {
    /// LLM call latency of successful calls, in microseconds.
    pub llm_latency_us: Histogram<u64>,
    /// Arrival-to-completion time of completed files, in milliseconds.
    pub file_latency_ms: Histogram<u64>,
    /// Cancellation request to last in-flight call ended, in milliseconds.
    pub cancel_latency_ms: Histogram<u64>,
    series: Vec<SecondRow>,
    /// The event log (at most [`MAX_EVENTS`]).
    pub events: Vec<Event>,
    /// Events not kept.
    pub events_dropped: u64,
    in_flight: u32,
    limit: Option<u32>,
    gauges: BTreeMap<Arc<str>, f64>,
    /// LLM requests sent.
    pub requests: u64,
    /// Requests refused with 429.
    pub throttled: u64,
    /// Requests failed otherwise.
    pub errors: u64,
    /// Those failures by kind (`ErrorKind::name`).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Requests that were retries (attempt > 0).
    pub retries: u64,
    /// Tokens of successful answers.
    pub tokens_answered: u64,
    /// Of those, prompt tokens.
    pub prompt_tokens_answered: u64,
}

/// A histogram from 1 to 10^12 (microseconds: 11 days) at 3 significant figures. Fixed bounds,
/// because `saturating_record` on an auto-resizing histogram clamps to its initial tiny range.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 1_000_000_000_000, 3).expect("these bounds and precision are valid")
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            llm_latency_us: histogram(),
            file_latency_ms: histogram(),
            cancel_latency_ms: histogram(),
            series: Vec::new(),
            events: Vec::new(),
            events_dropped: 0,
            in_flight: 0,
            limit: None,
            gauges: BTreeMap::new(),
            requests: 0,
            throttled: 0,
            errors: 0,
            errors_by_kind: BTreeMap::new(),
            retries: 0,
            tokens_answered: 0,
            prompt_tokens_answered: 0,
        }
    }
}

impl Recorder {
    /// The row of the second containing `t`, creating rows up to it (seconds with no change carry
    /// the in-flight count and limit of the one before).
    fn row(&mut self, t: Duration) -> &mut SecondRow {
        let s = t.as_secs() as usize;
        while self.series.len() <= s {
            let second = self.series.len() as u64;
            self.series.push(SecondRow {
                second,
                in_flight_max: self.in_flight,
                concurrency_limit: self.limit,
                gauges: self.gauges.clone(),
                ..SecondRow::default()
            });
        }
        &mut self.series[s]
    }

    /// A request was sent at `t`.
    pub fn request_sent(&mut self, t: Duration, attempt: u32) {
        self.requests += 1;
        if attempt > 0 {
            self.retries += 1;
        }
        self.in_flight += 1;
        let in_flight = self.in_flight;
        let row = self.row(t);
        row.requests += 1;
        row.in_flight_max = row.in_flight_max.max(in_flight);
    }

    /// A request sent at `sent` ended at `now`: `Ok((usage, charge))` answered (`charge`: what
    /// the provider counted against its TPM limit), `Err(kind)` throttled (`RateLimited`) or
    /// failed; `None` when the caller gave up on it (cancelled or crashed).
    pub fn request_ended(
        &mut self,
        sent: Duration,
        now: Duration,
        outcome: Option<Result<(Usage, u64), crate::backend::ErrorKind>>,
    ) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.row(now);
        match outcome {
            Some(Ok((usage, charge))) => {
                let tokens = usage.total();
                self.tokens_answered += tokens;
                self.prompt_tokens_answered += u64::from(usage.prompt_tokens);
                self.llm_latency_us.saturating_record((now - sent).as_micros() as u64);
                let row = self.row(sent);
                row.tokens += tokens;
                row.charged += charge;
            }
            Some(Err(crate::backend::ErrorKind::RateLimited)) => {
                self.throttled += 1;
                self.row(sent).throttled += 1;
            }
            Some(Err(kind)) => {
                self.errors += 1;
                *self.errors_by_kind.entry(kind.name().to_owned()).or_default() += 1;
                self.row(sent).errors += 1;
            }
            None => {}
        }
    }

    /// A chunk result was stored at `t`.
    pub fn chunk_validated(&mut self, t: Duration) {
        self.row(t).chunks_validated += 1;
    }

    /// A file reached a final state at `t`.
    pub fn file_done(&mut self, t: Duration) {
        self.row(t).files_done += 1;
    }

    /// The strategy's concurrency limit changed at `t`.
    pub fn set_limit(&mut self, t: Duration, limit: u32) {
        self.limit = Some(limit);
        self.row(t).concurrency_limit = Some(limit);
    }

    /// The gauge `name` is `v` from `t` on.
    pub fn set_gauge(&mut self, t: Duration, name: &str, v: f64) {
        let key = match self.gauges.get_key_value(name) {
            Some((k, _)) => k.clone(),
            None => Arc::from(name),
        };
        self.gauges.insert(key.clone(), v);
        // The row holds the gauge already unless it is new.
        self.row(t).gauges.insert(key, v);
    }

    /// Appends to the event log (or counts it as dropped when full).
    pub fn event(&mut self, t: Duration, kind: EventKind, file: Option<FileId>, user: Option<UserId>, detail: String) {
        if self.events.len() < MAX_EVENTS {
            self.events.push(Event {
                t_ms: t.as_millis() as u64,
                kind,
                file,
                user,
                detail,
            });
        } else {
            self.events_dropped += 1;
        }
    }

    /// LLM calls in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// The strategy's concurrency limit now, where it set one.
    pub fn limit(&self) -> Option<u32> {
        self.limit
    }

    /// The last `n` seconds of the series, up to and including the second containing `end`.
    pub fn tail(&mut self, end: Duration, n: usize) -> Vec<SecondRow> {
        self.row(end);
        self.series[self.series.len().saturating_sub(n)..].to_vec()
    }

    /// The series up to and including the second containing `end`, taken out: the recorder is
    /// done with it (the report's copy was a twentieth of a short run, every row's gauges
    /// cloned and the originals dropped).
    pub fn series_until(&mut self, end: Duration) -> Vec<SecondRow> {
        self.row(end);
        std::mem::take(&mut self.series)
    }
}
