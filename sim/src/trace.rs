//! A run's trace, kept when [`crate::RunOptions::trace`] asks for it: every LLM call (its file,
//! chunk, when it was sent and how it ended), every result a strategy reported and what the result
//! store made of it, each file's cancellation, each crash with the results that survived it, and
//! each file's final state with its chunks'. It is what the testing kit
//! (`strategies::kit`) checks a strategy's promises against, after the run: the report's
//! figures are sums, and an invariant is about each chunk.
//!
//! Memory grows with calls (a few dozen bytes each), so the trace is for tests and small runs,
//! never on by default.

use std::time::Duration;

use crate::backend::ErrorKind;
use crate::context::FileStatus;
use crate::results::ChunkState;
use crate::scenario::FileId;

/// How an LLM call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallEnd {
    /// Answered.
    Answered,
    /// Refused or failed, of this kind.
    Error(ErrorKind),
    /// Its future was dropped mid-call (a cancellation, a crash).
    Dropped,
}

/// One LLM call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    /// The file.
    pub file: FileId,
    /// The chunk.
    pub chunk: u32,
    /// The strategy's attempt number (0 for the first).
    pub attempt: u32,
    /// What the provider charges it against TPM when it admits it (prompt tokens plus
    /// `max_tokens`, or as the scenario's `tpm_charge` says).
    pub charge: u64,
    /// When it was sent (run time).
    pub sent: Duration,
    /// When it ended (run time); `None` while in flight (a run never ends with one: it is
    /// dropped first).
    pub ended: Option<Duration>,
    /// How it ended.
    pub end: Option<CallEnd>,
}

/// What the store made of a result a strategy reported ([`crate::RunContext::chunk_done`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// A verdict, stored for the first time.
    New,
    /// A verdict for a chunk whose verdict was already held: not stored again.
    Duplicate,
    /// A verdict for a file that had ended or whose cancellation was requested: not kept.
    Discarded,
    /// The strategy gave the chunk up.
    Failed,
    /// The strategy dropped the chunk for its file's cancellation.
    Cancelled,
}

/// One result a strategy reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reported {
    /// The file.
    pub file: FileId,
    /// The chunk.
    pub chunk: u32,
    /// When.
    pub at: Duration,
    /// What the store made of it.
    pub stored: Stored,
}

/// A crash of the orchestrator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crash {
    /// When.
    pub at: Duration,
    /// The chunks whose verdicts the store kept through it (committed results; staged at-end
    /// results are lost), in file and chunk order.
    pub kept: Vec<(FileId, u32)>,
}

/// A file at the end of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEnd {
    /// The file.
    pub file: FileId,
    /// Its final status.
    pub status: FileStatus,
    /// When its cancellation was first requested, if it was.
    pub cancel_requested: Option<Duration>,
    /// Each chunk's state in the store, by chunk number.
    pub chunks: Vec<ChunkState>,
}

/// The trace of one run. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    /// Every LLM call, in the order sent.
    pub calls: Vec<Call>,
    /// Every result reported, in order.
    pub reported: Vec<Reported>,
    /// Every crash, in order.
    pub crashes: Vec<Crash>,
    /// Every file, by id.
    pub files: Vec<FileEnd>,
}
