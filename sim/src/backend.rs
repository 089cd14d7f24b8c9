//! The seam between strategies and the LLM: [`LlmBackend`], and the simulated backend that calls
//! the provider model in-process and waits in (virtual) tokio time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use mock_llm::{
    Admission, FailureKind, LimitKind, ModelRequest, Provider, ProviderConfig, ProviderStats, RateLimitHeaders, Usage,
    Verdict,
};
use tokio::time::Instant;

use crate::scenario::{FileId, Network};
use simkit::rng::mix64;

/// A boxed, sendable future (what [`LlmBackend::complete`] returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One chat-completion call for one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChatRequest {
    /// The file the chunk belongs to.
    pub file: FileId,
    /// The chunk's index in its file.
    pub chunk: u32,
    /// 0 for a first attempt, then 1, 2, …
    pub attempt: u32,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// `max_tokens`.
    pub max_tokens: u32,
    /// How long the answer would be if not cut off (the simulated model's behaviour; a hint to a
    /// live mock, ignored by a real provider).
    pub completion_tokens: u32,
    /// The chunk's identity for the provider.
    pub key: u64,
}

impl ChatRequest {
    /// What the provider model needs of it.
    pub fn model_request(&self) -> ModelRequest {
        ModelRequest {
            prompt_tokens: self.prompt_tokens,
            max_tokens: self.max_tokens,
            completion_tokens: self.completion_tokens,
            key: self.key,
            attempt: Some(self.attempt),
        }
    }
}

/// A successful answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChatResponse {
    /// The validator's verdict, read from the completion's content.
    pub verdict: Verdict,
    /// Token counts.
    pub usage: Usage,
    /// The rate-limit headers of the response.
    pub rate_limit: RateLimitHeaders,
}

/// A failed call, as a client sees it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// 429 `rate_limit_exceeded`: retrying later helps.
    #[error("429 rate limited ({limit:?}), retry after {retry_after:?}")]
    Throttled {
        /// Which limit, when the body says.
        limit: Option<LimitKind>,
        /// The server's retry hint (`retry-after-ms`, else `retry-after`), whole milliseconds.
        retry_after: Option<Duration>,
        /// The response's rate-limit headers.
        rate_limit: RateLimitHeaders,
    },
    /// 429 for a request larger than the whole limit: no retry can help.
    #[error("request too large: {message}")]
    TooLarge {
        /// Which limit it exceeds, when known.
        limit: Option<LimitKind>,
        /// The limit, when known.
        limit_value: Option<u64>,
        /// What the request asked for of it, when known.
        requested: Option<u64>,
        /// The server's words.
        message: String,
    },
    /// 5xx (or 408, 409: what openai-python retries).
    #[error("server error {status}")]
    Server {
        /// The status.
        status: u16,
        /// The server's retry hint, if any.
        retry_after: Option<Duration>,
        /// The response's rate-limit headers.
        rate_limit: RateLimitHeaders,
    },
    /// No answer within the client's timeout.
    #[error("timed out")]
    Timeout,
    /// No connection could be made (refused, unreachable, DNS): retrying may help.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The TLS handshake failed (an untrusted or invalid certificate): retrying cannot help.
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// A connection broke during the call.
    #[error("transport error: {0}")]
    Transport(String),
    /// A 4xx other than a rate limit (or an exhausted quota): the request or the account is at
    /// fault, and retrying cannot fix it.
    #[error("client error {status}: {message}")]
    Client {
        /// The status.
        status: u16,
        /// The server's words.
        message: String,
    },
    /// An answer that could not be understood.
    #[error("bad response: {0}")]
    BadResponse(String),
}

/// What kind of failure a call met, as load testers count them: the key of `errors_by_kind` in a
/// report. 429 rate limits are counted apart (`llm_throttled`), the rest as errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// 429 rate limited.
    RateLimited,
    /// No connection (refused, unreachable).
    Connect,
    /// TLS handshake failure.
    Tls,
    /// No answer within the client's timeout.
    Timeout,
    /// A 4xx other than a rate limit.
    #[serde(rename = "4xx")]
    Client,
    /// A 5xx (or 408, 409).
    #[serde(rename = "5xx")]
    Server,
    /// A request larger than the whole limit.
    TooLarge,
    /// A connection broken mid-call.
    Broken,
    /// An answer that could not be understood.
    BadResponse,
}

impl ErrorKind {
    /// The name reports use (`errors_by_kind` keys).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Client => "4xx",
            ErrorKind::Server => "5xx",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Broken => "broken",
            ErrorKind::BadResponse => "bad_response",
        }
    }
}

impl LlmError {
    /// Whether retrying the same request can succeed (429 rate limits, 5xx, timeouts, transport
    /// errors: the set openai-python retries).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LlmError::Throttled { .. }
                | LlmError::Server { .. }
                | LlmError::Timeout
                | LlmError::Connect(_)
                | LlmError::Transport(_)
        )
    }

    /// Its kind, for counting.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LlmError::Throttled { .. } => ErrorKind::RateLimited,
            LlmError::TooLarge { .. } => ErrorKind::TooLarge,
            LlmError::Server { status, .. } if *status >= 500 => ErrorKind::Server,
            LlmError::Server { .. } | LlmError::Client { .. } => ErrorKind::Client,
            LlmError::Timeout => ErrorKind::Timeout,
            LlmError::Connect(_) => ErrorKind::Connect,
            LlmError::Tls(_) => ErrorKind::Tls,
            LlmError::Transport(_) => ErrorKind::Broken,
            LlmError::BadResponse(_) => ErrorKind::BadResponse,
        }
    }

    /// The server's retry hint, if it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::Throttled { retry_after, .. } | LlmError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The rate-limit headers that came with it, if any.
    pub fn rate_limit(&self) -> Option<&RateLimitHeaders> {
        match self {
            LlmError::Throttled { rate_limit, .. } | LlmError::Server { rate_limit, .. } => Some(rate_limit),
            _ => None,
        }
    }

    /// Whether this is a rate-limit refusal.
    pub fn is_throttle(&self) -> bool {
        matches!(self, LlmError::Throttled { .. })
    }
}

/// Something that answers chat completions: the simulated provider, or an HTTP endpoint.
pub trait LlmBackend: Send + Sync {
    /// Sends one request and waits for its answer.
    fn complete(&self, req: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, LlmError>>;

    /// For a backend that decides each request the instant it is sent (the simulated
    /// provider): the answer, and how long after the send it arrives, exactly what
    /// [`LlmBackend::complete`] would give after that wait. The engine then waits itself, with
    /// no boxed future per call (an allocation and a copy of its state: 2% of a simulation's
    /// time). `None`, the default: the answer is only known by awaiting `complete`.
    fn answer_at_send(&self, _req: &ChatRequest) -> Option<Scheduled> {
        None
    }

    /// The provider's own totals, when the backend can see them (the simulated one can).
    fn provider_stats(&self) -> Option<ProviderStats> {
        None
    }
}

/// An answer decided at its request's send instant ([`LlmBackend::answer_at_send`]).
#[derive(Clone, Debug)]
pub struct Scheduled {
    /// How long after the send the answer arrives.
    pub after: Duration,
    /// The answer.
    pub answer: Result<ChatResponse, LlmError>,
}

/// The provider model behind a lock, answering in tokio time (virtual in simulated runs), over
/// a simulated network (see [`Network`]).
#[derive(Debug)]
pub struct SimBackend {
    provider: Mutex<Provider>,
    start: Instant,
    timeout: Duration,
    /// The network's one-way base and jitter, in whole nanoseconds ((0, 0): an ideal network).
    network_ns: (u64, u64),
    network_seed: u64,
}

impl SimBackend {
    /// A backend whose provider's time zero is `start`; calls give up after `timeout`. Requests
    /// and answers cross `network`, whose draws are seeded from the provider's seed.
    pub fn new(config: ProviderConfig, start: Instant, timeout: Duration, network: Network) -> Self {
        let network_seed = simkit::rng::derive_seed(config.seed, "network");
        Self {
            provider: Mutex::new(Provider::new(config)),
            start,
            timeout,
            network_ns: (
                network.delay(0.0).as_nanos() as u64,
                (network.jitter_ms * 1e6).round() as u64,
            ),
            network_seed,
        }
    }

    /// A request's network delay there and back (two one-way draws).
    ///
    /// The whole round trip is added to the time its answer takes to come back, and the provider
    /// decides at the send instant: one timer per call, as without a network (an extra timer per
    /// call costs the simulator half its speed). The order that matters is preserved: a client's
    /// next send waits on its previous answer, so clients told to retry at one instant send, and
    /// are decided, in the order their round trips give, as on a real network. What this
    /// simplification leaves out: requests sent at the very same instant with no answer before
    /// them (a burst at time zero) are decided in send order, and the provider sees each request
    /// up to one one-way delay early.
    fn round_trip(&self, req: &ChatRequest) -> Duration {
        if self.network_ns == (0, 0) {
            return Duration::ZERO;
        }
        // One hash of (chunk, attempt) gives both one-way draws, 32 bits each, in integer
        // nanoseconds: this runs once per call, so it stays a few nanoseconds.
        let h = mix64(self.network_seed ^ mix64(req.key ^ u64::from(req.attempt).wrapping_mul(0xD6E8_FEB8_6659_FD93)));
        let (base, jitter) = self.network_ns;
        let there = base + ((u128::from(jitter) * u128::from(h >> 32)) >> 32) as u64;
        let back = base + ((u128::from(jitter) * u128::from(h & 0xFFFF_FFFF)) >> 32) as u64;
        Duration::from_nanos(there + back)
    }

    fn decide(&self, req: &ChatRequest) -> Admission {
        let now = Instant::now().saturating_duration_since(self.start);
        self.provider
            .lock()
            .expect("the provider lock is never poisoned: admit does not panic")
            .admit(now, &req.model_request())
    }
}

/// Rounds up to whole milliseconds, as the `retry-after-ms` header carries it.
pub fn ceil_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_nanos().div_ceil(1_000_000) as u64)
}

/// Sleeps `d` in tokio time; no timer at all for a zero wait.
pub(crate) async fn wait(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

impl SimBackend {
    /// The answer to `req`, decided now, and when it arrives: the provider's latency, retry
    /// hint or failure time, plus the network's round trip, capped by the client's timeout.
    fn schedule(&self, req: &ChatRequest) -> Scheduled {
        let down = self.round_trip(req);
        let left = self.timeout;
        let (after, answer) = match self.decide(req) {
            Admission::Admitted(a) => {
                if a.latency + down > left {
                    (left, Err(LlmError::Timeout))
                } else {
                    (
                        a.latency + down,
                        Ok(ChatResponse {
                            verdict: a.verdict,
                            usage: a.usage,
                            rate_limit: a.headers,
                        }),
                    )
                }
            }
            Admission::Throttled(t) => (
                t.after + down,
                Err(LlmError::Throttled {
                    limit: Some(t.limit),
                    retry_after: Some(ceil_ms(t.retry_after)),
                    rate_limit: t.headers,
                }),
            ),
            Admission::Failed(f) => match (f.after, f.kind) {
                (None, _) => (left, Err(LlmError::Timeout)),
                (
                    Some(after),
                    FailureKind::TooLarge {
                        limit,
                        limit_value,
                        requested,
                    },
                ) => (
                    after + down,
                    Err(LlmError::TooLarge {
                        limit: Some(limit),
                        limit_value: Some(limit_value),
                        requested: Some(requested),
                        message: format!("{limit:?} limit {limit_value}, requested {requested}"),
                    }),
                ),
                (Some(after), kind) => (
                    after + down,
                    Err(LlmError::Server {
                        status: kind.status().unwrap_or(500),
                        retry_after: None,
                        rate_limit: f.headers,
                    }),
                ),
            },
        };
        Scheduled { after, answer }
    }
}

impl LlmBackend for SimBackend {
    fn complete(&self, req: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, LlmError>> {
        let Scheduled { after, answer } = self.schedule(&req);
        Box::pin(async move {
            wait(after).await;
            answer
        })
    }

    fn answer_at_send(&self, req: &ChatRequest) -> Option<Scheduled> {
        Some(self.schedule(req))
    }

    fn provider_stats(&self) -> Option<ProviderStats> {
        Some(
            self.provider
                .lock()
                .expect("the provider lock is never poisoned")
                .stats(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    /// Two providers alike, one asked through `complete`, the other through `answer_at_send`,
    /// meet the same requests at the same instants: throttles, 5xx, hangs, timeouts and
    /// too-large prompts included.
    #[tokio::test(start_paused = true)]
    async fn an_answer_given_at_send_is_what_complete_gives_after_its_wait() {
        let s = Scenario::parse(
            r#"
name = "backend"
[workload]
files = 1
chunks_per_file = { dist = "fixed", value = 1 }
prompt_tokens = { dist = "fixed", value = 100 }
completion_tokens = { dist = "fixed", value = 10 }
max_tokens = 50
arrival = { kind = "all-at-once" }
[provider]
tpm = 3000
rpm = 20
error_rate = 0.2
hang_rate = 0.1
latency = { base_ms = 800, per_output_token_ms = 40, sigma = 1.0 }
[client]
request_timeout = "3s"
"#,
            "backend test",
        )
        .expect("valid");
        let start = Instant::now();
        let backend = || SimBackend::new(s.provider_config(), start, s.client.request_timeout.0, s.client.network);
        let (awaited, at_send) = (backend(), backend());
        let mut kinds = std::collections::BTreeSet::new();
        for i in 0..300u32 {
            let req = ChatRequest {
                file: FileId(i % 7),
                chunk: i,
                attempt: i % 3,
                prompt_tokens: 100 + (i * 37) % 3500,
                max_tokens: 50,
                completion_tokens: 10 + i % 60,
                key: u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            };
            let scheduled = at_send
                .answer_at_send(&req)
                .expect("the simulated backend decides at send");
            let sent = Instant::now();
            let answer = awaited.complete(req).await;
            // Same answer, arriving when the scheduled one says (tokio's timers fire on whole
            // milliseconds, the engine's wait as this one).
            assert_eq!(answer, scheduled.answer, "request {i}");
            let waited = Instant::now() - sent;
            assert!(
                waited >= scheduled.after && waited - scheduled.after < Duration::from_millis(1),
                "request {i}: waited {waited:?}, scheduled {:?}",
                scheduled.after
            );
            kinds.insert(match &answer {
                Ok(_) => "ok",
                Err(e) => e.kind().name(),
            });
            tokio::time::sleep(Duration::from_millis(u64::from(i % 5) * 150)).await;
        }
        // Every way a call can end was met, so each branch was compared.
        assert!(kinds.len() >= 5, "{kinds:?}");
    }
}
