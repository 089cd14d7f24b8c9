//! Engine mechanics, driven by tiny strategies written inline: the feed, the parameter store,
//! the time-limit guard, cancellation before admission, determinism.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sim::{ChunkOutcome, RunContext, RunOptions, Scenario, SimError, simulate};

type Run = Pin<Box<dyn Future<Output = ()>>>;

fn scenario(extra: &str) -> Scenario {
    scenario_with(extra, &[])
}

/// The test scenario with `extra` appended and each (from, to) replaced.
fn scenario_with(extra: &str, replace: &[(&str, &str)]) -> Scenario {
    let mut text = format!(
        r#"
name = "engine"
[workload]
files = 6
users = 2
chunks_per_file = {{ dist = "fixed", value = 3 }}
prompt_tokens = {{ dist = "fixed", value = 100 }}
completion_tokens = {{ dist = "fixed", value = 10 }}
max_tokens = 10
arrival = {{ kind = "steady", per_minute = 6 }}
[provider]
latency = {{ base_ms = 1000, per_output_token_ms = 0, sigma = 0 }}
[client]
network = {{ jitter_ms = 0 }} # an ideal network: the figures below are exact arithmetic
{extra}"#
    );
    for (from, to) in replace {
        assert!(text.contains(from), "test bug: no {from}");
        text = text.replace(from, to);
    }
    Scenario::parse(&text, "engine test").expect("valid")
}

/// One chunk at a time, one attempt each.
fn sequential(ctx: RunContext) -> Run {
    Box::pin(async move {
        while let Some(file) = ctx.next_file().await {
            for &c in &file.chunks {
                let outcome = match ctx.call(ctx.request(file.id, c, 0)).await {
                    Ok(r) => ChunkOutcome::Validated(r),
                    Err(_) => ChunkOutcome::Failed,
                };
                ctx.chunk_done(file.id, c, outcome);
            }
        }
    })
}

#[test]
fn sequential_processing_follows_arrivals_and_latency() {
    // Files arrive every 10 s and take 3 s each (3 one-second chunks): the last arrives at 50 s
    // and ends at 53 s; every file waits for nothing.
    let r = simulate(&scenario(""), "sequential", &sequential, &RunOptions::default()).expect("finishes");
    assert_eq!(r.summary.makespan_s, 53.0);
    assert_eq!(r.summary.files_completed, 6);
    assert_eq!(r.summary.file_latency_s.max, 3.0);
    assert_eq!(r.summary.llm_requests, 18);
    assert_eq!(r.timeseries.len(), 54, "one row per second up to the makespan");
}

#[test]
fn the_time_a_strategy_reads_follows_every_advance_of_paused_time() {
    // The simulating runtime caches the instant's time between parks. Tasks that wake at
    // distinct and equal instants, yield, and call the provider each compare what the run
    // says with tokio's own clock: a cache kept past an advance would show the earlier time.
    let wrong = Arc::new(Mutex::new(Vec::new()));
    let reads = Arc::new(Mutex::new(0u32));
    let (wrong2, reads2) = (wrong.clone(), reads.clone());
    let checker = move |ctx: RunContext| -> Run {
        let (wrong, reads) = (wrong2.clone(), reads2.clone());
        Box::pin(async move {
            let check = {
                let ctx = ctx.clone();
                move |at: &str| {
                    let truth = tokio::time::Instant::now() - ctx.start();
                    *reads.lock().unwrap() += 1;
                    if ctx.now() != truth {
                        wrong
                            .lock()
                            .unwrap()
                            .push(format!("{at}: {:?} != {truth:?}", ctx.now()));
                    }
                }
            };
            for i in 0..20u64 {
                let check = check.clone();
                let c = ctx.clone();
                ctx.spawn(async move {
                    for step in 0..5u64 {
                        check(&format!("task {i} step {step}"));
                        c.sleep(Duration::from_millis(137 * (i % 7) + 11 * step)).await;
                        check(&format!("task {i} after sleep {step}"));
                        tokio::task::yield_now().await;
                    }
                });
            }
            check("start");
            sequential(ctx.clone()).await;
            check("end");
        })
    };
    simulate(&scenario(""), "checker", &checker, &RunOptions::default()).expect("finishes");
    assert_eq!(*reads.lock().unwrap(), 202, "every task read the time at every step");
    assert_eq!(wrong.lock().unwrap().clone(), Vec::<String>::new());
}

#[test]
fn parameter_changes_reach_the_strategy_at_their_time() {
    let s = scenario("[params]\nmax-parallelism = 2\n[[timeline]]\nat = \"25s\"\nset = { max-parallelism = 7 }\n");
    let seen = Arc::new(Mutex::new(vec![]));
    let seen2 = seen.clone();
    let watcher = move |ctx: RunContext| -> Run {
        let seen = seen2.clone();
        Box::pin(async move {
            let mut rx = ctx.params().watch();
            seen.lock()
                .unwrap()
                .push((ctx.now(), rx.borrow().max_parallelism.get()));
            rx.changed().await.expect("the store outlives the strategy");
            seen.lock()
                .unwrap()
                .push((ctx.now(), rx.borrow().max_parallelism.get()));
            sequential(ctx).await;
        })
    };
    simulate(&s, "watcher", &watcher, &RunOptions::default()).expect("finishes");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, vec![(Duration::ZERO, 2), (Duration::from_secs(25), 7)]);
}

#[test]
fn a_strategy_that_never_finishes_hits_the_time_limit_instead_of_hanging() {
    let s = scenario("");
    let mut text = s.source.text.clone();
    text.insert_str(0, "time_limit = \"1h\"\n");
    let s = Scenario::parse(&text, "stuck").expect("valid");
    let stuck = |_ctx: RunContext| -> Run { Box::pin(std::future::pending()) };
    match simulate(&s, "stuck", &stuck, &RunOptions::default()) {
        Err(SimError::TimeLimit { limit, unfinished }) => {
            assert_eq!(limit, Duration::from_secs(3600));
            assert_eq!(unfinished, 6);
        }
        other => panic!("expected a time-limit error, got {other:?}"),
    }
}

#[test]
fn files_a_strategy_leaves_behind_end_as_failed() {
    let lazy = |ctx: RunContext| -> Run {
        Box::pin(async move {
            // Takes every file, does nothing with it.
            while ctx.next_file().await.is_some() {}
        })
    };
    let r = simulate(&scenario(""), "lazy", &lazy, &RunOptions::default()).expect("finishes");
    assert_eq!((r.summary.files_failed, r.summary.files_completed), (6, 0));
    assert_eq!(r.summary.makespan_s, 50.0, "the feed closes when the last file arrives");
}

#[test]
fn a_queued_file_can_be_cancelled_before_it_is_admitted() {
    // One user, one file in progress at a time, everything at once: files 2-6 queue behind
    // file-1. Cancelling file-3 while it waits ends it at once, without a single call.
    let s = scenario_with(
        "[quotas]\nper_user_concurrent_files = 1\n[[timeline]]\nat = \"1s\"\ncancel = { file = \"file-3\" }\n",
        &[
            ("users = 2", "users = 1"),
            ("kind = \"steady\", per_minute = 6", "kind = \"all-at-once\""),
        ],
    );
    let r = simulate(&s, "sequential", &sequential, &RunOptions::default()).expect("finishes");
    assert_eq!(r.summary.files_cancelled, 1);
    assert_eq!(r.summary.llm_requests, 15, "file-3's three chunks were never requested");
    let queued = r
        .events
        .iter()
        .any(|e| e.kind == sim::recorder::EventKind::FileQueued && e.file.map(|f| f.0) == Some(2));
    assert!(queued, "file-3 waited in the gatekeeper's queue");
}

#[test]
fn identical_runs_give_identical_reports() {
    let s = scenario_with("", &[("sigma = 0 }", "sigma = 0.5 }")]);
    let a = simulate(&s, "sequential", &sequential, &RunOptions::default()).expect("finishes");
    let b = simulate(&s, "sequential", &sequential, &RunOptions::default()).expect("finishes");
    assert_eq!(a, b);
}

#[test]
fn a_strategy_that_stops_early_leaves_every_file_counted_once() {
    // It processes the first file (3 s) and returns; the other five (arriving every 10 s) were
    // never handed out. They end as failed when the orchestrator stops, at 3 s.
    let first_only = |ctx: RunContext| -> Run {
        Box::pin(async move {
            if let Some(file) = ctx.next_file().await {
                for &c in &file.chunks {
                    let outcome = match ctx.call(ctx.request(file.id, c, 0)).await {
                        Ok(r) => ChunkOutcome::Validated(r),
                        Err(_) => ChunkOutcome::Failed,
                    };
                    ctx.chunk_done(file.id, c, outcome);
                }
            }
        })
    };
    let r = simulate(&scenario(""), "first-only", &first_only, &RunOptions::default()).expect("finishes");
    let s = &r.summary;
    assert_eq!((s.files_completed, s.files_failed), (1, 5));
    assert_eq!(
        s.files_completed + s.files_failed + s.files_cancelled + s.files_rejected,
        s.files_total
    );
    assert_eq!(s.makespan_s, 3.0);
}
