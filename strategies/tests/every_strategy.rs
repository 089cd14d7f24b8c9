//! Properties every built-in strategy must have, each checked over all of them
//! ([`strategies::NAMES`]): the exactly-once oracle under 429s, server errors, hangs, crashes and
//! both storage modes.

use proptest::prelude::*;
use sim::{RunOptions, RunReport, Scenario};

fn parse(text: &str) -> Scenario {
    Scenario::parse(text, "test").unwrap_or_else(|e| panic!("test scenario is valid: {e}\n{text}"))
}

fn run(name: &str, s: &Scenario) -> RunReport {
    let strategy = strategies::build(name, s).expect("a built-in strategy");
    strategies::simulate(strategy.as_ref(), s, &RunOptions::default()).expect("the run finishes")
}

/// The digest the run must produce if every chunk's stored verdict is the provider's verdict,
/// computed from the workload and the verdict rule, independently of the run.
fn expected_digest(s: &Scenario) -> String {
    format!("{:016x}", sim::results::provider_digest(s))
}

fn harsh(seed: u64, error_rate: f64, hang_rate: f64, tpm: u64, crash: bool, at_end: bool) -> Scenario {
    let crash = if crash {
        "[[timeline]]\nat = \"40s\"\ncrash = { restart_after = \"5s\" }\n"
    } else {
        ""
    };
    let results = if at_end { "at-end" } else { "incremental" };
    parse(&format!(
        r#"
name = "harsh"
seed = {seed}
results = "{results}"
[workload]
files = 30
users = 3
chunks_per_file = {{ dist = "uniform", min = 1, max = 8 }}
prompt_tokens = {{ dist = "normal", mean = 800, stddev = 300 }}
completion_tokens = {{ dist = "uniform", min = 20, max = 200 }}
max_tokens = 200
arrival = {{ kind = "poisson", per_minute = 60 }}
[provider]
tpm = {tpm}
error_rate = {error_rate}
hang_rate = {hang_rate}
invalid_rate = 0.3
[client]
request_timeout = "5s"
[params]
max-parallelism = 6
[strategies.fixed]
max_attempts = 1000
backoff = {{ initial = "100ms", max = "2s" }}
[strategies.cookbook]
max_attempts = 1000
[strategies.stepfn]
definition = "tests/data/patient.asl.json"   # the shipped pipeline, retrying 429s patiently
redrive_after = "1s"      # and redriven until done (a file fails at once on other errors)
max_redrives = 1000
[strategies.sqs]
max_receive_count = 1000
{crash}"#
    ))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever 429s, server errors, hangs and crashes happen, under every strategy, every chunk
    /// ends with exactly one stored result, and it is the provider's verdict for that chunk: the
    /// digest covers every (file, chunk, verdict), so a lost, extra or wrong result changes it.
    #[test]
    fn every_chunk_ends_validated_exactly_once_under_every_strategy(
        seed in 0u64..1_000, error_rate in 0.0f64..0.3, hang_rate in 0.0f64..0.05,
        tpm in 20_000u64..200_000, crash: bool, at_end: bool,
    ) {
        let s = harsh(seed, error_rate, hang_rate, tpm, crash, at_end);
        for name in strategies::NAMES {
            let r = run(name, &s);
            prop_assert_eq!(r.summary.chunks_validated, r.summary.chunks_total, "{}", name);
            prop_assert_eq!(r.summary.files_completed, 30, "{}", name);
            prop_assert_eq!(&r.summary.results_digest, &expected_digest(&s), "{}", name);
        }
    }
}
