//! The mock server over real HTTP on 127.0.0.1:0: headers and 429s match the model, streaming
//! arrives in order with its timing, keys and organizations, admin calls, and every bad input gets
//! its status and OpenAI-shaped body without disturbing the counters.

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mock_llm::config::{LatencyConfig, Millis, Probability, Profile, ProviderConfig, Sigma};
use mock_llm::headers::parse_go_duration;
use mock_llm::server::{self, COMPLETION_HINT, ServerConfig, Tokenizer};
use serde_json::{Value, json};

fn provider(tpm: Option<u64>, rpm: Option<u64>, base_ms: f64, per_token_ms: f64) -> ProviderConfig {
    ProviderConfig {
        tpm: tpm.and_then(NonZeroU64::new),
        rpm: rpm.and_then(NonZeroU64::new),
        latency: LatencyConfig {
            base_ms: Millis(base_ms),
            per_output_token_ms: Millis(per_token_ms),
            sigma: Sigma(0.0),
            reject_ms: Millis(0.0),
        },
        ..ProviderConfig::default()
    }
}

/// An HTTP client. In the workspace, reqwest is built without a default crypto provider (the
/// engine installs ring), so the tests install it too.
fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A server on a free loopback port.
async fn serve(config: ServerConfig) -> server::Running {
    server::start(config, "127.0.0.1:0").await.expect("the server starts")
}

/// The server's `/metrics` text.
async fn metrics(c: &reqwest::Client, s: &server::Running) -> String {
    let r = c
        .get(format!("{}/metrics", s.url()))
        .send()
        .await
        .expect("metrics answer");
    r.text().await.expect("metrics text")
}

fn body(prompt: &str, max_tokens: i64) -> Value {
    json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": prompt }], "max_tokens": max_tokens })
}

async fn post(c: &reqwest::Client, url: &str, b: &Value) -> reqwest::Response {
    c.post(format!("{url}/v1/chat/completions"))
        .json(b)
        .send()
        .await
        .expect("the server answers")
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .expect("ascii")
}

#[tokio::test]
async fn answers_carry_the_models_rate_limit_headers_and_usage() {
    let s = serve(ServerConfig::new(provider(Some(10_000), Some(60), 20.0, 0.0))).await;
    let c = client();
    let r = c
        .post(format!("{}/v1/chat/completions", s.url()))
        .header(COMPLETION_HINT, "7")
        .json(&body("hello world", 100))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 200);
    // The prompt "hello world" is 9 tokens with the chat overhead; charge 9 + 100 of 10,000.
    assert_eq!(header(&r, "x-ratelimit-limit-tokens"), "10000");
    assert_eq!(header(&r, "x-ratelimit-remaining-tokens"), "9891");
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), "60");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "59");
    // Resets are Go durations: 109 tokens at 10,000/min refill in 654 ms; one request in 1 s.
    let reset = parse_go_duration(header(&r, "x-ratelimit-reset-tokens")).expect("go duration");
    assert!(
        reset >= Duration::from_millis(640) && reset <= Duration::from_millis(660),
        "{reset:?}"
    );
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["usage"],
        json!({ "prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16 })
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let content = v["choices"][0]["message"]["content"].as_str().expect("content");
    assert!(
        mock_llm::Verdict::parse(content).is_some(),
        "the content is the validator's verdict: {content}"
    );
    s.stop().await.expect("stops");
}

#[tokio::test]
async fn a_throttled_request_gets_openais_429_and_is_admitted_at_its_retry_after() {
    // 60,000 TPM refills 1,000 tokens a second. A first request of 59,700 tokens (9 + 59,691)
    // leaves 300; a second of 800 (9 + 791) lacks 500, which takes 0.5 s to refill.
    let s = serve(ServerConfig::new(provider(Some(60_000), None, 0.0, 0.0))).await;
    let c = client();
    assert_eq!(post(&c, &s.url(), &body("hello world", 59_691)).await.status(), 200);
    let second = body("hello world", 791);
    let r = post(&c, &s.url(), &second).await;
    assert_eq!(r.status(), 429);
    let ms: u64 = header(&r, "retry-after-ms").parse().expect("integer ms");
    let secs: u64 = header(&r, "retry-after").parse().expect("integer s");
    assert_eq!(secs, ms.div_ceil(1000));
    assert!(
        (300..=500).contains(&ms),
        "500 tokens at 1,000/s, less the time since the first request: {ms} ms"
    );
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["type"], "tokens");
    let msg = v["error"]["message"].as_str().expect("message");
    assert!(msg.starts_with("Rate limit reached for gpt-4o-mini in organization org-orchbench on tokens per min (TPM): Limit 60000, Used"), "{msg}");
    assert!(msg.contains("Requested 800. Please try again in"), "{msg}");
    // Retried exactly when the server said, with nothing else arriving: admitted.
    tokio::time::sleep(Duration::from_millis(ms)).await;
    assert_eq!(post(&c, &s.url(), &second).await.status(), 200);
    s.stop().await.expect("stops");
}

#[tokio::test]
async fn a_request_larger_than_the_limit_is_refused_for_good() {
    let s = serve(ServerConfig::new(provider(Some(100), None, 0.0, 0.0))).await;
    let r = post(&client(), &s.url(), &body("hi", 500)).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-should-retry"), "false");
    let v: Value = r.json().await.expect("json");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("m")
            .starts_with("Request too large for gpt-4o-mini")
    );
    s.stop().await.expect("stops");
}

#[tokio::test]
async fn azure_profile_answers_with_azures_body() {
    // An explicit RPM, so that the token window (not the derived 6 RPM) is what refuses.
    let mut p = provider(Some(1_000), Some(6_000), 0.0, 0.0);
    p.profile = Profile::Azure;
    let s = serve(ServerConfig::new(p)).await;
    let c = client();
    let mut last = None;
    for _ in 0..5 {
        let r = post(&c, &s.url(), &body("hello world", 291)).await;
        if r.status() == 429 {
            last = Some(r);
            break;
        }
    }
    let r = last.expect("1,000 TPM per minute window refuses the fourth 300-token request");
    assert!(r.headers().contains_key("retry-after-ms"));
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "429", "Azure's code is the string \"429\"");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("m")
            .contains("exceeded token rate limit")
    );
    s.stop().await.expect("stops");
}

#[tokio::test]
async fn streaming_arrives_in_order_with_the_configured_timing() {
    // 200 ms to the first token, then 20 tokens 10 ms apart: about 400 ms in all.
    let s = serve(ServerConfig::new(provider(None, None, 200.0, 10.0))).await;
    let mut b = body("hello world", 100);
    b["stream"] = json!(true);
    b["stream_options"] = json!({ "include_usage": true });
    let c = client();
    let started = Instant::now();
    let r = c
        .post(format!("{}/v1/chat/completions", s.url()))
        .header(COMPLETION_HINT, "20")
        .json(&b)
        .send()
        .await
        .expect("answers");
    assert_eq!(header(&r, "content-type"), "text/event-stream");
    let mut stream = r.bytes_stream();
    let mut buf = String::new();
    let mut first_at = None;
    while let Some(chunk) = stream.next().await {
        buf.push_str(std::str::from_utf8(&chunk.expect("chunk")).expect("utf-8"));
        first_at.get_or_insert_with(|| started.elapsed());
    }
    let total = started.elapsed();
    let events: Vec<&str> = buf
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").expect("SSE data lines"))
        .collect();
    assert_eq!(*events.last().expect("events"), "[DONE]");
    let json: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).expect("chunk json"))
        .collect();
    assert_eq!(json[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = json
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str())
        .collect();
    assert!(
        mock_llm::Verdict::parse(&text).is_some(),
        "the pieces join into the verdict: {text}"
    );
    let finish: Vec<&Value> = json
        .iter()
        .filter_map(|c| c["choices"].get(0).map(|x| &x["finish_reason"]))
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("stop")]);
    assert_eq!(json.last().expect("usage chunk")["usage"]["completion_tokens"], 20);
    let first = first_at.expect("a first chunk");
    assert!(first >= Duration::from_millis(190), "first token after {first:?}");
    assert!(
        total >= Duration::from_millis(380) && total < Duration::from_secs(3),
        "whole stream took {total:?}"
    );
    s.stop().await.expect("stops");
}

#[tokio::test]
async fn bad_input_gets_openais_errors_and_leaves_the_counters_alone() {
    let mut cfg = ServerConfig::new(provider(Some(1_000), None, 0.0, 0.0));
    cfg.max_body_bytes = 4096;
    cfg.tokenizer = Tokenizer::Chars4;
    let s = serve(cfg).await;
    let c = client();
    let url = format!("{}/v1/chat/completions", s.url());
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (c.post(&url).body("{not json"), 400, "invalid_request_error"),
        (
            c.post(&url).json(&json!({ "messages": [] })),
            400,
            "invalid_request_error",
        ),
        (
            c.post(&url)
                .json(&json!({ "model": "gpt-4o-mini", "messages": [{ "role": 5 }] })),
            400,
            "invalid_request_error",
        ),
        (c.post(&url).json(&body("x", -5)), 400, "invalid_request_error"),
        (
            c.post(&url)
                .json(&json!({ "model": "gpt-9", "messages": [{ "role": "user", "content": "x" }] })),
            404,
            "invalid_request_error",
        ),
        (c.post(&url).body("x".repeat(10_000)), 413, "invalid_request_error"),
    ];
    for (req, status, kind) in cases {
        let r = req.send().await.expect("answers");
        assert_eq!(r.status().as_u16(), status);
        let v: Value = r.json().await.expect("an OpenAI error body");
        assert_eq!(v["error"]["type"], kind, "{v}");
    }
    // None of that touched the limits: the whole bucket is still there.
    let r = post(&c, &s.url(), &body("x", 10)).await;
    assert_eq!(r.status(), 200);
    let remaining: u64 = header(&r, "x-ratelimit-remaining-tokens").parse().expect("n");
    assert!(remaining >= 1_000 - 20, "{remaining}");
    let metrics = metrics(&c, &s).await;
    assert!(
        metrics.contains("mock_llm_requests_total{status=\"400\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mock_llm_requests_total{status=\"200\"} 1"),
        "{metrics}"
    );
    s.stop().await.expect("stops");
}

#[tokio::test]
async fn keys_are_organizations_with_their_own_limits_and_required_keys_are_enforced() {
    let mut cfg = ServerConfig::new(provider(Some(600), None, 0.0, 0.0));
    cfg.keys = vec![
        ("sk-alpha-000000".into(), "org-alpha".into()),
        ("sk-beta-0000000".into(), "org-beta".into()),
    ];
    cfg.require_key = true;
    let s = serve(cfg).await;
    let c = client();
    let url = format!("{}/v1/chat/completions", s.url());
    let send = |key: Option<&str>| {
        let mut r = c.post(&url).json(&body("hello world", 291));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    let r = send(None).await.expect("answers");
    assert_eq!(r.status(), 401);
    let r = send(Some("sk-wrong-key-123")).await.expect("answers");
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "invalid_api_key");
    // org-alpha spends its whole 600 TPM on two requests; org-beta is untouched.
    for _ in 0..2 {
        assert_eq!(send(Some("sk-alpha-000000")).await.expect("answers").status(), 200);
    }
    let r = send(Some("sk-alpha-000000")).await.expect("answers");
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "openai-organization"), "org-alpha");
    let r = send(Some("sk-beta-0000000")).await.expect("answers");
    assert_eq!(
        (r.status().as_u16(), header(&r, "openai-organization")),
        (200, "org-beta")
    );
    s.stop().await.expect("stops");
}

#[tokio::test]
async fn admin_calls_change_limits_and_cause_outages_while_running() {
    let s = serve(ServerConfig::new(provider(Some(600), None, 0.0, 0.0))).await;
    let c = client();
    let r = c
        .post(format!("{}/admin/config", s.url()))
        .json(&json!({ "tpm": 100000 }))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 200);
    let r = post(&c, &s.url(), &body("hi", 10)).await;
    assert_eq!(header(&r, "x-ratelimit-limit-tokens"), "100000");
    let r = c
        .post(format!("{}/admin/config", s.url()))
        .json(&json!({ "tmp": 5 }))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 400, "unknown admin keys are refused");
    // An outage longer than any clock can hold is a clear 400, and the server lives on.
    let r = c
        .post(format!("{}/admin/outage", s.url()))
        .json(&json!({ "seconds": 1e300, "status": 503 }))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.expect("json");
    assert!(
        v["error"]["message"].as_str().unwrap_or("").contains("too large"),
        "{v}"
    );
    let r = c
        .post(format!("{}/admin/outage", s.url()))
        .json(&json!({ "seconds": 30, "status": 503 }))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 200);
    let r = post(&c, &s.url(), &body("hi", 10)).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "server_is_overloaded");
    let models: Value = c
        .get(format!("{}/v1/models", s.url()))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(models["data"][0]["id"], "gpt-4o-mini");
    assert_eq!(
        c.get(format!("{}/healthz", s.url()))
            .send()
            .await
            .expect("answers")
            .text()
            .await
            .expect("text"),
        "ok"
    );
    s.stop().await.expect("stops");
}

#[tokio::test]
async fn a_client_that_disconnects_frees_its_slot() {
    // One generation slot, 2 s per answer. The first client gives up after 100 ms; the second
    // must then be answered in about 2 s, not 4 s (which it would be if the slot stayed taken).
    let mut p = provider(None, None, 2_000.0, 0.0);
    p.capacity = NonZeroU64::new(1);
    let s = serve(ServerConfig::new(p)).await;
    let c = client();
    let url = format!("{}/v1/chat/completions", s.url());
    let gave_up = c
        .post(&url)
        .json(&body("hi", 10))
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(gave_up.is_err(), "the first client times out");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let r = c.post(&url).json(&body("hi", 10)).send().await.expect("answers");
    assert_eq!(r.status(), 200);
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(3_000),
        "the freed slot serves the next request at once: {took:?}"
    );
    let metrics = metrics(&c, &s).await;
    assert!(metrics.contains("mock_llm_in_flight 0"), "{metrics}");
    s.stop().await.expect("stops");
}

#[tokio::test]
async fn hung_requests_end_when_the_server_stops() {
    let mut p = provider(None, None, 0.0, 0.0);
    p.hang_rate = Probability(1.0);
    let s = serve(ServerConfig::new(p)).await;
    let url = format!("{}/v1/chat/completions", s.url());
    let pending = tokio::spawn(async move {
        client()
            .post(url)
            .json(&body("hi", 10))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!pending.is_finished(), "a hung request does not answer");
    tokio::time::timeout(Duration::from_secs(5), s.stop())
        .await
        .expect("stopping does not wait for hung requests")
        .expect("stops");
    let status = pending.await.expect("joins");
    assert!(matches!(status, Ok(503) | Err(_)), "{status:?}");
}

/// The per-core server on two threads and a free loopback port, in a thread of its own: its
/// address, what stops it, and the thread (which returns the server's result).
#[allow(clippy::type_complexity)]
fn per_core(
    config: ServerConfig,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<Result<(), mock_llm::MockError>>,
) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        server::serve_per_core(
            config,
            "127.0.0.1:0".parse().expect("address"),
            2,
            |at| addr_tx.send(at).expect("the test waits"),
            async {
                let _ = stop_rx.await;
            },
        )
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(10)).expect("binds");
    (addr, stop_tx, server)
}

#[test]
fn the_per_core_server_binds_answers_on_every_thread_and_stops() {
    // How the binary serves: one runtime and SO_REUSEPORT listener per thread, one shared state.
    // The Azure profile counts tokens per minute window with no refill inside it, so every
    // answer's remaining tokens is exactly the previous one's minus its charge, however slowly the
    // requests come on a busy machine (a refilling bucket made equal values legitimate after a
    // 100 ms stall: the flaky failure seen in CI). RPM is set high so only tokens bind.
    let mut p = provider(Some(60_000), Some(1_000_000), 0.0, 0.0);
    p.profile = mock_llm::Profile::Azure;
    let (addr, stop_tx, server) = per_core(ServerConfig::new(p));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let _ = client(); // installs the crypto provider the clients below need
        // Many connections, so that both listeners get some; all share the one provider.
        let mut remaining = vec![];
        for _ in 0..20 {
            let c = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("client");
            let r = post(&c, &format!("http://{addr}"), &body("hello world", 91)).await;
            assert_eq!(r.status(), 200);
            remaining.push(header(&r, "x-ratelimit-remaining-tokens").parse::<u64>().expect("n"));
        }
        // One shared counter: every answer saw the previous ones' charges (100 tokens each). A
        // test slower than a minute would cross a window; it never is.
        assert!(remaining.windows(2).all(|w| w[1] < w[0]), "{remaining:?}");
    });
    stop_tx.send(()).expect("the server waits");
    server.join().expect("joins").expect("stops cleanly");
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_frees_its_slot() {
    // One slot; a streamed answer of 40 tokens at 50 ms each takes 2 s. The first client reads
    // the first chunk and goes away; the next request is then served at once, not after 2 s.
    let mut p = provider(None, None, 0.0, 50.0);
    p.capacity = NonZeroU64::new(1);
    let s = serve(ServerConfig::new(p)).await;
    let c = client();
    let url = format!("{}/v1/chat/completions", s.url());
    let mut b = body("hi", 100);
    b["stream"] = json!(true);
    let r = c
        .post(&url)
        .header(COMPLETION_HINT, "40")
        .json(&b)
        .send()
        .await
        .expect("answers");
    let mut stream = r.bytes_stream();
    let first = stream.next().await.expect("a first chunk").expect("bytes");
    assert!(first.starts_with(b"data: "));
    drop(stream); // the client goes away mid-stream
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let r = c
        .post(&url)
        .header(COMPLETION_HINT, "1")
        .json(&body("hi", 10))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 200);
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1_000),
        "the abandoned stream's slot was freed: waited {took:?}"
    );
    s.stop().await.expect("stops");
}

#[test]
fn a_port_already_served_is_refused_not_shared() {
    // The per-core server binds with SO_REUSEPORT, which would let a second server join the
    // first on its port and take half its connections without a word. It must refuse instead.
    let (addr, stop_tx, first) = per_core(ServerConfig::new(provider(None, None, 0.0, 0.0)));
    let second = server::serve_per_core(
        ServerConfig::new(provider(None, None, 0.0, 0.0)),
        addr,
        2,
        |_| {},
        async {}, // would stop at once, had it started
    );
    let err = second.expect_err("the port is taken");
    assert!(err.to_string().contains("cannot listen"), "{err}");
    stop_tx.send(()).expect("the first server waits");
    first.join().expect("joins").expect("stops cleanly");
}

#[cfg(unix)]
#[test]
fn the_binary_stops_cleanly_on_sigterm_and_sigint_under_load() {
    // The binary as users run it, one runtime per core: a signal right after a burst of
    // traffic on many connections stops it, and it exits with success.
    for (signal, number) in [("TERM", libc::SIGTERM), ("INT", libc::SIGINT), ("TERM", libc::SIGTERM)] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mock-llm"))
            .args(["--port", "0", "--base-ms", "0", "--per-token-ms", "0", "--sigma", "0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("it prints its address");
        let url = line.trim().rsplit(' ').next().expect("an address").to_owned();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let c = client();
            let load = (0..16).map(|_| {
                let (c, url) = (c.clone(), url.clone());
                tokio::spawn(async move {
                    for _ in 0..50 {
                        assert_eq!(post(&c, &url, &body("hi", 5)).await.status(), 200);
                    }
                })
            });
            for l in load.collect::<Vec<_>>() {
                l.await.expect("the load runs");
            }
        });
        drop(rt);
        let pid = libc::pid_t::try_from(child.id()).expect("a pid fits");
        // SAFETY: kill(2) with the pid of a child we own and have not reaped, and a valid signal.
        assert_eq!(unsafe { libc::kill(pid, number) }, 0, "the signal is sent");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.try_wait().expect("waits") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("SIG{signal} did not stop the server within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "SIG{signal}: exit {status}");
    }
}
