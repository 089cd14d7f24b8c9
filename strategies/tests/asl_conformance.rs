//! ASL conformance: for each state type, field, error name and intrinsic, a definition, an input,
//! scripted task outcomes, and the output or error, history and simulated time AWS documents
//! (AWS Step Functions developer guide: the state pages, "Processing input and output", "Handling
//! errors", "Intrinsic functions"; the examples there are used where they exist).

use serde_json::{Value, json};
use strategies::asl::exec::{self, Options, Outcome};
use strategies::asl::script::ScriptedRunner;

/// Runs `def` on `input` in paused time with `script` (ARN=OUTCOME;…).
fn run(def: Value, input: Value, script: &[&str]) -> Outcome {
    let mut runner = ScriptedRunner::new();
    for s in script {
        runner.add(s).expect("a valid script");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    rt.block_on(exec::run(&def, input, &runner, &Options::default()))
        .unwrap_or_else(|problems| panic!("the definition does not check: {problems:#?}"))
}

fn kinds(o: &Outcome) -> Vec<&str> {
    o.history.iter().map(|e| e.kind.as_str()).collect()
}

fn ok(o: &Outcome) -> &Value {
    assert_eq!(o.status, "SUCCEEDED", "{:?}: {:?}", o.error, o.cause);
    o.output.as_ref().expect("an output")
}

fn failed(o: &Outcome) -> (String, String) {
    assert_eq!(o.status, "FAILED", "output {:?}", o.output);
    (o.error.clone().expect("an error"), o.cause.clone().expect("a cause"))
}

fn pair(error: &str, cause: &str) -> (String, String) {
    (error.to_owned(), cause.to_owned())
}

#[test]
fn pass_with_result_and_result_path_adds_to_the_input() {
    // The developer guide's Pass example: Result placed at $.coords.
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Pass",
        "Result": {"x-datum": 0.381018, "y-datum": 622.2269926397355}, "ResultPath": "$.coords", "End": true}}});
    let o = run(def, json!({"georefOf": "Home"}), &[]);
    assert_eq!(
        ok(&o),
        &json!({"georefOf": "Home", "coords": {"x-datum": 0.381018, "y-datum": 622.2269926397355}})
    );
    assert_eq!(
        kinds(&o),
        [
            "ExecutionStarted",
            "PassStateEntered",
            "PassStateExited",
            "ExecutionSucceeded"
        ]
    );
    assert_eq!(o.elapsed_s, 0.0);
}

#[test]
fn input_path_parameters_result_selector_result_path_output_path_compose_in_order() {
    // "Processing input and output": the task sees $.lambda after InputPath, its Parameters
    // add the context's state name; ResultSelector keeps one field; ResultPath puts it under
    // $.taskresult of the raw input; OutputPath keeps that part.
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f",
        "InputPath": "$.lambda",
        "Parameters": {"who.$": "$.who", "state.$": "$$.State.Name", "fixed": 1},
        "ResultSelector": {"greeting.$": "$.Payload.greeting"},
        "ResultPath": "$.taskresult",
        "OutputPath": "$.taskresult", "End": true}}});
    let o = run(
        def,
        json!({"comment": "x", "lambda": {"who": "AWS Step Functions"}}),
        &["arn:aws:lambda:us-east-1:1:function:f={\"Payload\": {\"greeting\": \"Hello\", \"noise\": 1}}"],
    );
    assert_eq!(ok(&o), &json!({"greeting": "Hello"}));
    let scheduled = &o.history[2];
    assert_eq!(scheduled.kind, "LambdaFunctionScheduled");
    let sent: Value = serde_json::from_str(
        scheduled.details["lambdaFunctionScheduledEventDetails"]["input"]
            .as_str()
            .expect("input"),
    )
    .expect("JSON");
    assert_eq!(sent, json!({"who": "AWS Step Functions", "state": "T", "fixed": 1}));
}

#[test]
fn null_paths_discard_input_result_or_output() {
    // InputPath null: the task gets {}; ResultPath null: the output is the raw input;
    // OutputPath null: the output is {}.
    let def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": "r", "InputPath": null, "ResultPath": null, "Next": "B"},
        "B": {"Type": "Pass", "OutputPath": null, "End": true}}});
    let o = run(def.clone(), json!({"keep": true}), &["r=echo"]);
    assert_eq!(ok(&o), &json!({}));
    let def2 = json!({"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": "r", "InputPath": null, "ResultPath": null, "End": true}}});
    assert_eq!(
        ok(&run(def2, json!({"keep": true}), &["r={\"x\":1}"])),
        &json!({"keep": true})
    );
}

#[test]
fn choice_picks_the_first_matching_rule_and_falls_back_to_default() {
    let def = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Default": "Other", "Choices": [
            {"Not": {"Variable": "$.type", "StringEquals": "Private"}, "Next": "Public"},
            {"And": [{"Variable": "$.value", "IsPresent": true}, {"Variable": "$.value", "NumericGreaterThanEquals": 20},
                     {"Variable": "$.value", "NumericLessThan": 30}], "Next": "ValueInTwenties"},
            {"Variable": "$.when", "TimestampLessThanPath": "$.deadline", "Next": "Early"},
            {"Variable": "$.name", "StringMatches": "log-*.txt", "Next": "Log"}]},
        "Public": {"Type": "Pass", "Result": "public", "End": true},
        "ValueInTwenties": {"Type": "Pass", "Result": "twenties", "End": true},
        "Early": {"Type": "Pass", "Result": "early", "End": true},
        "Log": {"Type": "Pass", "Result": "log", "End": true},
        "Other": {"Type": "Pass", "Result": "other", "End": true}}});
    let cases = [
        (json!({"type": "Public"}), "public"),
        (json!({"type": "Private", "value": 25}), "twenties"),
        (
            json!({"type": "Private", "value": 35, "when": "2026-01-01T00:00:00Z", "deadline": "2026-01-01T01:00:00+00:30"}),
            "early",
        ),
        (
            json!({"type": "Private", "when": "2026-01-02T00:00:00Z", "deadline": "2026-01-01T00:00:00Z", "name": "log-7.txt"}),
            "log",
        ),
        (
            json!({"type": "Private", "value": 31, "when": "2026-01-02T00:00:00Z", "deadline": "2026-01-01T00:00:00Z", "name": "x"}),
            "other",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(ok(&run(def.clone(), input.clone(), &[])), &json!(want), "{input}");
    }
}

#[test]
fn a_choice_that_matches_nothing_without_default_fails_with_no_choice_matched() {
    let def = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "D"}]},
        "D": {"Type": "Succeed"}}});
    assert_eq!(failed(&run(def, json!({"n": 2}), &[])).0, "States.NoChoiceMatched");
}

#[test]
fn a_comparison_on_a_missing_variable_is_a_runtime_error() {
    // As AWS: a rule is evaluated only when the ones before it did not match, and a Variable
    // that selects nothing is an error, not a false.
    let def = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Default": "D", "Choices": [{"Variable": "$.missing", "NumericEquals": 1, "Next": "D"}]},
        "D": {"Type": "Succeed"}}});
    let (error, cause) = failed(&run(def, json!({}), &[]));
    assert_eq!(error, "States.Runtime");
    assert!(cause.contains("$.missing"), "{cause}");
}

#[test]
fn wait_takes_seconds_paths_and_timestamps_in_simulated_time() {
    // Seconds 10, then SecondsPath 5, then a Timestamp 30 s after the start (15 s later).
    let def = json!({"StartAt": "W1", "States": {
        "W1": {"Type": "Wait", "Seconds": 10, "Next": "W2"},
        "W2": {"Type": "Wait", "SecondsPath": "$.s", "Next": "W3"},
        "W3": {"Type": "Wait", "Timestamp": "2026-01-01T00:00:30Z", "Next": "W4"},
        "W4": {"Type": "Wait", "TimestampPath": "$.past", "End": true}}});
    let o = run(def, json!({"s": 5, "past": "2025-01-01T00:00:00Z"}), &[]);
    ok(&o);
    assert_eq!(o.elapsed_s, 30.0);
    let exited: Vec<u64> = o
        .history
        .iter()
        .filter(|e| e.kind == "WaitStateExited")
        .map(|e| e.timestamp_ms)
        .collect();
    assert_eq!(exited, vec![10_000, 15_000, 30_000, 30_000]);
}

#[test]
fn succeed_and_fail_end_the_execution() {
    let def = json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "ErrorA", "Cause": "Kaiju attack"}}});
    let o = run(def, json!({}), &[]);
    assert_eq!(failed(&o), pair("ErrorA", "Kaiju attack"));
    assert_eq!(kinds(&o), ["ExecutionStarted", "FailStateEntered", "ExecutionFailed"]);
    let def = json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "ErrorPath": "$.e", "CausePath": "$.c"}}});
    assert_eq!(
        failed(&run(def, json!({"e": "Mine", "c": "why"}), &[])),
        pair("Mine", "why")
    );
    let def = json!({"StartAt": "S", "States": {"S": {"Type": "Succeed", "OutputPath": "$.a"}}});
    assert_eq!(ok(&run(def, json!({"a": 1}), &[])), &json!(1));
}

#[test]
fn retry_waits_interval_times_backoff_and_then_succeeds() {
    // Two failures, then success: waits of 2 s and 2 × 1.5 = 3 s, and the task's own 1 s each
    // time: 1 + 2 + 1 + 3 + 1 = 8 s. $$.State.RetryCount reaches the task as 0, 1, 2.
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "r",
        "Parameters": {"retry.$": "$$.State.RetryCount"},
        "Retry": [{"ErrorEquals": ["Other"], "MaxAttempts": 9}, {"ErrorEquals": ["Busy"], "IntervalSeconds": 2, "BackoffRate": 1.5, "MaxAttempts": 2}],
        "End": true}}});
    let o = run(
        def,
        json!({}),
        &["r=delay:1s:error:Busy;delay:1s:error:Busy;delay:1s:echo"],
    );
    assert_eq!(ok(&o), &json!({"retry": 2}));
    assert_eq!(o.elapsed_s, 8.0);
    assert_eq!(kinds(&o).iter().filter(|k| **k == "TaskFailed").count(), 2);
}

#[test]
fn retries_exhausted_go_to_the_catcher_with_error_and_cause_at_its_result_path() {
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r",
              "Retry": [{"ErrorEquals": ["Busy"], "MaxAttempts": 1}],
              "Catch": [{"ErrorEquals": ["Nope"], "Next": "Wrong"}, {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Handled"}],
              "End": true},
        "Wrong": {"Type": "Fail", "Error": "wrong catcher"},
        "Handled": {"Type": "Pass", "End": true}}});
    let o = run(def, json!({"in": 1}), &["r=error:Busy:too many"]);
    assert_eq!(
        ok(&o),
        &json!({"in": 1, "error": {"Error": "Busy", "Cause": "too many"}})
    );
    // One retry after the default 1 s.
    assert_eq!(o.elapsed_s, 1.0);
}

#[test]
fn max_attempts_zero_never_retries_and_task_failed_does_not_match_a_timeout() {
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "r", "TimeoutSeconds": 5,
        "Retry": [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 3}],
        "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "TimedOut"}], "End": true},
        "TimedOut": {"Type": "Pass", "End": true}}});
    let o = run(def, json!({}), &["r=delay:60s:echo"]);
    assert_eq!(
        ok(&o),
        &json!({"Error": "States.Timeout", "Cause": "The task 'T' timed out after 5 s."})
    );
    assert_eq!(o.elapsed_s, 5.0, "no retry: TaskFailed does not match States.Timeout");
    assert!(kinds(&o).contains(&"TaskTimedOut"));
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "r",
        "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 0}], "End": true}}});
    let o = run(def, json!({}), &["r=error:Boom"]);
    assert_eq!(failed(&o).0, "Boom");
    assert_eq!(kinds(&o).iter().filter(|k| **k == "TaskFailed").count(), 1);
}

#[test]
fn states_all_does_not_catch_a_runtime_error() {
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "InputPath": "$.missing",
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "H"}], "End": true},
        "H": {"Type": "Succeed"}}});
    let (error, cause) = failed(&run(def, json!({}), &[]));
    assert_eq!(error, "States.Runtime");
    // AWS's wording: where, then which path for which field, and the input.
    assert_eq!(
        cause,
        "An error occurred while executing the state 'T' (entered at the event id #2). \
         The JSONPath '$.missing' specified for the field 'InputPath' could not be found in the input '{}'"
    );
}

#[test]
fn a_parameter_path_that_selects_nothing_names_its_field() {
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"address.$": "$.application.address"}, "End": true}}});
    let (error, cause) = failed(&run(def, json!({"flagged": false}), &[]));
    assert_eq!(error, "States.Runtime");
    assert_eq!(
        cause,
        "An error occurred while executing the state 'P' (entered at the event id #2). \
         The JSONPath '$.application.address' specified for the field 'address.$' could not be found in the input '{\"flagged\":false}'"
    );
}

#[test]
fn result_path_into_a_non_object_is_a_result_path_match_failure() {
    let def =
        json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": 1, "ResultPath": "$.a.b", "End": true}}});
    assert_eq!(
        failed(&run(def, json!({"a": "text"}), &[])).0,
        "States.ResultPathMatchFailure"
    );
}

#[test]
fn parallel_runs_branches_at_once_and_collects_their_outputs_in_order() {
    // Branch one takes 3 s, branch two 2 s: together 3 s, outputs in branch order.
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
        {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "slow", "End": true}}},
        {"StartAt": "B", "States": {"B": {"Type": "Wait", "Seconds": 2, "Next": "B2"}, "B2": {"Type": "Pass", "Result": "b", "End": true}}}]}}});
    let o = run(def, json!({"x": 1}), &["slow=delay:3s:\"a\""]);
    assert_eq!(ok(&o), &json!(["a", "b"]));
    assert_eq!(o.elapsed_s, 3.0);
    assert!(kinds(&o).contains(&"ParallelStateStarted") && kinds(&o).contains(&"ParallelStateSucceeded"));
}

#[test]
fn a_failing_branch_fails_the_parallel_state_with_its_error() {
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true,
        "Catch": [{"ErrorEquals": ["Custom"], "Next": "H"}],
        "Branches": [{"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Custom", "Cause": "c"}}},
                     {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 100, "End": true}}}]},
        "H": {"Type": "Pass", "End": true}}});
    let o = run(def, json!({}), &[]);
    assert_eq!(ok(&o), &json!({"Error": "Custom", "Cause": "c"}));
    assert_eq!(o.elapsed_s, 0.0, "the other branch is stopped at once");
}

#[test]
fn map_runs_items_up_to_max_concurrency_and_keeps_their_order() {
    // Five items of 1 s each, two at a time: 3 s. ItemSelector sees $$.Map.Item.
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
        "ItemSelector": {"index.$": "$$.Map.Item.Index", "value.$": "$$.Map.Item.Value", "batch.$": "$.batch"},
        "ItemProcessor": {"StartAt": "V", "States": {"V": {"Type": "Task", "Resource": "v", "End": true}}},
        "End": true}}});
    let o = run(
        def,
        json!({"batch": "b1", "items": ["a", "b", "c", "d", "e"]}),
        &["v=delay:1s:echo"],
    );
    let out = ok(&o).as_array().expect("an array").clone();
    assert_eq!(out.len(), 5);
    assert_eq!(out[3], json!({"index": 3, "value": "d", "batch": "b1"}));
    assert_eq!(o.elapsed_s, 3.0);
    assert_eq!(kinds(&o).iter().filter(|k| **k == "MapIterationStarted").count(), 5);
}

#[test]
fn map_max_concurrency_zero_runs_at_most_forty_at_once() {
    // 80 items of 1 s each, MaxConcurrency 0: inline Map runs 40 at a time, so 2 s.
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": 0,
        "ItemProcessor": {"StartAt": "V", "States": {"V": {"Type": "Task", "Resource": "v", "End": true}}}, "End": true}}});
    let items: Vec<Value> = (0..80).map(|i| json!(i)).collect();
    let o = run(def, Value::Array(items), &["v=delay:1s:echo"]);
    ok(&o);
    assert_eq!(o.elapsed_s, 2.0);
}

#[test]
fn map_failure_fails_the_state_unless_tolerated() {
    let map = |extra: Value| {
        let mut m = json!({"Type": "Map", "ItemProcessor": {"StartAt": "C", "States": {
            "C": {"Type": "Choice", "Default": "Ok", "Choices": [{"Variable": "$", "NumericGreaterThan": 6, "Next": "Bad"}]},
            "Ok": {"Type": "Succeed"}, "Bad": {"Type": "Fail", "Error": "TooBig", "Cause": "over 6"}}}, "End": true});
        for (k, v) in extra.as_object().expect("an object") {
            m[k] = v.clone();
        }
        json!({"StartAt": "M", "States": {"M": m}})
    };
    let items = json!([1, 2, 7, 8, 3]);
    assert_eq!(failed(&run(map(json!({})), items.clone(), &[])).0, "TooBig");
    // Two of five failed: 40% is tolerated at 50%, not at 30%.
    let o = run(map(json!({"ToleratedFailurePercentage": 50})), items.clone(), &[]);
    assert_eq!(ok(&o)[2], json!({"Error": "TooBig", "Cause": "over 6"}));
    assert_eq!(
        failed(&run(map(json!({"ToleratedFailurePercentage": 30})), items.clone(), &[])).0,
        "States.ExceedToleratedFailureThreshold"
    );
    assert_eq!(
        failed(&run(map(json!({"ToleratedFailureCount": 1})), items, &[])).0,
        "States.ExceedToleratedFailureThreshold"
    );
}

#[test]
fn intrinsics_work_inside_parameters() {
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true, "Parameters": {
        "msg.$": "States.Format('Hello, my name is {}.', $.name)",
        "parts.$": "States.ArrayPartition($.list, 2)",
        "len.$": "States.ArrayLength($.list)",
        "json.$": "States.StringToJson($.s)",
        "exec.$": "$$.Execution.Name"}}}});
    let o = run(def, json!({"name": "Arnav", "list": [1, 2, 3], "s": "{\"a\":1}"}), &[]);
    assert_eq!(
        ok(&o),
        &json!({"msg": "Hello, my name is Arnav.", "parts": [[1, 2], [3]], "len": 3, "json": {"a": 1}, "exec": "execution"})
    );
}

#[test]
fn an_execution_timeout_fails_it_with_states_timeout() {
    let def =
        json!({"TimeoutSeconds": 5, "StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "End": true}}});
    let o = run(def, json!({}), &[]);
    assert_eq!(failed(&o).0, "States.Timeout");
    assert_eq!(o.elapsed_s, 5.0);
    assert_eq!(kinds(&o).last(), Some(&"ExecutionTimedOut"));
}

#[test]
fn an_output_over_256_kib_is_a_data_limit_exceeded() {
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "big",
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "H"}], "End": true}, "H": {"Type": "Succeed"}}});
    let big = format!("big=\"{}\"", "x".repeat(300 * 1024));
    assert_eq!(failed(&run(def, json!({}), &[&big])).0, "States.DataLimitExceeded");
}

#[test]
fn history_ids_chain_within_each_thread() {
    // Every event's previous id is an earlier event; the first is 0; in a Map, each
    // iteration's chain starts at MapStateStarted.
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map",
        "ItemProcessor": {"StartAt": "V", "States": {"V": {"Type": "Task", "Resource": "v", "End": true}}}, "End": true}}});
    let o = run(def, json!([1, 2]), &[]);
    ok(&o);
    for (i, e) in o.history.iter().enumerate() {
        assert_eq!(e.id, i as u64 + 1);
        assert!(e.previous_event_id < e.id);
    }
    let started = o
        .history
        .iter()
        .find(|e| e.kind == "MapStateStarted")
        .expect("started")
        .id;
    let firsts: Vec<u64> = o
        .history
        .iter()
        .filter(|e| e.kind == "MapIterationStarted")
        .map(|e| e.previous_event_id)
        .collect();
    assert_eq!(firsts, vec![started, started]);
}

#[test]
fn the_design_documents_two_state_reference_runs_as_written() {
    // DESIGN.md's definition, verbatim: the controller's answer is the validator's input.
    let def: Value = serde_json::from_str(include_str!("../../scenarios/asl/reference.asl.json")).expect("JSON");
    let o = run(
        def,
        json!({"file": "f1"}),
        &[
            "arn:aws:lambda:region:account:function:TPMController=delay:200ms:{\"file\": \"f1\", \"maxConcurrency\": 4}",
            "arn:aws:lambda:region:account:function:DynamicValidator=delay:3s:{\"valid\": true}",
        ],
    );
    assert_eq!(ok(&o), &json!({"valid": true}));
    assert_eq!(o.elapsed_s, 3.2);
}

#[test]
fn the_shipped_validation_pipeline_maps_chunks_at_the_controllers_concurrency_and_retries_429s() {
    // Four chunks at the controller's concurrency of 2, each call 1 s, one of them throttled once
    // (FULL jitter on a 2 s interval: between 0 and 2 s more): 2 s plus that wait at most.
    let def: Value = serde_json::from_str(include_str!("../../scenarios/asl/validation.asl.json")).expect("JSON");
    let o = run(
        def,
        json!({"file": "f1", "chunks": [0, 1, 2, 3]}),
        &[
            "arn:aws:lambda:us-east-1:123456789012:function:tpm-controller={\"maxConcurrency\": 2}",
            "arn:aws:lambda:us-east-1:123456789012:function:validate-chunk=delay:1s:error:RateLimited:429;delay:1s:{\"verdict\": \"valid\"}",
        ],
    );
    let out = ok(&o);
    assert_eq!(
        out["results"],
        json!([{"verdict": "valid"}, {"verdict": "valid"}, {"verdict": "valid"}, {"verdict": "valid"}])
    );
    assert_eq!(out["concurrency"], json!({"value": 2}));
    assert!((3.0..=5.0).contains(&o.elapsed_s), "{}", o.elapsed_s);
    // A validator that keeps failing ends in the Fail state with the Map's error.
    let def: Value = serde_json::from_str(include_str!("../../scenarios/asl/validation.asl.json")).expect("JSON");
    let o = run(
        def,
        json!({"file": "f1", "chunks": [0]}),
        &[
            "arn:aws:lambda:us-east-1:123456789012:function:tpm-controller={\"maxConcurrency\": 2}",
            "arn:aws:lambda:us-east-1:123456789012:function:validate-chunk=error:InvalidChunk:bad bytes",
        ],
    );
    assert_eq!(failed(&o), pair("InvalidChunk", "bad bytes"));
}

#[test]
fn what_the_interpreter_does_not_run_fails_clearly_instead_of_being_ignored() {
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "Parameters": {"Bucket": "b", "Key": "k"}},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                          "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}}}});
    let (error, cause) = failed(&run(def, json!({}), &[]));
    assert_eq!(error, "States.Runtime");
    assert!(cause.contains("Distributed Map"), "{cause}");
}

/// Runs `def`, then redrives it while it fails (at most `redrives` times), with one runner.
fn run_with_redrives(def: Value, input: Value, script: &[&str], redrives: u32) -> (Vec<Outcome>, ScriptedRunner) {
    let mut runner = ScriptedRunner::new();
    for s in script {
        runner.add(s).expect("a valid script");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let stop = tokio_util::sync::CancellationToken::new();
    let outcomes = rt.block_on(async {
        let opts = Options::default();
        let mut all = vec![exec::run(&def, input, &runner, &opts).await.expect("checks")];
        for _ in 0..redrives {
            let Some(from) = all.last().and_then(|o| o.redrive.clone()) else {
                break;
            };
            all.push(exec::redrive(&def, from, &runner, &opts, &stop).await);
        }
        all
    });
    (outcomes, runner)
}

#[test]
fn a_redrive_resumes_at_the_failed_state_with_its_input() {
    // Prepare runs once; T fails, then succeeds on the redrive, which starts at T (no second
    // Prepare) with RedriveCount 1, and its history continues the ids of the failed run.
    let def = json!({"StartAt": "Prepare", "States": {
        "Prepare": {"Type": "Pass", "Result": "ready", "ResultPath": "$.prep", "Next": "T"},
        "T": {"Type": "Task", "Resource": "t", "Parameters": {"redrives.$": "$$.Execution.RedriveCount", "prep.$": "$.prep"}, "End": true}}});
    let (o, runner) = run_with_redrives(def, json!({}), &["t=error:Flaky:once;echo"], 1);
    assert_eq!(failed(&o[0]), pair("Flaky", "once"));
    assert_eq!(ok(&o[1]), &json!({"redrives": 1, "prep": "ready"}));
    assert_eq!(o[1].history[0].kind, "ExecutionRedriven");
    assert_eq!(o[1].history[0].id, o[0].history.len() as u64 + 1);
    assert!(
        !kinds(&o[1]).contains(&"PassStateEntered"),
        "Prepare does not run again"
    );
    assert_eq!(runner.calls().len(), 2);
}

#[test]
fn a_redriven_map_reruns_only_its_unsuccessful_iterations() {
    // One item at a time: items 0 and 1 succeed, item 2 fails and fails the Map (item 3 never
    // starts). The redrive runs items 2 and 3 only, and the output has all four in order.
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": 1,
        "ItemProcessor": {"StartAt": "V", "States": {"V": {"Type": "Task", "Resource": "v", "End": true}}}, "End": true}}});
    let (o, runner) = run_with_redrives(def, json!([10, 11, 12, 13]), &["v=echo;echo;error:Bad;echo"], 1);
    assert_eq!(failed(&o[0]).0, "Bad");
    assert_eq!(ok(&o[1]), &json!([10, 11, 12, 13]));
    let inputs: Vec<Value> = runner.calls().into_iter().map(|c| c.input).collect();
    assert_eq!(inputs, vec![json!(10), json!(11), json!(12), json!(12), json!(13)]);
}

#[test]
fn a_redriven_parallel_reruns_only_its_failed_branches() {
    // Branch A succeeds, branch B fails once: the redrive runs B only, and the output keeps A's.
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
        {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "a", "End": true}}},
        {"StartAt": "B", "States": {"B": {"Type": "Task", "Resource": "b", "End": true}}}]}}});
    let (o, runner) = run_with_redrives(def, json!({"x": 1}), &["a=\"a\"", "b=error:Flaky;\"b\""], 1);
    assert_eq!(failed(&o[0]).0, "Flaky");
    assert_eq!(ok(&o[1]), &json!(["a", "b"]));
    let resources: Vec<String> = runner.calls().into_iter().map(|c| c.resource).collect();
    assert_eq!(resources.iter().filter(|r| *r == "a").count(), 1, "{resources:?}");
    assert_eq!(resources.iter().filter(|r| *r == "b").count(), 2, "{resources:?}");
}

#[test]
fn a_task_without_heartbeats_times_out_at_heartbeat_seconds() {
    // HeartbeatSeconds 10 under TimeoutSeconds 60: a task that runs 30 s and never heartbeats
    // fails at 10 s with States.Timeout, which a catcher may name States.HeartbeatTimeout.
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "TimeoutSeconds": 60, "HeartbeatSeconds": 10,
              "Catch": [{"ErrorEquals": ["States.HeartbeatTimeout"], "Next": "H"}], "End": true},
        "H": {"Type": "Pass", "End": true}}});
    let o = run(def, json!({}), &["r=delay:30s:echo"]);
    assert_eq!(ok(&o)["Error"], "States.Timeout");
    assert_eq!(o.elapsed_s, 10.0);
    // A plain timeout is no heartbeat timeout.
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "TimeoutSeconds": 5,
              "Catch": [{"ErrorEquals": ["States.HeartbeatTimeout"], "Next": "H"}], "End": true},
        "H": {"Type": "Pass", "End": true}}});
    assert_eq!(failed(&run(def, json!({}), &["r=delay:30s:echo"])).0, "States.Timeout");
}
