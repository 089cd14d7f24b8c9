//! The `sqs` strategy: the choreography's costs come out of the queue model, and results stay
//! exactly once.

use sim::{RunOptions, RunReport, Scenario};

fn scenario(extra: &str, provider: &str) -> Scenario {
    let text = format!(
        r#"
name = "sqs-test"
seed = 9
[workload]
files = 4
users = 1
chunks_per_file = {{ dist = "fixed", value = 5 }}
prompt_tokens = {{ dist = "fixed", value = 500 }}
completion_tokens = {{ dist = "fixed", value = 100 }}
max_tokens = 100
arrival = {{ kind = "all-at-once" }}
[provider]
latency = {{ base_ms = 1000, per_output_token_ms = 0, sigma = 0 }}
{provider}
[client]
network = {{ jitter_ms = 0 }}
[params]
max-parallelism = 4
{extra}
"#
    );
    Scenario::parse(&text, "sqs-test").unwrap_or_else(|e| panic!("valid: {e}"))
}

fn run(s: &Scenario) -> RunReport {
    let strategy = strategies::build("sqs", s).expect("sqs builds");
    strategies::simulate(strategy.as_ref(), s, &RunOptions::default()).expect("the run finishes")
}

fn metric(r: &RunReport, name: &str) -> f64 {
    r.summary.strategy_metrics.get(name).copied().unwrap_or(0.0)
}

fn digest(s: &Scenario) -> String {
    format!("{:016x}", sim::results::provider_digest(s))
}

#[test]
fn with_claims_a_message_delivered_twice_is_sent_to_the_llm_once() {
    // Every delivery leaves its message visible (duplicate_rate 1), so each chunk is received
    // again while its first delivery works on it. The claim stops the second call (and hides
    // the duplicate until the claim runs out): 20 chunks, 20 LLM calls, every result once.
    let s = scenario(
        "[strategies.sqs]\nduplicate_rate = 1.0\nbatch_size = 1\nmax_receive_count = 100\n",
        "",
    );
    let r = run(&s);
    assert_eq!(r.summary.chunks_validated, 20);
    assert!(metric(&r, "duplicate_deliveries") > 0.0);
    assert!(metric(&r, "duplicates_suppressed") > 0.0);
    assert_eq!(r.summary.llm_requests, 20, "no chunk was sent twice");
    assert_eq!(r.summary.results_digest, digest(&s));
}

#[test]
fn without_dedupe_a_duplicate_delivery_costs_a_second_call_but_not_a_second_result() {
    let s = scenario(
        "[strategies.sqs]\nduplicate_rate = 1.0\nbatch_size = 1\ndedupe = \"none\"\nmax_receive_count = 100\n",
        "",
    );
    let r = run(&s);
    assert!(metric(&r, "duplicate_llm_calls") > 0.0);
    assert!(r.summary.llm_requests > 20, "{}", r.summary.llm_requests);
    assert_eq!(r.summary.chunks_validated, 20);
    assert_eq!(r.summary.results_digest, digest(&s), "results stay exactly once");
}

#[test]
fn a_message_that_keeps_failing_ends_in_the_dead_letter_queue_and_its_chunk_fails() {
    // Every call fails (500): each message is received max_receive_count = 3 times, 30 s apart
    // (the visibility timeout), then moved to the DLQ at its fourth receive.
    let s = scenario("[strategies.sqs]\nmax_receive_count = 3\n", "error_rate = 1.0");
    let r = run(&s);
    assert_eq!(r.summary.files_failed, 4);
    assert_eq!(metric(&r, "dead_lettered"), 20.0);
    assert_eq!(r.summary.llm_requests, 60);
    assert!(
        r.summary.makespan_s >= 90.0,
        "three visibility timeouts: {}",
        r.summary.makespan_s
    );
}

#[test]
fn a_429_returns_the_message_at_its_hint_or_at_the_visibility_timeout() {
    // 6,000 TPM (600 tokens a call: 10 calls a minute) for 20 chunks: throttled. With backoff the
    // messages come back at the hint; waiting out the 30 s visibility takes longer.
    let backoff = run(&scenario("[strategies.sqs]\nmax_receive_count = 1000\n", "tpm = 6000"));
    let timeout = run(&scenario(
        "[strategies.sqs]\nmax_receive_count = 1000\non_throttle = \"timeout\"\n",
        "tpm = 6000",
    ));
    assert_eq!(backoff.summary.chunks_validated, 20);
    assert_eq!(timeout.summary.chunks_validated, 20);
    assert!(
        backoff.summary.makespan_s < timeout.summary.makespan_s,
        "backoff {} s, timeout {} s",
        backoff.summary.makespan_s,
        timeout.summary.makespan_s
    );
}

#[test]
fn a_cancelled_file_gets_no_call_after_its_flag_is_set() {
    // Max-parallelism 4 and batches of 1 on 20 one-second calls: at 1.5 s the run is cancelled
    // and the flag written; the calls in flight finish, and no call starts after it.
    let s = scenario(
        "[strategies.sqs]\nbatch_size = 1\n[[timeline]]\nat = \"1500ms\"\ncancel = { run = true }\n",
        "",
    );
    let r = run(&s);
    assert_eq!(r.summary.files_cancelled, 4);
    let late: u32 = r
        .timeseries
        .iter()
        .filter(|row| row.second >= 2)
        .map(|row| row.requests)
        .sum();
    assert_eq!(late, 0, "no call started after the flag");
    assert!(r.summary.llm_requests <= 8, "{}", r.summary.llm_requests);
}

#[test]
fn bad_settings_are_refused_with_their_name() {
    let s = scenario("[strategies.sqs]\nbatch_size = 11\n", "");
    let err = strategies::build("sqs", &s).err().expect("refused").to_string();
    assert!(err.contains("batch_size"), "{err}");
    let s = scenario("[strategies.sqs]\nvisibility_timeout = \"13h\"\n", "");
    let err = strategies::build("sqs", &s).err().expect("refused").to_string();
    assert!(err.contains("visibility_timeout") && err.contains("12h"), "{err}");
}
