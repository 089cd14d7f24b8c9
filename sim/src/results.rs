//! The result store: where chunk verdicts end up, at most once per (file, chunk).
//!
//! In `incremental` mode a result is committed as soon as it is stored, so that a run that crashes
//! resumes from the last successful validation. In `at-end` mode a file's results are staged and
//! committed together when the file ends; a crash loses what was staged.
//! Memory: one byte per chunk of each file that has started, plus a few counters per file.

use mock_llm::Verdict;
use mock_llm::rng::mix64;

use crate::scenario::{FileId, ResultsMode};

const COMMITTED: u8 = 0x80;

/// What storing a result did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// The result was new, and is now held.
    New,
    /// A result for this chunk was already held; nothing changed.
    Duplicate,
}

#[derive(Clone, Debug, Default)]
struct FileResults {
    slots: Box<[u8]>,
    held: u32,
    committed: u32,
    committed_tokens: u64,
    staged_tokens: u64,
    invalid: u32,
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

    /// Stores the result of one chunk, using `tokens` tokens. At most once per chunk.
    pub fn store(&mut self, file: FileId, chunk: u32, verdict: Verdict, tokens: u64) -> Stored {
        let f = &mut self.files[file.0 as usize];
        let slot = &mut f.slots[chunk as usize];
        if *slot != 0 {
            return Stored::Duplicate;
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

    /// Commits whatever a file has staged (its end, in `at-end` mode).
    pub fn commit(&mut self, file: FileId) {
        let f = &mut self.files[file.0 as usize];
        for s in f.slots.iter_mut().filter(|s| **s != 0) {
            *s |= COMMITTED;
        }
        f.committed = f.held;
        f.committed_tokens += std::mem::take(&mut f.staged_tokens);
    }

    /// A crash: staged results are lost; committed ones survive.
    pub fn crash(&mut self) {
        for f in &mut self.files {
            if f.held == f.committed {
                continue;
            }
            for s in f.slots.iter_mut() {
                if *s != 0 && *s & COMMITTED == 0 {
                    if Verdict::from_code(*s).is_some_and(|v| !v.valid) {
                        f.invalid -= 1;
                    }
                    *s = 0;
                }
            }
            f.held = f.committed;
            f.staged_tokens = 0;
        }
    }

    /// Results held for a file (committed or staged).
    pub fn held(&self, file: FileId) -> u32 {
        self.files[file.0 as usize].held
    }

    /// Whether a chunk has a result held.
    pub fn has(&self, file: FileId, chunk: u32) -> bool {
        self.files[file.0 as usize]
            .slots
            .get(chunk as usize)
            .is_some_and(|s| *s != 0)
    }

    /// The committed verdict of a chunk.
    pub fn committed(&self, file: FileId, chunk: u32) -> Option<Verdict> {
        let s = *self.files[file.0 as usize].slots.get(chunk as usize)?;
        if s & COMMITTED == 0 {
            None
        } else {
            Verdict::from_code(s & !COMMITTED)
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
                    .then(|| Verdict::from_code(*s & !COMMITTED).map(|v| (FileId(f as u32), c as u32, v)))
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

/// The digest of a sequence of results, as [`ResultStore::digest`] computes it.
pub fn digest_of(results: impl IntoIterator<Item = (FileId, u32, Verdict)>) -> u64 {
    results.into_iter().fold(0x6f72_6368_6265_6e63, |h, (f, c, v)| {
        mix64(h ^ mix64((u64::from(f.0) << 32 | u64::from(c)) ^ (u64::from(v.code()) << 56)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
