//! The seeded workload: files, their users, arrival times and chunk counts, and the token counts of
//! every chunk.
//!
//! Files are generated up front (O(files) memory). A chunk's token counts are a pure function of
//! the seed and the chunk's identity ([`Workload::chunk`]), so they cost no memory and do not
//! depend on the order in which a strategy asks for them.

use std::time::Duration;

use simkit::rng::{SimRng, derive_seed, hash3};

use crate::scenario::{Arrival, FileId, UserId, WorkloadConfig};

/// One file to validate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSpec {
    /// Its id.
    pub id: FileId,
    /// Who uploaded it.
    pub user: UserId,
    /// When it arrives, from the run's start (whole milliseconds).
    pub arrival: Duration,
    /// How many chunks it has.
    pub chunks: u32,
}

/// One chunk's request sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkSpec {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Tokens the model would write.
    pub completion_tokens: u32,
    /// The request's `max_tokens`.
    pub max_tokens: u32,
    /// The chunk's identity for the provider (file in the high 32 bits, index in the low).
    pub key: u64,
}

/// The generated workload.
#[derive(Clone, Debug)]
pub struct Workload {
    config: WorkloadConfig,
    chunk_seed: u64,
    files: Vec<FileSpec>,
    chunks_total: u64,
}

impl Workload {
    /// Generates the workload of `config` from `seed`.
    pub fn generate(config: &WorkloadConfig, seed: u64) -> Workload {
        let mut rng = SimRng::new(derive_seed(seed, "workload"));
        let n = config.files as usize;
        let mut files = Vec::with_capacity(n);
        let mut clock = 0f64; // seconds
        let mut chunks_total = 0u64;
        for i in 0..n {
            let arrival_s = match config.arrival {
                Arrival::AllAtOnce => 0.0,
                Arrival::Poisson { per_minute } => {
                    clock += rng.exponential(60.0 / per_minute.0);
                    clock
                }
                Arrival::Steady { per_minute } => i as f64 * 60.0 / per_minute.0,
                Arrival::Bursts { every, size } => (i as u64 / u64::from(size.get())) as f64 * every.0.as_secs_f64(),
            };
            let user = match &config.user_weights {
                None => UserId(rng.range_inclusive(0, u64::from(config.users.get()) - 1) as u32),
                Some(weights) => {
                    // A draw over the weights' sum, placed on their running total.
                    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
                    let mut draw = rng.range_inclusive(0, total - 1);
                    let mut user = 0;
                    for (i, w) in weights.iter().enumerate() {
                        if draw < u64::from(*w) {
                            user = i;
                            break;
                        }
                        draw -= u64::from(*w);
                    }
                    UserId(user as u32)
                }
            };
            let chunks = config.chunks_per_file.sample(&mut rng);
            chunks_total += u64::from(chunks);
            files.push(FileSpec {
                id: FileId(i as u32),
                user,
                arrival: Duration::from_millis((arrival_s * 1000.0).round() as u64),
                chunks,
            });
        }
        Workload {
            config: config.clone(),
            chunk_seed: derive_seed(seed, "chunks"),
            files,
            chunks_total,
        }
    }

    /// Every file, in arrival order.
    pub fn files(&self) -> &[FileSpec] {
        &self.files
    }

    /// One file.
    pub fn file(&self, id: FileId) -> &FileSpec {
        &self.files[id.0 as usize]
    }

    /// Total chunks over all files.
    pub fn chunks_total(&self) -> u64 {
        self.chunks_total
    }

    /// The number of users.
    pub fn users(&self) -> u32 {
        self.config.users.get()
    }

    /// The configuration it was generated from.
    pub fn config(&self) -> &WorkloadConfig {
        &self.config
    }

    /// The sizes of chunk `index` of `file`.
    pub fn chunk(&self, file: FileId, index: u32) -> ChunkSpec {
        let mut rng = SimRng::new(hash3(self.chunk_seed, u64::from(file.0), u64::from(index)));
        ChunkSpec {
            prompt_tokens: self.config.prompt_tokens.sample(&mut rng),
            completion_tokens: self.config.completion_tokens.sample(&mut rng),
            max_tokens: self.config.max_tokens.get(),
            key: chunk_key(file, index),
        }
    }
}

/// The provider-facing identity of a chunk.
pub fn chunk_key(file: FileId, index: u32) -> u64 {
    (u64::from(file.0) << 32) | u64::from(index)
}
