//! The HTTP backend: OpenAI's chat-completions API over real HTTP (TLS included), against the
//! bundled mock or any OpenAI-compatible endpoint. It reads the rate-limit headers and retry hints
//! as openai-python does and returns them exactly as the simulated backend does.

use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use mock_llm::headers::{names, parse_go_duration};
use mock_llm::{LimitKind, RateLimitHeaders, Usage, Verdict};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::backend::{BoxFuture, ChatRequest, ChatResponse, LlmBackend, LlmError};

/// Where and how to send requests.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// The API base, e.g. `http://127.0.0.1:8080/v1` or `https://api.openai.com/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer KEY` when set.
    pub api_key: Option<String>,
    /// The `model` of every request.
    pub model: String,
    /// How long a call may take, in real time.
    pub timeout: Duration,
    /// Ask for server-sent events (`stream: true`) instead of one JSON answer.
    pub stream: bool,
    /// Extra root certificates (PEM) to trust besides the system's, for an endpoint with a private
    /// or self-signed certificate.
    pub extra_root_pem: Option<Vec<u8>>,
    /// The run's time scale K: the server's durations (retry hints, resets) are real time, and
    /// are multiplied by K to give the scenario time that strategies work in. 1 for real time.
    pub time_scale: f64,
}

/// The backend. Cheap to share: one connection pool.
#[derive(Debug)]
pub struct HttpBackend {
    client: reqwest::Client,
    url: String,
    config: HttpConfig,
    /// Transport overhead of each answered call, in real microseconds (see [`Overhead`]).
    overhead_us: std::sync::Mutex<hdrhistogram::Histogram<u64>>,
}

/// What the transport added to the calls of a live run: each answered call's real round trip
/// (request sent to body read, on the client) less the time the server says it spent
/// (`openai-processing-ms`, which OpenAI and the bundled mock send). This is the HTTP stack, the
/// loopback or network and both sides' scheduling: at time scale K it stretches every call by K
/// times as much scenario time, a distortion the simulation does not have.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Overhead {
    /// Calls measured.
    pub samples: u64,
    /// Median, real ms.
    pub p50_ms: f64,
    /// 99th percentile, real ms.
    pub p99_ms: f64,
    /// Mean, real ms.
    pub mean_ms: f64,
}

impl Overhead {
    /// The report's figure for a run at time scale `time_scale` whose median successful call
    /// took `median_call_ms` of scenario time.
    pub fn transport(&self, time_scale: f64, median_call_ms: f64) -> crate::report::Transport {
        use crate::report::round6;
        crate::report::Transport {
            samples: self.samples,
            p50_ms: round6(self.p50_ms),
            p99_ms: round6(self.p99_ms),
            time_scale,
            distortion: if median_call_ms > 0.0 {
                round6(self.p50_ms * time_scale / median_call_ms)
            } else {
                0.0
            },
        }
    }
}

impl HttpBackend {
    /// A backend for `config`.
    #[expect(
        clippy::result_large_err,
        reason = "called once per run; LlmError carries rate-limit headers and is no larger than a ChatResponse"
    )]
    pub fn new(config: HttpConfig) -> Result<Self, LlmError> {
        // reqwest is built without a crypto provider; ring is the one this project uses. Installing
        // it twice is harmless (the second call reports the first).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .pool_max_idle_per_host(1024);
        if let Some(pem) = &config.extra_root_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| LlmError::Transport(format!("cannot read the extra root certificates: {e}")))?;
            if certs.is_empty() {
                return Err(LlmError::Transport(
                    "the extra root certificates hold no certificate".into(),
                ));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| LlmError::Transport(format!("cannot build the HTTP client: {e}")))?;
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        Ok(Self {
            client,
            url,
            config,
            overhead_us: std::sync::Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
                    .expect("these bounds and precision are valid"),
            ),
        })
    }

    /// The transport overhead measured so far; `None` before any answered call carried
    /// `openai-processing-ms` (e.g. a streamed answer, or an endpoint that does not send it).
    pub fn overhead(&self) -> Option<Overhead> {
        let h = self.overhead_us.lock().unwrap_or_else(|e| e.into_inner());
        (!h.is_empty()).then(|| Overhead {
            samples: h.len(),
            p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
            mean_ms: h.mean() / 1000.0,
        })
    }

    /// Checks, before a run, that the endpoint answers at all: `GET BASE/models` within 10 s.
    /// Any HTTP answer counts (a 401 or 404 still proves a server is there); a refused
    /// connection, a failed TLS handshake or a timeout is returned with its cause, so that a
    /// run against an endpoint that cannot be reached fails at once instead of retrying forever.
    pub async fn preflight(&self) -> Result<(), String> {
        let url = format!("{}/models", self.config.base_url.trim_end_matches('/'));
        let mut r = self.client.get(&url).timeout(Duration::from_secs(10));
        if let Some(k) = &self.config.api_key {
            r = r.bearer_auth(k);
        }
        r.send().await.map(drop).map_err(|e| causes(&e))
    }
}

/// An error and its causes, each said once (reqwest's own text names only the URL).
fn causes(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// A prompt of `tokens` tokens as the mock counts them: the cookbook's chat overhead (2 + 4 per
/// message + 1 for the role `user`) plus one token per ` a`.
pub fn prompt_text(tokens: u32) -> String {
    " a".repeat(tokens.saturating_sub(7) as usize)
}

impl LlmBackend for HttpBackend {
    fn complete(&self, req: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, LlmError>> {
        Box::pin(async move {
            let mut body = json!({
                "model": self.config.model,
                "messages": [{ "role": "user", "content": prompt_text(req.prompt_tokens) }],
                "max_tokens": req.max_tokens,
            });
            if self.config.stream {
                body["stream"] = json!(true);
                body["stream_options"] = json!({ "include_usage": true });
            }
            let mut r = self
                .client
                .post(&self.url)
                .header("x-mock-completion-tokens", req.completion_tokens)
                .header("x-mock-key", req.key)
                .header("x-mock-attempt", req.attempt)
                .json(&body);
            if let Some(k) = &self.config.api_key {
                r = r.bearer_auth(k);
            }
            // Real time: this backend only serves live runs.
            let sent = tokio::time::Instant::now();
            let resp = r.send().await.map_err(transport)?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let k = if self.config.time_scale > 0.0 {
                self.config.time_scale
            } else {
                1.0
            };
            // Checked: a hostile endpoint's huge hint saturates (and is then too long to honour)
            // rather than panicking the run.
            let scenario_time = |d: Duration| Duration::try_from_secs_f64(d.as_secs_f64() * k).unwrap_or(Duration::MAX);
            let mut rate_limit = rate_limit_headers(&headers);
            rate_limit.reset_requests = rate_limit.reset_requests.map(scenario_time);
            rate_limit.reset_tokens = rate_limit.reset_tokens.map(scenario_time);
            if status == 200 {
                let (content, usage) = if self.config.stream {
                    read_stream(resp).await?
                } else {
                    read_json(resp).await?
                };
                if let Some(server_ms) = header(&headers, "openai-processing-ms").and_then(|v| v.parse::<f64>().ok()) {
                    let round_trip_us = sent.elapsed().as_micros() as f64;
                    let overhead = (round_trip_us - server_ms * 1000.0).max(0.0) as u64;
                    self.overhead_us
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .saturating_record(overhead);
                }
                // A real model does not answer with our verdicts: count such answers as valid.
                let verdict = Verdict::parse(&content).unwrap_or(Verdict { valid: true, issues: 0 });
                let usage = usage.unwrap_or(Usage {
                    prompt_tokens: req.prompt_tokens,
                    completion_tokens: 0,
                });
                return Ok(ChatResponse {
                    verdict,
                    usage,
                    rate_limit,
                });
            }
            let text = resp.text().await.unwrap_or_default();
            Err(match classify(status, &headers, &text, rate_limit) {
                LlmError::Throttled {
                    limit,
                    retry_after,
                    rate_limit,
                } => LlmError::Throttled {
                    limit,
                    retry_after: retry_after.map(scenario_time),
                    rate_limit,
                },
                LlmError::Server {
                    status,
                    retry_after,
                    rate_limit,
                } => LlmError::Server {
                    status,
                    retry_after: retry_after.map(scenario_time),
                    rate_limit,
                },
                other => other,
            })
        })
    }
}

fn transport(e: reqwest::Error) -> LlmError {
    if e.is_timeout() {
        LlmError::Timeout
    } else if is_tls(&e) {
        LlmError::Tls(chain(&e))
    } else if e.is_connect() {
        LlmError::Connect(chain(&e))
    } else {
        LlmError::Transport(chain(&e))
    }
}

/// An error and its causes, `: `-separated (reqwest's own message says only "error sending
/// request").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// Whether a rustls error is among the causes (hyper-rustls wraps it in an `io::Error` inside
/// another, and an `io::Error`'s `source()` skips what it wraps, so the inner errors of each
/// `io::Error` are looked at too).
fn is_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<rustls::Error>() {
            return true;
        }
        // An io::Error may wrap another io::Error that wraps the rustls error.
        let mut io = c.downcast_ref::<std::io::Error>();
        while let Some(inner) = io.and_then(|e| e.get_ref()) {
            if inner.is::<rustls::Error>() {
                return true;
            }
            io = inner.downcast_ref::<std::io::Error>();
        }
        cause = c.source();
    }
    false
}

async fn read_json(resp: reqwest::Response) -> Result<(String, Option<Usage>), LlmError> {
    let v: Value = resp.json().await.map_err(|e| {
        if e.is_timeout() {
            LlmError::Timeout
        } else {
            LlmError::BadResponse(format!("not a chat completion: {e}"))
        }
    })?;
    let content = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok((content, usage(&v["usage"])))
}

async fn read_stream(resp: reqwest::Response) -> Result<(String, Option<Usage>), LlmError> {
    let mut stream = resp.bytes_stream();
    let (mut buf, mut content, mut usage_seen) = (String::new(), String::new(), None);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(transport)?;
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            for line in event.lines() {
                let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                    continue;
                };
                if data == "[DONE]" {
                    return Ok((content, usage_seen));
                }
                let v: Value =
                    serde_json::from_str(data).map_err(|e| LlmError::BadResponse(format!("bad stream chunk: {e}")))?;
                if let Some(piece) = v["choices"][0]["delta"]["content"].as_str() {
                    content.push_str(piece);
                }
                if let Some(u) = usage(&v["usage"]) {
                    usage_seen = Some(u);
                }
            }
        }
    }
    Err(LlmError::Transport("the stream ended before [DONE]".into()))
}

fn usage(v: &Value) -> Option<Usage> {
    Some(Usage {
        prompt_tokens: u32::try_from(v["prompt_tokens"].as_u64()?).ok()?,
        completion_tokens: u32::try_from(v["completion_tokens"].as_u64()?).ok()?,
    })
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// The six `x-ratelimit-*` headers, where present.
pub fn rate_limit_headers(h: &HeaderMap) -> RateLimitHeaders {
    let n = |name| header(h, name).and_then(|v| v.parse::<u64>().ok());
    let d = |name| header(h, name).and_then(parse_go_duration);
    RateLimitHeaders {
        limit_requests: n(names::LIMIT_REQUESTS),
        limit_tokens: n(names::LIMIT_TOKENS),
        remaining_requests: n(names::REMAINING_REQUESTS),
        remaining_tokens: n(names::REMAINING_TOKENS),
        reset_requests: d(names::RESET_REQUESTS),
        reset_tokens: d(names::RESET_TOKENS),
        observed: None,
    }
}

/// Reads the numbers of OpenAI's "Request too large … Limit L, Requested R" message.
fn too_large(message: String) -> LlmError {
    let number_after = |key: &str| {
        let at = message.find(key)? + key.len();
        let digits: String = message[at..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ',')
            .filter(char::is_ascii_digit)
            .collect();
        digits.parse::<u64>().ok()
    };
    let limit = if message.contains("tokens per min") || message.contains("(TPM)") {
        Some(LimitKind::Tokens)
    } else if message.contains("requests per min") || message.contains("(RPM)") {
        Some(LimitKind::Requests)
    } else {
        None
    };
    LlmError::TooLarge {
        limit,
        limit_value: number_after("Limit"),
        requested: number_after("Requested"),
        message,
    }
}

/// The server's retry hint, as openai-python reads it (`_base_client.py`): `retry-after-ms`
/// (milliseconds, possibly fractional) first, then `retry-after` as seconds (possibly fractional)
/// or an HTTP date. Rounded up to whole milliseconds.
pub fn retry_hint(h: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let ms = |x: f64| (x.is_finite() && x >= 0.0).then(|| Duration::from_millis(x.ceil() as u64));
    if let Some(v) = header(h, "retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return ms(v);
    }
    let v = header(h, "retry-after")?;
    if let Ok(secs) = v.parse::<f64>() {
        return ms(secs * 1000.0);
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Maps an error answer to what a strategy can act on.
fn classify(status: u16, h: &HeaderMap, body: &str, rate_limit: RateLimitHeaders) -> LlmError {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let err = &v["error"];
    let message = err["message"].as_str().unwrap_or(body).to_owned();
    let should_retry = header(h, "x-should-retry");
    #[expect(
        clippy::disallowed_methods,
        reason = "live path only: an HTTP-date retry-after is relative to the real wall clock"
    )]
    let retry_after = retry_hint(h, SystemTime::now());
    if should_retry == Some("false") {
        return if status == 429 {
            too_large(message)
        } else if (400..500).contains(&status) {
            LlmError::Client { status, message }
        } else {
            LlmError::BadResponse(format!("{status}: {message}"))
        };
    }
    match status {
        429 if err["code"] == "insufficient_quota" => LlmError::Client {
            status,
            message: format!("insufficient_quota: {message}"),
        },
        429 if message.starts_with("Request too large") => too_large(message),
        429 => {
            let limit = match err["type"].as_str() {
                Some("tokens") => Some(LimitKind::Tokens),
                Some("requests") => Some(LimitKind::Requests),
                _ if message.contains("token rate limit") => Some(LimitKind::Tokens),
                _ if message.contains("call rate limit") => Some(LimitKind::Requests),
                _ => None,
            };
            LlmError::Throttled {
                limit,
                retry_after,
                rate_limit,
            }
        }
        // openai-python retries 408, 409 and 5xx, and so may a strategy.
        408 | 409 | 500..=599 => LlmError::Server {
            status,
            retry_after,
            rate_limit,
        },
        _ if should_retry == Some("true") => LlmError::Server {
            status,
            retry_after,
            rate_limit,
        },
        400..=499 => LlmError::Client { status, message },
        _ => LlmError::BadResponse(format!("{status}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("ascii"));
        }
        h
    }

    #[test]
    fn retry_hints_are_read_like_openai_python() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(
            retry_hint(&headers(&[("retry-after-ms", "644.2"), ("retry-after", "9")]), now),
            Some(Duration::from_millis(645))
        );
        assert_eq!(
            retry_hint(&headers(&[("retry-after", "1.5")]), now),
            Some(Duration::from_millis(1500))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            retry_hint(&headers(&[("retry-after", &later)]), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(retry_hint(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_hint(&HeaderMap::new(), now), None);
    }

    #[test]
    fn errors_are_classified_by_status_body_and_hints() {
        let rl = RateLimitHeaders::default();
        let tpm = r#"{"error":{"message":"Rate limit reached","type":"tokens","code":"rate_limit_exceeded"}}"#;
        assert!(matches!(
            classify(429, &headers(&[("retry-after-ms", "10")]), tpm, rl),
            LlmError::Throttled {
                limit: Some(LimitKind::Tokens),
                retry_after: Some(_),
                ..
            }
        ));
        let big = r#"{"error":{"message":"Request too large for gpt-4o in organization org-x on tokens per min (TPM): Limit 30,000, Requested 31,200. The input or output tokens must be reduced in order to run successfully.","code":"rate_limit_exceeded"}}"#;
        assert!(matches!(
            classify(429, &HeaderMap::new(), big, rl),
            LlmError::TooLarge {
                limit: Some(LimitKind::Tokens),
                limit_value: Some(30_000),
                requested: Some(31_200),
                ..
            }
        ));
        let quota = r#"{"error":{"message":"You exceeded your current quota","code":"insufficient_quota"}}"#;
        assert!(!classify(429, &HeaderMap::new(), quota, rl).is_retryable());
        assert!(classify(503, &HeaderMap::new(), "", rl).is_retryable());
        assert!(!classify(503, &headers(&[("x-should-retry", "false")]), "", rl).is_retryable());
        assert!(!classify(400, &HeaderMap::new(), "{}", rl).is_retryable());
        let azure = r#"{"error":{"code":"429","message":"... have exceeded token rate limit of your current ..."}}"#;
        assert!(matches!(
            classify(429, &HeaderMap::new(), azure, rl),
            LlmError::Throttled {
                limit: Some(LimitKind::Tokens),
                ..
            }
        ));
    }
}
