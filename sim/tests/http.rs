//! The HTTP backend against scripted servers (wiremock, and a raw socket for a dropped stream):
//! every kind of answer becomes the error or response a strategy acts on.

use std::time::Duration;

use mock_llm::LimitKind;
use serde_json::json;
use sim::backend::ErrorKind;
use sim::http::{HttpBackend, HttpConfig};
use sim::scenario::FileId;
use sim::{ChatRequest, LlmBackend, LlmError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn backend(base: &str, stream: bool, timeout: Duration, time_scale: f64) -> HttpBackend {
    HttpBackend::new(HttpConfig {
        base_url: format!("{base}/v1"),
        api_key: Some("sk-test".into()),
        model: "gpt-4o-mini".into(),
        timeout,
        stream,
        extra_root_pem: None,
        time_scale,
    })
    .expect("builds")
}

fn request() -> ChatRequest {
    ChatRequest {
        file: FileId(0),
        chunk: 3,
        attempt: 0,
        prompt_tokens: 50,
        max_tokens: 200,
        completion_tokens: 20,
        key: 77,
    }
}

async fn answer(server: &MockServer, t: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(t)
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_good_answer_gives_the_verdict_usage_and_rate_limit_headers() {
    let server = MockServer::start().await;
    let verdict = mock_llm::Verdict {
        valid: false,
        issues: 2,
    };
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer sk-test"))
        .and(header("x-mock-completion-tokens", "20"))
        .and(body_partial_json(json!({ "model": "gpt-4o-mini", "max_tokens": 200 })))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-ratelimit-limit-tokens", "30000")
                .insert_header("x-ratelimit-remaining-tokens", "29750")
                .insert_header("x-ratelimit-reset-tokens", "500ms")
                .set_body_json(json!({
                    "choices": [{ "message": { "role": "assistant", "content": verdict.content(77) }, "finish_reason": "stop" }],
                    "usage": { "prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70 }
                })),
        )
        .mount(&server)
        .await;
    let r = backend(&server.uri(), false, Duration::from_secs(5), 1.0)
        .complete(request())
        .await
        .expect("answers");
    assert_eq!(r.verdict, verdict);
    assert_eq!((r.usage.prompt_tokens, r.usage.completion_tokens), (50, 20));
    assert_eq!(
        (r.rate_limit.limit_tokens, r.rate_limit.remaining_tokens),
        (Some(30_000), Some(29_750))
    );
    assert_eq!(r.rate_limit.reset_tokens, Some(Duration::from_millis(500)));
}

#[tokio::test]
async fn a_429_with_a_retry_hint_is_throttled_with_that_hint() {
    let server = MockServer::start().await;
    answer(
        &server,
        ResponseTemplate::new(429)
            .insert_header("retry-after-ms", "644")
            .insert_header("retry-after", "1")
            .set_body_json(json!({ "error": { "message": "Rate limit reached ... on requests per min (RPM)", "type": "requests", "code": "rate_limit_exceeded" } })),
    )
    .await;
    // At time scale 10 the server's 644 ms of real time are 6.44 s of scenario time.
    match backend(&server.uri(), false, Duration::from_secs(5), 10.0)
        .complete(request())
        .await
    {
        Err(LlmError::Throttled { limit, retry_after, .. }) => {
            assert_eq!(limit, Some(LimitKind::Requests));
            assert_eq!(retry_after, Some(Duration::from_millis(6440)));
        }
        other => panic!("expected throttled, got {other:?}"),
    }
}

#[tokio::test]
async fn a_429_without_a_hint_is_throttled_with_none_and_retryable() {
    let server = MockServer::start().await;
    answer(
        &server,
        ResponseTemplate::new(429).set_body_json(
            json!({ "error": { "message": "slow down", "type": "tokens", "code": "rate_limit_exceeded" } }),
        ),
    )
    .await;
    let e = backend(&server.uri(), false, Duration::from_secs(5), 1.0)
        .complete(request())
        .await
        .expect_err("429");
    assert!(
        matches!(
            e,
            LlmError::Throttled {
                retry_after: None,
                limit: Some(LimitKind::Tokens),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_retryable());
}

#[tokio::test]
async fn server_errors_are_retryable_and_client_errors_are_not() {
    let server = MockServer::start().await;
    answer(
        &server,
        ResponseTemplate::new(503).set_body_json(
            json!({ "error": { "message": "overloaded", "type": "server_error", "code": "server_is_overloaded" } }),
        ),
    )
    .await;
    let e = backend(&server.uri(), false, Duration::from_secs(5), 1.0)
        .complete(request())
        .await
        .expect_err("503");
    assert!(
        matches!(e, LlmError::Server { status: 503, .. }) && e.is_retryable(),
        "{e:?}"
    );

    let server = MockServer::start().await;
    answer(
        &server,
        ResponseTemplate::new(400)
            .set_body_json(json!({ "error": { "message": "bad max_tokens", "type": "invalid_request_error" } })),
    )
    .await;
    let e = backend(&server.uri(), false, Duration::from_secs(5), 1.0)
        .complete(request())
        .await
        .expect_err("400");
    assert!(
        matches!(&e, LlmError::Client { status: 400, message } if message.contains("bad max_tokens"))
            && !e.is_retryable()
            && e.kind() == ErrorKind::Client,
        "{e:?}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error_of_its_own_kind() {
    // Load testers count a refused connection apart from a server's 5xx: nobody answered.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = listener.local_addr().expect("has an address");
    drop(listener); // nothing listens there now
    let e = backend(&format!("http://{addr}"), false, Duration::from_secs(5), 1.0)
        .complete(request())
        .await
        .expect_err("refused");
    assert!(matches!(e, LlmError::Connect(_)) && e.is_retryable(), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Connect);
    assert!(e.to_string().to_lowercase().contains("refused"), "{e}");
}

#[tokio::test]
async fn a_slow_answer_times_out() {
    let server = MockServer::start().await;
    answer(
        &server,
        ResponseTemplate::new(200)
            .set_delay(Duration::from_secs(3))
            .set_body_json(json!({})),
    )
    .await;
    let e = backend(&server.uri(), false, Duration::from_millis(200), 1.0)
        .complete(request())
        .await
        .expect_err("timeout");
    assert_eq!(e, LlmError::Timeout);
}

#[tokio::test]
async fn a_connection_dropped_mid_stream_is_a_transport_error() {
    // A raw server: answers with the start of an event stream, then closes the connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accepts");
        let mut buf = vec![0u8; 64 * 1024];
        let _ = sock.read(&mut buf).await;
        let chunk = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"{\\\"va\"}}]}\n\n";
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        let _ = sock
            .write_all(format!("{head}{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
            .await;
        let _ = sock.flush().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(sock); // mid-stream: no final chunk, no [DONE]
    });
    let e = backend(&format!("http://{addr}"), true, Duration::from_secs(5), 1.0)
        .complete(request())
        .await
        .expect_err("dropped");
    assert!(matches!(e, LlmError::Transport(_)) && e.is_retryable(), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Broken);
}

#[tokio::test]
async fn a_streamed_answer_is_joined_from_its_chunks() {
    let server = MockServer::start().await;
    let v = mock_llm::Verdict { valid: true, issues: 0 }.content(1);
    let (a, b) = v.split_at(v.len() / 2);
    let sse = format!(
        "data: {}\n\ndata: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
        json!({ "choices": [{ "delta": { "role": "assistant", "content": a } }] }),
        json!({ "choices": [{ "delta": { "content": b }, "finish_reason": "stop" }] }),
        json!({ "choices": [], "usage": { "prompt_tokens": 50, "completion_tokens": 20 } }),
    );
    answer(
        &server,
        ResponseTemplate::new(200)
            .insert_header("content-type", "text/event-stream")
            .set_body_string(sse),
    )
    .await;
    let r = backend(&server.uri(), true, Duration::from_secs(5), 1.0)
        .complete(request())
        .await
        .expect("answers");
    assert!(r.verdict.valid);
    assert_eq!(r.usage.completion_tokens, 20);
}

#[tokio::test]
async fn tls_endpoints_work_with_a_trusted_private_root() {
    // A TLS server on loopback with a certificate made here for 127.0.0.1: trusted through
    // `extra_root_pem`, and refused without it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
    let cert = params.self_signed(&key).expect("self-signed");
    let der_key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der_key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(sock).await else { return }; // untrusted clients fail here
                let mut buf = vec![0u8; 64 * 1024];
                let _ = s.read(&mut buf).await;
                let body = json!({
                    "choices": [{ "message": { "role": "assistant", "content": mock_llm::Verdict { valid: true, issues: 0 }.content(1) } }],
                    "usage": { "prompt_tokens": 50, "completion_tokens": 20 }
                })
                .to_string();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    let base = format!("https://127.0.0.1:{}", addr.port());
    let mut config = HttpConfig {
        base_url: format!("{base}/v1"),
        api_key: None,
        model: "gpt-4o-mini".into(),
        timeout: Duration::from_secs(5),
        stream: false,
        extra_root_pem: Some(cert.pem().into_bytes()),
        time_scale: 1.0,
    };
    let r = HttpBackend::new(config.clone())
        .expect("builds")
        .complete(request())
        .await
        .expect("answers over TLS");
    assert_eq!(r.usage.completion_tokens, 20);
    config.extra_root_pem = None;
    let e = HttpBackend::new(config)
        .expect("builds")
        .complete(request())
        .await
        .expect_err("untrusted certificate");
    assert!(matches!(e, LlmError::Tls(_)) && !e.is_retryable(), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Tls);
}

#[tokio::test]
async fn hostile_rate_limit_values_are_read_without_a_panic() {
    // A broken or hostile endpoint answers a 429 with a retry hint and reset times beyond any
    // clock, and the run is time-scaled (every duration multiplied): the backend must neither
    // panic converting nor honour the hint. It reads as a wait too long to retry; the absurd
    // reset is dropped.
    let server = MockServer::start().await;
    answer(
        &server,
        ResponseTemplate::new(429)
            .insert_header("retry-after-ms", "1e300")
            .insert_header("x-ratelimit-reset-tokens", "99999999999999999999999h")
            .insert_header("x-ratelimit-reset-requests", "18446744073709551615s")
            .set_body_json(json!({ "error": { "message": "Rate limit reached", "type": "tokens", "code": "rate_limit_exceeded" } })),
    )
    .await;
    let e = backend(&server.uri(), false, Duration::from_secs(5), 2.0)
        .complete(request())
        .await
        .expect_err("a 429");
    match e {
        LlmError::Throttled {
            retry_after: Some(hint),
            rate_limit,
            ..
        } => {
            assert!(hint > Duration::from_secs(120), "a hint too long to honour: {hint:?}");
            assert_eq!(rate_limit.reset_tokens, None);
        }
        other => panic!("expected a throttle, got {other:?}"),
    }
}
