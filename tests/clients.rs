//! The official OpenAI client libraries (Python and Node) work against the mock unchanged (base
//! URL only), including their automatic retry on 429. .ci/run installs them (`pip install openai`,
//! and `npm install openai` into target/node-openai).

use std::num::NonZeroU64;
use std::process::Command;

use mock_llm::config::{LatencyConfig, Millis, ProviderConfig, Sigma};
use mock_llm::server::{self, ServerConfig};

const SCRIPT: &str = r#"
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-test", max_retries=3)
msgs = [{"role": "user", "content": "hello world"}]
# Spends all but ~300 of 60,000 tokens: the next call lacks ~500 and gets a 429 with
# retry-after-ms of about 500, which the client must wait out and retry on its own.
first = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=59690)
second = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=790)
stream = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=5, stream=True,
                                        stream_options={"include_usage": True})
text, usage = "", None
for chunk in stream:
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
    if chunk.usage:
        usage = chunk.usage
print(first.choices[0].message.content)
print(second.choices[0].message.content, second.usage.prompt_tokens)
print(text, usage.completion_tokens)
"#;

const NODE_SCRIPT: &str = r#"
const OpenAI = require("openai");
const client = new OpenAI({ baseURL: process.argv[1], apiKey: "sk-test", maxRetries: 3 });
const messages = [{ role: "user", content: "hello world" }];
(async () => {
  const first = await client.chat.completions.create({ model: "gpt-4o-mini", messages, max_tokens: 59690 });
  const second = await client.chat.completions.create({ model: "gpt-4o-mini", messages, max_tokens: 790 });
  const stream = await client.chat.completions.create({ model: "gpt-4o-mini", messages, max_tokens: 5, stream: true,
                                                         stream_options: { include_usage: true } });
  let text = "", usage = null;
  for await (const chunk of stream) {
    if (chunk.choices.length) text += chunk.choices[0].delta.content || "";
    if (chunk.usage) usage = chunk.usage;
  }
  console.log(first.choices[0].message.content);
  console.log(second.choices[0].message.content + " " + second.usage.prompt_tokens);
  console.log(text + " " + usage.completion_tokens);
})().catch((e) => { console.error(e); process.exit(1); });
"#;

/// Where .ci/run installs the Node client.
fn node_modules() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/node-openai/node_modules")
}

fn node_with_openai() -> bool {
    node_modules().join("openai").is_dir()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

fn python_with_openai() -> bool {
    Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Starts a mock that lets a 59,700-token request through and then refuses the next for ~0.5 s,
/// runs `client` against it, and checks its output and the server's counters.
async fn check_client(client: impl FnOnce(String) -> std::io::Result<std::process::Output> + Send + 'static) {
    let provider = ProviderConfig {
        tpm: NonZeroU64::new(60_000),
        latency: LatencyConfig {
            base_ms: Millis(20.0),
            per_output_token_ms: Millis(1.0),
            sigma: Sigma(0.0),
            reject_ms: Millis(0.0),
        },
        ..ProviderConfig::default()
    };
    let mut config = ServerConfig::new(provider);
    config.completion_tokens = 5;
    let s = server::start(config, "127.0.0.1:0").await.expect("starts");
    let base = format!("{}/v1", s.url());
    let out = tokio::task::spawn_blocking(move || client(base))
        .await
        .expect("joins")
        .expect("the client runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the client failed:\n{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines.iter().all(|l| l.starts_with("{\"issues\"")),
        "the verdicts came through: {stdout}"
    );
    assert!(
        lines[1].ends_with(" 9"),
        "usage parsed: 9 prompt tokens for \"hello world\": {stdout}"
    );
    assert!(lines[2].ends_with(" 5"), "the streamed usage chunk parsed: {stdout}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = reqwest::get(format!("{}/metrics", s.url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("mock_llm_requests_total{status=\"200\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("status=\"429\""),
        "the client met a 429 and retried on its own: {metrics}"
    );
    s.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3 with the `openai` package: .ci/run installs it and runs the ignored tests"]
async fn openai_python_works_unchanged_and_retries_its_429() {
    assert!(
        python_with_openai(),
        "python3 with the `openai` package is missing: `pip install openai` (.ci/run does)"
    );
    check_client(|base| Command::new("python3").args(["-c", SCRIPT, &base]).output()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs node with the `openai` package in target/node-openai: .ci/run installs it and runs the ignored tests"]
async fn openai_node_works_unchanged_and_retries_its_429() {
    assert!(
        node_with_openai(),
        "node with the `openai` package is missing: `npm install openai` in target/node-openai (.ci/run does)"
    );
    check_client(|base| {
        Command::new("node")
            .env("NODE_PATH", node_modules())
            .args(["-e", NODE_SCRIPT, &base])
            .output()
    })
    .await;
}
