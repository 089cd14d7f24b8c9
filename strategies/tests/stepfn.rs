//! The `stepfn` strategy: executions of real ASL over simulated Lambda and the Step Functions
//! service, checked on small scenarios whose figures can be worked out by hand.

use sim::{RunOptions, RunReport, Scenario};

fn scenario(extra: &str) -> Scenario {
    let text = format!(
        r#"
name = "stepfn-test"
seed = 3
[workload]
files = 3
users = 1
chunks_per_file = {{ dist = "fixed", value = 3 }}
prompt_tokens = {{ dist = "fixed", value = 500 }}
completion_tokens = {{ dist = "fixed", value = 100 }}
max_tokens = 100
arrival = {{ kind = "all-at-once" }}
[provider]
tpm = 10000000
latency = {{ base_ms = 1000, per_output_token_ms = 0, sigma = 0 }}
[client]
network = {{ jitter_ms = 0 }}
[params]
max-parallelism = 4
{extra}
"#
    );
    Scenario::parse(&text, "stepfn-test").unwrap_or_else(|e| panic!("valid: {e}"))
}

fn run(s: &Scenario) -> RunReport {
    let strategy = strategies::build("stepfn", s).expect("stepfn builds");
    strategies::simulate(strategy.as_ref(), s, &RunOptions::default()).expect("the run finishes")
}

fn metric(r: &RunReport, name: &str) -> f64 {
    r.summary.strategy_metrics.get(name).copied().unwrap_or(0.0)
}

#[test]
fn each_execution_runs_the_shipped_pipeline_with_its_transitions_lambdas_and_cost() {
    // 3 files of 3 chunks. Per execution: ChooseConcurrency, ValidateChunks, 3 × ValidateChunk,
    // StoreResults: 6 transitions, 5 invocations. The first invocation of each function in a
    // burst is cold: the three controllers at once (3 cold), then 3 × 3 validators (9, all at
    // once, none idle yet), then 3 stores: 15 cold of 15 invocations.
    let r = run(&scenario(""));
    assert_eq!(r.summary.files_completed, 3);
    assert_eq!(metric(&r, "executions_started"), 3.0);
    assert_eq!(metric(&r, "executions_succeeded"), 3.0);
    assert_eq!(metric(&r, "transitions"), 18.0);
    assert_eq!(metric(&r, "lambda_invocations"), 15.0);
    assert_eq!(metric(&r, "lambda_cold_starts"), 15.0);
    // Standard bills every transition: 18 × $0.000025.
    assert_eq!(
        r.summary.cost.by_unit_usd.get(&sim::cost::Unit::StateTransition),
        Some(&0.00045)
    );
    // Makespan: the last chunk's result is stored when its call answers (results are
    // incremental), after 3 transition overheads on the path (25 ms each: the controller's
    // state, the Map's, the iteration's), the controller (cold 250 ms + handler 20 ms) and a
    // validator (250 + 20 ms + 1 s of LLM).
    let expected = 3.0 * 0.025 + 0.270 + 1.270;
    assert!(
        (r.summary.makespan_s - expected).abs() < 0.01,
        "{} vs {expected}",
        r.summary.makespan_s
    );
}

#[test]
fn the_load_on_the_llm_is_the_sum_of_every_executions_map_concurrency() {
    // The controller gives each execution the whole max-parallelism (4) while the table is
    // empty: three executions at once put 3 × 3 = 9 calls in flight, more than the 4 the
    // parameter store asked for. This is the reference design's flaw, kept on purpose.
    let r = run(&scenario(""));
    let peak = r.timeseries.iter().map(|row| row.in_flight_max).max().unwrap_or(0);
    assert_eq!(peak, 9);
}

#[test]
fn a_cancelled_file_stops_its_execution_at_once_but_its_running_lambdas_finish() {
    // The run is cancelled 500 ms into the validators' 1 s calls: executions stop at once
    // (ABORTED), the invocations run to their end, so the last call ends about 0.5 s after the
    // cancellation (cancel latency > 0) and its answers are discarded.
    let r = run(&scenario("[[timeline]]\nat = \"900ms\"\ncancel = { run = true }\n"));
    assert_eq!(metric(&r, "executions_aborted"), 3.0);
    assert_eq!(r.summary.files_cancelled, 3);
    assert_eq!(r.summary.chunks_validated, 0);
    assert!(
        r.summary.results_discarded > 0,
        "the finished calls' answers are discarded"
    );
    let p99 = r.summary.cancel_latency_s.expect("a cancellation").p99;
    assert!(p99 > 0.1, "the calls ran on after the stop: {p99} s");
}

#[test]
fn a_failed_execution_is_redriven_and_only_its_unfinished_chunks_run_again() {
    // A 2-minute 503 outage from 0.2 s: every validator fails (its TaskFailed retrier gives up
    // after 1 + 2 s), the executions fail; redriven 3 minutes later, after the outage, they
    // validate everything. Each chunk was sent 3 times while failing and once after.
    let r = run(&scenario(
        "[strategies.stepfn]\nredrive_after = \"3m\"\n[[timeline]]\nat = \"200ms\"\noutage = { for = \"2m\", status = 503 }\n",
    ));
    assert_eq!(r.summary.files_completed, 3);
    assert_eq!(metric(&r, "executions_failed"), 3.0);
    assert_eq!(metric(&r, "executions_redriven"), 3.0);
    assert_eq!(metric(&r, "executions_succeeded"), 3.0);
    assert_eq!(r.summary.llm_requests, 9 * 4);
    // Without redrive the files stay failed.
    let r = run(&scenario(
        "[[timeline]]\nat = \"200ms\"\noutage = { for = \"2m\", status = 503 }\n",
    ));
    assert_eq!(r.summary.files_failed, 3);
}

#[test]
fn reserved_concurrency_throttles_lambdas_and_retry_absorbs_it() {
    // validate-chunk reserved at 2: of the 9 validators started at once, 7 are refused with
    // Lambda.TooManyRequestsException and retried by the definition's retrier until they fit.
    let r = run(&scenario(
        "[strategies.stepfn.lambda]\nreserved = { validate-chunk = 2 }\n",
    ));
    assert_eq!(r.summary.files_completed, 3);
    assert!(
        metric(&r, "lambda_throttles") >= 7.0,
        "{}",
        metric(&r, "lambda_throttles")
    );
    let peak = r.timeseries.iter().map(|row| row.in_flight_max).max().unwrap_or(0);
    assert!(peak <= 2, "at most 2 validators at once: {peak}");
}

#[test]
fn the_design_documents_reference_definition_runs_as_a_strategy() {
    // TPMController → DynamicValidator, one invocation validating the whole file.
    let r = run(&scenario("[strategies.stepfn]\ndefinition = \"reference\"\n"));
    assert_eq!(r.summary.files_completed, 3);
    assert_eq!(metric(&r, "transitions"), 6.0, "two states per execution");
    assert_eq!(metric(&r, "lambda_invocations"), 6.0);
}

#[test]
fn express_workflows_bill_executions_not_transitions() {
    let r = run(&scenario("[strategies.stepfn]\nworkflow = \"express\"\n"));
    let units = &r.summary.orchestration_units;
    assert_eq!(units.get(&sim::cost::Unit::ExpressRequest), Some(&3.0));
    assert!(units.contains_key(&sim::cost::Unit::ExpressGbSecond));
    assert!(!units.contains_key(&sim::cost::Unit::StateTransition));
}

#[test]
fn start_execution_and_state_transitions_are_throttled_past_their_bursts() {
    // 1,400 files at once against StartExecution's bucket of 1,300 refilled at 300/s: the last
    // 100 wait once. Each execution of 3 chunks takes 5 transitions in its first half second
    // (controller, Map, 3 iterations): 1,300 of them ask for 6,500 against a bucket of 5,000
    // refilled at 1,500/s, so transitions are throttled too.
    let s = Scenario::parse(
        r#"
name = "many"
[workload]
files = 1400
chunks_per_file = { dist = "fixed", value = 3 }
prompt_tokens = { dist = "fixed", value = 10 }
completion_tokens = { dist = "fixed", value = 1 }
max_tokens = 1
arrival = { kind = "all-at-once" }
[provider]
latency = { base_ms = 100, per_output_token_ms = 0, sigma = 0 }
[quotas]
per_user_concurrent_files = 100000
[params]
max-parallelism = 1
"#,
        "many",
    )
    .expect("valid");
    let r = run(&s);
    assert_eq!(r.summary.files_completed, 1400);
    assert_eq!(
        metric(&r, "starts_throttled"),
        100.0,
        "each of the last 100 waited once"
    );
}

#[test]
fn a_users_definition_with_problems_is_refused_before_the_run() {
    let dir = std::env::temp_dir().join(format!("orchbench-stepfn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let def = dir.join("broken.asl.json");
    std::fs::write(
        &def,
        r#"{"StartAt": "A", "States": {"A": {"Type": "Task", "End": true}}}"#,
    )
    .expect("writes");
    let s = scenario(&format!(
        "[strategies.stepfn]\ndefinition = {:?}\n",
        def.display().to_string()
    ));
    let err = strategies::build("stepfn", &s).err().expect("refused").to_string();
    assert!(err.contains("does not check") && err.contains("$.States.A"), "{err}");
}

#[test]
fn every_execution_history_lands_in_the_report_as_json_lines() {
    let r = run(&scenario(""));
    let lines = &r.artifacts.get("history").expect("histories").lines;
    assert_eq!(lines.len(), 3);
    let first: serde_json::Value = serde_json::from_str(&lines[0]).expect("JSON");
    assert_eq!(first["status"], "SUCCEEDED");
    assert_eq!(first["history"][0]["type"], "ExecutionStarted");
    // Bounded: a million-chunk run must not write gigabytes of history.
    let r = run(&scenario("[strategies.stepfn]\nmax_histories = 2\n"));
    assert_eq!(r.artifacts["history"].lines.len(), 2);
    assert_eq!(metric(&r, "histories_dropped"), 1.0);
}

#[test]
fn express_is_at_least_once_when_asked_and_duplicates_cost_tokens_not_results() {
    // Every Express execution runs twice (rate 1): each run is billed, the twins' answers are
    // duplicates or discarded, never a second result, and every file still completes once.
    let r = run(&scenario(
        "[strategies.stepfn]\nworkflow = \"express\"\nexpress_duplicate_rate = 1.0\n",
    ));
    assert_eq!(r.summary.files_completed, 3);
    assert_eq!(metric(&r, "express_duplicates"), 3.0);
    assert_eq!(
        r.summary.orchestration_units.get(&sim::cost::Unit::ExpressRequest),
        Some(&6.0)
    );
    assert_eq!(r.summary.llm_requests, 18, "every chunk asked twice");
    assert_eq!(r.summary.chunks_validated, 9, "one result per chunk");
    assert!(r.summary.tokens_wasted > 0, "the twins' tokens bought nothing");
    // The rate is checked.
    let bad = Scenario::parse(
        &format!("{}\n", include_str!("../../scenarios/baseline.toml")).replace(
            "[params]",
            "[strategies.stepfn]\nexpress_duplicate_rate = 1.5\n[params]",
        ),
        "bad",
    )
    .expect("the scenario parses; the strategy checks its own table");
    let err = strategies::build("stepfn", &bad).err().expect("refused").to_string();
    assert!(
        err.contains("express_duplicate_rate") || err.contains("[0, 1]"),
        "{err}"
    );
}

#[test]
fn a_lambda_past_its_timeout_is_stopped_and_fails() {
    // A 1 s function timeout (Lambda's shortest) against 1 s LLM calls plus the handler's own
    // 20 ms: every validator is stopped (Sandbox.Timedout, a task failure its retrier tries
    // twice more), so every file fails; the stopped calls are billed but bought nothing.
    let r = run(&scenario("[strategies.stepfn.lambda]\ntimeout = \"1s\"\n"));
    assert_eq!(r.summary.files_failed, 3);
    assert_eq!(r.summary.chunks_validated, 0);
    assert_eq!(r.summary.llm_requests, 9 * 3, "each chunk tried 3 times");
}
