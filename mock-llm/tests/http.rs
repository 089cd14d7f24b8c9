//! The server's HTTP/1.1 layer over raw sockets, where a client library would hide what is
//! tested: pipelining, requests arriving in pieces, chunked bodies, `Expect: 100-continue`,
//! connection closing, and malformed or oversized requests.

use std::time::Duration;

use mock_llm::config::{LatencyConfig, Millis, ProviderConfig, Sigma};
use mock_llm::server::{self, COMPLETION_HINT, ServerConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello world"}],"max_tokens":50}"#;

fn config() -> ServerConfig {
    let mut c = ServerConfig::new(ProviderConfig {
        latency: LatencyConfig {
            base_ms: Millis(0.0),
            per_output_token_ms: Millis(0.0),
            sigma: Sigma(0.0),
            reject_ms: Millis(0.0),
        },
        ..ProviderConfig::default()
    });
    c.max_body_bytes = 2048;
    c
}

/// A chat request with `Content-Length`, asking for `tokens` completion tokens.
fn chat(tokens: u32) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{COMPLETION_HINT}: {tokens}\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    )
}

/// One parsed answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Splits `bytes` into the answers it holds (each with a `Content-Length`), checking nothing is
/// left over.
fn answers(bytes: &[u8]) -> Vec<Answer> {
    whole_answers(bytes).unwrap_or_else(|| panic!("a truncated answer: {:?}", String::from_utf8_lossy(bytes)))
}

/// The answers in `bytes`, or `None` while the last one is incomplete; fails on a malformed one.
fn whole_answers(mut bytes: &[u8]) -> Option<Vec<Answer>> {
    let mut out = vec![];
    while !bytes.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(n) = r.parse(bytes).expect("a well-formed answer") else {
            return None;
        };
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().expect("a number"));
        let body = bytes.get(n..n + len)?.to_vec();
        out.push(Answer {
            status: r.code.expect("a status"),
            headers,
            body,
        });
        bytes = &bytes[n + len..];
    }
    Some(out)
}

/// Reads until the server closes the connection (or 5 s pass, which fails the test).
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut all = vec![];
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all))
        .await
        .expect("the server closes the connection")
        .expect("reads");
    all
}

/// Reads until `n` whole answers have arrived.
async fn read_answers(s: &mut TcpStream, n: usize) -> Vec<Answer> {
    let mut all = vec![];
    let mut buf = [0u8; 4096];
    loop {
        let got = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("answers come")
            .expect("reads");
        assert!(
            got > 0,
            "the connection closed after {:?}",
            String::from_utf8_lossy(&all)
        );
        all.extend_from_slice(&buf[..got]);
        if let Some(a) = whole_answers(&all).filter(|a| a.len() == n) {
            return a;
        }
    }
}

async fn connect() -> (server::Running, TcpStream) {
    let s = server::start(config(), "127.0.0.1:0").await.expect("starts");
    let c = TcpStream::connect(s.addr).await.expect("connects");
    (s, c)
}

fn completion_tokens(a: &Answer) -> u64 {
    a.json()["usage"]["completion_tokens"].as_u64().expect("usage")
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (s, mut c) = connect().await;
    // Three requests in one write; each asks for a different length, so the order shows.
    c.write_all(format!("{}{}{}", chat(3), chat(5), chat(7)).as_bytes())
        .await
        .expect("writes");
    let a = read_answers(&mut c, 3).await;
    assert_eq!(a.iter().map(|a| a.status).collect::<Vec<_>>(), [200, 200, 200]);
    assert_eq!(a.iter().map(completion_tokens).collect::<Vec<_>>(), [3, 5, 7]);
    // And the connection stays open for more.
    c.write_all(chat(9).as_bytes()).await.expect("writes");
    assert_eq!(completion_tokens(&read_answers(&mut c, 1).await[0]), 9);
    s.stop().await.expect("stops");
}

#[tokio::test]
async fn a_request_arriving_in_pieces_is_answered_once_whole() {
    let (s, mut c) = connect().await;
    c.set_nodelay(true).expect("nodelay");
    let req = chat(4);
    // Cut inside the request line, the headers, and the body.
    for piece in req.as_bytes().chunks(17) {
        c.write_all(piece).await.expect("writes");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let a = read_answers(&mut c, 1).await;
    assert_eq!((a[0].status, completion_tokens(&a[0])), (200, 4));
    s.stop().await.expect("stops");
}

#[tokio::test]
async fn a_chunked_body_is_decoded_and_counted_like_a_plain_one() {
    let (s, mut c) = connect().await;
    c.write_all(chat(2).as_bytes()).await.expect("writes");
    let plain = read_answers(&mut c, 1).await.remove(0);
    let (a, b) = BODY.split_at(20);
    let chunked = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n{COMPLETION_HINT}: 2\r\n\r\n{:x}\r\n{a}\r\n{:x};ext=1\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    c.write_all(chunked.as_bytes()).await.expect("writes");
    let got = read_answers(&mut c, 1).await.remove(0);
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    // The same prompt, so the same prompt tokens: the body was decoded, not taken raw.
    assert_eq!(got.json()["usage"], plain.json()["usage"]);
    s.stop().await.expect("stops");
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let (s, mut c) = connect().await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        BODY.len()
    );
    c.write_all(head.as_bytes()).await.expect("writes");
    let mut buf = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut buf))
        .await
        .expect("the server asks for the body")
        .expect("reads");
    assert_eq!(&buf, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(BODY.as_bytes()).await.expect("writes");
    assert_eq!(read_answers(&mut c, 1).await[0].status, 200);
    // A body over the limit is refused at once instead, without asking for it.
    let mut c = TcpStream::connect(s.addr).await.expect("connects");
    c.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 100000\r\n\r\n",
    )
    .await
    .expect("writes");
    let a = answers(&read_to_close(&mut c).await);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].status, 413);
    assert_eq!(a[0].json()["error"]["code"], "request_too_large");
    s.stop().await.expect("stops");
}

#[tokio::test]
async fn connection_close_and_http_1_0_end_the_connection_after_the_answer() {
    let (s, mut c) = connect().await;
    let req = chat(1).replacen("host: x\r\n", "host: x\r\nconnection: close\r\n", 1);
    c.write_all(req.as_bytes()).await.expect("writes");
    let a = answers(&read_to_close(&mut c).await);
    assert_eq!((a.len(), a[0].status), (1, 200));
    assert_eq!(a[0].header("connection"), Some("close"));

    let mut c = TcpStream::connect(s.addr).await.expect("connects");
    c.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").await.expect("writes");
    let a = answers(&read_to_close(&mut c).await);
    assert_eq!((a[0].status, a[0].body.as_slice()), (200, &b"ok"[..]));
    s.stop().await.expect("stops");
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_openai_errors_and_the_connection_closes() {
    let s = server::start(config(), "127.0.0.1:0").await.expect("starts");
    let many_headers: String = (0..100).map(|i| format!("x-h{i}: v\r\n")).collect();
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"GARBAGE\r\n\r\n".to_vec(), 400),
        (
            b"POST /v1/chat/completions HTTP/1.1\r\ncontent-length: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"POST /v1/chat/completions HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n".to_vec(),
            501,
        ),
        (
            b"POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            400,
        ),
        (format!("GET /healthz HTTP/1.1\r\n{many_headers}\r\n").into_bytes(), 431),
        (
            format!("GET /healthz HTTP/1.1\r\nx-big: {}\r\n", "a".repeat(70_000)).into_bytes(),
            431,
        ),
        (
            b"POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n1000\r\n".to_vec(),
            413,
        ),
        // One-byte chunks with 4,000-byte extensions, never ending: the data stays under the
        // limit while the framing grows without bound, so the bytes held are capped too.
        (
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n{}",
                format!("1;x={}\r\na\r\n", "e".repeat(4000)).repeat(20)
            )
            .into_bytes(),
            413,
        ),
    ];
    for (req, status) in cases {
        let mut c = TcpStream::connect(s.addr).await.expect("connects");
        c.write_all(&req).await.expect("writes");
        let a = answers(&read_to_close(&mut c).await);
        let what = String::from_utf8_lossy(&req[..req.len().min(60)]).into_owned();
        assert_eq!(a.len(), 1, "{what}");
        assert_eq!(a[0].status, status, "{what}");
        let e = a[0].json();
        assert!(
            e["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {e}"
        );
        assert_eq!(a[0].header("connection"), Some("close"), "{what}");
    }
    s.stop().await.expect("stops");
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_named_in_the_error() {
    let (s, mut c) = connect().await;
    c.write_all(b"GET /v1/nope?x=1 HTTP/1.1\r\nhost: x\r\n\r\nGET /v1/chat/completions HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("writes");
    let a = read_answers(&mut c, 2).await;
    assert_eq!(a[0].status, 404);
    assert_eq!(a[0].json()["error"]["message"], "Invalid URL (GET /v1/nope)");
    assert_eq!(a[1].status, 405);
    s.stop().await.expect("stops");
}

#[tokio::test]
async fn stopping_does_not_wait_forever_for_a_client_that_never_reads() {
    let (s, c) = connect().await;
    // Pipelined requests whose answers fill the socket buffers, from a client that never reads:
    // the server's write blocks. Stopping must still end, after the grace period.
    let (_read, mut write) = c.into_split();
    let writer = tokio::spawn(async move {
        let req = b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n".repeat(1000);
        for _ in 0..500 {
            if write.write_all(&req).await.is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::time::timeout(server::http::STOP_GRACE + Duration::from_secs(5), s.stop())
        .await
        .expect("stopping ends despite the stuck connection")
        .expect("stops");
    writer.abort();
}
