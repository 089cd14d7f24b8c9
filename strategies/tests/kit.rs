//! The testing kit ([`strategies::kit`]) over every built-in strategy, and over a strategy broken
//! on purpose, to show that it catches what it claims to.

use strategies::kit::{Expect, check_strategy};

/// Cases per strategy in CI (about a second each strategy); `ORCHBENCH_KIT_CASES` raises it for
/// a nightly run.
const CASES: u32 = 600;

fn check(name: &'static str, expect: &Expect) {
    let built = move |s: &sim::Scenario| strategies::build(name, s).expect("a built-in strategy");
    if let Err(f) = check_strategy(built, expect, CASES) {
        panic!("`{name}` broke a promise of the kit:\n{f}");
    }
}

#[test]
fn fixed_keeps_every_promise_of_the_kit() {
    check("fixed", &Expect::default());
}

#[test]
fn cookbook_keeps_every_promise_of_the_kit() {
    check("cookbook", &Expect::default());
}

#[test]
fn adaptive_keeps_every_promise_of_the_kit() {
    check("adaptive", &Expect::default());
}

#[test]
fn stepfn_keeps_every_promise_of_the_kit() {
    // StopExecution does not stop a Lambda invocation already running (Step Functions developer
    // guide; see strategies::stepfn): it makes its call after its cold start and its handler's
    // own time, 250 ms + 20 ms by default, so the cancel reaches the calls that much later.
    let expect = Expect {
        cancel_visible_after: std::time::Duration::from_millis(270),
        ..Expect::default()
    };
    check("stepfn", &expect);
}

#[test]
fn sqs_keeps_every_promise_of_the_kit() {
    check("sqs", &Expect::default());
}

/// The generator must reach what the invariants are about, or a passing kit proves little: over
/// the cases CI runs, some crash while results are stored and files are still running, some
/// cancel a file with calls already made, and some bring an outage that fails calls.
#[test]
fn the_generated_cases_reach_crashes_cancels_and_outages_mid_run() {
    use proptest::strategy::{Strategy as _, ValueTree};
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    use sim::trace::CallEnd;

    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let (mut crashes, mut cancels, mut outages) = (0, 0, 0);
    for _ in 0..CASES {
        let case = strategies::kit::cases()
            .new_tree(&mut runner)
            .expect("a case")
            .current();
        let s = sim::Scenario::parse(&case.toml(strategies::kit::PATIENT), "case").expect("valid");
        let fixed = strategies::build("fixed", &s).expect("built in");
        let opts = sim::RunOptions {
            trace: true,
            ..sim::RunOptions::default()
        };
        let r = strategies::simulate(fixed.as_ref(), &s, &opts).expect("runs");
        let t = r.trace.expect("asked for");
        // A crash that kept results while a file was still to do.
        if t.crashes
            .iter()
            .any(|c| !c.kept.is_empty() && t.calls.iter().any(|call| call.sent > c.at))
        {
            crashes += 1;
        }
        // A cancelled file that had calls before its cancel.
        if t.files.iter().any(|f| {
            f.status == sim::FileStatus::Cancelled
                && f.cancel_requested
                    .is_some_and(|at| t.calls.iter().any(|c| c.file == f.file && c.sent < at))
        }) {
            cancels += 1;
        }
        if t.calls
            .iter()
            .any(|c| c.end == Some(CallEnd::Error(sim::backend::ErrorKind::Server)))
        {
            outages += 1;
        }
    }
    eprintln!("of {CASES} cases: {crashes} crashed mid-run, {cancels} cancelled running files, {outages} had 5xx");
    // At least one case in ten of each (the generator is seeded: the counts are the same on
    // every machine).
    let tenth = CASES / 10;
    assert!(
        crashes >= tenth && cancels >= tenth && outages >= tenth,
        "of {CASES} cases, {crashes} crashed mid-run, {cancels} cancelled running files, {outages} had 5xx"
    );
}

/// A traced run of `fixed` on a small case with a cancel, to tamper with.
fn traced() -> (sim::Scenario, sim::RunReport) {
    use strategies::kit::{Case, Fault, PATIENT};
    let case = Case {
        seed: 5,
        files: 6,
        users: 2,
        max_chunks: 4,
        tpm: 60_000,
        error_rate: 0.0,
        hang_rate: 0.0,
        latency_ms: 400,
        sigma: 0.3,
        duplicate_rate: 0.0,
        at_end: false,
        faults: vec![Fault::CancelFile { at_s: 4, file: 2 }],
    };
    let s = sim::Scenario::parse(&case.toml(PATIENT), "case").expect("valid");
    let fixed = strategies::build("fixed", &s).expect("built in");
    let opts = sim::RunOptions {
        trace: true,
        ..sim::RunOptions::default()
    };
    let r = strategies::simulate(fixed.as_ref(), &s, &opts).expect("runs");
    strategies::kit::check_run(&s, &r, &Expect::default()).expect("the untouched run passes");
    (s, r)
}

fn broken(s: &sim::Scenario, r: &sim::RunReport) -> strategies::kit::Invariant {
    strategies::kit::check_run(s, r, &Expect::default())
        .expect_err("the tampered run is caught")
        .invariant
}

#[test]
fn the_kit_catches_a_wrong_verdict_in_a_completed_file() {
    let (s, mut r) = traced();
    let t = r.trace.as_mut().expect("traced");
    let f = t
        .files
        .iter_mut()
        .find(|f| f.status == sim::FileStatus::Completed)
        .expect("a completed file");
    // Flip the first chunk's verdict: the store holds something the provider never said.
    if let sim::results::ChunkState::Validated(v) = &mut f.chunks[0] {
        v.valid = !v.valid;
    }
    assert_eq!(broken(&s, &r), strategies::kit::Invariant::FinalState);
}

#[test]
fn the_kit_catches_a_result_stored_twice() {
    let (s, mut r) = traced();
    let t = r.trace.as_mut().expect("traced");
    let mut again = *t
        .reported
        .iter()
        .find(|x| x.stored == sim::trace::Stored::New)
        .expect("a stored result");
    again.at += std::time::Duration::from_secs(1);
    t.reported.push(again);
    assert_eq!(broken(&s, &r), strategies::kit::Invariant::StoredOnce);
}

#[test]
fn the_kit_catches_a_call_after_a_cancel() {
    let (s, mut r) = traced();
    let t = r.trace.as_mut().expect("traced");
    let f = t
        .files
        .iter()
        .find(|f| f.cancel_requested.is_some())
        .expect("the cancelled file");
    let mut late = t.calls[0];
    (late.file, late.sent) = (
        f.file,
        f.cancel_requested.expect("cancelled") + std::time::Duration::from_millis(1),
    );
    t.calls.push(late);
    assert_eq!(broken(&s, &r), strategies::kit::Invariant::NoCallAfterCancel);
}

#[test]
fn the_kit_catches_a_provider_answering_past_its_tpm() {
    let (s, mut r) = traced();
    let t = r.trace.as_mut().expect("traced");
    // Two minutes' worth of tokens (60,000 TPM) answered within one second, on top of the run.
    let mut burst = t.calls[0];
    burst.end = Some(sim::trace::CallEnd::Answered);
    burst.charge = 1_000;
    for i in 0..130u64 {
        burst.sent = std::time::Duration::from_millis(1_000 + i);
        t.calls.push(burst);
    }
    assert_eq!(broken(&s, &r), strategies::kit::Invariant::ProviderLimits);
}

/// A strategy that remembers something between runs (a static counter): its second run of the
/// same case waits longer than its first.
struct Forgetful;

static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl strategies::Strategy for Forgetful {
    fn name(&self) -> &str {
        "forgetful"
    }
    fn describe(&self) -> &str {
        "validates each file in turn after a pause that grows every run"
    }
    fn run(&self, ctx: sim::RunContext) -> strategies::BoxRun {
        let pause = std::time::Duration::from_millis(RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        Box::pin(async move {
            while let Some(file) = ctx.next_file().await {
                ctx.sleep(pause).await;
                for &chunk in &file.chunks {
                    if file.cancel.is_cancelled() {
                        ctx.chunk_done(file.id, chunk, sim::ChunkOutcome::Cancelled);
                        continue;
                    }
                    let outcome = match ctx.call(ctx.request(file.id, chunk, 0)).await {
                        Ok(a) => sim::ChunkOutcome::Validated(a),
                        Err(_) => sim::ChunkOutcome::Failed,
                    };
                    ctx.chunk_done(file.id, chunk, outcome);
                }
            }
        })
    }
}

#[test]
fn the_kit_catches_a_run_that_depends_on_more_than_its_seed() {
    let (s, _) = traced();
    let why = strategies::kit::check_case(&Forgetful, &s, &Expect::default()).expect_err("the second run differs");
    assert!(
        why.contains(&strategies::kit::Invariant::SameSeedSameReport.to_string()),
        "{why}"
    );
}
