//! The `cookbook` strategy step by step, against a scripted backend: each send's time, chunk and
//! attempt are logged and compared with what `api_request_parallel_processor.py` does.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mock_llm::{RateLimitHeaders, Usage, Verdict};
use sim::backend::BoxFuture;
use sim::{ChatRequest, ChatResponse, LlmBackend, LlmError, Mode, RunContext, RunOptions, RunReport, Scenario};
use tokio::time::Instant;

/// What the scripted provider answers to the n-th request: after how long, and what.
#[derive(Clone)]
enum Answer {
    Ok(u64),
    RateLimited(u64),
    ServerError(u64),
}

/// Answers requests from a script, in send order (then always `Ok` after 1 s), and logs each
/// send as (ms since the start, chunk, attempt).
struct Scripted {
    start: Instant,
    script: Mutex<VecDeque<Answer>>,
    log: Arc<Mutex<Vec<(u64, u32, u32)>>>,
}

impl LlmBackend for Scripted {
    fn complete(&self, req: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, LlmError>> {
        let now = Instant::now().duration_since(self.start).as_millis() as u64;
        self.log.lock().unwrap().push((now, req.chunk, req.attempt));
        let answer = self.script.lock().unwrap().pop_front().unwrap_or(Answer::Ok(1_000));
        Box::pin(async move {
            let (ms, result) = match answer {
                Answer::Ok(ms) => (
                    ms,
                    Ok(ChatResponse {
                        verdict: Verdict { valid: true, issues: 0 },
                        usage: Usage {
                            prompt_tokens: req.prompt_tokens,
                            completion_tokens: 10,
                        },
                        rate_limit: RateLimitHeaders::default(),
                    }),
                ),
                Answer::RateLimited(ms) => (
                    ms,
                    Err(LlmError::Throttled {
                        limit: None,
                        retry_after: Some(Duration::from_millis(100)),
                        rate_limit: RateLimitHeaders::default(),
                    }),
                ),
                Answer::ServerError(ms) => (
                    ms,
                    Err(LlmError::Server {
                        status: 500,
                        retry_after: None,
                        rate_limit: RateLimitHeaders::default(),
                    }),
                ),
            };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            result
        })
    }
}

fn scenario(chunks: u32, budgets: &str) -> Scenario {
    let text = format!(
        r#"
name = "cookbook-script"
[workload]
files = 1
chunks_per_file = {{ dist = "fixed", value = {chunks} }}
prompt_tokens = {{ dist = "fixed", value = 900 }}
completion_tokens = {{ dist = "fixed", value = 10 }}
max_tokens = 100
[strategies.cookbook]
{budgets}
"#
    );
    Scenario::parse(&text, "cookbook test").expect("valid")
}

/// Runs `cookbook` against the script; returns the report and the send log.
fn run(s: &Scenario, script: Vec<Answer>) -> (RunReport, Vec<(u64, u32, u32)>) {
    let strategy = strategies::build("cookbook", s).expect("cookbook exists");
    let log = Arc::new(Mutex::new(vec![]));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let report = rt.block_on(async {
        let start = Instant::now();
        let backend = Arc::new(Scripted {
            start,
            script: Mutex::new(script.into()),
            log: log.clone(),
        });
        let run = |ctx: RunContext| -> Pin<Box<dyn Future<Output = ()> + '_>> { strategy.run(ctx) };
        sim::execute(
            s,
            "cookbook",
            Mode::Simulated,
            backend,
            start,
            &run,
            &RunOptions::default(),
        )
        .await
        .expect("the run finishes")
    });
    let log = log.lock().unwrap().clone();
    (report, log)
}

const UNBOUNDED: &str = "max_requests_per_minute = 1e9\nmax_tokens_per_minute = 1e12";

#[test]
fn a_rate_limit_error_pauses_new_sends_for_15_s_and_retries_go_first() {
    // Budgets far above need: one send per 1 ms pass. Chunk 0 meets a 429 (answered at 10 ms),
    // chunk 3 a 500 (answered at 8 ms). The 500 is retried at once (8 ms: no backoff, no pause).
    // The 429 starts the cool-down: nothing is sent until 15 s after it (15.010 s), when the
    // retry queue's chunk 0 goes first, on its second attempt.
    let s = scenario(4, UNBOUNDED);
    let script = vec![
        Answer::RateLimited(10),
        Answer::Ok(1_000),
        Answer::Ok(1_000),
        Answer::ServerError(5),
        Answer::Ok(1_000),
        Answer::Ok(1_000),
    ];
    let (r, log) = run(&s, script);
    assert_eq!(
        log,
        vec![(0, 0, 0), (1, 1, 0), (2, 2, 0), (3, 3, 0), (8, 3, 1), (15_010, 0, 1)]
    );
    assert_eq!((r.summary.files_completed, r.summary.llm_throttled), (1, 1));
}

#[test]
fn a_request_that_keeps_failing_is_dropped_after_five_attempts_with_no_backoff() {
    // Every answer is a 500 after 5 ms: the script retries at once, five attempts in all, then
    // gives the request up; its file fails.
    let s = scenario(1, UNBOUNDED);
    let (r, log) = run(&s, vec![Answer::ServerError(5); 5]);
    assert_eq!(log, vec![(0, 0, 0), (5, 0, 1), (10, 0, 2), (15, 0, 3), (20, 0, 4)]);
    assert_eq!((r.summary.files_failed, r.summary.llm_requests), (1, 5));
}

#[test]
fn the_token_bucket_starts_full_and_then_paces_sends_at_its_refill_rate() {
    // A 3,000-token budget and 1,000-token estimates (900 prompt + max_tokens 100): three sends
    // from the full bucket, one per 1 ms pass; then each waits for 1,000 tokens at 50 per second,
    // 20 s apart. Estimates are never corrected from usage (10 tokens used each).
    let s = scenario(5, "max_requests_per_minute = 1e9\nmax_tokens_per_minute = 3000");
    let (r, log) = run(&s, vec![]);
    let at: Vec<u64> = log.iter().map(|l| l.0).collect();
    assert_eq!(&at[..3], &[0, 1, 2]);
    for (got, want) in at[3..].iter().zip([20_000u64, 40_000]) {
        assert!(
            got.abs_diff(want) <= 2,
            "sent at {got} ms, expected {want} ms (±2 ms of float refill)"
        );
    }
    assert_eq!(r.summary.files_completed, 1);
}

#[test]
fn the_request_bucket_binds_when_requests_are_the_scarce_budget() {
    // 3 requests per minute (one every 20 s), and 3 in the full bucket at the start: sends at 0,
    // 1 and 2 ms, then 20 s apart.
    let s = scenario(5, "max_requests_per_minute = 3\nmax_tokens_per_minute = 1e12");
    let (_, log) = run(&s, vec![]);
    let at: Vec<u64> = log.iter().map(|l| l.0).collect();
    assert_eq!(&at[..3], &[0, 1, 2]);
    for (got, want) in at[3..].iter().zip([20_000u64, 40_000]) {
        assert!(got.abs_diff(want) <= 2, "sent at {got} ms, expected {want} ms");
    }
}
