//! A strategy of your own, run through the harness and through the testing kit.
//!
//! `Semaphore` is what a user might write in an afternoon: at most `max-parallelism` calls at
//! once (a semaphore), each chunk retried naively (the server's retry hint on a 429, one second
//! otherwise, ten attempts), a cancel checked before every call and raced against every wait.
//!
//! ```text
//! cargo run --release --example custom_strategy            # compare it with `fixed` on baseline
//! ```
//!
//! `tests/custom_strategy.rs` runs it through `strategies::kit::check_strategy`, and shows that
//! the kit catches a broken resume (`Semaphore { forget_stored: true }` validates every chunk of
//! a file again after a crash, instead of only those the feed hands back).

use std::sync::Arc;
use std::time::Duration;

use sim::{ChunkOutcome, FileTask, LlmError, RunContext, RunOptions, Scenario};
use strategies::{BoxRun, Strategy};
use tokio::sync::Semaphore as Permits;

/// A semaphore over the calls, with a naive retry.
pub struct Semaphore {
    /// The bug on purpose: after a crash, validate all of a file's chunks, not only those the
    /// feed hands back (the ones without a stored result).
    pub forget_stored: bool,
}

impl Strategy for Semaphore {
    fn name(&self) -> &str {
        "semaphore"
    }

    fn describe(&self) -> &str {
        "a semaphore of max-parallelism calls, naive retry"
    }

    fn run(&self, ctx: RunContext) -> BoxRun {
        let forget_stored = self.forget_stored;
        Box::pin(async move {
            let permits = Arc::new(Permits::new(ctx.params().get().max_parallelism.get() as usize));
            while let Some(mut file) = ctx.next_file().await {
                if forget_stored {
                    file.chunks = (0..ctx.workload().file(file.id).chunks).collect();
                }
                for &chunk in &file.chunks {
                    let (ctx2, file2, permits) = (ctx.clone(), file.clone(), permits.clone());
                    ctx.spawn(async move {
                        let outcome = validate(&ctx2, &file2, chunk, &permits).await;
                        ctx2.chunk_done(file2.id, chunk, outcome);
                    });
                }
            }
            ctx.all_final().await;
        })
    }
}

async fn validate(ctx: &RunContext, file: &FileTask, chunk: u32, permits: &Permits) -> ChunkOutcome {
    for attempt in 0..10 {
        let wait = {
            let _permit = tokio::select! {
                biased;
                () = file.cancel.cancelled() => return ChunkOutcome::Cancelled,
                p = permits.acquire() => p.expect("the semaphore is never closed"),
            };
            if file.cancel.is_cancelled() {
                return ChunkOutcome::Cancelled;
            }
            match ctx.call(ctx.request(file.id, chunk, attempt)).await {
                Ok(answer) => return ChunkOutcome::Validated(answer),
                Err(LlmError::Throttled { retry_after, .. }) => retry_after.unwrap_or(Duration::from_secs(1)),
                Err(_) => Duration::from_secs(1),
            }
        };
        tokio::select! {
            biased;
            () = file.cancel.cancelled() => return ChunkOutcome::Cancelled,
            () = ctx.sleep(wait) => {}
        }
    }
    ChunkOutcome::Failed
}

fn main() {
    let scenario = Scenario::parse(include_str!("../scenarios/baseline.toml"), "baseline").expect("shipped");
    let mine = Semaphore { forget_stored: false };
    let fixed = strategies::build("fixed", &scenario).expect("built in");
    for strategy in [&mine as &dyn Strategy, fixed.as_ref()] {
        let r = strategies::simulate(strategy, &scenario, &RunOptions::default()).expect("runs");
        let s = r.summary;
        println!(
            "{:10} makespan {:7.1} s  files ok/failed {}/{}  requests {}  429s {}",
            strategy.name(),
            s.makespan_s,
            s.files_completed,
            s.files_failed,
            s.llm_requests,
            s.llm_throttled
        );
    }
}
