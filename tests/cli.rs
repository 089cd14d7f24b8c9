//! The command line, run in-process: determinism of whole reports, the report folder, and errors.

use std::path::PathBuf;

use clap::{CommandFactory, Parser};
use orchbench::{Cli, builtin, execute, load_scenario, run_scenario};

fn run_cli(args: &[&str]) -> anyhow::Result<(u8, String)> {
    let cli = Cli::try_parse_from(std::iter::once("orchbench").chain(args.iter().copied()))?;
    let mut out = Vec::new();
    let code = execute(cli, &mut out)?;
    Ok((code, String::from_utf8(out).expect("output is UTF-8")))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("orchbench-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// report.json with `wall_time_s` zeroed: the one field allowed to differ between identical runs.
fn canonical(seed: Option<u64>, name: &str) -> String {
    let mut s = load_scenario(name).expect("built-in");
    if let Some(seed) = seed {
        s.seed = seed;
    }
    let mut report = run_scenario(&s, &[], false).expect("runs");
    for run in &mut report.runs {
        run.summary.wall_time_s = 0.0;
    }
    reports::to_json(&report)
}

#[test]
fn the_same_seed_gives_a_byte_identical_report_and_another_seed_differs() {
    for (name, _) in builtin::BUILTIN.iter().filter(|(n, _)| *n != "million") {
        let a = canonical(None, name);
        let b = canonical(None, name);
        assert!(a == b, "{name}: two runs with the same seed differ");
        let c = canonical(Some(4242), name);
        assert_ne!(a, c, "{name}: a different seed gave the same report");
    }
}

#[test]
fn run_writes_the_report_folder_and_prints_the_table() {
    let dir = temp_dir("run");
    let (code, out) = run_cli(&["run", "tpm-squeeze", "--out", dir.to_str().expect("utf-8 path")]).expect("runs");
    assert_eq!(code, 0);
    assert!(
        out.contains("scenario tpm-squeeze (seed 7)") && out.contains("fixed"),
        "{out}"
    );
    let report = reports::read_json(&dir.join("report.json")).expect("a valid report.json");
    assert_eq!(report.schema_version, 1);
    assert_eq!(report.runs.len(), strategies::NAMES.len());
    let csv = std::fs::read_to_string(dir.join("timeseries.csv")).expect("timeseries.csv");
    let rows = csv.lines().count() - 1;
    let expected: usize = report.runs.iter().map(|r| r.timeseries.len()).sum();
    assert_eq!(rows, expected, "one CSV row per strategy and second");
    assert!(csv.starts_with(reports::csv::HEADER));
}

#[test]
fn json_flag_prints_the_report_with_the_pinned_fields() {
    let dir = temp_dir("json");
    let (_, out) = run_cli(&[
        "run",
        "azure",
        "--seed",
        "5",
        "--json",
        "--out",
        dir.to_str().expect("utf-8"),
    ])
    .expect("runs");
    let v: serde_json::Value = serde_json::from_str(&out).expect("stdout is the JSON report");
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["scenario"]["seed"], 5, "--seed overrides the scenario's seed");
    let summary = &v["runs"][0]["summary"];
    for field in [
        "makespan_s",
        "files_total",
        "files_completed",
        "files_failed",
        "files_rejected",
        "files_cancelled",
        "chunks_total",
        "chunks_validated",
        "llm_requests",
        "llm_throttled",
        "llm_errors",
        "retries",
        "tokens_billed",
        "tokens_wasted",
        "throughput_tokens_per_min",
        "tpm_limit",
        "ideal_makespan_s",
        "efficiency",
        "wall_time_s",
    ] {
        assert!(summary.get(field).is_some(), "summary lacks {field}");
    }
    for field in ["latency_ms", "file_latency_s"] {
        for p in ["p50", "p90", "p99", "max"] {
            assert!(summary[field].get(p).is_some(), "{field} lacks {p}");
        }
    }
    assert_eq!(v["runs"][0]["strategy"], "fixed");
    assert_eq!(v["runs"][0]["mode"], "simulated");
}

#[test]
fn a_scenario_file_path_runs_like_a_built_in() {
    let dir = temp_dir("path");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("mine.toml");
    std::fs::write(&path, builtin::get("tenants").expect("built in")).expect("write");
    let (code, out) = run_cli(&[
        "run",
        path.to_str().expect("utf-8"),
        "-s",
        "fixed",
        "--out",
        dir.to_str().expect("utf-8"),
    ])
    .expect("runs");
    assert_eq!(code, 0);
    assert!(out.contains("scenario tenants"), "{out}");
}

#[test]
fn errors_name_what_is_wrong() {
    let e = run_cli(&["run", "no-such-scenario"])
        .expect_err("unknown scenario")
        .to_string();
    assert!(e.contains("no-such-scenario") && e.contains("baseline"), "{e}");
    let e = format!(
        "{:#}",
        run_cli(&["run", "baseline", "--strategy", "magic"]).expect_err("unknown strategy")
    );
    assert!(e.contains("magic") && e.contains("fixed"), "{e}");
    let dir = temp_dir("bad");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "name = \"x\"\n[workload]\nfiles = 1\nbogus = 2\n").expect("write");
    let e = run_cli(&["run", path.to_str().expect("utf-8")])
        .expect_err("invalid file")
        .to_string();
    assert!(
        e.contains("bad.toml") && e.contains("line 4") && e.contains("bogus"),
        "{e}"
    );
}

#[test]
fn absurd_command_line_numbers_are_refused_briefly() {
    // `--time-scale 1e308` panicked converting a scaled timeout to a Duration; `--values 1e308`
    // printed all 309 digits. Both are now refused before anything runs, in a short message.
    let e = format!(
        "{:#}",
        run_cli(&["run", "baseline", "--live", "--time-scale", "1e308"]).expect_err("refused")
    );
    assert!(e.contains("--time-scale must lie in [0.001, 1000]"), "{e}");
    let e = format!(
        "{:#}",
        run_cli(&["sweep", "baseline", "--param", "tpm", "--values", "1e308"]).expect_err("refused")
    );
    assert!(e.contains("cannot set tpm to 1e308") && e.len() < 200, "{e}");
    let e = format!(
        "{:#}",
        run_cli(&[
            "sweep",
            "baseline",
            "--param",
            "max-parallelism",
            "--values",
            "4294967295"
        ])
        .expect_err("refused")
    );
    assert!(e.contains("[1, 100000]"), "{e}");
}

#[test]
fn scenarios_and_strategies_are_listed() {
    let (_, out) = run_cli(&["scenarios"]).expect("lists");
    for (name, _) in builtin::BUILTIN {
        assert!(out.lines().any(|l| l.starts_with(name)), "{name} missing from:\n{out}");
    }
    let (_, out) = run_cli(&["strategies"]).expect("lists");
    assert!(out.starts_with("fixed"), "{out}");
}

#[test]
fn every_command_has_complete_help() {
    Cli::command().debug_assert();
    for cmd in Cli::command().get_subcommands() {
        assert!(cmd.get_about().is_some(), "{} has no help text", cmd.get_name());
        for arg in cmd.get_arguments() {
            assert!(
                arg.get_help().is_some(),
                "{} --{} has no help text",
                cmd.get_name(),
                arg.get_id()
            );
        }
    }
}

fn schema_errors(path: &std::path::Path) -> Vec<String> {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/reports/report.schema.json")).expect("schema"),
    )
    .expect("schema is JSON");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("report")).expect("report is JSON");
    let v = jsonschema::validator_for(&schema).expect("valid schema");
    v.iter_errors(&report)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

#[test]
fn every_report_the_tool_writes_validates_against_the_schema() {
    for (name, _) in builtin::BUILTIN.iter().filter(|(n, _)| *n != "million") {
        let dir = temp_dir(&format!("schema-{name}"));
        run_cli(&["run", name, "--out", dir.to_str().expect("utf-8")]).expect("runs");
        let errors = schema_errors(&dir.join("report.json"));
        assert!(errors.is_empty(), "{name}: {errors:#?}");
        for f in ["report.html", "report.md", "timeseries.csv"] {
            assert!(dir.join(f).exists(), "{name}: {f} written");
        }
    }
    let dir = temp_dir("schema-sweep");
    let (_, out) = run_cli(&[
        "sweep",
        "cancel",
        "--param",
        "max-parallelism",
        "--values",
        "2,6",
        "--out",
        dir.to_str().expect("utf-8"),
    ])
    .expect("sweeps");
    assert!(out.contains("fixed @ 2") && out.contains("fixed @ 6"), "{out}");
    let errors = schema_errors(&dir.join("report.json"));
    assert!(errors.is_empty(), "sweep: {errors:#?}");
}

#[test]
fn sweep_rejects_a_parameter_it_cannot_vary() {
    let e = run_cli(&["sweep", "cancel", "--param", "colour", "--values", "1"])
        .expect_err("unknown param")
        .to_string();
    assert!(e.contains("colour") && e.contains("max-parallelism"), "{e}");
    let e = run_cli(&["sweep", "cancel", "--param", "max-parallelism", "--values", "2.5"])
        .expect_err("not whole")
        .to_string();
    assert!(e.contains("whole number"), "{e}");
}

#[test]
fn regress_exits_one_on_a_regression_and_zero_otherwise() {
    let base = temp_dir("regress-base");
    let slow = temp_dir("regress-slow");
    run_cli(&["run", "cancel", "--out", base.to_str().expect("utf-8")]).expect("runs");
    // The same scenario and seed with fewer workers: slower, so throughput and makespan regress.
    std::fs::create_dir_all(&slow).expect("dir");
    let text = builtin::get("cancel")
        .expect("built in")
        .replace("max-parallelism = 8", "max-parallelism = 3");
    std::fs::write(slow.join("cancel.toml"), text).expect("write");
    run_cli(&[
        "run",
        slow.join("cancel.toml").to_str().expect("utf-8"),
        "--out",
        slow.to_str().expect("utf-8"),
    ])
    .expect("runs");
    let (b, s) = (base.join("report.json"), slow.join("report.json"));
    let (code, out) = run_cli(&["regress", b.to_str().expect("utf-8"), b.to_str().expect("utf-8")]).expect("compares");
    assert_eq!(code, 0, "{out}");
    let (code, out) = run_cli(&[
        "regress",
        b.to_str().expect("utf-8"),
        s.to_str().expect("utf-8"),
        "--max-drop",
        "5%",
    ])
    .expect("compares");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("REGRESSED") && out.contains("throughput"), "{out}");
    let (code, _) = run_cli(&[
        "regress",
        b.to_str().expect("utf-8"),
        s.to_str().expect("utf-8"),
        "--metric",
        "429s",
    ])
    .expect("compares");
    assert_eq!(
        code, 0,
        "fewer workers means fewer 429s: watching only 429s, nothing regressed"
    );
}

#[test]
fn a_live_run_against_an_endpoint_nobody_serves_fails_at_once_with_the_cause() {
    // Port 1 on loopback refuses connections. Before this check every strategy retried its
    // transport errors for hours (adaptive's first probe never got an answer); now the run stops
    // before it starts, with an error that names the endpoint and the refusal (exit 2 in main).
    let dir = temp_dir("unreachable");
    let err = run_cli(&[
        "run",
        "tpm-squeeze",
        "--strategy",
        "adaptive",
        "--live",
        "--endpoint",
        "http://127.0.0.1:1/v1",
        "--out",
        dir.to_str().expect("utf-8 path"),
    ])
    .expect_err("an unreachable endpoint is an error");
    let text = format!("{err:#}");
    assert!(
        text.contains("cannot reach the endpoint http://127.0.0.1:1/v1") && text.contains("onnection refused"),
        "{text}"
    );
    assert!(
        !dir.join("report.json").exists(),
        "no report for a run that never started"
    );
}

#[test]
fn asl_check_lists_every_problem_with_its_path_and_exits_by_the_outcome() {
    // A valid definition exits 0; one with two mistakes exits 1 naming both by JSON path; a
    // missing file is an error (the binary exits 2 on errors).
    let dir = temp_dir("asl-check");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good = dir.join("good.asl.json");
    std::fs::write(
        &good,
        r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Succeed"}}}"#,
    )
    .expect("writes");
    let (code, out) = run_cli(&["asl", "check", good.to_str().expect("utf-8")]).expect("runs");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("a valid state machine"), "{out}");

    let bad = dir.join("bad.asl.json");
    std::fs::write(
        &bad,
        r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}, "B": {"Type": "Wait", "End": true}}}"#,
    )
    .expect("writes");
    let (code, out) = run_cli(&["asl", "check", bad.to_str().expect("utf-8")]).expect("runs");
    assert_eq!(code, 1, "{out}");
    for path in [
        "$.States.A.Next",
        "$.States.B: a Wait needs exactly one of",
        "$.States.B: state `B` cannot be reached",
    ] {
        assert!(out.contains(path), "{path} missing from:\n{out}");
    }

    let missing = dir.join("missing.json");
    let err = run_cli(&["asl", "check", missing.to_str().expect("utf-8")]).expect_err("no such file");
    assert!(err.to_string().contains("cannot read"), "{err}");
}

#[test]
fn asl_run_dry_runs_a_definition_with_scripted_outcomes() {
    // The shipped pipeline on three chunks: the controller says 2 at once, every validation
    // takes 1 s, so 2 s; with --json one object with the documented fields.
    let dir = temp_dir("asl-run");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let input = dir.join("input.json");
    std::fs::write(&input, r#"{"file": "f1", "chunks": [0, 1, 2]}"#).expect("writes");
    let def = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/asl/validation.asl.json");
    let controller = "arn:aws:lambda:us-east-1:123456789012:function:tpm-controller={\"maxConcurrency\": 2}";
    let validator = "arn:aws:lambda:us-east-1:123456789012:function:validate-chunk=delay:1s:{\"verdict\":\"valid\"}";
    let args = [
        "asl",
        "run",
        def,
        "--input",
        input.to_str().expect("utf-8"),
        "--script",
        controller,
        "--script",
        validator,
        "--json",
    ];
    let (code, out) = run_cli(&args).expect("runs");
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["status"], "SUCCEEDED");
    assert_eq!(v["elapsed_s"], 2.0);
    assert_eq!(v["output"]["results"].as_array().map(Vec::len), Some(3));
    assert!(v["error"].is_null() && v["cause"].is_null());
    assert_eq!(v["history"][0]["type"], "ExecutionStarted");

    // A failing validator: exit 1, the error and cause in words, and the history.
    let failing = "arn:aws:lambda:us-east-1:123456789012:function:validate-chunk=error:InvalidChunk:bad bytes";
    let args = [
        "asl",
        "run",
        def,
        "--input",
        input.to_str().expect("utf-8"),
        "--script",
        controller,
        "--script",
        failing,
    ];
    let (code, out) = run_cli(&args).expect("runs");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAILED") && out.contains("error: InvalidChunk") && out.contains("ExecutionFailed"),
        "{out}"
    );

    // A definition with problems cannot run: an error naming them.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"StartAt": "Nope", "States": {"A": {"Type": "Succeed"}}}"#).expect("writes");
    let err = run_cli(&["asl", "run", bad.to_str().expect("utf-8")]).expect_err("does not check");
    assert!(format!("{err:#}").contains("$.StartAt"), "{err:#}");
}

#[test]
fn asl_run_redrives_a_failed_execution_when_asked() {
    // A Map over three items, one at a time, whose second item fails once: the execution
    // fails; with --redrive 1 it continues from the Map (AWS RedriveExecution), reruns only the
    // unsuccessful iterations, and succeeds, with one history from ExecutionStarted to
    // ExecutionSucceeded through ExecutionFailed and ExecutionRedriven, ids in sequence. (A
    // failure caught into a Fail state, as the shipped pipeline does, fails again when
    // redriven: the Fail state is the unsuccessful step.)
    let dir = temp_dir("asl-redrive");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let def = dir.join("map.asl.json");
    std::fs::write(
        &def,
        r#"{"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": 1, "End": true,
            "ItemProcessor": {"StartAt": "V", "States": {"V": {"Type": "Task", "Resource": "v", "End": true}}}}}}"#,
    )
    .expect("writes");
    let input = dir.join("input.json");
    std::fs::write(&input, "[1, 2, 3]").expect("writes");
    let base = [
        "asl",
        "run",
        def.to_str().expect("utf-8"),
        "--input",
        input.to_str().expect("utf-8"),
        "--script",
        "v=echo;error:Bad;echo",
        "--json",
    ];
    let (code, _) = run_cli(&base).expect("runs");
    assert_eq!(code, 1);
    let mut args = base.to_vec();
    args.extend(["--redrive", "1"]);
    let (code, out) = run_cli(&args).expect("runs");
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(v["redrive_count"], 1);
    assert_eq!(v["output"], serde_json::json!([1, 2, 3]));
    let history = v["history"].as_array().expect("history");
    let kinds: Vec<&str> = history.iter().filter_map(|e| e["type"].as_str()).collect();
    for k in [
        "ExecutionStarted",
        "ExecutionFailed",
        "ExecutionRedriven",
        "ExecutionSucceeded",
    ] {
        assert!(kinds.contains(&k), "{k} missing: {kinds:?}");
    }
    // The first run starts items 0 and 1 (1 fails; 2 never starts, one at a time); the redrive
    // starts 1 and 2 only: four in all, item 0 once.
    assert_eq!(kinds.iter().filter(|k| **k == "MapIterationStarted").count(), 2 + 2);
    let ids: Vec<u64> = history.iter().filter_map(|e| e["id"].as_u64()).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "ids continue across the redrive"
    );
}

#[test]
fn a_ca_cert_file_that_holds_no_certificate_is_an_error_naming_it() {
    // Before, a file of garbage added no root and the run went on as if it had: a TLS failure
    // then looked like the endpoint's fault.
    let dir = temp_dir("not-a-cert");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pem = dir.join("garbage.pem");
    std::fs::write(&pem, "not a certificate\n").expect("written");
    let err = run_cli(&[
        "run",
        "baseline",
        "--live",
        "--ca-cert",
        pem.to_str().expect("utf-8 path"),
    ])
    .expect_err("refused before any run");
    let text = format!("{err:#}");
    assert!(
        text.contains("garbage.pem") && text.contains("no certificate"),
        "{text}"
    );
}

#[test]
fn a_sweep_says_which_strategies_the_parameter_did_not_move() {
    // `fixed` never reads `target-tpm`, so its rows were identical and nothing said why;
    // `adaptive` paces to it, so its runs differ and it is not named.
    let dir = temp_dir("inert-sweep");
    let (code, out) = run_cli(&[
        "sweep",
        "baseline",
        "--param",
        "target-tpm",
        "--values",
        "20000,40000",
        "-s",
        "fixed",
        "-s",
        "adaptive",
        "--out",
        dir.to_str().expect("utf-8 path"),
    ])
    .expect("sweeps");
    assert_eq!(code, 0);
    assert!(out.contains("fixed did not respond to `target-tpm`"), "{out}");
    assert!(!out.contains("adaptive did not respond"), "{out}");
    let md = std::fs::read_to_string(dir.join("report.md")).expect("report.md");
    assert!(md.contains("**fixed** did not respond to `target-tpm`"), "{md}");
}

#[test]
fn the_cancel_scenario_cancels_work_in_flight_and_tenants_rejects_under_every_strategy() {
    // The shipped scenarios must show what their descriptions promise. `cancel` once cancelled
    // a file that had finished and a user whose files had not started, so it showed a latency
    // of 0 and no wasted token for most strategies: now every strategy meets calls in flight
    // at a cancel. `tenants` promises rejections by the per-user quotas.
    let cancel = load_scenario("cancel").expect("built-in");
    for r in run_scenario(&cancel, &[], false).expect("runs").runs {
        let s = &r.summary;
        assert!(s.files_cancelled > 0, "{}", r.strategy);
        assert!(
            s.calls_in_flight_at_cancel > 0,
            "{}: no call in flight at any cancel",
            r.strategy
        );
        assert!(s.tokens_wasted > 0, "{}: nothing in flight was wasted", r.strategy);
    }
    let tenants = load_scenario("tenants").expect("built-in");
    for r in run_scenario(&tenants, &[], false).expect("runs").runs {
        assert!(r.summary.files_rejected > 0, "{} rejects nothing", r.strategy);
    }
}

#[test]
fn every_shipped_scenario_shows_what_its_description_says_under_every_strategy() {
    // Each assertion is a claim of a scenario's description or header comment, checked on its
    // output under every strategy (`cancel` and `tenants` are checked above).
    let runs = |name: &str| {
        let s = load_scenario(name).expect("built-in");
        run_scenario(&s, &[], false).expect("runs").runs
    };
    // outage: "Shows retries, failed requests and recovery". The pace comes back at once under
    // steady arrivals (recovery_s 0 is true there); the backlog takes time to work off, except
    // for a strategy that failed the files it could not finish.
    for r in runs("outage") {
        let s = &r.summary;
        assert!(
            s.llm_errors > 0 && s.retries > 0,
            "{}: no failed request or retry",
            r.strategy
        );
        assert!(s.recovery_s.is_some(), "{}", r.strategy);
        // Every error there is a 5xx (the outage's 503s and the random 500s), counted by kind.
        assert_eq!(s.errors_by_kind.get("5xx"), Some(&s.llm_errors), "{}", r.strategy);
        let cleared = s.backlog_cleared_s.expect("the outage is inside every run");
        assert!(
            cleared > 0.0 || s.files_failed > 0,
            "{}: no backlog to work off, and nothing failed",
            r.strategy
        );
    }
    // crash-resume: "crashes at 3m and 7m, back after 30s".
    for r in runs("crash-resume") {
        assert_eq!(r.summary.restarts, 2, "{}", r.strategy);
        assert!(r.summary.recovery_s.is_some(), "{}", r.strategy);
        assert!(r.summary.backlog_cleared_s.is_some_and(|x| x > 0.0), "{}", r.strategy);
    }
    // tpm-cut: "the limit halves to 30k at 5m": every run still going at 5m has a recovery
    // figure; `stepfn` and `sqs` fail their files before it with their default retry policies.
    for r in runs("tpm-cut") {
        let s = &r.summary;
        assert_eq!(s.recovery_s.is_some(), s.makespan_s > 300.0, "{}", r.strategy);
    }
    // tpm-squeeze: "tokens bind every strategy; a fixed pool is throttled heavily";
    // rpm-squeeze: "the request limit binds"; azure: its 1 s RPM window throttles everyone.
    for name in ["tpm-squeeze", "rpm-squeeze"] {
        for r in runs(name) {
            assert!(
                r.summary.limit_utilization > 0.7,
                "{name}: {} left the limit idle",
                r.strategy
            );
            if r.strategy == "fixed" {
                assert!(r.summary.llm_throttled > 1_000, "{name}: {}", r.summary.llm_throttled);
            }
        }
    }
    for r in runs("azure") {
        assert!(r.summary.llm_throttled > 0, "azure: {} never throttled", r.strategy);
    }
    // burst: "300 files in about 2.5 minutes, ten times what the TPM limit clears, then quiet".
    let burst = load_scenario("burst").expect("built-in");
    let crowd = sim::workload::Workload::generate(&burst.workload, burst.seed)
        .files()
        .last()
        .expect("files")
        .arrival
        .as_secs_f64();
    assert!((120.0..=180.0).contains(&crowd), "the crowd lasts {crowd} s");
    for r in run_scenario(&burst, &[], false).expect("runs").runs {
        let s = &r.summary;
        assert!(
            s.ideal_makespan_s > 8.0 * crowd,
            "{}: ideal {}",
            r.strategy,
            s.ideal_makespan_s
        );
        // Each design either works the backlog off long after the crowd, or gives files up.
        assert!(
            s.makespan_s > 5.0 * crowd || s.files_failed > 0,
            "{}: {} s and nothing failed",
            r.strategy,
            s.makespan_s
        );
    }
    // multi-tenant: "one heavy user (3 files in 4) and four light ones, 2 files in progress
    // each, the rest queued: per-user throughput and fairness".
    for r in runs("multi-tenant") {
        let s = &r.summary;
        assert_eq!(s.users.len(), 5, "{}", r.strategy);
        let heavy = s.users[0].files as f64 / s.files_total as f64;
        assert!(
            (0.65..=0.85).contains(&heavy),
            "{}: user-1 has {heavy} of the files",
            r.strategy
        );
        assert!(
            s.users[1..].iter().all(|u| u.files < s.users[0].files / 4),
            "{}",
            r.strategy
        );
        assert_eq!(s.files_rejected, 0, "{}: over quota is queued", r.strategy);
        assert!(s.fairness.is_some_and(|f| f < 0.9), "{}: {:?}", r.strategy, s.fairness);
    }
}

#[test]
fn report_and_regress_take_a_folder_or_its_report_json_and_errors_say_things_once() {
    let dir = temp_dir("either");
    let (code, _) = run_cli(&["run", "tenants", "-s", "fixed", "--out", dir.to_str().expect("utf-8")]).expect("runs");
    assert_eq!(code, 0);
    let json = dir.join("report.json");
    // `report DIR/report.json` once failed with `report.json/report.json: Not a directory`.
    let (code, out) = run_cli(&["report", json.to_str().expect("utf-8")]).expect("the file names its folder");
    assert_eq!(code, 0);
    assert!(out.contains("report.html"), "{out}");
    let (code, out) = run_cli(&["regress", dir.to_str().expect("utf-8"), dir.to_str().expect("utf-8")])
        .expect("folders stand for their report.json");
    assert_eq!(code, 0, "{out}");
    // The cause once appeared twice: `No such file … (os error 2): No such file … (os error 2)`.
    let e = format!("{:#}", run_cli(&["report", "/no/such/dir"]).expect_err("missing"));
    assert_eq!(e.matches("os error 2").count(), 1, "{e}");
    let e = format!(
        "{:#}",
        run_cli(&["run", "tenants", "-s", "fixed", "-s", "fixed"]).expect_err("twice")
    );
    assert!(e.contains("--strategy fixed is named twice"), "{e}");
}

#[test]
fn a_reader_that_stops_early_ends_the_run_quietly() {
    // `orchbench run --json | head -1` printed `error: Broken pipe` and exited 2.
    use std::io::Read;
    use std::process::{Command, Stdio};
    let dir = temp_dir("pipe");
    let mut child = Command::new(env!("CARGO_BIN_EXE_orchbench"))
        .args(["run", "tenants", "--json", "--out", dir.to_str().expect("utf-8")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut stdout = child.stdout.take().expect("piped");
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).expect("the JSON starts");
    drop(stdout);
    let out = child.wait_with_output().expect("it ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}

#[test]
fn errors_are_counted_by_kind_in_the_report_the_table_and_the_reading() {
    // Hung calls end at the client's timeout, random failures are 5xx: two kinds, which add up
    // to the errors, and which the table and the Reading name.
    let text = r#"
name = "kinds"
seed = 5
[workload]
files = 6
chunks_per_file = { dist = "fixed", value = 5 }
prompt_tokens = { dist = "fixed", value = 200 }
completion_tokens = { dist = "fixed", value = 20 }
max_tokens = 40
[provider]
error_rate = 0.2
hang_rate = 0.1
[client]
request_timeout = "5s"
"#;
    let s = sim::Scenario::parse(text, "kinds").expect("valid");
    let report = run_scenario(&s, &["fixed".to_owned()], false).expect("runs");
    let summary = &report.runs[0].summary;
    let kinds = &summary.errors_by_kind;
    assert!(
        kinds.get("5xx").is_some_and(|n| *n > 0) && kinds.get("timeout").is_some_and(|n| *n > 0),
        "{kinds:?}"
    );
    assert_eq!(kinds.values().sum::<u64>(), summary.llm_errors);
    let table = reports::table::comparison(&report);
    assert!(table.contains("errors by kind: fixed 5xx"), "{table}");
    let reading = reports::markdown::reading(&report).join("\n");
    assert!(
        reading.contains("Errors by kind") && reading.contains("timeout"),
        "{reading}"
    );
}
