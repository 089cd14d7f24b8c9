//! A wiremock server answering every chat completion with the same pre-built JSON, for comparing
//! mock-llm's throughput with a server that does no accounting at all (`benches/mock-server.sh`).

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(18090);
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
    let server = MockServer::builder().listener(listener).start().await;
    let body = serde_json::json!({
        "id": "chatcmpl-static", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": "{\"valid\":true,\"issues\":[]}" }, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": 9, "completion_tokens": 100, "total_tokens": 109 }
    });
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    println!("static wiremock listening on {}", server.uri());
    tokio::signal::ctrl_c().await.expect("waits for ctrl-c");
}
