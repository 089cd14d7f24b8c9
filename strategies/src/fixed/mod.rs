//! `fixed`: what most teams write first. A fixed pool of `max-parallelism` concurrent chunk
//! validations (read once, at the start), each retrying with exponential backoff and jitter on 429s
//! and 5xx, honouring the server's retry hint like openai-python does. Files are processed in
//! arrival order, chunk by chunk; cancellation is raced against every call and every backoff.

mod config;

use std::sync::Arc;

use sim::{ChunkOutcome, FileTask, RunContext};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use config::{Attempts, FixedConfig};

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
    let slots = Arc::new(Semaphore::new(workers as usize));
    while let Some(file) = ctx.next_file().await {
        dispatch(&ctx, &slots, file, config).await;
    }
    // Every slot back means every chunk task has ended.
    let _all = slots
        .acquire_many(workers)
        .await
        .expect("the semaphore is never closed");
}

async fn dispatch(ctx: &RunContext, slots: &Arc<Semaphore>, file: FileTask, config: FixedConfig) {
    for (i, &chunk) in file.chunks.iter().enumerate() {
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        if file.cancel.is_cancelled() {
            for &c in &file.chunks[i..] {
                ctx.chunk_done(file.id, c, ChunkOutcome::Cancelled);
            }
            return;
        }
        let (ctx2, cancel) = (ctx.clone(), file.cancel.clone());
        let id = file.id;
        ctx.spawn(async move {
            let outcome = validate(&ctx2, id, chunk, &cancel, config).await;
            ctx2.chunk_done(id, chunk, outcome);
            drop(slot);
        });
    }
}

/// Validates one chunk: call, and on a retryable error wait and call again, up to `max_attempts`.
async fn validate(
    ctx: &RunContext,
    file: sim::scenario::FileId,
    chunk: u32,
    cancel: &CancellationToken,
    config: FixedConfig,
) -> ChunkOutcome {
    let max = config.max_attempts.0.get();
    for attempt in 0..max {
        let result = tokio::select! {
            biased;
            () = cancel.cancelled() => return ChunkOutcome::Cancelled,
            r = ctx.call(ctx.request(file, chunk, attempt)) => r,
        };
        match result {
            Ok(response) => return ChunkOutcome::Validated(response),
            Err(e) if e.is_retryable() && attempt + 1 < max => {
                let delay = config.backoff.delay(&e, attempt, ctx.random_f64());
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => return ChunkOutcome::Cancelled,
                    () = tokio::time::sleep(delay) => {}
                }
            }
            Err(_) => return ChunkOutcome::Failed,
        }
    }
    ChunkOutcome::Failed
}
