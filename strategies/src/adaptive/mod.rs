//! `adaptive`: one process fans chunk calls out under a feedback controller that follows the
//! parameter store live and reads the provider's rate-limit headers.
//!
//! A dispatcher takes chunks (retries whose wait has passed first, then the next file's chunks)
//! and sends each as soon as the controller allows; a control task runs every `interval`, reads
//! `max-parallelism`, `target-tpm` and `throttle-threshold` from the parameter store, and adjusts.
//! Two controllers ([`controller`]):
//! - `pacer` (default): a mirror of the provider's token and request buckets, paced at
//!   `target-tpm × throttle-threshold` capped by the limits the headers reveal, settled from
//!   `x-ratelimit-remaining-*`, stopped by a 429 until its hint has passed. Until the first answer
//!   reveals the limits it keeps one request in flight (a probe). Concurrency up to
//!   `max-parallelism`.
//! - `aimd`: AIMD on concurrency, up to `max-parallelism`; a 429's hint pauses every send until
//!   it has passed (a 429 answers in milliseconds, and a slot freed by one would otherwise go
//!   straight to another refusal).
//!
//! Every call races its file's cancellation, so a cancelled file has nothing in flight at once.
//! Retries follow [`crate::retry::Backoff`] (hints up to 120 s). The time series carry the
//! controller's limit (`concurrency_limit`) and the gauges `pacer_tpm` and `retry_queue`.

mod config;
pub mod controller;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sim::{ChunkOutcome, FileTask, LlmError, RunContext};
use tokio::sync::Notify;

pub use config::{AdaptiveConfig, Controller, Decrease};
use controller::{Aimd, Feedback, Pacer, Reservation};

use crate::retry::RetryDecision;
use crate::{BoxRun, Strategy};

/// The `adaptive` strategy.
#[derive(Clone, Copy, Debug, Default)]
pub struct Adaptive {
    config: AdaptiveConfig,
}

impl Adaptive {
    /// With these settings.
    pub fn new(config: AdaptiveConfig) -> Self {
        Self { config }
    }
}

impl Strategy for Adaptive {
    fn name(&self) -> &str {
        "adaptive"
    }

    fn describe(&self) -> &str {
        "fan-out under a feedback controller: a token pacer that learns the limits from the headers (or AIMD), following the parameter store live"
    }

    fn run(&self, ctx: RunContext) -> BoxRun {
        Box::pin(run(ctx, self.config))
    }
}

/// One chunk's next attempt.
#[derive(Clone, Debug)]
struct Job {
    file: Arc<FileTask>,
    chunk: u32,
    /// Requests sent for it so far (the provider's `attempt`).
    attempt: u32,
    /// Of those, the ones that failed other than by a 429: what `max_attempts` bounds.
    failures: u32,
    charge: f64,
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
}

struct State {
    pacer: Pacer,
    aimd: Aimd,
    limit: u32,
    in_flight: u32,
    peak: u32,
    dropped: bool,
    /// Retries by the time they may go, then arrival order.
    retry: BTreeMap<(Duration, u64), Job>,
    seq: u64,
    in_progress: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn run(ctx: RunContext, config: AdaptiveConfig) {
    let (max_parallelism, target, threshold) = ctx.params().shared();
    let initial = match config.controller {
        Controller::Pacer => max_parallelism.get(),
        Controller::Aimd => 1,
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            pacer: Pacer::new(target.get() as f64 * threshold.0),
            aimd: Aimd::new(initial, config.decrease.0),
            limit: initial,
            in_flight: 0,
            peak: 0,
            dropped: false,
            retry: BTreeMap::new(),
            seq: 0,
            in_progress: 0,
        }),
        wake: Notify::new(),
    });
    ctx.set_concurrency_limit(initial);
    let control = ctx.spawn(control(ctx.clone(), shared.clone(), config));
    let mut current: Option<(Arc<FileTask>, usize)> = None;
    let mut feed_closed = false;
    let mut next: Option<Job> = None;
    loop {
        let notified = shared.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = ctx.now();
        if next.is_none() {
            next = ready_retry(&shared, now);
        }
        if next.is_none()
            && let Some((file, pos)) = current.as_mut()
        {
            if let Some(&chunk) = file.chunks.get(*pos) {
                *pos += 1;
                let spec = ctx.request(file.id, chunk, 0);
                shared.lock().in_progress += 1;
                next = Some(Job {
                    file: file.clone(),
                    chunk,
                    attempt: 0,
                    failures: 0,
                    charge: f64::from(spec.prompt_tokens) + f64::from(spec.max_tokens),
                });
            } else {
                current = None;
                continue;
            }
        }
        let Some(job) = next.take() else {
            let (earliest, idle) = {
                let st = shared.lock();
                (st.retry.keys().next().map(|k| k.0), st.in_progress == 0)
            };
            if feed_closed && idle {
                break;
            }
            let until = earliest.map(|t| t.saturating_sub(now));
            if feed_closed {
                match until {
                    Some(d) => {
                        tokio::select! {
                            biased;
                            () = &mut notified => {}
                            () = ctx.sleep(d) => {}
                        }
                    }
                    None => notified.await,
                }
            } else {
                let wait = until.unwrap_or(Duration::MAX);
                tokio::select! {
                    biased;
                    () = &mut notified => {}
                    () = ctx.sleep(wait), if until.is_some() => {}
                    file = ctx.next_file() => match file {
                        Some(f) => current = Some((Arc::new(f), 0)),
                        None => feed_closed = true,
                    },
                }
            }
            continue;
        };
        if job.file.cancel.is_cancelled() {
            finish(&ctx, &shared, &job, ChunkOutcome::Cancelled);
            continue;
        }
        // The gate: a free slot under the limit, and (pacer) the budget for this charge.
        let (slot, wait) = {
            let mut st = shared.lock();
            let probing = config.controller == Controller::Pacer && !st.pacer.answered();
            let cap = if probing { 1 } else { st.limit };
            let slot = st.in_flight < cap;
            let wait = match config.controller {
                Controller::Pacer => st.pacer.wait(now, job.charge),
                // A 429 comes back in milliseconds: without this pause a freed slot would go
                // straight to another request the provider refuses.
                Controller::Aimd => st.pacer.blocked_for(now),
            };
            (slot, wait)
        };
        if !slot || !wait.is_zero() {
            next = Some(job);
            if slot {
                tokio::select! {
                    biased;
                    () = &mut notified => {}
                    () = ctx.sleep(wait) => {}
                }
            } else {
                notified.await;
            }
            continue;
        }
        let reservation = {
            let mut st = shared.lock();
            st.in_flight += 1;
            st.peak = st.peak.max(st.in_flight);
            (config.controller == Controller::Pacer).then(|| st.pacer.reserve(now, job.charge))
        };
        ctx.spawn(call(ctx.clone(), shared.clone(), config, job, reservation));
    }
    control.abort();
}

/// The earliest retry whose wait has passed.
fn ready_retry(shared: &Shared, now: Duration) -> Option<Job> {
    let mut st = shared.lock();
    let key = *st.retry.keys().next()?;
    (key.0 <= now).then(|| st.retry.remove(&key).expect("the key was just read"))
}

fn finish(ctx: &RunContext, shared: &Shared, job: &Job, outcome: ChunkOutcome) {
    ctx.chunk_done(job.file.id, job.chunk, outcome);
    shared.lock().in_progress -= 1;
    shared.wake.notify_waiters();
}

/// One attempt at a chunk; on a retryable error, back in the retry queue at its time.
async fn call(
    ctx: RunContext,
    shared: Arc<Shared>,
    config: AdaptiveConfig,
    job: Job,
    reservation: Option<Reservation>,
) {
    let result = tokio::select! {
        biased;
        () = job.file.cancel.cancelled() => None,
        r = ctx.call(ctx.request(job.file.id, job.chunk, job.attempt)) => Some(r),
    };
    let now = ctx.now();
    shared.lock().in_flight -= 1;
    let outcome = match result {
        None => ChunkOutcome::Cancelled,
        Some(Ok(response)) => {
            if let Some(r) = reservation {
                shared.lock().pacer.observe(now, r, &feedback(&response.rate_limit));
            }
            ChunkOutcome::Validated(response)
        }
        Some(Err(e)) => {
            {
                let mut st = shared.lock();
                if matches!(
                    e,
                    LlmError::Throttled { .. } | LlmError::Server { .. } | LlmError::Timeout
                ) {
                    st.dropped = true;
                }
                if let LlmError::Throttled {
                    retry_after,
                    rate_limit,
                    ..
                } = &e
                {
                    st.pacer.refused(now, *retry_after);
                    if let Some(r) = reservation {
                        let limits = Feedback {
                            limit_tokens: rate_limit.limit_tokens,
                            limit_requests: rate_limit.limit_requests,
                            ..Feedback::default()
                        };
                        st.pacer.observe(now, r, &limits);
                    }
                }
            }
            // A 429 is a pacing signal, not a failure: it does not spend an attempt (the pause
            // and the hint make sure the chunk goes again only when it may fit).
            let throttled = e.is_throttle();
            let failures = job.failures + u32::from(!throttled);
            let decision = (e.is_retryable() && failures < config.max_attempts.get())
                .then(|| config.backoff.after(&e, failures.saturating_sub(1), ctx.random_f64()));
            match decision {
                Some(RetryDecision::After(delay)) => {
                    let mut st = shared.lock();
                    st.seq += 1;
                    let key = (now + delay, st.seq);
                    st.retry.insert(
                        key,
                        Job {
                            attempt: job.attempt + 1,
                            failures,
                            ..job.clone()
                        },
                    );
                    drop(st);
                    shared.wake.notify_waiters();
                    return;
                }
                Some(RetryDecision::GiveUp) | None => ChunkOutcome::Failed,
            }
        }
    };
    finish(&ctx, &shared, &job, outcome);
}

/// Every `interval`: read the parameter store, adjust the limit and the budget, record gauges.
async fn control(ctx: RunContext, shared: Arc<Shared>, config: AdaptiveConfig) {
    loop {
        ctx.sleep(config.interval.0.0).await;
        let now = ctx.now();
        let (max_parallelism, target, threshold) = ctx.params().shared();
        let (limit, rate, queued) = {
            let mut st = shared.lock();
            let budget = target.get() as f64 * threshold.0;
            st.pacer.set_budget(now, budget);
            let waiting = !st.retry.is_empty() || st.in_progress > u64::from(st.in_flight);
            let (dropped, peak) = (st.dropped, st.peak);
            st.limit = match config.controller {
                Controller::Pacer => max_parallelism.get(),
                Controller::Aimd => st.aimd.update(max_parallelism.get(), dropped, peak, waiting),
            };
            st.dropped = false;
            st.peak = st.in_flight;
            (st.limit, st.pacer.rate_tpm(), st.retry.len())
        };
        ctx.set_concurrency_limit(limit);
        if config.controller == Controller::Pacer {
            ctx.gauge("pacer_tpm", rate);
        }
        ctx.gauge("retry_queue", queued as f64);
        shared.wake.notify_waiters();
    }
}

/// The headers the pacer reads.
fn feedback(h: &mock_llm::RateLimitHeaders) -> Feedback {
    Feedback {
        limit_tokens: h.limit_tokens,
        limit_requests: h.limit_requests,
        remaining_tokens: h.remaining_tokens,
        remaining_requests: h.remaining_requests,
        reset_tokens: h.reset_tokens,
        reset_requests: h.reset_requests,
    }
}
