//! What the three designs need from the engine, each driven by a tiny strategy written inline:
//! per-chunk terminal states, late answers after a cancel, redrive, waiting without polling,
//! state that survives a crash, strategy figures, seeded randomness per purpose, and panics.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sim::{ChunkOutcome, FileStatus, RedriveRefused, RunContext, RunOptions, RunReport, Scenario, SimError, simulate};

type Run = Pin<Box<dyn Future<Output = ()>>>;

/// `files` files of 3 one-second chunks, all at time zero, one user, no limits.
fn scenario(files: u32, extra: &str) -> Scenario {
    scenario_tpm(files, "", extra)
}

/// The same, with `provider` added to the provider's table.
fn scenario_tpm(files: u32, provider: &str, extra: &str) -> Scenario {
    let text = format!(
        r#"
name = "seams"
time_limit = "1h"
[workload]
files = {files}
chunks_per_file = {{ dist = "fixed", value = 3 }}
prompt_tokens = {{ dist = "fixed", value = 100 }}
completion_tokens = {{ dist = "fixed", value = 10 }}
max_tokens = 10
[provider]
latency = {{ base_ms = 1000, per_output_token_ms = 0, sigma = 0 }}
{provider}
[client]
network = {{ jitter_ms = 0 }} # an ideal network: exact arithmetic
{extra}"#
    );
    Scenario::parse(&text, "seams test").expect("valid")
}

fn run(s: &Scenario, strategy: &sim::StrategyFn<'static>) -> RunReport {
    simulate(s, "inline", strategy, &RunOptions::default()).expect("finishes")
}

async fn answer(ctx: &RunContext, file: sim::scenario::FileId, chunk: u32) -> ChunkOutcome {
    match ctx.call(ctx.request(file, chunk, 0)).await {
        Ok(r) => ChunkOutcome::Validated(r),
        Err(_) => ChunkOutcome::Failed,
    }
}

#[test]
fn a_failed_duplicate_delivery_neither_ends_the_file_early_nor_beats_a_verdict() {
    // Chunk 0 is delivered twice: once it fails, once it succeeds. Then chunk 1 succeeds. With
    // a per-file failure counter, held (2) + failed (1) = 3 chunks would end the file as failed
    // before chunk 2 was even tried. With one terminal state per chunk, the verdict replaces the
    // failure and the file completes only when chunk 2 is done.
    let strategy = |ctx: RunContext| -> Run {
        Box::pin(async move {
            let file = ctx.next_file().await.expect("one file");
            ctx.chunk_done(file.id, 0, ChunkOutcome::Failed);
            let a = answer(&ctx, file.id, 0).await;
            ctx.chunk_done(file.id, 0, a);
            ctx.chunk_done(file.id, 0, ChunkOutcome::Failed); // a late failure changes nothing
            let b = answer(&ctx, file.id, 1).await;
            ctx.chunk_done(file.id, 1, b);
            ctx.chunk_done(file.id, 1, b); // a duplicate answer is counted, not stored twice
            assert_eq!(ctx.status(file.id), FileStatus::Admitted, "chunk 2 is still open");
            let c = answer(&ctx, file.id, 2).await;
            ctx.chunk_done(file.id, 2, c);
            ctx.chunk_done(file.id, 2, c); // after the file ended: discarded
        })
    };
    let r = run(&scenario(1, ""), &strategy);
    assert_eq!((r.summary.files_completed, r.summary.files_failed), (1, 0));
    let x = &r.summary;
    assert_eq!(
        (x.chunks_validated, x.duplicate_results, x.results_discarded),
        (3, 1, 1)
    );
}

#[test]
fn an_answer_that_arrives_after_a_cancel_is_always_wasted() {
    // Three calls in flight on one file, not raced against its cancellation (as a Lambda that
    // runs to completion). The file is cancelled at 0.5 s; the answers arrive at 1 s. None is
    // stored, whatever order they report in: the file ends cancelled with no results, and the
    // three answers are counted as discarded, their tokens wasted.
    let s = scenario(1, "[[timeline]]\nat = \"500ms\"\ncancel = { file = \"file-1\" }\n");
    let strategy = |ctx: RunContext| -> Run {
        Box::pin(async move {
            let file = ctx.next_file().await.expect("one file");
            let calls: Vec<_> = file
                .chunks
                .iter()
                .map(|&c| {
                    let ctx = ctx.clone();
                    ctx.clone().spawn(async move {
                        let a = answer(&ctx, file.id, c).await;
                        ctx.chunk_done(file.id, c, a);
                    })
                })
                .collect();
            for c in calls {
                c.await.expect("no panic");
            }
        })
    };
    let r = run(&s, &strategy);
    assert_eq!((r.summary.files_cancelled, r.summary.chunks_validated), (1, 0));
    assert_eq!(r.summary.results_discarded, 3);
    assert_eq!(r.summary.tokens_wasted, r.summary.tokens_billed);
    assert!(r.summary.tokens_billed > 0);
    let c = r.summary.cancel_latency_s.expect("a cancellation");
    assert_eq!(c.max, 0.5, "the last call in flight ended 0.5 s after the cancel");
}

#[test]
fn a_redriven_file_gets_back_only_its_unfinished_chunks_and_completes() {
    // Chunk 0 succeeds, chunks 1 and 2 fail: the file fails. A redrive reopens it with chunks
    // 1 and 2 only; validating them completes the file. A second redrive of a completed file is
    // refused.
    let s = scenario(1, "");
    let strategy = |ctx: RunContext| -> Run {
        Box::pin(async move {
            let file = ctx.next_file().await.expect("one file");
            let a = answer(&ctx, file.id, 0).await;
            ctx.chunk_done(file.id, 0, a);
            ctx.chunk_done(file.id, 1, ChunkOutcome::Failed);
            ctx.chunk_done(file.id, 2, ChunkOutcome::Failed);
            assert_eq!(ctx.status(file.id), FileStatus::Failed);
            let again = ctx.redrive(file.id).expect("a failed file can be redriven");
            assert_eq!(again.chunks, vec![1, 2]);
            for &c in &again.chunks {
                let a = answer(&ctx, file.id, c).await;
                ctx.chunk_done(file.id, c, a);
            }
            assert_eq!(
                ctx.redrive(file.id).err(),
                Some(RedriveRefused::NotFailed(FileStatus::Completed))
            );
        })
    };
    let r = run(&s, &strategy);
    let x = &r.summary;
    assert_eq!((x.files_completed, x.files_failed, x.files_redriven), (1, 0, 1));
    assert_eq!((x.chunks_validated, x.llm_requests), (3, 3));
    assert_eq!(x.completion, 1.0);
}

#[test]
fn a_failed_file_cancelled_by_its_user_is_never_redriven() {
    // Found by the exactly-once property test: file-1 fails at once, its user cancels it at
    // 2 s, and a redrive at 3 s must not bring it back to completion after the cancel.
    let s = scenario(1, "[[timeline]]\nat = \"2s\"\ncancel = { file = \"file-1\" }\n");
    let strategy = |ctx: RunContext| -> Run {
        Box::pin(async move {
            let file = ctx.next_file().await.expect("one file");
            for c in 0..3 {
                ctx.chunk_done(file.id, c, ChunkOutcome::Failed);
            }
            ctx.sleep(Duration::from_secs(3)).await;
            assert_eq!(ctx.redrive(file.id).err(), Some(RedriveRefused::Cancelled));
        })
    };
    let r = run(&s, &strategy);
    assert_eq!((r.summary.files_failed, r.summary.files_redriven), (1, 0));
}

#[test]
fn a_redrive_respects_the_users_quota() {
    // One file in progress per user: while file-2 runs, failed file-1 cannot take a slot.
    let s = scenario(2, "[quotas]\nper_user_concurrent_files = 1\n");
    let strategy = |ctx: RunContext| -> Run {
        Box::pin(async move {
            let one = ctx.next_file().await.expect("file-1");
            for c in 0..3 {
                ctx.chunk_done(one.id, c, ChunkOutcome::Failed);
            }
            let two = ctx.next_file().await.expect("file-2, admitted when file-1 ended");
            assert_eq!(ctx.redrive(one.id).err(), Some(RedriveRefused::QuotaFull));
            for &c in &two.chunks {
                let a = answer(&ctx, two.id, c).await;
                ctx.chunk_done(two.id, c, a);
            }
            let again = ctx.redrive(one.id).expect("the slot is free again");
            for &c in &again.chunks {
                let a = answer(&ctx, one.id, c).await;
                ctx.chunk_done(one.id, c, a);
            }
        })
    };
    let r = run(&s, &strategy);
    assert_eq!((r.summary.files_completed, r.summary.files_redriven), (2, 1));
}

#[test]
fn waiting_for_files_to_end_wakes_on_the_end_without_polling() {
    // The strategy hands each file to a task and then waits: for one file, and for all. A
    // strategy that polled is_final would stop paused time; these waits wake on the event.
    // The files end at 3 s (three 1 s chunks each, in parallel per file).
    let s = scenario(4, "");
    let strategy = |ctx: RunContext| -> Run {
        Box::pin(async move {
            let mut ids = vec![];
            while let Some(file) = ctx.next_file().await {
                ids.push(file.id);
                let ctx2 = ctx.clone();
                ctx.spawn(async move {
                    for &c in &file.chunks {
                        let a = answer(&ctx2, file.id, c).await;
                        ctx2.chunk_done(file.id, c, a);
                    }
                });
            }
            assert_eq!(ctx.wait_final(ids[2]).await, FileStatus::Completed);
            assert_eq!(ctx.now(), Duration::from_secs(3));
            ctx.all_final().await;
            assert!(ids.iter().all(|id| ctx.is_final(*id)));
        })
    };
    let r = run(&s, &strategy);
    assert_eq!((r.summary.files_completed, r.summary.makespan_s), (4, 3.0));
}

#[test]
fn a_call_dropped_at_a_cancel_wakes_whoever_waits_for_the_file() {
    // The call's future is dropped when the file is cancelled (as a crash or an abort does);
    // its bookkeeping ends in the drop guard, which must wake the waiter. Without the wake-up
    // the strategy waits forever and the run ends at its time limit instead.
    let s = scenario(1, "[[timeline]]\nat = \"400ms\"\ncancel = { run = true }\n");
    let strategy = |ctx: RunContext| -> Run {
        Box::pin(async move {
            let file = ctx.next_file().await.expect("one file");
            let ctx2 = ctx.clone();
            let token = file.cancel.clone();
            ctx.spawn(async move {
                tokio::select! {
                    biased;
                    () = token.cancelled() => {}
                    _ = ctx2.call(ctx2.request(file.id, 0, 0)) => {}
                }
            });
            assert_eq!(ctx.wait_final(file.id).await, FileStatus::Cancelled);
        })
    };
    let r = run(&s, &strategy);
    assert_eq!(r.summary.files_cancelled, 1);
    assert_eq!(r.summary.makespan_s, 0.4);
}

#[derive(Default)]
struct Starts(AtomicU32);

#[test]
fn durable_state_survives_a_crash_and_in_memory_state_does_not() {
    // The strategy counts its starts in durable state and in a local. After a crash at 1.5 s it
    // starts again: the durable count is 2, the local one starts from 0.
    let s = scenario(1, "[[timeline]]\nat = \"1500ms\"\ncrash = { restart_after = \"1s\" }\n");
    let seen = Arc::new(Mutex::new(vec![]));
    let seen2 = seen.clone();
    let strategy = move |ctx: RunContext| -> Run {
        let starts = ctx.durable::<Starts>().0.fetch_add(1, Ordering::SeqCst) + 1;
        let local = 1;
        seen2.lock().unwrap().push((starts, local));
        Box::pin(async move {
            while let Some(file) = ctx.next_file().await {
                for &c in &file.chunks {
                    let a = answer(&ctx, file.id, c).await;
                    ctx.chunk_done(file.id, c, a);
                }
            }
        })
    };
    let r = simulate(&s, "inline", &strategy, &RunOptions::default()).expect("finishes");
    assert_eq!(*seen.lock().unwrap(), vec![(1, 1), (2, 1)]);
    assert_eq!((r.summary.restarts, r.summary.files_completed), (1, 1));
}

#[test]
fn strategy_figures_gauges_and_artifacts_reach_the_report() {
    let strategy = |ctx: RunContext| -> Run {
        Box::pin(async move {
            while let Some(file) = ctx.next_file().await {
                for &c in &file.chunks {
                    ctx.gauge("queue_depth", f64::from(3 - c));
                    ctx.add_metric("transitions", 2.0);
                    ctx.artifact("history", format!("{{\"chunk\":{c}}}"));
                    let a = answer(&ctx, file.id, c).await;
                    ctx.chunk_done(file.id, c, a);
                }
            }
            ctx.set_metric("peak", 7.0);
        })
    };
    let r = run(&scenario(1, ""), &strategy);
    let m = &r.summary.strategy_metrics;
    assert_eq!((m["transitions"], m["peak"]), (6.0, 7.0));
    // The gauge is set to 3, 2, 1 at 0 s, 1 s and 2 s: each second shows its value at its end.
    let g: Vec<f64> = r.timeseries.iter().map(|row| row.gauges["queue_depth"]).collect();
    assert_eq!(g, vec![3.0, 2.0, 1.0, 1.0]);
    let h = &r.artifacts["history"];
    assert_eq!(h.lines, vec!["{\"chunk\":0}", "{\"chunk\":1}", "{\"chunk\":2}"]);
}

#[test]
fn rng_streams_are_per_purpose_and_reproducible() {
    use rand_core::RngCore;
    let got = Arc::new(Mutex::new(vec![]));
    let got2 = got.clone();
    let strategy = move |ctx: RunContext| -> Run {
        let (mut a, mut b) = (ctx.rng("jitter"), ctx.rng("jitter"));
        let mut other = ctx.rng("redrive");
        got2.lock()
            .unwrap()
            .push((a.next_u64(), b.next_u64(), other.next_u64()));
        Box::pin(async move { while ctx.next_file().await.is_some() {} })
    };
    let s = scenario(1, "");
    simulate(&s, "inline", &strategy, &RunOptions::default()).expect("finishes");
    simulate(&s, "inline", &strategy, &RunOptions::default()).expect("finishes");
    let got = got.lock().unwrap();
    assert_eq!(got[0], got[1], "same seed, same draws");
    assert_eq!(got[0].0, got[0].1, "same label, same stream");
    assert_ne!(got[0].0, got[0].2, "another label, another stream");
}

#[test]
fn a_panic_in_a_spawned_task_is_an_error_of_the_run_not_failed_files() {
    let strategy = |ctx: RunContext| -> Run {
        Box::pin(async move {
            while let Some(file) = ctx.next_file().await {
                let ctx2 = ctx.clone();
                ctx.spawn(async move {
                    if file.id.0 == 1 {
                        panic!("bug in the strategy");
                    }
                    for &c in &file.chunks {
                        let a = answer(&ctx2, file.id, c).await;
                        ctx2.chunk_done(file.id, c, a);
                    }
                });
            }
            ctx.all_final().await;
        })
    };
    match simulate(&scenario(3, ""), "panicky", &strategy, &RunOptions::default()) {
        Err(SimError::StrategyPanicked { strategy, message }) => {
            assert_eq!(
                (strategy.as_str(), message.as_str()),
                ("panicky", "bug in the strategy")
            );
        }
        other => panic!("expected the panic to be reported, got {other:?}"),
    }
}

#[test]
fn giving_up_scores_the_share_of_work_done_against_the_same_ideal() {
    // Four files of three chunks. One strategy does them all; another does file-1 and gives
    // up on the rest at once. Both are measured against the same ideal (the required work), so
    // the quitter, though it ends sooner, scores at most the quarter it completed.
    let s = scenario_tpm(4, "tpm = 660", "");
    let all = |ctx: RunContext| -> Run {
        Box::pin(async move {
            while let Some(file) = ctx.next_file().await {
                for &c in &file.chunks {
                    loop {
                        match ctx.call(ctx.request(file.id, c, 0)).await {
                            Ok(r) => {
                                ctx.chunk_done(file.id, c, ChunkOutcome::Validated(r));
                                break;
                            }
                            Err(e) => ctx.sleep(e.retry_after().unwrap_or(Duration::from_secs(1))).await,
                        }
                    }
                }
            }
        })
    };
    let quit = |ctx: RunContext| -> Run {
        Box::pin(async move {
            let mut first = true;
            while let Some(file) = ctx.next_file().await {
                for &c in &file.chunks {
                    let outcome = if first {
                        answer(&ctx, file.id, c).await
                    } else {
                        ChunkOutcome::Failed
                    };
                    ctx.chunk_done(file.id, c, outcome);
                }
                first = false;
            }
        })
    };
    let (a, q) = (run(&s, &all), run(&s, &quit));
    assert_eq!(a.summary.ideal_makespan_s, q.summary.ideal_makespan_s, "one yardstick");
    assert_eq!((a.summary.completion, q.summary.completion), (1.0, 0.25));
    assert!(q.summary.makespan_s < a.summary.makespan_s, "the quitter ends sooner");
    assert!(q.summary.efficiency <= 0.25, "{}", q.summary.efficiency);
    assert!(a.summary.efficiency > q.summary.efficiency);
    // Busy while it worked: the quitter's limit utilization ignores the work it dropped.
    assert!(q.summary.limit_utilization > q.summary.efficiency);
}

#[test]
fn rate_limit_snapshots_say_when_they_were_seen() {
    // A controller reading x-ratelimit-remaining-tokens must know how old the reading is: the
    // answer of a call that ended at 1 s says it was observed at 1 s, and a 429's headers too.
    let s = scenario_tpm(1, "tpm = 220", "");
    let seen = Arc::new(Mutex::new(vec![]));
    let seen2 = seen.clone();
    let strategy = move |ctx: RunContext| -> Run {
        let seen = seen2.clone();
        Box::pin(async move {
            let file = ctx.next_file().await.expect("one file");
            for attempt in 0..3 {
                let observed = match ctx.call(ctx.request(file.id, 0, attempt)).await {
                    Ok(r) => r.rate_limit.observed,
                    Err(e) => e.rate_limit().and_then(|h| h.observed),
                };
                seen.lock().unwrap().push((observed, ctx.now()));
            }
        })
    };
    run(&s, &strategy);
    let seen = seen.lock().unwrap();
    // Two answered calls (1 s each) and a 429 (the bucket of 220 holds two charges of 110).
    assert_eq!(seen.len(), 3);
    for (observed, at) in seen.iter() {
        assert_eq!(*observed, Some(*at));
    }
    assert_eq!(seen[0].1, Duration::from_secs(1));
}

mod exactly_once {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::AtomicU64;

    /// A strategy scripted by its seeded generator: each chunk gets 1–3 deliveries, each of which
    /// reports a failure (with chance `p_fail`) or calls the LLM and reports its answer; a file
    /// that ends failed is redriven, up to 5 times with failures, then once more without. It
    /// counts the answers it reports, so the test can close the books.
    fn scripted(p_fail: f64, reported: Arc<AtomicU64>) -> impl Fn(RunContext) -> Run + 'static {
        move |ctx: RunContext| -> Run {
            let reported = reported.clone();
            Box::pin(async move {
                let mut rng = ctx.rng("script");
                while let Some(mut task) = ctx.next_file().await {
                    let id = task.id;
                    for round in 0..=6 {
                        let p = if round == 6 { 0.0 } else { p_fail };
                        for &c in &task.chunks {
                            let deliveries = rng.sim().range_inclusive(1, 3) as u32;
                            for d in 0..deliveries {
                                if rng.sim().chance(p) {
                                    ctx.chunk_done(id, c, ChunkOutcome::Failed);
                                    continue;
                                }
                                match ctx.call(ctx.request(id, c, round * 3 + d)).await {
                                    Ok(r) => {
                                        reported.fetch_add(1, Ordering::SeqCst);
                                        ctx.chunk_done(id, c, ChunkOutcome::Validated(r));
                                    }
                                    Err(_) => ctx.chunk_done(id, c, ChunkOutcome::Failed),
                                }
                            }
                        }
                        match ctx.status(id) {
                            FileStatus::Failed => match ctx.redrive(id) {
                                Ok(t) => task = t,
                                Err(RedriveRefused::Cancelled) => break,
                                Err(e) => panic!("no quota here, so only a cancel can refuse a redrive: {e}"),
                            },
                            _ => break,
                        }
                    }
                }
            })
        }
    }

    fn expected_digest(s: &Scenario) -> String {
        format!("{:016x}", sim::results::provider_digest(s))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Whatever the duplicates, failures and redrives, and wherever cancellations fall:
        /// every file ends in one final state; every answer reported is either stored once, a
        /// duplicate, or discarded (nothing lost, nothing stored twice); no file with a
        /// cancellation completes after it; and without cancellations every chunk ends with
        /// the provider's verdict exactly once (the digest covers every (file, chunk, verdict)).
        #[test]
        fn every_chunk_ends_exactly_once_under_duplicates_failures_cancels_and_redrives(
            seed in 0u64..10_000,
            p_fail in 0.0f64..0.6,
            at_end: bool,
            cancels in proptest::collection::vec((0u64..20_000, 1u32..=6), 0..3),
        ) {
            let head = format!("seed = {seed}\nresults = \"{}\"\n", if at_end { "at-end" } else { "incremental" });
            let mut timeline = String::new();
            for (at, f) in &cancels {
                timeline.push_str(&format!("[[timeline]]\nat = \"{at}ms\"\ncancel = {{ file = \"file-{f}\" }}\n"));
            }
            let base = scenario(6, "");
            let text = format!("{head}{}{timeline}", base.source.text.replace("[workload]", "[workload]\nusers = 2").replace(
                "chunks_per_file = { dist = \"fixed\", value = 3 }",
                "chunks_per_file = { dist = \"uniform\", min = 1, max = 5 }",
            ));
            let s = Scenario::parse(&text, "exactly-once").expect("valid");
            let reported = Arc::new(AtomicU64::new(0));
            let strategy = scripted(p_fail, reported.clone());
            let r = simulate(&s, "scripted", &strategy, &RunOptions::default()).expect("finishes");
            let x = &r.summary;
            prop_assert_eq!(x.files_completed + x.files_failed + x.files_cancelled + x.files_rejected, x.files_total);
            if !at_end {
                // Incremental storage commits what it stores, so the books close exactly.
                prop_assert_eq!(
                    reported.load(Ordering::SeqCst),
                    x.chunks_validated + x.duplicate_results + x.results_discarded,
                    "answers reported = stored + duplicates + discarded"
                );
            }
            if cancels.is_empty() {
                prop_assert_eq!(x.files_completed, 6);
                prop_assert_eq!(&x.results_digest, &expected_digest(&s));
            } else {
                for e in r.events.iter().filter(|e| e.kind == sim::recorder::EventKind::FileCompleted) {
                    let cancelled_before = cancels.iter().any(|(at, f)| e.file.map(|id| id.0 + 1) == Some(*f) && *at < e.t_ms);
                    prop_assert!(!cancelled_before, "file {:?} completed after its cancel", e.file);
                }
            }
        }
    }
}

#[test]
fn serving_one_user_before_the_other_scores_lower_fairness_than_taking_turns() {
    // Eight files at once from two users, processed one chunk at a time. Served user by user,
    // the second user waits for all of the first's work: same tokens over a longer span, a lower
    // throughput while it had work, and a lower Jain's index than serving them in turns.
    let base = scenario(8, "");
    let s = Scenario::parse(&base.source.text.replace("[workload]", "[workload]\nusers = 2"), "fair").expect("valid");
    let order = |by_user: bool| {
        move |ctx: RunContext| -> Run {
            Box::pin(async move {
                let mut files = vec![];
                while let Some(f) = ctx.next_file().await {
                    files.push(f);
                }
                if by_user {
                    files.sort_by_key(|f| f.user);
                } else {
                    let (mut a, mut b): (Vec<_>, Vec<_>) = files.into_iter().partition(|f| f.user.0 == 0);
                    files = vec![];
                    while !a.is_empty() || !b.is_empty() {
                        files.extend(a.pop());
                        files.extend(b.pop());
                    }
                }
                for file in files {
                    for &c in &file.chunks {
                        let a = answer(&ctx, file.id, c).await;
                        ctx.chunk_done(file.id, c, a);
                    }
                }
            })
        }
    };
    let (grouped, turns) = (run(&s, &order(true)), run(&s, &order(false)));
    let (g, t) = (&grouped.summary, &turns.summary);
    assert_eq!(g.users.len(), 2);
    assert!(
        g.users.iter().all(|u| u.files > 0),
        "both users have files: {:?}",
        g.users
    );
    let kept: u64 = g.users.iter().map(|u| u.tokens_kept).sum();
    assert_eq!(
        kept, g.tokens_billed,
        "every billed token was kept, and belongs to one user"
    );
    let (fg, ft) = (g.fairness.expect("users"), t.fairness.expect("users"));
    assert!(fg < ft, "served by user {fg} should be less fair than in turns {ft}");
    assert!(ft > 0.9, "{ft}");
}
