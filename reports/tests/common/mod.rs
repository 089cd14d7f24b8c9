//! Report fixtures: real runs of small scenarios (reports is downstream of the engine, so the
//! fixtures are produced by the engine itself, not hand-written).

#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;

use sim::report::{ReportFile, SCHEMA_VERSION};
use sim::{ChunkOutcome, RunContext, RunOptions, RunReport, Scenario};

pub fn scenario(extra: &str) -> Scenario {
    Scenario::parse(
        &format!(
            r#"
name = "fixture"
description = "a small <scenario> & co"
seed = 3
[workload]
files = 12
users = 3
chunks_per_file = {{ dist = "uniform", min = 2, max = 6 }}
prompt_tokens = {{ dist = "normal", mean = 900, stddev = 200 }}
completion_tokens = {{ dist = "fixed", value = 100 }}
max_tokens = 200
arrival = {{ kind = "poisson", per_minute = 6 }}
[provider]
tpm = 20000
error_rate = 0.05
{extra}"#
        ),
        "fixture",
    )
    .expect("the fixture scenario is valid")
}

type Run = Pin<Box<dyn Future<Output = ()>>>;

/// A one-at-a-time strategy under any name, for reports with many distinct strategies.
pub fn run_named(s: &Scenario, name: &str, workers_hint: u32) -> RunReport {
    let strategy = move |ctx: RunContext| -> Run {
        Box::pin(async move {
            ctx.set_concurrency_limit(workers_hint);
            while let Some(file) = ctx.next_file().await {
                for &c in &file.chunks {
                    let mut outcome = ChunkOutcome::Failed;
                    for attempt in 0..6 {
                        match ctx.call(ctx.request(file.id, c, attempt)).await {
                            Ok(r) => {
                                outcome = ChunkOutcome::Validated(r);
                                break;
                            }
                            Err(e) => {
                                tokio::time::sleep(e.retry_after().unwrap_or(std::time::Duration::from_millis(500)))
                                    .await
                            }
                        }
                    }
                    ctx.chunk_done(file.id, c, outcome);
                }
            }
        })
    };
    sim::simulate(s, name, &strategy, &RunOptions::default()).expect("the fixture run finishes")
}

pub fn report(s: &Scenario, runs: Vec<RunReport>) -> ReportFile {
    ReportFile {
        schema_version: SCHEMA_VERSION,
        scenario: sim::ScenarioInfo::of(s),
        runs,
        sweep: None,
    }
}

/// One run of `fixed`.
pub fn one_strategy() -> ReportFile {
    let s = scenario("");
    let fixed = strategies::build("fixed", &s).expect("fixed");
    report(
        &s,
        vec![strategies::simulate(fixed.as_ref(), &s, &RunOptions::default()).expect("runs")],
    )
}

/// Five runs under five names.
pub fn five_strategies() -> ReportFile {
    let s = scenario("");
    let runs = ["fixed", "stepfn", "sqs", "adaptive", "cookbook"]
        .iter()
        .enumerate()
        .map(|(i, n)| run_named(&s, n, i as u32 + 1))
        .collect();
    report(&s, runs)
}

/// A run with cancellations, a crash and an outage, where files fail and get cancelled.
pub fn cancelled_and_failed() -> ReportFile {
    let s = scenario(
        "hang_rate = 0.02\n[client]\nrequest_timeout = \"3s\"\n[[timeline]]\nat = \"20s\"\ncancel = { user = \"user-2\" }\n\
         [[timeline]]\nat = \"40s\"\noutage = { for = \"30s\" }\n[[timeline]]\nat = \"90s\"\ncrash = { restart_after = \"10s\" }\n\
         [[timeline]]\nat = \"100s\"\ncancel = { run = true }\n[strategies.fixed]\nmax_attempts = 2\n",
    );
    let fixed = strategies::build("fixed", &s).expect("fixed");
    report(
        &s,
        vec![strategies::simulate(fixed.as_ref(), &s, &RunOptions::default()).expect("runs")],
    )
}

/// A run whose strategy reports its own figures: a gauge, metrics and an artifact.
pub fn with_strategy_figures() -> ReportFile {
    let s = scenario("");
    let strategy = |ctx: RunContext| -> Run {
        Box::pin(async move {
            let mut waiting = 0.0;
            while let Some(file) = ctx.next_file().await {
                waiting += file.chunks.len() as f64;
                for &c in &file.chunks {
                    ctx.gauge("queue_depth", waiting);
                    ctx.add_metric("deliveries", 1.0);
                    ctx.artifact("history", format!("{{\"file\":\"{}\",\"chunk\":{c}}}", file.id));
                    let mut outcome = ChunkOutcome::Failed;
                    for attempt in 0..20 {
                        match ctx.call(ctx.request(file.id, c, attempt)).await {
                            Ok(r) => {
                                outcome = ChunkOutcome::Validated(r);
                                break;
                            }
                            Err(e) => {
                                ctx.sleep(e.retry_after().unwrap_or(std::time::Duration::from_millis(500)))
                                    .await
                            }
                        }
                    }
                    ctx.chunk_done(file.id, c, outcome);
                    waiting -= 1.0;
                }
            }
        })
    };
    let run = sim::simulate(&s, "figures", &strategy, &RunOptions::default()).expect("the fixture run finishes");
    report(&s, vec![run])
}
