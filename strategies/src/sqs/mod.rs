//! `sqs`: choreography over a queue, with no central coordinator. A splitter puts one message
//! per chunk on the chunk queue; a Lambda event source mapping ([`crate::aws::esm`]) long-polls
//! it and invokes validator functions ([`crate::aws::lambda`]) with batches; each validator
//! makes one LLM call per message, writes the result with a conditional put (idempotent per
//! chunk) in a DynamoDB table, counts the file down with an atomic ADD (the last chunk is the
//! file-validated event), and deletes the message. The queue and the table are used only
//! through [`crate::aws::api`]'s traits, as the real APIs offer them.
//!
//! What the design costs is modelled, never assumed: at-least-once delivery (`duplicate_rate`)
//! means duplicate deliveries, and without `dedupe = "claim"` duplicate LLM calls; a 429 returns
//! the message with ChangeMessageVisibility to the hint, or by waiting out the visibility
//! timeout (`on_throttle`); a message received more than `max_receive_count` times goes to the
//! dead-letter queue, where a watcher fails its chunk (or moves it back, `dlq_redrives`); a
//! cancelled file gets a flag in the table, which a validator reads before its call; a crash
//! kills the validators mid-batch, and their messages reappear when their visibility runs out
//! (the queue and the table are services: they outlive the crash). Concurrency comes only from
//! the mapping: `max-parallelism` (read live) is its MaximumConcurrency, scaled up from five
//! batches at 300 a minute.
//!
//! Table items: `file#F` (`chunks`, `done` counter, `cancelled` flag), `result#F#C` (the
//! chunk's one terminal state, written once with a conditional put: `verdict`, or `failed` when
//! the dead-letter watcher got there first), `claim#F#C` (`until`, in ms), `dlq#F#C` (`times`).
//!
//! Figures (see [`FIGURES`]): deliveries and duplicates, duplicate LLM calls and their tokens,
//! what the DLQ holds, what a crash stranded and the time lost to it; gauges `queue_depth`,
//! `oldest_message_s`, `dlq_depth` and `batches_running`.

mod config;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sim::cost::Unit;
use sim::scenario::FileId;
use sim::{ChatResponse, ChunkOutcome, FileTask, LlmError, RunContext};
use tokio::sync::Notify;

pub use config::{Dedupe, OnThrottle, SqsConfig};

use crate::aws::api::{Condition, Handle, KeyValueTable, MessageQueue, Retrying, ServiceError, SimQueue, SimTable};
use crate::aws::dynamo::{Attr, Capacity, Item, Key as TableKey};
use crate::aws::esm::{EsmConfig, Scaler};
use crate::aws::lambda::Lambda;
use crate::aws::sqs::{MAX_DELAY, MAX_VISIBILITY, MAX_WAIT, QueueConfig, Received};
use crate::{BoxRun, Strategy};

/// The strategy's figures (`strategy_metrics` in the report), each with what it counts.
pub const FIGURES: &[(&str, &str)] = &[
    (
        "deliveries",
        "messages received by the validators, every delivery counted",
    ),
    (
        "redeliveries",
        "deliveries of a message received before (after a 429, a timeout or a crash)",
    ),
    (
        "duplicate_deliveries",
        "deliveries of a chunk already stored or held by another delivery at that moment (at-least-once)",
    ),
    (
        "duplicate_llm_calls",
        "LLM calls for a chunk already answered or being answered (retries after a 429 are not duplicates)",
    ),
    (
        "duplicate_llm_tokens",
        "tokens of answers that came after their chunk's result was stored: what duplicates cost",
    ),
    (
        "claims_taken_over",
        "claims taken over after they expired (their holder too slow or killed): the only way a claimed chunk is sent twice",
    ),
    (
        "duplicates_suppressed",
        "deliveries that found the result stored or the chunk claimed, and made no call",
    ),
    (
        "cancelled_before_call",
        "messages dropped because their file's cancel flag was set",
    ),
    ("dead_lettered", "chunks failed for good in the dead-letter queue"),
    (
        "dlq_redriven",
        "messages moved from the dead-letter queue back to the chunk queue",
    ),
    (
        "dlq_messages_at_end",
        "messages left in the dead-letter queue when the run ended",
    ),
    (
        "results_written",
        "result items written (conditional puts that succeeded): one per chunk validated",
    ),
    (
        "calls_after_cancel_flag",
        "LLM calls started for a file after its cancel flag was written (the design promises none)",
    ),
    (
        "files_validated_events",
        "file-validated events: the last chunk's counter increment",
    ),
    (
        "crash_stranded_messages",
        "messages held by validators killed in a crash",
    ),
    (
        "crash_time_lost_s",
        "for those messages, the seconds from the crash until they were received again (summed)",
    ),
    (
        "table_throttles",
        "table requests refused for provisioned capacity (each retried, as the AWS SDKs do)",
    ),
    ("lambda_invocations", "validator invocations"),
    ("lambda_cold_starts", "invocations that began with a cold start"),
    (
        "lambda_throttles",
        "batches the mapping could not invoke (Lambda concurrency)",
    ),
];

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
        if config.visibility_timeout.0 > MAX_VISIBILITY {
            return Err("visibility_timeout must be at most 12h (the SQS limit)".into());
        }
        if config.max_receive_count == 0 {
            return Err("max_receive_count must be at least 1".into());
        }
        if config.batching_window.0 > Duration::from_secs(300) {
            return Err("batching_window must be at most 5m (MaximumBatchingWindowInSeconds 0 to 300)".into());
        }
        match (config.table_read_capacity, config.table_write_capacity) {
            (None, None) => {}
            (Some(r), Some(w)) if r >= 1 && w >= 1 => {}
            _ => {
                return Err(
                    "table_read_capacity and table_write_capacity go together, each at least 1 (or neither: on-demand)"
                        .into(),
                );
            }
        }
        if config.dlq_redrive_after.0 > MAX_DELAY {
            return Err("dlq_redrive_after must be at most 15m (the longest SQS delay)".into());
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

type Key = (FileId, u32);

/// The services: they outlive a crash of the orchestrator's own processes.
struct Services {
    queue: Arc<dyn MessageQueue<Msg>>,
    dead_letter: Arc<dyn MessageQueue<Msg>>,
    table: Arc<dyn KeyValueTable>,
    /// The same table, for its throttle count.
    retrying: Arc<Retrying<SimTable>>,
    lambda: Mutex<Lambda>,
    scaler: Mutex<Scaler>,
    /// The answers behind the table's result items (the table keeps the verdict; the engine's
    /// store wants the whole answer, as an S3 object would keep it), for reporting a result
    /// again that the engine lost in a crash.
    answers: Mutex<BTreeMap<Key, ChatResponse>>,
    /// Instrumentation, not part of the design: what the figures need to tell a duplicate
    /// from a retry, and what a crash stranded.
    watch: Mutex<Watch>,
    /// The figures and units so far (they outlive a crash, as the run's own do).
    tally: Mutex<Tally>,
}

/// The strategy's figures and billed units, kept here and handed to the run at its end (a
/// lock of the run's state and a map lookup by name for every message cost a fifth of the
/// run's time).
struct Tally {
    figures: [f64; FIGURES.len()],
    /// Per unit of [`UNITS`], what was billed since the last flush (`None`: nothing).
    units: [Option<f64>; UNITS.len()],
}

/// The units the design bills, in the order the run keeps them.
const UNITS: [Unit; 5] = [
    Unit::SqsRequest,
    Unit::LambdaRequest,
    Unit::LambdaGbSecond,
    Unit::DynamoWrite,
    Unit::DynamoRead,
];

/// The position of `unit` in [`UNITS`].
const fn unit_slot(unit: Unit) -> usize {
    match unit {
        Unit::SqsRequest => 0,
        Unit::LambdaRequest => 1,
        Unit::LambdaGbSecond => 2,
        Unit::DynamoWrite => 3,
        Unit::DynamoRead => 4,
        _ => panic!("every unit the design bills is listed in UNITS"),
    }
}

impl Tally {
    fn slot(&mut self, figure: usize) -> &mut f64 {
        &mut self.figures[figure]
    }

    /// Bills `n` of `unit` (a unit never billed stays unset, `None`).
    fn bill(&mut self, unit: Unit, n: f64) {
        *self.units[unit_slot(unit)].get_or_insert(0.0) += n;
    }
}

/// The position of figure `name` in [`FIGURES`], found at compile time (see [`fig!`]).
const fn figure(name: &str) -> usize {
    let mut i = 0;
    while i < FIGURES.len() {
        let n = FIGURES[i].0.as_bytes();
        let m = name.as_bytes();
        if n.len() == m.len() {
            let mut j = 0;
            while j < n.len() && n[j] == m[j] {
                j += 1;
            }
            if j == n.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("every figure the strategy counts is listed in FIGURES")
}

/// A figure's index, checked at compile time: `fig!("deliveries")`.
macro_rules! fig {
    ($name:literal) => {
        const { figure($name) }
    };
}

/// A map by chunk, looked up on every delivery and call: a hash map with a fixed hash, cheaper
/// than a tree, and than an ordered map's removal (1.4% of a run). It has no walk in hash order,
/// so none can reach output: its contents leave it only in key order ([`ByChunk::take_sorted`]).
#[allow(
    clippy::disallowed_types,
    reason = "only looked up; the one way out of it sorts by key first"
)]
struct ByChunk<V>(std::collections::HashMap<Key, V, std::hash::BuildHasherDefault<rustc_hash::FxHasher>>);

impl<V> Default for ByChunk<V> {
    fn default() -> Self {
        Self(Default::default())
    }
}

impl<V> ByChunk<V> {
    fn get(&self, k: &Key) -> Option<&V> {
        self.0.get(k)
    }

    fn get_mut(&mut self, k: &Key) -> Option<&mut V> {
        self.0.get_mut(k)
    }

    /// The value at `k`, made with `V::default()` when absent.
    fn or_default(&mut self, k: Key) -> &mut V
    where
        V: Default,
    {
        self.0.entry(k).or_default()
    }

    fn insert(&mut self, k: Key, v: V) -> Option<V> {
        self.0.insert(k, v)
    }

    fn remove(&mut self, k: &Key) -> Option<V> {
        self.0.remove(k)
    }

    fn clear(&mut self) {
        self.0.clear();
    }

    /// Everything in it, in key order, leaving it empty.
    fn take_sorted(&mut self) -> Vec<(Key, V)> {
        let mut all: Vec<(Key, V)> = self.0.drain().collect();
        all.sort_unstable_by_key(|(k, _)| *k);
        all
    }
}

#[derive(Default)]
struct Watch {
    /// Deliveries being handled, per chunk.
    in_hand: ByChunk<u32>,
    /// LLM calls in flight, per chunk.
    calling: ByChunk<u32>,
    /// Chunks whose messages killed validators held, with the crash's time.
    stranded: ByChunk<Duration>,
    /// The claims in the table, by chunk, with their `until`.
    claims: ByChunk<i64>,
    /// Files whose cancel flag has been written.
    flagged: std::collections::BTreeSet<FileId>,
}

#[derive(Default)]
struct Durable {
    services: Mutex<Option<Arc<Services>>>,
}

struct Shared {
    ctx: RunContext,
    config: SqsConfig,
    services: Arc<Services>,
    /// Woken when a batch ends or every file has ended.
    wake: Notify,
    running: AtomicU32,
    /// The run-time second (plus one) the gauges were last sampled in.
    sampled: std::sync::atomic::AtomicU64,
    /// Every file has reached a final state.
    all_final: AtomicBool,
}

impl Shared {
    fn watch(&self) -> MutexGuard<'_, Watch> {
        self.services.watch.lock().expect("no task panicked holding the watch")
    }

    fn answers(&self) -> MutexGuard<'_, BTreeMap<Key, ChatResponse>> {
        self.services
            .answers
            .lock()
            .expect("no task panicked holding the answers")
    }

    fn tally(&self) -> MutexGuard<'_, Tally> {
        self.services.tally.lock().expect("no task panicked holding the tally")
    }

    fn metric(&self, figure: usize) {
        self.add(figure, 1.0);
    }

    fn add(&self, figure: usize, v: f64) {
        *self.tally().slot(figure) += v;
    }

    fn bill(&self, unit: Unit, n: f64) {
        self.tally().bill(unit, n);
    }

    fn bill_sqs(&self) {
        self.bill(Unit::SqsRequest, 1.0);
    }

    fn bill_read(&self) {
        self.bill(Unit::DynamoRead, 1.0);
    }

    fn bill_write(&self) {
        self.bill(Unit::DynamoWrite, 1.0);
    }

    /// Hands the figures and the units billed since the last flush to the run.
    fn flush(&self) {
        let throttles = self.services.retrying.throttles() as f64;
        let mut t = self.tally();
        *t.slot(fig!("table_throttles")) = throttles;
        for ((name, _), v) in FIGURES.iter().zip(t.figures) {
            self.ctx.set_metric(name, v);
        }
        for (unit, n) in UNITS.iter().zip(std::mem::take(&mut t.units)) {
            if let Some(n) = n {
                self.ctx.bill(*unit, n);
            }
        }
    }

    fn ended(&self) -> bool {
        self.all_final.load(Ordering::Relaxed)
    }
}

fn services(ctx: &RunContext, config: &SqsConfig) -> Arc<Services> {
    let clock: Arc<dyn crate::aws::api::Clock> = Arc::new(ctx.clone());
    let dead_letter = Arc::new(SimQueue::new(
        clock.clone(),
        ctx.rng("sqs/dead-letter"),
        QueueConfig {
            // SQS's longest retention, as a DLQ is usually set.
            retention: Duration::from_secs(14 * 24 * 3600),
            ..QueueConfig::default()
        },
        None,
    ));
    let queue = SimQueue::new(
        clock.clone(),
        ctx.rng("sqs/chunks"),
        QueueConfig {
            visibility_timeout: config.visibility_timeout.0,
            max_receive_count: Some(config.max_receive_count),
            duplicate_rate: config.duplicate_rate.0,
            ..QueueConfig::default()
        },
        Some(dead_letter.clone()),
    );
    let capacity = match (config.table_read_capacity, config.table_write_capacity) {
        (Some(read), Some(write)) => Capacity::Provisioned { read, write },
        _ => Capacity::OnDemand,
    };
    let table = Arc::new(Retrying::new(SimTable::new(clock.clone(), capacity), clock));
    Arc::new(Services {
        queue: Arc::new(queue),
        dead_letter,
        table: table.clone(),
        retrying: table,
        lambda: Mutex::new(Lambda::new(config.lambda.model())),
        scaler: Mutex::new(Scaler::new(EsmConfig::default())),
        answers: Mutex::new(BTreeMap::new()),
        watch: Mutex::new(Watch::default()),
        tally: Mutex::new(Tally {
            figures: [0.0; FIGURES.len()],
            units: [None; UNITS.len()],
        }),
    })
}

/// The requests one message's handling bills, added to the tally once, when the handling ends
/// or a crash drops it: one lock of the tally per message instead of one per request (about
/// eight). The tally is read only when the run ends.
struct Bills<'a> {
    shared: &'a Shared,
    sqs: u32,
    reads: u32,
    writes: u32,
}

impl<'a> Bills<'a> {
    fn new(shared: &'a Shared) -> Self {
        Self {
            shared,
            sqs: 0,
            reads: 0,
            writes: 0,
        }
    }
}

impl Drop for Bills<'_> {
    fn drop(&mut self) {
        let billed = [
            (Unit::SqsRequest, self.sqs),
            (Unit::DynamoRead, self.reads),
            (Unit::DynamoWrite, self.writes),
        ];
        let mut t = self.shared.tally();
        for (unit, n) in billed {
            if n > 0 {
                t.bill(unit, f64::from(n));
            }
        }
    }
}

async fn run(ctx: RunContext, config: SqsConfig) {
    let durable = ctx.durable::<Durable>();
    let (services, restarted) = {
        let mut slot = durable
            .services
            .lock()
            .expect("no task panicked holding the durable services");
        let restarted = slot.is_some();
        (slot.get_or_insert_with(|| services(&ctx, &config)).clone(), restarted)
    };
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        config,
        services,
        wake: Notify::new(),
        running: AtomicU32::new(0),
        sampled: std::sync::atomic::AtomicU64::new(0),
        all_final: AtomicBool::new(false),
    });
    if restarted {
        // The validators were killed: what they held waits out its visibility timeout.
        let crashed = ctx.last_crash().unwrap_or_else(|| ctx.now());
        let held = {
            let mut w = shared.watch();
            w.calling.clear();
            let held = w.in_hand.take_sorted();
            for (k, _) in &held {
                w.stranded.insert(*k, crashed);
            }
            held
        };
        shared.add(
            fig!("crash_stranded_messages"),
            held.iter().map(|(_, n)| f64::from(*n)).sum(),
        );
        // The cancel watchers died with the orchestrator. Every file split before, not complete
        // and not flagged, gets one again now, by its id: a file cancelled while the
        // orchestrator was down (or at the restart's instant) is never handed out again, and
        // its messages are still queued.
        let files = shared.services.table.scan("file").await.unwrap_or_default();
        shared.bill_read();
        for (key, item) in files {
            if complete(&item) || item.flag("cancelled") {
                continue;
            }
            ctx.spawn(cancel_flag(shared.clone(), FileId(key.id)));
        }
    }
    ctx.spawn(split(shared.clone()));
    ctx.spawn(watch_dead_letters(shared.clone()));
    {
        let shared = shared.clone();
        ctx.spawn(async move {
            shared.ctx.all_final().await;
            shared.all_final.store(true, Ordering::Relaxed);
            shared.wake.notify_waiters();
        });
    }
    poll(&shared).await;
    if let Ok(a) = shared.services.dead_letter.attributes().await {
        *shared.tally().slot(fig!("dlq_messages_at_end")) = a.messages as f64;
    }
    // Every figure shows, zero included: "no duplicate" is a finding too.
    shared.flush();
}

/// The splitter: a message per chunk of each admitted file. A file met again after a restart
/// (its `file#F` item exists) is resumed from the table: stored results and failures are
/// reported, and the other chunks are still in the queues.
async fn split(shared: Arc<Shared>) {
    let ctx = shared.ctx.clone();
    let s = shared.services.clone();
    while let Some(file) = ctx.next_file().await {
        let id = file.id.0;
        let total = ctx.workload().file(file.id).chunks;
        let first = s
            .table
            .put(
                TableKey::new("file", id),
                Item::new().with("chunks", total).with("done", 0i64),
                Condition::Absent,
            )
            .await;
        shared.bill_write();
        match first {
            Ok(()) => {
                for &chunk in &file.chunks {
                    let _ = s.queue.send(Msg { file: file.id, chunk }, None).await;
                    shared.bill_sqs();
                }
                ctx.spawn(cancel_flag(shared.clone(), file.id));
            }
            // Split before a crash: its cancel watcher was started at the restart.
            Err(_) => resume(&shared, &file).await,
        }
    }
}

/// Reports what the table holds for a file split before a restart.
async fn resume(shared: &Shared, file: &FileTask) {
    let ctx = &shared.ctx;
    let s = &shared.services;
    let id = file.id.0;
    let results = s.table.query("result", id).await.unwrap_or_default();
    shared.bill_read();
    let wanted: std::collections::BTreeSet<u32> = file.chunks.iter().copied().collect();
    for (k, item) in &results {
        let Some(c) = k.sort.filter(|c| wanted.contains(c)) else {
            continue;
        };
        if item.has("failed") {
            ctx.chunk_done(file.id, c, ChunkOutcome::Failed);
        } else {
            let answer = shared.answers().get(&(file.id, c)).copied();
            if let Some(answer) = answer {
                ctx.chunk_done(file.id, c, ChunkOutcome::Validated(answer));
            }
        }
    }
}

/// Sets the file's cancel flag when its cancellation is requested (as the cancel API would
/// write it: by the file's id, whoever holds the file), unless the file completed or failed
/// first.
async fn cancel_flag(shared: Arc<Shared>, file: FileId) {
    shared.ctx.cancel_requested(file).await;
    if matches!(
        shared.ctx.status(file),
        sim::FileStatus::Completed | sim::FileStatus::Failed
    ) {
        return;
    }
    let _ = shared
        .services
        .table
        .set(TableKey::new("file", file.0), "cancelled", Attr::Bool(true))
        .await;
    shared.bill_write();
    shared.watch().flagged.insert(file);
}

/// The event source mapping: long-polls for batches while it may run more, and invokes a
/// validator for each; ends when every file has ended and nothing runs.
async fn poll(shared: &Arc<Shared>) {
    let ctx = &shared.ctx;
    let s = &shared.services;
    loop {
        let notified = shared.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let running = shared.running.load(Ordering::Relaxed);
        if running == 0 && shared.ended() {
            return;
        }
        let now = ctx.now();
        let attrs = s.queue.attributes().await.unwrap_or_default();
        // The gauges are sampled once a second of run time (CloudWatch's finest period), at
        // the mapping's first look in that second.
        let second = now.as_secs() + 1;
        if shared.sampled.swap(second, Ordering::Relaxed) != second {
            let dlq = s.dead_letter.attributes().await.unwrap_or_default();
            ctx.gauge("queue_depth", attrs.messages as f64);
            ctx.gauge("dlq_depth", dlq.messages as f64);
            ctx.gauge(
                "oldest_message_s",
                attrs.oldest_age.map_or(0.0, |a| a.as_secs_f64().floor()),
            );
            ctx.gauge("batches_running", f64::from(running));
        }
        let max = ctx.params().get().max_parallelism.get().clamp(2, 1_000);
        let concurrency = {
            let mut sc = s.scaler.lock().expect("no task panicked holding the scaler");
            sc.set_config(EsmConfig {
                maximum_concurrency: Some(max),
                ..EsmConfig::default()
            });
            sc.at(now, attrs.messages > 0)
        };
        ctx.set_concurrency_limit(concurrency);
        if running >= concurrency || shared.ended() {
            tokio::select! {
                biased;
                () = &mut notified => {}
                () = ctx.sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        // One poller's long poll (the mapping's pollers use the longest, 20 s).
        let batch = tokio::select! {
            biased;
            () = &mut notified => continue,
            b = s.queue.receive(shared.config.batch_size as usize, MAX_WAIT) => b,
        };
        shared.bill_sqs();
        let mut batch = match batch {
            Ok(b) if !b.is_empty() => b,
            _ => continue,
        };
        // MaximumBatchingWindowInSeconds: keep receiving until the batch is full or the window
        // has passed (the messages' visibility runs meanwhile).
        let size = shared.config.batch_size as usize;
        let until = ctx.now() + shared.config.batching_window.0;
        while batch.len() < size && !shared.ended() {
            let now = ctx.now();
            if now >= until {
                break;
            }
            let more = s.queue.receive(size - batch.len(), (until - now).min(MAX_WAIT)).await;
            shared.bill_sqs();
            match more {
                Ok(m) => batch.extend(m),
                Err(_) => break,
            }
        }
        delivered(shared, &batch);
        shared.running.fetch_add(1, Ordering::Relaxed);
        ctx.spawn(invoke(shared.clone(), batch));
    }
}

/// Counts a batch's deliveries: redeliveries, duplicates, and messages a crash stranded.
fn delivered(shared: &Shared, batch: &[Received<Msg>]) {
    let now = shared.ctx.now();
    let answered: Vec<bool> = {
        let a = shared.answers();
        batch
            .iter()
            .map(|r| a.contains_key(&(r.body.file, r.body.chunk)))
            .collect()
    };
    let mut lost = 0.0;
    {
        let mut w = shared.watch();
        for (r, answered) in batch.iter().zip(answered) {
            let k = (r.body.file, r.body.chunk);
            shared.metric(fig!("deliveries"));
            if r.receive_count > 1 {
                shared.metric(fig!("redeliveries"));
            }
            let held = w.in_hand.or_default(k);
            if *held > 0 || answered {
                shared.metric(fig!("duplicate_deliveries"));
            }
            *held += 1;
            if let Some(crashed) = w.stranded.remove(&k) {
                lost += now.saturating_sub(crashed).as_secs_f64();
            }
        }
    }
    if lost > 0.0 {
        shared.add(fig!("crash_time_lost_s"), lost);
    }
}

/// A validator invocation over one batch: each message in turn.
async fn invoke(shared: Arc<Shared>, batch: Vec<Received<Msg>>) {
    let ctx = shared.ctx.clone();
    let now = ctx.now();
    let started = shared
        .services
        .lambda
        .lock()
        .expect("no task panicked holding Lambda")
        .begin("validator", now);
    match started {
        Err(_) => {
            // The mapping could not invoke: the batch stays hidden until its visibility runs
            // out, and the mapping backs off.
            shared.metric(fig!("lambda_throttles"));
            shared
                .services
                .scaler
                .lock()
                .expect("no task panicked holding the scaler")
                .backoff();
            let mut w = shared.watch();
            for r in &batch {
                release(&mut w.in_hand, (r.body.file, r.body.chunk));
            }
        }
        Ok(st) => {
            shared.metric(fig!("lambda_invocations"));
            if st.cold {
                shared.metric(fig!("lambda_cold_starts"));
                ctx.sleep(shared.config.lambda.cold_start.0).await;
            }
            ctx.sleep(shared.config.lambda.handler.0).await;
            for r in batch {
                let k = (r.body.file, r.body.chunk);
                handle(&shared, r).await;
                release(&mut shared.watch().in_hand, k);
            }
            let end = ctx.now();
            let gb_s = shared
                .services
                .lambda
                .lock()
                .expect("no task panicked holding Lambda")
                .end("validator", end, end - now);
            shared.bill(Unit::LambdaRequest, 1.0);
            shared.bill(Unit::LambdaGbSecond, gb_s);
        }
    }
    shared.running.fetch_sub(1, Ordering::Relaxed);
    shared.wake.notify_waiters();
}

fn release(map: &mut ByChunk<u32>, k: Key) {
    if let Some(n) = map.get_mut(&k) {
        *n -= 1;
        if *n == 0 {
            map.remove(&k);
        }
    }
}

/// One message: cancel flag, stored result, claim, LLM call, idempotent result, counter,
/// delete.
async fn handle(shared: &Arc<Shared>, r: Received<Msg>) {
    let ctx = &shared.ctx;
    let s = &shared.services;
    let mut bills = Bills::new(shared);
    let handle = Handle::from(&r);
    let Msg { file, chunk } = r.body;
    let (fkey, rkey, ckey) = (
        TableKey::new("file", file.0),
        TableKey::sorted("result", file.0, chunk),
        TableKey::sorted("claim", file.0, chunk),
    );
    // The file's item (its cancel flag) and the chunk's result, read before any call. (What
    // they say is kept, not the items: a future holds its locals across every await, and
    // smaller futures are cheaper to move.)
    let (whole, cancelled) = s
        .table
        .get(fkey)
        .await
        .ok()
        .flatten()
        .map_or((false, false), |v| (complete(&v), v.flag("cancelled")));
    let checked = ctx.now();
    bills.reads += 1;
    if whole {
        // A leftover delivery of a chunk of a validated file (its result items are gone).
        shared.metric(fig!("duplicates_suppressed"));
        let _ = s.queue.delete(handle).await;
        bills.sqs += 1;
        return;
    }
    if cancelled {
        shared.metric(fig!("cancelled_before_call"));
        ctx.chunk_done(file, chunk, ChunkOutcome::Cancelled);
        let _ = s.queue.delete(handle).await;
        bills.sqs += 1;
        return;
    }
    // With claims, the chunk's terminal state is read first; without dedupe nothing is
    // checked before the call (that is what `none` means: a redelivery costs a call, and only
    // the conditional write keeps the result single).
    // Whether a request since `checked` had to wait (a throttled table request waits for
    // capacity): only then can time have passed. (Asking the clock instead cost a read of it per
    // message, and live, where the clock always moves a little, re-read the items for nothing.)
    let mut waited = false;
    // Whether the chunk has a stored result, and whether it is a failure.
    let stored = if shared.config.dedupe == Dedupe::Claim {
        bills.reads += 1;
        let get = s.table.get(rkey);
        waited |= !get.is_ready();
        get.await.ok().flatten().map(|v| v.has("failed"))
    } else {
        None
    };
    if let Some(failed) = stored {
        // The chunk has its terminal state: report it again (the engine counts a duplicate,
        // or stores it if a crash lost its copy), and spend no call.
        shared.metric(fig!("duplicates_suppressed"));
        if failed {
            ctx.chunk_done(file, chunk, ChunkOutcome::Failed);
        } else {
            let answer = shared.answers().get(&(file, chunk)).copied();
            if let Some(answer) = answer {
                ctx.chunk_done(file, chunk, ChunkOutcome::Validated(answer));
            }
        }
        let _ = s.queue.delete(handle).await;
        bills.sqs += 1;
        return;
    }
    let k = (file, chunk);
    // This delivery's claim (its `until`), when it holds one.
    let mut mine: Option<i64> = None;
    if shared.config.dedupe == Dedupe::Claim {
        let now_ms = if waited { ctx.now() } else { checked }.as_millis() as i64;
        let until = now_ms + shared.config.visibility_timeout.0.as_millis() as i64;
        // Taken when absent or expired (`until` in the past): a claim outlives its holder at
        // most by the visibility timeout.
        let put = s.table.put(
            ckey,
            Item::new().with("until", until),
            Condition::AbsentOrBelow {
                attr: "until",
                value: now_ms,
            },
        );
        waited |= !put.is_ready();
        let claim = put.await;
        bills.writes += 1;
        let held_until = match claim {
            Ok(()) => {
                mine = Some(until);
                if shared.watch().claims.insert(k, until).is_some() {
                    shared.metric(fig!("claims_taken_over"));
                }
                None
            }
            Err(ServiceError::ConditionFailed) => {
                let held = s.table.get(ckey).await.ok().flatten();
                bills.reads += 1;
                Some(held.and_then(|v| v.number("until")).unwrap_or(until))
            }
            Err(ServiceError::Throttled { retry_after }) => Some(now_ms + retry_after.as_millis() as i64),
        };
        if let Some(t) = held_until {
            // Another delivery is working on it: hide this one until the claim runs out (by
            // then the result is stored, or the claim may be taken over).
            shared.metric(fig!("duplicates_suppressed"));
            let wait = Duration::from_millis((t - now_ms).max(1) as u64);
            let _ = s.queue.change_visibility(handle, wait).await;
            bills.sqs += 1;
            return;
        }
    }
    if waited {
        // Time passed since the file's item and the chunk's result were read (a throttled
        // table request waited for capacity): read them again, so that no call starts after
        // a cancel flag it could see, nor for a result another delivery stored meanwhile.
        let over = (s.table.get(fkey).await.ok().flatten()).is_some_and(|v| v.flag("cancelled") || complete(&v));
        bills.reads += 1;
        let stored = mine.is_some() && {
            bills.reads += 1;
            s.table.get(rkey).await.ok().flatten().is_some()
        };
        if stored || over {
            if let Some(until) = mine {
                release_claim(&mut bills, ckey, k, until).await;
            }
            // The next delivery drops it: cancelled, complete or stored.
            let _ = s.queue.change_visibility(handle, Duration::ZERO).await;
            bills.sqs += 1;
            return;
        }
    }
    let duplicate = {
        let answered = shared.answers().contains_key(&k);
        let mut w = shared.watch();
        let calling = w.calling.or_default(k);
        let dup = answered || *calling > 0;
        *calling += 1;
        if w.flagged.contains(&file) {
            drop(w);
            shared.metric(fig!("calls_after_cancel_flag"));
        }
        dup
    };
    if duplicate {
        shared.metric(fig!("duplicate_llm_calls"));
    }
    let result = ctx.call(ctx.request(file, chunk, r.receive_count - 1)).await;
    release(&mut shared.watch().calling, k);
    match result {
        Ok(response) => {
            // The file may have completed during the call (its result items then are gone):
            // the write is conditional on it not being complete too. In DynamoDB that is a
            // TransactWriteItems with a ConditionCheck on `file#F`; here the read and the put
            // happen at one instant.
            let whole = s.table.get(fkey).await.ok().flatten().as_ref().is_some_and(complete);
            bills.reads += 1;
            let first = if whole {
                Err(ServiceError::ConditionFailed)
            } else {
                let verdict = Item::new()
                    .with("valid", response.verdict.valid)
                    .with("issues", i64::from(response.verdict.issues));
                s.table.put(rkey, verdict, Condition::Absent).await
            };
            bills.writes += 1;
            if first.is_ok() {
                shared.answers().insert(k, response);
                shared.metric(fig!("results_written"));
                let done = s.table.add(fkey, "done", 1).await;
                bills.writes += 1;
                ctx.chunk_done(file, chunk, ChunkOutcome::Validated(response));
                if done.ok() == Some(i64::from(ctx.workload().file(file).chunks)) {
                    shared.metric(fig!("files_validated_events"));
                    // (Boxed: once per file, and its future would double the size of this one.)
                    Box::pin(file_validated(shared, file)).await;
                }
            } else {
                // Stored already, by another delivery (reported then) or as failed by the
                // dead-letter watcher: this answer is not kept, its tokens are what the
                // duplicate cost.
                shared.metric(fig!("duplicates_suppressed"));
                shared.add(fig!("duplicate_llm_tokens"), response.usage.total() as f64);
            }
            let _ = s.queue.delete(handle).await;
            bills.sqs += 1;
            if let Some(until) = mine {
                release_claim(&mut bills, ckey, k, until).await;
            }
        }
        Err(e) => {
            if let Some(until) = mine {
                release_claim(&mut bills, ckey, k, until).await;
            }
            if let LlmError::Throttled { retry_after, .. } = e
                && shared.config.on_throttle == OnThrottle::Backoff
            {
                let wait = retry_after.unwrap_or(Duration::from_secs(1));
                let _ = s.queue.change_visibility(handle, wait).await;
                bills.sqs += 1;
            }
            // Otherwise the message returns when its visibility timeout runs out.
        }
    }
}

/// Deletes this delivery's claim, only while it is still its own (a claim taken over after it
/// expired belongs to the new holder).
async fn release_claim(bills: &mut Bills<'_>, ckey: TableKey, k: Key, until: i64) {
    let shared = bills.shared;
    let _ = shared.services.table.delete_if(ckey, "until", until).await;
    bills.writes += 1;
    let mut w = shared.watch();
    if w.claims.get(&k) == Some(&until) {
        w.claims.remove(&k);
    }
}

/// Whether a `file#F` item says every chunk is validated.
fn complete(item: &Item) -> bool {
    matches!((item.number("done"), item.number("chunks")), (Some(d), Some(c)) if d >= c)
}

/// The file-validated event: the file's results are complete (the engine has them all), so its
/// per-chunk items are deleted (a write unit each, billed) and its answers let go. The table
/// and the answers then hold only files in progress: memory stays flat however long the run.
/// A late duplicate of one of its chunks finds the file complete in `file#F` and is dropped.
async fn file_validated(shared: &Shared, file: FileId) {
    let s = &shared.services;
    let items = s.table.query("result", file.0).await.unwrap_or_default();
    shared.bill_read();
    for (key, _) in items {
        let _ = s.table.delete(key).await;
        shared.bill_write();
    }
    let mut answers = shared.answers();
    let chunks: Vec<Key> = answers.range((file, 0)..=(file, u32::MAX)).map(|(k, _)| *k).collect();
    for k in chunks {
        answers.remove(&k);
    }
}

/// The dead-letter queue's watcher (an alarm's operator, or a Lambda on the DLQ): a message
/// with redrives left is moved back to the chunk queue after `dlq_redrive_after`; any other
/// fails its chunk and stays in the DLQ.
async fn watch_dead_letters(shared: Arc<Shared>) {
    let ctx = &shared.ctx;
    let s = &shared.services;
    loop {
        let batch = s.dead_letter.receive(10, MAX_WAIT).await;
        shared.bill_sqs();
        for r in batch.unwrap_or_default() {
            let handle = Handle::from(&r);
            let Msg { file, chunk } = r.body;
            let rkey = TableKey::sorted("result", file.0, chunk);
            let whole = s.table.get(TableKey::new("file", file.0)).await.ok().flatten();
            shared.bill_read();
            if whole.as_ref().is_some_and(complete) {
                // A leftover of a chunk of a validated file.
                let _ = s.dead_letter.delete(handle).await;
                shared.bill_sqs();
                continue;
            }
            let stored = s.table.get(rkey).await.ok().flatten();
            shared.bill_read();
            match stored {
                // Failed already (seen again after 12 h): it stays.
                Some(item) if item.has("failed") => {
                    let _ = s.dead_letter.change_visibility(handle, MAX_VISIBILITY).await;
                    shared.bill_sqs();
                    continue;
                }
                // A leftover of a chunk validated by another delivery.
                Some(_) => {
                    let _ = s.dead_letter.delete(handle).await;
                    shared.bill_sqs();
                    continue;
                }
                None => {}
            }
            let times = s
                .table
                .add(TableKey::sorted("dlq", file.0, chunk), "times", 1)
                .await
                .unwrap_or(1);
            shared.bill_write();
            if times <= i64::from(shared.config.dlq_redrives) {
                let _ = s.queue.send(r.body, Some(shared.config.dlq_redrive_after.0)).await;
                let _ = s.dead_letter.delete(handle).await;
                shared.bill_sqs();
                shared.bill_sqs();
                shared.metric(fig!("dlq_redriven"));
                continue;
            }
            // The chunk's terminal state, unless a delivery still working on it when its
            // message moved here has stored a verdict first.
            let failed = s
                .table
                .put(rkey, Item::new().with("failed", times), Condition::Absent)
                .await;
            shared.bill_write();
            if failed.is_err() {
                // Validated after all: the message was a leftover.
                let _ = s.dead_letter.delete(handle).await;
                shared.bill_sqs();
                continue;
            }
            // It stays in the DLQ, out of the watcher's sight.
            let _ = s.dead_letter.change_visibility(handle, MAX_VISIBILITY).await;
            shared.bill_sqs();
            shared.metric(fig!("dead_lettered"));
            ctx.chunk_done(file, chunk, ChunkOutcome::Failed);
        }
    }
}
