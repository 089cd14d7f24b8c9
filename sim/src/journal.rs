//! The durable result journal (`run --journal FILE`): an append-only file with one record per
//! validated chunk, written before the result counts, so that a run killed at any moment can be
//! run again with the same journal and resume: chunks with a stored result are not sent again.
//!
//! **Format, version 1** (all integers little-endian):
//! - a 28-byte header: the magic `ORCHJRNL`, the version (`u32`, 1), the scenario's
//!   [`fingerprint`] (`u64`: its workload, seed, results mode and verdict rule, so that a
//!   journal of another scenario or seed is refused), 4 reserved zero bytes, and a CRC-32 of the
//!   24 bytes before it;
//! - then 20-byte records: file index (`u32`), chunk (`u32`), the verdict's code (`u8`, see
//!   [`mock_llm::Verdict::code`]), 3 reserved zero bytes, the tokens the answer used (`u32`), and
//!   a CRC-32 of the 16 bytes before it.
//!
//! **Damage.** Only the last record can be torn by a kill: a partial record at the end, or a
//! whole last record whose checksum fails, is reported and ignored (and cut off before new
//! records are appended). Anything else (a bad header, a record that fails its checksum with
//! records after it, a record naming a chunk the scenario does not have or a chunk twice) is an
//! error naming the byte offset: the journal is never half-trusted.
//!
//! **Durability.** Each record is written with one `write` call to the file (no user-space
//! buffer) before [`crate::RunContext::chunk_done`] counts the result: once counted, it is in the
//! operating system's page cache, so it survives the process being killed (`kill -9`, a panic, an
//! OOM kill). It is not `fsync`ed: a power cut or a kernel crash may lose the records of the
//! last seconds (as the OS flushes them), and resuming then redoes those chunks, never more.
//! With `at-end` results, a file's records are written when the file completes, all at once.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use mock_llm::Verdict;

use crate::error::SimError;
use crate::scenario::{FileId, Scenario};

/// The format version this build reads and writes.
pub const VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"ORCHJRNL";
/// Bytes in the header.
pub const HEADER: usize = 28;
/// Bytes in a record.
pub const RECORD: usize = 20;

/// One validated chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The file.
    pub file: FileId,
    /// The chunk.
    pub chunk: u32,
    /// The stored verdict.
    pub verdict: Verdict,
    /// Tokens the answer used.
    pub tokens: u32,
}

/// The last record, found damaged and ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailDamage {
    /// Fewer bytes than a record (or a header): a write cut short.
    Torn {
        /// Where it starts.
        offset: u64,
        /// Its bytes.
        bytes: u64,
    },
    /// A whole record whose checksum fails.
    Corrupt {
        /// Where it starts.
        offset: u64,
    },
}

impl std::fmt::Display for TailDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TailDamage::Torn { offset, bytes } => {
                write!(f, "a torn last record ({bytes} bytes at byte {offset}) was ignored")
            }
            TailDamage::Corrupt { offset } => {
                write!(f, "a last record failing its checksum (at byte {offset}) was ignored")
            }
        }
    }
}

/// What a journal held when opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The records, in order.
    pub entries: Vec<Entry>,
    /// The damaged last record, if there was one.
    pub damage: Option<TailDamage>,
    /// The bytes that are sound (header and whole, checked records).
    pub sound_len: u64,
}

/// The fingerprint of what a journal's records depend on: the workload, the seed, the results
/// mode and the verdict rule. FNV-1a over their JSON, so it is the same on every machine.
pub fn fingerprint(scenario: &Scenario) -> u64 {
    let text = serde_json::json!({
        "workload": scenario.workload,
        "seed": scenario.seed,
        "results": scenario.results,
        "invalid_rate": scenario.provider.invalid_rate.0,
    })
    .to_string();
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn header(fp: u64) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&fp.to_le_bytes());
    let crc = crc32fast::hash(&h[..24]);
    h[24..].copy_from_slice(&crc.to_le_bytes());
    h
}

fn record(e: &Entry) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[..4].copy_from_slice(&e.file.0.to_le_bytes());
    r[4..8].copy_from_slice(&e.chunk.to_le_bytes());
    r[8] = e.verdict.code();
    r[12..16].copy_from_slice(&e.tokens.to_le_bytes());
    let crc = crc32fast::hash(&r[..16]);
    r[16..].copy_from_slice(&crc.to_le_bytes());
    r
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes"))
}

/// Reads a journal's bytes: the pure part of [`Journal::open`], for tests. `chunks_of` gives a
/// file's chunk count (`None`: no such file). An error says what is wrong and at which byte.
pub fn parse(bytes: &[u8], fp: u64, chunks_of: impl Fn(FileId) -> Option<u32>) -> Result<Recovered, String> {
    if bytes.len() < HEADER {
        // Empty, or a header cut short by a kill during creation: nothing was recorded. Any other
        // short file is not a journal, and must not be overwritten as one.
        if bytes != &header(fp)[..bytes.len()] {
            return Err(format!(
                "not an orchbench journal ({} bytes, not the start of this scenario's journal header)",
                bytes.len()
            ));
        }
        let damage = (!bytes.is_empty()).then_some(TailDamage::Torn {
            offset: 0,
            bytes: bytes.len() as u64,
        });
        return Ok(Recovered {
            entries: Vec::new(),
            damage,
            sound_len: 0,
        });
    }
    let h = &bytes[..HEADER];
    if &h[..8] != MAGIC {
        return Err("not an orchbench journal (its first 8 bytes are not `ORCHJRNL`)".into());
    }
    if crc32fast::hash(&h[..24]) != u32_at(h, 24) {
        return Err("its header (bytes 0 to 27) fails its checksum".into());
    }
    let version = u32_at(h, 8);
    if version != VERSION {
        return Err(format!(
            "it is format version {version}; this orchbench reads version {VERSION}"
        ));
    }
    let theirs = u64::from_le_bytes(h[12..20].try_into().expect("eight bytes"));
    if theirs != fp {
        return Err(format!(
            "it was written for another scenario or seed (fingerprint {theirs:016x}; this run's is {fp:016x})"
        ));
    }
    let body = &bytes[HEADER..];
    let whole = body.len() / RECORD;
    let rest = body.len() % RECORD;
    let mut entries = Vec::with_capacity(whole);
    let mut seen = BTreeSet::new();
    let mut damage = None;
    for i in 0..whole {
        let offset = (HEADER + i * RECORD) as u64;
        let r = &body[i * RECORD..(i + 1) * RECORD];
        let last = i + 1 == whole && rest == 0;
        if crc32fast::hash(&r[..16]) != u32_at(r, 16) {
            if last {
                damage = Some(TailDamage::Corrupt { offset });
                break;
            }
            return Err(format!(
                "the record at byte {offset} fails its checksum, and {} bytes follow it: the journal is \
                 damaged before its end",
                bytes.len() as u64 - offset - RECORD as u64
            ));
        }
        let file = FileId(u32_at(r, 0));
        let chunk = u32_at(r, 4);
        let verdict = Verdict::from_code(r[8]).ok_or_else(|| {
            format!(
                "the record at byte {offset} holds verdict code {}, which no verdict has",
                r[8]
            )
        })?;
        match chunks_of(file) {
            Some(n) if chunk < n => {}
            _ => {
                return Err(format!(
                    "the record at byte {offset} names {file} chunk {chunk}, which this scenario does not have"
                ));
            }
        }
        if !seen.insert((file, chunk)) {
            return Err(format!(
                "the record at byte {offset} stores {file} chunk {chunk} a second time"
            ));
        }
        entries.push(Entry {
            file,
            chunk,
            verdict,
            tokens: u32_at(r, 12),
        });
    }
    if rest > 0 {
        damage = Some(TailDamage::Torn {
            offset: (HEADER + whole * RECORD) as u64,
            bytes: rest as u64,
        });
    }
    let sound_len = (HEADER + entries.len() * RECORD) as u64;
    Ok(Recovered {
        entries,
        damage,
        sound_len,
    })
}

/// [`parse`] against `scenario`'s fingerprint and workload.
fn parse_for(bytes: &[u8], scenario: &Scenario) -> Result<Recovered, String> {
    let workload = crate::workload::Workload::generate(&scenario.workload, scenario.seed);
    parse(bytes, fingerprint(scenario), |f| {
        workload.files().get(f.0 as usize).map(|s| s.chunks)
    })
}

/// An open journal: what it held, and the file new records are appended to.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    recovered: Recovered,
    appended: u64,
}

impl Journal {
    /// Opens the journal at `path` for `scenario`: creates it when absent or empty; otherwise
    /// reads and checks it (a damaged last record is cut off and reported in
    /// [`Journal::recovered`]; any other damage, or another scenario's journal, is an error that
    /// changes nothing on disk).
    pub fn open(path: &Path, scenario: &Scenario) -> Result<Journal, SimError> {
        let fail = |message: String| SimError::Journal {
            path: path.display().to_string(),
            message,
        };
        let io = |what: &str, e: std::io::Error| fail(format!("cannot {what}: {e}"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io("open it", e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| io("read it", e))?;
        let fp = fingerprint(scenario);
        let recovered = parse_for(&bytes, scenario).map_err(fail)?;
        if recovered.sound_len == 0 {
            file.set_len(0).map_err(|e| io("reset it", e))?;
            file.seek(SeekFrom::Start(0)).map_err(|e| io("reset it", e))?;
            file.write_all(&header(fp)).map_err(|e| io("write its header", e))?;
        } else {
            // Cut a damaged last record off, so that new records follow sound ones.
            file.set_len(recovered.sound_len)
                .map_err(|e| io("cut its damaged end", e))?;
            file.seek(SeekFrom::End(0)).map_err(|e| io("seek its end", e))?;
        }
        Ok(Journal {
            path: path.to_owned(),
            file,
            recovered,
            appended: 0,
        })
    }

    /// What the journal held when opened.
    pub fn recovered(&self) -> &Recovered {
        &self.recovered
    }

    /// Records written since it was opened.
    pub fn appended(&self) -> u64 {
        self.appended
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record with a single `write` (see the module docs for what survives what).
    pub fn append(&mut self, e: &Entry) -> std::io::Result<()> {
        self.file.write_all(&record(e))?;
        self.appended += 1;
        Ok(())
    }
}

/// Every record of the journal at `path`, checked as [`Journal::open`] does (without changing
/// the file): for tests and tools.
pub fn read(path: &Path, scenario: &Scenario) -> Result<Recovered, SimError> {
    let bytes = std::fs::read(path).map_err(|e| SimError::Journal {
        path: path.display().to_string(),
        message: format!("cannot read it: {e}"),
    })?;
    parse_for(&bytes, scenario).map_err(|message| SimError::Journal {
        path: path.display().to_string(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FP: u64 = 0x1234;

    fn journal(entries: &[Entry]) -> Vec<u8> {
        let mut b = header(FP).to_vec();
        for e in entries {
            b.extend_from_slice(&record(e));
        }
        b
    }

    fn chunks(f: FileId) -> Option<u32> {
        (f.0 < 50).then_some(20)
    }

    fn entries() -> impl Strategy<Value = Vec<Entry>> {
        proptest::collection::btree_set((0u32..50, 0u32..20), 0..40).prop_flat_map(|keys| {
            let n = keys.len();
            (Just(keys), proptest::collection::vec((1u8..=4, any::<u32>()), n)).prop_map(|(keys, rest)| {
                keys.into_iter()
                    .zip(rest)
                    .map(|((f, c), (code, tokens))| Entry {
                        file: FileId(f),
                        chunk: c,
                        verdict: Verdict::from_code(code).expect("1 to 4 are verdicts"),
                        tokens,
                    })
                    .collect()
            })
        })
    }

    #[test]
    fn a_sound_journal_reads_back_every_record() {
        let e = vec![
            Entry {
                file: FileId(3),
                chunk: 1,
                verdict: Verdict { valid: true, issues: 0 },
                tokens: 900,
            },
            Entry {
                file: FileId(0),
                chunk: 19,
                verdict: Verdict {
                    valid: false,
                    issues: 2,
                },
                tokens: 1,
            },
        ];
        let r = parse(&journal(&e), FP, chunks).expect("sound");
        assert_eq!((r.entries, r.damage, r.sound_len), (e, None, 68));
    }

    #[test]
    fn another_scenarios_journal_and_a_foreign_file_are_refused() {
        let e = parse(&journal(&[]), FP + 1, chunks).expect_err("another fingerprint");
        assert!(e.contains("another scenario or seed"), "{e}");
        let e = parse(b"hello, this is not a journal at all", FP, chunks).expect_err("foreign");
        assert!(e.contains("not an orchbench journal"), "{e}");
        // A short file that is not the start of a header is refused too, never overwritten.
        let e = parse(b"garbage", FP, chunks).expect_err("short foreign");
        assert!(e.contains("not an orchbench journal"), "{e}");
    }

    proptest! {
        /// A journal cut anywhere (a kill mid-write) reads as a prefix of its records, with the
        /// cut reported when it fell inside a record; never an error, never a record not written.
        #[test]
        fn a_truncated_journal_resumes_from_a_prefix(e in entries(), cut in any::<prop::sample::Index>()) {
            let full = journal(&e);
            let at = cut.index(full.len() + 1);
            let r = parse(&full[..at], FP, chunks).expect("a cut journal is never an error");
            let whole = at.saturating_sub(HEADER) / RECORD;
            prop_assert_eq!(&r.entries[..], &e[..whole.min(e.len())]);
            let torn = at > 0 && (at < HEADER || !(at - HEADER).is_multiple_of(RECORD));
            prop_assert_eq!(r.damage.is_some(), torn);
        }

        /// A journal with one bit flipped anywhere is an error, or reads as a prefix of its
        /// records (the flip hit the last record, which is then ignored): never a wrong resume.
        #[test]
        fn a_flipped_bit_is_an_error_or_costs_only_the_last_record(
            e in entries(), at in any::<prop::sample::Index>(), bit in 0u8..8,
        ) {
            let mut b = journal(&e);
            let i = at.index(b.len());
            b[i] ^= 1 << bit;
            match parse(&b, FP, chunks) {
                Ok(r) => {
                    // Only the last record's bytes can be forgiven.
                    prop_assert!(i >= b.len() - RECORD && !e.is_empty(), "byte {} flipped, still read", i);
                    prop_assert_eq!(&r.entries[..], &e[..e.len() - 1]);
                    let corrupt = matches!(r.damage, Some(TailDamage::Corrupt { .. }));
                    prop_assert!(corrupt, "the flip is reported");
                }
                Err(msg) => prop_assert!(msg.contains("byte") || msg.contains("journal") || msg.contains("fingerprint"), "{}", msg),
            }
        }
    }
}
