//! `stepfn`: the reference architecture on AWS Step Functions. One execution per file, started
//! through the StartExecution quota, runs a real Amazon States Language definition
//! ([`crate::asl`]) whose Task states are Lambda functions in a simulated account
//! ([`crate::aws::lambda`]): a TPM controller picks the execution's Map concurrency from the parameter store
//! and the tokens of the last minute (a DynamoDB-like table the validators write), and a Map of
//! validate-chunk functions, one LLM call each, retries 429s by its `Retry`.
//!
//! What makes the design tricky in production is kept: each execution's `MaxConcurrency` is its
//! own, so the load on the LLM is the sum over running executions, and the only global
//! coordination is what the controller reads from the table.
//!
//! The service (AWS Step Functions developer guide and quotas): every state entered and every
//! retry is a state transition, billed (Standard) and drawn from the StateTransition bucket
//! (5,000, refilled 1,500/s; a throttled transition waits) after a per-transition overhead;
//! StartExecution draws from its own bucket (1,300, 300/s; the caller retries a throttled start
//! after the wait); Express executions are billed per execution and GB-second and time out after
//! 5 minutes. A cancelled file's execution is stopped at once (StopExecution): its running Lambda
//! invocations run to their end and their answers are discarded. A failed execution can be
//! redriven after `redrive_after`: only its unfinished chunks run again. A crash aborts the
//! orchestrator's process, executions and in-flight invocations alike; after the restart, every
//! unfinished file starts a new execution for its unfinished chunks (the service's executions
//! outliving the crash are not modelled; README says so).
//!
//! Figures: `executions_started`, `executions_succeeded`, `executions_failed`,
//! `executions_aborted`, `executions_redriven`, `transitions`, `transitions_throttled`,
//! `starts_throttled`, `lambda_invocations`, `lambda_cold_starts`, `lambda_throttles`,
//! `histories_dropped`; gauges `executions_running`, `lambda_running` and
//! `controller_concurrency`; the first `max_histories` executions' histories in the artifact
//! `stepfn-history.jsonl` (Express executions keep none, as on AWS).

mod config;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::{Value, json};
use sim::cost::Unit;
use sim::scenario::FileId;
use sim::{ChunkOutcome, FileTask, LlmError, RunContext};
use simkit::quota::Quota;

use crate::aws::lambda::Lambda;
pub use config::{LambdaConfig, Role, Share, StepFnConfig, Workflow};

use crate::asl::errors::Failure;
use crate::asl::exec::{self, TaskCall, TaskRunner};
use crate::{BoxRun, Strategy, cancel_requested};

/// The `stepfn` strategy.
#[derive(Clone, Debug)]
pub struct StepFn {
    config: StepFnConfig,
    definition: Arc<Value>,
}

/// The shipped definitions, by the names `definition` accepts.
const SHIPPED: &[(&str, &str)] = &[
    ("validation", include_str!("../../../scenarios/asl/validation.asl.json")),
    ("reference", include_str!("../../../scenarios/asl/reference.asl.json")),
];

impl StepFn {
    /// With these settings; `base` is the scenario's folder, for a relative definition path.
    /// The definition is read and checked here: a run never starts on one with problems.
    pub fn new(config: StepFnConfig, base: Option<&Path>) -> Result<Self, String> {
        let (text, origin) = match SHIPPED.iter().find(|(n, _)| *n == config.definition) {
            Some((_, t)) => ((*t).to_owned(), format!("built-in definition `{}`", config.definition)),
            None => {
                let path = base.map_or_else(
                    || Path::new(&config.definition).to_owned(),
                    |b| b.join(&config.definition),
                );
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("definition: cannot read {}: {e}", path.display()))?;
                (text, path.display().to_string())
            }
        };
        let problems = crate::asl::check_text(&text);
        if !problems.is_empty() {
            let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
            return Err(format!("definition {origin} does not check:\n{}", list.join("\n")));
        }
        let definition: Value = serde_json::from_str(&text).expect("checked: it is JSON");
        Ok(Self {
            config,
            definition: Arc::new(definition),
        })
    }
}

impl Default for StepFn {
    fn default() -> Self {
        Self::new(StepFnConfig::default(), None).expect("the shipped definition checks")
    }
}

impl Strategy for StepFn {
    fn name(&self) -> &str {
        "stepfn"
    }

    fn describe(&self) -> &str {
        "Step Functions: an execution per file running real ASL, a TPM-controller Lambda, a Map of validate-chunk Lambdas with Retry"
    }

    fn run(&self, ctx: RunContext) -> BoxRun {
        Box::pin(run(ctx, self.config.clone(), self.definition.clone()))
    }
}

/// What one run shares between its executions.
struct Shared {
    ctx: RunContext,
    config: StepFnConfig,
    definition: Arc<Value>,
    state: Mutex<State>,
    /// Woken when the last running invocation ends.
    idle: tokio::sync::Notify,
}

struct State {
    lambda: Lambda,
    transitions: Quota,
    starts: Quota,
    /// The DynamoDB-like table: (when, tokens charged) of the last minute's LLM calls.
    recent: VecDeque<(Duration, u64)>,
    /// Requests sent per chunk (the provider's `attempt`).
    attempts: BTreeMap<(FileId, u32), u32>,
    running: u32,
    /// Lambda invocations not yet ended (they outlive a stopped execution).
    invocations: u64,
    /// Execution histories written to the report so far.
    histories: u32,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("no task panicked holding the service state")
    }

    fn metric(&self, name: &str) {
        self.ctx.add_metric(name, 1.0);
    }
}

async fn run(ctx: RunContext, config: StepFnConfig, definition: Arc<Value>) {
    let model = config.lambda.model();
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        config,
        definition,
        state: Mutex::new(State {
            lambda: Lambda::new(model),
            transitions: Quota::step_functions_state_transitions(),
            starts: Quota::step_functions_start_execution(),
            recent: VecDeque::new(),
            attempts: BTreeMap::new(),
            running: 0,
            invocations: 0,
            histories: 0,
        }),
        idle: tokio::sync::Notify::new(),
    });
    // Redrives that a crash interrupted go on.
    let pending: Vec<(FileId, (u32, exec::Redrive))> = ctx
        .durable::<Pending>()
        .redrives
        .lock()
        .expect("no task panicked holding the pending redrives")
        .iter()
        .map(|(f, p)| (*f, p.clone()))
        .collect();
    let mut executions: Vec<_> = pending
        .into_iter()
        .map(|(file, (redrives, point))| {
            let shared = shared.clone();
            ctx.spawn(async move {
                if let Some((task, r, p)) = redrive_later(&shared, file, redrives, point).await {
                    file_executions(shared, task, r, Some(p)).await;
                }
            })
        })
        .collect();
    while let Some(file) = ctx.next_file().await {
        // StartExecution: a throttled start is retried after the wait it was told.
        loop {
            let now = ctx.now();
            let taken = shared.lock().starts.try_take(now, 1);
            match taken {
                Ok(()) => break,
                Err(wait) => {
                    shared.metric("starts_throttled");
                    ctx.sleep(wait.unwrap_or(Duration::from_secs(1))).await;
                }
            }
        }
        executions.push(ctx.spawn(file_executions(shared.clone(), file, 0, None)));
    }
    for e in executions {
        let _ = e.await;
    }
    // Invocations of stopped executions run to their end, as on AWS.
    loop {
        let notified = shared.idle.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if shared.lock().invocations == 0 {
            return;
        }
        notified.await;
    }
}

/// What outlives a crash of the orchestrator: the failed executions waiting for their
/// automatic redrive (the service keeps them; a crash must not forget them).
#[derive(Default)]
struct Pending {
    redrives: Mutex<BTreeMap<FileId, (u32, exec::Redrive)>>,
}

/// A file's execution, and its redrives.
async fn file_executions(
    shared: Arc<Shared>,
    mut file: FileTask,
    mut redrives: u32,
    mut resume: Option<exec::Redrive>,
) {
    loop {
        let (status, point) = execution(&shared, &file, redrives, resume.take(), false).await;
        if status != "FAILED" {
            return;
        }
        let Some(point) = point else { return };
        // RedriveExecution is for Standard workflows only (AWS Step Functions API reference).
        if shared.config.redrive_after.is_none()
            || shared.config.workflow == Workflow::Express
            || redrives >= shared.config.max_redrives.get()
        {
            return;
        }
        shared
            .ctx
            .durable::<Pending>()
            .redrives
            .lock()
            .expect("no task panicked holding the pending redrives")
            .insert(file.id, (redrives, point.clone()));
        match redrive_later(&shared, file.id, redrives, point).await {
            Some((task, r, p)) => {
                file = task;
                redrives = r;
                resume = Some(p);
            }
            None => return,
        }
    }
}

/// Waits until the failed file has settled and the redrive delay has passed, then redrives it
/// (RedriveExecution: the execution continues from its unsuccessful state, and a failed Map
/// reruns only its unsuccessful iterations; the engine reopens the file for the chunks still
/// without a result).
async fn redrive_later(
    shared: &Arc<Shared>,
    file: FileId,
    redrives: u32,
    mut point: exec::Redrive,
) -> Option<(FileTask, u32, exec::Redrive)> {
    let ctx = &shared.ctx;
    let forget = || {
        ctx.durable::<Pending>()
            .redrives
            .lock()
            .expect("no task panicked holding the pending redrives")
            .remove(&file);
    };
    // Invocations the failed execution left running finish first (their answers may still be
    // stored, or fail the file); then the redrive waits its delay.
    if ctx.wait_final(file).await != sim::FileStatus::Failed {
        forget();
        return None;
    }
    ctx.sleep(shared.config.redrive_after.map_or(Duration::ZERO, |d| d.0))
        .await;
    let redriven = ctx.redrive(file);
    forget();
    let task = redriven.ok()?;
    // An iteration whose chunk the store did not keep (results stored at the end keep nothing
    // of a failed file) runs again.
    point.map_done.retain(|_, out| {
        out.get("chunk")
            .and_then(Value::as_u64)
            .is_none_or(|c| !task.chunks.contains(&(c as u32)))
    });
    shared.metric("executions_redriven");
    Some((task, redrives + 1, point))
}

/// Which chunks of an execution have been reported to the engine, and which have a Lambda
/// invocation calling the LLM.
#[derive(Default)]
struct ChunkBook {
    reported: BTreeSet<u32>,
    in_flight: BTreeSet<u32>,
    /// The execution has ended: an invocation finishing after it reports its own outcome.
    ended: Option<&'static str>,
    /// A duplicate run of an Express execution (at-least-once): its answers count, its
    /// failures are not the file's.
    ghost: bool,
}

/// One execution of the definition over `file`'s chunks; its status.
async fn execution(
    shared: &Arc<Shared>,
    file: &FileTask,
    redrives: u32,
    resume: Option<exec::Redrive>,
    ghost: bool,
) -> (&'static str, Option<exec::Redrive>) {
    let ctx = &shared.ctx;
    let express = shared.config.workflow == Workflow::Express;
    let name = format!("file-{}", file.id.0 + 1);
    if ghost {
        shared.metric("express_duplicates");
    } else {
        shared.metric("executions_started");
        // Express is at-least-once: now and then an execution runs twice, at once.
        let rate = shared.config.express_duplicate_rate.0;
        if express && rate > 0.0 && ctx.rng(&format!("stepfn/express/{name}/{redrives}")).next_f64() < rate {
            ctx.spawn(duplicate(shared.clone(), file.clone(), redrives));
        }
    }
    let running = {
        let mut st = shared.lock();
        st.running += 1;
        st.running
    };
    ctx.gauge("executions_running", f64::from(running));
    let book = Arc::new(Mutex::new(ChunkBook {
        ghost,
        ..ChunkBook::default()
    }));
    let runner = Runner {
        shared: shared.clone(),
        file: file.id,
        book: book.clone(),
    };
    // Whether this execution's history goes into the report (the first `max_histories`):
    // decided up front, so that the others are never recorded.
    let keep = !express && !ghost && {
        let mut st = shared.lock();
        let room = st.histories < shared.config.max_histories;
        st.histories += u32::from(room);
        room
    };
    let options = exec::Options {
        keep_history: keep,
        machine_name: "orchbench".into(),
        // A redriven execution keeps its name (and ARN).
        execution_name: name.clone(),
        start_time_ms: exec::Options::default().start_time_ms + ctx.now().as_millis() as i64,
        seed: ctx.rng(&format!("stepfn/{name}/{redrives}")).sim().next_u64(),
    };
    let input = json!({"file": name, "chunks": file.chunks});
    if express {
        ctx.bill(Unit::ExpressRequest, 1.0);
    }
    let started = ctx.now();
    // StopExecution when the file's cancellation is requested.
    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = {
        let (ctx, file, stop) = (ctx.clone(), file.clone(), stop.clone());
        ctx.clone().spawn(async move {
            cancel_requested(&ctx, &file).await;
            stop.cancel();
        })
    };
    let run = async {
        match resume {
            Some(point) => exec::redrive(&shared.definition, point, &runner, &options, &stop).await,
            None => exec::run_until(&shared.definition, input, &runner, &options, &stop).await,
        }
    };
    // Express executions end after 5 minutes (Step Functions quotas).
    let outcome = if express {
        match tokio::time::timeout(Duration::from_secs(300), run).await {
            Ok(o) => o,
            Err(_) => exec::Outcome {
                status: "FAILED",
                output: None,
                error: Some("States.Timeout".into()),
                cause: Some("The Express execution reached its 5-minute limit.".into()),
                elapsed_s: 300.0,
                history: Vec::new(),
                redrive: None,
            },
        }
    } else {
        run.await
    };
    if express {
        // Billed on 64 MB of memory (*unverified*: the smallest increment).
        ctx.bill(
            Unit::ExpressGbSecond,
            64.0 / 1024.0 * (ctx.now() - started).as_secs_f64(),
        );
    }
    watcher.abort();
    let status = outcome.status;
    if !ghost {
        shared.metric(match status {
            "SUCCEEDED" => "executions_succeeded",
            "ABORTED" => "executions_aborted",
            _ => "executions_failed",
        });
    }
    // Chunks nobody reported and no invocation still works on end with the execution (a
    // duplicate run reports nothing: its file is the original's business).
    let to_report: Vec<u32> = {
        let mut b = book.lock().expect("no task panicked holding the book");
        b.ended = Some(status);
        if ghost {
            Vec::new()
        } else {
            file.chunks
                .iter()
                .copied()
                .filter(|c| !b.reported.contains(c) && !b.in_flight.contains(c))
                .collect()
        }
    };
    let end_outcome = if status == "ABORTED" {
        ChunkOutcome::Cancelled
    } else {
        ChunkOutcome::Failed
    };
    for c in to_report {
        ctx.chunk_done(file.id, c, end_outcome);
    }
    if !express && !ghost && !keep {
        shared.metric("histories_dropped");
    }
    if keep {
        let line = json!({
            "execution": options.execution_name,
            "status": status,
            "error": outcome.error,
            "cause": outcome.cause,
            "history": outcome.history,
        });
        ctx.artifact("history", line.to_string());
    }
    let running = {
        let mut st = shared.lock();
        st.running -= 1;
        st.running
    };
    ctx.gauge("executions_running", f64::from(running));
    (status, outcome.redrive)
}

/// An Express execution's duplicate run (boxed: `execution` starts it, so its future type
/// cannot contain itself).
fn duplicate(shared: Arc<Shared>, file: FileTask, redrives: u32) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        execution(&shared, &file, redrives, None, true).await;
    })
}

/// Runs the Task states of one execution as Lambda functions.
struct Runner {
    shared: Arc<Shared>,
    file: FileId,
    book: Arc<Mutex<ChunkBook>>,
}

impl TaskRunner for Runner {
    fn invoke(&self, call: TaskCall) -> BoxFuture<'_, Result<Value, Failure>> {
        Box::pin(async move {
            let Some(&role) = self.shared.config.resources.get(&call.resource) else {
                return Err(Failure::new(
                    "Lambda.ResourceNotFoundException",
                    format!(
                        "Function not found: {} (give it a role in [strategies.stepfn.resources])",
                        call.resource
                    ),
                ));
            };
            let function = role_name(role);
            let ctx = self.shared.ctx.clone();
            let started = {
                let now = ctx.now();
                let mut st = self.shared.lock();
                let r = st.lambda.begin(function, now);
                let running = st.lambda.running();
                drop(st);
                ctx.gauge("lambda_running", f64::from(running));
                r
            };
            let started = match started {
                Ok(s) => s,
                Err(refusal) => {
                    self.shared.metric("lambda_throttles");
                    let (error, cause) = refusal.error();
                    return Err(Failure::new(error, cause));
                }
            };
            self.shared.metric("lambda_invocations");
            if started.cold {
                self.shared.metric("lambda_cold_starts");
            }
            // The invocation runs in its own task: a stopped execution (or a Map that failed
            // fast) stops waiting for it, but it runs to its end, as on AWS.
            self.shared.lock().invocations += 1;
            let shared = self.shared.clone();
            let (file, book) = (self.file, self.book.clone());
            let input = call.input;
            let handle = ctx.spawn(async move {
                let ctx = shared.ctx.clone();
                let begun = ctx.now();
                let cfg = &shared.config.lambda;
                let work = async {
                    if started.cold {
                        ctx.sleep(cfg.cold_start.0).await;
                    }
                    ctx.sleep(cfg.handler.0).await;
                    handle_role(&shared, role, file, &book, input).await
                };
                let result = match tokio::time::timeout(cfg.timeout.0, work).await {
                    Ok(r) => r,
                    Err(_) => Err(Failure::new(
                        "Sandbox.Timedout",
                        format!("Task timed out after {:.2} seconds", cfg.timeout.0.as_secs_f64()),
                    )),
                };
                let now = ctx.now();
                let (gb_s, running) = {
                    let mut st = shared.lock();
                    let gb_s = st.lambda.end(role_name(role), now, now - begun);
                    st.invocations -= 1;
                    if st.invocations == 0 {
                        shared.idle.notify_waiters();
                    }
                    (gb_s, st.lambda.running())
                };
                ctx.gauge("lambda_running", f64::from(running));
                ctx.bill(Unit::LambdaRequest, 1.0);
                ctx.bill(Unit::LambdaGbSecond, gb_s);
                result
            });
            handle.await.unwrap_or_else(|_| {
                Err(Failure::new(
                    "Lambda.ServiceException",
                    "the invocation was lost (orchestrator crash)",
                ))
            })
        })
    }

    fn transition(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let ctx = &self.shared.ctx;
            if self.shared.config.workflow == Workflow::Standard {
                // A throttled transition waits its turn (the service delays it).
                let now = ctx.now();
                let wait = self.shared.lock().transitions.reserve(now, 1);
                if !wait.is_zero() {
                    self.shared.metric("transitions_throttled");
                    ctx.sleep(wait).await;
                }
                ctx.bill(Unit::StateTransition, 1.0);
            }
            self.shared.metric("transitions");
            ctx.sleep(self.shared.config.transition_overhead.0).await;
        })
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::TpmController => "tpm-controller",
        Role::ValidateChunk => "validate-chunk",
        Role::ValidateFile => "validate-file",
        Role::StoreResults => "store-results",
    }
}

/// What a function does once its environment is ready.
async fn handle_role(
    shared: &Arc<Shared>,
    role: Role,
    file: FileId,
    book: &Arc<Mutex<ChunkBook>>,
    input: Value,
) -> Result<Value, Failure> {
    match role {
        Role::TpmController => {
            let n = controller_concurrency(shared);
            shared.ctx.gauge("controller_concurrency", f64::from(n));
            let mut out = match input {
                Value::Object(m) => Value::Object(m),
                _ => json!({}),
            };
            out["maxConcurrency"] = json!(n);
            Ok(out)
        }
        Role::ValidateChunk => {
            let chunk = chunk_of(&input)?;
            validate_chunk(shared, file, book, chunk).await
        }
        Role::ValidateFile => {
            let chunks: Vec<u32> = input
                .get("chunks")
                .and_then(Value::as_array)
                .ok_or_else(|| Failure::new("ValidateFile.BadInput", "the input has no `chunks` array"))?
                .iter()
                .map(chunk_of)
                .collect::<Result<_, _>>()?;
            let width = input.get("maxConcurrency").and_then(Value::as_u64).unwrap_or(1).max(1) as usize;
            let mut pending = chunks.into_iter();
            let mut running = FuturesUnordered::new();
            let mut results = Vec::new();
            let mut first_error = None;
            loop {
                while first_error.is_none() && running.len() < width {
                    match pending.next() {
                        Some(c) => running.push(validate_chunk(shared, file, book, c)),
                        None => break,
                    }
                }
                match running.next().await {
                    Some(Ok(v)) => results.push(v),
                    Some(Err(f)) => {
                        first_error.get_or_insert(f);
                    }
                    None => break,
                }
            }
            match first_error {
                Some(f) => Err(f),
                None => Ok(json!({"results": results})),
            }
        }
        Role::StoreResults => {
            let n = input.get("results").and_then(Value::as_array).map_or(1, Vec::len);
            shared.ctx.bill(Unit::DynamoWrite, n as f64);
            Ok(json!({"stored": n}))
        }
    }
}

fn chunk_of(v: &Value) -> Result<u32, Failure> {
    v.get("chunk")
        .unwrap_or(v)
        .as_u64()
        .and_then(|c| u32::try_from(c).ok())
        .ok_or_else(|| Failure::new("ValidateChunk.BadInput", format!("no chunk index in {v}")))
}

/// MaxConcurrency for an execution: `max-parallelism` scaled by the share of the minute's budget
/// (`target-tpm × throttle-threshold`) the table says is left, at least 1.
fn controller_concurrency(shared: &Shared) -> u32 {
    let p = shared.ctx.params().get();
    let budget = p.target_tpm.get() as f64 * p.throttle_threshold.0;
    let now = shared.ctx.now();
    let used: u64 = {
        let mut st = shared.lock();
        while st
            .recent
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) >= Duration::from_secs(60))
        {
            st.recent.pop_front();
        }
        st.recent.iter().map(|(_, c)| c).sum()
    };
    let left = (budget - used as f64).max(0.0) / budget.max(1.0);
    ((f64::from(p.max_parallelism.get()) * left).floor() as u32).clamp(1, p.max_parallelism.get())
}

/// One LLM call for `chunk`, reported to the engine when it answers (or when its execution has
/// already ended).
async fn validate_chunk(
    shared: &Arc<Shared>,
    file: FileId,
    book: &Arc<Mutex<ChunkBook>>,
    chunk: u32,
) -> Result<Value, Failure> {
    let ctx = &shared.ctx;
    let attempt = {
        let mut st = shared.lock();
        let a = st.attempts.entry((file, chunk)).or_insert(0);
        let attempt = *a;
        *a += 1;
        attempt
    };
    let req = ctx.request(file, chunk, attempt);
    {
        let charge = u64::from(req.prompt_tokens) + u64::from(req.max_tokens);
        let now = ctx.now();
        shared.lock().recent.push_back((now, charge));
        ctx.bill(Unit::DynamoWrite, 1.0);
    }
    book.lock()
        .expect("no task panicked holding the book")
        .in_flight
        .insert(chunk);
    let result = ctx.call(req).await;
    let (ended, ghost) = {
        let mut b = book.lock().expect("no task panicked holding the book");
        b.in_flight.remove(&chunk);
        if result.is_ok() {
            b.reported.insert(chunk);
        }
        (b.ended, b.ghost)
    };
    match result {
        Ok(response) => {
            ctx.chunk_done(file, chunk, ChunkOutcome::Validated(response));
            Ok(json!({"chunk": chunk, "verdict": format!("{:?}", response.verdict).to_lowercase()}))
        }
        Err(e) => {
            if let Some(status) = ended.filter(|_| !ghost) {
                let outcome = if status == "ABORTED" {
                    ChunkOutcome::Cancelled
                } else {
                    ChunkOutcome::Failed
                };
                ctx.chunk_done(file, chunk, outcome);
            }
            Err(match e {
                LlmError::Throttled { retry_after, .. } => Failure::new(
                    "RateLimited",
                    format!("429 from the LLM; retry after {:?}", retry_after.unwrap_or_default()),
                ),
                LlmError::Timeout => Failure::new("LLM.Timeout", e.to_string()),
                LlmError::TooLarge { .. } => Failure::new("LLM.RequestTooLarge", e.to_string()),
                other => Failure::new("LLM.ServerError", other.to_string()),
            })
        }
    }
}
