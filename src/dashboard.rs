//! The live terminal dashboard (`run --live` with stdout on a terminal; `--no-tui` turns it
//! off): a full-screen view, like oha's, of the run in progress, redrawn four times a second.
//!
//! - tokens per minute (what the TPM limit counts, over the last 60 s) against the TPM line,
//!   over the last two minutes of scenario time;
//! - requests and 429s per second;
//! - LLM calls in flight against the strategy's concurrency limit;
//! - chunks done, and files by state;
//! - every strategy of the run: waiting, running (live figures) or done (its report's figures).
//!
//! `q` (or Esc, or Ctrl-C) stops the run cleanly: the run in progress is cancelled as a
//! `POST /cancel {"run": true}` would, its calls in flight end, the strategies not started are
//! skipped, and the report of what ran is written as usual.
//!
//! [`Board`] is the data a frame shows and [`draw`] draws it, so a frame can be checked without a
//! terminal; [`Dashboard`] owns the terminal and the thread that samples the run and reads keys.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Dataset, Gauge, GraphType, Paragraph, Row, Sparkline, Table,
};
use sim::recorder::SecondRow;
use sim::scenario::{Action, CancelTarget};
use sim::{FileStatus, RunContext, RunReport, Scenario};

/// How often the dashboard samples the run and redraws.
pub const REFRESH: Duration = Duration::from_millis(250);

/// Seconds of scenario time the charts span.
pub const WINDOW_S: usize = 120;

/// Where one strategy of the run stands.
#[derive(Clone, Debug, PartialEq)]
pub enum StrategyState {
    /// Not started yet.
    Waiting,
    /// Running now (its figures are the current run's).
    Running,
    /// Ended; its report's figures.
    Done(Done),
}

/// A finished strategy's figures, from its report.
#[derive(Clone, Debug, PartialEq)]
pub struct Done {
    /// Makespan, seconds of scenario time.
    pub makespan_s: f64,
    /// LLM requests.
    pub requests: u64,
    /// Of them, 429s.
    pub throttled: u64,
    /// Tokens the provider billed.
    pub tokens: u64,
    /// Files completed, failed, cancelled.
    pub files: (u64, u64, u64),
}

impl Done {
    /// The figures of `report`.
    pub fn of(report: &RunReport) -> Done {
        let s = &report.summary;
        Done {
            makespan_s: s.makespan_s,
            requests: s.llm_requests,
            throttled: s.llm_throttled,
            tokens: s.tokens_billed,
            files: (s.files_completed, s.files_failed, s.files_cancelled),
        }
    }
}

/// The run in progress, as last sampled.
#[derive(Clone, Debug)]
pub struct Current {
    /// Where its files and users stand.
    pub snapshot: sim::context::Snapshot,
    /// The last seconds of its time series (up to [`WINDOW_S`] + 60, the current one last).
    pub seconds: Vec<SecondRow>,
}

/// Everything a frame shows.
#[derive(Clone, Debug)]
pub struct Board {
    /// The scenario's name and seed.
    pub scenario: String,
    /// How the run reaches its LLM, in words (e.g. "the bundled mock, 10x time").
    pub target: String,
    /// The provider's TPM limit from each second on (the scenario's, then its timeline's
    /// `limits` changes): `(second, limit)`, by time.
    pub tpm_schedule: Vec<(f64, Option<u64>)>,
    /// Every strategy of the run, in order, with its state.
    pub strategies: Vec<(String, StrategyState)>,
    /// The run in progress, once sampled.
    pub current: Option<Current>,
    /// `q` was pressed: the run is being stopped.
    pub stopping: bool,
    /// A line for the foot (the control API's address, when one serves).
    pub note: Option<String>,
}

impl Board {
    /// A board for `scenario` run under `strategies` (all waiting).
    pub fn new(scenario: &Scenario, strategies: &[&str], target: String) -> Board {
        let mut tpm_schedule = vec![(0.0, scenario.provider.tpm.map(|t| t.get()))];
        for e in scenario.events() {
            if let Action::Limits(l) = e.action
                && let Some(t) = l.tpm
            {
                tpm_schedule.push((e.at.0.as_secs_f64(), Some(t.get())));
            }
        }
        Board {
            scenario: format!("{} (seed {})", scenario.name, scenario.seed),
            target,
            tpm_schedule,
            strategies: strategies
                .iter()
                .map(|s| ((*s).to_owned(), StrategyState::Waiting))
                .collect(),
            current: None,
            stopping: false,
            note: None,
        }
    }

    /// The TPM limit at second `t`.
    pub fn tpm_at(&self, t: f64) -> Option<u64> {
        self.tpm_schedule
            .iter()
            .take_while(|(at, _)| *at <= t)
            .last()
            .and_then(|(_, l)| *l)
    }

    /// The TPM line from second `x0` to `x1`: a step at each change, none where there is no
    /// limit.
    pub fn tpm_line(&self, x0: f64, x1: f64) -> Vec<(f64, f64)> {
        let mut line = Vec::new();
        let mut at = x0;
        let mut now = self.tpm_at(x0);
        for &(t, l) in self.tpm_schedule.iter().filter(|(t, _)| *t > x0 && *t <= x1) {
            if let Some(v) = now {
                line.extend([(at, v as f64), (t, v as f64)]);
            }
            (at, now) = (t, l);
        }
        if let Some(v) = now {
            line.extend([(at, v as f64), (x1, v as f64)]);
        }
        line
    }

    fn running(&self) -> Option<(usize, &str)> {
        self.strategies
            .iter()
            .enumerate()
            .find(|(_, (_, s))| *s == StrategyState::Running)
            .map(|(i, (n, _))| (i, n.as_str()))
    }
}

/// Tokens per minute at the end of each of the last `n` seconds of `rows`: what the provider
/// charged against its TPM limit over the 60 s up to then (fewer at the start of the run).
/// `(second, tokens)` pairs, oldest first.
pub fn tokens_per_minute(rows: &[SecondRow], n: usize) -> Vec<(f64, f64)> {
    let first = rows.len().saturating_sub(n);
    (first..rows.len())
        .map(|i| {
            let window = &rows[i.saturating_sub(59)..=i];
            let tokens: u64 = window.iter().map(|r| r.charged).sum();
            (rows[i].second as f64, tokens as f64)
        })
        .collect()
}

fn count(n: u64) -> String {
    match n {
        0..10_000 => n.to_string(),
        10_000..10_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// Draws `board` on `frame`.
pub fn draw(frame: &mut Frame<'_>, board: &Board) {
    let [head, chart, rates, gauges, table, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(8),
        Constraint::Length(5),
        Constraint::Length(3),
        Constraint::Length(board.strategies.len() as u16 + 3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_head(frame, head, board);
    draw_chart(frame, chart, board);
    draw_rates(frame, rates, board);
    draw_gauges(frame, gauges, board);
    draw_table(frame, table, board);
    let mut foot_text = vec![
        Span::styled("q", Style::new().bold()),
        Span::raw(" stop the run and write the report"),
    ];
    if let Some(n) = &board.note {
        foot_text.push(Span::raw(format!("  ·  {n}")));
    }
    frame.render_widget(Paragraph::new(Line::from(foot_text)).dim(), foot);
}

fn draw_head(frame: &mut Frame<'_>, area: Rect, board: &Board) {
    let mut spans = vec![
        Span::styled("orchbench live", Style::new().bold()),
        Span::raw(format!("  {}  against {}", board.scenario, board.target)),
    ];
    if let Some((i, name)) = board.running() {
        spans.push(Span::raw("  ·  "));
        spans.push(Span::styled(name.to_owned(), Style::new().bold().fg(Color::Cyan)));
        spans.push(Span::raw(format!(" [{}/{}]", i + 1, board.strategies.len())));
        if let Some(c) = &board.current {
            spans.push(Span::raw(format!(
                "  scenario time {:.0} s",
                c.snapshot.elapsed.as_secs_f64()
            )));
        }
    }
    if board.stopping {
        spans.push(Span::styled(
            "  stopping: calls in flight are ending",
            Style::new().bold().fg(Color::Yellow),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_chart(frame: &mut Frame<'_>, area: Rect, board: &Board) {
    let rows = board.current.as_ref().map_or(&[][..], |c| &c.seconds[..]);
    let tpm = tokens_per_minute(rows, WINDOW_S);
    // A fixed span, so that a young run does not stretch across the whole width.
    let x1 = tpm.last().map_or(0.0, |p| p.0).max(WINDOW_S as f64);
    let x0 = x1 - WINDOW_S as f64;
    let limit = board.tpm_line(x0, x1);
    let top = tpm.iter().chain(&limit).map(|p| p.1).fold(1.0_f64, f64::max) * 1.15;
    let now = tpm.last().map_or(0.0, |p| p.1);
    let limit_now = rows.last().and_then(|r| board.tpm_at(r.second as f64));
    let title = match limit_now {
        Some(l) => format!(
            " tokens/min {} of TPM {} ({:.0}%) ",
            count(now as u64),
            count(l),
            100.0 * now / l as f64
        ),
        None => format!(" tokens/min {} (no TPM limit) ", count(now as u64)),
    };
    let mut datasets = vec![
        Dataset::default()
            .name("tokens/min (charged, last 60 s)")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(Color::Cyan))
            .data(&tpm),
    ];
    if !limit.is_empty() {
        datasets.push(
            Dataset::default()
                .name("TPM limit")
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(Color::Red))
                .data(&limit),
        );
    }
    let chart = Chart::new(datasets)
        .block(Block::bordered().title(title))
        .x_axis(
            Axis::default()
                .title("scenario s")
                .bounds([x0, x1])
                .labels([format!("{x0:.0}"), format!("{x1:.0}")]),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, top])
                .labels(["0".to_owned(), count(top as u64)]),
        );
    frame.render_widget(chart, area);
}

fn draw_rates(frame: &mut Frame<'_>, area: Rect, board: &Board) {
    let [left, right] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let rows = board.current.as_ref().map_or(&[][..], |c| &c.seconds[..]);
    let shown = &rows[rows.len().saturating_sub(WINDOW_S)..];
    // The current second is still filling: the figure is the last whole one's.
    let last = rows.len().checked_sub(2).map(|i| &rows[i]);
    let requests: Vec<u64> = shown.iter().map(|r| u64::from(r.requests)).collect();
    let throttled: Vec<u64> = shown.iter().map(|r| u64::from(r.throttled)).collect();
    let width = usize::from(left.width.saturating_sub(2));
    let tail = |v: &[u64]| v[v.len().saturating_sub(width)..].to_vec();
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(format!(" requests/s {} ", last.map_or(0, |r| r.requests))))
            .style(Style::new().fg(Color::Green))
            .data(tail(&requests)),
        left,
    );
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(format!(" 429s/s {} ", last.map_or(0, |r| r.throttled))))
            .style(Style::new().fg(Color::Red))
            .data(tail(&throttled)),
        right,
    );
}

fn draw_gauges(frame: &mut Frame<'_>, area: Rect, board: &Board) {
    let [left, right] = Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(area);
    let (in_flight, limit) = board
        .current
        .as_ref()
        .map_or((0, None), |c| (c.snapshot.in_flight, c.snapshot.concurrency_limit));
    let (ratio, label) = match limit {
        Some(l) if l > 0 => (
            (f64::from(in_flight) / f64::from(l)).min(1.0),
            format!("{in_flight} / {l}"),
        ),
        _ => (0.0, format!("{in_flight} (the strategy sets no limit)")),
    };
    frame.render_widget(
        Gauge::default()
            .block(Block::bordered().title(" calls in flight / limit "))
            .gauge_style(Style::new().fg(Color::Blue))
            .ratio(ratio)
            .label(label),
        left,
    );
    // Every file is in the snapshot, with its chunks: the workload's total is theirs.
    let (done, total, files) = match &board.current {
        Some(c) => {
            let n = |s| c.snapshot.files_in(s);
            let done = c.snapshot.chunks_done();
            let total: u64 = c.snapshot.files.iter().map(|f| u64::from(f.chunks)).sum();
            let waiting = n(FileStatus::Pending) + n(FileStatus::Queued);
            // Done always; the other states only when some file is in them.
            let mut parts = vec![format!("{} done", n(FileStatus::Completed))];
            for (k, word) in [
                (n(FileStatus::Failed), "failed"),
                (n(FileStatus::Cancelled), "cancelled"),
                (n(FileStatus::Rejected), "rejected"),
                (n(FileStatus::Admitted), "in progress"),
                (waiting, "to come"),
            ] {
                if k > 0 {
                    parts.push(format!("{k} {word}"));
                }
            }
            (done, total, format!(" files: {} ", parts.join(", ")))
        }
        None => (0, 0, " files ".to_owned()),
    };
    frame.render_widget(
        Gauge::default()
            .block(Block::bordered().title(files))
            .gauge_style(Style::new().fg(Color::Green))
            .ratio((done as f64 / total.max(1) as f64).min(1.0))
            .label(format!("{done} / {total} chunks")),
        right,
    );
}

fn draw_table(frame: &mut Frame<'_>, area: Rect, board: &Board) {
    let header = Row::new([
        "strategy",
        "state",
        "time s",
        "requests",
        "429s",
        "tokens",
        "files done/failed/cancelled",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    let rows = board.strategies.iter().map(|(name, state)| {
        let cells: [String; 6] = match state {
            StrategyState::Waiting => [
                "waiting".into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ],
            StrategyState::Running => match &board.current {
                Some(c) => {
                    let s = &c.snapshot;
                    let n = |st| s.files_in(st);
                    [
                        if board.stopping { "stopping" } else { "running" }.into(),
                        format!("{:.0}", s.elapsed.as_secs_f64()),
                        count(s.requests),
                        count(s.throttled),
                        count(s.tokens_answered),
                        format!(
                            "{}/{}/{}",
                            n(FileStatus::Completed),
                            n(FileStatus::Failed),
                            n(FileStatus::Cancelled)
                        ),
                    ]
                }
                None => [
                    "starting".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
            },
            StrategyState::Done(d) => [
                "done".into(),
                format!("{:.0}", d.makespan_s),
                count(d.requests),
                count(d.throttled),
                count(d.tokens),
                format!("{}/{}/{}", d.files.0, d.files.1, d.files.2),
            ],
        };
        let mut row = vec![Cell::from(name.clone())];
        row.extend(cells.into_iter().map(Cell::from));
        Row::new(row)
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Min(10),
        ],
    )
    .header(header)
    .block(Block::default().borders(Borders::ALL).title(" strategies "));
    frame.render_widget(table, area);
}

struct Shared {
    board: Mutex<Board>,
    /// The run in progress.
    run: Mutex<Option<RunContext>>,
    /// `q` was pressed.
    stop: AtomicBool,
    /// The dashboard is to end.
    done: AtomicBool,
}

impl Shared {
    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().expect("no thread panicked holding the board")
    }

    fn stop_run(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.board().stopping = true;
        if let Some(ctx) = self.run.lock().expect("no thread panicked holding the run").as_ref() {
            ctx.note("stopped from the dashboard (q)");
            ctx.cancel(CancelTarget::Run);
        }
    }
}

/// The dashboard on the terminal: a thread that samples the run, redraws every [`REFRESH`] and
/// reads keys. The terminal is restored by [`Dashboard::finish`] (and on a panic).
pub struct Dashboard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Dashboard {
    /// Takes over the terminal (raw mode, alternate screen) and starts drawing `board`.
    pub fn start(board: Board) -> std::io::Result<Dashboard> {
        let mut terminal = ratatui::try_init()?;
        let shared = Arc::new(Shared {
            board: Mutex::new(board),
            run: Mutex::new(None),
            stop: AtomicBool::new(false),
            done: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::spawn(move || -> std::io::Result<()> {
            while !s.done.load(Ordering::SeqCst) {
                let ctx = s.run.lock().expect("no thread panicked holding the run").clone();
                if let Some(ctx) = ctx {
                    let current = Current {
                        snapshot: ctx.snapshot(),
                        seconds: ctx.recent_seconds(WINDOW_S + 60),
                    };
                    s.board().current = Some(current);
                }
                let board = s.board().clone();
                terminal.draw(|f| draw(f, &board))?;
                if event::poll(REFRESH)?
                    && let Event::Key(k) = event::read()?
                    && k.kind == KeyEventKind::Press
                {
                    let ctrl_c = k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if matches!(k.code, KeyCode::Char('q' | 'Q') | KeyCode::Esc) || ctrl_c {
                        s.stop_run();
                    }
                }
            }
            Ok(())
        });
        Ok(Dashboard {
            shared,
            thread: Some(thread),
        })
    }

    /// Sets the line at the foot (e.g. the control API's address).
    pub fn set_note(&self, note: String) {
        self.shared.board().note = Some(note);
    }

    /// The hook a run calls with its context ([`sim::RunOptions::on_start`]): from then on the
    /// dashboard shows that run of `strategy` (and stops it at once if `q` came first).
    pub fn hook(&self, strategy: &str) -> sim::engine::StartHook {
        let shared = self.shared.clone();
        let name = strategy.to_owned();
        Arc::new(move |ctx: &RunContext| {
            {
                let mut board = shared.board();
                board.current = None;
                for (n, s) in &mut board.strategies {
                    if *n == name {
                        *s = StrategyState::Running;
                    }
                }
            }
            *shared.run.lock().expect("no thread panicked holding the run") = Some(ctx.clone());
            if shared.stop.load(Ordering::SeqCst) {
                shared.stop_run();
            }
        })
    }

    /// `strategy`'s run ended with `report`.
    pub fn finished(&self, strategy: &str, report: &RunReport) {
        *self.shared.run.lock().expect("no thread panicked holding the run") = None;
        let mut board = self.shared.board();
        board.current = None;
        for (n, s) in &mut board.strategies {
            if n == strategy {
                *s = StrategyState::Done(Done::of(report));
            }
        }
    }

    /// Whether `q` was pressed: the strategies not started yet are to be skipped.
    pub fn stop_requested(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }

    /// Stops drawing and gives the terminal back.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.end()
    }

    fn end(&mut self) -> std::io::Result<()> {
        self.shared.done.store(true, Ordering::SeqCst);
        let drawn = match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the dashboard thread panicked"))),
            None => Ok(()),
        };
        ratatui::restore();
        drawn
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use sim::context::{FileProgress, Snapshot};
    use sim::scenario::{FileId, UserId};

    fn row(second: u64, requests: u32, throttled: u32, charged: u64) -> SecondRow {
        SecondRow {
            second,
            requests,
            throttled,
            charged,
            ..SecondRow::default()
        }
    }

    fn text(board: &Board, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).expect("a test terminal");
        t.draw(|f| draw(f, board)).expect("draws");
        let buf = t.backend().buffer().clone();
        (0..h)
            .map(|y| (0..w).map(|x| buf[(x, y)].symbol().to_owned()).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    const SCENARIO: &str = r#"
name = "dash"
seed = 7
[workload]
files = 4
users = 1
chunks_per_file = { dist = "fixed", value = 5 }
prompt_tokens = { dist = "fixed", value = 300 }
completion_tokens = { dist = "fixed", value = 50 }
max_tokens = 60
arrival = { kind = "all-at-once" }
[provider]
tpm = 60000
[[timeline]]
at = "90s"
limits = { tpm = 30000 }
"#;

    #[test]
    fn tokens_per_minute_sums_the_last_sixty_seconds_charged() {
        let rows: Vec<SecondRow> = (0..100).map(|s| row(s, 1, 0, 100)).collect();
        let tpm = tokens_per_minute(&rows, 50);
        assert_eq!(tpm.len(), 50);
        // Second 50 sums seconds 0..=50 (51 of them); from second 59 on, always 60 of them.
        assert_eq!(tpm[0], (50.0, 5100.0));
        assert_eq!(tpm[49], (99.0, 6000.0));
    }

    #[test]
    fn the_tpm_line_follows_the_timeline_limit_changes() {
        let s = Scenario::parse(SCENARIO, "dash").expect("valid");
        let board = Board::new(&s, &["fixed"], "the bundled mock".into());
        assert_eq!(board.tpm_at(0.0), Some(60_000));
        assert_eq!(board.tpm_at(89.9), Some(60_000));
        assert_eq!(board.tpm_at(90.0), Some(30_000));
        // The line spans the whole window, stepping down at 90 s.
        assert_eq!(
            board.tpm_line(0.0, 120.0),
            vec![(0.0, 60e3), (90.0, 60e3), (90.0, 30e3), (120.0, 30e3)]
        );
        assert_eq!(board.tpm_line(100.0, 220.0), vec![(100.0, 30e3), (220.0, 30e3)]);
    }

    #[test]
    fn a_frame_shows_tokens_against_the_limit_rates_in_flight_files_and_every_strategy() {
        let s = Scenario::parse(SCENARIO, "dash").expect("valid");
        let mut board = Board::new(&s, &["fixed", "adaptive", "sqs"], "the bundled mock".into());
        board.strategies[0].1 = StrategyState::Done(Done {
            makespan_s: 321.0,
            requests: 400,
            throttled: 17,
            tokens: 123_456,
            files: (3, 1, 0),
        });
        board.strategies[1].1 = StrategyState::Running;
        let file = |i: u32, status, done| FileProgress {
            file: FileId(i),
            user: UserId(0),
            status,
            chunks: 5,
            done,
            failed: 0,
            in_flight: 0,
            requests: 0,
            throttled: 0,
            tokens: 0,
            elapsed: Duration::ZERO,
        };
        board.current = Some(Current {
            snapshot: Snapshot {
                elapsed: Duration::from_secs(95),
                requests: 250,
                throttled: 9,
                tokens_answered: 80_000,
                in_flight: 6,
                concurrency_limit: Some(8),
                files: vec![
                    file(0, FileStatus::Completed, 5),
                    file(1, FileStatus::Admitted, 2),
                    file(2, FileStatus::Failed, 4),
                    file(3, FileStatus::Pending, 0),
                ],
                users: vec![],
            },
            // 95 seconds, each with 3 requests, one 429 and 500 tokens charged: 30k per minute.
            seconds: (0..96).map(|s| row(s, 3, 1, 500)).collect(),
        });
        let screen = text(&board, 110, 34);
        for expected in [
            "orchbench live",
            "dash (seed 7)",
            "adaptive [2/3]",
            "scenario time 95 s",
            // At second 95 the limit is the timeline's 30k, and 60 s of 500 tokens meet it.
            "tokens/min 30.0k of TPM 30.0k (100%)",
            "requests/s 3",
            "429s/s 1",
            "6 / 8",
            "11 / 20 chunks",
            "files: 1 done, 1 failed, 1 in progress, 1 to come",
            "321",
            "123.5k",
            "3/1/0",
            "waiting",
            "stop the run and write the report",
        ] {
            assert!(screen.contains(expected), "{expected:?} not on screen:\n{screen}");
        }
        // The running strategy's row shows the live figures.
        let adaptive = screen
            .lines()
            .find(|l| l.contains("adaptive") && l.contains("running"))
            .expect("its row");
        assert!(adaptive.contains("250") && adaptive.contains("80.0k"), "{adaptive}");
    }

    #[test]
    fn a_stopping_run_says_so() {
        let s = Scenario::parse(SCENARIO, "dash").expect("valid");
        let mut board = Board::new(&s, &["fixed"], "x".into());
        board.strategies[0].1 = StrategyState::Running;
        board.stopping = true;
        let screen = text(&board, 100, 30);
        assert!(screen.contains("stopping: calls in flight are ending"), "{screen}");
    }
}
