//! `fixed`: what most teams write first. A fixed pool of `max-parallelism` workers (read once, at
//! the start) taking chunks in arrival order from a shared queue, each retrying with exponential backoff and jitter on 429s
//! and 5xx, honouring the server's retry hint like openai-python does. Files are processed in
//! arrival order, chunk by chunk; cancellation is raced against every call and every backoff.

mod config;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use sim::scenario::FileId;
use sim::{ChunkOutcome, FileTask, RunContext};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use config::{Attempts, FixedConfig};

/// The settings `fixed` reads live from the parameter store (as `fixed.KEY`): `max_attempts`,
/// looked up when a chunk starts, so a change applies to the chunks started after it.
pub const LIVE_SETTINGS: &[&str] = &["max_attempts"];

use crate::retry::RetryDecision;
use crate::{BoxRun, Strategy};

/// The `fixed` strategy.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fixed {
    config: FixedConfig,
}

impl Fixed {
    /// With these settings.
    pub fn new(config: FixedConfig) -> Self {
        Self { config }
    }
}

impl Strategy for Fixed {
    fn name(&self) -> &str {
        "fixed"
    }

    fn describe(&self) -> &str {
        "a fixed pool of max-parallelism workers, exponential backoff with jitter on 429 and 5xx"
    }

    fn run(&self, ctx: RunContext) -> BoxRun {
        Box::pin(run(ctx, self.config))
    }
}

async fn run(ctx: RunContext, config: FixedConfig) {
    let workers = ctx.params().get().max_parallelism.get();
    ctx.set_concurrency_limit(workers);
    // Workers beyond the chunk count would never find work: they cost nothing.
    let needed = u32::try_from(ctx.workload().chunks_total()).unwrap_or(u32::MAX);
    let queue = Arc::new(WorkQueue::default());
    let pool: Vec<_> = (0..workers.min(needed))
        .map(|_| ctx.spawn(worker(ctx.clone(), queue.clone(), config)))
        .collect();
    // Keep one file ahead of the workers: enough to never leave them idle while files are
    // available, and the queue stays O(1) however many files are admitted.
    loop {
        queue.wait_until_empty().await;
        match ctx.next_file().await {
            Some(file) => queue.push(file),
            None => break,
        }
    }
    queue.close();
    for w in pool {
        // A worker ends only when the queue is closed and drained; an error means it was aborted
        // by a crash, in which case this future is being dropped too.
        let _ = w.await;
    }
}

/// Files waiting for workers, each with the position of its next chunk.
#[derive(Default)]
struct WorkQueue {
    state: Mutex<QueueState>,
    work: Notify,
    space: Notify,
}

#[derive(Default)]
struct QueueState {
    files: VecDeque<(Arc<FileTask>, usize)>,
    closed: bool,
}

/// What a worker gets from the queue.
enum Take {
    Chunk(Arc<FileTask>, u32),
    Wait,
    Closed,
}

impl WorkQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, file: FileTask) {
        self.lock().files.push_back((Arc::new(file), 0));
        self.work.notify_waiters();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.work.notify_waiters();
    }

    fn take(&self) -> Take {
        let mut q = self.lock();
        let Some((file, pos)) = q.files.front_mut() else {
            return if q.closed { Take::Closed } else { Take::Wait };
        };
        let take = Take::Chunk(file.clone(), file.chunks[*pos]);
        *pos += 1;
        if *pos == file.chunks.len() {
            q.files.pop_front();
            self.space.notify_waiters();
        }
        take
    }

    async fn wait_until_empty(&self) {
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().files.is_empty() {
                return;
            }
            notified.await;
        }
    }
}

/// `max_attempts` as the parameter store has it now, else as configured.
fn live_max_attempts(ctx: &RunContext, config: FixedConfig) -> u32 {
    ctx.params()
        .setting("fixed.max_attempts")
        .map_or(config.max_attempts.0.get(), |v| v as u32)
}

async fn worker(ctx: RunContext, queue: Arc<WorkQueue>, config: FixedConfig) {
    // Re-read the live setting only when the store changed (an atomic check per chunk, not a
    // lock and a lookup).
    let mut params = ctx.params().watch();
    let mut max_attempts = live_max_attempts(&ctx, config);
    loop {
        let job = match queue.take() {
            Take::Wait => {
                // Register for a wake-up, then look again, so a push in between is not missed.
                let notified = queue.work.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                match queue.take() {
                    Take::Wait => {
                        notified.await;
                        continue;
                    }
                    other => other,
                }
            }
            other => other,
        };
        match job {
            Take::Chunk(file, chunk) => {
                if params.has_changed().unwrap_or(false) {
                    params.mark_unchanged();
                    max_attempts = live_max_attempts(&ctx, config);
                }
                let outcome = if file.cancel.is_cancelled() {
                    ChunkOutcome::Cancelled
                } else {
                    validate(&ctx, file.id, chunk, &file.cancel, config, max_attempts).await
                };
                ctx.chunk_done(file.id, chunk, outcome);
            }
            Take::Wait => unreachable!("handled above"),
            Take::Closed => return,
        }
    }
}

/// Validates one chunk: call, and on a retryable error wait and call again, up to `max_attempts`.
async fn validate(
    ctx: &RunContext,
    file: FileId,
    chunk: u32,
    cancel: &CancellationToken,
    config: FixedConfig,
    max: u32,
) -> ChunkOutcome {
    for attempt in 0..max {
        let result = tokio::select! {
            biased;
            () = cancel.cancelled() => return ChunkOutcome::Cancelled,
            r = ctx.call(ctx.request(file, chunk, attempt)) => r,
        };
        match result {
            Ok(response) => return ChunkOutcome::Validated(response),
            Err(e) if e.is_retryable() && attempt + 1 < max => {
                let RetryDecision::After(delay) = config.backoff.after(&e, attempt, ctx.random_f64()) else {
                    return ChunkOutcome::Failed;
                };
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => return ChunkOutcome::Cancelled,
                    () = ctx.sleep(delay) => {}
                }
            }
            Err(_) => return ChunkOutcome::Failed,
        }
    }
    ChunkOutcome::Failed
}
