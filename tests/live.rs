//! Live runs over real HTTP against the bundled mock on 127.0.0.1, compared with the simulation.

use orchbench::{Live, run_scenario, run_scenario_live};
use sim::Scenario;

const FIDELITY: &str = r#"
name = "fidelity"
seed = 3
[workload]
files = 40
users = 2
chunks_per_file = { dist = "fixed", value = 5 }
prompt_tokens = { dist = "fixed", value = 800 }
completion_tokens = { dist = "fixed", value = 100 }
max_tokens = 200
[provider]
tpm = 30000
latency = { base_ms = 400, per_output_token_ms = 10, sigma = 0 }
[params]
max-parallelism = 6
[strategies.fixed]
max_attempts = 1000
"#;

fn within(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn a_live_run_against_the_mock_agrees_with_the_simulation() {
    // 200 requests of 1,000 tokens against 30,000 TPM: about 6 minutes of scenario time, run live
    // 30 times faster (about 12 s). Both runs use the same provider model; they differ only in
    // timing: live, every hop costs real microseconds to milliseconds of scheduling and loopback
    // HTTP (times 30 in scenario time), so a retry can land just before or after a bucket refill
    // and counts of 429s shift by a few. 5% bounds that; a wrong header, hint, charge or time
    // scale moves the figures by far more (e.g. charging prompt + completion instead of
    // prompt + max_tokens changes the makespan by 10%).
    let s = Scenario::parse(FIDELITY, "fidelity").expect("valid");
    let sim = run_scenario(&s, &[], false).expect("simulates");
    let live = run_scenario_live(
        &s,
        &[],
        &Live {
            endpoint: None,
            api_key: None,
            time_scale: 30.0,
            extra_root_pem: None,
        },
    )
    .expect("runs live");
    let (a, b) = (&sim.runs[0].summary, &live.runs[0].summary);
    assert_eq!(live.runs[0].mode, sim::Mode::Live);
    assert_eq!(b.chunks_validated, 200);
    assert_eq!(b.results_digest, a.results_digest, "the same verdicts, over HTTP");
    assert!(
        a.llm_throttled > 20,
        "the scenario must be throttled to test anything: {}",
        a.llm_throttled
    );
    for (what, x, y) in [
        ("requests", a.llm_requests as f64, b.llm_requests as f64),
        ("429s", a.llm_throttled as f64, b.llm_throttled as f64),
        ("makespan", a.makespan_s, b.makespan_s),
    ] {
        assert!(within(x, y, 0.05), "{what}: simulated {x}, live {y}");
    }
    assert!(
        b.wall_time_s < a.makespan_s / 10.0,
        "time scale 30: {} s of real time for {} s of scenario",
        b.wall_time_s,
        a.makespan_s
    );
}

#[test]
fn time_scale_is_only_for_live_runs() {
    use clap::Parser;
    let err = orchbench::Cli::try_parse_from(["orchbench", "run", "--time-scale", "5"]).expect_err("needs --live");
    assert!(err.to_string().contains("--live"), "{err}");
}
