//! End-to-end behaviour of the engine with the `fixed` strategy: exact makespans, TPM-bound
//! throughput, exactly-once results, efficiency bounds, crashes, cancellation and quotas.

use proptest::prelude::*;
use sim::workload::Workload;
use sim::{RunOptions, RunReport, Scenario};

fn parse(text: &str) -> Scenario {
    Scenario::parse(text, "test").unwrap_or_else(|e| panic!("test scenario is valid: {e}\n{text}"))
}

fn run(s: &Scenario) -> RunReport {
    let fixed = strategies::build("fixed", s).expect("fixed exists");
    strategies::simulate(fixed.as_ref(), s, &RunOptions::default()).expect("the run finishes")
}

fn closed_form(files: u32, chunks: u32, workers: u32, latency_ms: u32) -> String {
    format!(
        r#"
name = "closed-form"
[workload]
files = {files}
chunks_per_file = {{ dist = "fixed", value = {chunks} }}
prompt_tokens = {{ dist = "fixed", value = 100 }}
completion_tokens = {{ dist = "fixed", value = 10 }}
max_tokens = 10
[provider]
latency = {{ base_ms = {latency_ms}, per_output_token_ms = 0, sigma = 0 }}
[client]
network = {{ jitter_ms = 0 }} # an ideal network: exact arithmetic
[params]
max-parallelism = {workers}
"#
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// With fixed latency L, c workers, no limits and N chunks at time zero, the chunks go in
    /// ceil(N/c) waves of exactly L: any idle gap or lost wake-up would lengthen the makespan.
    #[test]
    fn fixed_pool_makespan_is_waves_times_latency(files in 1u32..20, chunks in 1u32..12, workers in 1u32..16, latency in 1u32..3_000) {
        let r = run(&parse(&closed_form(files, chunks, workers, latency)));
        let n = u64::from(files * chunks);
        let expected_ms = n.div_ceil(u64::from(workers)) * u64::from(latency);
        prop_assert_eq!((r.summary.makespan_s * 1000.0).round() as u64, expected_ms);
        prop_assert_eq!(r.summary.chunks_validated, n);
    }
}

#[test]
fn tpm_bound_run_holds_the_token_limit_in_steady_state() {
    // Each request is charged exactly 1,000 tokens (900 + max_tokens 100) and uses 1,000; 50
    // workers want far more than 60,000 TPM. After the first minute (which spends the full
    // bucket), admitted tokens must track the refill rate of 60,000 per minute.
    let s = parse(
        r#"
name = "tpm-bound"
[workload]
files = 400
chunks_per_file = { dist = "fixed", value = 5 }
prompt_tokens = { dist = "fixed", value = 900 }
completion_tokens = { dist = "fixed", value = 100 }
max_tokens = 100
[provider]
tpm = 60000
latency = { base_ms = 500, per_output_token_ms = 0, sigma = 0 }
[params]
max-parallelism = 50
[strategies.fixed]
max_attempts = 1000
"#,
    );
    let r = run(&s);
    assert_eq!(r.summary.chunks_validated, 2000);
    let window = &r.timeseries[120..1800];
    let per_min = window.iter().map(|row| row.tokens).sum::<u64>() as f64 / (window.len() as f64 / 60.0);
    assert!(
        (per_min - 60_000.0).abs() / 60_000.0 < 0.02,
        "steady-state {per_min:.0} tokens/min against a 60,000 TPM limit"
    );
    assert!(
        r.summary.llm_throttled > 0,
        "50 workers against 60k TPM must be throttled"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Whatever its limits (changing at random times, either profile), outages, faults, crashes
    /// and arrivals: no run that completes its work beats the ideal makespan; efficiency never
    /// exceeds the share of work completed (so never 1); and the ideal is one constant of the
    /// scenario, the same for a persistent pool and for one that gives up at the first error.
    #[test]
    fn efficiency_never_exceeds_completion_and_the_ideal_is_one_yardstick(
        seed in 0u64..1_000, error_rate in 0.0f64..0.2, tpm in 5_000u64..400_000, crash: bool,
        azure: bool, workers in 1u32..40, capacity in 0u32..8, sigma in 0.0f64..0.8,
        changes in proptest::collection::vec((1u64..240, 2_000u64..400_000, proptest::option::of(30u64..3_000)), 0..4),
        outage in proptest::option::of((1u64..200, 1u64..90)),
    ) {
        let mut text = format!(
            r#"
name = "bound"
seed = {seed}
[workload]
files = 25
users = 2
chunks_per_file = {{ dist = "uniform", min = 1, max = 10 }}
prompt_tokens = {{ dist = "normal", mean = 900, stddev = 400 }}
completion_tokens = {{ dist = "uniform", min = 10, max = 300 }}
max_tokens = 300
arrival = {{ kind = "bursts", every = "20s", size = 5 }}
[provider]
tpm = {tpm}
profile = "{profile}"
error_rate = {error_rate}
latency = {{ base_ms = 200, per_output_token_ms = 5, sigma = {sigma} }}
{capacity}
[params]
max-parallelism = {workers}
"#,
            profile = if azure { "azure" } else { "openai" },
            capacity = if capacity > 0 { format!("capacity = {capacity}") } else { String::new() },
        );
        for (at, tpm, rpm) in changes {
            let rpm = rpm.map(|r| format!(", rpm = {r}")).unwrap_or_default();
            text.push_str(&format!("[[timeline]]\nat = \"{at}s\"\nlimits = {{ tpm = {tpm}{rpm} }}\n"));
        }
        if let Some((at, len)) = outage {
            text.push_str(&format!("[[timeline]]\nat = \"{at}s\"\noutage = {{ for = \"{len}s\" }}\n"));
        }
        if crash {
            text.push_str("[[timeline]]\nat = \"20s\"\ncrash = { restart_after = \"3s\" }\n");
        }
        let persistent = parse(&format!("{text}[strategies.fixed]\nmax_attempts = 1000\nbackoff = {{ max = \"2s\" }}\n"));
        let quitter = parse(&format!("{text}[strategies.fixed]\nmax_attempts = 1\n"));
        let w = Workload::generate(&persistent.workload, persistent.seed);
        let ideal = sim::engine::required_ideal(&persistent, &w).as_secs_f64();
        for s in [&persistent, &quitter] {
            let r = run(s);
            let x = &r.summary;
            prop_assert!((x.ideal_makespan_s - ideal).abs() < 1e-6, "ideal {} against {}", x.ideal_makespan_s, ideal);
            prop_assert!(x.efficiency <= x.completion + 1e-9, "efficiency {} > completion {}", x.efficiency, x.completion);
            prop_assert!(x.limit_utilization <= 1.0);
            if x.completion == 1.0 {
                prop_assert!(x.ideal_makespan_s <= x.makespan_s, "ideal {} > makespan {}", x.ideal_makespan_s, x.makespan_s);
            }
            // And every file ends in exactly one final state.
            prop_assert_eq!(x.files_completed + x.files_failed + x.files_cancelled + x.files_rejected, x.files_total);
        }
    }
}

fn crash_run(results: &str, crash_at: &str) -> RunReport {
    run(&parse(&format!(
        r#"
name = "crash"
results = "{results}"
[workload]
files = 20
chunks_per_file = {{ dist = "fixed", value = 20 }}
prompt_tokens = {{ dist = "fixed", value = 500 }}
completion_tokens = {{ dist = "fixed", value = 50 }}
max_tokens = 100
[provider]
latency = {{ base_ms = 1000, per_output_token_ms = 0, sigma = 0 }}
[client]
network = {{ jitter_ms = 0 }} # an ideal network: exact arithmetic
[params]
max-parallelism = 4
[[timeline]]
at = "{crash_at}"
crash = {{ restart_after = "10s" }}
"#
    )))
}

#[test]
fn a_crashed_run_resumes_from_the_last_stored_result() {
    // 400 one-second chunks on 4 workers. At 30.5 s, 120 results are stored and 4 calls are in
    // flight. Incremental storage resumes with the 280 chunks left: 400 + 4 requests in all.
    let r = crash_run("incremental", "30500ms");
    assert_eq!(r.summary.restarts, 1);
    assert_eq!(r.summary.chunks_validated, 400);
    assert_eq!(
        r.summary.llm_requests, 404,
        "only the 4 calls cut off by the crash are redone"
    );
    assert_eq!(
        r.summary.makespan_s, 110.5,
        "back at 40.5 s, then 280 chunks in 70 waves of 1 s"
    );
    assert!(
        r.summary.tokens_wasted > 0,
        "the provider billed the 4 calls in flight at the crash"
    );
}

#[test]
fn at_end_storage_loses_unfinished_files_at_a_crash() {
    // Files are processed in order, 20 chunks each. At 33.5 s, 132 results are in: files 1-6 are
    // complete (committed at their end), and file 7 has 12 results staged, which the crash loses
    // and which must be redone: 12 more requests than with incremental storage.
    let inc = crash_run("incremental", "33500ms");
    let end = crash_run("at-end", "33500ms");
    assert_eq!(end.summary.chunks_validated, 400);
    assert_eq!(
        end.summary.results_digest, inc.summary.results_digest,
        "same results either way"
    );
    assert_eq!(inc.summary.llm_requests, 404);
    assert_eq!(end.summary.llm_requests, 416);
}

#[test]
fn cancelled_calls_stop_at_once_and_the_file_ends_cancelled() {
    // fixed races every call against the file's cancellation, so a cancelled file has nothing in
    // flight the moment it is cancelled: cancellation latency is zero. 300 two-second chunks on
    // 5 workers need 120 s, so cancelling the run at 61 s cuts it short.
    let s = parse(
        r#"
name = "cancel"
[workload]
files = 10
users = 2
chunks_per_file = { dist = "fixed", value = 30 }
prompt_tokens = { dist = "fixed", value = 500 }
completion_tokens = { dist = "fixed", value = 100 }
max_tokens = 200
[provider]
latency = { base_ms = 2000, per_output_token_ms = 0, sigma = 0 }
[params]
max-parallelism = 5
[[timeline]]
at = "3s"
cancel = { file = "file-1" }
[[timeline]]
at = "61s"
cancel = { run = true }
"#,
    );
    let r = run(&s);
    let c = r.summary.cancel_latency_s.expect("there were cancellations");
    assert_eq!(c.max, 0.0);
    assert_eq!(r.summary.files_cancelled + r.summary.files_completed, 10);
    assert!(r.summary.files_cancelled >= 2);
    assert_eq!(r.summary.makespan_s, 61.0, "cancelling the run ends it at once");
    let cancelled_at = r
        .events
        .iter()
        .find(|e| e.kind == sim::recorder::EventKind::FileCancelled)
        .expect("file-1 cancelled");
    assert_eq!(
        (cancelled_at.t_ms, cancelled_at.file.map(|f| f.to_string())),
        (3000, Some("file-1".into()))
    );
}

#[test]
fn gatekeeper_rejects_files_over_quota_and_never_exceeds_it() {
    for over in ["reject", "queue"] {
        let s = parse(&format!(
            r#"
name = "quota"
[workload]
files = 40
users = 2
chunks_per_file = {{ dist = "uniform", min = 2, max = 6 }}
prompt_tokens = {{ dist = "fixed", value = 500 }}
completion_tokens = {{ dist = "fixed", value = 100 }}
max_tokens = 200
arrival = {{ kind = "steady", per_minute = 60 }}
[quotas]
per_user_concurrent_files = 2
over_quota = "{over}"
[params]
max-parallelism = 3
"#
        ));
        let r = run(&s);
        // Replay the event log: a user's admitted-and-not-ended files never exceed 2.
        let mut open = std::collections::BTreeMap::<String, i32>::new();
        for e in &r.events {
            let user = e.user.map(|u| u.to_string()).unwrap_or_default();
            match e.kind {
                sim::recorder::EventKind::FileAdmitted => *open.entry(user.clone()).or_default() += 1,
                sim::recorder::EventKind::FileCompleted | sim::recorder::EventKind::FileFailed => {
                    *open.entry(user.clone()).or_default() -= 1
                }
                _ => {}
            }
            assert!(
                open.get(&user).copied().unwrap_or(0) <= 2,
                "{over}: {user} over quota at {} ms",
                e.t_ms
            );
        }
        assert_eq!(r.summary.files_completed + r.summary.files_rejected, 40);
        if over == "reject" {
            assert!(
                r.summary.files_rejected > 0,
                "a file a second against 3 workers must overflow the quota"
            );
        } else {
            assert_eq!(r.summary.files_rejected, 0);
        }
    }
}

#[test]
fn strategy_settings_errors_name_the_table_and_line() {
    let s = parse(&format!(
        "{}\n[strategies.fixed]\nmax_attempts = 3\nbogus = 1\n",
        closed_form(1, 1, 1, 10)
    ));
    let err = strategies::build("fixed", &s)
        .err()
        .expect("unknown key is rejected")
        .to_string();
    assert!(
        // Line 18 is the key's own line (the table starts on line 16).
        err.contains("[strategies.fixed]") && err.contains("`bogus`") && err.contains("line 18"),
        "{err}"
    );
    let typo = parse(&format!(
        "{}\n[strategies.fixd]\nmax_attempts = 3\n",
        closed_form(1, 1, 1, 10)
    ));
    let err = strategies::build("fixed", &typo)
        .err()
        .expect("a table for no strategy is refused")
        .to_string();
    assert!(
        err.contains("[strategies.fixd]") && err.contains("no strategy `fixd`") && err.contains("line 16"),
        "{err}"
    );
    let err = strategies::build("nope", &s)
        .err()
        .expect("unknown strategy")
        .to_string();
    assert!(
        err.contains("unknown strategy `nope`") && err.contains("fixed"),
        "{err}"
    );
}

fn always_failing(extra: &str) -> Scenario {
    parse(&format!(
        r#"
name = "live-setting"
[workload]
files = 1
chunks_per_file = {{ dist = "fixed", value = 5 }}
prompt_tokens = {{ dist = "fixed", value = 100 }}
completion_tokens = {{ dist = "fixed", value = 10 }}
max_tokens = 10
[provider]
error_rate = 1.0
[params]
max-parallelism = 1
[strategies.fixed]
backoff = {{ initial = "1s", max = "1s", jitter = "none" }}
{extra}"#
    ))
}

#[test]
fn a_live_strategy_setting_changed_by_the_timeline_applies_to_chunks_started_after_it() {
    // Every request fails (10 ms each) and waits 1 s between attempts: a chunk with 8 attempts
    // takes 7.08 s. At 10 s `fixed.max_attempts` drops to 1: chunk 2 (started at 7.08 s) keeps its
    // 8 attempts; chunks 3 to 5 start after the change and make one each: 8 + 8 + 3 = 19.
    let s = always_failing("[[timeline]]\nat = \"10s\"\nset = { \"fixed.max_attempts\" = 1 }\n");
    let r = run(&s);
    assert_eq!(r.summary.llm_requests, 19);
    assert_eq!(r.summary.files_failed, 1);
    // Without the change: 5 × 8.
    assert_eq!(run(&always_failing("")).summary.llm_requests, 40);
}

#[test]
fn strategy_settings_are_checked_before_the_run_by_the_strategys_own_rules() {
    let cases = [
        (
            "[[timeline]]\nat = \"10s\"\nset = { \"fixed.bogus\" = 1 }\n",
            "`fixed` does not read `bogus` live",
        ),
        (
            "[[timeline]]\nat = \"10s\"\nset = { \"fixed.max_attempts\" = 0 }\n",
            "lies in [1, 1000]",
        ),
        (
            "[[timeline]]\nat = \"10s\"\nset = { \"fixed.max_attempts\" = 2.5 }\n",
            "`fixed.max_attempts`",
        ),
        (
            "[[timeline]]\nat = \"10s\"\nset = { \"nope.x\" = 1 }\n",
            "there is no strategy `nope`",
        ),
    ];
    for (extra, words) in cases {
        let err = strategies::build("fixed", &always_failing(extra))
            .err()
            .unwrap_or_else(|| panic!("{extra} is refused"))
            .to_string();
        assert!(err.contains(words) && err.contains("line 15"), "{extra}: {err}");
    }
    // A plain unknown parameter is refused by the scenario itself.
    let text = always_failing("")
        .source
        .text
        .replace("max-parallelism = 1", "max-parallelism = 1\nmax_paralelism = 2");
    let err = Scenario::parse(&text, "t").expect_err("a typo").to_string();
    assert!(err.contains("unknown parameter `max_paralelism`"), "{err}");
}

#[test]
fn a_sweep_sets_a_strategy_setting_through_its_table() {
    // Sweeping `fixed.max_attempts` over 2 and 3 changes the requests per chunk accordingly; a
    // value the table refuses is an error when the strategy is built.
    let s = always_failing("");
    for (v, requests) in [(2.0, 10), (3.0, 15)] {
        let swept = s.with_param("fixed.max_attempts", v).expect("a dotted key sweeps");
        assert_eq!(run(&swept).summary.llm_requests, requests);
    }
    let zero = s.with_param("fixed.max_attempts", 0.0).expect("set");
    assert!(strategies::build("fixed", &zero).is_err());
}
