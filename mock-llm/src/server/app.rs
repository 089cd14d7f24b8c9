//! The application: routes, the chat-completion handler around [`Provider::admit`], the admin
//! calls and the metrics, answering through [`super::http`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{Frame, Handler, Head, Hold, Out, Request, Timing};
use super::openai::{self, ApiError};
use super::tokens;
use super::{ATTEMPT_HINT, COMPLETION_HINT, KEY_HINT, ServerConfig};
use crate::config::{LatencyConfig, Probability, Profile, ProviderConfig};
use crate::headers::{RateLimitHeaders, RateLimitValue};
use crate::provider::{Admission, FailureKind, ModelRequest, Provider, Slot};
use crate::rng::mix64;

struct Org {
    name: String,
    provider: Mutex<Provider>,
}

/// An organization: its own buckets, with the configured seed (a chunk's verdict must not depend
/// on who asks, and the default organization must decide exactly as the simulation does).
fn org(name: &str, config: &ProviderConfig) -> Arc<Org> {
    Arc::new(Org {
        name: name.to_owned(),
        provider: Mutex::new(Provider::new(config.clone())),
    })
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

/// The server's state, shared by every connection on every thread.
pub(crate) struct App {
    config: ServerConfig,
    orgs: BTreeMap<String, Arc<Org>>,
    default_org: Arc<Org>,
    start: Instant,
    metrics: Arc<Metrics>,
}

impl App {
    /// The state for `config`: one organization per key, and the default one.
    pub(crate) fn new(config: ServerConfig) -> Self {
        config.tokenizer.warm_up(&config.provider.model);
        let orgs = config
            .keys
            .iter()
            .map(|(key, name)| (key.clone(), org(name, &config.provider)))
            .collect();
        let default_org = org(&config.provider.organization, &config.provider);
        App {
            orgs,
            default_org,
            start: Instant::now(),
            metrics: Arc::new(Metrics::default()),
            config,
        }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn all_orgs(&self) -> impl Iterator<Item = &Arc<Org>> {
        std::iter::once(&self.default_org).chain(self.orgs.values())
    }

    fn default_name(&self) -> &str {
        &self.config.provider.organization
    }

    /// Starts an answer: counts it by status, and writes the headers every answer carries.
    fn head<'o>(&self, out: &'o mut Out<'_>, status: u16, org: &str) -> Head<'o> {
        if let Some(c) = self.metrics.by_status.get(usize::from(status)) {
            c.add(1);
        }
        let mut h = out.head(status);
        h.number("x-request-id", request_id())
            .header("openai-organization", org);
        h
    }

    fn error(&self, out: &mut Out<'_>, org: &str, e: &ApiError) {
        self.head(out, e.status, org).json(&e.body);
    }

    fn json(&self, out: &mut Out<'_>, status: u16, body: &Value) {
        self.head(out, status, self.default_name()).json(body);
    }

    /// Something the answer must keep until it is out: the request counts as in flight.
    fn in_flight(&self) -> InFlight {
        self.metrics.in_flight.add(1);
        InFlight(self.metrics.clone())
    }
}

impl Handler for App {
    fn handle(&self, req: &Request<'_>, out: &mut Out<'_>) -> Timing {
        match (req.method, req.path) {
            ("POST", "/v1/chat/completions") => return self.chat(req, out),
            ("GET", "/v1/models") => self.models(out),
            ("GET", "/healthz") => {
                out.head(200).body("text/plain; charset=utf-8", b"ok");
            }
            ("GET", "/metrics") => {
                let text = self.metrics_text();
                out.head(200).body("text/plain; version=0.0.4", text.as_bytes());
            }
            ("POST", "/admin/config") => self.admin_config(req.body, out),
            ("POST", "/admin/outage") => self.admin_outage(req.body, out),
            (method, path) => {
                let known = [
                    "/v1/chat/completions",
                    "/v1/models",
                    "/healthz",
                    "/metrics",
                    "/admin/config",
                    "/admin/outage",
                ];
                let (status, message) = if known.contains(&path) {
                    (405, format!("Method {method} is not allowed on {path}."))
                } else {
                    // OpenAI's answer to an unknown route.
                    (404, format!("Invalid URL ({method} {path})"))
                };
                let e = ApiError::new(status, message, "invalid_request_error", None, None);
                self.error(out, self.default_name(), &e);
            }
        }
        Timing::Now
    }

    fn refuse(&self, status: u16, message: &str, out: &mut Out<'_>) {
        let code = (status == 413).then_some("request_too_large");
        let e = ApiError::new(status, message, "invalid_request_error", None, code);
        self.error(out, self.default_name(), &e);
    }

    fn stopping(&self, out: &mut Out<'_>) {
        let e = ApiError::new(503, "The server is shutting down.", "server_error", None, None);
        self.error(out, self.default_name(), &e);
    }
}

/// Counts a request in flight until dropped.
struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.add(-1);
    }
}

/// Frees a generation slot when the answer is out, or abandoned (the client disconnected).
struct SlotGuard(Arc<Org>, Slot);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0
            .provider
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(self.1);
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The six `x-ratelimit-*` headers, numbers written without intermediate strings.
fn rate_limit_headers(head: &mut Head<'_>, h: &RateLimitHeaders) {
    for (name, value) in h.entries() {
        match value {
            RateLimitValue::Count(n) => head.number(name, n),
            RateLimitValue::Reset(d) => head.header(name, &crate::headers::go_duration(d)),
        };
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

fn hint<T: std::str::FromStr>(req: &Request<'_>, name: &str) -> Option<T> {
    req.header(name).and_then(|v| v.trim().parse().ok())
}

impl App {
    fn find_org(&self, req: &Request<'_>) -> Result<&Arc<Org>, ApiError> {
        let key = req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty());
        match key.and_then(|k| self.orgs.get(k)) {
            Some(o) => Ok(o),
            None if !self.config.require_key => Ok(&self.default_org),
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

    /// `POST /v1/chat/completions`.
    fn chat(&self, req: &Request<'_>, out: &mut Out<'_>) -> Timing {
        let org = match self.find_org(req) {
            Ok(o) => o,
            Err(e) => {
                self.error(out, self.default_name(), &e);
                return Timing::Now;
            }
        };
        let chat = match openai::parse_chat(req.body) {
            Ok(r) => r,
            Err(e) => {
                self.error(out, &org.name, &e);
                return Timing::Now;
            }
        };
        let model = self.config.provider.model.as_str();
        if chat.model != model {
            let e = ApiError::new(
                404,
                format!(
                    "The model `{}` does not exist or you do not have access to it.",
                    chat.model
                ),
                "invalid_request_error",
                None,
                Some("model_not_found"),
            );
            self.error(out, &org.name, &e);
            return Timing::Now;
        }
        let prompt_tokens = tokens::prompt_tokens(self.config.tokenizer, model, &chat.messages);
        let max_tokens = chat.max_tokens.unwrap_or(self.config.default_max_tokens);
        let completion_tokens = hint(req, COMPLETION_HINT).unwrap_or(self.config.completion_tokens);
        let key = hint(req, KEY_HINT).unwrap_or_else(|| {
            chat.messages
                .iter()
                .flat_map(|m| m.content.bytes())
                .fold(0x6d6f_636b, |h: u64, b| mix64(h ^ u64::from(b)))
        });
        let mreq = ModelRequest {
            prompt_tokens,
            max_tokens,
            completion_tokens,
            key,
            attempt: hint(req, ATTEMPT_HINT).and_then(|a: u64| u32::try_from(a).ok()),
        };
        let now = self.now();
        let (decision, profile) = {
            let mut p = org.provider.lock().unwrap_or_else(|e| e.into_inner());
            (p.admit(now, &mreq), p.config().profile)
        };
        match decision {
            Admission::Admitted(a) => {
                let charge = self.config.provider.charge(prompt_tokens, max_tokens);
                self.metrics
                    .tokens_admitted
                    .add(i64::try_from(charge).unwrap_or(i64::MAX));
                let slot = a.slot.map(|s| SlotGuard(org.clone(), s));
                let content = a.verdict.content(key);
                let finish = if a.truncated { "length" } else { "stop" };
                let id = format!("chatcmpl-{:016x}", request_id());
                let usage = CompletionUsage {
                    prompt_tokens: a.usage.prompt_tokens,
                    completion_tokens: a.usage.completion_tokens,
                    total_tokens: a.usage.total(),
                };
                let mut head = self.head(out, 200, &org.name);
                rate_limit_headers(&mut head, &a.headers);
                if chat.stream {
                    head.event_stream();
                    let plan = StreamPlan {
                        id: &id,
                        model,
                        content: &content,
                        finish,
                        usage,
                        include_usage: chat.include_usage,
                        latency: a.latency,
                        tokens: a.usage.completion_tokens,
                        per_token_ms: self.config.provider.latency.per_output_token_ms.0,
                    };
                    return Timing::Stream(plan.frames(), Box::new((slot, self.in_flight())));
                }
                // Rounded, not truncated: a client subtracting it from its round trip is unbiased.
                head.number("openai-processing-ms", ((a.latency.as_micros() + 500) / 1000) as u64);
                // Serialized straight from a struct: no intermediate JSON tree on the hot path.
                head.json(&Completion {
                    id: &id,
                    object: "chat.completion",
                    created: unix_now(),
                    model,
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
                    usage,
                    system_fingerprint: None,
                });
                later(a.latency, || Box::new((slot, self.in_flight())))
            }
            Admission::Throttled(t) => {
                match t.limit {
                    crate::LimitKind::Tokens => self.metrics.throttled_tokens.add(1),
                    crate::LimitKind::Requests => self.metrics.throttled_requests.add(1),
                };
                let body = match profile {
                    Profile::Openai => openai::throttled_openai(model, &org.name, &t),
                    Profile::Azure => openai::throttled_azure(&t),
                };
                let ms = u64::try_from(t.retry_after.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
                let mut head = self.head(out, 429, &org.name);
                rate_limit_headers(&mut head, &t.headers);
                head.number("retry-after-ms", ms)
                    .number("retry-after", ms.div_ceil(1000).max(1))
                    .header("x-should-retry", "true");
                head.json(&body);
                later(t.after, || Box::new(self.in_flight()))
            }
            Admission::Failed(f) => {
                let Some(after) = f.after else {
                    // Hung: admitted, never answered, until the client gives up or the server stops.
                    return Timing::Hung(Box::new(self.in_flight()));
                };
                match f.kind {
                    FailureKind::TooLarge {
                        limit,
                        limit_value,
                        requested,
                    } => {
                        let body = openai::too_large(model, &org.name, limit, limit_value, requested);
                        let mut head = self.head(out, 429, &org.name);
                        rate_limit_headers(&mut head, &f.headers);
                        head.header("x-should-retry", "false");
                        head.json(&body);
                    }
                    kind => {
                        let status = kind.status().unwrap_or(500);
                        let mut head = self.head(out, status, &org.name);
                        rate_limit_headers(&mut head, &f.headers);
                        head.json(&openai::server_error(status));
                    }
                }
                later(after, || Box::new(self.in_flight()))
            }
        }
    }

    /// `GET /v1/models`.
    fn models(&self, out: &mut Out<'_>) {
        let body = json!({ "object": "list", "data": [{ "id": self.config.provider.model, "object": "model", "created": 0, "owned_by": "mock-llm" }] });
        self.json(out, 200, &body);
    }

    /// `GET /metrics`, in Prometheus' text format.
    fn metrics_text(&self) -> String {
        use std::fmt::Write;
        let m = &self.metrics;
        let mut t = String::new();
        let w = &mut t;
        let _ = writeln!(
            w,
            "# HELP mock_llm_requests_total Responses by HTTP status, counted when decided.\n# TYPE mock_llm_requests_total counter"
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
        t
    }

    /// `POST /admin/config`: change limits, latency or faults while running.
    fn admin_config(&self, body: &[u8], out: &mut Out<'_>) {
        let c: AdminConfig = match admin_body(body) {
            Ok(c) => c,
            Err(e) => return self.error(out, self.default_name(), &e),
        };
        let now = self.now();
        let mut changed = vec![];
        for o in self
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
            let e = ApiError::new(
                404,
                "no such organization",
                "invalid_request_error",
                Some("organization"),
                None,
            );
            return self.error(out, self.default_name(), &e);
        }
        self.json(out, 200, &json!({ "ok": true, "organizations": changed }));
    }

    /// `POST /admin/outage`: fail everything for a while.
    fn admin_outage(&self, body: &[u8], out: &mut Out<'_>) {
        let o: AdminOutage = match admin_body(body) {
            Ok(o) => o,
            Err(e) => return self.error(out, self.default_name(), &e),
        };
        if !(o.seconds.is_finite() && o.seconds > 0.0 && (500..600).contains(&o.status)) {
            let e = ApiError::invalid("`seconds` must be > 0 and `status` a 5xx status", None, None);
            return self.error(out, self.default_name(), &e);
        }
        let now = self.now();
        let Some(end) = Duration::try_from_secs_f64(o.seconds)
            .ok()
            .and_then(|d| now.checked_add(d))
        else {
            let e = ApiError::invalid(
                format!("`seconds` = {} is too large for an outage", o.seconds),
                Some("seconds"),
                None,
            );
            return self.error(out, self.default_name(), &e);
        };
        for org in self.all_orgs() {
            org.provider
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .add_outage(now, end, o.status);
        }
        self.json(out, 200, &json!({ "ok": true, "until_s": end.as_secs_f64() }));
    }
}

/// An answer after `delay`, holding what `hold` makes meanwhile (nothing to hold when at once).
fn later(delay: Duration, hold: impl FnOnce() -> Hold) -> Timing {
    if delay.is_zero() {
        Timing::Now
    } else {
        Timing::After(delay, hold())
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

#[derive(Clone, Copy, serde::Serialize)]
struct CompletionUsage {
    prompt_tokens: u32,
    completion_tokens: u32,
    total_tokens: u64,
}

/// An answer streamed as server-sent events: the first chunk after the time to first token, then
/// one chunk per token (grouped when tokens come faster than 1 ms apart), a usage chunk when
/// asked for, `[DONE]` last.
struct StreamPlan<'a> {
    id: &'a str,
    model: &'a str,
    content: &'a str,
    finish: &'static str,
    usage: CompletionUsage,
    include_usage: bool,
    latency: Duration,
    tokens: u32,
    per_token_ms: f64,
}

impl StreamPlan<'_> {
    fn event(&self, created: u64, delta: Value, finish: Option<&str>) -> Vec<u8> {
        let mut c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": created, "model": self.model,
            "system_fingerprint": null,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        format!("data: {c}\n\n").into_bytes()
    }

    fn frames(&self) -> Vec<Frame> {
        let created = unix_now();
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
        let mut frames = vec![Frame {
            after: ttft,
            data: self.event(
                created,
                json!({ "role": "assistant", "content": "", "refusal": null }),
                None,
            ),
        }];
        let mut i = 0;
        while i < n {
            let end = (i + group).min(n);
            let text: String = (i..end).map(piece).collect();
            frames.push(Frame {
                after: if i > 0 {
                    per_token * (end - i) as u32
                } else {
                    Duration::ZERO
                },
                data: self.event(created, json!({ "content": text }), None),
            });
            i = end;
        }
        frames.push(Frame {
            after: Duration::ZERO,
            data: self.event(created, json!({}), Some(self.finish)),
        });
        if self.include_usage {
            let u = json!({ "id": self.id, "object": "chat.completion.chunk", "created": created, "model": self.model, "choices": [], "usage": self.usage });
            frames.push(Frame {
                after: Duration::ZERO,
                data: format!("data: {u}\n\n").into_bytes(),
            });
        }
        frames.push(Frame {
            after: Duration::ZERO,
            data: b"data: [DONE]\n\n".to_vec(),
        });
        frames
    }
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

fn admin_body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::invalid(format!("invalid admin request: {e}"), None, None))
}
