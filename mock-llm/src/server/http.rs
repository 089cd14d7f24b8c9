//! HTTP/1.1 over tokio, just what this server needs: keep-alive and pipelining, `Content-Length`
//! and chunked request bodies, `Expect: 100-continue`, answers that wait (the model's latency)
//! while watching for the client going away, chunked event streams, and a graceful stop.
//!
//! Why not hyper (through axum), which this server used at first: under `wrk -t2 -c64` on two
//! shared cores, hyper answering a prebuilt completion does about 105,000 req/s, and this loop
//! about 163,000 (same response bytes, same per-core runtimes). The difference is what a
//! general server must do and this one need not: a body channel per request, a `HeaderMap` per
//! request and per response, a boxed service call, a task wake-up between the connection and
//! the handler. Here the handler is a plain function that writes its answer straight into the
//! connection's output buffer, and an answer with no latency never leaves the read loop. The
//! parsing itself is `httparse`, hyper's own parser.
//!
//! Start at [`serve`] (the accept loop) and [`Handler`] (what the application provides).

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Largest request head (request line and headers), in bytes; a longer one gets 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header lines in one request; more get 431.
pub const MAX_HEADERS: usize = 64;
/// Bytes read ahead (pipelined requests) while an answer waits, at most, beyond the body limit.
const READ_AHEAD: usize = 64 * 1024;

/// One request, borrowed from the connection's buffer.
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path, without the query string.
    pub path: &'a str,
    /// The header lines as sent.
    pub headers: &'a [httparse::Header<'a>],
    /// The body (decoded, when it came chunked).
    pub body: &'a [u8],
}

impl Request<'_> {
    /// The first header called `name` (any case), if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    }
}

/// Whatever must live until an answer is sent (a generation slot, an in-flight count): dropped
/// when the answer is out, or when the client goes away first.
pub type Hold = Box<dyn Any + Send>;

/// When the answer written by [`Handler::handle`] goes out.
pub enum Timing {
    /// At once.
    Now,
    /// After this long (the model's latency).
    After(Duration, Hold),
    /// Never: the request hangs until the client gives up or the server stops (then
    /// [`Handler::stopping`] answers instead). Nothing was written.
    Hung(Hold),
    /// What was written is the head of an event stream; these frames follow, each after its
    /// wait, and the stream ends after the last.
    Stream(Vec<Frame>, Hold),
    /// What was written is the head of an event stream; each message received follows as one
    /// chunk, as it comes, and the stream ends when the sender is dropped (or the server stops,
    /// or the client goes away). For a live feed such as a run's events.
    Live(tokio::sync::mpsc::Receiver<Vec<u8>>, Hold),
}

/// One piece of a streamed answer.
pub struct Frame {
    /// Wait before sending it.
    pub after: Duration,
    /// Its bytes (sent as one HTTP chunk).
    pub data: Vec<u8>,
}

/// The application: answers requests by writing into [`Out`].
pub trait Handler: Send + Sync + 'static {
    /// Answers `request`: writes the response (or, for [`Timing::Hung`], nothing) and says when
    /// it goes out.
    fn handle(&self, request: &Request<'_>, out: &mut Out<'_>) -> Timing;
    /// Answers a request refused before it reached the application (malformed, too large).
    fn refuse(&self, status: u16, message: &str, out: &mut Out<'_>);
    /// Answers a request still waiting when the server stops.
    fn stopping(&self, out: &mut Out<'_>);
}

/// Where a handler writes its answer.
pub struct Out<'a> {
    buf: &'a mut Vec<u8>,
    scratch: &'a mut Vec<u8>,
    close: bool,
}

impl Out<'_> {
    /// Starts the answer with its status line.
    pub fn head(&mut self, status: u16) -> Head<'_> {
        let buf = &mut *self.buf;
        buf.extend_from_slice(b"HTTP/1.1 ");
        buf.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(reason(status).as_bytes());
        buf.extend_from_slice(b"\r\n");
        Head {
            buf,
            scratch: &mut *self.scratch,
            close: self.close,
        }
    }
}

/// An answer's head being written; ends with its body.
pub struct Head<'a> {
    buf: &'a mut Vec<u8>,
    scratch: &'a mut Vec<u8>,
    close: bool,
}

impl Head<'_> {
    /// Adds a header. Control characters in the value are dropped (they would end the header).
    pub fn header(&mut self, name: &str, value: &str) -> &mut Self {
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b": ");
        if value.bytes().any(|b| b < 0x20 || b == 0x7f) {
            self.buf.extend(value.bytes().filter(|&b| b >= 0x20 && b != 0x7f));
        } else {
            self.buf.extend_from_slice(value.as_bytes());
        }
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// Adds a header with a number for value (digits: nothing to check).
    pub fn number(&mut self, name: &str, value: u64) -> &mut Self {
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b": ");
        self.buf.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    fn end_head(&mut self, content_length: Option<usize>) {
        write_date(self.buf);
        match content_length {
            Some(n) => self.number("content-length", n as u64),
            None => self.header("transfer-encoding", "chunked"),
        };
        if self.close {
            self.header("connection", "close");
        }
        self.buf.extend_from_slice(b"\r\n");
    }

    /// Ends the answer with `body`.
    pub fn body(mut self, content_type: &str, body: &[u8]) {
        self.header("content-type", content_type);
        self.end_head(Some(body.len()));
        self.buf.extend_from_slice(body);
    }

    /// Ends the answer with `value` as a JSON body.
    pub fn json(mut self, value: &impl serde::Serialize) {
        self.scratch.clear();
        serde_json::to_writer(&mut *self.scratch, value)
            .expect("JSON values and our response structs always serialize");
        self.header("content-type", "application/json");
        self.end_head(Some(self.scratch.len()));
        self.buf.extend_from_slice(self.scratch);
    }

    /// Ends the head of a server-sent event stream; the [`Timing::Stream`] frames are its body.
    pub fn event_stream(mut self) {
        self.header("content-type", "text/event-stream");
        self.header("cache-control", "no-cache");
        self.end_head(None);
    }
}

/// The reason phrase of the statuses this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// `date: ...` (RFC 9110 §6.6.1: a server with a clock sends it), formatted once per second per
/// thread.
fn write_date(buf: &mut Vec<u8>) {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            *d = (secs, httpdate::fmt_http_date(now));
        }
        buf.extend_from_slice(b"date: ");
        buf.extend_from_slice(d.1.as_bytes());
        buf.extend_from_slice(b"\r\n");
    });
}

/// Accepts connections on `listener` and answers them with `handler` until `stop` turns true;
/// then stops accepting, answers what is waiting with [`Handler::stopping`], closes idle
/// connections, and returns when every connection has ended (or after [`STOP_GRACE`]).
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    mut stop: watch::Receiver<bool>,
    max_body: usize,
) -> std::io::Result<()> {
    // A channel of this loop's own, so that connections (on this thread, in the per-core server)
    // do not all watch one shared across threads.
    let (local_tx, local_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            // (the guard `wait_for` returns is not `Send`: dropped at once)
            () = async { let _ = stop.wait_for(|s| *s).await; } => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let mut stopped = local_rx.clone();
                    connections.spawn(connection(handler.clone(), stream, max_body, async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    }));
                }
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
    let _ = local_tx.send(true);
    // Connections end at once when idle or waiting; one stuck writing to a client that does not
    // read is cut off after a grace period.
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(STOP_GRACE, drained).await.is_err() {
        connections.shutdown().await;
    }
    Ok(())
}

/// How long a stopping server waits for connections still writing their last answers.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// How a wait ended.
enum Waited {
    Elapsed,
    Stopped,
    /// The client closed the connection (or it broke).
    Gone,
}

/// What the buffer held.
enum Step {
    /// No complete request yet.
    NeedMore,
    /// A request was answered (its answer written at `mark` in the output).
    Answered { timing: Timing, mark: usize, close: bool },
    /// The request was refused and the connection must close.
    Refused,
}

struct Connection<H> {
    handler: Arc<H>,
    /// Bytes read; requests before `start` are answered.
    buf: Vec<u8>,
    start: usize,
    /// Answers not yet written to the socket.
    out: Vec<u8>,
    /// Handlers serialize bodies here.
    scratch: Vec<u8>,
    /// A chunked body, decoded.
    decoded: Vec<u8>,
    /// `100 Continue` was sent for the request being read.
    continued: bool,
    max_body: usize,
}

async fn connection<H: Handler>(
    handler: Arc<H>,
    mut stream: TcpStream,
    max_body: usize,
    stopped: impl Future<Output = ()>,
) {
    let _ = stream.set_nodelay(true);
    tokio::pin!(stopped);
    let mut c = Connection {
        handler,
        buf: Vec::with_capacity(8 * 1024),
        start: 0,
        out: Vec::with_capacity(8 * 1024),
        scratch: Vec::with_capacity(1024),
        decoded: Vec::new(),
        continued: false,
        max_body,
    };
    loop {
        // Answer every complete request buffered (pipelining), in order.
        loop {
            match c.step() {
                Step::NeedMore => break,
                Step::Refused => {
                    let _ = stream.write_all(&c.out).await;
                    linger(&mut stream).await;
                    return;
                }
                Step::Answered { timing, mark, close } => {
                    if !c.deliver(&mut stream, timing, mark, stopped.as_mut()).await {
                        return;
                    }
                    if close {
                        let _ = stream.write_all(&c.out).await;
                        let _ = stream.shutdown().await;
                        return;
                    }
                }
            }
        }
        if c.start > 0 {
            c.buf.drain(..c.start);
            c.start = 0;
        }
        if !c.out.is_empty() {
            if stream.write_all(&c.out).await.is_err() {
                return;
            }
            c.out.clear();
        }
        c.buf.reserve(4 * 1024);
        tokio::select! {
            biased;
            () = stopped.as_mut() => return, // idle: a request half read is dropped
            read = stream.read_buf(&mut c.buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}

impl<H: Handler> Connection<H> {
    /// Parses the next request in the buffer and, if it is complete, answers it.
    fn step(&mut self) -> Step {
        let data = &self.buf[self.start..];
        if data.is_empty() {
            return Step::NeedMore;
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(data) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if data.len() > MAX_HEAD_BYTES => {
                return self.refuse(431, &format!("the request head is over {MAX_HEAD_BYTES} bytes"));
            }
            Ok(httparse::Status::Partial) => return Step::NeedMore,
            Err(httparse::Error::TooManyHeaders) => {
                return self.refuse(431, &format!("the request has over {MAX_HEADERS} headers"));
            }
            Err(e) => return self.refuse(400, &format!("malformed HTTP request: {e}")),
        };
        // HTTP/1.1 keeps the connection unless asked not to; 1.0 closes after each answer (its
        // `keep-alive` extension is not offered).
        let mut close = req.version == Some(0);
        let mut content_length: Option<usize> = None;
        let mut chunked = false;
        let mut expect_continue = false;
        for h in req.headers.iter() {
            let value = std::str::from_utf8(h.value).unwrap_or("");
            if h.name.eq_ignore_ascii_case("content-length") {
                match value.trim().parse::<usize>() {
                    Ok(n) if content_length.is_none_or(|m| m == n) => content_length = Some(n),
                    _ => return self.refuse(400, &format!("invalid content-length: {value:?}")),
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = value.rsplit(',').next().unwrap_or("").trim();
                if !last.eq_ignore_ascii_case("chunked") {
                    return self.refuse(501, &format!("unsupported transfer-encoding: {value:?}"));
                }
                chunked = true;
            } else if h.name.eq_ignore_ascii_case("connection") {
                close |= value.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"));
            } else if h.name.eq_ignore_ascii_case("expect") {
                expect_continue = value.trim().eq_ignore_ascii_case("100-continue");
            }
        }
        // RFC 9112 §6.3: both is a smuggling attempt, or a broken client.
        if chunked && content_length.is_some() {
            return self.refuse(400, "both content-length and transfer-encoding: chunked");
        }
        let rest = &data[head_len..];
        let (body, used): (&[u8], usize) = if chunked {
            match scan_chunked(rest, self.max_body) {
                Chunked::Complete(used) => {
                    decode_chunked(&rest[..used], &mut self.decoded);
                    (&self.decoded, used)
                }
                // Framing can outweigh the data (tiny chunks, long extensions): bound the bytes held.
                Chunked::Partial if rest.len() > self.max_body.saturating_mul(4) + MAX_HEAD_BYTES => {
                    return self.too_large();
                }
                Chunked::Partial => return self.wait_for_body(expect_continue),
                Chunked::TooLarge => return self.too_large(),
                Chunked::Bad(why) => return self.refuse(400, &format!("malformed chunked body: {why}")),
            }
        } else {
            let len = content_length.unwrap_or(0);
            if len > self.max_body {
                return self.too_large();
            }
            if rest.len() < len {
                return self.wait_for_body(expect_continue);
            }
            (&rest[..len], len)
        };
        let target = req.path.unwrap_or("/");
        let path = target.split_once('?').map_or(target, |(p, _)| p);
        let request = Request {
            method: req.method.unwrap_or(""),
            path,
            headers: req.headers,
            body,
        };
        let mark = self.out.len();
        let mut out = Out {
            buf: &mut self.out,
            scratch: &mut self.scratch,
            close,
        };
        let timing = self.handler.handle(&request, &mut out);
        self.start += head_len + used;
        self.continued = false;
        Step::Answered { timing, mark, close }
    }

    /// The body is not all here: ask for it if the client waits to be asked (RFC 9110 §10.1.1).
    fn wait_for_body(&mut self, expect_continue: bool) -> Step {
        if expect_continue && !self.continued {
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            self.continued = true;
        }
        Step::NeedMore
    }

    fn too_large(&mut self) -> Step {
        let max = self.max_body;
        self.refuse(413, &format!("Request body too large: the limit is {max} bytes."))
    }

    fn refuse(&mut self, status: u16, message: &str) -> Step {
        let mut out = Out {
            buf: &mut self.out,
            scratch: &mut self.scratch,
            close: true,
        };
        self.handler.refuse(status, message, &mut out);
        Step::Refused
    }

    /// Sends an answer when its timing says. False when the connection is over (the client went
    /// away, or the server stopped).
    async fn deliver(
        &mut self,
        stream: &mut TcpStream,
        timing: Timing,
        mark: usize,
        mut stopped: Pin<&mut impl Future<Output = ()>>,
    ) -> bool {
        let (delay, hold) = match timing {
            Timing::Now => return true,
            Timing::After(d, hold) => (Some(d), hold),
            Timing::Hung(hold) => (None, hold),
            Timing::Stream(frames, hold) => return self.stream(stream, frames, hold, stopped).await,
            Timing::Live(rx, hold) => return self.live(stream, rx, hold, stopped).await,
        };
        // Answers before this one go out first.
        if mark > 0 {
            if stream.write_all(&self.out[..mark]).await.is_err() {
                return false;
            }
            self.out.drain(..mark);
        }
        match self.wait(stream, delay, stopped.as_mut()).await {
            Waited::Elapsed => {
                drop(hold);
                true
            }
            Waited::Gone => false,
            Waited::Stopped => {
                drop(hold);
                self.out.clear();
                let mut out = Out {
                    buf: &mut self.out,
                    scratch: &mut self.scratch,
                    close: true,
                };
                self.handler.stopping(&mut out);
                let _ = stream.write_all(&self.out).await;
                false
            }
        }
    }

    async fn stream(
        &mut self,
        stream: &mut TcpStream,
        frames: Vec<Frame>,
        hold: Hold,
        mut stopped: Pin<&mut impl Future<Output = ()>>,
    ) -> bool {
        for frame in frames {
            if !frame.after.is_zero() {
                // What is written so far goes out before the wait.
                if stream.write_all(&self.out).await.is_err() {
                    return false;
                }
                self.out.clear();
                match self.wait(stream, Some(frame.after), stopped.as_mut()).await {
                    Waited::Elapsed => {}
                    Waited::Gone => return false,
                    Waited::Stopped => {
                        // The stream ends early, but well-formed.
                        self.out.extend_from_slice(b"0\r\n\r\n");
                        let _ = stream.write_all(&self.out).await;
                        return false;
                    }
                }
            }
            self.out
                .extend_from_slice(format!("{:x}\r\n", frame.data.len()).as_bytes());
            self.out.extend_from_slice(&frame.data);
            self.out.extend_from_slice(b"\r\n");
        }
        self.out.extend_from_slice(b"0\r\n\r\n");
        drop(hold);
        true
    }

    async fn live(
        &mut self,
        stream: &mut TcpStream,
        mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
        hold: Hold,
        mut stopped: Pin<&mut impl Future<Output = ()>>,
    ) -> bool {
        loop {
            if stream.write_all(&self.out).await.is_err() {
                return false;
            }
            self.out.clear();
            let room = self.buf.len() < self.max_body + MAX_HEAD_BYTES + READ_AHEAD;
            if room {
                self.buf.reserve(4 * 1024);
            }
            tokio::select! {
                biased;
                () = stopped.as_mut() => {
                    // The stream ends early, but well-formed.
                    let _ = stream.write_all(b"0\r\n\r\n").await;
                    return false;
                }
                message = rx.recv() => match message {
                    Some(data) => {
                        self.out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                        self.out.extend_from_slice(&data);
                        self.out.extend_from_slice(b"\r\n");
                    }
                    None => {
                        self.out.extend_from_slice(b"0\r\n\r\n");
                        drop(hold);
                        return true;
                    }
                },
                read = stream.read_buf(&mut self.buf), if room => match read {
                    Ok(0) | Err(_) => return false,
                    Ok(_) => {}
                },
            }
        }
    }

    /// Waits `delay` (forever if `None`), reading ahead meanwhile so that a client that goes away
    /// is noticed at once.
    async fn wait(
        &mut self,
        stream: &mut TcpStream,
        delay: Option<Duration>,
        mut stopped: Pin<&mut impl Future<Output = ()>>,
    ) -> Waited {
        let sleep = async move {
            match delay {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep);
        loop {
            let room = self.buf.len() < self.max_body + MAX_HEAD_BYTES + READ_AHEAD;
            if room {
                self.buf.reserve(4 * 1024);
            }
            tokio::select! {
                biased;
                () = stopped.as_mut() => return Waited::Stopped,
                () = &mut sleep => return Waited::Elapsed,
                read = stream.read_buf(&mut self.buf), if room => match read {
                    Ok(0) | Err(_) => return Waited::Gone,
                    Ok(_) => {}
                },
            }
        }
    }
}

/// After refusing a request whose body was not read: stop writing, and read what the client is
/// still sending for a moment before closing, so that the kernel does not answer it with a reset
/// that could destroy the refusal before the client reads it.
async fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 16 * 1024];
    let drain = async {
        let mut total = 0usize;
        while let Ok(n) = stream.read(&mut sink).await {
            total += n;
            if n == 0 || total > 16 << 20 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

/// What scanning a chunked body found.
#[derive(Debug, PartialEq)]
enum Chunked {
    /// The whole body, ending this many bytes in.
    Complete(usize),
    Partial,
    TooLarge,
    Bad(&'static str),
}

/// The longest chunk-size or trailer line accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Scans a chunked body (RFC 9112 §7.1) without copying it.
fn scan_chunked(data: &[u8], max_body: usize) -> Chunked {
    let mut at = 0;
    let mut total = 0usize;
    loop {
        let Some(eol) = find_crlf(&data[at..]) else {
            return if data.len() - at > MAX_CHUNK_LINE {
                Chunked::Bad("chunk-size line too long")
            } else {
                Chunked::Partial
            };
        };
        let Some(size) = chunk_size(&data[at..at + eol]) else {
            return Chunked::Bad("bad chunk size");
        };
        at += eol + 2;
        if size == 0 {
            // Trailer lines, then an empty line.
            loop {
                let Some(eol) = find_crlf(&data[at..]) else {
                    return if data.len() - at > MAX_CHUNK_LINE {
                        Chunked::Bad("trailer too long")
                    } else {
                        Chunked::Partial
                    };
                };
                at += eol + 2;
                if eol == 0 {
                    return Chunked::Complete(at);
                }
            }
        }
        total += size;
        if total > max_body {
            return Chunked::TooLarge;
        }
        if data.len() - at < size + 2 {
            return Chunked::Partial;
        }
        if &data[at + size..at + size + 2] != b"\r\n" {
            return Chunked::Bad("chunk data not followed by CRLF");
        }
        at += size + 2;
    }
}

/// Decodes a chunked body that [`scan_chunked`] found complete.
fn decode_chunked(data: &[u8], body: &mut Vec<u8>) {
    body.clear();
    let mut at = 0;
    loop {
        let eol = find_crlf(&data[at..]).expect("scanned");
        let size = chunk_size(&data[at..at + eol]).expect("scanned");
        at += eol + 2;
        if size == 0 {
            return;
        }
        body.extend_from_slice(&data[at..at + size]);
        at += size + 2;
    }
}

/// The size on a chunk-size line (`1a;ext=x`): up to 15 hex digits, extensions ignored.
fn chunk_size(line: &[u8]) -> Option<usize> {
    let digits = line.split(|&b| b == b';').next().unwrap_or(b"");
    let digits = digits.strip_suffix(b" ").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    usize::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

fn find_crlf(data: &[u8]) -> Option<usize> {
    data.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(body: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0;
        for &c in cuts {
            let end = (at + c).min(body.len());
            if end > at {
                out.extend_from_slice(format!("{:X};ext=1\r\n", end - at).as_bytes());
                out.extend_from_slice(&body[at..end]);
                out.extend_from_slice(b"\r\n");
            }
            at = end;
        }
        if at < body.len() {
            out.extend_from_slice(format!("{:x}\r\n", body.len() - at).as_bytes());
            out.extend_from_slice(&body[at..]);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\nx-trailer: 1\r\n\r\n");
        out
    }

    proptest! {
        /// However a body is cut into chunks, it decodes to itself; every proper prefix of the
        /// encoding is partial, never complete or malformed (so a body arriving in pieces waits).
        #[test]
        fn chunked_bodies_decode_to_what_was_sent(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            cuts in proptest::collection::vec(1usize..64, 0..10),
            extra in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let encoded = encode(&body, &cuts);
            let mut with_next = encoded.clone();
            with_next.extend_from_slice(&extra); // a pipelined request after it
            prop_assert_eq!(scan_chunked(&with_next, 1 << 20), Chunked::Complete(encoded.len()));
            let mut decoded = Vec::new();
            decode_chunked(&encoded, &mut decoded);
            prop_assert_eq!(&decoded, &body);
            for cut in 0..encoded.len() {
                prop_assert_eq!(scan_chunked(&encoded[..cut], 1 << 20), Chunked::Partial, "prefix {}", cut);
            }
        }
    }

    /// Answers every request with what it saw: method, path, and the body's length and bytes.
    struct Echo;

    impl Handler for Echo {
        fn handle(&self, r: &Request<'_>, out: &mut Out<'_>) -> Timing {
            let mut said = format!("{} {} {}:", r.method, r.path, r.body.len()).into_bytes();
            said.extend_from_slice(r.body);
            out.head(200).body("text/plain", &said);
            Timing::Now
        }

        fn refuse(&self, status: u16, message: &str, out: &mut Out<'_>) {
            out.head(status).body("text/plain", message.as_bytes());
        }

        fn stopping(&self, out: &mut Out<'_>) {
            out.head(503).body("text/plain", b"stopping");
        }
    }

    /// Feeds `pieces` to a connection one read at a time, as the read loop does; returns what it
    /// wrote and whether it refused (and so closed).
    fn feed(pieces: &[&[u8]], max_body: usize) -> (Vec<u8>, bool) {
        let mut c = Connection {
            handler: Arc::new(Echo),
            buf: Vec::new(),
            start: 0,
            out: Vec::new(),
            scratch: Vec::new(),
            decoded: Vec::new(),
            continued: false,
            max_body,
        };
        for piece in pieces {
            c.buf.extend_from_slice(piece);
            loop {
                match c.step() {
                    Step::NeedMore => break,
                    Step::Refused => return (c.out, true),
                    Step::Answered { timing, .. } => assert!(matches!(timing, Timing::Now)),
                }
            }
            c.buf.drain(..c.start);
            c.start = 0;
        }
        (c.out, false)
    }

    /// The final answers in `out` as (status, body, connection header), skipping `100 Continue`;
    /// fails on anything not a whole, well-formed answer.
    fn parse_answers(mut out: &[u8]) -> Vec<(u16, Vec<u8>, Option<String>)> {
        let mut answers = vec![];
        while !out.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut r = httparse::Response::new(&mut headers);
            let n = match r.parse(out) {
                Ok(httparse::Status::Complete(n)) => n,
                other => panic!("not a whole answer ({other:?}): {:?}", String::from_utf8_lossy(out)),
            };
            let status = r.code.expect("a status");
            let header = |name: &str| {
                r.headers
                    .iter()
                    .find(|h| h.name == name)
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            if status == 100 {
                out = &out[n..];
                continue;
            }
            let len: usize = header("content-length")
                .expect("every answer has a length")
                .parse()
                .expect("a number");
            answers.push((status, out[n..n + len].to_vec(), header("connection")));
            out = &out[n + len..];
        }
        answers
    }

    /// A valid request of one of four shapes, and the echo it must get.
    fn valid_request() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
        (
            0..4u8,
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(1usize..16, 0..4),
        )
            .prop_map(|(shape, body, cuts)| {
                let echo = |method: &str, body: &[u8]| {
                    let mut e = format!("{method} /p {}:", body.len()).into_bytes();
                    e.extend_from_slice(body);
                    e
                };
                match shape {
                    0 => (b"GET /p?q=1 HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(), echo("GET", b"")),
                    1 | 3 => {
                        let expect = if shape == 3 { "expect: 100-continue\r\n" } else { "" };
                        let mut r =
                            format!("POST /p HTTP/1.1\r\n{expect}Content-Length: {}\r\n\r\n", body.len()).into_bytes();
                        r.extend_from_slice(&body);
                        (r, echo("POST", &body))
                    }
                    _ => {
                        let mut r = b"POST /p HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                        r.extend_from_slice(&encode(&body, &cuts));
                        (r, echo("POST", &body))
                    }
                }
            })
    }

    /// Cuts `bytes` at the given points (taken modulo its length).
    fn split<'a>(bytes: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
        let mut at: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
        at.sort_unstable();
        at.dedup();
        let mut pieces = vec![];
        let mut from = 0;
        for p in at.into_iter().chain([bytes.len()]) {
            pieces.push(&bytes[from..p]);
            from = p;
        }
        pieces
    }

    proptest! {
        /// Pipelined valid requests, however the reads cut them, are each answered once, in
        /// order, with exactly the method, path and (decoded) body sent.
        #[test]
        fn requests_are_answered_the_same_however_the_reads_cut_them(
            requests in proptest::collection::vec(valid_request(), 1..5),
            points in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let stream: Vec<u8> = requests.iter().flat_map(|(r, _)| r.clone()).collect();
            let expected: Vec<Vec<u8>> = requests.iter().map(|(_, e)| e.clone()).collect();
            let (out, refused) = feed(&split(&stream, &points), 1024);
            prop_assert!(!refused);
            let got: Vec<Vec<u8>> = parse_answers(&out).into_iter().map(|(s, b, _)| { assert_eq!(s, 200); b }).collect();
            prop_assert_eq!(got, expected);
        }

        /// Any bytes at all, cut anywhere: the connection never panics, writes only whole,
        /// well-formed answers, and a refusal (a 4xx/5xx from the HTTP layer) is its last word and
        /// says it closes.
        #[test]
        fn any_bytes_get_well_formed_answers_or_a_closing_refusal(
            tokens in proptest::collection::vec(
                prop_oneof![
                    proptest::sample::select(vec![
                        "GET ", "POST ", "/p", " HTTP/1.1\r\n", " HTTP/1.0\r\n", " HTTP/2\r\n", "\r\n",
                        "content-length: 5\r\n", "content-length: x\r\n", "Content-Length: 99999\r\n",
                        "transfer-encoding: chunked\r\n", "transfer-encoding: gzip\r\n", "5\r\nhello\r\n",
                        "0\r\n\r\n", "zz\r\n", "expect: 100-continue\r\n", "connection: close\r\n", "x: y\r\n",
                    ]).prop_map(|t| t.as_bytes().to_vec()),
                    proptest::collection::vec(any::<u8>(), 1..8),
                ],
                0..30,
            ),
            points in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let stream: Vec<u8> = tokens.concat();
            let (out, refused) = feed(&split(&stream, &points), 64);
            let answers = parse_answers(&out);
            for (i, (status, _, connection)) in answers.iter().enumerate() {
                prop_assert!([200, 400, 413, 431, 501].contains(status), "status {}", status);
                if *status != 200 {
                    prop_assert!(refused && i == answers.len() - 1, "a refusal ends the connection");
                    prop_assert_eq!(connection.as_deref(), Some("close"));
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_over_the_limit_or_malformed_are_refused() {
        assert_eq!(
            scan_chunked(b"10\r\n0123456789abcdef\r\n0\r\n\r\n", 15),
            Chunked::TooLarge
        );
        assert_eq!(scan_chunked(b"zz\r\n", 100), Chunked::Bad("bad chunk size"));
        assert_eq!(
            scan_chunked(b"2\r\nabX\r\n", 100),
            Chunked::Bad("chunk data not followed by CRLF")
        );
        assert_eq!(
            scan_chunked(&[b'1'; MAX_CHUNK_LINE + 1], 100),
            Chunked::Bad("chunk-size line too long")
        );
    }
}
