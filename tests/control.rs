//! The live control API, for real: a live run against the bundled mock is read, steered and
//! cancelled over HTTP while it runs, and its report must show what was done.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use orchbench::cli::{Live, run_scenario_controlled};
use orchbench::control::ControlConfig;
use serde_json::Value;
use sim::Scenario;

/// 40 files of 8 chunks, all at once, 1 s calls, 16 at once under `adaptive` (which reads
/// `max-parallelism` live, cut to 4 mid-run): about 80 s of scenario time, 8 s real at
/// --time-scale 10.
const SCENARIO: &str = r#"
name = "control"
seed = 21
[workload]
files = 40
users = 2
chunks_per_file = { dist = "fixed", value = 8 }
prompt_tokens = { dist = "fixed", value = 300 }
completion_tokens = { dist = "fixed", value = 50 }
max_tokens = 60
arrival = { kind = "all-at-once" }
[provider]
latency = { base_ms = 1000, per_output_token_ms = 0, sigma = 0.3 }
[params]
max-parallelism = 16
"#;

const TOKEN: &str = "s3cret";

/// One request over a fresh connection; the status and the body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connects");
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("sends");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("reads");
    let status = text[9..12].parse().expect("a status");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn json(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, text) = http(addr, method, path, body, Some(TOKEN));
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

#[test]
fn a_live_run_is_read_steered_and_cancelled_through_the_control_api() {
    let s = Scenario::parse(SCENARIO, "control").expect("valid");
    let (tx, rx) = std::sync::mpsc::channel();
    let run = std::thread::spawn(move || {
        let live = Live {
            endpoint: None,
            api_key: None,
            time_scale: 10.0,
            extra_root_pem: None,
        };
        let config = ControlConfig {
            addr: "127.0.0.1:0".parse().expect("an address"),
            token: Some(TOKEN.to_owned()),
        };
        run_scenario_controlled(&s, &["adaptive".to_owned()], &live, &config, |a| {
            tx.send(a).expect("the test listens")
        })
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).expect("the API is up");

    // The token is enforced on every request.
    assert_eq!(http(addr, "GET", "/progress", "", None).0, 401);
    assert_eq!(http(addr, "GET", "/progress", "", Some("wrong")).0, 401);

    // Progress, once the run has made some.
    let started = Instant::now();
    let first = loop {
        let (status, p) = json(addr, "GET", "/progress", "");
        if status == 200 && p["chunks_done"].as_u64() > Some(8) {
            break p;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no progress: {p}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(first["strategy"], "adaptive");
    assert_eq!(first["files"].as_array().map(Vec::len), Some(40));
    assert!(first["in_flight"].as_u64() > Some(4), "16 allowed at first: {first}");

    // Bad changes are refused by name, and nothing of them is applied.
    let (status, e) = json(addr, "POST", "/params", r#"{"max-parallelism": 3, "bogus": 1}"#);
    assert_eq!(status, 400);
    assert!(e["error"].as_str().is_some_and(|m| m.contains("`bogus`")), "{e}");
    let (status, e) = json(addr, "POST", "/params", r#"{"max-parallelism": 0}"#);
    assert_eq!(status, 400);
    assert!(
        e["error"].as_str().is_some_and(|m| m.contains("`max-parallelism`")),
        "{e}"
    );
    assert_eq!(http(addr, "POST", "/params", "{nope", Some(TOKEN)).0, 400);
    assert_eq!(json(addr, "GET", "/params", "").1["max-parallelism"], 16);

    // A good change is obeyed: `adaptive` starts no call past it, so the calls in flight fall
    // to 4 once those already sent end (1 s calls: within a few scenario seconds).
    let (status, applied) = json(addr, "POST", "/params", r#"{"max-parallelism": 4}"#);
    assert_eq!(status, 200, "{applied}");
    let changed_at = json(addr, "GET", "/progress", "").1["elapsed_s"]
        .as_f64()
        .expect("time");
    let obeyed = loop {
        let p = json(addr, "GET", "/progress", "").1;
        let t = p["elapsed_s"].as_f64().expect("time");
        if p["in_flight"].as_u64() <= Some(4) {
            break t;
        }
        assert!(
            t - changed_at < 5.0,
            "still {} in flight {}s after the change",
            p["in_flight"],
            t - changed_at
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(obeyed - changed_at < 5.0);

    // The event stream follows the run.
    let mut events = TcpStream::connect(addr).expect("connects");
    write!(
        events,
        "GET /events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\r\n"
    )
    .expect("sends");
    events
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    let mut lines = BufReader::new(events).lines();
    let mut progress_events = 0;
    while progress_events < 2 {
        let line = lines.next().expect("the stream goes on").expect("reads");
        if line == "event: progress" {
            progress_events += 1;
        }
    }

    // Cancel the last file (it has not started at this pace), and an unknown one.
    let (status, c) = json(addr, "POST", "/cancel", r#"{"file": "file-40"}"#);
    assert_eq!((status, &c["files"]), (200, &Value::from(1)), "{c}");
    assert_eq!(json(addr, "POST", "/cancel", r#"{"file": "file-99"}"#).0, 404);
    assert_eq!(json(addr, "POST", "/cancel", r#"{"everything": true}"#).0, 400);
    let last = json(addr, "GET", "/progress", "").1;
    // Per file, requests, 429s and tokens are the run's counters split by file: every call is
    // for one file, so the parts add up to the whole (a miscounted file breaks the sum).
    let files = last["files"].as_array().expect("files");
    for key in ["requests", "throttled", "tokens"] {
        let sum: u64 = files.iter().map(|f| f[key].as_u64().expect("a count")).sum();
        assert_eq!(Some(sum), last[key].as_u64(), "{key}: {last}");
    }
    assert!(files.iter().any(|f| f["tokens"].as_u64() > Some(0)), "{last}");
    // A completed file's time is from its arrival to its end, which is within the run's time.
    let done = files
        .iter()
        .find(|f| f["state"] == "completed")
        .expect("a completed file");
    let elapsed = done["elapsed_s"].as_f64().expect("elapsed_s");
    assert!(
        elapsed > 0.0 && elapsed <= last["elapsed_s"].as_f64().expect("run time"),
        "{done}"
    );
    // adaptive publishes its window, which the change capped at 4.
    let limit = last["concurrency_limit"].as_u64();
    assert!(limit.is_some_and(|l| (1..=4).contains(&l)), "{last}");

    let report = run.join().expect("the run thread").expect("the run");
    let r = &report.runs[0];
    // The report shows the change in its event log, and the cancel as a timeline cancel would:
    // a cancelled file, out of the required work (so completion is of the 39 others).
    assert!(
        r.events
            .iter()
            .any(|e| format!("{:?}", e.kind) == "ParamsChanged" && e.detail.contains("\"max-parallelism\":4")),
        "{:?}",
        r.events.iter().map(|e| &e.detail).collect::<Vec<_>>()
    );
    assert_eq!(r.summary.files_cancelled, 1);
    assert_eq!(r.summary.files_required, 39);
    assert_eq!(r.summary.files_completed, 39);
    assert_eq!(r.summary.completion, 1.0);
    // Progress agrees with the report: what was done then is within what was done in the end.
    assert!(last["chunks_done"].as_u64() <= Some(r.summary.chunks_validated));
    assert!(last["requests"].as_u64() <= Some(r.summary.llm_requests));
}

#[test]
fn a_control_api_off_loopback_needs_a_token() {
    let s = Scenario::parse(SCENARIO, "control").expect("valid");
    let live = Live {
        endpoint: None,
        api_key: None,
        time_scale: 10.0,
        extra_root_pem: None,
    };
    let config = ControlConfig {
        addr: "0.0.0.0:0".parse().expect("an address"),
        token: None,
    };
    let e = run_scenario_controlled(&s, &["adaptive".to_owned()], &live, &config, |_| {
        panic!("it must not listen")
    })
    .expect_err("refused");
    assert!(format!("{e:#}").contains("needs --control-token"), "{e:#}");
}
