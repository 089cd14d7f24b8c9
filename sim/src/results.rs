//! The result store: where chunk verdicts end up, at most once per (file, chunk), and each chunk's
//! terminal state.
//!
//! Each chunk is in exactly one state: *open* (no answer yet), *failed* (the strategy gave up on
//! it), or *validated* (a verdict is held). A verdict always wins over a failure: a duplicate
//! delivery that failed does not undo, or pre-empt, another that succeeded.
//!
//! In `incremental` mode a result is committed as soon as it is stored, so that a run that crashes
//! resumes from the last successful validation. In `at-end` mode a file's results are staged and
//! committed together when the file completes; a crash, a failure or a cancellation of the file
//! discards what was staged (the reference design stores results "all at once at the end").
//! Memory: one byte per chunk of each file that has started, plus a few counters per file.

use mock_llm::Verdict;
use simkit::rng::mix64;

use crate::scenario::{FileId, ResultsMode};

/// Slot bit: the verdict is committed (survives a crash).
const COMMITTED: u8 = 0x80;
/// Slot value: the strategy gave up on the chunk.
const FAILED: u8 = 0x20;
/// A committed verdict restored from a journal (an earlier run's work).
const RESTORED: u8 = 0x40;
/// The bits of a slot that hold a verdict's code.
const VERDICT: u8 = 0x0f;

/// What storing a result did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// The result was new, and is now held.
    New,
    /// A result for this chunk was already held; nothing changed.
    Duplicate,
}

/// A chunk's terminal state, as the store holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkState {
    /// No answer kept, and not given up on.
    Open,
    /// The strategy gave up on it.
    Failed,
    /// A verdict is held (committed or staged).
    Validated(Verdict),
}

#[derive(Clone, Debug, Default)]
struct FileResults {
    slots: Box<[u8]>,
    held: u32,
    failed: u32,
    committed: u32,
    committed_tokens: u64,
    staged_tokens: u64,
    invalid: u32,
}

impl FileResults {
    /// Drops staged (uncommitted) verdicts.
    fn discard_staged(&mut self) {
        if self.held == self.committed {
            return;
        }
        for s in self.slots.iter_mut() {
            if *s & COMMITTED == 0
                && let Some(v) = Verdict::from_code(*s)
            {
                if !v.valid {
                    self.invalid -= 1;
                }
                *s = 0;
            }
        }
        self.held = self.committed;
        self.staged_tokens = 0;
    }
}

/// The store. See the module docs.
#[derive(Clone, Debug)]
pub struct ResultStore {
    mode: ResultsMode,
    files: Vec<FileResults>,
}

impl ResultStore {
    /// An empty store for `files` files.
    pub fn new(mode: ResultsMode, files: usize) -> Self {
        Self {
            mode,
            files: vec![FileResults::default(); files],
        }
    }

    /// Makes room for a file's `chunks` results (idempotent).
    pub fn open(&mut self, file: FileId, chunks: u32) {
        let f = &mut self.files[file.0 as usize];
        if f.slots.is_empty() && chunks > 0 {
            f.slots = vec![0; chunks as usize].into_boxed_slice();
        }
    }

    /// Stores the result of one chunk, using `tokens` tokens. At most once per chunk; a verdict
    /// replaces a failure.
    pub fn store(&mut self, file: FileId, chunk: u32, verdict: Verdict, tokens: u64) -> Stored {
        let f = &mut self.files[file.0 as usize];
        let slot = &mut f.slots[chunk as usize];
        match *slot {
            0 => {}
            FAILED => f.failed -= 1,
            _ => return Stored::Duplicate,
        }
        f.held += 1;
        if !verdict.valid {
            f.invalid += 1;
        }
        match self.mode {
            ResultsMode::Incremental => {
                *slot = verdict.code() | COMMITTED;
                f.committed += 1;
                f.committed_tokens += tokens;
            }
            ResultsMode::AtEnd => {
                *slot = verdict.code();
                f.staged_tokens += tokens;
            }
        }
        Stored::New
    }

    /// Puts back a verdict a journal kept from an earlier run, as committed (a file of `chunks`
    /// chunks); a chunk that already holds a verdict keeps it. Its tokens were spent by the
    /// earlier run: this run's token figures leave them out.
    pub fn restore(&mut self, file: FileId, chunks: u32, chunk: u32, verdict: Verdict) {
        self.open(file, chunks);
        let f = &mut self.files[file.0 as usize];
        let slot = &mut f.slots[chunk as usize];
        match *slot {
            0 => {}
            FAILED => f.failed -= 1,
            _ => return,
        }
        *slot = verdict.code() | COMMITTED | RESTORED;
        f.held += 1;
        f.committed += 1;
        if !verdict.valid {
            f.invalid += 1;
        }
    }

    /// Whether a chunk's verdict was restored from a journal rather than validated in this run.
    pub fn restored(&self, file: FileId, chunk: u32) -> bool {
        self.files[file.0 as usize]
            .slots
            .get(chunk as usize)
            .is_some_and(|s| s & RESTORED != 0)
    }

    /// Marks a chunk as given up on; `false` when it already had a terminal state (a verdict
    /// or an earlier failure), which stays as it was.
    pub fn fail(&mut self, file: FileId, chunk: u32) -> bool {
        let f = &mut self.files[file.0 as usize];
        let slot = &mut f.slots[chunk as usize];
        if *slot != 0 {
            return false;
        }
        *slot = FAILED;
        f.failed += 1;
        true
    }

    /// Reopens every failed chunk of a file (a restart or a redrive tries them again).
    pub fn reopen_failed(&mut self, file: FileId) {
        let f = &mut self.files[file.0 as usize];
        if f.failed == 0 {
            return;
        }
        for s in f.slots.iter_mut().filter(|s| **s == FAILED) {
            *s = 0;
        }
        f.failed = 0;
    }

    /// Commits whatever a file has staged (its completion, in `at-end` mode).
    pub fn commit(&mut self, file: FileId) {
        let f = &mut self.files[file.0 as usize];
        for s in f.slots.iter_mut().filter(|s| Verdict::from_code(**s).is_some()) {
            *s |= COMMITTED;
        }
        f.committed = f.held;
        f.committed_tokens += std::mem::take(&mut f.staged_tokens);
    }

    /// Drops what a file has staged but not committed (it failed or was cancelled, in `at-end`
    /// mode: its answers are wasted).
    pub fn discard(&mut self, file: FileId) {
        self.files[file.0 as usize].discard_staged();
    }

    /// A crash: staged results are lost; committed ones survive.
    pub fn crash(&mut self) {
        for f in &mut self.files {
            f.discard_staged();
        }
    }

    /// Results held for a file (committed or staged).
    pub fn held(&self, file: FileId) -> u32 {
        self.files[file.0 as usize].held
    }

    /// Chunks of a file given up on.
    pub fn failed(&self, file: FileId) -> u32 {
        self.files[file.0 as usize].failed
    }

    /// Whether a chunk has a result held.
    pub fn has(&self, file: FileId, chunk: u32) -> bool {
        matches!(self.state(file, chunk), ChunkState::Validated(_))
    }

    /// A chunk's terminal state.
    pub fn state(&self, file: FileId, chunk: u32) -> ChunkState {
        match self.files[file.0 as usize].slots.get(chunk as usize).copied() {
            None | Some(0) => ChunkState::Open,
            Some(FAILED) => ChunkState::Failed,
            Some(s) => Verdict::from_code(s & VERDICT).map_or(ChunkState::Open, ChunkState::Validated),
        }
    }

    /// The committed verdict of a chunk.
    pub fn committed(&self, file: FileId, chunk: u32) -> Option<Verdict> {
        let s = *self.files[file.0 as usize].slots.get(chunk as usize)?;
        if s & COMMITTED == 0 {
            None
        } else {
            Verdict::from_code(s & VERDICT)
        }
    }

    /// Committed results of a file.
    pub fn committed_count(&self, file: FileId) -> u32 {
        self.files[file.0 as usize].committed
    }

    /// Committed results over all files.
    pub fn committed_total(&self) -> u64 {
        self.files.iter().map(|f| u64::from(f.committed)).sum()
    }

    /// Tokens spent on a file's committed results.
    pub fn file_committed_tokens(&self, file: FileId) -> u64 {
        self.files[file.0 as usize].committed_tokens
    }

    /// Tokens spent on committed results.
    pub fn committed_tokens(&self) -> u64 {
        self.files.iter().map(|f| f.committed_tokens).sum()
    }

    /// A digest of every committed result (file, chunk, verdict), in file and chunk order: equal
    /// digests mean equal results. See [`digest_of`].
    pub fn digest(&self) -> u64 {
        digest_of(self.files.iter().enumerate().flat_map(|(f, r)| {
            r.slots.iter().enumerate().filter_map(move |(c, s)| {
                (*s & COMMITTED != 0)
                    .then(|| Verdict::from_code(*s & VERDICT).map(|v| (FileId(f as u32), c as u32, v)))
                    .flatten()
            })
        }))
    }

    /// Committed results that say "invalid".
    pub fn invalid_total(&self) -> u64 {
        self.files
            .iter()
            .filter(|f| f.held == f.committed)
            .map(|f| u64::from(f.invalid))
            .sum()
    }
}

/// The digest a run of `scenario` must end with when every chunk holds the provider's verdict:
/// computed from the workload and the verdict rule alone, never from a run, so that tests (and
/// users' own) can hold any strategy's `results_digest` to it as an independent oracle.
pub fn provider_digest(scenario: &crate::Scenario) -> u64 {
    digest_of(
        provider_verdicts(scenario)
            .into_iter()
            .enumerate()
            .flat_map(|(f, chunks)| {
                chunks
                    .into_iter()
                    .enumerate()
                    .map(move |(c, v)| (FileId(f as u32), c as u32, v))
            }),
    )
}

/// The provider's verdict for every chunk of `scenario`, by file and chunk: what a stored result
/// must be, computed from the workload and the verdict rule alone.
pub fn provider_verdicts(scenario: &crate::Scenario) -> Vec<Vec<Verdict>> {
    let workload = crate::workload::Workload::generate(&scenario.workload, scenario.seed);
    let provider = scenario.provider_config();
    let seed = simkit::rng::derive_seed(provider.seed, "verdicts");
    workload
        .files()
        .iter()
        .map(|f| {
            (0..f.chunks)
                .map(|c| Verdict::for_chunk(seed, workload.chunk(f.id, c).key, provider.invalid_rate.0))
                .collect()
        })
        .collect()
}

/// The digest of a sequence of results, as [`ResultStore::digest`] computes it.
pub fn digest_of(results: impl IntoIterator<Item = (FileId, u32, Verdict)>) -> u64 {
    results.into_iter().fold(0x6f72_6368_6265_6e63, |h, (f, c, v)| {
        mix64(h ^ mix64((u64::from(f.0) << 32 | u64::from(c)) ^ (u64::from(v.code()) << 56)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const V: Verdict = Verdict { valid: true, issues: 0 };

    #[test]
    fn a_chunk_result_is_stored_at_most_once() {
        let mut s = ResultStore::new(ResultsMode::Incremental, 1);
        s.open(FileId(0), 3);
        assert_eq!(s.store(FileId(0), 1, V, 10), Stored::New);
        assert_eq!(s.store(FileId(0), 1, V, 10), Stored::Duplicate);
        assert_eq!((s.held(FileId(0)), s.committed_tokens()), (1, 10));
    }

    #[test]
    fn a_verdict_wins_over_a_failure_and_a_failure_never_replaces_a_verdict() {
        // Two deliveries of chunk 0: one fails, the other succeeds, in either order. Either way
        // the chunk ends validated, and the failure count is back to zero.
        for fail_first in [true, false] {
            let mut s = ResultStore::new(ResultsMode::Incremental, 1);
            s.open(FileId(0), 2);
            if fail_first {
                assert!(s.fail(FileId(0), 0));
                assert_eq!(s.store(FileId(0), 0, V, 10), Stored::New);
            } else {
                assert_eq!(s.store(FileId(0), 0, V, 10), Stored::New);
                assert!(!s.fail(FileId(0), 0), "a validated chunk cannot fail");
            }
            assert_eq!(s.state(FileId(0), 0), ChunkState::Validated(V));
            assert_eq!((s.held(FileId(0)), s.failed(FileId(0))), (1, 0));
        }
    }

    #[test]
    fn incremental_results_survive_a_crash_and_at_end_results_do_not() {
        for (mode, survivors) in [(ResultsMode::Incremental, 2), (ResultsMode::AtEnd, 0)] {
            let mut s = ResultStore::new(mode, 1);
            s.open(FileId(0), 3);
            s.store(FileId(0), 0, V, 10);
            s.store(FileId(0), 2, V, 10);
            s.crash();
            assert_eq!(s.held(FileId(0)), survivors, "{mode:?}");
            assert_eq!(s.has(FileId(0), 0), survivors > 0);
        }
    }

    #[test]
    fn at_end_results_are_committed_when_the_file_ends() {
        let mut s = ResultStore::new(ResultsMode::AtEnd, 1);
        s.open(FileId(0), 2);
        let bad = Verdict {
            valid: false,
            issues: 2,
        };
        s.store(FileId(0), 0, V, 10);
        s.store(FileId(0), 1, bad, 5);
        assert_eq!(s.committed(FileId(0), 1), None);
        s.commit(FileId(0));
        s.crash();
        assert_eq!(s.committed(FileId(0), 1), Some(bad));
        assert_eq!(
            (s.committed_total(), s.committed_tokens(), s.invalid_total()),
            (2, 15, 1)
        );
    }

    #[test]
    fn discarding_a_failed_at_end_file_drops_its_staged_results() {
        let mut s = ResultStore::new(ResultsMode::AtEnd, 1);
        s.open(FileId(0), 3);
        s.store(FileId(0), 0, V, 10);
        s.fail(FileId(0), 1);
        s.discard(FileId(0));
        assert_eq!((s.held(FileId(0)), s.committed_tokens()), (0, 0));
        assert_eq!(s.state(FileId(0), 1), ChunkState::Failed, "the failure is kept");
    }

    proptest! {
        /// Under any sequence of stores, failures, reopenings, commits and crashes, the counters
        /// agree with the slots: `held` counts verdicts, `failed` counts failures, and a chunk
        /// that was ever validated and committed stays validated.
        #[test]
        fn counters_always_agree_with_the_chunk_states(
            mode in prop_oneof![Just(ResultsMode::Incremental), Just(ResultsMode::AtEnd)],
            ops in proptest::collection::vec((0u8..6, 0u32..5), 0..60),
        ) {
            let mut s = ResultStore::new(mode, 1);
            s.open(FileId(0), 5);
            let mut committed = [false; 5];
            for (op, c) in ops {
                match op {
                    0 | 1 => { s.store(FileId(0), c, V, 1); }
                    2 => { s.fail(FileId(0), c); }
                    3 => s.reopen_failed(FileId(0)),
                    4 => s.commit(FileId(0)),
                    _ => s.crash(),
                }
                for (i, was) in committed.iter_mut().enumerate() {
                    if *was {
                        prop_assert!(s.has(FileId(0), i as u32), "committed chunk {} lost", i);
                    }
                    *was = s.committed(FileId(0), i as u32).is_some();
                }
                let states: Vec<_> = (0..5).map(|i| s.state(FileId(0), i)).collect();
                let held = states.iter().filter(|x| matches!(x, ChunkState::Validated(_))).count() as u32;
                let failed = states.iter().filter(|x| **x == ChunkState::Failed).count() as u32;
                prop_assert_eq!((s.held(FileId(0)), s.failed(FileId(0))), (held, failed));
            }
        }
    }
}
