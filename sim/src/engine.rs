//! Runs one strategy through one scenario: builds the run (workload, provider, context), drives
//! arrivals and the timeline, restarts the strategy after crashes, and turns the bookkeeping into a
//! [`RunReport`].
//!
//! [`simulate`] does it in virtual time: a current-thread tokio runtime with paused time, where the
//! clock jumps to the next timer whenever every task waits. [`execute`] is the clock-agnostic core,
//! also used for live runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::backend::{LlmBackend, SimBackend};
use crate::bound::{Blackouts, ideal_makespan, ideal_makespans};
use crate::context::{InstantCache, ProgressFn, RunContext};
use crate::error::SimError;
use crate::recorder::EventKind;
use crate::report::{Mode, Percentiles, RunReport, Summary, UserFigures, buckets, round6};
use crate::scenario::{Action, CancelTarget, CrashSpec, Scenario, UserId};
use crate::workload::Workload;

/// A strategy, as the engine sees it: called with a context, once at the start and again after
/// each crash, it processes files until the feed closes.
pub type StrategyFn<'a> = dyn Fn(RunContext) -> Pin<Box<dyn Future<Output = ()> + 'a>> + 'a;

/// Options of one run.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Called with progress now and then.
    pub progress: Option<ProgressFn>,
    /// Live runs only: the scenario runs this many times faster than real time (every duration
    /// divided by it). 1 (or 0, the default) means real time.
    pub time_scale: f64,
    /// Keep the run's [`crate::trace::Trace`] in [`RunReport::trace`] (for the testing kit;
    /// memory grows with calls). Default false.
    pub trace: bool,
    /// The durable result journal: its records are restored before the run starts (those chunks
    /// are not sent again), and every result is appended before it counts. Default none.
    pub journal: Option<Arc<std::sync::Mutex<crate::journal::Journal>>>,
    /// Called with the run's context once it exists, before the strategy starts: how a control
    /// API reaches a live run (progress, parameters, cancellation). Default none.
    pub on_start: Option<StartHook>,
}

/// What [`RunOptions::on_start`] calls with the run's context.
pub type StartHook = Arc<dyn Fn(&RunContext) + Send + Sync>;

impl RunOptions {
    pub(crate) fn scale(&self) -> f64 {
        if self.time_scale > 0.0 { self.time_scale } else { 1.0 }
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Runs `strategy` through `scenario` in simulated time.
pub fn simulate(
    scenario: &Scenario,
    name: &str,
    strategy: &StrategyFn<'_>,
    opts: &RunOptions,
) -> Result<RunReport, SimError> {
    let instant = InstantCache::new();
    let forget = instant.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        // Paused time moves only while the runtime parks: the time read before a park is stale
        // after it (see `InstantCache`).
        .on_thread_unpark(move || forget.forget())
        // Check the (timer-only) driver only when no task is ready, not every 61 polls: no I/O
        // waits here, and a timer due at this instant fires when the ready tasks are done, as
        // it would when they are fewer than 61. 5% of a choreography's time went to those checks.
        .event_interval(u32::MAX)
        .build()
        .map_err(SimError::Runtime)?;
    rt.block_on(async {
        let start = Instant::now();
        let backend = Arc::new(SimBackend::new(
            scenario.provider_config(),
            start,
            scenario.client.request_timeout.0,
            scenario.client.network,
        ));
        run(
            scenario,
            name,
            Mode::Simulated,
            backend,
            start,
            strategy,
            opts,
            Some(instant),
        )
        .await
    })
}

/// Runs `strategy` through `scenario` against `backend`, on whatever clock the runtime has.
pub async fn execute(
    scenario: &Scenario,
    name: &str,
    mode: Mode,
    backend: Arc<dyn LlmBackend>,
    start: Instant,
    strategy: &StrategyFn<'_>,
    opts: &RunOptions,
) -> Result<RunReport, SimError> {
    run(scenario, name, mode, backend, start, strategy, opts, None).await
}

/// [`execute`], with the simulating runtime's [`InstantCache`] when there is one.
#[allow(clippy::too_many_arguments)]
async fn run(
    scenario: &Scenario,
    name: &str,
    mode: Mode,
    backend: Arc<dyn LlmBackend>,
    start: Instant,
    strategy: &StrategyFn<'_>,
    opts: &RunOptions,
    instant: Option<InstantCache>,
) -> Result<RunReport, SimError> {
    let workload = Arc::new(Workload::generate(&scenario.workload, scenario.seed));
    let ctx = RunContext::new(scenario, backend, workload.clone(), start, opts, instant);
    if let Some(hook) = &opts.on_start {
        hook(&ctx);
    }
    let (crash_tx, crash_rx) = mpsc::unbounded_channel();
    let mut background = JoinSet::new();
    background.spawn(arrivals(ctx.clone()));
    background.spawn(timeline(ctx.clone(), scenario.clone(), crash_tx));
    let limit = scenario.time_limit.0;
    let finished = tokio::select! {
        biased;
        () = ctx.panicked() => Ok(()),
        r = tokio::time::timeout(ctx.real(limit), drive(&ctx, strategy, crash_rx)) => r,
    };
    background.abort_all();
    ctx.abort_tasks().await;
    if let Some(message) = ctx.panics().into_iter().next() {
        return Err(SimError::StrategyPanicked {
            strategy: name.to_owned(),
            message,
        });
    }
    if finished.is_err() {
        return Err(SimError::TimeLimit {
            limit,
            unfinished: ctx.lock().unfinished(),
        });
    }
    if let Some(message) = ctx.lock().journal_error.take() {
        return Err(SimError::Journal {
            path: opts
                .journal
                .as_ref()
                .map(|j| j.lock().unwrap_or_else(|e| e.into_inner()).path().display().to_string())
                .unwrap_or_default(),
            message,
        });
    }
    let now = ctx.now();
    ctx.lock().abandon_unfinished(now);
    Ok(report(scenario, name, mode, &ctx, &workload))
}

/// Runs the strategy; on a crash, drops it (and aborts its tasks), waits, and starts it again.
async fn drive(ctx: &RunContext, strategy: &StrategyFn<'_>, mut crashes: mpsc::UnboundedReceiver<CrashSpec>) {
    loop {
        let mut run = strategy(ctx.clone());
        let crash = tokio::select! {
            biased;
            Some(spec) = crashes.recv() => spec,
            () = &mut run => return,
        };
        drop(run);
        let now = ctx.now();
        ctx.lock().crash(now);
        ctx.abort_tasks().await;
        ctx.sleep(crash.restart_after.0).await;
        let now = ctx.now();
        ctx.with_state(|st| st.restart(now));
    }
}

async fn arrivals(ctx: RunContext) {
    let start = ctx.start();
    let files: Vec<_> = ctx.workload().files().iter().map(|f| (f.id, f.arrival)).collect();
    for (id, at) in files {
        tokio::time::sleep_until(start + ctx.real(at)).await;
        let now = ctx.now();
        ctx.with_state(|st| st.arrive(id, now));
    }
}

async fn timeline(ctx: RunContext, scenario: Scenario, crashes: mpsc::UnboundedSender<CrashSpec>) {
    let start = ctx.start();
    for e in scenario.events() {
        tokio::time::sleep_until(start + ctx.real(e.at.0)).await;
        let now = ctx.now();
        match e.action {
            Action::Set(update) => ctx.apply_params(&update),
            Action::Outage(o) => {
                let detail = format!("status {} for {:?}", o.status, o.duration.0);
                ctx.lock()
                    .recorder
                    .event(now, EventKind::OutageStarted, None, None, detail);
            }
            Action::Slowdown(s) => {
                let detail = format!("{}x slower for {:?}", s.factor, s.duration.0);
                ctx.lock()
                    .recorder
                    .event(now, EventKind::SlowdownStarted, None, None, detail);
            }
            Action::Limits(l) => {
                let detail = format!("tpm {:?}, rpm {:?}", l.tpm, l.rpm);
                ctx.lock()
                    .recorder
                    .event(now, EventKind::LimitsChanged, None, None, detail);
            }
            Action::Cancel(target) => ctx.timeline_cancel(target),
            Action::Crash(spec) => {
                // The receiver is gone only when the run already ended.
                let _ = crashes.send(spec);
            }
        }
    }
}

/// Files the timeline cancels (by file, by user among those arrived by then, or the whole run):
/// the work outside the required set.
pub fn cancelled_by_timeline(scenario: &Scenario, workload: &Workload) -> Vec<bool> {
    let timeline: Vec<(Duration, CancelTarget)> = scenario
        .events()
        .into_iter()
        .filter_map(|e| match e.action {
            Action::Cancel(target) => Some((e.at.0, target)),
            _ => None,
        })
        .collect();
    cancelled_by(&timeline, workload)
}

/// Files the cancellations `(when, what)` reach: the same rule as the timeline's.
fn cancelled_by(cancels: &[(Duration, CancelTarget)], workload: &Workload) -> Vec<bool> {
    let mut out = vec![false; workload.files().len()];
    for &(at, target) in cancels {
        for f in workload.files() {
            let hit = match target {
                CancelTarget::File(id) => f.id == id,
                CancelTarget::User(u) => f.user == u && f.arrival <= at,
                CancelTarget::Run => true,
            };
            if hit {
                out[f.id.0 as usize] = true;
            }
        }
    }
    out
}

/// The scenario's disruptions, `[start, end)` in timeline order: each outage, each latency spike,
/// and the orchestrator's downtime after each crash.
pub fn disruptions(scenario: &Scenario) -> Vec<(Duration, Duration)> {
    scenario
        .events()
        .iter()
        .filter_map(|e| match e.action {
            Action::Outage(o) => Some((e.at.0, e.at.0 + o.duration.0)),
            Action::Slowdown(s) => Some((e.at.0, e.at.0 + s.duration.0)),
            Action::Crash(c) => Some((e.at.0, e.at.0 + c.restart_after.0)),
            _ => None,
        })
        .collect()
}

/// The files' arrival times, in order.
pub fn arrival_times(workload: &Workload) -> Vec<Duration> {
    let mut v: Vec<Duration> = workload.files().iter().map(|f| f.arrival).collect();
    v.sort();
    v
}

/// What a run has to recover from (see `sim::recovery`): the outages and crashes, and every
/// change of the provider's limits with the limits in force after it.
pub fn recoveries(scenario: &Scenario, workload: &Workload) -> Vec<crate::recovery::Disruption> {
    use crate::recovery::Disruption;
    let mut out: Vec<Disruption> = disruptions(scenario)
        .into_iter()
        .map(|(start, end)| Disruption::Down { start, end })
        .collect();
    let provider = scenario.provider_config();
    let (mut tpm, mut rpm) = (provider.tpm.map(|l| l.get()), provider.rpm.map(|l| l.get()));
    let mut largest_charge = None;
    for e in scenario.events() {
        if let Action::Limits(l) = e.action {
            tpm = l.tpm.map(|v| v.get()).or(tpm);
            rpm = l.rpm.map(|v| v.get()).or(rpm);
            let largest = *largest_charge.get_or_insert_with(|| {
                workload
                    .files()
                    .iter()
                    .flat_map(|f| (0..f.chunks).map(move |c| (f.id, c)))
                    .map(|(f, c)| {
                        let spec = workload.chunk(f, c);
                        provider.charge(spec.prompt_tokens, spec.max_tokens)
                    })
                    .max()
                    .unwrap_or(0)
            });
            out.push(Disruption::Limits {
                at: e.at.0,
                tpm,
                rpm,
                largest_charge: largest,
            });
        }
    }
    out
}

/// The intervals in which no request can be admitted whatever the strategy: the disruptions.
pub fn blackouts(scenario: &Scenario) -> Blackouts {
    Blackouts::new(disruptions(scenario))
}

/// The ideal makespan of a scenario's required work: one constant per scenario and seed.
pub fn required_ideal(scenario: &Scenario, workload: &Workload) -> Duration {
    let cancelled = cancelled_by_timeline(scenario, workload);
    ideal_makespan(workload, &scenario.provider_config(), &blackouts(scenario), |f, _| {
        !cancelled[f.0 as usize]
    })
}

/// Each user's required files, completions, kept tokens and throughput while it had work.
fn user_figures(workload: &Workload, cancelled: &[bool], st: &crate::context::State) -> Vec<UserFigures> {
    let mut per: std::collections::BTreeMap<UserId, (u64, u64, u64, Duration, Duration)> =
        std::collections::BTreeMap::new();
    for f in workload.files() {
        if cancelled[f.id.0 as usize] {
            continue;
        }
        let e = per.entry(f.user).or_insert((0, 0, 0, Duration::MAX, Duration::ZERO));
        e.0 += 1;
        if st.status(f.id) == crate::context::FileStatus::Completed {
            e.1 += 1;
        }
        e.2 += st.results.file_committed_tokens(f.id);
        e.3 = e.3.min(f.arrival);
        e.4 = e.4.max(st.ended_at(f.id).unwrap_or(f.arrival));
    }
    per.into_iter()
        .map(|(user, (files, files_completed, tokens_kept, first, last))| {
            let active = last.saturating_sub(first).as_secs_f64();
            UserFigures {
                user,
                files,
                files_completed,
                tokens_kept,
                active_s: round6(active),
                throughput_tokens_per_min: if active > 0.0 {
                    round6(tokens_kept as f64 * 60.0 / active)
                } else {
                    0.0
                },
            }
        })
        .collect()
}

fn report(scenario: &Scenario, name: &str, mode: Mode, ctx: &RunContext, workload: &Workload) -> RunReport {
    let provider_stats = ctx.backend().provider_stats();
    let mut st = ctx.lock();
    let makespan = st.last_final;
    let provider = scenario.provider_config();
    // The work a person cancelled during the run (the control API, the dashboard's `q`) is
    // outside it too, as the timeline's is, except the files already completed then: they were
    // wanted and done. (The timeline's rule cannot look at completions: it must give every
    // strategy the same required work.)
    let mut cancelled = cancelled_by_timeline(scenario, workload);
    for (i, (c, by_hand)) in cancelled
        .iter_mut()
        .zip(cancelled_by(&st.live_cancels, workload))
        .enumerate()
    {
        *c |= by_hand && st.status(crate::scenario::FileId(i as u32)) != crate::context::FileStatus::Completed;
    }
    let dark = blackouts(scenario);
    let (mut files_required, mut chunks_required, mut chunks_done) = (0u64, 0u64, 0u64);
    for f in workload.files() {
        if cancelled[f.id.0 as usize] {
            continue;
        }
        files_required += 1;
        // Chunks restored from a journal were an earlier run's work, not this run's.
        let resumed = if st.resumed == 0 {
            0
        } else {
            (0..f.chunks).filter(|&c| st.results.restored(f.id, c)).count() as u64
        };
        chunks_required += u64::from(f.chunks) - resumed;
        if st.status(f.id) == crate::context::FileStatus::Completed {
            chunks_done += u64::from(f.chunks) - resumed;
        }
    }
    let users = user_figures(workload, &cancelled, &st);
    let fairness =
        crate::report::jain(&users.iter().map(|u| u.throughput_tokens_per_min).collect::<Vec<_>>()).map(round6);
    let completion = if chunks_required == 0 {
        1.0
    } else {
        chunks_done as f64 / chunks_required as f64
    };
    // When the run kept exactly the required work (the usual case), one pass gives both bounds.
    let kept_is_required =
        st.resumed == 0 && chunks_done == chunks_required && st.results.committed_total() == chunks_required;
    let [ideal, kept] = if kept_is_required {
        let [b] = ideal_makespans(workload, &provider, &dark, |f, _| [!cancelled[f.0 as usize]]);
        [b, b]
    } else {
        ideal_makespans(workload, &provider, &dark, |f, c| {
            let fresh = !st.results.restored(f, c);
            [
                !cancelled[f.0 as usize] && fresh,
                st.results.committed(f, c).is_some() && fresh,
            ]
        })
    };
    let used = st.results.committed_tokens();
    let billed = provider_stats.map_or(st.recorder.tokens_answered, |s| s.tokens_billed);
    let prompt_billed = provider_stats.map_or(st.recorder.prompt_tokens_answered, |s| s.prompt_tokens_billed);
    let cost = scenario.pricing.cost(prompt_billed, billed - prompt_billed, &st.units);
    let timeseries = st.recorder.series_until(makespan);
    // One list for both figures: finding the largest charge walks every chunk.
    let disrupted = recoveries(scenario, workload);
    let recovery_s = crate::recovery::longest_recovery(&timeseries, &disrupted, makespan).map(round6);
    let backlog_cleared_s =
        crate::recovery::longest_backlog_clearance(&timeseries, &disrupted, &arrival_times(workload), makespan)
            .map(round6);
    let makespan_s = makespan.as_secs_f64();
    let ratio = |bound: Duration| {
        if makespan_s > 0.0 {
            (bound.as_secs_f64() / makespan_s).min(1.0)
        } else {
            1.0
        }
    };
    let rec = &st.recorder;
    let summary = Summary {
        makespan_s: round6(makespan_s),
        files_total: workload.files().len() as u64,
        files_completed: st.counts.completed,
        files_failed: st.counts.failed,
        files_rejected: st.counts.rejected,
        files_cancelled: st.counts.cancelled,
        files_redriven: st.redriven,
        files_required,
        chunks_required,
        completion: round6(completion),
        chunks_total: workload.chunks_total(),
        chunks_validated: st.results.committed_total(),
        chunks_invalid: st.results.invalid_total(),
        llm_requests: rec.requests,
        llm_throttled: rec.throttled,
        llm_errors: rec.errors,
        errors_by_kind: rec.errors_by_kind.clone(),
        retries: rec.retries,
        tokens_billed: billed,
        tokens_wasted: billed.saturating_sub(used),
        throughput_tokens_per_min: if makespan_s > 0.0 {
            round6(used as f64 * 60.0 / makespan_s)
        } else {
            0.0
        },
        tpm_limit: scenario.provider.tpm.map(|t| t.get()),
        ideal_makespan_s: round6(ideal.as_secs_f64()),
        efficiency: round6(completion * ratio(ideal)),
        limit_utilization: round6(ratio(kept)),
        latency_ms: Percentiles::of(&rec.llm_latency_us, 1000.0),
        file_latency_s: Percentiles::of(&rec.file_latency_ms, 1000.0),
        cancel_latency_s: (!rec.cancel_latency_ms.is_empty()).then(|| Percentiles::of(&rec.cancel_latency_ms, 1000.0)),
        duplicate_results: st.duplicates,
        results_resumed: st.resumed,
        results_discarded: st.discarded,
        calls_in_flight_at_cancel: st.in_flight_at_cancel,
        results_digest: format!("{:016x}", st.results.digest()),
        cost,
        orchestration_units: st.units.clone(),
        recovery_s,
        backlog_cleared_s,
        restarts: st.restarts,
        users,
        fairness,
        strategy_metrics: st.metrics.clone(),
        wall_time_s: 0.0,
        transport: None,
    };
    let latency_histogram_ms = buckets(&rec.llm_latency_us, 1000.0);
    let file_latency_histogram_s = buckets(&rec.file_latency_ms, 1000.0);
    RunReport {
        strategy: name.to_owned(),
        mode,
        sweep_value: None,
        summary,
        latency_histogram_ms,
        file_latency_histogram_s,
        timeseries,
        events: std::mem::take(&mut st.recorder.events),
        events_dropped: st.recorder.events_dropped,
        artifacts: std::mem::take(&mut st.artifacts),
        trace: st.take_trace(),
    }
}
