//! Absurd values: every numeric key of a scenario, set to an extreme, gives either a clean run or
//! a clear error naming the key, within a time bound; never a panic, a hang or an allocation that
//! grows with the value rather than with the work.
//!
//! How: two base scenarios set every numeric key the tool reads (every section, every strategy's
//! table, every kind of timeline entry, both kinds of distribution and arrival). The test finds
//! each `key = value` in their text, replaces one value with an extreme (0, −1, 2³², 1e300, NaN,
//! `"18446744073709551615s"`, …), and runs the result in-process through the same path as
//! `orchbench run`: load, check every strategy's settings, simulate every strategy, write the
//! report folder (which draws the charts).

use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Every section and timeline action; a small workload so that a clean case runs in milliseconds.
const BASE_A: &str = r#"
name = "extremes-a"
seed = 7
time_limit = "48h"

[workload]
files = 3
users = 2
chunks_per_file = { dist = "uniform", min = 1, max = 3 }
prompt_tokens = { dist = "normal", mean = 300, stddev = 50 }
completion_tokens = { dist = "fixed", value = 20 }
max_tokens = 40
arrival = { kind = "bursts", every = "5s", size = 2 }

[provider]
tpm = 40000
rpm = 300
capacity = 8
error_rate = 0.05
hang_rate = 0.01
invalid_rate = 0.1
latency = { base_ms = 300, per_output_token_ms = 10, sigma = 0.25, reject_ms = 10 }

[client]
request_timeout = "60s"
network = { base_ms = 1, jitter_ms = 5 }

[quotas]
per_user_concurrent_files = 2

[params]
max-parallelism = 4
target-tpm = 30000
throttle-threshold = 0.9
"fixed.max_attempts" = 5

[pricing]
input_per_million = 0.15
output_per_million = 0.6
state_transition = 0.000025
sqs_request = 0.0000004
lambda_request = 0.0000002
lambda_gb_second = 0.0000166667
dynamo_write = 0.00000125
dynamo_read = 0.00000025
express_request = 0.000001
express_gb_second = 0.00001667

[[timeline]]
at = "2s"
set = { max-parallelism = 3, target-tpm = 20000, throttle-threshold = 0.8, "fixed.max_attempts" = 4 }

[[timeline]]
at = "3s"
outage = { for = "2s", status = 503 }

[[timeline]]
at = "4s"
slowdown = { for = "3s", factor = 3 }

[[timeline]]
at = "6s"
limits = { tpm = 30000, rpm = 200 }

[[timeline]]
at = "7s"
crash = { restart_after = "3s" }

[[timeline]]
at = "9s"
cancel = { file = "file-3" }

[strategies.fixed]
max_attempts = 5
backoff = { initial = "500ms", max = "8s", rate = 2 }

[strategies.cookbook]
max_requests_per_minute = 250
max_tokens_per_minute = 35000
max_attempts = 5
pause_after_rate_limit = "15s"
loop_sleep = "1ms"

[strategies.adaptive]
interval = "1s"
decrease = 0.5
max_attempts = 6
backoff = { initial = "250ms", max = "4s", rate = 1.5 }

[strategies.stepfn]
transition_overhead = "25ms"
redrive_after = "30s"
max_redrives = 2
max_histories = 3
lambda = { account_concurrency = 50, reserved = { validate-chunk = 20 }, cold_start = "250ms", idle_timeout = "10m", memory_mb = 512, timeout = "300s", handler = "20ms" }

[strategies.sqs]
batch_size = 5
visibility_timeout = "30s"
max_receive_count = 4
duplicate_rate = 0.01
dlq_redrives = 1
dlq_redrive_after = "1m"
batching_window = "1s"
table_read_capacity = 100
table_write_capacity = 100
lambda = { account_concurrency = 50, cold_start = "250ms", idle_timeout = "10m", memory_mb = 512, timeout = "300s", handler = "20ms" }
"#;

/// The other kinds: Poisson arrivals, the Express workflow, a user's cancellation.
const BASE_B: &str = r#"
name = "extremes-b"
seed = 11

[workload]
files = 4
chunks_per_file = { dist = "fixed", value = 2 }
prompt_tokens = { dist = "uniform", min = 100, max = 200 }
completion_tokens = { dist = "normal", mean = 30, stddev = 5 }
max_tokens = 50
arrival = { kind = "poisson", per_minute = 30 }

[provider]
tpm = 20000

[[timeline]]
at = "4s"
cancel = { user = "user-1" }

[strategies.stepfn]
workflow = "express"
express_duplicate_rate = 0.1

[strategies.sqs]
dedupe = "claim"
"#;

/// Extremes for a number, as TOML writes them.
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "0.5",
    "1e-300",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "100000",
    "1e9",
    "1e15",
    "1e300",
    "-1e300",
    "nan",
    "inf",
];

/// Extremes for a duration.
const DURATIONS: &[&str] = &[
    "\"0s\"",
    "\"1ns\"",
    "\"18446744073709551615s\"",
    "\"100000000h\"",
    "\"400d\"",
    "\"-1s\"",
];

/// One `key = value` of a base text: the key, and the byte range of the value.
#[derive(Clone, Debug)]
struct Leaf {
    key: String,
    value: std::ops::Range<usize>,
    duration: bool,
}

/// Every `key = number` and `key = "duration"` in `text` (keys bare or quoted).
fn leaves(text: &str) -> Vec<Leaf> {
    let b = text.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while let Some(off) = text[i..].find(" = ") {
        let eq = i + off;
        i = eq + 3;
        // The key: back from `=` over a bare key or a quoted one.
        let end = eq;
        let (start, key) = if end > 0 && b[end - 1] == b'"' {
            let open = text[..end - 1].rfind('"').expect("a quoted key has an opening quote");
            (open, text[open + 1..end - 1].to_owned())
        } else {
            let start = text[..end]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .map_or(0, |p| p + 1);
            (start, text[start..end].to_owned())
        };
        if key.is_empty() || start == end {
            continue;
        }
        let v0 = eq + 3;
        let rest = &text[v0..];
        let len = rest.find([',', ' ', '}', '\n']).unwrap_or(rest.len());
        let raw = &rest[..len];
        let number = raw.starts_with(|c: char| c.is_ascii_digit() || c == '-');
        let duration = raw.starts_with('"') && raw[1..].starts_with(|c: char| c.is_ascii_digit());
        if number || duration {
            out.push(Leaf {
                key: key.rsplit('.').next().expect("split yields one part").to_owned(),
                value: v0..v0 + len,
                duration,
            });
        }
    }
    out
}

/// What became of a scenario.
enum Outcome {
    Ran,
    Refused(String),
}

/// Loads, checks, runs every strategy and writes the report folder, as `orchbench run` does.
fn run(text: String, dir: std::path::PathBuf) -> Result<Outcome, String> {
    let scenario = match sim::Scenario::parse(&text, "extremes.toml") {
        Ok(s) => s,
        Err(e) => return Ok(Outcome::Refused(e.to_string())),
    };
    let report = match orchbench::run_scenario(&scenario, &[], false) {
        Ok(r) => r,
        Err(e) => {
            let message = format!("{e:#}");
            if message.contains("panicked") {
                return Err(message);
            }
            return Ok(Outcome::Refused(message));
        }
    };
    reports::write_dir(&dir, &report).map_err(|e| format!("writing the report: {e}"))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Outcome::Ran)
}

/// Runs `text` on a thread of its own: a panic or a hang fails the case instead of the process
/// waiting forever.
fn run_bounded(text: String, case: u64) -> Result<Outcome, String> {
    let dir = std::env::temp_dir().join(format!("orchbench-extremes-{}-{case}", std::process::id()));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(|| run(text, dir)).unwrap_or_else(|p| {
            Err(format!(
                "panicked: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default()
            ))
        });
        let _ = tx.send(outcome);
    });
    // A bound against hangs, not a speed target: a clean case takes milliseconds.
    rx.recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| Err("no result within 120 s (a hang)".into()))
}

fn check(base: &str, leaf: &Leaf, value: &str, case: u64) -> Result<(), TestCaseError> {
    let mut text = base.to_owned();
    text.replace_range(leaf.value.clone(), value);
    let line = base[..leaf.value.start].lines().count();
    let what = format!("`{}` = {value} (line {line})", leaf.key);
    match run_bounded(text, case) {
        Err(why) => Err(TestCaseError::fail(format!("{what}: {why}"))),
        Ok(Outcome::Ran) => Ok(()),
        // A clear error names the key it refuses (the TOML errors quote its line, the settings
        // errors name the key). A valid value can also make more work than the scenario's
        // `time_limit` allows (100,000 chunks a file): that error names `time_limit` instead.
        Ok(Outcome::Refused(message)) => {
            prop_assert!(
                message.contains(&leaf.key) || message.contains("raise `time_limit`"),
                "{what}: the error does not name `{}`: {message}",
                leaf.key
            );
            Ok(())
        }
    }
}

#[test]
fn the_bases_run_cleanly_and_hold_every_kind_of_numeric_key() {
    // The property is only as good as its bases: they must run, and must hold the keys it mutates.
    for base in [BASE_A, BASE_B] {
        assert!(matches!(run_bounded(base.to_owned(), 0), Ok(Outcome::Ran)), "{base}");
    }
    let keys: Vec<String> = leaves(BASE_A).into_iter().map(|l| l.key).collect();
    for key in [
        "files",
        "value",
        "mean",
        "base_ms",
        "at",
        "for",
        "max-parallelism",
        "fixed.max_attempts",
        "memory_mb",
    ] {
        let key = key.rsplit('.').next().expect("one part");
        assert!(keys.iter().any(|k| k == key), "{key} not found in {keys:?}");
    }
    assert!(leaves(BASE_A).len() > 80, "{}", leaves(BASE_A).len());
}

#[test]
fn every_numeric_key_set_to_an_extreme_runs_cleanly_or_is_refused_by_name() {
    let cases: u32 = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let bases: Vec<(&str, Vec<Leaf>)> = [BASE_A, BASE_B].into_iter().map(|b| (b, leaves(b))).collect();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let counter = std::sync::atomic::AtomicU64::new(1);
    let strategy = (
        0..bases.len(),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
    );
    runner
        .run(&strategy, |(b, leaf, value)| {
            let (base, list) = &bases[b];
            let leaf = leaf.get(list);
            let value = if leaf.duration {
                value.get(DURATIONS)
            } else {
                value.get(NUMBERS)
            };
            check(
                base,
                leaf,
                value,
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            )
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
#[ignore = "exhaustive (every key of both bases with every extreme, 1,402 runs): `.ci/run` runs it with --ignored"]
fn every_numeric_key_is_tried_with_every_extreme() {
    // The exhaustive sweep behind the property: each key with each extreme.
    let mut failures = vec![];
    let mut case = 100_000;
    for base in [BASE_A, BASE_B] {
        for leaf in &leaves(base) {
            for value in if leaf.duration { DURATIONS } else { NUMBERS } {
                case += 1;
                if let Err(e) = check(base, leaf, value, case) {
                    failures.push(e.to_string());
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
