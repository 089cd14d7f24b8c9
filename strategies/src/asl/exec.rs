//! The interpreter: runs a checked definition in `tokio::time` (virtual under a paused clock),
//! calling a [`TaskRunner`] for every Task state, and records AWS's execution history.
//!
//! What it follows (AWS Step Functions developer guide, one page per state type, "Processing
//! input and output", "Handling errors", "Execution history events"):
//! - data flow per state: `InputPath` → `Parameters` (Task, Pass, Parallel; `ItemSelector` per
//!   Map item) → the work → `ResultSelector` → `ResultPath` over the raw input → `OutputPath`;
//!   a Pass's result is its `Result`, else its parameters' value, else its effective input;
//! - Retry: the first retrier whose `ErrorEquals` matches decides; its attempts are its own; the
//!   n-th retry (n from 1) waits `IntervalSeconds × BackoffRate^(n−1)` (defaults 1 s, 2.0),
//!   capped at `MaxDelaySeconds`, and with `JitterStrategy: FULL` a uniform draw in [0, that];
//!   after `MaxAttempts` (default 3) the catchers decide; a catcher places `{Error, Cause}` in
//!   the raw input at its `ResultPath` (default `$`) and moves to its `Next`;
//! - Parallel runs its branches at once and fails with the first branch error; Map runs its
//!   items up to `MaxConcurrency` at once (0: unbounded, and as inline Map at most 40), in
//!   order in its output, and fails with the first iteration error unless a tolerated failure
//!   count or percentage is set (then beyond it with `States.ExceedToleratedFailureThreshold`);
//! - a state whose output exceeds 256 KiB fails with `States.DataLimitExceeded`; an execution
//!   past 25,000 history events fails with `States.Runtime` (Step Functions quotas).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::errors::{self, Failure};
use super::{check, paths, time};

/// One Task state's call of its resource.
#[derive(Clone, Debug)]
pub struct TaskCall {
    /// The `Resource` ARN.
    pub resource: String,
    /// The state's name.
    pub state: String,
    /// The task's input (after `InputPath` and `Parameters`).
    pub input: Value,
    /// Retries of this state so far (`$$.State.RetryCount`).
    pub retry_count: u32,
}

/// What runs a Task state's resource (a Lambda function, a service integration, a script), and
/// the service around the interpreter.
pub trait TaskRunner: Send + Sync {
    /// Runs one call; a failure is its error name and cause.
    fn invoke(&self, call: TaskCall) -> BoxFuture<'_, Result<Value, Failure>>;

    /// One state transition (a state entered, or a retry): the service may bill it and take
    /// its time (a per-transition overhead, a throttled transition quota). Default: free and
    /// instant.
    fn transition(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// How an execution is named and seeded.
#[derive(Clone, Debug)]
pub struct Options {
    /// The state machine's name (in `$$.StateMachine` and the execution ARN).
    pub machine_name: String,
    /// The execution's name (`$$.Execution.Name`).
    pub execution_name: String,
    /// When the execution starts, milliseconds since the Unix epoch (`$$.Execution.StartTime`,
    /// and the clock a Wait's `Timestamp` is measured on). Default 2026-01-01T00:00:00Z.
    pub start_time_ms: i64,
    /// Seeds `States.MathRandom`, `States.UUID` and full jitter.
    pub seed: u64,
    /// Record the history's events (ids and the 25,000-event quota count either way). Default
    /// true; a caller that will not keep it saves the memory.
    pub keep_history: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            machine_name: "orchbench".into(),
            execution_name: "execution".into(),
            start_time_ms: 1_767_225_600_000,
            seed: 0,
            keep_history: true,
        }
    }
}

/// One event of the execution history, in AWS's shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryEvent {
    /// From 1, in order.
    pub id: u64,
    /// The event before it in the same thread of execution (0 for the first).
    #[serde(rename = "previousEventId")]
    pub previous_event_id: u64,
    /// Milliseconds since the execution started (virtual time).
    #[serde(rename = "timestampMs")]
    pub timestamp_ms: u64,
    /// `ExecutionStarted`, `TaskStateEntered`, `MapIterationStarted`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The event's details, under AWS's key (`stateEnteredEventDetails`, …) when it has any.
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

/// How an execution ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    /// `SUCCEEDED`, `FAILED`, or `ABORTED` (stopped).
    pub status: &'static str,
    /// The output, when it succeeded.
    pub output: Option<Value>,
    /// The error, when it failed.
    pub error: Option<String>,
    /// The cause, when it failed.
    pub cause: Option<String>,
    /// Simulated seconds from start to end.
    pub elapsed_s: f64,
    /// The execution history.
    pub history: Vec<HistoryEvent>,
    /// Where to redrive it from, when it failed.
    #[serde(skip)]
    pub redrive: Option<Redrive>,
}

/// The most history events an execution may have (Step Functions quotas: 25,000).
pub const MAX_HISTORY_EVENTS: usize = 25_000;

/// Inline Map's own cap on concurrent iterations (AWS runs at most 40 at once).
pub const INLINE_MAP_MAX_CONCURRENCY: usize = 40;

/// Checks `definition` and runs it on `input`; the problems when it does not check.
pub async fn run(
    definition: &Value,
    input: Value,
    runner: &dyn TaskRunner,
    options: &Options,
) -> Result<Outcome, Vec<check::Problem>> {
    let problems = check::check(definition);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(run_checked(definition, input, runner, options).await)
}

/// Runs a definition that [`check::check`] accepted.
pub async fn run_checked(definition: &Value, input: Value, runner: &dyn TaskRunner, options: &Options) -> Outcome {
    run_until(definition, input, runner, options, &CancellationToken::new()).await
}

/// [`run_checked`], stopped when `stop` is cancelled (StopExecution): the execution ends at once
/// with status `ABORTED` and an `ExecutionAborted` event; tasks it started are the runner's
/// business (on AWS, running Lambda invocations run to their end).
pub async fn run_until(
    definition: &Value,
    input: Value,
    runner: &dyn TaskRunner,
    options: &Options,
    stop: &CancellationToken,
) -> Outcome {
    start(definition, input, runner, options, stop, None).await
}

/// Redrives a failed execution from where it failed (AWS `RedriveExecution`): the failed state
/// runs again on its input, and a failed top-level Map reruns only its unsuccessful
/// iterations. The history continues: `ExecutionRedriven`, ids after the failed run's.
pub async fn redrive(
    definition: &Value,
    from: Redrive,
    runner: &dyn TaskRunner,
    options: &Options,
    stop: &CancellationToken,
) -> Outcome {
    let input = from.input.clone();
    start(definition, input, runner, options, stop, Some(from)).await
}

async fn start(
    definition: &Value,
    input: Value,
    runner: &dyn TaskRunner,
    options: &Options,
    stop: &CancellationToken,
    resume: Option<Redrive>,
) -> Outcome {
    let redrives = resume.as_ref().map_or(0, |r| r.count + 1);
    let first_id = resume.as_ref().map_or(1, |r| r.next_event_id);
    let exec = Exec {
        runner,
        options,
        start: tokio::time::Instant::now(),
        history: Mutex::new(Vec::new()),
        rng: Mutex::new(options.seed ^ u64::from(redrives)),
        execution_input: input.clone(),
        resume: Mutex::new(resume.clone()),
        failed_at: Mutex::new(None),
        first_id,
        redrives,
        events: AtomicU64::new(0),
        context_use: ContextUse::of(definition),
    };
    let thread = Thread::new(first_id.saturating_sub(1));
    if resume.is_some() {
        exec.event(
            &thread,
            "ExecutionRedriven",
            || json!({"executionRedrivenEventDetails": {"redriveCount": redrives}}),
        );
    } else {
        exec.event(
            &thread,
            "ExecutionStarted",
            || json!({"executionStartedEventDetails": {"input": input.to_string(), "roleArn": ROLE_ARN}}),
        );
    }
    let top = Scope::default();
    let work = exec.machine(definition, input, &top, &thread);
    let timeout = definition
        .get("TimeoutSeconds")
        .and_then(Value::as_u64)
        .map_or(Duration::MAX, Duration::from_secs);
    let result = tokio::select! {
        biased;
        () = stop.cancelled() => None,
        r = tokio::time::timeout(timeout, work) => Some(match r {
            Ok(r) => r,
            Err(_) => Err(Failure::new(errors::TIMEOUT, "The execution timed out.")),
        }),
    };
    let Some(result) = result else {
        exec.event(&thread, "ExecutionAborted", || json!({}));
        let history = exec
            .history
            .into_inner()
            .expect("no thread panicked holding the history");
        return Outcome {
            status: "ABORTED",
            output: None,
            error: None,
            cause: None,
            elapsed_s: exec.start.elapsed().as_secs_f64(),
            history,
            redrive: None,
        };
    };
    let (status, output, error, cause) = match result {
        Ok(out) => {
            exec.event(
                &thread,
                "ExecutionSucceeded",
                || json!({"executionSucceededEventDetails": {"output": out.to_string()}}),
            );
            ("SUCCEEDED", Some(out), None, None)
        }
        Err(f) => {
            let kind = if f.error == errors::TIMEOUT && f.cause == "The execution timed out." {
                "ExecutionTimedOut"
            } else {
                "ExecutionFailed"
            };
            let key = if kind == "ExecutionTimedOut" {
                "executionTimedOutEventDetails"
            } else {
                "executionFailedEventDetails"
            };
            exec.event(&thread, kind, || json!({key: {"error": f.error, "cause": f.cause}}));
            ("FAILED", None, Some(f.error), Some(f.cause))
        }
    };
    let history = exec
        .history
        .into_inner()
        .expect("no thread panicked holding the history");
    let redrive = if status == "FAILED" {
        exec.failed_at
            .into_inner()
            .expect("no thread panicked holding the failure point")
            .map(|mut r| {
                r.count = redrives;
                r.next_event_id = first_id + exec.events.load(Ordering::Relaxed);
                r
            })
    } else {
        None
    };
    Outcome {
        status,
        output,
        error,
        cause,
        elapsed_s: exec.start.elapsed().as_secs_f64(),
        history,
        redrive,
    }
}

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/orchbench";

/// The chain of events of one thread of execution (the top level, a branch, an iteration).
struct Thread {
    last: AtomicU64,
}

impl Thread {
    fn new(last: u64) -> Self {
        Self {
            last: AtomicU64::new(last),
        }
    }
}

/// What the context object holds beyond the execution: the Map item being processed.
#[derive(Clone, Debug, Default)]
struct Scope {
    item: Option<(usize, Value)>,
    /// Inside a Map iteration or a Parallel branch (not the top level).
    nested: bool,
}

struct Exec<'a> {
    runner: &'a dyn TaskRunner,
    options: &'a Options,
    start: tokio::time::Instant,
    history: Mutex<Vec<HistoryEvent>>,
    rng: Mutex<u64>,
    execution_input: Value,
    /// Redrives before this run (`$$.Execution.RedriveCount`).
    redrives: u32,
    /// Events so far (kept or not).
    events: AtomicU64,
    /// What of the context object the definition reads.
    context_use: ContextUse,
    /// Where a redrive resumes, and a top-level Map's finished iterations.
    resume: Mutex<Option<Redrive>>,
    /// Where the top level failed, for a later redrive.
    failed_at: Mutex<Option<Redrive>>,
    first_id: u64,
}

/// Where a failed execution can be redriven from (AWS `RedriveExecution`): the state it failed
/// in, that state's input, and, when it is a Map, the outputs of its iterations that succeeded
/// (only the others run again).
#[derive(Clone, Debug, PartialEq)]
pub struct Redrive {
    /// The state the execution failed in.
    pub state: String,
    /// That state's input.
    pub input: Value,
    /// A failed Map's successful iterations, or a failed Parallel's successful branches, by
    /// index.
    pub map_done: BTreeMap<usize, Value>,
    /// Redrives so far (`$$.Execution.RedriveCount` of the next).
    pub count: u32,
    /// The next history event's id.
    pub next_event_id: u64,
}

/// How much of the context object (`$$`) a definition reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ContextUse {
    /// Nothing: no `$$` anywhere.
    None,
    /// Something, but never the execution's input.
    WithoutInput,
    /// `$$.Execution.Input`, or a whole object that holds it.
    WithInput,
}

impl ContextUse {
    fn of(definition: &Value) -> Self {
        // Paths are strings of the definition: look at those only (no serializing per run).
        fn strings<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
            match v {
                Value::String(s) if s.contains("$$") => out.push(s),
                Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
                Value::Object(o) => o.values().for_each(|x| strings(x, out)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        strings(definition, &mut found);
        if found.is_empty() {
            return ContextUse::None;
        }
        // `$$`, `$$.Execution` or `$$.Execution.Input` read the input; other fields do not.
        let mut rests = found
            .iter()
            .flat_map(|text| text.match_indices("$$").map(move |(i, _)| &text[i + 2..]));
        let reads_input = rests.any(|rest| {
            let ends = |r: &str| !r.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '.' || c == '_');
            ends(rest)
                || rest
                    .strip_prefix(".Execution")
                    .is_some_and(|r| ends(r) || r.starts_with(".Input"))
                || rest.starts_with("['")
                || rest.starts_with("..")
        });
        if reads_input {
            ContextUse::WithInput
        } else {
            ContextUse::WithoutInput
        }
    }
}

/// Where a state sends the execution.
enum Transition {
    Next(String, Value),
    End(Value),
}

fn field<'v>(state: &'v Value, key: &str) -> Option<&'v Value> {
    state.get(key)
}

fn str_field<'v>(state: &'v Value, key: &str) -> Option<&'v str> {
    state.get(key).and_then(Value::as_str)
}

/// `null` for a field given as null, the path for a string, `default` when absent.
fn path_field<'v>(state: &'v Value, key: &str, default: &'v str) -> Option<&'v str> {
    match state.get(key) {
        None => Some(default),
        Some(Value::Null) => None,
        Some(v) => v.as_str(),
    }
}

impl Exec<'_> {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn next_random(&self) -> u64 {
        // SplitMix64: one step per draw from the execution's seed.
        let mut s = self.rng.lock().expect("no thread panicked holding the generator");
        *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Appends an event; returns its id. Past the history limit, nothing more is recorded.
    /// Records an event; `details` is built only when the history is kept.
    fn event(&self, thread: &Thread, kind: &str, details: impl FnOnce() -> Value) -> u64 {
        let id = self.events.fetch_add(1, Ordering::Relaxed) + self.first_id;
        let previous = thread.last.swap(id, Ordering::Relaxed);
        if !self.options.keep_history {
            return id;
        }
        let mut h = self.history.lock().expect("no thread panicked holding the history");
        let details = match details() {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        h.push(HistoryEvent {
            id,
            previous_event_id: previous,
            timestamp_ms: self.now_ms(),
            kind: kind.to_owned(),
            details,
        });
        id
    }

    fn history_full(&self) -> bool {
        self.events.load(Ordering::Relaxed) as usize >= MAX_HISTORY_EVENTS
    }

    fn context(&self, state: &str, entered_ms: u64, retry_count: u32, scope: &Scope) -> Value {
        // A definition that never reads `$$` needs no context object: building one per state
        // (with a copy of the execution's input) was most of the interpreter's time.
        if self.context_use == ContextUse::None {
            return Value::Null;
        }
        let machine_arn = format!(
            "arn:aws:states:us-east-1:123456789012:stateMachine:{}",
            self.options.machine_name
        );
        let mut ctx = json!({
            "Execution": {
                "Id": format!("arn:aws:states:us-east-1:123456789012:execution:{}:{}",
                              self.options.machine_name, self.options.execution_name),
                "Input": if self.context_use == ContextUse::WithInput { self.execution_input.clone() } else { Value::Null },
                "Name": self.options.execution_name,
                "RoleArn": ROLE_ARN,
                "StartTime": time::format_ms(self.options.start_time_ms),
                "RedriveCount": self.redrives,
            },
            "State": {
                "EnteredTime": time::format_ms(self.options.start_time_ms + entered_ms as i64),
                "Name": state,
                "RetryCount": retry_count,
            },
            "StateMachine": {"Id": machine_arn, "Name": self.options.machine_name},
        });
        if let Some((index, value)) = &scope.item {
            ctx["Map"] = json!({"Item": {"Index": index, "Value": value}});
        }
        ctx
    }

    /// What a redrive of the top-level Map or Parallel `name` keeps: the outputs of its
    /// iterations or branches that succeeded before (none when nested or not redriven).
    fn redriven_done(&self, name: &str, scope: &Scope) -> BTreeMap<usize, Value> {
        if scope.nested {
            return BTreeMap::new();
        }
        self.resume
            .lock()
            .expect("no thread panicked holding the resume point")
            .as_ref()
            .filter(|r| r.state == name)
            .map(|r| r.map_done.clone())
            .unwrap_or_default()
    }

    /// A top-level Map or Parallel `name` failed: leaves what succeeded for a redrive (the
    /// state's input is filled in by the machine loop).
    fn leave_done(&self, name: &str, scope: &Scope, done: BTreeMap<usize, Value>) {
        if scope.nested {
            return;
        }
        *self
            .failed_at
            .lock()
            .expect("no thread panicked holding the failure point") = Some(Redrive {
            state: name.to_owned(),
            input: Value::Null,
            map_done: done,
            count: 0,
            next_event_id: 0,
        });
    }

    /// Runs a state machine (the top level, a branch or an item processor) on `input`.
    fn machine<'s>(
        &'s self,
        def: &'s Value,
        input: Value,
        scope: &'s Scope,
        thread: &'s Thread,
    ) -> BoxFuture<'s, Result<Value, Failure>> {
        Box::pin(async move {
            let states = def["States"].as_object().expect("checked: States is an object");
            let mut current = def["StartAt"]
                .as_str()
                .expect("checked: StartAt is a string")
                .to_owned();
            if !scope.nested
                && let Some(r) = self
                    .resume
                    .lock()
                    .expect("no thread panicked holding the resume point")
                    .as_ref()
            {
                current = r.state.clone();
            }
            let mut data = input;
            loop {
                if self.history_full() {
                    return Err(Failure::new(
                        errors::RUNTIME,
                        format!("The execution reached the maximum number of history events ({MAX_HISTORY_EVENTS})."),
                    ));
                }
                let state = &states[&current];
                self.runner.transition().await;
                let kept = (!scope.nested).then(|| data.clone());
                let result = self.state(&current, state, data, scope, thread).await;
                if let (Err(_), Some(input)) = (&result, kept) {
                    let mut failed = self
                        .failed_at
                        .lock()
                        .expect("no thread panicked holding the failure point");
                    let map_done = failed
                        .take()
                        .filter(|r| r.state == current)
                        .map(|r| r.map_done)
                        .unwrap_or_default();
                    *failed = Some(Redrive {
                        state: current.clone(),
                        input,
                        map_done,
                        count: 0,
                        next_event_id: 0,
                    });
                }
                // A redrive resumes once; the states after it run as usual.
                if !scope.nested {
                    let mut r = self.resume.lock().expect("no thread panicked holding the resume point");
                    if r.as_ref().is_some_and(|r| r.state == current) {
                        *r = None;
                    }
                }
                match result? {
                    Transition::Next(next, out) => {
                        current = next;
                        data = out;
                    }
                    Transition::End(out) => return Ok(out),
                }
            }
        })
    }

    async fn state(
        &self,
        name: &str,
        state: &Value,
        raw: Value,
        scope: &Scope,
        thread: &Thread,
    ) -> Result<Transition, Failure> {
        let ty = str_field(state, "Type").expect("checked: Type is a string");
        if let Some(unsupported) = unsupported(state) {
            return Err(Failure::new(
                errors::RUNTIME,
                format!("The state '{name}' uses {unsupported}, which orchbench's interpreter does not run."),
            ));
        }
        let entered_ms = self.now_ms();
        let entered_id = self.event(
            thread,
            &format!("{ty}StateEntered"),
            || json!({"stateEnteredEventDetails": {"name": name, "input": raw.to_string()}}),
        );
        self.state_work(name, ty, state, raw, entered_ms, scope, thread)
            .await
            .map_err(|mut f| {
                // AWS's shape for an interpreter error: where it happened, then what.
                if f.error == errors::RUNTIME && !f.cause.starts_with("An error occurred") {
                    f.cause = format!(
                        "An error occurred while executing the state '{name}' (entered at the event id #{entered_id}). {}",
                        f.cause
                    );
                }
                f
            })
    }

    #[allow(clippy::too_many_arguments)]
    async fn state_work(
        &self,
        name: &str,
        ty: &str,
        state: &Value,
        raw: Value,
        entered_ms: u64,
        scope: &Scope,
        thread: &Thread,
    ) -> Result<Transition, Failure> {
        let result = match ty {
            "Pass" => self.pass(name, state, &raw, entered_ms, scope),
            "Choice" => self
                .choice(name, state, &raw, entered_ms, scope)
                .map(|(next, out)| (Some(next), out)),
            "Wait" => self.wait(state, &raw).await,
            "Succeed" => {
                let effective = self.input_path(state, &raw, name, entered_ms, scope)?;
                let out = self.output_path(state, effective, name, entered_ms, scope)?;
                Ok((None, out))
            }
            "Fail" => {
                let ctx = self.context(name, entered_ms, 0, scope);
                let text = |key: &str, path_key: &str| -> Result<String, Failure> {
                    match (str_field(state, key), str_field(state, path_key)) {
                        (Some(v), _) => Ok(v.to_owned()),
                        (None, Some(p)) => match paths::select(p, &raw, &ctx)? {
                            Value::String(s) => Ok(s),
                            other => Err(Failure::new(
                                errors::RUNTIME,
                                format!("The {path_key} '{p}' selected {other}, which is not a string"),
                            )),
                        },
                        (None, None) => Ok(String::new()),
                    }
                };
                return Err(Failure::new(text("Error", "ErrorPath")?, text("Cause", "CausePath")?));
            }
            "Task" | "Parallel" | "Map" => {
                self.with_retry_and_catch(name, ty, state, &raw, entered_ms, scope, thread)
                    .await
            }
            other => unreachable!("checked: `{other}` is a state type"),
        };
        let (next, out) = match result {
            Ok(v) => v,
            Err(f) => {
                if ty == "Map" || ty == "Parallel" {
                    self.event(thread, &format!("{ty}StateFailed"), || json!({}));
                }
                return Err(f);
            }
        };
        let size = out.to_string().len();
        if size > errors::MAX_PAYLOAD_BYTES {
            return Err(Failure::new(
                errors::DATA_LIMIT_EXCEEDED,
                format!(
                    "The state/task '{name}' returned a result with a size exceeding the maximum number of bytes service limit."
                ),
            ));
        }
        self.event(
            thread,
            &format!("{ty}StateExited"),
            || json!({"stateExitedEventDetails": {"name": name, "output": out.to_string()}}),
        );
        let next = next.or_else(|| str_field(state, "Next").map(str::to_owned));
        Ok(match next {
            Some(n) => Transition::Next(n, out),
            None => Transition::End(out),
        })
    }

    fn input_path(
        &self,
        state: &Value,
        raw: &Value,
        name: &str,
        entered_ms: u64,
        scope: &Scope,
    ) -> Result<Value, Failure> {
        match path_field(state, "InputPath", "$") {
            None => Ok(json!({})),
            Some(p) => paths::select_field("InputPath", p, raw, &self.context(name, entered_ms, 0, scope)),
        }
    }

    fn output_path(
        &self,
        state: &Value,
        v: Value,
        name: &str,
        entered_ms: u64,
        scope: &Scope,
    ) -> Result<Value, Failure> {
        match path_field(state, "OutputPath", "$") {
            None => Ok(json!({})),
            Some("$") => Ok(v),
            Some(p) => paths::select_field("OutputPath", p, &v, &self.context(name, entered_ms, 0, scope)),
        }
    }

    fn result_path(&self, state_or_catcher: &Value, raw: &Value, result: Value) -> Result<Value, Failure> {
        match path_field(state_or_catcher, "ResultPath", "$") {
            None => Ok(raw.clone()),
            Some(p) => paths::set(raw, p, result),
        }
    }

    fn template(&self, t: &Value, input: &Value, ctx: &Value) -> Result<Value, Failure> {
        let mut rng = || self.next_random();
        paths::template(t, input, ctx, &mut rng)
    }

    fn pass(
        &self,
        name: &str,
        state: &Value,
        raw: &Value,
        entered_ms: u64,
        scope: &Scope,
    ) -> Result<(Option<String>, Value), Failure> {
        let effective = self.input_path(state, raw, name, entered_ms, scope)?;
        let ctx = self.context(name, entered_ms, 0, scope);
        let result = match (field(state, "Result"), field(state, "Parameters")) {
            (Some(r), _) => r.clone(),
            (None, Some(p)) => self.template(p, &effective, &ctx)?,
            (None, None) => effective,
        };
        let combined = self.result_path(state, raw, result)?;
        Ok((None, self.output_path(state, combined, name, entered_ms, scope)?))
    }

    fn choice(
        &self,
        name: &str,
        state: &Value,
        raw: &Value,
        entered_ms: u64,
        scope: &Scope,
    ) -> Result<(String, Value), Failure> {
        let effective = self.input_path(state, raw, name, entered_ms, scope)?;
        let ctx = self.context(name, entered_ms, 0, scope);
        let rules = state["Choices"].as_array().expect("checked: Choices is an array");
        let mut next = None;
        for rule in rules {
            if rule_matches(rule, &effective, &ctx)? {
                next = Some(rule["Next"].as_str().expect("checked: a rule has Next").to_owned());
                break;
            }
        }
        let next = match next.or_else(|| str_field(state, "Default").map(str::to_owned)) {
            Some(n) => n,
            None => {
                return Err(Failure::new(
                    errors::NO_CHOICE_MATCHED,
                    format!("No Matches! The Choice state '{name}' matched no rule and has no Default."),
                ));
            }
        };
        Ok((next, self.output_path(state, effective, name, entered_ms, scope)?))
    }

    async fn wait(&self, state: &Value, raw: &Value) -> Result<(Option<String>, Value), Failure> {
        let entered_ms = self.now_ms();
        let scope = Scope::default();
        let effective = self.input_path(state, raw, "", entered_ms, &scope)?;
        let ctx = self.context("", entered_ms, 0, &scope);
        let now_epoch = self.options.start_time_ms + entered_ms as i64;
        let until_epoch = |ts: &str| {
            time::parse_ms(ts).ok_or_else(|| {
                Failure::new(
                    errors::RUNTIME,
                    format!("The timestamp '{ts}' is not an RFC 3339 timestamp"),
                )
            })
        };
        let wait_ms: i64 = if let Some(s) = field(state, "Seconds").and_then(Value::as_u64) {
            s as i64 * 1000
        } else if let Some(p) = str_field(state, "SecondsPath") {
            match paths::select(p, &effective, &ctx)?.as_u64() {
                Some(s) => s as i64 * 1000,
                None => {
                    return Err(Failure::new(
                        errors::PARAMETER_PATH_FAILURE,
                        format!("The SecondsPath '{p}' must select a non-negative integer"),
                    ));
                }
            }
        } else if let Some(ts) = str_field(state, "Timestamp") {
            until_epoch(ts)? - now_epoch
        } else if let Some(p) = str_field(state, "TimestampPath") {
            match paths::select(p, &effective, &ctx)? {
                Value::String(ts) => until_epoch(&ts)? - now_epoch,
                other => {
                    return Err(Failure::new(
                        errors::PARAMETER_PATH_FAILURE,
                        format!("The TimestampPath '{p}' selected {other}, not a timestamp"),
                    ));
                }
            }
        } else {
            0
        };
        if wait_ms > 0 {
            tokio::time::sleep(Duration::from_millis(wait_ms as u64)).await;
        }
        Ok((None, self.output_path(state, effective, "", entered_ms, &scope)?))
    }

    /// Task, Parallel, Map: input processing, the work under Retry, result processing, and
    /// Catch over all of it.
    #[allow(clippy::too_many_arguments)]
    async fn with_retry_and_catch(
        &self,
        name: &str,
        ty: &str,
        state: &Value,
        raw: &Value,
        entered_ms: u64,
        scope: &Scope,
        thread: &Thread,
    ) -> Result<(Option<String>, Value), Failure> {
        let attempt = async {
            let effective = self.input_path(state, raw, name, entered_ms, scope)?;
            let retriers: Vec<Retrier> = state
                .get("Retry")
                .and_then(Value::as_array)
                .map(|rs| rs.iter().map(Retrier::from_json).collect())
                .unwrap_or_default();
            let mut used = vec![0u32; retriers.len()];
            let mut retry_count = 0u32;
            let result = loop {
                let ctx = self.context(name, entered_ms, retry_count, scope);
                let work = match ty {
                    "Task" => self.task(name, state, &effective, &ctx, retry_count, thread).await,
                    "Parallel" => self.parallel(name, state, &effective, &ctx, scope, thread).await,
                    _ => self.map(name, state, &effective, &ctx, scope, thread).await,
                };
                match work {
                    Ok(v) => break Ok(v),
                    Err(f) => {
                        let from_task = ty == "Task";
                        match retriers.iter().position(|r| f.matches(&r.errors, from_task)) {
                            Some(i) if used[i] < retriers[i].max_attempts => {
                                used[i] += 1;
                                retry_count += 1;
                                let delay = retriers[i].delay(used[i], || self.next_random());
                                tokio::time::sleep(delay).await;
                                self.runner.transition().await;
                            }
                            _ => break Err(f),
                        }
                    }
                }
            }?;
            let ctx = self.context(name, entered_ms, retry_count, scope);
            let selected = match field(state, "ResultSelector") {
                Some(t) => self.template(t, &result, &ctx)?,
                None => result,
            };
            let combined = self.result_path(state, raw, selected)?;
            self.output_path(state, combined, name, entered_ms, scope)
        }
        .await;
        match attempt {
            Ok(out) => Ok((None, out)),
            Err(f) => {
                let catchers = state.get("Catch").and_then(Value::as_array);
                let from_task = ty == "Task";
                let caught = catchers.into_iter().flatten().find(|c| {
                    let names: Vec<String> = c["ErrorEquals"]
                        .as_array()
                        .expect("checked: ErrorEquals is an array")
                        .iter()
                        .filter_map(|e| e.as_str().map(str::to_owned))
                        .collect();
                    f.matches(&names, from_task)
                });
                match caught {
                    Some(c) => {
                        let out = self.result_path(c, raw, f.to_json())?;
                        let next = c["Next"].as_str().expect("checked: a catcher has Next").to_owned();
                        Ok((Some(next), out))
                    }
                    None => Err(f),
                }
            }
        }
    }

    async fn task(
        &self,
        name: &str,
        state: &Value,
        effective: &Value,
        ctx: &Value,
        retry_count: u32,
        thread: &Thread,
    ) -> Result<Value, Failure> {
        let input = match field(state, "Parameters") {
            Some(t) => self.template(t, effective, ctx)?,
            None => effective.clone(),
        };
        let resource = str_field(state, "Resource")
            .expect("checked: a Task has Resource")
            .to_owned();
        let lambda = resource.starts_with("arn:aws:lambda:");
        let (scheduled, started, succeeded, failed, timed_out) = if lambda {
            (
                "LambdaFunctionScheduled",
                "LambdaFunctionStarted",
                "LambdaFunctionSucceeded",
                "LambdaFunctionFailed",
                "LambdaFunctionTimedOut",
            )
        } else {
            (
                "TaskScheduled",
                "TaskStarted",
                "TaskSucceeded",
                "TaskFailed",
                "TaskTimedOut",
            )
        };
        let lower = |s: &str| {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
                .unwrap_or_default()
        };
        let details = |kind: &str, body: Value| json!({ format!("{}EventDetails", lower(kind)): body });
        self.event(thread, scheduled, || {
            details(scheduled, json!({"resource": resource, "input": input.to_string()}))
        });
        self.event(thread, started, || json!({}));
        let seconds = |key: &str, path_key: &str| -> Result<Option<u64>, Failure> {
            match (field(state, key), str_field(state, path_key)) {
                (Some(t), _) => Ok(t.as_u64()),
                (None, Some(p)) => match paths::select(p, effective, ctx)?.as_u64() {
                    Some(t) if t > 0 => Ok(Some(t)),
                    _ => Err(Failure::new(
                        errors::PARAMETER_PATH_FAILURE,
                        format!("The {path_key} '{p}' must select a positive integer"),
                    )),
                },
                (None, None) => Ok(None),
            }
        };
        // No task here sends heartbeats (only activities and callbacks can), so a heartbeat
        // interval is a deadline too: past it the task fails with States.Timeout, which a
        // retrier or catcher may also name States.HeartbeatTimeout (AWS "Error names").
        let (timeout, heartbeat) = (
            seconds("TimeoutSeconds", "TimeoutSecondsPath")?,
            seconds("HeartbeatSeconds", "HeartbeatSecondsPath")?,
        );
        let deadline = match (timeout, heartbeat) {
            (Some(t), Some(h)) if h < t => Some((h, true)),
            (Some(t), _) => Some((t, false)),
            (None, Some(h)) => Some((h, true)),
            (None, None) => None,
        };
        let call = TaskCall {
            resource: resource.clone(),
            state: name.to_owned(),
            input,
            retry_count,
        };
        let result = match deadline {
            Some((secs, heartbeat)) => match tokio::time::timeout(Duration::from_secs(secs), self.runner.invoke(call))
                .await
            {
                Ok(r) => r,
                Err(_) => {
                    let mut f = Failure::new(errors::TIMEOUT, format!("The task '{name}' timed out after {secs} s."));
                    if heartbeat {
                        f.cause = format!("The task '{name}' sent no heartbeat for {secs} s.");
                        f.heartbeat = true;
                    }
                    self.event(thread, timed_out, || {
                        details(timed_out, json!({"error": f.error, "cause": f.cause}))
                    });
                    return Err(f);
                }
            },
            None => self.runner.invoke(call).await,
        };
        match &result {
            Ok(v) => self.event(thread, succeeded, || {
                details(succeeded, json!({"output": v.to_string()}))
            }),
            Err(f) => self.event(thread, failed, || {
                details(failed, json!({"error": f.error, "cause": f.cause}))
            }),
        };
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn parallel(
        &self,
        name: &str,
        state: &Value,
        effective: &Value,
        ctx: &Value,
        scope: &Scope,
        thread: &Thread,
    ) -> Result<Value, Failure> {
        let input = match field(state, "Parameters") {
            Some(t) => self.template(t, effective, ctx)?,
            None => effective.clone(),
        };
        let branches = state["Branches"].as_array().expect("checked: Branches is an array");
        let started = self.event(thread, "ParallelStateStarted", || json!({}));
        let threads: Vec<Thread> = branches.iter().map(|_| Thread::new(started)).collect();
        // A redrive of this (top-level) Parallel keeps the branches that succeeded.
        let mut outputs = self.redriven_done(name, scope);
        let outer = scope;
        let scope = &Scope {
            item: scope.item.clone(),
            nested: true,
        };
        let mut running: FuturesUnordered<_> = branches
            .iter()
            .zip(&threads)
            .enumerate()
            .filter(|(i, _)| !outputs.contains_key(i))
            .map(|(i, (b, t))| {
                let input = input.clone();
                async move { (i, self.machine(b, input, scope, t).await) }
            })
            .collect();
        while let Some((i, r)) = running.next().await {
            match r {
                Ok(v) => {
                    outputs.insert(i, v);
                }
                Err(f) => {
                    self.leave_done(name, outer, outputs);
                    return Err(f);
                }
            }
        }
        self.event(thread, "ParallelStateSucceeded", || json!({}));
        Ok(Value::Array(outputs.into_values().collect()))
    }

    async fn map(
        &self,
        name: &str,
        state: &Value,
        effective: &Value,
        ctx: &Value,
        scope: &Scope,
        thread: &Thread,
    ) -> Result<Value, Failure> {
        let items_path = str_field(state, "ItemsPath").unwrap_or("$");
        let items = match paths::select_field("ItemsPath", items_path, effective, ctx)? {
            Value::Array(a) => a,
            other => {
                return Err(Failure::new(
                    errors::RUNTIME,
                    format!("Map state '{name}': the ItemsPath '{items_path}' selected {other}, which is not an array"),
                ));
            }
        };
        let limit = match (field(state, "MaxConcurrency"), str_field(state, "MaxConcurrencyPath")) {
            (Some(v), _) => v.as_u64().unwrap_or(0),
            (None, Some(p)) => paths::select(p, effective, ctx)?.as_u64().ok_or_else(|| {
                Failure::new(
                    errors::PARAMETER_PATH_FAILURE,
                    format!("The MaxConcurrencyPath '{p}' must select a non-negative integer"),
                )
            })?,
            (None, None) => 0,
        } as usize;
        let limit = if limit == 0 {
            INLINE_MAP_MAX_CONCURRENCY
        } else {
            limit.min(INLINE_MAP_MAX_CONCURRENCY)
        };
        let tolerated_count = field(state, "ToleratedFailureCount").and_then(Value::as_u64);
        let tolerated_pct = field(state, "ToleratedFailurePercentage").and_then(Value::as_f64);
        let tolerant = tolerated_count.is_some() || tolerated_pct.is_some();
        let processor = state
            .get("ItemProcessor")
            .or_else(|| state.get("Iterator"))
            .expect("checked: a Map has a processor");
        let selector = field(state, "ItemSelector").or_else(|| field(state, "Parameters"));
        let started = self.event(
            thread,
            "MapStateStarted",
            || json!({"mapStateStartedEventDetails": {"length": items.len()}}),
        );
        let n = items.len();
        // Each iteration's input, from the item and `$$.Map.Item`.
        let mut inputs = Vec::with_capacity(n);
        for (i, item) in items.iter().enumerate() {
            let scope = Scope {
                item: Some((i, item.clone())),
                nested: true,
            };
            let item_ctx = self.context(name, 0, 0, &scope);
            let mut c = ctx.clone();
            c["Map"] = item_ctx["Map"].clone();
            inputs.push(match selector {
                Some(t) => self.template(t, effective, &c)?,
                None => item.clone(),
            });
        }
        let threads: Vec<Thread> = (0..n).map(|_| Thread::new(started)).collect();
        let scopes: Vec<Scope> = items
            .iter()
            .enumerate()
            .map(|(i, item)| Scope {
                item: Some((i, item.clone())),
                nested: true,
            })
            .collect();
        // A redrive of this (top-level) Map keeps the iterations that succeeded.
        let done = self.redriven_done(name, scope);
        let mut outputs: Vec<Option<Value>> = (0..n).map(|i| done.get(&i).cloned()).collect();
        let mut pending = inputs.into_iter().enumerate().filter(|(i, _)| !done.contains_key(i));
        let mut running = FuturesUnordered::new();
        let mut failed_idx = std::collections::BTreeSet::new();
        // On failure, a top-level Map leaves its successful iterations for a redrive.
        let record = |outputs: &[Option<Value>], failed: &std::collections::BTreeSet<usize>| {
            let done = outputs
                .iter()
                .enumerate()
                .filter(|(i, _)| !failed.contains(i))
                .filter_map(|(i, o)| o.clone().map(|v| (i, v)))
                .collect();
            self.leave_done(name, scope, done);
        };
        let mut failures = 0usize;
        let iteration = |i: usize, input: Value| {
            let (t, s) = (&threads[i], &scopes[i]);
            async move {
                self.event(
                    t,
                    "MapIterationStarted",
                    || json!({"mapIterationStartedEventDetails": {"name": name, "index": i}}),
                );
                let r = self.machine(processor, input, s, t).await;
                let kind = if r.is_ok() {
                    "MapIterationSucceeded"
                } else {
                    "MapIterationFailed"
                };
                let key = if r.is_ok() {
                    "mapIterationSucceededEventDetails"
                } else {
                    "mapIterationFailedEventDetails"
                };
                self.event(t, kind, || json!({key: {"name": name, "index": i}}));
                (i, r)
            }
        };
        loop {
            while running.len() < limit {
                match pending.next() {
                    Some((i, input)) => running.push(iteration(i, input)),
                    None => break,
                }
            }
            let Some((i, r)) = running.next().await else { break };
            match r {
                Ok(v) => outputs[i] = Some(v),
                Err(f) if !tolerant => {
                    record(&outputs, &failed_idx);
                    return Err(f);
                }
                Err(f) => {
                    failures += 1;
                    failed_idx.insert(i);
                    outputs[i] = Some(f.to_json());
                    let over_count = tolerated_count.is_some_and(|c| failures as u64 > c);
                    let over_pct = tolerated_pct.is_some_and(|p| failures as f64 * 100.0 / n as f64 > p);
                    let over = match (tolerated_count, tolerated_pct) {
                        (Some(_), Some(_)) => over_count && over_pct,
                        _ => over_count || over_pct,
                    };
                    if over {
                        record(&outputs, &failed_idx);
                        return Err(Failure::new(
                            errors::EXCEED_TOLERATED_FAILURE_THRESHOLD,
                            format!(
                                "The Map state '{name}' exceeded its tolerated failures: {failures} of {n} items failed."
                            ),
                        ));
                    }
                }
            }
        }
        self.event(thread, "MapStateSucceeded", || json!({}));
        Ok(Value::Array(
            outputs.into_iter().map(|o| o.expect("every item ran")).collect(),
        ))
    }
}

/// What a valid state may use that this interpreter does not run (rather than ignore it).
fn unsupported(state: &Value) -> Option<&'static str> {
    let distributed = state
        .get("ItemProcessor")
        .and_then(|p| p.get("ProcessorConfig"))
        .and_then(|c| c.get("Mode"))
        .and_then(Value::as_str)
        == Some("DISTRIBUTED");
    if distributed
        || ["ItemReader", "ItemBatcher", "ResultWriter"]
            .iter()
            .any(|k| state.get(*k).is_some())
    {
        Some("a Distributed Map (ItemReader, ItemBatcher, ResultWriter or Mode DISTRIBUTED)")
    } else if state.get("Assign").is_some() {
        Some("workflow variables (Assign)")
    } else if state.get("Credentials").is_some() {
        Some("cross-account Credentials")
    } else {
        None
    }
}

/// A retrier, with AWS's defaults.
struct Retrier {
    errors: Vec<String>,
    interval_s: f64,
    max_attempts: u32,
    backoff_rate: f64,
    max_delay_s: Option<f64>,
    full_jitter: bool,
}

impl Retrier {
    fn from_json(v: &Value) -> Self {
        Self {
            errors: v["ErrorEquals"]
                .as_array()
                .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            interval_s: v.get("IntervalSeconds").and_then(Value::as_f64).unwrap_or(1.0),
            max_attempts: v.get("MaxAttempts").and_then(Value::as_u64).unwrap_or(3) as u32,
            backoff_rate: v.get("BackoffRate").and_then(Value::as_f64).unwrap_or(2.0),
            max_delay_s: v.get("MaxDelaySeconds").and_then(Value::as_f64),
            full_jitter: v.get("JitterStrategy").and_then(Value::as_str) == Some("FULL"),
        }
    }

    /// The wait before retry `n` (from 1).
    fn delay(&self, n: u32, mut random: impl FnMut() -> u64) -> Duration {
        let mut secs = self.interval_s * self.backoff_rate.powi(n as i32 - 1);
        if let Some(max) = self.max_delay_s {
            secs = secs.min(max);
        }
        if self.full_jitter {
            let u = (random() >> 11) as f64 / (1u64 << 53) as f64;
            secs *= u;
        }
        Duration::from_secs_f64(secs.clamp(0.0, 1e9))
    }
}

/// Whether a Choice rule matches `input`.
fn rule_matches(rule: &Value, input: &Value, ctx: &Value) -> Result<bool, Failure> {
    if let Some(rs) = rule.get("And").and_then(Value::as_array) {
        for r in rs {
            if !rule_matches(r, input, ctx)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    if let Some(rs) = rule.get("Or").and_then(Value::as_array) {
        for r in rs {
            if rule_matches(r, input, ctx)? {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    if let Some(r) = rule.get("Not") {
        return Ok(!rule_matches(r, input, ctx)?);
    }
    let var_path = rule["Variable"].as_str().expect("checked: a comparison has Variable");
    let obj = rule.as_object().expect("checked: a rule is an object");
    let (op, operand) = obj
        .iter()
        .find(|(k, _)| !matches!(k.as_str(), "Variable" | "Next" | "Comment" | "Assign"))
        .expect("checked: a rule has one operator");
    if op == "IsPresent" {
        let present = paths::select(var_path, input, ctx).is_ok();
        return Ok(present == operand.as_bool().unwrap_or(true));
    }
    let var = paths::select(var_path, input, ctx)?;
    let test = |b: bool| Ok(b == operand.as_bool().unwrap_or(true));
    match op.as_str() {
        "IsNull" => return test(var.is_null()),
        "IsNumeric" => return test(var.is_number()),
        "IsString" => return test(var.is_string()),
        "IsBoolean" => return test(var.is_boolean()),
        "IsTimestamp" => return test(var.as_str().is_some_and(|s| time::parse_ms(s).is_some())),
        "StringMatches" => {
            let (Some(s), Some(pat)) = (var.as_str(), operand.as_str()) else {
                return Ok(false);
            };
            return Ok(wildcard_match(pat, s));
        }
        _ => {}
    }
    let (base, against) = match op.strip_suffix("Path") {
        Some(base) => (base, paths::select(operand.as_str().unwrap_or("$"), input, ctx)?),
        None => (op.as_str(), operand.clone()),
    };
    use std::cmp::Ordering as O;
    let ordering: Option<O> = if base.starts_with("String") {
        match (var.as_str(), against.as_str()) {
            (Some(a), Some(b)) => Some(a.cmp(b)),
            _ => None,
        }
    } else if base.starts_with("Numeric") {
        match (var.as_f64(), against.as_f64()) {
            (Some(a), Some(b)) => a.partial_cmp(&b),
            _ => None,
        }
    } else if base.starts_with("Timestamp") {
        match (
            var.as_str().and_then(time::parse_ms),
            against.as_str().and_then(time::parse_ms),
        ) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => None,
        }
    } else {
        // BooleanEquals
        return Ok(matches!((var.as_bool(), against.as_bool()), (Some(a), Some(b)) if a == b));
    };
    let Some(o) = ordering else { return Ok(false) };
    Ok(
        match base
            .trim_start_matches("String")
            .trim_start_matches("Numeric")
            .trim_start_matches("Timestamp")
        {
            "Equals" => o == O::Equal,
            "LessThan" => o == O::Less,
            "GreaterThan" => o == O::Greater,
            "LessThanEquals" => o != O::Greater,
            "GreaterThanEquals" => o != O::Less,
            _ => false,
        },
    )
}

/// `StringMatches`: `*` matches any run of characters; `\*` a literal star, `\\` a backslash.
fn wildcard_match(pattern: &str, s: &str) -> bool {
    #[derive(PartialEq)]
    enum Tok {
        Star,
        Char(char),
    }
    let mut toks = Vec::new();
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => toks.push(Tok::Char(it.next().unwrap_or('\\'))),
            '*' => toks.push(Tok::Star),
            c => toks.push(Tok::Char(c)),
        }
    }
    let s: Vec<char> = s.chars().collect();
    // Classic two-pointer wildcard matching with backtracking to the last star.
    let (mut p, mut i, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while i < s.len() {
        match toks.get(p) {
            Some(Tok::Char(c)) if *c == s[i] => {
                p += 1;
                i += 1;
            }
            Some(Tok::Star) => {
                star = Some(p);
                mark = i;
                p += 1;
            }
            _ => match star {
                Some(sp) => {
                    p = sp + 1;
                    mark += 1;
                    i = mark;
                }
                None => return false,
            },
        }
    }
    while toks.get(p) == Some(&Tok::Star) {
        p += 1;
    }
    p == toks.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_matches_follows_the_documented_wildcards() {
        assert!(wildcard_match("log-*.txt", "log-2026.txt"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("log-*.txt", "log-2026.csv"));
        assert!(wildcard_match("a\\*b", "a*b"));
        assert!(!wildcard_match("a\\*b", "axb"));
    }

    #[test]
    fn retry_delays_follow_the_formula_and_full_jitter_stays_within_it() {
        let r = Retrier::from_json(
            &json!({"ErrorEquals": ["X"], "IntervalSeconds": 3, "BackoffRate": 1.5, "MaxDelaySeconds": 6}),
        );
        let secs: Vec<f64> = (1..=4).map(|n| r.delay(n, || 0).as_secs_f64()).collect();
        assert_eq!(secs, vec![3.0, 4.5, 6.0, 6.0], "3 × 1.5^(n-1), capped at 6");
        let j = Retrier::from_json(&json!({"ErrorEquals": ["X"], "IntervalSeconds": 2, "JitterStrategy": "FULL"}));
        let mut s = 7u64;
        for n in 1..=5 {
            let d = j.delay(n, || {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                s
            });
            assert!(d.as_secs_f64() <= 2.0 * 2f64.powi(n as i32 - 1), "{d:?} for retry {n}");
        }
    }

    mod generated {
        use super::super::*;
        use crate::asl::script::ScriptedRunner;
        use proptest::prelude::*;

        /// A recipe for one state: its kind and a few numbers to fill it with.
        #[derive(Clone, Debug)]
        struct Recipe {
            kind: u8,
            a: u8,
            b: u8,
        }

        fn recipe() -> impl Strategy<Value = Recipe> {
            (0u8..8, any::<u8>(), any::<u8>()).prop_map(|(kind, a, b)| Recipe { kind, a, b })
        }

        /// A valid machine: states in a chain (each moves only forward, so every run ends),
        /// Choice rules and catchers jumping ahead, nested branches and processors.
        fn machine(recipes: &[Recipe], depth: u32) -> Value {
            let n = recipes.len();
            let name = |i: usize| format!("S{i}");
            let mut states = Map::new();
            for (i, r) in recipes.iter().enumerate() {
                let last = i + 1 == n;
                let ahead = |k: u8| name((i + 1 + usize::from(k) % (n - i).max(1)).min(n - 1));
                let mut st = match r.kind {
                    0 => json!({"Type": "Pass", "Result": {"v": r.a}, "ResultPath": "$.p"}),
                    1 => json!({"Type": "Wait", "Seconds": r.a % 5}),
                    2 if !last => json!({"Type": "Choice", "Default": name(i + 1), "Choices": [
                        {"Variable": "$.n", "NumericGreaterThan": i64::from(r.a % 10), "Next": ahead(r.a)},
                        {"Not": {"Variable": "$.n", "IsNumeric": true}, "Next": ahead(r.b)}]}),
                    3 => json!({"Type": "Task", "Resource": format!("r{}", r.a % 3), "ResultPath": "$.t",
                                "Retry": [{"ErrorEquals": ["Boom"], "MaxAttempts": r.b % 3, "IntervalSeconds": 1}],
                                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": if last { name(i) } else { ahead(r.b) }}]}),
                    4 if depth < 2 => json!({"Type": "Parallel", "ResultPath": "$.par", "Branches": [
                        machine(&[Recipe { kind: r.a % 4, a: r.b, b: r.a }], depth + 1),
                        machine(&[Recipe { kind: 3, a: r.a, b: r.b }, Recipe { kind: 0, a: 1, b: 2 }], depth + 1)]}),
                    5 if depth < 2 => {
                        json!({"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": r.a % 4, "ResultPath": "$.map",
                        "ItemProcessor": machine(&[Recipe { kind: 3, a: r.b, b: r.a }, Recipe { kind: 6, a: r.a, b: r.b }], depth + 1)})
                    }
                    6 if last => json!({"Type": "Fail", "Error": "Generated", "Cause": "fail state"}),
                    7 if last => json!({"Type": "Succeed"}),
                    _ => json!({"Type": "Pass"}),
                };
                let ty = st["Type"].as_str().unwrap_or_default().to_owned();
                if !matches!(ty.as_str(), "Choice" | "Fail" | "Succeed") {
                    if last {
                        st["End"] = json!(true);
                    } else {
                        st["Next"] = json!(name(i + 1));
                    }
                }
                // A catcher that points at itself on the last state would loop: send it to End
                // by dropping the catcher.
                if ty == "Task" && last {
                    st.as_object_mut().expect("an object").remove("Catch");
                }
                states.insert(name(i), st);
            }
            json!({"StartAt": "S0", "States": states})
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
            /// Random valid machines, random task outcomes: the checker accepts the machine, the
            /// interpreter never panics, and every run ends with a history that starts with
            /// ExecutionStarted and ends with ExecutionSucceeded or ExecutionFailed.
            #[test]
            fn random_valid_machines_run_to_an_end_without_panicking(
                recipes in proptest::collection::vec(recipe(), 1..8),
                n in -3i64..15,
                items in proptest::collection::vec(0u8..5, 0..4),
                outcomes in proptest::collection::vec(prop_oneof![Just("echo"), Just("error:Boom"), Just("error:Other"), Just("delay:2s:{\"x\":1}")], 1..4),
            ) {
                let def = machine(&recipes, 0);
                prop_assert_eq!(check::check(&def), vec![], "generated machine does not check: {}", def);
                let mut runner = ScriptedRunner::new();
                for r in 0..3 {
                    runner.add(&format!("r{r}={}", outcomes.join(";"))).expect("valid outcomes");
                }
                let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("a runtime");
                let input = json!({"n": n, "items": items});
                let o = rt.block_on(run_checked(&def, input, &runner, &Options::default()));
                prop_assert_eq!(o.history.first().map(|e| e.kind.as_str()), Some("ExecutionStarted"));
                let last = o.history.last().map(|e| e.kind.clone()).unwrap_or_default();
                prop_assert!(last == "ExecutionSucceeded" || last == "ExecutionFailed", "{}", last);
                prop_assert_eq!(o.status == "SUCCEEDED", last == "ExecutionSucceeded");
            }
        }
    }
}
