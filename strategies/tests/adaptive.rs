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
fn the_pacer_fills_the_binding_limit_without_429s_beats_the_cookbook_and_ties_the_best_fixed_for_20_seeds() {
    // The goal, on both shipped squeezes (TPM-bound and RPM-bound), for 20 seeds each:
    // every file completed, efficiency at least 97% of the ideal, at most 0.5% of requests
    // throttled, a shorter makespan than the cookbook's processor, and no longer than the best
    // `fixed` (below). (Speed is not measured here: these are simulated figures, exact for a
    // seed.)
    for (scenario, text, tie) in [
        ("tpm-squeeze", include_str!("../../scenarios/tpm-squeeze.toml"), 1.0),
        ("rpm-squeeze", include_str!("../../scenarios/rpm-squeeze.toml"), 0.25),
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
            // The best `fixed` a sweep of max-parallelism 1..=10 finds for this seed: the
            // fastest one that completed every file (more workers only collide more). Found by a
            // sweep that needs the answer in advance, it is one worker here, and it too reaches
            // the ideal, at the price of a 429 on a third of its requests. Both end within the
            // last call's latency of the ideal, so which ends first is decided by which chunk
            // happens to go last: measured over these 40 runs, adaptive is ahead on 25, and
            // behind by at most 0.89 s in tpm-squeeze (calls of about 2.3 s) and 0.2 s in
            // rpm-squeeze (calls of 0.35 s), of 15 to 50 min. The tie bands, 1 s and 0.25 s, are
            // under half a call: a mirror that read only the rounded-down `remaining` header
            // lost 0.36-0.69 s on every rpm-squeeze seed and fails here.
            let best_fixed = (1..=10)
                .map(|workers| {
                    let mut f = s.clone();
                    f.params.max_parallelism = std::num::NonZeroU32::new(workers).expect("from 1");
                    run("fixed", &f).summary
                })
                .filter(|f| f.completion == 1.0)
                .map(|f| f.makespan_s)
                .reduce(f64::min);
            if let Some(best) = best_fixed {
                assert!(
                    a.makespan_s <= best + tie,
                    "{at}: adaptive {} s, best fixed {best} s",
                    a.makespan_s
                );
            }
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

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

        /// Whatever the time and the new value, a `max-parallelism` change shows as the
        /// controller's limit within one control interval (1 s) under either controller, and the
        /// limit never exceeds the value in force.
        #[test]
        fn a_parameter_change_is_obeyed_within_one_control_interval(
            at_ms in 5_000u64..600_000, value in 1u32..16, aimd: bool,
        ) {
            let controller = if aimd { "aimd" } else { "pacer" };
            let s = squeeze_with(&format!(
                "[strategies.adaptive]\ncontroller = \"{controller}\"\n[[timeline]]\nat = \"{at_ms}ms\"\nset = {{ max-parallelism = {value} }}\n"
            ));
            let r = run("adaptive", &s);
            let after = (at_ms / 1000 + 1) as usize;
            prop_assume!(after + 1 < r.timeseries.len());
            for row in &r.timeseries[after..] {
                let limit = row.concurrency_limit.expect("adaptive records its limit");
                if aimd {
                    prop_assert!(limit <= value, "second {}: limit {} above {}", row.second, limit, value);
                } else {
                    prop_assert_eq!(limit, value, "second {}", row.second);
                }
            }
            for row in &r.timeseries[..(at_ms / 1000) as usize] {
                prop_assert!(row.concurrency_limit.expect("recorded") <= 2, "before the change the limit is at most 2");
            }
        }

        /// Wherever cancellations of files, users or the run fall, a cancelled file has no call
        /// in flight the moment it is cancelled (cancellation latency zero), and every file ends
        /// in one final state.
        #[test]
        fn cancellation_leaves_no_call_in_flight(
            cancels in proptest::collection::vec((1_000u64..900_000, 0u8..3, 1u32..=100), 1..5),
        ) {
            let mut extra = String::new();
            for (at, kind, n) in &cancels {
                let target = match kind {
                    0 => format!("file = \"file-{n}\""),
                    1 => format!("user = \"user-{}\"", n % 4 + 1),
                    _ => "run = true".to_owned(),
                };
                extra.push_str(&format!("[[timeline]]\nat = \"{at}ms\"\ncancel = {{ {target} }}\n"));
            }
            let r = run("adaptive", &squeeze_with(&extra));
            let x = &r.summary;
            if let Some(c) = x.cancel_latency_s {
                prop_assert_eq!(c.max, 0.0);
            }
            prop_assert_eq!(x.files_completed + x.files_failed + x.files_cancelled + x.files_rejected, x.files_total);
        }
    }
}

#[test]
fn a_zero_control_interval_is_refused_rather_than_spinning() {
    // A zero interval would loop without letting paused time advance: the run would hang.
    let s = squeeze_with("[strategies.adaptive]\ninterval = \"0s\"\n");
    let err = strategies::build("adaptive", &s).err().expect("refused").to_string();
    assert!(err.contains("interval `0s` must lie between 1ms and 1h"), "{err}");
}

#[test]
fn the_pacer_recovers_within_30_seconds_of_a_limit_cut_or_an_outage_for_20_seeds() {
    // The recovery goal: back to 90% of the new achievable throughput within 30
    // simulated seconds (`recovery_s`, see `sim::recovery`), after the TPM limit halves and is
    // restored (`tpm-cut`) and after a two-minute outage (`outage`), for 20 seeds each. In
    // `tpm-cut` the pacer also finishes every file near the ideal, almost without 429s.
    for (scenario, text) in [
        ("tpm-cut", include_str!("../../scenarios/tpm-cut.toml")),
        ("outage", include_str!("../../scenarios/outage.toml")),
    ] {
        for seed in 1..=20 {
            let s = shipped(text, seed);
            let a = run("adaptive", &s).summary;
            let at = format!("{scenario} seed {seed}");
            eprintln!(
                "REC {at} {:?} eff {} thr {}/{}",
                a.recovery_s, a.efficiency, a.llm_throttled, a.llm_requests
            );
            let recovery = a.recovery_s.expect("both scenarios have disruptions");
            assert!(recovery <= 30.0, "{at}: recovery {recovery} s");
            assert_eq!(a.completion, 1.0, "{at}");
            if scenario == "tpm-cut" {
                assert!(a.efficiency >= 0.97, "{at}: efficiency {}", a.efficiency);
                assert!(
                    a.llm_throttled as f64 <= 0.005 * a.llm_requests as f64,
                    "{at}: {} of {} throttled",
                    a.llm_throttled,
                    a.llm_requests
                );
            }
        }
    }
}
