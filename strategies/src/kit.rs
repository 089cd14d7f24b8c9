//! The testing kit (feature `kit`): proptest generators of workloads, provider settings and
//! fault schedules, the invariants every strategy owes, checked over a finished run's
//! [`sim::trace::Trace`], and one call, [`check_strategy`], that runs a strategy (yours or a
//! built-in) through many generated cases and names the first broken promise with a scenario
//! that replays it.
//!
//! ```
//! use strategies::kit::{Expect, check_strategy};
//!
//! // The built-in `fixed` strategy, through 3 generated cases (use hundreds in a real test).
//! let built = |s: &sim::Scenario| strategies::build("fixed", s).expect("a built-in");
//! check_strategy(built, &Expect::default(), 3).expect("fixed keeps every promise");
//! ```
//!
//! The invariants ([`Invariant`]), each over every chunk of the run:
//! - **final state**: no file is left unfinished, and every chunk of a completed file holds the
//!   provider's verdict for it;
//! - **stored once**: no chunk's verdict is stored twice (a second store is allowed only after a
//!   crash lost the first, as at-end results are lost);
//! - **no redo after a crash**: no call starts after a crash for a chunk whose verdict the store
//!   kept through it (where a design cannot avoid it, [`Expect::redo_after_crash`] allows it and
//!   the count is returned);
//! - **no call after a visible cancel**: no call for a file starts after its cancellation was
//!   requested plus [`Expect::cancel_visible_after`];
//! - **provider limits**: over any span of the run, the answered calls' TPM charges and their
//!   count stay within what the highest TPM and RPM in effect allow: a minute's worth per minute
//!   of span plus two minutes' worth (a refilling bucket admits its capacity plus its refill; a
//!   fixed window admits a window more; the network's delay between send and admission is
//!   within that slack);
//! - **same seed, same report**: a second run of the case gives the same report, trace included.

use std::fmt;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use sim::results::ChunkState;
use sim::scenario::FileId;
use sim::trace::{Stored, Trace};
use sim::{RunOptions, RunReport, Scenario};

use crate::Strategy;
use proptest::strategy::Strategy as _;

/// A timeline fault, at a time in seconds from the start.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Every request fails with `status` for `for_s` seconds.
    Outage {
        /// Start.
        at_s: u32,
        /// Length.
        for_s: u32,
        /// The HTTP status given.
        status: u16,
    },
    /// Answers take `factor` times as long for `for_s` seconds (a latency spike).
    Slowdown {
        /// Start.
        at_s: u32,
        /// Length.
        for_s: u32,
        /// How many times slower.
        factor: u32,
    },
    /// The provider's TPM becomes `tpm`.
    TpmCut {
        /// When.
        at_s: u32,
        /// The new limit.
        tpm: u64,
    },
    /// The provider's RPM becomes `rpm` (the scenario sets none at first: this imposes one).
    RpmCut {
        /// When.
        at_s: u32,
        /// The new limit.
        rpm: u64,
    },
    /// One file is cancelled.
    CancelFile {
        /// When.
        at_s: u32,
        /// Which file (`file-N`, from 1).
        file: u32,
    },
    /// One user's files are cancelled.
    CancelUser {
        /// When.
        at_s: u32,
        /// Which user (`user-N`, from 1).
        user: u32,
    },
    /// The whole run is cancelled.
    CancelRun {
        /// When.
        at_s: u32,
    },
    /// The orchestrator crashes and restarts `restart_after_s` later.
    Crash {
        /// When.
        at_s: u32,
        /// Its downtime.
        restart_after_s: u32,
    },
}

impl Fault {
    /// When it happens, in seconds from the start.
    pub fn at_s(&self) -> u32 {
        match self {
            Fault::Outage { at_s, .. }
            | Fault::Slowdown { at_s, .. }
            | Fault::TpmCut { at_s, .. }
            | Fault::RpmCut { at_s, .. }
            | Fault::CancelFile { at_s, .. }
            | Fault::CancelUser { at_s, .. }
            | Fault::CancelRun { at_s }
            | Fault::Crash { at_s, .. } => *at_s,
        }
    }

    fn toml(&self) -> String {
        let entry = |at: u32, action: String| format!("[[timeline]]\nat = \"{at}s\"\n{action}\n");
        match self {
            Fault::Outage { at_s, for_s, status } => {
                entry(*at_s, format!("outage = {{ for = \"{for_s}s\", status = {status} }}"))
            }
            Fault::Slowdown { at_s, for_s, factor } => {
                entry(*at_s, format!("slowdown = {{ for = \"{for_s}s\", factor = {factor} }}"))
            }
            Fault::TpmCut { at_s, tpm } => entry(*at_s, format!("limits = {{ tpm = {tpm} }}")),
            Fault::RpmCut { at_s, rpm } => entry(*at_s, format!("limits = {{ rpm = {rpm} }}")),
            Fault::CancelFile { at_s, file } => entry(*at_s, format!("cancel = {{ file = \"file-{file}\" }}")),
            Fault::CancelUser { at_s, user } => entry(*at_s, format!("cancel = {{ user = \"user-{user}\" }}")),
            Fault::CancelRun { at_s } => entry(*at_s, "cancel = { run = true }".into()),
            Fault::Crash { at_s, restart_after_s } => {
                entry(*at_s, format!("crash = {{ restart_after = \"{restart_after_s}s\" }}"))
            }
        }
    }
}

/// One generated case: a small workload, a provider with its limits and noise, and a fault
/// schedule. Its [`Case::toml`] is a scenario file `orchbench run` replays.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// The scenario's seed.
    pub seed: u64,
    /// Files (2 to 24).
    pub files: u32,
    /// Users (1 to 4).
    pub users: u32,
    /// The most chunks a file has (1 to 12).
    pub max_chunks: u32,
    /// The provider's TPM.
    pub tpm: u64,
    /// The chance of a 5xx.
    pub error_rate: f64,
    /// The chance that a call hangs until the client's timeout.
    pub hang_rate: f64,
    /// The provider's base latency in milliseconds (its tail comes from `sigma` and hangs).
    pub latency_ms: u32,
    /// The spread of latency (log-normal sigma, 0 to 1): the long tail of slow answers.
    pub sigma: f64,
    /// The chance that a queue delivers a message again (at-least-once), for designs with queues
    /// (`[strategies.sqs] duplicate_rate`).
    pub duplicate_rate: f64,
    /// At-end results (else incremental).
    pub at_end: bool,
    /// The faults, in time order.
    pub faults: Vec<Fault>,
}

impl Case {
    /// The scenario file, with `strategies` appended (`[strategies.NAME]` tables, or "").
    pub fn toml(&self, strategies: &str) -> String {
        let results = if self.at_end { "at-end" } else { "incremental" };
        let mut t = format!(
            r#"name = "kit-case"
description = "a case generated by strategies::kit"
seed = {seed}
results = "{results}"
time_limit = "12h"
[workload]
files = {files}
users = {users}
chunks_per_file = {{ dist = "uniform", min = 1, max = {max_chunks} }}
prompt_tokens = {{ dist = "normal", mean = 800, stddev = 300 }}
completion_tokens = {{ dist = "uniform", min = 20, max = 200 }}
max_tokens = 200
arrival = {{ kind = "poisson", per_minute = 30 }}
[provider]
tpm = {tpm}
error_rate = {error_rate}
hang_rate = {hang_rate}
invalid_rate = 0.3
latency = {{ base_ms = {latency_ms}, sigma = {sigma} }}
[client]
request_timeout = "30s"
[params]
max-parallelism = 6
"#,
            seed = self.seed,
            files = self.files,
            users = self.users,
            max_chunks = self.max_chunks,
            tpm = self.tpm,
            error_rate = self.error_rate,
            hang_rate = self.hang_rate,
            latency_ms = self.latency_ms,
            sigma = self.sigma,
        );
        for f in &self.faults {
            t.push_str(&f.toml());
        }
        // The duplicate rate goes into the `sqs` table, which `strategies` may already open.
        let dup = format!("duplicate_rate = {}\n", self.duplicate_rate);
        match strategies.find("[strategies.sqs]\n") {
            Some(i) => {
                let at = i + "[strategies.sqs]\n".len();
                t.push_str(&strategies[..at]);
                t.push_str(&dup);
                t.push_str(&strategies[at..]);
            }
            None => {
                t.push_str(strategies);
                t.push_str("\n[strategies.sqs]\n");
                t.push_str(&dup);
            }
        }
        t
    }
}

/// Settings that make the built-in strategies patient enough to finish most cases (a chunk given
/// up on is still a final state, so the kit holds either way).
pub const PATIENT: &str = r#"
[strategies.fixed]
max_attempts = 1000
backoff = { initial = "100ms", max = "2s" }
[strategies.cookbook]
max_attempts = 1000
[strategies.sqs]
max_receive_count = 1000
"#;

fn fault(files: u32, users: u32) -> impl proptest::strategy::Strategy<Value = Fault> {
    // Crashes and cancels weigh more: their invariants need them mid-run, and most faults drawn
    // land after a small run has ended.
    prop_oneof![
        1 => (0u32..120, 1u32..90, prop_oneof![Just(500u16), Just(503)])
            .prop_map(|(at_s, for_s, status)| Fault::Outage { at_s, for_s, status }),
        1 => (0u32..120, 1u32..90, 2u32..20)
            .prop_map(|(at_s, for_s, factor)| Fault::Slowdown { at_s, for_s, factor }),
        1 => (0u32..120, 5u64..60).prop_map(|(at_s, rpm)| Fault::RpmCut { at_s, rpm }),
        1 => (0u32..120, 2_000u64..40_000).prop_map(|(at_s, tpm)| Fault::TpmCut { at_s, tpm }),
        2 => (0u32..60, 1..=files).prop_map(|(at_s, file)| Fault::CancelFile { at_s, file }),
        1 => (0u32..60, 1..=users).prop_map(|(at_s, user)| Fault::CancelUser { at_s, user }),
        1 => (0u32..60).prop_map(|at_s| Fault::CancelRun { at_s }),
        3 => (0u32..60, 1u32..60).prop_map(|(at_s, restart_after_s)| Fault::Crash { at_s, restart_after_s }),
    ]
}

/// Generated cases: 2-24 files of 1-12 chunks from 1-4 users arriving at 30 a minute, a provider
/// at 5,000-120,000 TPM (tight enough that files are in flight for a while) with up to 20% 5xx
/// and 3% hangs, 0.1-3 s base latency with a log-normal tail (sigma up to 1), a 30 s client timeout, up to 30%
/// duplicate deliveries for queues, at-end or incremental results, and up to four faults
/// (outages, latency spikes, TPM and RPM cuts, cancels of a file, a user or the run, crashes) while files
/// arrive and run: outages, spikes and cuts in the first two minutes, cancels and crashes in the
/// first (arrivals last up to 48 s).
/// Shrinking makes the workload smaller, the noise lower and the schedule shorter.
pub fn cases() -> impl proptest::strategy::Strategy<Value = Case> {
    (2u32..=24, 1u32..=4).prop_flat_map(|(files, users)| {
        (
            0u64..1_000_000,
            1u32..=12,
            5_000u64..120_000,
            0.0f64..0.2,
            0.0f64..0.03,
            (100u32..3_000, 0.0f64..1.0, 0.0f64..0.3),
            any::<bool>(),
            proptest::collection::vec(fault(files, users), 0..=4),
        )
            .prop_map(
                move |(seed, max_chunks, tpm, error_rate, hang_rate, (latency_ms, sigma, dup), at_end, mut faults)| {
                    faults.sort_by_key(Fault::at_s);
                    Case {
                        seed,
                        files,
                        users,
                        max_chunks,
                        tpm,
                        error_rate: (error_rate * 1000.0).round() / 1000.0,
                        hang_rate: (hang_rate * 1000.0).round() / 1000.0,
                        latency_ms,
                        sigma: (sigma * 100.0).round() / 100.0,
                        duplicate_rate: (dup * 100.0).round() / 100.0,
                        at_end,
                        faults,
                    }
                },
            )
    })
}

/// What a strategy promises beyond the invariants every one owes.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    /// After a crash, calls for chunks whose verdicts survived it are allowed (and counted): a
    /// design that keeps no record of what is stored cannot avoid them. Default false.
    pub redo_after_crash: bool,
    /// How long a cancellation takes to reach the component that starts calls (a flag in a
    /// table read before each call: 0). Default 0.
    pub cancel_visible_after: Duration,
}

/// An invariant, as [`Violation`] names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invariant {
    /// Every file ends, and every chunk of a completed file holds the provider's verdict.
    FinalState,
    /// No verdict stored twice.
    StoredOnce,
    /// No call after a crash for a chunk whose verdict survived it.
    NoRedoAfterCrash,
    /// No call for a file after its cancellation is visible.
    NoCallAfterCancel,
    /// The provider never admits more than its limits allow.
    ProviderLimits,
    /// The same case gives the same report.
    SameSeedSameReport,
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invariant::FinalState => "every chunk ends in exactly one final state",
            Invariant::StoredOnce => "no result is stored twice",
            Invariant::NoRedoAfterCrash => "nothing stored before a crash is validated again",
            Invariant::NoCallAfterCancel => "no LLM call starts after a cancel is visible",
            Invariant::ProviderLimits => "the provider's accounting never exceeds its limits",
            Invariant::SameSeedSameReport => "the same seed gives the same report",
        })
    }
}

/// A broken invariant, with the first place it broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which.
    pub invariant: Invariant,
    /// Where and how, in words (file, chunk, times).
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "broken: {}: {}", self.invariant, self.detail)
    }
}

/// What a passing run showed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// Calls after a crash for chunks whose verdicts survived it (allowed by
    /// [`Expect::redo_after_crash`]).
    pub redone_calls: u64,
}

/// Checks the invariants over one finished run of `scenario` (its report must carry a trace:
/// run it with [`RunOptions::trace`]). The same-seed invariant needs a second run: see
/// [`check_case`].
pub fn check_run(scenario: &Scenario, report: &RunReport, expect: &Expect) -> Result<Checked, Violation> {
    let trace: &Trace = report.trace.as_deref().ok_or_else(|| Violation {
        invariant: Invariant::FinalState,
        detail: "the report has no trace: run with RunOptions { trace: true, .. }".into(),
    })?;
    let fail = |invariant, detail: String| Err(Violation { invariant, detail });
    let verdicts = sim::results::provider_verdicts(scenario);
    let at = |d: Duration| format!("{:.3}s", d.as_secs_f64());
    // Final state.
    for f in &trace.files {
        let name = f.file.to_string();
        if !f.status.is_final() {
            return fail(Invariant::FinalState, format!("{name} ended the run {:?}", f.status));
        }
        if f.status == sim::FileStatus::Completed {
            for (c, state) in f.chunks.iter().enumerate() {
                let want = verdicts[f.file.0 as usize][c];
                if *state != ChunkState::Validated(want) {
                    return fail(
                        Invariant::FinalState,
                        format!("{name} completed, but chunk {c} holds {state:?}, not the provider's {want:?}"),
                    );
                }
            }
        }
    }
    // Stored once: a second store of a chunk needs a crash between that did not keep it.
    let mut last_store: std::collections::BTreeMap<(FileId, u32), Duration> = std::collections::BTreeMap::new();
    for r in trace.reported.iter().filter(|r| r.stored == Stored::New) {
        let k = (r.file, r.chunk);
        if let Some(&before) = last_store.get(&k) {
            let lost = trace
                .crashes
                .iter()
                .any(|c| c.at >= before && c.at <= r.at && c.kept.binary_search(&k).is_err());
            if !lost {
                return fail(
                    Invariant::StoredOnce,
                    format!(
                        "{} chunk {} stored at {} and again at {} with no crash losing it between",
                        k.0,
                        k.1,
                        at(before),
                        at(r.at)
                    ),
                );
            }
        }
        last_store.insert(k, r.at);
    }
    // No redo after a crash.
    let mut checked = Checked::default();
    for crash in &trace.crashes {
        for call in trace.calls.iter().filter(|c| c.sent > crash.at) {
            if crash.kept.binary_search(&(call.file, call.chunk)).is_ok() {
                if !expect.redo_after_crash {
                    return fail(
                        Invariant::NoRedoAfterCrash,
                        format!(
                            "{} chunk {} was stored before the crash at {} and called again at {}",
                            call.file,
                            call.chunk,
                            at(crash.at),
                            at(call.sent)
                        ),
                    );
                }
                checked.redone_calls += 1;
            }
        }
    }
    // No call after a visible cancel.
    for call in &trace.calls {
        let f = &trace.files[call.file.0 as usize];
        if let Some(t) = f.cancel_requested
            && call.sent > t + expect.cancel_visible_after
        {
            return fail(
                Invariant::NoCallAfterCancel,
                format!(
                    "{} chunk {} was called at {}, after its cancel at {}",
                    call.file,
                    call.chunk,
                    at(call.sent),
                    at(t)
                ),
            );
        }
    }
    // Provider limits.
    let highest = |initial: Option<std::num::NonZeroU64>,
                   pick: fn(&sim::scenario::LimitsUpdate) -> Option<std::num::NonZeroU64>| {
        let mut limit = initial?.get();
        for e in &scenario.timeline {
            if let sim::scenario::Action::Limits(l) = &e.get_ref().action {
                limit = limit.max(pick(l)?.get());
            }
        }
        Some(limit)
    };
    let answered: Vec<&sim::trace::Call> = {
        let mut v: Vec<_> = trace
            .calls
            .iter()
            .filter(|c| c.end == Some(sim::trace::CallEnd::Answered))
            .collect();
        v.sort_by_key(|c| c.sent);
        v
    };
    if let Some(tpm) = highest(scenario.provider.tpm, |l| l.tpm) {
        within_limit(&answered, tpm, |c| c.charge, "tokens")?;
    }
    if let Some(rpm) = highest(scenario.provider.rpm, |l| l.rpm) {
        within_limit(&answered, rpm, |_| 1, "requests")?;
    }
    Ok(checked)
}

/// Whether every span of `calls` (sorted by send time) keeps `Σ amount ≤ limit × (2 + span in
/// minutes)`: with prefix sums, `P_j − P_i ≤ limit × (2 + (t_j − t_i)/60)` for all `i < j`, which
/// is `P_j − limit·t_j/60 ≤ 2·limit + min_i (P_i − limit·t_i/60)`, one pass with a running minimum.
fn within_limit(
    calls: &[&sim::trace::Call],
    limit: u64,
    amount: impl Fn(&sim::trace::Call) -> u64,
    what: &str,
) -> Result<(), Violation> {
    let per_s = limit as f64 / 60.0;
    let (mut sum, mut lowest) = (0.0f64, f64::INFINITY);
    let mut lowest_at = Duration::ZERO;
    for c in calls {
        let t = c.sent.as_secs_f64();
        // The sum before this call, as a span's start.
        lowest = if sum - per_s * t < lowest {
            lowest_at = c.sent;
            sum - per_s * t
        } else {
            lowest
        };
        sum += amount(c) as f64;
        let excess = (sum - per_s * t) - lowest - 2.0 * limit as f64;
        if excess > 1e-6 * limit as f64 {
            return Err(Violation {
                invariant: Invariant::ProviderLimits,
                detail: format!(
                    "from {:.3}s to {:.3}s the provider answered {:.0} {what} more than {limit} a minute allows",
                    lowest_at.as_secs_f64(),
                    t,
                    excess
                ),
            });
        }
    }
    Ok(())
}

/// Runs `strategy` through `scenario` twice with a trace, checks every invariant and that the
/// two reports are equal.
pub fn check_case(strategy: &dyn Strategy, scenario: &Scenario, expect: &Expect) -> Result<Checked, String> {
    let opts = RunOptions {
        trace: true,
        ..RunOptions::default()
    };
    let run = || crate::simulate(strategy, scenario, &opts).map_err(|e| format!("the run failed: {e}"));
    let first = run()?;
    let checked = check_run(scenario, &first, expect).map_err(|v| v.to_string())?;
    let mut again = run()?;
    again.summary.wall_time_s = first.summary.wall_time_s;
    if again != first {
        return Err(Violation {
            invariant: Invariant::SameSeedSameReport,
            detail: format!(
                "a second run differs (digest {} then {}, {} then {} calls)",
                first.summary.results_digest,
                again.summary.results_digest,
                first.summary.llm_requests,
                again.summary.llm_requests
            ),
        }
        .to_string());
    }
    Ok(checked)
}

/// A case the kit found broken: the case, its scenario and what broke.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The smallest failing case proptest found (none when the kit itself gave up).
    pub case: Option<Case>,
    /// Its scenario file (with the strategy tables the kit used).
    pub scenario: String,
    /// What broke.
    pub why: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.why)?;
        match &self.case {
            Some(case) => write!(
                f,
                "\nseed {}; the case: {case:?}\nreplay: save the scenario below as case.toml and run \
                 `orchbench run case.toml` (built-in strategies), or check_case on Scenario::parse of it\n\
                 --- case.toml ---\n{}",
                case.seed, self.scenario
            ),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Failure {}

/// Runs the strategy `make` builds (from each case's scenario) through `cases` generated cases
/// (the environment's `ORCHBENCH_KIT_CASES` overrides the count, for a nightly run), checking
/// every invariant of each, twice-run for determinism. Cases come from a fixed generator seed, so
/// a failure in CI fails again on your machine; a failure is shrunk to a small case and returned
/// with its scenario file.
pub fn check_strategy(
    make: impl Fn(&Scenario) -> Box<dyn Strategy>,
    expect: &Expect,
    cases: u32,
) -> Result<(), Box<Failure>> {
    let count = std::env::var("ORCHBENCH_KIT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    let config = Config {
        cases: count,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let scenario_of = |case: &Case| {
        let text = case.toml(PATIENT);
        Scenario::parse(&text, "kit-case")
            .map(|s| (s, text))
            .map_err(|e| format!("a generated case is not a valid scenario: {e}"))
    };
    let outcome = runner.run(&self::cases(), |case| {
        let (scenario, _) = scenario_of(&case).map_err(TestCaseError::fail)?;
        let strategy = make(&scenario);
        check_case(strategy.as_ref(), &scenario, expect)
            .map(|_| ())
            .map_err(TestCaseError::fail)
    });
    match outcome {
        Ok(()) => Ok(()),
        Err(TestError::Fail(why, case)) => {
            let scenario = case.toml(PATIENT);
            Err(Box::new(Failure {
                case: Some(case),
                scenario,
                why: why.to_string(),
            }))
        }
        Err(TestError::Abort(why)) => Err(Box::new(Failure {
            case: None,
            scenario: String::new(),
            why: format!("the kit gave up: {why}"),
        })),
    }
}
