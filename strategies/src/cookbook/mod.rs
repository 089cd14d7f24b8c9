//! `cookbook`: the OpenAI cookbook's `api_request_parallel_processor.py`, reimplemented faithfully
//! as the reference every design must beat (REFERENCE.md, "OpenAI cookbook").
//!
//! The algorithm, as the script runs it:
//! - two buckets, requests and tokens, each holding one minute's worth of its budget
//!   (`max_requests_per_minute`, `max_tokens_per_minute`), starting full and refilled at
//!   budget × elapsed / 60 on every pass of the main loop;
//! - a request is sent only when there is at least 1 request and at least its token estimate in
//!   the buckets; both are deducted at send time and never corrected from `usage`. The estimate is
//!   the prompt's tokens + n × `max_tokens` (n = 1): here the provider's own prompt count, so the
//!   estimate equals the `prompt-plus-max` charge;
//! - no concurrency cap, and the rate-limit headers are never read;
//! - a failed request (any error: a 429, a 5xx, a timeout) goes to a retry queue that is served
//!   before new requests, with no backoff, until its attempts (default 5) are spent;
//! - after a rate-limit error, no new request is sent until 15 s after the most recent one;
//!   requests already in flight carry on;
//! - the main loop sends at most one request per pass and sleeps 1 ms per pass.
//!
//! The loop here is event-driven rather than polling every millisecond: it sleeps until the
//! buckets hold enough, or until something happens, which sends at the same instants up to the
//! virtual clock's 1 ms resolution and costs nothing while it waits.
//!
//! Known weaknesses, kept on purpose: well over the limit, each 15 s pause ends in another burst
//! of 429s (every paused request is sent at once, and the estimate ignores what the provider has
//! left); a budget set above the real limit is never learned from; a request whose estimate is
//! larger than the token budget would wait forever in the script (here it fails at once).
//!
//! Additions the script lacks, needed to run in the harness: files arrive over time (the script
//! reads a finished file); a cancelled file's chunks are not sent, but calls in flight run to the
//! end, since the script cannot cancel; after a crash the process restarts with full buckets.

mod config;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sim::{ChunkOutcome, FileTask, LlmError, RunContext};
use tokio::sync::Notify;

pub use config::{Budget, CookbookConfig};

use crate::{BoxRun, Strategy};

/// The `cookbook` strategy.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cookbook {
    config: CookbookConfig,
}

impl Cookbook {
    /// With these settings.
    pub fn new(config: CookbookConfig) -> Self {
        Self { config }
    }
}

impl Strategy for Cookbook {
    fn name(&self) -> &str {
        "cookbook"
    }

    fn describe(&self) -> &str {
        "the OpenAI cookbook's parallel processor: request and token buckets, a 15 s pause after any 429, immediate retries"
    }

    fn run(&self, ctx: RunContext) -> BoxRun {
        Box::pin(run(ctx, self.config))
    }
}

/// One request of the script (`APIRequest`): a chunk, its estimate and its attempts left.
#[derive(Clone, Debug)]
struct Request {
    file: Arc<FileTask>,
    chunk: u32,
    tokens: f64,
    attempts_left: u32,
    sent: u32,
}

/// What the call tasks and the main loop share (`StatusTracker` and the retry queue).
#[derive(Default)]
struct Shared {
    state: Mutex<Status>,
    wake: Notify,
}

#[derive(Default)]
struct Status {
    retry: VecDeque<Request>,
    in_progress: u64,
    last_rate_limit_error: Option<Duration>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Status> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The two buckets, in floating point as the script keeps them.
struct Capacity {
    rpm: f64,
    tpm: f64,
    requests: f64,
    tokens: f64,
    last: Duration,
}

impl Capacity {
    fn update(&mut self, now: Duration) {
        let dt = now.saturating_sub(self.last).as_secs_f64();
        self.requests = (self.requests + self.rpm * dt / 60.0).min(self.rpm);
        self.tokens = (self.tokens + self.tpm * dt / 60.0).min(self.tpm);
        self.last = now;
    }

    /// How long until one request of `tokens` fits (zero: now).
    fn wait_for(&self, tokens: f64) -> Duration {
        let requests = (1.0 - self.requests).max(0.0) * 60.0 / self.rpm;
        let tokens = (tokens - self.tokens).max(0.0) * 60.0 / self.tpm;
        Duration::try_from_secs_f64(requests.max(tokens)).unwrap_or(Duration::MAX)
    }
}

async fn run(ctx: RunContext, config: CookbookConfig) {
    let tpm = config.max_tokens_per_minute.map_or_else(
        || {
            let (_, target, threshold) = ctx.params().shared();
            (target.get() as f64 * threshold.0).max(1.0)
        },
        |b| b.0,
    );
    let rpm = config.max_requests_per_minute.0;
    let mut capacity = Capacity {
        rpm,
        tpm,
        requests: rpm,
        tokens: tpm,
        last: ctx.now(),
    };
    let shared = Arc::new(Shared::default());
    let pause = config.pause_after_rate_limit.0;
    let mut current: Option<(Arc<FileTask>, usize)> = None;
    let mut feed_closed = false;
    let mut next: Option<Request> = None;
    loop {
        // "if a rate limit error was hit recently, pause to cool down"
        let last = shared.lock().last_rate_limit_error;
        if let Some(at) = last {
            let since = ctx.now().saturating_sub(at);
            if since < pause {
                ctx.sleep(pause - since).await;
                continue;
            }
        }
        let notified = shared.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if next.is_none() {
            next = shared.lock().retry.pop_front();
        }
        if next.is_none() {
            next = take_new(&ctx, &mut current, &shared, config);
        }
        let Some(request) = next.take() else {
            if feed_closed {
                if shared.lock().in_progress == 0 {
                    return; // "if all tasks are finished, break"
                }
                notified.await;
            } else {
                tokio::select! {
                    biased;
                    () = &mut notified => {}
                    file = ctx.next_file() => match file {
                        Some(f) => current = Some((Arc::new(f), 0)),
                        None => feed_closed = true,
                    },
                }
            }
            continue;
        };
        if request.file.cancel.is_cancelled() {
            finish(&ctx, &shared, &request, ChunkOutcome::Cancelled);
            continue;
        }
        if request.tokens > capacity.tpm {
            // The script would wait for capacity forever: the request can never fit its budget.
            finish(&ctx, &shared, &request, ChunkOutcome::Failed);
            continue;
        }
        capacity.update(ctx.now());
        if capacity.requests >= 1.0 && capacity.tokens >= request.tokens {
            capacity.requests -= 1.0;
            capacity.tokens -= request.tokens;
            let mut request = request;
            request.attempts_left -= 1;
            ctx.spawn(call(ctx.clone(), shared.clone(), request));
            ctx.sleep(config.loop_sleep.0).await;
        } else {
            let wait = capacity.wait_for(request.tokens).max(config.loop_sleep.0);
            next = Some(request);
            ctx.sleep(wait).await;
        }
    }
}

/// The next chunk of the file being read, if it has one left.
fn take_new(
    ctx: &RunContext,
    current: &mut Option<(Arc<FileTask>, usize)>,
    shared: &Shared,
    config: CookbookConfig,
) -> Option<Request> {
    let (file, pos) = current.as_mut()?;
    let Some(&chunk) = file.chunks.get(*pos) else {
        *current = None;
        return None;
    };
    *pos += 1;
    let spec = ctx.request(file.id, chunk, 0);
    shared.lock().in_progress += 1;
    Some(Request {
        file: file.clone(),
        chunk,
        tokens: f64::from(spec.prompt_tokens) + f64::from(spec.max_tokens),
        attempts_left: config.max_attempts.get(),
        sent: 0,
    })
}

/// Ends a request for good.
fn finish(ctx: &RunContext, shared: &Shared, request: &Request, outcome: ChunkOutcome) {
    ctx.chunk_done(request.file.id, request.chunk, outcome);
    shared.lock().in_progress -= 1;
    shared.wake.notify_waiters();
}

/// `APIRequest.call_api`: one attempt; on an error, back to the retry queue while attempts are
/// left. A rate-limit error also starts the cool-down.
async fn call(ctx: RunContext, shared: Arc<Shared>, mut request: Request) {
    let attempt = request.sent;
    request.sent += 1;
    let result = ctx.call(ctx.request(request.file.id, request.chunk, attempt)).await;
    match result {
        Ok(response) => finish(&ctx, &shared, &request, ChunkOutcome::Validated(response)),
        Err(e) => {
            if matches!(e, LlmError::Throttled { .. }) {
                // "if 'rate limit' in the error message": a 429 rate-limit body, not "too large".
                shared.lock().last_rate_limit_error = Some(ctx.now());
            }
            if request.attempts_left > 0 && !request.file.cancel.is_cancelled() {
                shared.lock().retry.push_back(request);
                shared.wake.notify_waiters();
            } else if request.file.cancel.is_cancelled() {
                finish(&ctx, &shared, &request, ChunkOutcome::Cancelled);
            } else {
                finish(&ctx, &shared, &request, ChunkOutcome::Failed);
            }
        }
    }
}
