//! The OpenAI-compatible HTTP server around the provider model (feature `server`).
//!
//! Every request is decided by the same [`Provider::admit`] the simulation uses, with `now` the
//! time since the server started, and answered after the latency the model decided. Start at
//! [`router`] for the routes, [`start`] to run one in-process (tests bind `127.0.0.1:0`).
//!
//! - [`openai`]: request validation and OpenAI's answer and error bodies;
//! - [`tokens`]: prompt token counting (BPE or chars/4);
//! - [`cli`]: the command line of `mock-llm` and `orchbench mock-llm`.

pub mod cli;
pub mod openai;
pub mod tokens;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::config::{LatencyConfig, Probability, Profile, ProviderConfig};
use crate::error::MockError;
use crate::headers::RateLimitHeaders;
use crate::provider::{Admission, FailureKind, ModelRequest, Provider, Slot};
use crate::rng::mix64;
use openai::ApiError;
pub use tokens::Tokenizer;

/// How the server behaves.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The provider model's settings (limits, latency, faults); each organization gets its own
    /// provider with these settings.
    pub provider: ProviderConfig,
    /// API keys, each its own organization: (key, organization).
    pub keys: Vec<(String, String)>,
    /// Answer 401 to requests without a known key. Default false: they share the default
    /// organization.
    pub require_key: bool,
    /// How prompt tokens are counted. Default BPE.
    pub tokenizer: Tokenizer,
    /// Largest accepted request body, in bytes. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Completion length when the request does not hint one (`x-mock-completion-tokens`).
    /// Default 100.
    pub completion_tokens: u32,
    /// `max_tokens` assumed when a request gives none. Default 4096.
    pub default_max_tokens: u32,
}

impl ServerConfig {
    /// Defaults around `provider`.
    pub fn new(provider: ProviderConfig) -> Self {
        Self {
            provider,
            keys: Vec::new(),
            require_key: false,
            tokenizer: Tokenizer::Bpe,
            max_body_bytes: 1 << 20,
            completion_tokens: 100,
            default_max_tokens: 4096,
        }
    }
}

/// The header a client may send to say how long the simulated answer is.
pub const COMPLETION_HINT: &str = "x-mock-completion-tokens";
/// The header a client may send to identify the work item (the verdict depends on it).
pub const KEY_HINT: &str = "x-mock-key";

struct Org {
    name: String,
    provider: Mutex<Provider>,
}

struct Metrics {
    /// Responses by HTTP status (the index), 0–599.
    by_status: Vec<Sharded>,
    throttled_tokens: Sharded,
    throttled_requests: Sharded,
    tokens_admitted: Sharded,
    in_flight: Sharded,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            by_status: (0..600).map(|_| Sharded::default()).collect(),
            throttled_tokens: Sharded::default(),
            throttled_requests: Sharded::default(),
            tokens_admitted: Sharded::default(),
            in_flight: Sharded::default(),
        }
    }
}

/// Shards per counter.
const SHARDS: usize = 8;

/// A counter split into per-thread shards, each on its own cache line, so that server threads
/// counting at once do not fight over one line; reading sums the shards.
#[derive(Default)]
struct Sharded([Padded; SHARDS]);

#[derive(Default)]
#[repr(align(64))]
struct Padded(AtomicI64);

/// This thread's index: unique per thread, assigned on first use.
fn thread_index() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static INDEX: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|i| *i)
}

impl Sharded {
    fn add(&self, n: i64) {
        self.0[(thread_index() % SHARDS as u64) as usize]
            .0
            .fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> i64 {
        self.0.iter().map(|p| p.0.load(Ordering::Relaxed)).sum()
    }
}

/// A request id unique in this process, without a shared counter: the thread's index in the
/// high bits, a per-thread count in the low ones.
fn request_id() -> u64 {
    thread_local! {
        static COUNT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    let n = COUNT.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    (thread_index() << 40) | n
}

struct AppState {
    config: ServerConfig,
    orgs: BTreeMap<String, Arc<Org>>,
    default_org: Arc<Org>,
    start: Instant,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
}

impl AppState {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn all_orgs(&self) -> impl Iterator<Item = &Arc<Org>> {
        std::iter::once(&self.default_org).chain(self.orgs.values())
    }

    /// Sleeps, unless the server shuts down first (then returns false).
    async fn sleep(&self, d: Duration) -> bool {
        if d.is_zero() {
            // No timer: registering one costs a wake-up on the next millisecond tick.
            return true;
        }
        let mut rx = self.shutdown.clone();
        tokio::select! {
            biased;
            _ = rx.wait_for(|stop| *stop) => false,
            () = tokio::time::sleep(d) => true,
        }
    }
}

/// An organization: its own buckets, with the configured seed (a chunk's verdict must not depend
/// on who asks, and the default organization must decide exactly as the simulation does).
fn org(name: &str, config: &ProviderConfig) -> Arc<Org> {
    Arc::new(Org {
        name: name.to_owned(),
        provider: Mutex::new(Provider::new(config.clone())),
    })
}

/// Counts a response by status, and the request in flight until dropped.
struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.add(-1);
    }
}

/// Frees a generation slot if the answer is abandoned (the client disconnected).
struct SlotGuard {
    /// The organization and its slot, when a capacity is configured (otherwise nothing to free,
    /// and no reference count to touch).
    held: Option<(Arc<Org>, Slot)>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Some((org, slot)) = self.held.take() {
            org.provider.lock().unwrap_or_else(|e| e.into_inner()).release(slot);
        }
    }
}

/// The routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /healthz`, `GET /metrics`,
/// `POST /admin/config`, `POST /admin/outage`. `shutdown` ends pending answers when it turns true.
pub fn router(config: ServerConfig, shutdown: watch::Receiver<bool>) -> Router {
    config.tokenizer.warm_up(&config.provider.model);
    let orgs = config
        .keys
        .iter()
        .map(|(key, name)| (key.clone(), org(name, &config.provider)))
        .collect();
    let default_org = org(&config.provider.organization, &config.provider);
    let state = Arc::new(AppState {
        orgs,
        default_org,
        start: Instant::now(),
        metrics: Metrics::default(),
        shutdown,
        config,
    });
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/admin/config", post(admin_config))
        .route("/admin/outage", post(admin_outage))
        .with_state(state)
}

/// A server running in-process.
#[derive(Debug)]
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it: pending answers end, connections close.
    pub async fn stop(self) -> Result<(), MockError> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(r) => r.map_err(|source| MockError::Io {
                what: "serving".into(),
                source,
            }),
            Err(e) => Err(MockError::Config(format!("the server task failed: {e}"))),
        }
    }
}

/// Binds `addr` (e.g. `127.0.0.1:0`) and serves in a background task.
pub async fn start(config: ServerConfig, addr: &str) -> Result<Running, MockError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MockError::Io {
            what: format!("cannot listen on {addr}"),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| MockError::Io {
        what: "local address".into(),
        source,
    })?;
    let (stop, rx) = watch::channel(false);
    let app = router(config, rx.clone());
    let mut wait = rx;
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = wait.wait_for(|s| *s).await;
            })
            .await
    });
    Ok(Running { addr, stop, task })
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Header names, built once: a `&str` name is parsed and validated on every insert.
mod names {
    use axum::http::HeaderName;
    pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    pub const OPENAI_ORGANIZATION: HeaderName = HeaderName::from_static("openai-organization");
    pub const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
    pub const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
    pub const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
    pub const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
    pub const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
    pub const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");
}

/// The six `x-ratelimit-*` headers (the same values as [`RateLimitHeaders::pairs`], written
/// without intermediate strings for the numbers).
fn rate_limit_headers(map: &mut HeaderMap, h: &RateLimitHeaders) {
    let mut number = |name, v: Option<u64>| {
        if let Some(v) = v {
            map.insert(name, HeaderValue::from(v));
        }
    };
    number(names::LIMIT_REQUESTS, h.limit_requests);
    number(names::LIMIT_TOKENS, h.limit_tokens);
    number(names::REMAINING_REQUESTS, h.remaining_requests);
    number(names::REMAINING_TOKENS, h.remaining_tokens);
    for (name, d) in [
        (names::RESET_REQUESTS, h.reset_requests),
        (names::RESET_TOKENS, h.reset_tokens),
    ] {
        if let Some(v) = d.and_then(|d| HeaderValue::from_str(&crate::headers::go_duration(d)).ok()) {
            map.insert(name, v);
        }
    }
}

fn respond(
    state: &AppState,
    org: &str,
    status: u16,
    body: Body,
    content_type: &str,
    limits: Option<&RateLimitHeaders>,
    extra: &[(&'static str, String)],
) -> Response {
    if let Some(c) = state.metrics.by_status.get(usize::from(status)) {
        c.add(1);
    }
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    let content_type = match content_type {
        "application/json" => HeaderValue::from_static("application/json"),
        "text/event-stream" => HeaderValue::from_static("text/event-stream"),
        other => HeaderValue::from_str(other).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    };
    h.insert(axum::http::header::CONTENT_TYPE, content_type);
    let id = request_id();
    h.insert(names::X_REQUEST_ID, HeaderValue::from(id));
    if let Ok(v) = HeaderValue::from_str(org) {
        h.insert(names::OPENAI_ORGANIZATION, v);
    }
    if let Some(l) = limits {
        rate_limit_headers(h, l);
    }
    for (k, v) in extra {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(*k, v);
        }
    }
    r
}

fn json_response(
    state: &AppState,
    org: &str,
    status: u16,
    body: &Value,
    limits: Option<&RateLimitHeaders>,
    extra: &[(&'static str, String)],
) -> Response {
    respond(
        state,
        org,
        status,
        Body::from(body.to_string()),
        "application/json",
        limits,
        extra,
    )
}

fn api_error(state: &AppState, org: &str, e: ApiError) -> Response {
    json_response(state, org, e.status, &e.body, None, &[])
}

fn find_org<'s>(state: &'s AppState, headers: &HeaderMap) -> Result<&'s Arc<Org>, ApiError> {
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty());
    match key.and_then(|k| state.orgs.get(k)) {
        Some(o) => Ok(o),
        None if !state.config.require_key => Ok(&state.default_org),
        None => Err(match key {
            None => ApiError::new(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                "invalid_request_error",
                None,
                None,
            ),
            Some(k) => ApiError::new(
                401,
                format!(
                    "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                    redact(k)
                ),
                "invalid_request_error",
                None,
                Some("invalid_api_key"),
            ),
        }),
    }
}

fn redact(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    format!(
        "{}{}{}",
        chars[..3].iter().collect::<String>(),
        "*".repeat(chars.len() - 7),
        chars[chars.len() - 4..].iter().collect::<String>()
    )
}

fn hint<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

async fn chat(State(state): State<Arc<AppState>>, request: axum::extract::Request) -> Response {
    // The whole request, split: the `HeaderMap` extractor would copy every header.
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let org = match find_org(&state, headers) {
        Ok(o) => o,
        Err(e) => return api_error(&state, &state.config.provider.organization, e),
    };
    let bytes = match axum::body::to_bytes(body, state.config.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            let e = ApiError::new(
                413,
                format!(
                    "Request body too large: the limit is {} bytes.",
                    state.config.max_body_bytes
                ),
                "invalid_request_error",
                None,
                Some("request_too_large"),
            );
            return api_error(&state, &org.name, e);
        }
    };
    let req = match openai::parse_chat(&bytes) {
        Ok(r) => r,
        Err(e) => return api_error(&state, &org.name, e),
    };
    let model = state.config.provider.model.clone();
    if req.model != model {
        let e = ApiError::new(
            404,
            format!(
                "The model `{}` does not exist or you do not have access to it.",
                req.model
            ),
            "invalid_request_error",
            None,
            Some("model_not_found"),
        );
        return api_error(&state, &org.name, e);
    }
    let prompt_tokens = tokens::prompt_tokens(state.config.tokenizer, &model, &req.messages);
    let max_tokens = req.max_tokens.unwrap_or(state.config.default_max_tokens);
    let completion_tokens = hint(headers, COMPLETION_HINT).unwrap_or(state.config.completion_tokens);
    let key = hint(headers, KEY_HINT).unwrap_or_else(|| {
        req.messages
            .iter()
            .flat_map(|m| m.1.bytes())
            .fold(0x6d6f_636b, |h: u64, b| mix64(h ^ u64::from(b)))
    });
    let mreq = ModelRequest {
        prompt_tokens,
        max_tokens,
        completion_tokens,
        key,
    };
    state.metrics.in_flight.add(1);
    let _in_flight = InFlight(&state.metrics);
    let now = state.now();
    let (decision, profile) = {
        let mut p = org.provider.lock().unwrap_or_else(|e| e.into_inner());
        (p.admit(now, &mreq), p.config().profile)
    };
    match decision {
        Admission::Admitted(a) => {
            let charge = state.config.provider.charge(prompt_tokens, max_tokens);
            state
                .metrics
                .tokens_admitted
                .add(i64::try_from(charge).unwrap_or(i64::MAX));
            let guard = SlotGuard {
                held: a.slot.map(|slot| (org.clone(), slot)),
            };
            let content = a.verdict.content(key);
            let finish = if a.truncated { "length" } else { "stop" };
            let id = format!("chatcmpl-{:016x}", request_id());
            let usage = json!({
                "prompt_tokens": a.usage.prompt_tokens,
                "completion_tokens": a.usage.completion_tokens,
                "total_tokens": a.usage.total(),
            });
            if req.stream {
                let per_token = state.config.provider.latency.per_output_token_ms.0;
                let stream = StreamPlan {
                    id,
                    model,
                    content,
                    finish,
                    usage,
                    include_usage: req.include_usage,
                    latency: a.latency,
                    tokens: a.usage.completion_tokens,
                    per_token_ms: per_token,
                };
                let body = stream.body(state.clone(), guard);
                return respond(
                    &state,
                    &org.name,
                    200,
                    body,
                    "text/event-stream",
                    Some(&a.headers),
                    &[("cache-control", "no-cache".into())],
                );
            }
            if !state.sleep(a.latency).await {
                return api_error(
                    &state,
                    &org.name,
                    ApiError::new(503, "The server is shutting down.", "server_error", None, None),
                );
            }
            drop(guard);
            // Serialized straight from a struct: no intermediate JSON tree on the hot path.
            let body = Completion {
                id: &id,
                object: "chat.completion",
                created: unix_now(),
                model: &model,
                choices: [CompletionChoice {
                    index: 0,
                    message: Message {
                        role: "assistant",
                        content: &content,
                        refusal: None,
                    },
                    logprobs: None,
                    finish_reason: finish,
                }],
                usage: CompletionUsage {
                    prompt_tokens: a.usage.prompt_tokens,
                    completion_tokens: a.usage.completion_tokens,
                    total_tokens: a.usage.total(),
                },
                system_fingerprint: None,
            };
            let body = serde_json::to_vec(&body).expect("a completion always serializes");
            let ms = a.latency.as_millis().to_string();
            let extra = [("openai-processing-ms", ms)];
            respond(
                &state,
                &org.name,
                200,
                Body::from(body),
                "application/json",
                Some(&a.headers),
                &extra,
            )
        }
        Admission::Throttled(t) => {
            match t.limit {
                crate::LimitKind::Tokens => state.metrics.throttled_tokens.add(1),
                crate::LimitKind::Requests => state.metrics.throttled_requests.add(1),
            };
            state.sleep(t.after).await;
            let body = match profile {
                Profile::Openai => openai::throttled_openai(&model, &org.name, &t),
                Profile::Azure => openai::throttled_azure(&t),
            };
            let ms = t.retry_after.as_nanos().div_ceil(1_000_000);
            let secs = ms.div_ceil(1000).max(1);
            let extra = [
                ("retry-after-ms", ms.to_string()),
                ("retry-after", secs.to_string()),
                ("x-should-retry", "true".into()),
            ];
            json_response(&state, &org.name, 429, &body, Some(&t.headers), &extra)
        }
        Admission::Failed(f) => {
            let Some(after) = f.after else {
                // Hung: admitted, never answered, until the client gives up or the server stops.
                let mut rx = state.shutdown.clone();
                let _ = rx.wait_for(|stop| *stop).await;
                return api_error(
                    &state,
                    &org.name,
                    ApiError::new(503, "The server is shutting down.", "server_error", None, None),
                );
            };
            state.sleep(after).await;
            match f.kind {
                FailureKind::TooLarge {
                    limit,
                    limit_value,
                    requested,
                } => {
                    let body = openai::too_large(&model, &org.name, limit, limit_value, requested);
                    json_response(
                        &state,
                        &org.name,
                        429,
                        &body,
                        Some(&f.headers),
                        &[("x-should-retry", "false".into())],
                    )
                }
                kind => {
                    let status = kind.status().unwrap_or(500);
                    json_response(
                        &state,
                        &org.name,
                        status,
                        &openai::server_error(status),
                        Some(&f.headers),
                        &[],
                    )
                }
            }
        }
    }
}

#[derive(serde::Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [CompletionChoice<'a>; 1],
    usage: CompletionUsage,
    system_fingerprint: Option<&'static str>,
}

#[derive(serde::Serialize)]
struct CompletionChoice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(serde::Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
    refusal: Option<&'static str>,
}

#[derive(serde::Serialize)]
struct CompletionUsage {
    prompt_tokens: u32,
    completion_tokens: u32,
    total_tokens: u64,
}

/// An answer streamed as server-sent events: the first chunk after the time to first token, then
/// one chunk per token (grouped when tokens come faster than 1 ms apart), `[DONE]` last.
struct StreamPlan {
    id: String,
    model: String,
    content: String,
    finish: &'static str,
    usage: Value,
    include_usage: bool,
    latency: Duration,
    tokens: u32,
    per_token_ms: f64,
}

impl StreamPlan {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        let mut c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": unix_now(), "model": self.model,
            "system_fingerprint": null,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        Bytes::from(format!("data: {c}\n\n"))
    }

    fn body(self, state: Arc<AppState>, guard: SlotGuard) -> Body {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        tokio::spawn(async move {
            let _guard = guard; // a client that goes away frees the slot when this task ends
            let n = self.tokens.max(1) as usize;
            let per_token = Duration::from_secs_f64(self.per_token_ms.max(0.0) / 1000.0);
            let ttft = self.latency.saturating_sub(per_token * (n as u32 - 1).min(self.tokens));
            let group = if per_token.is_zero() {
                n
            } else {
                (Duration::from_millis(1)
                    .as_nanos()
                    .div_ceil(per_token.as_nanos().max(1)) as usize)
                    .max(1)
            };
            let chars: Vec<char> = self.content.chars().collect();
            let piece = |i: usize| -> String {
                let (a, b) = (i * chars.len() / n, (i + 1) * chars.len() / n);
                chars[a..b].iter().collect()
            };
            if !state.sleep(ttft).await
                || tx
                    .send(self.chunk(json!({ "role": "assistant", "content": "", "refusal": null }), None))
                    .await
                    .is_err()
            {
                return;
            }
            let mut i = 0;
            while i < n {
                let end = (i + group).min(n);
                let text: String = (i..end).map(piece).collect();
                if i > 0 && !state.sleep(per_token * (end - i) as u32).await {
                    return;
                }
                if tx.send(self.chunk(json!({ "content": text }), None)).await.is_err() {
                    return;
                }
                i = end;
            }
            if tx.send(self.chunk(json!({}), Some(self.finish))).await.is_err() {
                return;
            }
            if self.include_usage {
                let u = json!({ "id": self.id, "object": "chat.completion.chunk", "created": unix_now(), "model": self.model, "choices": [], "usage": self.usage });
                if tx.send(Bytes::from(format!("data: {u}\n\n"))).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
        });
        Body::from_stream(stream)
    }
}

async fn models(State(state): State<Arc<AppState>>) -> Response {
    let body = json!({ "object": "list", "data": [{ "id": state.config.provider.model, "object": "model", "created": 0, "owned_by": "mock-llm" }] });
    json_response(&state, &state.config.provider.organization, 200, &body, None, &[])
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    use std::fmt::Write;
    let m = &state.metrics;
    let mut t = String::new();
    let w = &mut t;
    let _ = writeln!(
        w,
        "# HELP mock_llm_requests_total Chat completion responses by HTTP status.\n# TYPE mock_llm_requests_total counter"
    );
    for (status, counter) in m.by_status.iter().enumerate() {
        let n = counter.get();
        if n > 0 {
            let _ = writeln!(w, "mock_llm_requests_total{{status=\"{status}\"}} {n}");
        }
    }
    let _ = writeln!(
        w,
        "# HELP mock_llm_throttled_total 429s by the limit that refused.\n# TYPE mock_llm_throttled_total counter"
    );
    let _ = writeln!(
        w,
        "mock_llm_throttled_total{{limit=\"tokens\"}} {}",
        m.throttled_tokens.get()
    );
    let _ = writeln!(
        w,
        "mock_llm_throttled_total{{limit=\"requests\"}} {}",
        m.throttled_requests.get()
    );
    let _ = writeln!(
        w,
        "# HELP mock_llm_tokens_admitted_total Tokens charged against TPM at admission.\n# TYPE mock_llm_tokens_admitted_total counter"
    );
    let _ = writeln!(w, "mock_llm_tokens_admitted_total {}", m.tokens_admitted.get());
    let _ = writeln!(
        w,
        "# HELP mock_llm_in_flight Requests being answered now.\n# TYPE mock_llm_in_flight gauge"
    );
    let _ = writeln!(w, "mock_llm_in_flight {}", m.in_flight.get());
    let mut r = Response::new(Body::from(t));
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

/// `POST /admin/config`: change limits, latency or faults while running.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminConfig {
    /// Only this organization (default: all).
    organization: Option<String>,
    tpm: Option<std::num::NonZeroU64>,
    rpm: Option<std::num::NonZeroU64>,
    latency: Option<LatencyConfig>,
    error_rate: Option<Probability>,
    hang_rate: Option<Probability>,
}

fn admin_body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::invalid(format!("invalid admin request: {e}"), None, None))
}

async fn admin_config(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let c: AdminConfig = match admin_body(&body) {
        Ok(c) => c,
        Err(e) => return api_error(&state, &state.config.provider.organization, e),
    };
    let now = state.now();
    let mut changed = vec![];
    for o in state
        .all_orgs()
        .filter(|o| c.organization.as_ref().is_none_or(|n| *n == o.name))
    {
        let mut p = o.provider.lock().unwrap_or_else(|e| e.into_inner());
        if c.tpm.is_some() || c.rpm.is_some() {
            p.set_limits(now, c.tpm, c.rpm);
        }
        p.set_behaviour(c.latency, c.error_rate, c.hang_rate);
        changed.push(o.name.clone());
    }
    if changed.is_empty() {
        return api_error(
            &state,
            &state.config.provider.organization,
            ApiError::new(
                404,
                "no such organization",
                "invalid_request_error",
                Some("organization"),
                None,
            ),
        );
    }
    json_response(
        &state,
        &state.config.provider.organization,
        200,
        &json!({ "ok": true, "organizations": changed }),
        None,
        &[],
    )
}

/// `POST /admin/outage`: fail everything for a while.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminOutage {
    seconds: f64,
    #[serde(default = "default_outage_status")]
    status: u16,
}

fn default_outage_status() -> u16 {
    503
}

async fn admin_outage(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let o: AdminOutage = match admin_body(&body) {
        Ok(o) => o,
        Err(e) => return api_error(&state, &state.config.provider.organization, e),
    };
    if !(o.seconds.is_finite() && o.seconds > 0.0 && (500..600).contains(&o.status)) {
        let e = ApiError::invalid("`seconds` must be > 0 and `status` a 5xx status", None, None);
        return api_error(&state, &state.config.provider.organization, e);
    }
    let now = state.now();
    let end = now + Duration::from_secs_f64(o.seconds);
    for org in state.all_orgs() {
        org.provider
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add_outage(now, end, o.status);
    }
    json_response(
        &state,
        &state.config.provider.organization,
        200,
        &json!({ "ok": true, "until_s": end.as_secs_f64() }),
        None,
        &[],
    )
}

/// Serves on `threads` OS threads, each with its own single-threaded runtime and its own
/// `SO_REUSEPORT` listener on `addr`, sharing one state: the kernel spreads connections across
/// them, and no request wakes another thread. This is how the `mock-llm` binary serves; it returns
/// when `shutdown` resolves. `on_bound` is told the address (useful with port 0).
pub fn serve_per_core(
    config: ServerConfig,
    addr: SocketAddr,
    threads: usize,
    on_bound: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), MockError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| MockError::Io {
            what: what.clone(),
            source,
        }
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let app = router(config, stop_rx.clone());
    let (bound_tx, bound_rx) = std::sync::mpsc::channel::<Result<SocketAddr, std::io::Error>>();
    let mut workers = Vec::new();
    let mut at = addr;
    for _ in 0..threads.max(1) {
        let (app, mut rx, tx, bind_at) = (app.clone(), stop_rx.clone(), bound_tx.clone(), at);
        workers.push(std::thread::spawn(move || -> std::io::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                let socket = if bind_at.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                socket.set_reuseaddr(true)?;
                #[cfg(unix)]
                socket.set_reuseport(true)?;
                let listener = match socket.bind(bind_at).and_then(|()| socket.listen(1024)) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx.send(Err(std::io::Error::new(e.kind(), e.to_string())));
                        return Err(e);
                    }
                };
                let _ = tx.send(listener.local_addr());
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await
            })
        }));
        // Later threads bind the port the first one got.
        at = bound_rx
            .recv()
            .map_err(|_| MockError::Config("a server thread died while binding".into()))?
            .map_err(io("cannot listen"))?;
    }
    on_bound(at);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("cannot start the runtime"))?;
    rt.block_on(shutdown);
    let _ = stop_tx.send(true);
    for w in workers {
        match w.join() {
            Ok(r) => r.map_err(io("serving"))?,
            Err(_) => return Err(MockError::Config("a server thread panicked".into())),
        }
    }
    Ok(())
}
