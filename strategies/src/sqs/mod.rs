//! `sqs`: choreography over a queue, with no central coordinator. A splitter puts one message
//! per chunk on the chunk queue ([`crate::aws::sqs`]); a Lambda event source mapping
//! ([`crate::aws::esm`]) polls it and invokes validator functions ([`crate::aws::lambda`]) with
//! batches; each validator makes one LLM call per message, writes the result with a conditional
//! put (idempotent per chunk) in a DynamoDB-like table ([`crate::aws::dynamo`]), counts the file
//! down with an atomic ADD, and deletes the message.
//!
//! What the design costs is modelled, never assumed: at-least-once delivery (`duplicate_rate`)
//! means duplicate deliveries, and without `dedupe = "claim"` duplicate LLM calls; a 429 returns
//! the message with ChangeMessageVisibility to the hint, or by waiting out the visibility
//! timeout (`on_throttle`); a message received more than `max_receive_count` times goes to the
//! dead-letter queue and its chunk fails; a cancelled file gets a flag in the table, which a
//! validator reads before its call; a crash kills the validators mid-batch, and their messages
//! reappear when their visibility runs out (the queue and the table are services: they outlive
//! the crash). Concurrency comes only from the mapping: `max-parallelism` (read live) is its
//! MaximumConcurrency, scaled up from five batches at 300 a minute.
//!
//! Figures: `deliveries`, `duplicate_deliveries`, `duplicate_llm_calls`,
//! `duplicates_suppressed`, `dead_lettered`, `cancelled_before_call`, `lambda_invocations`,
//! `lambda_cold_starts`, `lambda_throttles`; gauges `queue_depth`, `oldest_message_s` and
//! `batches_running`.

mod config;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::json;
use sim::cost::Unit;
use sim::scenario::FileId;
use sim::{ChunkOutcome, FileTask, LlmError, RunContext};
use tokio::sync::Notify;

pub use config::{Dedupe, OnThrottle, SqsConfig};

use crate::aws::dynamo::{Capacity, DynamoError, Table};
use crate::aws::esm::{EsmConfig, Scaler};
use crate::aws::lambda::Lambda;
use crate::aws::sqs::{Queue, QueueConfig, Received};
use crate::{BoxRun, Strategy, cancel_requested};

/// The `sqs` strategy.
#[derive(Clone, Debug, Default)]
pub struct Sqs {
    config: SqsConfig,
}

impl Sqs {
    /// With these settings.
    pub fn new(config: SqsConfig) -> Result<Self, String> {
        if !(1..=10).contains(&config.batch_size) {
            return Err(format!("batch_size {} must lie in 1..=10", config.batch_size));
        }
        if config.visibility_timeout.0 > crate::aws::sqs::MAX_VISIBILITY {
            return Err("visibility_timeout must be at most 12h (the SQS limit)".into());
        }
        if config.max_receive_count == 0 {
            return Err("max_receive_count must be at least 1".into());
        }
        Ok(Self { config })
    }
}

impl Strategy for Sqs {
    fn name(&self) -> &str {
        "sqs"
    }

    fn describe(&self) -> &str {
        "SQS choreography: a message per chunk, Lambda validators polled by an event source mapping, results and counters in DynamoDB"
    }

    fn run(&self, ctx: RunContext) -> BoxRun {
        Box::pin(run(ctx, self.config.clone()))
    }
}

/// A chunk's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Msg {
    file: FileId,
    chunk: u32,
}

/// The services: they outlive a crash of the orchestrator's own processes.
struct Services {
    queue: Queue<Msg>,
    table: Table,
    lambda: Lambda,
    scaler: Scaler,
    /// The answers behind the table's result items (the table keeps the verdict; the engine's
    /// store wants the whole answer), for re-reporting a result the engine lost in a crash.
    answers: std::collections::BTreeMap<(FileId, u32), sim::ChatResponse>,
    /// Files already split: after a restart only these need the queue checked for their
    /// chunks (scanning it for every file made splitting quadratic).
    split: BTreeSet<FileId>,
}

#[derive(Default)]
struct Durable {
    services: Mutex<Option<Arc<Mutex<Services>>>>,
}

struct Shared {
    ctx: RunContext,
    config: SqsConfig,
    services: Arc<Mutex<Services>>,
    /// Woken when a message is sent, a batch ends or every file has ended.
    wake: Notify,
    running: Mutex<u32>,
    /// Draws for at-least-once duplicates: one stream per run, not one per receive.
    rng: Mutex<sim::rng::RunRng>,
    /// Every file has reached a final state.
    all_final: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Services> {
        self.services.lock().expect("no task panicked holding the services")
    }

    fn metric(&self, name: &str) {
        self.ctx.add_metric(name, 1.0);
    }

    fn bill_sqs(&self) {
        self.ctx.bill(Unit::SqsRequest, 1.0);
    }
}

async fn run(ctx: RunContext, config: SqsConfig) {
    let durable = ctx.durable::<Durable>();
    let services = durable
        .services
        .lock()
        .expect("no task panicked holding the durable services")
        .get_or_insert_with(|| {
            Arc::new(Mutex::new(Services {
                queue: Queue::new(QueueConfig {
                    visibility_timeout: config.visibility_timeout.0,
                    max_receive_count: Some(config.max_receive_count),
                    duplicate_rate: config.duplicate_rate.0,
                    ..QueueConfig::default()
                }),
                table: Table::new(Capacity::OnDemand),
                lambda: Lambda::new(config.lambda.model()),
                scaler: Scaler::new(EsmConfig::default()),
                answers: std::collections::BTreeMap::new(),
                split: BTreeSet::new(),
            }))
        })
        .clone();
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        config,
        services,
        wake: Notify::new(),
        running: Mutex::new(0),
        rng: Mutex::new(ctx.rng("sqs/deliveries")),
        all_final: std::sync::atomic::AtomicBool::new(false),
    });
    ctx.spawn(split(shared.clone()));
    {
        let shared = shared.clone();
        ctx.spawn(async move {
            shared.ctx.all_final().await;
            shared.all_final.store(true, std::sync::atomic::Ordering::Relaxed);
            shared.wake.notify_waiters();
        });
    }
    poll(&shared).await;
}

/// The splitter: a message per chunk of each admitted file (chunks already in the queue after
/// a restart are not sent again), and a cancel flag when the file's cancellation is requested.
async fn split(shared: Arc<Shared>) {
    let ctx = shared.ctx.clone();
    while let Some(file) = ctx.next_file().await {
        let now = ctx.now();
        {
            let mut s = shared.lock();
            let queued: BTreeSet<u32> = if s.split.insert(file.id) {
                BTreeSet::new()
            } else {
                s.queue
                    .bodies()
                    .filter(|m| m.file == file.id)
                    .map(|m| m.chunk)
                    .collect()
            };
            for &chunk in &file.chunks {
                if !queued.contains(&chunk) {
                    s.queue.send(now, Msg { file: file.id, chunk }, None);
                    shared.bill_sqs();
                }
            }
        }
        shared.wake.notify_waiters();
        let (s, f) = (shared.clone(), file.clone());
        ctx.spawn(cancel_flag(s, f));
    }
}

/// Writes the file's cancel flag when its cancellation is requested.
async fn cancel_flag(shared: Arc<Shared>, file: FileTask) {
    cancel_requested(&shared.ctx, &file).await;
    let now = shared.ctx.now();
    let _ = shared
        .lock()
        .table
        .put(now, &format!("cancel#{}", file.id.0), json!(true));
    shared.ctx.bill(Unit::DynamoWrite, 1.0);
    shared.wake.notify_waiters();
}

/// The event source mapping: receives batches while it may run more, and invokes a validator
/// for each; ends when every file has ended and nothing runs.
async fn poll(shared: &Arc<Shared>) {
    let ctx = &shared.ctx;
    loop {
        let notified = shared.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = ctx.now();
        let running = *shared.running.lock().expect("no task panicked holding the count");
        if running == 0 && shared.all_final.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let max = ctx.params().get().max_parallelism.get().clamp(2, 1_000);
        let (concurrency, next_visible) = {
            let mut s = shared.lock();
            let backlog = !s.queue.is_empty();
            s.scaler.set_config(EsmConfig {
                maximum_concurrency: Some(max),
                ..EsmConfig::default()
            });
            (s.scaler.at(now, backlog), s.queue.next_visible())
        };
        ctx.set_concurrency_limit(concurrency);
        let mut started = running;
        while started < concurrency {
            let batch = receive(shared, now);
            if batch.is_empty() {
                break;
            }
            started += 1;
            *shared.running.lock().expect("no task panicked holding the count") += 1;
            ctx.gauge("batches_running", f64::from(started));
            ctx.spawn(invoke(shared.clone(), batch));
        }
        {
            let s = shared.lock();
            ctx.gauge("queue_depth", s.queue.len() as f64);
            ctx.gauge(
                "oldest_message_s",
                s.queue.oldest_age(now).map_or(0.0, |a| a.as_secs_f64().floor()),
            );
        }
        // Long polling: wake at a send, a batch's end, the next message becoming visible, or
        // within a second (the mapping's scaling and the files' ends are checked then).
        let until = next_visible
            .filter(|t| *t > now)
            .map_or(Duration::from_secs(1), |t| (t - now).min(Duration::from_secs(1)));
        tokio::select! {
            biased;
            () = &mut notified => {}
            () = ctx.sleep(until.max(Duration::from_millis(1))) => {}
        }
    }
}

/// One receive of up to a batch; dead-lettered messages fail their chunks.
fn receive(shared: &Shared, now: Duration) -> Vec<Received<Msg>> {
    let ctx = &shared.ctx;
    let (batch, effects, dead) = {
        let mut s = shared.lock();
        if !s.queue.any_visible(now) {
            return Vec::new();
        }
        let mut rng = shared.rng.lock().expect("no task panicked holding the generator");
        let (batch, effects) = s
            .queue
            .receive(now, shared.config.batch_size as usize, || rng.next_f64());
        drop(rng);
        let dead: Vec<Msg> = s
            .queue
            .dead_letters()
            .iter()
            .filter(|(id, _)| effects.dead_lettered.contains(id))
            .map(|(_, m)| *m)
            .collect();
        (batch, effects, dead)
    };
    shared.bill_sqs();
    for m in dead {
        shared.metric("dead_lettered");
        ctx.chunk_done(m.file, m.chunk, ChunkOutcome::Failed);
    }
    for r in &batch {
        shared.metric("deliveries");
        if r.receive_count > 1 {
            shared.metric("duplicate_deliveries");
        }
    }
    let _ = effects;
    batch
}

/// A validator invocation over one batch: each message in turn.
async fn invoke(shared: Arc<Shared>, batch: Vec<Received<Msg>>) {
    let ctx = shared.ctx.clone();
    let now = ctx.now();
    let started = shared.lock().lambda.begin("validator", now);
    match started {
        Err(_) => {
            // The mapping could not invoke: the batch stays hidden until its visibility runs
            // out, and the mapping backs off.
            shared.metric("lambda_throttles");
            shared.lock().scaler.backoff();
        }
        Ok(s) => {
            shared.metric("lambda_invocations");
            if s.cold {
                shared.metric("lambda_cold_starts");
                ctx.sleep(shared.config.lambda.cold_start.0).await;
            }
            ctx.sleep(shared.config.lambda.handler.0).await;
            for r in batch {
                handle(&shared, r).await;
            }
            let now2 = ctx.now();
            let gb_s = shared.lock().lambda.end("validator", now2, now2 - now);
            ctx.bill(Unit::LambdaRequest, 1.0);
            ctx.bill(Unit::LambdaGbSecond, gb_s);
        }
    }
    *shared.running.lock().expect("no task panicked holding the count") -= 1;
    shared.wake.notify_waiters();
}

/// One message: cancel flag, claim, LLM call, idempotent result, counter, delete.
async fn handle(shared: &Arc<Shared>, r: Received<Msg>) {
    let ctx = &shared.ctx;
    let Msg { file, chunk } = r.body;
    let key = format!("{}#{}", file.0, chunk);
    let now = ctx.now();
    // A result already stored, or the file cancelled: no call.
    let (stored, cancelled) = {
        let mut s = shared.lock();
        let stored = s.table.get(now, &format!("result#{key}")).ok().flatten().is_some();
        let cancelled = s.table.get(now, &format!("cancel#{}", file.0)).ok().flatten().is_some();
        (
            stored.then(|| s.answers.get(&(file, chunk)).copied()).flatten(),
            cancelled,
        )
    };
    if stored.is_some() || cancelled {
        match stored {
            // The result is in the table: report it again (the engine counts a duplicate, or
            // stores it if a crash lost its copy), and spend no call.
            Some(answer) => {
                shared.metric("duplicates_suppressed");
                ctx.chunk_done(file, chunk, ChunkOutcome::Validated(answer));
            }
            None => {
                shared.metric("cancelled_before_call");
                ctx.chunk_done(file, chunk, ChunkOutcome::Cancelled);
            }
        }
        shared.lock().queue.delete(r.id, r.receipt);
        shared.bill_sqs();
        return;
    }
    if shared.config.dedupe == Dedupe::Claim {
        let visibility = shared.config.visibility_timeout.0;
        // `None`: claimed by this delivery; `Some(t)`: held by another until `t`.
        let claimed: Option<Duration> = {
            let mut s = shared.lock();
            let until = (now + visibility).as_millis() as u64;
            match s
                .table
                .put_if_absent(now, &format!("claim#{key}"), json!({"until": until}))
            {
                Ok(()) => None,
                Err(DynamoError::ConditionalCheckFailed) => {
                    // Someone holds it; a claim past its visibility has expired and is taken over.
                    let held = s
                        .table
                        .get(now, &format!("claim#{key}"))
                        .ok()
                        .flatten()
                        .and_then(|v| v["until"].as_u64())
                        .unwrap_or(0);
                    if held <= now.as_millis() as u64 {
                        let _ = s.table.put(now, &format!("claim#{key}"), json!({"until": until}));
                        None
                    } else {
                        Some(Duration::from_millis(held))
                    }
                }
                Err(DynamoError::ProvisionedThroughputExceeded { retry_after }) => Some(now + retry_after),
            }
        };
        ctx.bill(Unit::DynamoWrite, 1.0);
        if let Some(until) = claimed {
            // Another delivery is working on it: hide this one until the claim runs out (by
            // then the result is stored, or the claim may be taken over).
            shared.metric("duplicates_suppressed");
            let mut s = shared.lock();
            s.queue.change_visibility(
                now,
                r.id,
                r.receipt,
                until.saturating_sub(now).max(Duration::from_millis(1)),
            );
            drop(s);
            shared.bill_sqs();
            return;
        }
    }
    if r.receive_count > 1 {
        shared.metric("duplicate_llm_calls");
    }
    let result = ctx.call(ctx.request(file, chunk, r.receive_count - 1)).await;
    let now = ctx.now();
    match result {
        Ok(response) => {
            let first = {
                let mut s = shared.lock();
                let first = s
                    .table
                    .put_if_absent(
                        now,
                        &format!("result#{key}"),
                        json!({"verdict": format!("{:?}", response.verdict)}),
                    )
                    .is_ok();
                s.answers.entry((file, chunk)).or_insert(response);
                first
            };
            ctx.bill(Unit::DynamoWrite, 1.0);
            if first {
                let _ = shared.lock().table.add(now, &format!("file#{}", file.0), "done", 1);
                ctx.bill(Unit::DynamoWrite, 1.0);
            } else {
                shared.metric("duplicates_suppressed");
            }
            // Reported either way: a verdict is idempotent in the engine's store.
            ctx.chunk_done(file, chunk, ChunkOutcome::Validated(response));
            let mut s = shared.lock();
            s.queue.delete(r.id, r.receipt);
            let _ = s.table.delete(now, &format!("claim#{key}"));
            drop(s);
            shared.bill_sqs();
        }
        Err(e) => {
            let mut s = shared.lock();
            let _ = s.table.delete(now, &format!("claim#{key}"));
            if let LlmError::Throttled { retry_after, .. } = e
                && shared.config.on_throttle == OnThrottle::Backoff
            {
                let wait = retry_after.unwrap_or(Duration::from_secs(1));
                s.queue.change_visibility(now, r.id, r.receipt, wait);
                drop(s);
                shared.bill_sqs();
            }
            // Otherwise the message returns when its visibility timeout runs out.
        }
    }
}
