//! The `adaptive` strategy: its goals on the shipped squeezes over many seeds, live parameter
//! changes, and cancellation.

use sim::{RunOptions, RunReport, Scenario};

fn run(name: &str, s: &Scenario) -> RunReport {
    let strategy = strategies::build(name, s).expect("a built-in strategy");
    strategies::simulate(strategy.as_ref(), s, &RunOptions::default()).expect("the run finishes")
}

fn shipped(text: &str, seed: u64) -> Scenario {
    let mut s = Scenario::parse(text, "shipped").expect("a shipped scenario is valid");
    s.seed = seed;
    s
}

#[test]
fn the_pacer_fills_the_binding_limit_without_429s_and_beats_the_cookbook_for_20_seeds() {
    // The goal, on both shipped squeezes (TPM-bound and RPM-bound), for 20 seeds each:
    // every file completed, efficiency at least 97% of the ideal, at most 0.5% of requests
    // throttled, and a shorter makespan than the cookbook's processor. (Speed is not measured
    // here: these are simulated figures, exact for a seed.)
    for (scenario, text) in [
        ("tpm-squeeze", include_str!("../../scenarios/tpm-squeeze.toml")),
        ("rpm-squeeze", include_str!("../../scenarios/rpm-squeeze.toml")),
    ] {
        for seed in 1..=20 {
            let s = shipped(text, seed);
            let a = run("adaptive", &s).summary;
            let c = run("cookbook", &s).summary;
            let at = format!("{scenario} seed {seed}");
            assert_eq!(a.completion, 1.0, "{at}");
            assert!(a.efficiency >= 0.97, "{at}: efficiency {}", a.efficiency);
            assert!(
                a.llm_throttled as f64 <= 0.005 * a.llm_requests as f64,
                "{at}: {} of {} throttled",
                a.llm_throttled,
                a.llm_requests
            );
            assert!(
                a.makespan_s < c.makespan_s,
                "{at}: adaptive {} s, cookbook {} s",
                a.makespan_s,
                c.makespan_s
            );
        }
    }
}

fn squeeze_with(extra: &str) -> Scenario {
    let text = format!(
        "{}\n{extra}",
        include_str!("../../scenarios/tpm-squeeze.toml").replace("max-parallelism = 10", "max-parallelism = 2")
    );
    Scenario::parse(&text, "squeeze").expect("valid")
}

#[test]
fn a_parameter_change_is_obeyed_within_one_control_interval() {
    // max-parallelism 2 → 7 at 60 s, and target-tpm → 20,000 at 120 s. The controller reads the
    // store every second (its interval): the limit shows 7 from second 61 at the latest, never
    // before 60, and the pacer's rate (target × 0.9 = 18,000) from second 121 at the latest.
    let s = squeeze_with(
        "[[timeline]]\nat = \"60s\"\nset = { max-parallelism = 7 }\n\
         [[timeline]]\nat = \"120s\"\nset = { target-tpm = 20000 }\n",
    );
    let r = run("adaptive", &s);
    let limit_at = |sec: usize| r.timeseries[sec].concurrency_limit;
    assert_eq!(limit_at(59), Some(2));
    assert_eq!(limit_at(61), Some(7));
    let first_seven = r.timeseries.iter().position(|row| row.concurrency_limit == Some(7));
    assert!(matches!(first_seven, Some(60 | 61)), "{first_seven:?}");
    let rate_at = |sec: usize| r.timeseries[sec].gauges.get("pacer_tpm").copied();
    assert_eq!(
        rate_at(119),
        Some(40_000.0),
        "the learned limit caps the budget of 45,000"
    );
    assert_eq!(rate_at(121), Some(18_000.0));
    // And in flight never exceeds the limit in force.
    for row in &r.timeseries[62..120] {
        assert!(row.in_flight_max <= 7, "second {}: {}", row.second, row.in_flight_max);
    }
}

#[test]
fn cancelling_a_file_leaves_none_of_its_calls_in_flight() {
    // Every call races its file's cancellation: the moment a file is cancelled, nothing of it is
    // in flight, so cancellation latency is zero.
    let s = squeeze_with(
        "[[timeline]]\nat = \"90s\"\ncancel = { user = \"user-2\" }\n[[timeline]]\nat = \"200s\"\ncancel = { run = true }\n",
    );
    let r = run("adaptive", &s);
    let c = r.summary.cancel_latency_s.expect("cancellations");
    assert_eq!(c.max, 0.0);
    assert!(r.summary.files_cancelled > 0);
    assert_eq!(r.summary.makespan_s, 200.0, "cancelling the run ends it at once");
}

#[test]
fn the_aimd_controller_completes_the_squeeze_where_a_fixed_pool_fails() {
    // AIMD without a pacer: drops cut its concurrency, a 429's hint pauses every send, and a 429
    // spends no attempt. It completes every file, though far from without 429s.
    let s = squeeze_with("[strategies.adaptive]\ncontroller = \"aimd\"\n");
    let a = run("adaptive", &s).summary;
    let f = run("fixed", &s).summary;
    assert_eq!(a.completion, 1.0);
    assert!(f.completion < 0.5, "the fixed pool's retry stampede: {}", f.completion);
    assert!(a.llm_throttled > 0);
}
