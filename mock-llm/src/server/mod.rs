//! The OpenAI-compatible HTTP server around the provider model (feature `server`).
//!
//! Every request is decided by the same [`Provider::admit`](crate::Provider::admit) the
//! simulation uses, with `now` the time since the server started, and answered after the latency
//! the model decided. Start at [`start`] to run one in-process (tests bind `127.0.0.1:0`), or
//! [`serve_per_core`], how the `mock-llm` binary serves.
//!
//! - `app`: the routes, the chat-completion handler, admin calls and metrics;
//! - [`http`]: the HTTP/1.1 server underneath (why it is not hyper: see there);
//! - [`openai`]: request validation and OpenAI's answer and error bodies;
//! - [`tokens`]: prompt token counting (BPE or chars/4);
//! - [`cli`]: the command line of `mock-llm` and `orchbench mock-llm`.

mod app;
pub mod cli;
pub mod http;
pub mod openai;
pub mod tokens;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::ProviderConfig;
use crate::error::MockError;
use app::App;
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

/// Request header: which attempt at the work item this is (0 for the first). With it, the
/// request's random draws (error, hang, latency noise) follow (key, attempt), as in a simulated
/// run; without it they follow arrival order.
pub const ATTEMPT_HINT: &str = "x-mock-attempt";

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
    let max_body = config.max_body_bytes;
    let app = Arc::new(App::new(config));
    let task = tokio::spawn(http::serve(listener, app, rx, max_body));
    Ok(Running { addr, stop, task })
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
    let max_body = config.max_body_bytes;
    let app = Arc::new(App::new(config));
    // SO_REUSEPORT would let this server share a port already served by another process with
    // the flag (a second mock-llm, say), silently splitting the traffic: a plain bind first
    // checks the port is free, and picks one for port 0.
    let mut at = std::net::TcpListener::bind(addr)
        .and_then(|probe| probe.local_addr())
        .map_err(io(&format!("cannot listen on {addr}")))?;
    let (bound_tx, bound_rx) = std::sync::mpsc::channel::<Result<SocketAddr, std::io::Error>>();
    let mut workers = Vec::new();
    for _ in 0..threads.max(1) {
        let (app, rx, tx, bind_at) = (app.clone(), stop_rx.clone(), bound_tx.clone(), at);
        workers.push(std::thread::spawn(move || -> std::io::Result<()> {
            // I/O and timers only: signals are for the caller's `shutdown` future alone.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()?;
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
                http::serve(listener, app, rx, max_body).await
            })
        }));
        // Later threads bind the port the first one got (the same, unless port 0 raced).
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
