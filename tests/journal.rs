//! The durable result journal, for real: a live run against the bundled mock is killed with
//! SIGKILL mid-run, run again with the same journal, and must end with every chunk stored exactly
//! once and no chunk stored before the kill sent to the LLM again; under both result modes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sim::Scenario;

/// 40 files of 4 chunks, each call 1 s of scenario time, 4 at once: about 40 s of scenario time,
/// 4 s of real time at --time-scale 10.
fn scenario(results: &str) -> String {
    format!(
        r#"
name = "journal-{results}"
seed = 21
results = "{results}"
[workload]
files = 40
users = 2
chunks_per_file = {{ dist = "fixed", value = 4 }}
prompt_tokens = {{ dist = "fixed", value = 300 }}
completion_tokens = {{ dist = "fixed", value = 50 }}
max_tokens = 60
arrival = {{ kind = "all-at-once" }}
[provider]
latency = {{ base_ms = 1000, per_output_token_ms = 0, sigma = 0 }}
[params]
max-parallelism = 4
"#
    )
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("orchbench-journal-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("a temp dir");
    d
}

fn run(file: &Path, journal: &Path, out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_orchbench"));
    c.args([
        "run",
        file.to_str().expect("utf-8"),
        "--live",
        "--time-scale",
        "10",
        "-s",
        "fixed",
    ])
    .args([
        "--journal",
        journal.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    c
}

/// Kills a run once the journal holds `at_least` bytes of records; returns what it held then.
fn kill_mid_run(results: &str, at_least: u64, tag: &str) -> (Scenario, PathBuf, PathBuf, sim::journal::Recovered) {
    let d = dir(&format!("{results}-{tag}"));
    let file = d.join("scenario.toml");
    std::fs::write(&file, scenario(results)).expect("write the scenario");
    let s = Scenario::load(&file).expect("valid");
    let journal = d.join("results.journal");
    let mut child = run(&file, &journal, &d.join("first")).spawn().expect("starts");
    let started = Instant::now();
    loop {
        let len = std::fs::metadata(&journal).map_or(0, |m| m.len());
        if len >= sim::journal::HEADER as u64 + at_least {
            break;
        }
        assert!(
            child.try_wait().expect("waits").is_none(),
            "the run ended before it was killed"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "the journal did not grow");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let before = sim::journal::read(&journal, &s).expect("a killed run's journal reads");
    (s, d, journal, before)
}

fn resume_and_check(results: &str, at_least: u64) -> (u64, u64) {
    let (s, d, journal, before) = kill_mid_run(results, at_least, "resume");
    let total = u64::from(s.workload.files) * 4;
    assert!((before.entries.len() as u64) < total, "killed before the end");
    let out = run(&s_path(&d), &journal, &d.join("second")).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = sim::journal::read(&journal, &s).expect("the resumed journal reads");
    // Every chunk exactly once (reading refuses a chunk stored twice), and the first run's
    // records kept as they were.
    assert_eq!(after.entries.len() as u64, total);
    assert_eq!(&after.entries[..before.entries.len()], &before.entries[..]);
    assert_eq!(after.damage, None);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("second/report.json")).expect("a report")).expect("json");
    let sum = &report["runs"][0]["summary"];
    let num = |k: &str| sum[k].as_u64().unwrap_or_else(|| panic!("{k} in {sum}"));
    assert_eq!(num("results_resumed"), before.entries.len() as u64);
    assert_eq!(num("duplicate_results"), 0);
    // The second run's answered calls are exactly the chunks it stored: no chunk stored before
    // the kill was answered again (an answer for one would be a duplicate or an extra call).
    let answered = num("llm_requests") - num("llm_throttled") - num("llm_errors");
    assert_eq!(answered, total - before.entries.len() as u64);
    // The results are the provider's verdicts.
    let expected = format!("{:016x}", sim::results::provider_digest(&s));
    assert_eq!(sum["results_digest"].as_str(), Some(expected.as_str()));
    let _ = std::fs::remove_dir_all(&d);
    (before.entries.len() as u64, total)
}

fn s_path(d: &Path) -> PathBuf {
    d.join("scenario.toml")
}

#[test]
fn a_run_killed_mid_way_resumes_from_its_journal_with_every_chunk_stored_once() {
    // Killed once 40 of 160 chunks are stored: incremental results keep each as it lands.
    let (kept, total) = resume_and_check("incremental", 40 * sim::journal::RECORD as u64);
    eprintln!("incremental: {kept} of {total} chunks survived the kill");
}

#[test]
fn an_at_end_run_killed_mid_way_keeps_only_its_completed_files() {
    // At-end results reach the journal a whole file at a time: what survives is whole files.
    let (kept, total) = resume_and_check("at-end", 40 * sim::journal::RECORD as u64);
    assert_eq!(kept % 4, 0, "only whole files of 4 chunks");
    eprintln!("at-end: {kept} of {total} chunks survived the kill");
}

#[test]
fn a_journal_of_another_scenario_is_refused_and_left_as_it_was() {
    let (_, d, journal, _) = kill_mid_run("incremental", 4 * sim::journal::RECORD as u64, "refused");
    let bytes = std::fs::read(&journal).expect("read");
    let other = d.join("other.toml");
    std::fs::write(&other, scenario("incremental").replace("seed = 21", "seed = 22")).expect("write");
    let out = run(&other, &journal, &d.join("other")).output().expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("written for another scenario or seed"), "{err}");
    assert_eq!(
        std::fs::read(&journal).expect("read"),
        bytes,
        "the journal is untouched"
    );
    let _ = std::fs::remove_dir_all(&d);
}
