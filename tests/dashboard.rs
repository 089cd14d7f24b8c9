//! The live dashboard, run for real: the `orchbench` binary under a pseudo-terminal, its screen
//! rebuilt from what it writes (vt100), keys typed into it.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// 60 files of 4 chunks, 1 s calls, 4 at once: 60 s of scenario time per strategy, 6 s real at
/// --time-scale 10; long enough to watch, short enough to finish if `q` were ignored.
const SCENARIO: &str = r#"
name = "dash"
seed = 5
[workload]
files = 60
users = 2
chunks_per_file = { dist = "fixed", value = 4 }
prompt_tokens = { dist = "fixed", value = 300 }
completion_tokens = { dist = "fixed", value = 50 }
max_tokens = 60
arrival = { kind = "all-at-once" }
[provider]
tpm = 60000
latency = { base_ms = 1000, per_output_token_ms = 0, sigma = 0.1 }
[params]
max-parallelism = 4
"#;

const ROWS: u16 = 40;
const COLS: u16 = 120;

/// A process on a fresh pseudo-terminal, and everything it wrote there.
struct OnPty {
    child: Child,
    master: File,
    output: Arc<Mutex<Vec<u8>>>,
}

impl OnPty {
    /// Starts `cmd` with the terminal as its controlling terminal and on stdin and stderr, and
    /// on stdout too unless `stdout_to_pipe`.
    fn spawn(mut cmd: Command, stdout_to_pipe: bool) -> OnPty {
        let (mut master, mut slave) = (0, 0);
        let size = libc::winsize {
            ws_row: ROWS,
            ws_col: COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two descriptors into the given ints; the name and termios are
        // optional (null), the size is read.
        let r = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
        assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned here alone.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let fd = |s: &OwnedFd| Stdio::from(s.try_clone().expect("dup"));
        cmd.stdin(fd(&slave)).stderr(fd(&slave));
        cmd.stdout(if stdout_to_pipe { Stdio::piped() } else { fd(&slave) });
        cmd.env("TERM", "xterm-256color");
        // SAFETY: between fork and exec only async-signal-safe calls: a new session, and the
        // terminal (now on stdin) made its controlling terminal, as a terminal emulator does.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("starts orchbench");
        drop(slave); // the child holds it: when it exits, reads from the master end
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().expect("dup");
        let out = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock()
                    .expect("the test holds no lock while panicking")
                    .extend_from_slice(&buf[..n]);
            }
        });
        OnPty { child, master, output }
    }

    fn bytes(&self) -> Vec<u8> {
        self.output.lock().expect("not poisoned").clone()
    }

    /// The screen as a terminal would show it now.
    fn screen(&self) -> String {
        let mut p = vt100::Parser::new(ROWS, COLS, 0);
        p.process(&self.bytes());
        p.screen().contents()
    }

    /// Waits (at most 60 s) until the screen satisfies `ok`; returns it.
    fn wait_for(&mut self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            if started.elapsed() > Duration::from_secs(60) || self.child.try_wait().expect("waits").is_some() {
                let _ = self.child.kill();
                panic!("never saw {what}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (at most 60 s) for the process to exit; its status code.
    fn exit(&mut self) -> i32 {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waits") {
                // Let the reader drain what the process wrote last.
                std::thread::sleep(Duration::from_millis(200));
                return status.code().expect("exited, not killed");
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!("did not exit; the screen:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The scenario time the dashboard's head shows ("scenario time 12 s").
fn shown_time(screen: &str) -> Option<u64> {
    let rest = &screen[screen.find("scenario time ")? + "scenario time ".len()..];
    rest.split(' ').next()?.parse().ok()
}

fn orchbench(dir: &std::path::Path, extra: &[&str]) -> Command {
    std::fs::write(dir.join("dash.toml"), SCENARIO).expect("writes the scenario");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orchbench"));
    cmd.current_dir(dir)
        .args(["run", "dash.toml", "--live", "--time-scale", "10", "--out", "out"])
        .args(extra);
    cmd
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("orchbench-dash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("a temp dir");
    d
}

#[test]
fn the_dashboard_draws_updates_and_q_stops_the_run_with_its_report_written() {
    let dir = tempdir("q");
    let mut pty = OnPty::spawn(orchbench(&dir, &["-s", "fixed", "-s", "adaptive"]), false);

    // It draws: the full-screen view, with the first strategy running against the TPM line.
    let first = pty.wait_for("the dashboard with the run going", |s| {
        s.contains("orchbench live") && s.contains("fixed [1/2]") && shown_time(s).is_some_and(|t| t >= 2)
    });
    assert!(first.contains("of TPM 60.0k"), "{first}");
    assert!(first.contains("calls in flight / limit"), "{first}");
    assert!(first.contains("requests/s"), "{first}");
    assert!(first.contains("adaptive   waiting"), "{first}");
    // fixed keeps 4 calls going: the gauge says so against its limit.
    assert!(first.contains("/ 4"), "{first}");
    let t0 = shown_time(&first).expect("a time");

    // It updates: scenario time moves on, and chunks get done.
    let later = pty.wait_for("the time moving on", |s| shown_time(s).is_some_and(|t| t >= t0 + 5));
    let chunks = |s: &str| -> u64 {
        let i = s.find(" / 240 chunks").expect("the chunks gauge");
        s[..i]
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .expect("a count")
            .parse()
            .expect("a number")
    };
    assert!(chunks(&later) > chunks(&first), "first:\n{first}\nlater:\n{later}");

    // `q` stops it: the run is cancelled, adaptive never starts, and the report is written.
    pty.master.write_all(b"q").expect("types q");
    assert_eq!(pty.exit(), 0, "{}", pty.screen());
    let out = String::from_utf8_lossy(&pty.bytes()).into_owned();
    // The alternate screen was entered and left, and the table printed after it.
    assert!(out.contains("\x1b[?1049h") && out.contains("\x1b[?1049l"), "{out}");
    let after = &out[out.rfind("\x1b[?1049l").expect("left")..];
    assert!(
        after.contains("stopped from the dashboard (q): 1 of 2 strategies ran"),
        "{after}"
    );
    assert!(after.contains("fixed") && !after.contains("adaptive"), "{after}");

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/report.json")).expect("report.json written"))
            .expect("JSON");
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1, "only fixed ran");
    let s = &runs[0]["summary"];
    // Cut short: some files completed before the q, the rest were cancelled (not failed), and
    // the cancelled work is outside the required work, as for a cancel through the control API.
    let completed = s["files_completed"].as_u64().expect("a count");
    let cancelled = s["files_cancelled"].as_u64().expect("a count");
    assert!(completed > 0 && cancelled > 0, "{s}");
    assert_eq!(completed + cancelled, 60, "{s}");
    assert_eq!(s["files_failed"], 0, "{s}");
    assert_eq!(s["files_required"].as_u64(), Some(completed), "{s}");
    let events = runs[0]["events"].as_array().expect("events");
    assert!(
        events.iter().any(|e| e["detail"] == "stopped from the dashboard (q)"),
        "the event log says why it ended"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_tui_and_a_piped_stdout_fall_back_to_the_progress_bar() {
    for (name, extra, piped) in [("no-tui", &["--no-tui"][..], false), ("piped", &[][..], true)] {
        let dir = tempdir(name);
        // 20 files are 20 s of scenario time: 2 s real.
        let mut cmd = orchbench(&dir, &["-s", "fixed"]);
        cmd.args(extra);
        std::fs::write(dir.join("dash.toml"), SCENARIO.replace("files = 60", "files = 20")).expect("writes");
        let mut pty = OnPty::spawn(cmd, piped);
        let mut stdout = String::new();
        if piped {
            pty.child
                .stdout
                .take()
                .expect("piped")
                .read_to_string(&mut stdout)
                .expect("reads");
        }
        assert_eq!(pty.exit(), 0, "{name}: {}", pty.screen());
        let terminal = String::from_utf8_lossy(&pty.bytes()).into_owned();
        // No full screen, but the progress bar on the terminal (stderr).
        assert!(!terminal.contains("\x1b[?1049h"), "{name}: {terminal}");
        assert!(
            terminal.contains(" chunks  sim "),
            "{name}: no progress bar: {terminal}"
        );
        let table = if piped { &stdout } else { &terminal };
        assert!(table.contains("fixed"), "{name}: no table: {table}");
        assert!(dir.join("out/report.json").exists(), "{name}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
