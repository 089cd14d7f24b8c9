//! [`RunContext`]: everything a strategy sees of a run — files to process, the instrumented LLM
//! call, the parameter store, cancellation, randomness — and the run's bookkeeping behind it
//! (file states, the gatekeeper's quotas, the result store, the recorder).

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use simkit::rng::{SimRng, derive_seed};

use crate::trace::CallEnd;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::{ChatRequest, ChatResponse, LlmBackend, LlmError};
use crate::cost::Unit;
use crate::params::ParamStore;
use crate::recorder::{EventKind, Recorder};
use crate::results::{ResultStore, Stored};
use crate::rng::RunRng;
use crate::scenario::{CancelTarget, FileId, OverQuota, Quotas, ResultsMode, Scenario, UserId};
use crate::workload::Workload;

/// Progress of a run, for a progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Chunks with a result so far.
    pub chunks_done: u64,
    /// All chunks.
    pub chunks_total: u64,
    /// Time since the start of the run.
    pub elapsed: Duration,
}

/// A callback that receives progress now and then (about 200 times per run).
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// A file handed to the strategy.
#[derive(Clone, Debug)]
pub struct FileTask {
    /// The file.
    pub id: FileId,
    /// Its user.
    pub user: UserId,
    /// The chunks still to validate (after a crash, those without a stored result).
    pub chunks: Vec<u32>,
    /// Cancelled when the file (or its user, or the run) is cancelled.
    pub cancel: CancellationToken,
}

/// How a strategy finished with one chunk (one delivery of it, for designs that deliver a chunk
/// more than once).
///
/// Each chunk keeps one terminal state in the result store, and [`RunContext::chunk_done`] is
/// idempotent: a verdict wins over a failure whatever the order; a second verdict is a duplicate;
/// a failure after a verdict changes nothing. An answer for a file that has ended, or whose
/// cancellation was requested, is never stored: it is counted in `results_discarded` and its
/// tokens are wasted, always.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// The LLM answered: store its verdict.
    Validated(ChatResponse),
    /// The strategy gave up on it (retries exhausted, or an error no retry can fix).
    Failed,
    /// The strategy dropped it because its file was cancelled.
    Cancelled,
}

/// Why [`RunContext::redrive`] did not reopen a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedriveRefused {
    /// Only a failed file can be redriven.
    #[error("the file is {0:?}, not failed")]
    NotFailed(FileStatus),
    /// Its user already has as many files in progress as the quota allows; try again when one ends.
    #[error("its user's quota of files in progress is full")]
    QuotaFull,
    /// Its cancellation was requested (after it failed): the user no longer wants it done.
    #[error("its cancellation was requested")]
    Cancelled,
}

/// A file's place in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Not arrived yet.
    Pending,
    /// Arrived, waiting for its user's quota.
    Queued,
    /// With the orchestrator.
    Admitted,
    /// Every chunk has a result.
    Completed,
    /// Ended with chunks that could not be validated.
    Failed,
    /// Cancelled.
    Cancelled,
    /// Refused by the quota.
    Rejected,
}

impl FileStatus {
    /// Whether this is a final state.
    pub fn is_final(self) -> bool {
        !matches!(self, FileStatus::Pending | FileStatus::Queued | FileStatus::Admitted)
    }
}

#[derive(Debug)]
struct FileState {
    status: FileStatus,
    in_flight: u32,
    cancel_at: Option<Duration>,
    ended_at: Option<Duration>,
    token: Option<CancellationToken>,
    /// LLM requests sent for it, of them 429s, and the tokens of its answers: its share of the
    /// run's counters, for `GET /progress`.
    requests: u32,
    throttled: u32,
    tokens: u64,
}

/// Where one file stands ([`RunContext::snapshot`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FileProgress {
    /// The file.
    pub file: FileId,
    /// Its user.
    pub user: crate::scenario::UserId,
    /// Its state.
    pub status: FileStatus,
    /// Its chunks.
    pub chunks: u32,
    /// Chunks with a stored verdict.
    pub done: u32,
    /// Chunks given up on.
    pub failed: u32,
    /// LLM calls in flight for it.
    pub in_flight: u32,
    /// LLM requests sent for it.
    pub requests: u32,
    /// Of them, refused with 429.
    pub throttled: u32,
    /// Tokens (prompt + completion) in its answers.
    pub tokens: u64,
    /// Time since it arrived (until it ended, once it has); zero before it arrives.
    pub elapsed: Duration,
}

/// Where one user stands ([`RunContext::snapshot`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct UserProgress {
    /// Files waiting for a quota slot.
    pub queued: u64,
    /// Files admitted (in progress or ended).
    pub admitted: u64,
    /// Files refused by the quota.
    pub rejected: u64,
}

/// A run's progress now ([`RunContext::snapshot`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// Run time so far (scenario time in a live run).
    pub elapsed: Duration,
    /// LLM requests so far.
    pub requests: u64,
    /// Of them, 429s.
    pub throttled: u64,
    /// Tokens in answers so far.
    pub tokens_answered: u64,
    /// LLM calls in flight now.
    pub in_flight: u32,
    /// The strategy's concurrency limit now, where it sets one
    /// ([`RunContext::set_concurrency_limit`]).
    pub concurrency_limit: Option<u32>,
    /// Every file, by id.
    pub files: Vec<FileProgress>,
    /// Every user, by id.
    pub users: Vec<UserProgress>,
}

impl Snapshot {
    /// Files in `status` now.
    pub fn files_in(&self, status: FileStatus) -> usize {
        self.files.iter().filter(|f| f.status == status).count()
    }

    /// Chunks with a stored verdict, over every file.
    pub fn chunks_done(&self) -> u64 {
        self.files.iter().map(|f| u64::from(f.done)).sum()
    }
}

/// Counts of files by final state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileCounts {
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Rejected.
    pub rejected: u64,
}

/// The run's bookkeeping, behind one lock.
#[derive(Debug)]
pub(crate) struct State {
    workload: Arc<Workload>,
    files: Vec<FileState>,
    pub(crate) results: ResultStore,
    pub(crate) recorder: Recorder,
    quotas: Quotas,
    active_per_user: Vec<u32>,
    waiting_per_user: Vec<VecDeque<FileId>>,
    admitted_order: Vec<FileId>,
    queue: VecDeque<FileId>,
    undecided: u64,
    pub(crate) counts: FileCounts,
    pub(crate) last_final: Duration,
    pub(crate) duplicates: u64,
    pub(crate) discarded: u64,
    pub(crate) redriven: u64,
    pub(crate) restarts: u32,
    /// When the latest crash happened.
    pub(crate) last_crash: Option<Duration>,
    /// Calls in flight for files at the moment their cancellation was requested.
    pub(crate) in_flight_at_cancel: u64,
    pub(crate) units: BTreeMap<Unit, f64>,
    pub(crate) metrics: BTreeMap<String, f64>,
    pub(crate) artifacts: BTreeMap<String, Artifact>,
    /// The run's trace, when asked for ([`crate::RunOptions::trace`]).
    pub(crate) trace: Option<Box<crate::trace::Trace>>,
    /// The result journal, when the run keeps one.
    journal: Option<Arc<Mutex<crate::journal::Journal>>>,
    /// At-end results waiting for their file to complete before they are journaled.
    journal_staged: BTreeMap<FileId, Vec<crate::journal::Entry>>,
    /// The first failure to write the journal: it ends the run with an error.
    pub(crate) journal_error: Option<String>,
    /// Results restored from the journal.
    pub(crate) resumed: u64,
    /// Cancellations requested from outside the scenario (the control API), with their time.
    pub(crate) live_cancels: Vec<(Duration, CancelTarget)>,
    progress_every: u64,
    validated: u64,
    wake: bool,
    final_due: bool,
    /// A file's cancellation was requested (wakes [`RunContext::cancel_requested`]).
    cancel_due: bool,
    progress_due: bool,
}

/// Lines a strategy keeps for the report folder (e.g. execution histories as JSON Lines), bounded
/// by [`MAX_ARTIFACT_LINES`] per artifact, apart from the engine's event log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Artifact {
    /// The lines kept, in the order given.
    pub lines: Vec<String>,
    /// Lines not kept.
    pub dropped: u64,
}

/// Lines kept per artifact; later ones are counted in [`Artifact::dropped`].
pub const MAX_ARTIFACT_LINES: usize = 100_000;

impl State {
    fn new(workload: Arc<Workload>, quotas: Quotas, mode: ResultsMode) -> Self {
        let n = workload.files().len();
        let users = workload.users() as usize;
        Self {
            files: (0..n)
                .map(|_| FileState {
                    status: FileStatus::Pending,
                    in_flight: 0,
                    cancel_at: None,
                    ended_at: None,
                    token: None,
                    requests: 0,
                    throttled: 0,
                    tokens: 0,
                })
                .collect(),
            results: ResultStore::new(mode, n),
            recorder: Recorder::default(),
            quotas,
            active_per_user: vec![0; users],
            waiting_per_user: vec![VecDeque::new(); users],
            admitted_order: Vec::new(),
            queue: VecDeque::new(),
            undecided: n as u64,
            counts: FileCounts::default(),
            last_final: Duration::ZERO,
            duplicates: 0,
            discarded: 0,
            redriven: 0,
            restarts: 0,
            last_crash: None,
            in_flight_at_cancel: 0,
            units: BTreeMap::new(),
            metrics: BTreeMap::new(),
            artifacts: BTreeMap::new(),
            trace: None,
            journal: None,
            journal_staged: BTreeMap::new(),
            journal_error: None,
            resumed: 0,
            live_cancels: Vec::new(),
            progress_every: (workload.chunks_total() / 200).max(1),
            validated: 0,
            wake: false,
            final_due: false,
            cancel_due: false,
            progress_due: false,
            workload,
        }
    }

    fn file(&mut self, id: FileId) -> &mut FileState {
        &mut self.files[id.0 as usize]
    }

    /// A file arrives: the gatekeeper admits, queues or rejects it.
    pub(crate) fn arrive(&mut self, id: FileId, now: Duration) {
        if self.file(id).status != FileStatus::Pending {
            return; // cancelled before it arrived
        }
        let user = self.workload.file(id).user;
        self.recorder
            .event(now, EventKind::FileArrived, Some(id), Some(user), String::new());
        let active = self.active_per_user[user.0 as usize];
        match self.quotas.per_user_concurrent_files {
            Some(q) if active >= q.get() => match self.quotas.over_quota {
                OverQuota::Queue => {
                    self.file(id).status = FileStatus::Queued;
                    self.waiting_per_user[user.0 as usize].push_back(id);
                    self.recorder
                        .event(now, EventKind::FileQueued, Some(id), Some(user), String::new());
                }
                OverQuota::Reject => {
                    self.undecided -= 1;
                    self.finish(id, FileStatus::Rejected, now);
                }
            },
            _ => self.admit(id, now),
        }
    }

    fn admit(&mut self, id: FileId, now: Duration) {
        let spec = *self.workload.file(id);
        self.undecided -= 1;
        self.active_per_user[spec.user.0 as usize] += 1;
        let f = self.file(id);
        f.status = FileStatus::Admitted;
        f.token = Some(CancellationToken::new());
        self.results.open(id, spec.chunks);
        self.admitted_order.push(id);
        self.queue.push_back(id);
        self.wake = true;
        self.recorder
            .event(now, EventKind::FileAdmitted, Some(id), Some(spec.user), String::new());
        // A file with nothing to do: no chunks, or every verdict restored from the journal.
        if spec.chunks == 0 || self.results.committed_count(id) == spec.chunks {
            self.finish(id, FileStatus::Completed, now);
        }
    }

    fn take_task(&mut self) -> Option<FileTask> {
        while let Some(id) = self.queue.pop_front() {
            if self.file(id).status != FileStatus::Admitted {
                continue;
            }
            return Some(self.task(id));
        }
        None
    }

    /// The task for an admitted file: its chunks without a stored result.
    fn task(&mut self, id: FileId) -> FileTask {
        let spec = *self.workload.file(id);
        let chunks = (0..spec.chunks).filter(|c| !self.results.has(id, *c)).collect();
        let cancel = self.file(id).token.clone().expect("admitted files have a token");
        FileTask {
            id,
            user: spec.user,
            chunks,
            cancel,
        }
    }

    /// Reopens a failed file: it takes a quota slot again and gets its unfinished chunks back.
    pub(crate) fn redrive(&mut self, id: FileId, now: Duration) -> Result<FileTask, RedriveRefused> {
        let status = self.file(id).status;
        if status != FileStatus::Failed {
            return Err(RedriveRefused::NotFailed(status));
        }
        if self.file(id).cancel_at.is_some() {
            return Err(RedriveRefused::Cancelled);
        }
        let user = self.workload.file(id).user;
        if let Some(q) = self.quotas.per_user_concurrent_files
            && self.active_per_user[user.0 as usize] >= q.get()
        {
            return Err(RedriveRefused::QuotaFull);
        }
        self.active_per_user[user.0 as usize] += 1;
        self.counts.failed -= 1;
        self.redriven += 1;
        let f = self.file(id);
        f.status = FileStatus::Admitted;
        f.token = Some(CancellationToken::new());
        self.results.reopen_failed(id);
        self.recorder
            .event(now, EventKind::FileRedriven, Some(id), Some(user), String::new());
        Ok(self.task(id))
    }

    /// Whether no file will ever be handed out again.
    fn feed_closed(&self) -> bool {
        self.queue.is_empty() && self.undecided == 0
    }

    fn finish(&mut self, id: FileId, status: FileStatus, now: Duration) {
        let spec = *self.workload.file(id);
        let was = self.file(id).status;
        debug_assert!(!was.is_final(), "a file reaches a final state once");
        let f = self.file(id);
        f.status = status;
        f.ended_at = Some(now);
        let cancel_at = f.cancel_at;
        if let Some(t) = f.token.take() {
            t.cancel(); // nothing more to do for this file
        }
        self.final_due = true;
        let staged = self.journal_staged.remove(&id).unwrap_or_default();
        if status == FileStatus::Completed {
            self.results.commit(id);
            self.journal_write(&staged);
        } else {
            // At-end storage keeps a file's results only when it completes.
            self.results.discard(id);
        }
        match status {
            FileStatus::Completed => {
                self.counts.completed += 1;
                self.recorder
                    .file_latency_ms
                    .saturating_record((now - spec.arrival).as_millis() as u64);
            }
            FileStatus::Failed => self.counts.failed += 1,
            FileStatus::Cancelled => {
                self.counts.cancelled += 1;
                if let Some(at) = cancel_at {
                    self.recorder
                        .cancel_latency_ms
                        .saturating_record((now.saturating_sub(at)).as_millis() as u64);
                }
            }
            FileStatus::Rejected => self.counts.rejected += 1,
            FileStatus::Pending | FileStatus::Queued | FileStatus::Admitted => {
                unreachable!("finish takes a final state")
            }
        }
        let kind = match status {
            FileStatus::Completed => EventKind::FileCompleted,
            FileStatus::Failed => EventKind::FileFailed,
            FileStatus::Cancelled => EventKind::FileCancelled,
            _ => EventKind::FileRejected,
        };
        self.recorder.event(now, kind, Some(id), Some(spec.user), String::new());
        self.recorder.file_done(now);
        self.last_final = self.last_final.max(now);
        if was == FileStatus::Admitted {
            let u = spec.user.0 as usize;
            self.active_per_user[u] -= 1;
            // The gatekeeper hands the user's next waiting file its slot.
            while let Some(next) = self.waiting_per_user[u].pop_front() {
                if self.file(next).status == FileStatus::Queued {
                    self.admit(next, now);
                    break;
                }
            }
        }
    }

    fn maybe_finish(&mut self, id: FileId, now: Duration) {
        let spec = *self.workload.file(id);
        let (held, failed) = (self.results.held(id), self.results.failed(id));
        let f = self.file(id);
        if f.status != FileStatus::Admitted {
            return;
        }
        if f.cancel_at.is_some() {
            if f.in_flight == 0 {
                self.finish(id, FileStatus::Cancelled, now);
            }
        } else if held + failed >= spec.chunks {
            let status = if failed == 0 {
                FileStatus::Completed
            } else {
                FileStatus::Failed
            };
            self.finish(id, status, now);
        }
    }

    fn chunk_done(&mut self, id: FileId, chunk: u32, outcome: ChunkOutcome, now: Duration) {
        let f = self.file(id);
        let live = f.status == FileStatus::Admitted && f.cancel_at.is_none();
        let traced = match outcome {
            ChunkOutcome::Validated(_) if !live => {
                // The file ended, or its cancellation was requested: the answer is wasted.
                self.discarded += 1;
                self.trace_reported(id, chunk, now, crate::trace::Stored::Discarded);
                return;
            }
            ChunkOutcome::Validated(resp) => match self.results.store(id, chunk, resp.verdict, resp.usage.total()) {
                Stored::New => {
                    self.journal_result(crate::journal::Entry {
                        file: id,
                        chunk,
                        verdict: resp.verdict,
                        tokens: u32::try_from(resp.usage.total()).unwrap_or(u32::MAX),
                    });
                    self.recorder.chunk_validated(now);
                    self.validated += 1;
                    if self.validated.is_multiple_of(self.progress_every) {
                        self.progress_due = true;
                    }
                    crate::trace::Stored::New
                }
                Stored::Duplicate => {
                    self.duplicates += 1;
                    crate::trace::Stored::Duplicate
                }
            },
            ChunkOutcome::Failed => {
                if live {
                    self.results.fail(id, chunk);
                }
                crate::trace::Stored::Failed
            }
            ChunkOutcome::Cancelled => crate::trace::Stored::Cancelled,
        };
        self.trace_reported(id, chunk, now, traced);
        self.maybe_finish(id, now);
    }

    /// Journals a stored result: at once with incremental results, when its file completes
    /// with at-end results.
    fn journal_result(&mut self, e: crate::journal::Entry) {
        if self.journal.is_none() {
            return;
        }
        if self.results.committed(e.file, e.chunk).is_some() {
            self.journal_write(&[e]);
        } else {
            self.journal_staged.entry(e.file).or_default().push(e);
        }
    }

    fn journal_write(&mut self, entries: &[crate::journal::Entry]) {
        let Some(j) = &self.journal else { return };
        let mut j = j.lock().unwrap_or_else(|e| e.into_inner());
        for e in entries {
            if let Err(err) = j.append(e) {
                self.journal_error
                    .get_or_insert(format!("cannot append a record: {err}"));
                return;
            }
        }
    }

    fn trace_reported(&mut self, file: FileId, chunk: u32, at: Duration, stored: crate::trace::Stored) {
        if let Some(t) = &mut self.trace {
            t.reported.push(crate::trace::Reported {
                file,
                chunk,
                at,
                stored,
            });
        }
    }

    /// The trace, finished: each file's final state and its chunks'.
    pub(crate) fn take_trace(&mut self) -> Option<Box<crate::trace::Trace>> {
        let mut t = self.trace.take()?;
        for i in 0..self.files.len() {
            let id = FileId(i as u32);
            let chunks = self.workload.file(id).chunks;
            let f = &self.files[i];
            t.files.push(crate::trace::FileEnd {
                file: id,
                status: f.status,
                cancel_requested: f.cancel_at,
                chunks: (0..chunks).map(|c| self.results.state(id, c)).collect(),
            });
        }
        Some(t)
    }

    fn cancel_file(&mut self, id: FileId, now: Duration) {
        let user = self.workload.file(id).user;
        match self.file(id).status {
            FileStatus::Pending | FileStatus::Queued => {
                self.undecided -= 1;
                self.file(id).cancel_at = Some(now);
                self.finish(id, FileStatus::Cancelled, now);
            }
            FileStatus::Admitted => {
                let f = self.file(id);
                if f.cancel_at.is_none() {
                    let n = f.in_flight;
                    self.in_flight_at_cancel += u64::from(n);
                }
                let f = self.file(id);
                f.cancel_at.get_or_insert(now);
                if let Some(t) = &f.token {
                    t.cancel();
                }
                self.maybe_finish(id, now);
            }
            FileStatus::Failed => {
                // It stays failed, but the user no longer wants it: no redrive may reopen it.
                self.file(id).cancel_at.get_or_insert(now);
                self.cancel_due = true;
                return;
            }
            _ => return,
        }
        self.recorder
            .event(now, EventKind::CancelRequested, Some(id), Some(user), String::new());
        self.wake = true;
        self.cancel_due = true;
    }

    pub(crate) fn cancel(&mut self, target: CancelTarget, now: Duration) -> u64 {
        let ids: Vec<FileId> = match target {
            CancelTarget::File(f) => vec![f],
            CancelTarget::User(u) => self
                .workload
                .files()
                .iter()
                .filter(|f| f.user == u && f.arrival <= now)
                .map(|f| f.id)
                .collect(),
            CancelTarget::Run => self.workload.files().iter().map(|f| f.id).collect(),
        };
        let mut newly = 0;
        for id in ids {
            let before = self.files[id.0 as usize].cancel_at.is_some();
            self.cancel_file(id, now);
            if !before && self.files[id.0 as usize].cancel_at.is_some() {
                newly += 1;
            }
        }
        newly
    }

    fn trace_call_ended(&mut self, traced: Option<usize>, now: Duration, end: CallEnd) {
        if let (Some(t), Some(i)) = (&mut self.trace, traced) {
            t.calls[i].ended = Some(now);
            t.calls[i].end = Some(end);
        }
    }

    fn call_ended(
        &mut self,
        id: FileId,
        sent: Duration,
        now: Duration,
        outcome: Option<Result<(mock_llm::Usage, u64), crate::backend::ErrorKind>>,
    ) {
        let f = self.file(id);
        match &outcome {
            Some(Ok((usage, _))) => f.tokens += usage.total(),
            Some(Err(crate::backend::ErrorKind::RateLimited)) => f.throttled += 1,
            _ => {}
        }
        f.in_flight -= 1;
        let finish = f.cancel_at.is_some() && f.in_flight == 0;
        self.recorder.request_ended(sent, now, outcome);
        if finish {
            self.maybe_finish(id, now);
        }
    }

    pub(crate) fn crash(&mut self, now: Duration) {
        self.results.crash();
        self.journal_staged.clear();
        if self.trace.is_some() {
            let mut kept = Vec::new();
            for i in 0..self.files.len() {
                let id = FileId(i as u32);
                for c in 0..self.workload.file(id).chunks {
                    if self.results.committed(id, c).is_some() {
                        kept.push((id, c));
                    }
                }
            }
            if let Some(t) = &mut self.trace {
                t.crashes.push(crate::trace::Crash { at: now, kept });
            }
        }
        self.restarts += 1;
        self.last_crash = Some(now);
        self.recorder.event(now, EventKind::Crashed, None, None, String::new());
    }

    pub(crate) fn restart(&mut self, now: Duration) {
        self.queue.clear();
        for i in 0..self.admitted_order.len() {
            let id = self.admitted_order[i];
            if self.file(id).status == FileStatus::Admitted {
                // Chunks given up on before the crash are tried again.
                self.results.reopen_failed(id);
                self.queue.push_back(id);
            }
        }
        self.wake = true;
        self.recorder.event(
            now,
            EventKind::Restarted,
            None,
            None,
            format!("{} files to resume", self.queue.len()),
        );
        let ids: Vec<FileId> = self.queue.iter().copied().collect();
        for id in ids {
            self.maybe_finish(id, now); // at-end files whose every result is staged-and-lost are not done
        }
    }

    /// Files not in a final state when the orchestrator stopped for good (with it, queued, or yet
    /// to arrive) end as failed, so that every file is counted in exactly one final state.
    pub(crate) fn abandon_unfinished(&mut self, now: Duration) -> u64 {
        let mut n = 0;
        for i in 0..self.files.len() {
            let id = FileId(i as u32);
            match self.file(id).status {
                FileStatus::Admitted => {
                    self.finish(id, FileStatus::Failed, now);
                    n += 1;
                }
                FileStatus::Pending | FileStatus::Queued => {
                    // The orchestrator is gone for good: files that had not arrived, or were
                    // waiting for their quota, will never be processed.
                    self.undecided -= 1;
                    self.finish(id, FileStatus::Failed, now);
                    n += 1;
                }
                _ => {}
            }
        }
        n
    }

    pub(crate) fn unfinished(&self) -> u64 {
        // From the counts `finish` and `redrive` keep (walking the files made every file's end
        // cost the whole workload: 3% of a 20,000-file run).
        let c = &self.counts;
        let ended = c.completed + c.failed + c.cancelled + c.rejected;
        debug_assert_eq!(
            self.files.len() as u64 - ended,
            self.files.iter().filter(|f| !f.status.is_final()).count() as u64
        );
        self.files.len() as u64 - ended
    }

    /// The status of a file.
    pub(crate) fn status(&self, id: FileId) -> FileStatus {
        self.files[id.0 as usize].status
    }

    /// When a file last reached a final state.
    pub(crate) fn ended_at(&self, id: FileId) -> Option<Duration> {
        self.files[id.0 as usize].ended_at
    }
}

/// The run's time in a simulated run, read from tokio's clock once per instant.
///
/// In paused tokio time the clock moves only while the runtime parks (it auto-advances to the
/// next timer there: tokio's `time::Driver::park_thread_timeout`), so a time read after a park
/// holds until the next one. The simulating runtime forgets the cached time on every unpark
/// (its `on_thread_unpark` hook), and [`RunContext::now`] reads tokio's clock only on the first
/// call after that: a choreography reads the time about eight times per simulated call, and
/// each read (a thread-local lookup, a lock and an `Instant` subtraction) cost 6% of its time.
/// Live runs have none: real time moves by itself.
#[derive(Clone, Debug)]
pub(crate) struct InstantCache(Arc<AtomicU64>);

impl InstantCache {
    /// No time is cached.
    const UNKNOWN: u64 = u64::MAX;

    /// A cache with nothing in it.
    pub(crate) fn new() -> Self {
        Self(Arc::new(AtomicU64::new(Self::UNKNOWN)))
    }

    /// Drops the cached time (the clock may have moved).
    pub(crate) fn forget(&self) {
        self.0.store(Self::UNKNOWN, Ordering::Relaxed);
    }

    /// The cached time, or `read`'s, which is then kept.
    fn get_or(&self, read: impl FnOnce() -> Duration) -> Duration {
        let cached = self.0.load(Ordering::Relaxed);
        if cached != Self::UNKNOWN {
            return Duration::from_nanos(cached);
        }
        let now = read();
        // 584 years of nanoseconds fit; a time past that is read again each time.
        if let Ok(n) = u64::try_from(now.as_nanos())
            && n != Self::UNKNOWN
        {
            self.0.store(n, Ordering::Relaxed);
        }
        now
    }
}

/// State kept across a crash: what a strategy stores in AWS-like services, by type.
type Durable = Mutex<BTreeMap<TypeId, Arc<dyn Any + Send + Sync>>>;

struct Shared {
    backend: Arc<dyn LlmBackend>,
    workload: Arc<Workload>,
    params: ParamStore,
    start: Instant,
    state: Mutex<State>,
    feed: Notify,
    finals: Notify,
    /// Woken when a file's cancellation is requested.
    cancels: Notify,
    seed: u64,
    rng: Mutex<SimRng>,
    tasks: Mutex<Vec<AbortHandle>>,
    durable: Durable,
    panicked: CancellationToken,
    panics: Mutex<Vec<String>>,
    progress: Option<ProgressFn>,
    time_scale: f64,
    /// Simulated runs: the time of the current instant (see [`InstantCache`]).
    instant: Option<InstantCache>,
    /// How the provider charges a request against TPM (for the `charged` column).
    tpm_charge: mock_llm::TpmCharge,
}

/// What a strategy sees of a run. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct RunContext {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RunContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("elapsed", &self.now())
            .finish_non_exhaustive()
    }
}

/// Ends the bookkeeping of a call whose future was dropped (cancelled, or aborted by a crash).
struct CallGuard<'a> {
    ctx: &'a RunContext,
    file: FileId,
    sent: Duration,
    /// The call's place in the trace, when there is one.
    traced: Option<usize>,
    armed: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let now = self.ctx.now();
            // Through `with_state`, so that a cancelled file this ends wakes its waiters.
            self.ctx.with_state(|st| {
                st.trace_call_ended(self.traced, now, CallEnd::Dropped);
                st.call_ended(self.file, self.sent, now, None);
            });
        }
    }
}

/// Polls a spawned task's future, catching a panic so that the run can report it.
struct CatchPanic<F> {
    fut: Pin<Box<F>>,
    ctx: RunContext,
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| this.fut.as_mut().poll(cx))) {
            Ok(p) => p,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic with a non-text payload".to_owned());
                this.ctx
                    .shared
                    .panics
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(message);
                this.ctx.shared.panicked.cancel();
                std::panic::resume_unwind(payload)
            }
        }
    }
}

impl RunContext {
    /// A context for one run. `start` is the run's time zero; `opts` gives its progress
    /// callback, time scale, trace and journal; `instant`, in a simulated run, the cache its
    /// runtime clears on every unpark.
    pub(crate) fn new(
        scenario: &Scenario,
        backend: Arc<dyn LlmBackend>,
        workload: Arc<Workload>,
        start: Instant,
        opts: &crate::RunOptions,
        instant: Option<InstantCache>,
    ) -> Self {
        let (progress, time_scale, trace, journal) =
            (opts.progress.clone(), opts.scale(), opts.trace, opts.journal.clone());
        let mut state = State::new(workload.clone(), scenario.quotas, scenario.results);
        if trace {
            state.trace = Some(Box::default());
        }
        if let Some(j) = &journal {
            let j = j.lock().unwrap_or_else(|e| e.into_inner());
            for e in &j.recovered().entries {
                let chunks = workload.file(e.file).chunks;
                state.results.restore(e.file, chunks, e.chunk, e.verdict);
                state.resumed += 1;
            }
        }
        state.journal = journal;
        RunContext {
            shared: Arc::new(Shared {
                tpm_charge: scenario.provider_config().tpm_charge,
                backend,
                workload,
                params: ParamStore::new(scenario.params.clone()),
                start,
                state: Mutex::new(state),
                feed: Notify::new(),
                finals: Notify::new(),
                cancels: Notify::new(),
                seed: scenario.seed,
                rng: Mutex::new(SimRng::new(derive_seed(scenario.seed, "strategy"))),
                tasks: Mutex::new(Vec::new()),
                durable: Mutex::new(BTreeMap::new()),
                panicked: CancellationToken::new(),
                panics: Mutex::new(Vec::new()),
                progress,
                time_scale,
                instant,
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug elsewhere; the state is still consistent enough
        // to report, so poisoning is ignored.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the state, then wakes the feed and reports progress if `f` made that due.
    pub(crate) fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let (out, wake, finals, cancels, progress) = {
            let mut st = self.lock();
            let out = f(&mut st);
            let wake = std::mem::take(&mut st.wake);
            let finals = std::mem::take(&mut st.final_due);
            let cancels = std::mem::take(&mut st.cancel_due);
            let progress = std::mem::take(&mut st.progress_due).then(|| Progress {
                chunks_done: st.validated,
                chunks_total: self.shared.workload.chunks_total(),
                elapsed: self.now(),
            });
            (out, wake, finals, cancels, progress)
        };
        if cancels {
            self.shared.cancels.notify_waiters();
        }
        if wake {
            self.shared.feed.notify_waiters();
        }
        if finals {
            self.shared.finals.notify_waiters();
        }
        if let (Some(p), Some(cb)) = (progress, &self.shared.progress) {
            cb(p);
        }
        out
    }

    /// Time since the run started (virtual in simulated runs).
    ///
    /// In a live run at time scale K, this is scenario time: real time × K.
    pub fn now(&self) -> Duration {
        let read = || Instant::now().saturating_duration_since(self.shared.start);
        let real = match &self.shared.instant {
            Some(cache) => cache.get_or(read),
            None => read(),
        };
        if self.shared.time_scale == 1.0 {
            real
        } else {
            real.mul_f64(self.shared.time_scale)
        }
    }

    /// Sleeps for `d` of scenario time (real time / K in a live run at time scale K). Strategies
    /// sleep with this, so that their own delays scale with the scenario.
    pub async fn sleep(&self, d: Duration) {
        tokio::time::sleep(self.real(d)).await;
    }

    /// Real time for `d` of scenario time.
    pub fn real(&self, d: Duration) -> Duration {
        if self.shared.time_scale == 1.0 {
            d
        } else {
            d.div_f64(self.shared.time_scale)
        }
    }

    /// The run's time zero.
    pub fn start(&self) -> Instant {
        self.shared.start
    }

    /// When the orchestrator last crashed (a timeline `crash`), if it has: a strategy started
    /// again after it measures what the crash cost from here.
    pub fn last_crash(&self) -> Option<Duration> {
        self.lock().last_crash
    }

    /// The parameter store.
    pub fn params(&self) -> &ParamStore {
        &self.shared.params
    }

    /// The workload.
    pub fn workload(&self) -> &Workload {
        &self.shared.workload
    }

    /// The next file to process, in admission order; `None` once no file will ever come again
    /// (every file has arrived and was admitted, rejected or cancelled).
    pub async fn next_file(&self) -> Option<FileTask> {
        loop {
            let notified = self.shared.feed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if let Some(task) = st.take_task() {
                    return Some(task);
                }
                if st.feed_closed() {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// The request for chunk `chunk` of `file`, attempt `attempt` (0 for the first).
    pub fn request(&self, file: FileId, chunk: u32, attempt: u32) -> ChatRequest {
        let spec = self.shared.workload.chunk(file, chunk);
        ChatRequest {
            file,
            chunk,
            attempt,
            prompt_tokens: spec.prompt_tokens,
            max_tokens: spec.max_tokens,
            completion_tokens: spec.completion_tokens,
            key: spec.key,
        }
    }

    /// Sends one LLM request, recording it. Dropping the future mid-call (cancellation) is
    /// recorded as the call ending then.
    pub async fn call(&self, req: ChatRequest) -> Result<ChatResponse, LlmError> {
        let sent = self.now();
        let charge = self.shared.tpm_charge.charge(req.prompt_tokens, req.max_tokens);
        let traced = {
            let mut st = self.lock();
            st.recorder.request_sent(sent, req.attempt);
            let f = st.file(req.file);
            f.in_flight += 1;
            f.requests += 1;
            st.trace.as_mut().map(|t| {
                t.calls.push(crate::trace::Call {
                    file: req.file,
                    chunk: req.chunk,
                    attempt: req.attempt,
                    charge,
                    sent,
                    ended: None,
                    end: None,
                });
                t.calls.len() - 1
            })
        };
        let mut guard = CallGuard {
            ctx: self,
            file: req.file,
            sent,
            traced,
            armed: true,
        };
        let file = req.file;
        let mut result = match self.shared.backend.answer_at_send(&req) {
            Some(s) => {
                crate::backend::wait(s.after).await;
                s.answer
            }
            None => self.shared.backend.complete(req).await,
        };
        guard.armed = false;
        let now = self.now();
        // Rate-limit snapshots say when they were seen, so that a controller can age them.
        match &mut result {
            Ok(r) => r.rate_limit.observed = Some(now),
            Err(LlmError::Throttled { rate_limit, .. } | LlmError::Server { rate_limit, .. }) => {
                rate_limit.observed = Some(now);
            }
            Err(_) => {}
        }
        let outcome = match &result {
            Ok(r) => Ok((r.usage, charge)),
            Err(e) => Err(e.kind()),
        };
        self.with_state(|st| {
            st.trace_call_ended(traced, now, outcome.map_or_else(CallEnd::Error, |_| CallEnd::Answered));
            st.call_ended(file, sent, now, Some(outcome));
        });
        result
    }

    /// Reports how the strategy finished with a chunk. Call it once per chunk handed out.
    pub fn chunk_done(&self, file: FileId, chunk: u32, outcome: ChunkOutcome) {
        let now = self.now();
        self.with_state(|st| st.chunk_done(file, chunk, outcome, now));
    }

    /// Whether a file has reached a final state (completed, failed, cancelled, rejected).
    pub fn is_final(&self, file: FileId) -> bool {
        self.lock().status(file).is_final()
    }

    /// A file's status now.
    pub fn status(&self, file: FileId) -> FileStatus {
        self.lock().status(file)
    }

    /// Waits until `file` reaches a final state. Never poll [`RunContext::is_final`] in a loop
    /// instead: a task that spins keeps paused time from advancing and hangs the run.
    pub async fn wait_final(&self, file: FileId) -> FileStatus {
        self.wait_for(|st| {
            let s = st.status(file);
            s.is_final().then_some(s)
        })
        .await
    }

    /// Waits until the cancellation of `file` (by file, user or run) has been requested, and
    /// returns when it was. For a design whose cancellation path must not depend on holding the
    /// file's [`FileTask`] (a flag written for files split before a crash, say).
    pub async fn cancel_requested(&self, file: FileId) -> Duration {
        loop {
            let notified = self.shared.cancels.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(at) = self.lock().files[file.0 as usize].cancel_at {
                return at;
            }
            notified.await;
        }
    }

    /// Applies a parameter change now, as a timeline `set` does: the strategy reads it from the
    /// parameter store, and the event log and time series show it.
    pub fn apply_params(&self, update: &crate::params::ParamUpdate) {
        self.params().set(update);
        let detail = serde_json::to_string(update).unwrap_or_default();
        let now = self.now();
        self.lock()
            .recorder
            .event(now, EventKind::ParamsChanged, None, None, detail);
    }

    /// Requests a cancellation now, from outside the scenario (a person, through the control
    /// API), exactly as a timeline `cancel` reaches the strategy; the report leaves the work it
    /// cancels out of the required work, as it does the timeline's. Returns how many files it
    /// newly reached (files already cancelled, or ended, are not counted).
    pub fn cancel(&self, target: CancelTarget) -> u64 {
        let now = self.now();
        self.with_state(|st| {
            st.live_cancels.push((now, target));
            st.cancel(target, now)
        })
    }

    /// A timeline `cancel`: the scenario's own, already outside the required work.
    pub(crate) fn timeline_cancel(&self, target: CancelTarget) {
        let now = self.now();
        self.with_state(|st| st.cancel(target, now));
    }

    /// Where every file and user stands now, for a control API's `GET /progress`.
    pub fn snapshot(&self) -> Snapshot {
        let now = self.now();
        let st = self.lock();
        let users = st.workload.users() as usize;
        let mut per_user = vec![UserProgress::default(); users];
        let files = (0..st.files.len())
            .map(|i| {
                let id = FileId(i as u32);
                let spec = st.workload.file(id);
                let f = &st.files[i];
                let u = &mut per_user[spec.user.0 as usize];
                match f.status {
                    FileStatus::Queued => u.queued += 1,
                    FileStatus::Rejected => u.rejected += 1,
                    FileStatus::Pending => {}
                    _ => u.admitted += 1,
                }
                FileProgress {
                    file: id,
                    user: spec.user,
                    status: f.status,
                    chunks: spec.chunks,
                    done: st.results.held(id),
                    failed: st.results.failed(id),
                    in_flight: f.in_flight,
                    requests: f.requests,
                    throttled: f.throttled,
                    tokens: f.tokens,
                    elapsed: if f.status == FileStatus::Pending {
                        Duration::ZERO
                    } else {
                        f.ended_at.unwrap_or(now).saturating_sub(spec.arrival)
                    },
                }
            })
            .collect();
        Snapshot {
            elapsed: now,
            requests: st.recorder.requests,
            throttled: st.recorder.throttled,
            tokens_answered: st.recorder.tokens_answered,
            in_flight: st.recorder.in_flight(),
            concurrency_limit: st.recorder.limit(),
            files,
            users: per_user,
        }
    }

    /// The time series' last `n` seconds, up to and including the current one (which is still
    /// filling), for a live view.
    pub fn recent_seconds(&self, n: usize) -> Vec<crate::recorder::SecondRow> {
        let now = self.now();
        self.lock().recorder.tail(now, n)
    }

    /// Waits until every file of the run has reached a final state.
    pub async fn all_final(&self) {
        self.wait_for(|st| (st.unfinished() == 0).then_some(())).await;
    }

    async fn wait_for<T>(&self, mut ready: impl FnMut(&State) -> Option<T>) -> T {
        loop {
            let notified = self.shared.finals.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = ready(&self.lock()) {
                return v;
            }
            notified.await;
        }
    }

    /// Reopens a failed file (Failed → Admitted), as a Step Functions redrive or a DLQ redrive
    /// does: it takes a quota slot of its user again, and the returned task holds only the chunks
    /// without a stored result. The strategy processes it like any task from the feed; the
    /// report counts it in `files_redriven`. Refused for a file that is not failed, or when its
    /// user's quota is full.
    pub fn redrive(&self, file: FileId) -> Result<FileTask, RedriveRefused> {
        let now = self.now();
        self.with_state(|st| st.redrive(file, now))
    }

    /// State of type `T` that survives a crash, shared by every caller in this run: what a
    /// strategy keeps in AWS services (queues, tables, execution state) lives here, while its
    /// tasks and in-memory state are lost when the orchestrator crashes. Created with
    /// `T::default()` on first use.
    pub fn durable<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut map = self.shared.durable.lock().unwrap_or_else(|e| e.into_inner());
        let any = map
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()))
            .clone();
        any.downcast::<T>()
            .unwrap_or_else(|_| unreachable!("the map holds a T under T's type id"))
    }

    /// A seeded generator for one purpose (`label`), the same stream for the same run seed and
    /// label whatever else draws. It implements `rand_core::RngCore`.
    pub fn rng(&self, label: &str) -> RunRng {
        RunRng::new(derive_seed(derive_seed(self.shared.seed, "strategy"), label))
    }

    /// Adds `v` to the strategy's figure `name` (in the summary's `strategy_metrics`, and
    /// watchable by `regress --metric NAME`).
    pub fn add_metric(&self, name: &str, v: f64) {
        let mut st = self.lock();
        match st.metrics.get_mut(name) {
            Some(x) => *x += v,
            None => {
                st.metrics.insert(name.to_owned(), v);
            }
        }
    }

    /// Sets the strategy's figure `name` to `v`.
    pub fn set_metric(&self, name: &str, v: f64) {
        self.lock().metrics.insert(name.to_owned(), v);
    }

    /// Records the value of the gauge `name` now (queue depth, warm functions, a pacer's rate…):
    /// each second of the time series shows the value at its end.
    pub fn gauge(&self, name: &str, v: f64) {
        let now = self.now();
        self.lock().recorder.set_gauge(now, name, v);
    }

    /// Appends a line to the artifact `name` (written to the report folder as
    /// `STRATEGY-NAME.jsonl`), at most [`MAX_ARTIFACT_LINES`] lines each.
    pub fn artifact(&self, name: &str, line: String) {
        let mut st = self.lock();
        let a = match st.artifacts.get_mut(name) {
            Some(a) => a,
            None => st.artifacts.entry(name.to_owned()).or_default(),
        };
        if a.lines.len() < MAX_ARTIFACT_LINES {
            a.lines.push(line);
        } else {
            a.dropped += 1;
        }
    }

    /// Resolves when a task spawned with [`RunContext::spawn`] has panicked.
    pub(crate) async fn panicked(&self) {
        self.shared.panicked.cancelled().await;
    }

    /// The messages of the panics in spawned tasks.
    pub(crate) fn panics(&self) -> Vec<String> {
        self.shared.panics.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Spawns a task that belongs to this run: a crash aborts it, and a panic in it ends the run
    /// with an error ([`crate::SimError::StrategyPanicked`]) rather than passing unnoticed.
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = tokio::spawn(CatchPanic {
            fut: Box::pin(fut),
            ctx: self.clone(),
        });
        let mut tasks = self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if tasks.len() >= 64 && tasks.len().is_power_of_two() {
            tasks.retain(|t| !t.is_finished());
        }
        tasks.push(handle.abort_handle());
        handle
    }

    /// Aborts every task spawned with [`RunContext::spawn`] and waits until they are gone.
    pub(crate) async fn abort_tasks(&self) {
        let tasks = std::mem::take(&mut *self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in &tasks {
            t.abort();
        }
        while tasks.iter().any(|t| !t.is_finished()) {
            tokio::task::yield_now().await;
        }
    }

    /// A uniform draw in `[0, 1)` from the run's seeded generator.
    pub fn random_f64(&self) -> f64 {
        self.shared.rng.lock().unwrap_or_else(|e| e.into_inner()).next_f64()
    }

    /// Records the strategy's concurrency limit (shown in the time series).
    pub fn set_concurrency_limit(&self, limit: u32) {
        let now = self.now();
        self.lock().recorder.set_limit(now, limit);
    }

    /// Bills `amount` orchestration units (state transitions, queue requests, invocations…).
    pub fn bill(&self, unit: Unit, amount: f64) {
        *self.lock().units.entry(unit).or_default() += amount;
    }

    /// Adds a note to the run's event log.
    pub fn note(&self, text: impl Into<String>) {
        let now = self.now();
        self.lock()
            .recorder
            .event(now, EventKind::Note, None, None, text.into());
    }

    pub(crate) fn backend(&self) -> &Arc<dyn LlmBackend> {
        &self.shared.backend
    }
}
