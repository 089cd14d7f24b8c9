//! The live control API (`run --live --control ADDR`): read a run's progress, change its
//! parameters and cancel its work while it runs, over HTTP with JSON bodies, and follow it as
//! server-sent events. It serves on the mock's own HTTP/1.1 layer (`mock_llm::server::http`).
//!
//! - `GET /progress`: the strategy running, run time, requests, 429s, tokens, calls in flight
//!   and the strategy's concurrency limit; per file its state, chunks done, in flight and failed,
//!   requests, 429s, tokens and time since it arrived; per user files queued, admitted and
//!   rejected.
//! - `GET /params`, `POST /params` (`{"max-parallelism": 8}`): the parameter store, changed with
//!   the validation of a scenario's `[params]` (every key checked first: nothing half-applied).
//! - `POST /cancel` with `{"file": "file-3"}`, `{"user": "user-2"}` or `{"run": true}`: reaches
//!   the strategy as a timeline cancel does.
//! - `GET /events`: `progress` every second, `throttled` when 429s came in that second, and
//!   `params` and `cancel` when they are changed through the API.
//!
//! A non-loopback address needs a token (`--control-token`), checked on every request as
//! `Authorization: Bearer TOKEN` (401 without it).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use mock_llm::server::http::{Handler, Out, Request, Timing};
use serde_json::{Value, json};
use sim::params::ParamUpdate;
use sim::scenario::{CancelTarget, FileId, UserId};
use sim::{RunContext, Scenario};
use tokio::sync::{mpsc, watch};

/// Where the control API listens, and its token.
#[derive(Clone, Debug)]
pub struct ControlConfig {
    /// The address (port 0: any free port).
    pub addr: SocketAddr,
    /// The token every request must bear; required off loopback.
    pub token: Option<String>,
}

/// How often `GET /events` sends progress.
pub const TICK: Duration = Duration::from_secs(1);

struct Shared {
    scenario: Scenario,
    token: Option<String>,
    /// The strategy whose run is (or was last) in progress, and its context.
    run: Mutex<Option<(String, RunContext)>>,
    /// The open event streams.
    subscribers: Mutex<Vec<mpsc::Sender<Vec<u8>>>>,
}

impl Shared {
    fn publish(&self, kind: &str, data: &Value) {
        let frame = format!("event: {kind}\ndata: {data}\n\n").into_bytes();
        let mut subs = self
            .subscribers
            .lock()
            .expect("no thread panicked holding the subscribers");
        // A stream whose client is gone (or too slow to keep 64 events) is dropped.
        subs.retain(|s| s.try_send(frame.clone()).is_ok());
    }

    fn run(&self) -> Option<(String, RunContext)> {
        self.run.lock().expect("no thread panicked holding the run").clone()
    }
}

/// A running control API.
pub struct Control {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The address it listens on.
    pub addr: SocketAddr,
}

impl Control {
    /// Binds `config.addr` and serves; the runs it controls are attached with [`Control::hook`].
    pub async fn start(config: &ControlConfig, scenario: &Scenario) -> anyhow::Result<Control> {
        if !config.addr.ip().is_loopback() && config.token.is_none() {
            bail!(
                "--control {}: a control API off loopback needs --control-token (anyone who can reach it could cancel the run)",
                config.addr
            );
        }
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("--control {}: cannot listen", config.addr))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            scenario: scenario.clone(),
            token: config.token.clone(),
            run: Mutex::new(None),
            subscribers: Mutex::new(Vec::new()),
        });
        let (stop, stopped) = watch::channel(false);
        let handler = Arc::new(ControlHandler { shared: shared.clone() });
        let server = tokio::spawn(async move {
            let _ = mock_llm::server::http::serve(listener, handler, stopped, 64 * 1024).await;
        });
        let ticker = {
            let shared = shared.clone();
            let mut stopped = stop.subscribe();
            tokio::spawn(async move {
                let mut last_throttled = 0;
                loop {
                    tokio::select! {
                        biased;
                        _ = stopped.changed() => return,
                        () = tokio::time::sleep(TICK) => {}
                    }
                    if let Some((strategy, ctx)) = shared.run() {
                        let snap = ctx.snapshot();
                        if snap.throttled > last_throttled {
                            shared.publish(
                                "throttled",
                                &json!({"strategy": strategy, "429s": snap.throttled - last_throttled}),
                            );
                        }
                        last_throttled = snap.throttled;
                        shared.publish("progress", &summary(&strategy, &snap));
                    }
                }
            })
        };
        Ok(Control {
            shared,
            stop,
            tasks: vec![server, ticker],
            addr,
        })
    }

    /// The hook a run calls with its context ([`sim::RunOptions::on_start`]): from then on the
    /// API controls that run of `strategy`.
    pub fn hook(&self, strategy: &str) -> sim::engine::StartHook {
        let shared = self.shared.clone();
        let name = strategy.to_owned();
        Arc::new(move |ctx: &RunContext| {
            *shared.run.lock().expect("no thread panicked holding the run") = Some((name.clone(), ctx.clone()));
        })
    }

    /// Stops serving (open event streams end).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.shared
            .subscribers
            .lock()
            .expect("no thread panicked holding the subscribers")
            .clear();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn summary(strategy: &str, snap: &sim::context::Snapshot) -> Value {
    let count = |s| snap.files_in(s);
    json!({
        "strategy": strategy,
        "elapsed_s": snap.elapsed.as_secs_f64(),
        "requests": snap.requests,
        "throttled": snap.throttled,
        "tokens": snap.tokens_answered,
        "files_completed": count(sim::FileStatus::Completed),
        "files_failed": count(sim::FileStatus::Failed),
        "files_cancelled": count(sim::FileStatus::Cancelled),
        "chunks_done": snap.chunks_done(),
        "in_flight": snap.in_flight,
        "concurrency_limit": snap.concurrency_limit,
    })
}

fn progress(strategy: &str, snap: &sim::context::Snapshot) -> Value {
    let mut v = summary(strategy, snap);
    v["files"] = snap
        .files
        .iter()
        .map(|f| {
            json!({
                "file": f.file.to_string(),
                "user": f.user.to_string(),
                "state": f.status,
                "chunks": f.chunks,
                "done": f.done,
                "in_flight": f.in_flight,
                "failed": f.failed,
                "requests": f.requests,
                "throttled": f.throttled,
                "tokens": f.tokens,
                "elapsed_s": f.elapsed.as_secs_f64(),
            })
        })
        .collect();
    v["users"] = snap
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            json!({
                "user": UserId(i as u32).to_string(),
                "queued": u.queued,
                "admitted": u.admitted,
                "rejected": u.rejected,
            })
        })
        .collect();
    v
}

struct ControlHandler {
    shared: Arc<Shared>,
}

fn answer(out: &mut Out<'_>, status: u16, body: &Value) -> Timing {
    out.head(status).json(body);
    Timing::Now
}

fn error(out: &mut Out<'_>, status: u16, message: &str) -> Timing {
    answer(out, status, &json!({ "error": message }))
}

impl ControlHandler {
    /// Checks every key of a `POST /params` body alone, then the whole update against the
    /// strategies' live settings: an error names the key, and nothing is applied unless all hold.
    fn params_update(&self, body: &[u8]) -> Result<ParamUpdate, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        let Some(map) = v.as_object() else {
            return Err("the body must be a JSON object, e.g. {\"max-parallelism\": 8}".into());
        };
        if map.is_empty() {
            return Err("the body names no parameter".into());
        }
        for (k, v) in map {
            serde_json::from_value::<ParamUpdate>(json!({ k: v })).map_err(|e| format!("`{k}`: {e}"))?;
        }
        let update: ParamUpdate = serde_json::from_value(v).map_err(|e| e.to_string())?;
        let mut s = self.shared.scenario.clone();
        s.params = s.params.clone().with(&update);
        strategies::check_scenario(&s).map_err(|e| e.to_string())?;
        Ok(update)
    }

    fn cancel_target(body: &[u8]) -> Result<CancelTarget, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        let keys: Vec<&String> = v.as_object().map(|m| m.keys().collect()).unwrap_or_default();
        match (keys.as_slice(), &v) {
            ([k], _) if *k == "file" => v["file"]
                .as_str()
                .ok_or("`file` must be a name like \"file-3\"".to_owned())
                .and_then(|s| FileId::try_from(s.to_owned()))
                .map(CancelTarget::File),
            ([k], _) if *k == "user" => v["user"]
                .as_str()
                .ok_or("`user` must be a name like \"user-2\"".to_owned())
                .and_then(|s| UserId::try_from(s.to_owned()))
                .map(CancelTarget::User),
            ([k], _) if *k == "run" && v["run"] == json!(true) => Ok(CancelTarget::Run),
            _ => Err(
                "the body must be exactly one of {\"file\": \"file-N\"}, {\"user\": \"user-N\"} or {\"run\": true}"
                    .into(),
            ),
        }
    }
}

impl Handler for ControlHandler {
    fn handle(&self, request: &Request<'_>, out: &mut Out<'_>) -> Timing {
        if let Some(token) = &self.shared.token {
            let bearer = request.header("authorization").and_then(|h| h.strip_prefix("Bearer "));
            if bearer != Some(token.as_str()) {
                return error(out, 401, "this control API needs `Authorization: Bearer TOKEN`");
            }
        }
        let events = (request.method, request.path) == ("GET", "/events");
        let known = matches!(request.path, "/progress" | "/params" | "/cancel" | "/events");
        if !known {
            return error(
                out,
                404,
                "no such endpoint: GET /progress, GET|POST /params, POST /cancel, GET /events",
            );
        }
        if events {
            let (tx, rx) = mpsc::channel(64);
            self.shared
                .subscribers
                .lock()
                .expect("no thread panicked holding the subscribers")
                .push(tx);
            out.head(200).event_stream();
            return Timing::Live(rx, Box::new(()));
        }
        let Some((strategy, ctx)) = self.shared.run() else {
            return error(out, 503, "no run has started yet");
        };
        match (request.method, request.path) {
            ("GET", "/progress") => answer(out, 200, &progress(&strategy, &ctx.snapshot())),
            ("GET", "/params") => answer(
                out,
                200,
                &serde_json::to_value(ctx.params().get()).unwrap_or(Value::Null),
            ),
            ("POST", "/params") => match self.params_update(request.body) {
                Ok(update) => {
                    ctx.apply_params(&update);
                    let now = serde_json::to_value(ctx.params().get()).unwrap_or(Value::Null);
                    self.shared.publish("params", &now);
                    answer(out, 200, &json!({ "applied": update, "params": now }))
                }
                Err(e) => error(out, 400, &e),
            },
            ("POST", "/cancel") => match Self::cancel_target(request.body) {
                Ok(target) => {
                    if let CancelTarget::File(f) = target
                        && f.0 >= self.shared.scenario.workload.files
                    {
                        return error(out, 404, &format!("no such file: {f}"));
                    }
                    if let CancelTarget::User(u) = target
                        && u.0 >= self.shared.scenario.workload.users.get()
                    {
                        return error(out, 404, &format!("no such user: {u}"));
                    }
                    let n = ctx.cancel(target);
                    let body = json!({ "cancelled": target, "files": n });
                    self.shared.publish("cancel", &body);
                    answer(out, 200, &body)
                }
                Err(e) => error(out, 400, &e),
            },
            _ => error(out, 405, "method not allowed here"),
        }
    }

    fn refuse(&self, status: u16, message: &str, out: &mut Out<'_>) {
        error(out, status, message);
    }

    fn stopping(&self, out: &mut Out<'_>) {
        error(out, 503, "the control API is stopping");
    }
}
