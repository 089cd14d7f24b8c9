//! The command line: argument definitions (clap) and the commands behind them. `main.rs` only
//! parses and calls [`execute`], so every command runs in-process in tests.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::control::ControlConfig;
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sim::{Progress, ReportFile, RunOptions, Scenario};

use crate::builtin;

/// Benchmark orchestration strategies for rate-limited LLM batch work.
///
/// orchbench runs one file-validation workload (files split into chunks, one chat-completion call
/// per chunk) under several orchestration strategies against a provider that enforces OpenAI's
/// TPM/RPM limits, and reports throughput, 429s, retries, wasted tokens, cancellation latency and
/// efficiency side by side. Runs are simulated in virtual time: an hour of traffic in well under a
/// second, reproducible from a seed.
#[derive(Debug, Parser)]
#[command(name = "orchbench", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario under strategies and write a report folder.
    ///
    /// Prints a comparison table (or the report as JSON with --json) and writes the report folder
    /// OUT: report.json, timeseries.csv, report.md and report.html.
    Run(RunArgs),
    /// Run a scenario once per value of one parameter, and write one report for all of them.
    ///
    /// Shows how throughput, 429s and makespan move with, e.g., max-parallelism.
    Sweep(SweepArgs),
    /// Rebuild a report folder (report.html, report.md, timeseries.csv) from its report.json
    /// (given the folder or the file).
    Report(ReportArgs),
    /// Compare a report against a baseline; exit 1 if a watched metric got worse.
    ///
    /// Both reports must be of the same scenario and seed. Runs are matched by strategy. Exit
    /// status: 0 when nothing regressed, 1 when a watched metric got worse by more than
    /// --max-drop (or a run is missing), 2 when the reports cannot be compared.
    Regress(RegressArgs),
    /// Serve the mock OpenAI-compatible API (the same as the `mock-llm` binary).
    ///
    /// Enforces TPM/RPM the way OpenAI (or Azure) does, with configurable latency and faults; see
    /// --help for every setting. Stops on SIGINT or SIGTERM.
    MockLlm(mock_llm::server::cli::Args),
    /// Amazon States Language tools: `asl check DEF.json`.
    #[command(subcommand)]
    Asl(AslCommand),
    /// List the built-in scenarios.
    Scenarios,
    /// List the strategies.
    Strategies,
}

/// Arguments of `orchbench run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A scenario file (TOML), or the name of a built-in scenario (see `orchbench scenarios`).
    #[arg(default_value = "baseline")]
    pub scenario: String,
    /// Run only this strategy; repeat for several. Default: every strategy.
    #[arg(long = "strategy", short = 's', value_name = "NAME")]
    pub strategies: Vec<String>,
    /// Override the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The report folder. Default: out/SCENARIO-NAME (out/SCENARIO-NAME-sweep-PARAM for a sweep).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Run in real time over real HTTP instead of simulated time. Without --endpoint, a mock
    /// server with the scenario's provider settings is started in-process on 127.0.0.1.
    #[arg(long)]
    pub live: bool,
    /// With --live: an OpenAI-compatible API base, e.g. `https://api.openai.com/v1`.
    #[arg(long, value_name = "URL", requires = "live")]
    pub endpoint: Option<String>,
    /// With --live: the environment variable holding the API key.
    #[arg(long, value_name = "VAR", requires = "live")]
    pub api_key_env: Option<String>,
    /// With --live: a PEM file of extra root certificates to trust (an endpoint with a private or
    /// self-signed certificate).
    #[arg(long, value_name = "FILE", requires = "live")]
    pub ca_cert: Option<PathBuf>,
    /// With --live: run the scenario K times faster (every duration divided by K), so an hour-long
    /// scenario can be checked live in minutes. Reports stay in scenario time.
    #[arg(long, value_name = "K", requires = "live", default_value_t = 1.0)]
    pub time_scale: f64,
    /// Keep a durable result journal in FILE (one strategy only): every validated chunk is
    /// appended before it counts, and a rerun with the same journal resumes, sending no stored
    /// chunk again. A damaged last record is reported and ignored; any other damage, or a journal
    /// of another scenario or seed, is an error. See README, "Durable result journal".
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// With --live: serve the control API on ADDR (e.g. 127.0.0.1:7070): GET /progress,
    /// GET|POST /params, POST /cancel, GET /events (server-sent events). See README, "Control API".
    #[arg(long, value_name = "ADDR", requires = "live")]
    pub control: Option<std::net::SocketAddr>,
    /// The token the control API requires on every request (`Authorization: Bearer TOKEN`);
    /// needed when --control is not a loopback address.
    #[arg(long, value_name = "TOKEN", requires = "control")]
    pub control_token: Option<String>,
    /// With --live: no full-screen dashboard, even on a terminal (the progress bar instead).
    /// Without a terminal on stdout there is none anyway.
    #[arg(long, requires = "live")]
    pub no_tui: bool,
}

/// Arguments of `orchbench sweep`: those of `run`, and what to vary.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// The parameter to vary: max-parallelism, target-tpm, throttle-threshold, tpm or rpm.
    #[arg(long)]
    pub param: String,
    /// Its values, comma-separated (e.g. 1,2,4,8,16).
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    pub values: Vec<f64>,
    /// Scenario, strategies, seed and output, as for `run`.
    #[command(flatten)]
    pub run: RunArgs,
}

/// `orchbench asl …`.
#[derive(Debug, clap::Subcommand)]
pub enum AslCommand {
    /// Validate a state machine definition (ASL JSON) before any run.
    ///
    /// Lists every problem with the JSON path of the offending value. Exit status: 0 when the
    /// definition is valid, 1 when it has problems, 2 when the file cannot be read.
    Check {
        /// The definition, a JSON file.
        definition: PathBuf,
    },
    /// Dry-run a state machine in simulated time, with scripted task outcomes.
    ///
    /// Prints the output (or the error and cause), the simulated elapsed time and the execution
    /// history. Exit status: 0 when the execution succeeded, 1 when it failed, 2 when it cannot
    /// run (unreadable files, a definition with problems, a bad script).
    Run {
        /// The definition, a JSON file.
        definition: PathBuf,
        /// The execution's input, a JSON file. Default `{}`.
        #[arg(long)]
        input: Option<PathBuf>,
        /// A task resource's outcomes, `ARN=OUTCOME[;OUTCOME…]`, one per call, the last repeating;
        /// repeat the flag for other resources. OUTCOME: a JSON value, `echo`, or
        /// `error:NAME[:CAUSE]`, each optionally after `delay:DURATION:` (e.g.
        /// `delay:2s:{"ok":true}`). Unscripted resources echo their input at once.
        #[arg(long = "script", value_name = "ARN=OUTCOMES")]
        scripts: Vec<String>,
        /// Seeds States.MathRandom, States.UUID and retry jitter. Default 0.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Redrive a failed execution up to this many times (AWS RedriveExecution: from the
        /// failed state, a failed Map rerunning only its unsuccessful iterations). Default 0.
        #[arg(long, default_value_t = 0)]
        redrive: u32,
        /// Print one JSON object: status, output, error, cause, elapsed_s, history.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `orchbench report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A report folder holding report.json (as written by `orchbench run`).
    pub dir: PathBuf,
}

/// Arguments of `orchbench regress`.
#[derive(Debug, clap::Args)]
pub struct RegressArgs {
    /// The baseline report.json, or its report folder (e.g. from the main branch).
    pub baseline: PathBuf,
    /// The report.json to check, or its report folder.
    pub current: PathBuf,
    /// How much worse a metric may get, relative to the baseline: `5%` or `0.05`.
    #[arg(long, default_value = "5%", value_parser = reports::regress::parse_tolerance)]
    pub max_drop: f64,
    /// A metric to watch; repeat for several. Default: throughput, efficiency, makespan, 429s,
    /// cancel-latency. Also: recovery, backlog, files-completed, tokens-wasted, p99-latency, cost.
    #[arg(long = "metric", value_name = "NAME")]
    pub metrics: Vec<String>,
}

/// Runs a parsed command line, writing to `out`. Returns the process exit code.
pub fn execute(cli: Cli, out: &mut dyn Write) -> anyhow::Result<u8> {
    match cli.command {
        Command::Run(args) => run(&args, out),
        Command::MockLlm(args) => {
            mock_llm::server::cli::run_blocking(&args, out)?;
            Ok(0)
        }
        Command::Sweep(args) => sweep(&args, out),
        Command::Regress(args) => {
            let baseline = reports::read_json(&args.baseline)?;
            let current = reports::read_json(&args.current)?;
            let cmp = reports::regress::compare(&baseline, &current, &args.metrics, args.max_drop)?;
            out.write_all(reports::regress::table(&cmp, args.max_drop).as_bytes())?;
            if cmp.failed() {
                writeln!(out, "\nregression: see the rows marked REGRESSED or MISSING")?;
                Ok(1)
            } else {
                writeln!(out, "\nno regression beyond {:.1}%", args.max_drop * 100.0)?;
                Ok(0)
            }
        }
        Command::Report(args) => {
            let w = reports::rebuild_dir(&args.dir)?;
            writeln!(
                out,
                "wrote {}, {} and {}",
                w.html.display(),
                w.markdown.display(),
                w.csv.display()
            )?;
            Ok(0)
        }
        Command::Asl(AslCommand::Check { definition }) => {
            let text = std::fs::read_to_string(&definition)
                .with_context(|| format!("cannot read {}", definition.display()))?;
            let problems = strategies::asl::check_text(&text);
            if problems.is_empty() {
                writeln!(out, "{}: a valid state machine", definition.display())?;
                Ok(0)
            } else {
                for p in &problems {
                    writeln!(out, "{}: {p}", definition.display())?;
                }
                writeln!(out, "{} problem(s)", problems.len())?;
                Ok(1)
            }
        }
        Command::Asl(AslCommand::Run {
            definition,
            input,
            scripts,
            seed,
            redrive,
            json,
        }) => asl_run(&definition, input.as_deref(), &scripts, seed, redrive, json, out),
        Command::Scenarios => {
            for (name, text) in builtin::BUILTIN {
                let s = Scenario::parse(text, &format!("built-in {name}")).context("a built-in scenario is invalid")?;
                writeln!(out, "{name:<14} {}", s.description)?;
            }
            Ok(0)
        }
        Command::Strategies => {
            let s = Scenario::parse(
                builtin::get("baseline").expect("baseline is built in"),
                "built-in baseline",
            )?;
            for strategy in strategies::all(&s)? {
                writeln!(out, "{:<10} {}", strategy.name(), strategy.describe())?;
            }
            Ok(0)
        }
    }
}

/// `orchbench asl run`.
fn asl_run(
    definition: &Path,
    input: Option<&Path>,
    scripts: &[String],
    seed: u64,
    redrives: u32,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let read_json = |path: &Path| -> anyhow::Result<serde_json::Value> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
    };
    let def = read_json(definition)?;
    let problems = strategies::asl::check(&def);
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
        bail!("{} does not check:\n{}", definition.display(), list.join("\n"));
    }
    let input = match input {
        Some(p) => read_json(p)?,
        None => serde_json::json!({}),
    };
    let mut runner = strategies::asl::script::ScriptedRunner::new();
    for s in scripts {
        runner.add(s).map_err(|e| anyhow::anyhow!("--script {e}"))?;
    }
    let options = strategies::asl::exec::Options {
        machine_name: definition
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("orchbench")
            .trim_end_matches(".asl")
            .to_owned(),
        seed,
        ..strategies::asl::exec::Options::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let (outcome, redriven) = rt.block_on(async {
        use strategies::asl::exec;
        let mut outcome = exec::run_checked(&def, input, &runner, &options).await;
        let mut redriven = 0;
        while redriven < redrives {
            let Some(from) = outcome.redrive.clone() else { break };
            let next = exec::redrive(&def, from, &runner, &options, &stop).await;
            // One execution, one history: the redrive's events follow the failed run's.
            let mut history = std::mem::take(&mut outcome.history);
            history.extend(next.history.iter().cloned());
            let elapsed_s = outcome.elapsed_s + next.elapsed_s;
            outcome = exec::Outcome {
                history,
                elapsed_s,
                ..next
            };
            redriven += 1;
        }
        (outcome, redriven)
    });
    if json {
        let mut v = serde_json::to_value(&outcome)?;
        v["redrive_count"] = serde_json::json!(redriven);
        writeln!(out, "{v}")?;
    } else {
        match (&outcome.output, &outcome.error) {
            (Some(o), _) => writeln!(out, "SUCCEEDED after {} s\noutput: {o}", outcome.elapsed_s)?,
            (None, e) => writeln!(
                out,
                "FAILED after {} s\nerror: {}\ncause: {}",
                outcome.elapsed_s,
                e.as_deref().unwrap_or(""),
                outcome.cause.as_deref().unwrap_or("")
            )?,
        }
        writeln!(out, "history ({} events):", outcome.history.len())?;
        for e in &outcome.history {
            let details = serde_json::Value::Object(e.details.clone());
            let details = if e.details.is_empty() {
                String::new()
            } else {
                format!(" {details}")
            };
            writeln!(
                out,
                "  {:>4} {:>8.3}s {}{details}",
                e.id,
                e.timestamp_ms as f64 / 1000.0,
                e.kind
            )?;
        }
    }
    Ok(if outcome.status == "SUCCEEDED" { 0 } else { 1 })
}

/// Loads a scenario by path or built-in name.
pub fn load_scenario(spec: &str) -> anyhow::Result<Scenario> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok(Scenario::load(path)?);
    }
    match builtin::get(spec) {
        Some(text) => Ok(Scenario::parse(text, &format!("built-in {spec}"))?),
        None => {
            let names: Vec<&str> = builtin::BUILTIN.iter().map(|(n, _)| *n).collect();
            bail!(
                "no scenario file `{spec}`, and no built-in scenario of that name (built-ins: {})",
                names.join(", ")
            )
        }
    }
}

/// Runs `scenario` under the named strategies (all when empty) in simulated time, with an optional
/// progress bar, and returns the report.
pub fn run_scenario(scenario: &Scenario, names: &[String], show_progress: bool) -> anyhow::Result<ReportFile> {
    run_simulated(scenario, names, show_progress, None)
}

/// The result journal of a run, shared with the engine.
type SharedJournal = std::sync::Arc<std::sync::Mutex<sim::journal::Journal>>;

fn run_simulated(
    scenario: &Scenario,
    names: &[String],
    show_progress: bool,
    journal: Option<SharedJournal>,
) -> anyhow::Result<ReportFile> {
    let list = select(scenario, names)?;
    let mut runs = Vec::with_capacity(list.len());
    for strategy in list {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
        let opts = RunOptions {
            time_scale: 1.0,
            progress: show_progress.then(|| progress_callback(&bar, strategy.name())),
            trace: false,
            journal: journal.clone(),
            on_start: None,
        };
        let started = Instant::now();
        let mut report = strategies::simulate(strategy.as_ref(), scenario, &opts)
            .with_context(|| format!("strategy `{}` on scenario `{}`", strategy.name(), scenario.name))?;
        bar.finish_and_clear();
        report.summary.wall_time_s = sim::report::round6(started.elapsed().as_secs_f64());
        runs.push(report);
    }
    Ok(report_of(scenario, runs))
}

/// The named strategies (all when none are named), with their settings from the scenario.
fn select(scenario: &Scenario, names: &[String]) -> anyhow::Result<Vec<Box<dyn strategies::Strategy>>> {
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            bail!("--strategy {name} is named twice; each strategy runs once");
        }
    }
    Ok(if names.is_empty() {
        strategies::all(scenario)?
    } else {
        names
            .iter()
            .map(|n| strategies::build(n, scenario))
            .collect::<Result<Vec<_>, _>>()?
    })
}

/// A report of `runs` of `scenario`.
fn report_of(scenario: &Scenario, runs: Vec<sim::RunReport>) -> ReportFile {
    ReportFile {
        schema_version: sim::report::SCHEMA_VERSION,
        scenario: sim::ScenarioInfo::of(scenario),
        runs,
        sweep: None,
    }
}

/// A progress callback that shows `bar` on stderr once a run has taken more than a moment.
fn progress_callback(bar: &ProgressBar, name: &str) -> sim::ProgressFn {
    let bar = bar.clone();
    let started = Instant::now();
    let name = name.to_owned();
    Arc::new(move |p: Progress| {
        if bar.is_hidden() && started.elapsed().as_millis() > 300 {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar.set_length(p.chunks_total);
            bar.set_style(
                ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} chunks  sim {msg}  {elapsed}")
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            bar.set_prefix(name.clone());
        }
        bar.set_position(p.chunks_done);
        bar.set_message(format!("{}s", p.elapsed.as_secs()));
    })
}

/// Runs `scenario` once per value of `param`, under the named strategies.
pub fn run_sweep(
    scenario: &Scenario,
    param: &str,
    values: &[f64],
    names: &[String],
    show_progress: bool,
) -> anyhow::Result<ReportFile> {
    let mut runs = Vec::new();
    for &v in values {
        let s = scenario.with_param(param, v)?;
        for mut r in run_scenario(&s, names, show_progress)?.runs {
            r.sweep_value = Some(v);
            runs.push(r);
        }
    }
    Ok(ReportFile {
        schema_version: sim::report::SCHEMA_VERSION,
        scenario: sim::ScenarioInfo::of(scenario),
        runs,
        sweep: Some(sim::report::SweepInfo {
            param: param.to_owned(),
            values: values.to_vec(),
        }),
    })
}

fn sweep(args: &SweepArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    if args.run.journal.is_some() {
        bail!("--journal keeps one run's results, and a sweep makes several: drop --journal");
    }
    let scenario = args.run.scenario()?;
    let report = run_sweep(
        &scenario,
        &args.param,
        &args.values,
        &args.run.strategies,
        show_progress(),
    )?;
    let name = format!("{}-sweep-{}", scenario.name, args.param);
    let dir = args.run.out.clone().unwrap_or_else(|| PathBuf::from("out").join(name));
    let code = write_and_print(&report, &dir, args.run.json, out)?;
    if !args.run.json {
        for line in reports::markdown::sweep_inert(&report) {
            writeln!(out, "{}", line.replace("**", ""))?;
        }
    }
    Ok(code)
}

impl RunArgs {
    /// The scenario, with the seed override applied.
    fn scenario(&self) -> anyhow::Result<Scenario> {
        let mut scenario = load_scenario(&self.scenario)?;
        if let Some(seed) = self.seed {
            scenario.seed = seed;
        }
        Ok(scenario)
    }
}

/// Progress bars (on stderr) only when a person is watching it.
fn show_progress() -> bool {
    std::io::stderr().is_terminal()
}

fn write_and_print(report: &ReportFile, dir: &Path, json: bool, out: &mut dyn Write) -> anyhow::Result<u8> {
    let written = reports::write_dir(dir, report)?;
    if json {
        out.write_all(reports::to_json(report).as_bytes())?;
        return Ok(0);
    }
    let info = &report.scenario;
    writeln!(
        out,
        "scenario {} (seed {}): {} files, {} chunks, {} users; TPM {}, RPM {}",
        info.name,
        info.seed,
        info.files,
        info.chunks_total,
        info.users,
        info.tpm.map_or("none".into(), |t| t.to_string()),
        info.rpm.map_or("none".into(), |r| r.to_string()),
    )?;
    writeln!(out)?;
    out.write_all(reports::table::comparison(report).as_bytes())?;
    for line in reports::markdown::transport_warnings(report) {
        writeln!(out, "warning: {}", line.replace("**", ""))?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "wrote {} (open in a browser), {}, {} and {}",
        written.html.display(),
        written.markdown.display(),
        written.json.display(),
        written.csv.display()
    )?;
    Ok(0)
}

fn run(args: &RunArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let scenario = args.scenario()?;
    let live = Live::from_args(args)?;
    let journal = match &args.journal {
        None => None,
        Some(path) => {
            if args.strategies.len() != 1 {
                bail!("--journal keeps one run's results: name exactly one --strategy");
            }
            // Checked (and strategies checked) before a damaged journal is cut.
            select(&scenario, &args.strategies)?;
            let j = sim::journal::Journal::open(path, &scenario)?;
            let r = j.recovered();
            if !r.entries.is_empty() || r.damage.is_some() {
                let damage = r.damage.map(|d| format!("; {d}")).unwrap_or_default();
                eprintln!(
                    "journal {}: resuming from {} stored results{damage}",
                    path.display(),
                    r.entries.len()
                );
            }
            Some(std::sync::Arc::new(std::sync::Mutex::new(j)))
        }
    };
    let report = match live {
        Some(live) => {
            let control = args.control.map(|addr| ControlConfig {
                addr,
                token: args.control_token.clone(),
            });
            // The dashboard when a person is watching stdout; it shows the control API's address.
            let view = View::for_terminals(!args.no_tui);
            let announce = move |addr: std::net::SocketAddr| {
                if view != View::Dashboard {
                    eprintln!("control API on http://{addr}");
                }
            };
            run_live(
                &scenario,
                &args.strategies,
                &live,
                journal,
                control
                    .as_ref()
                    .map(|c| (c, Box::new(announce) as Box<dyn FnOnce(std::net::SocketAddr)>)),
                view,
            )?
        }
        None => run_simulated(&scenario, &args.strategies, show_progress(), journal)?,
    };
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(&scenario.name));
    write_and_print(&report, &dir, args.json, out)
}

/// How a live run reaches its LLM.
#[derive(Clone, Debug)]
pub struct Live {
    /// An OpenAI-compatible API base; `None` starts the bundled mock in-process.
    pub endpoint: Option<String>,
    /// The API key, if any.
    pub api_key: Option<String>,
    /// Time scale K (> 0).
    pub time_scale: f64,
    /// Extra root certificates (PEM) to trust.
    pub extra_root_pem: Option<Vec<u8>>,
}

impl Live {
    fn from_args(args: &RunArgs) -> anyhow::Result<Option<Live>> {
        if !args.live {
            return Ok(None);
        }
        // Beyond 1,000 a simulated millisecond is a real microsecond, below the resolution of any
        // timer a live run sleeps on; the bound also keeps every scaled duration finite.
        if !(args.time_scale.is_finite() && (0.001..=1000.0).contains(&args.time_scale)) {
            anyhow::bail!("--time-scale must lie in [0.001, 1000], not {}", args.time_scale);
        }
        let api_key = match &args.api_key_env {
            Some(var) => {
                Some(std::env::var(var).with_context(|| format!("--api-key-env {var}: the variable is not set"))?)
            }
            None => None,
        };
        let extra_root_pem = match &args.ca_cert {
            Some(p) => {
                let pem = std::fs::read(p).with_context(|| format!("--ca-cert {}", p.display()))?;
                // A file with no PEM certificate would otherwise add nothing, silently.
                if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                    anyhow::bail!(
                        "--ca-cert {}: no certificate in it (a PEM file with `-----BEGIN CERTIFICATE-----` blocks is expected)",
                        p.display()
                    );
                }
                Some(pem)
            }
            None => None,
        };
        Ok(Some(Live {
            endpoint: args.endpoint.clone(),
            api_key,
            time_scale: args.time_scale,
            extra_root_pem,
        }))
    }
}

/// Runs `scenario` under the named strategies live: real time (divided by the time scale), real
/// HTTP, against `live.endpoint` or a fresh in-process mock per strategy.
pub fn run_scenario_live(scenario: &Scenario, names: &[String], live: &Live) -> anyhow::Result<ReportFile> {
    run_live(scenario, names, live, None, None, View::for_terminals(false))
}

/// What a live run shows while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum View {
    /// Nothing (no terminal).
    Quiet,
    /// The progress bar on stderr.
    ProgressBar,
    /// The full-screen dashboard ([`crate::dashboard`]).
    Dashboard,
}

impl View {
    /// What the terminals allow: the dashboard (when `dashboard` and stdout is a terminal), else
    /// the progress bar (when stderr is one), else nothing.
    fn for_terminals(dashboard: bool) -> View {
        if dashboard && std::io::stdout().is_terminal() {
            View::Dashboard
        } else if show_progress() {
            View::ProgressBar
        } else {
            View::Quiet
        }
    }
}

/// [`run_scenario_live`] with the control API ([`crate::control`]) on `control.addr`; `bound`
/// is told the address it listens on before the first run starts.
pub fn run_scenario_controlled(
    scenario: &Scenario,
    names: &[String],
    live: &Live,
    control: &ControlConfig,
    bound: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<ReportFile> {
    run_live(
        scenario,
        names,
        live,
        None,
        Some((control, Box::new(bound))),
        View::Quiet,
    )
}

/// The control API's settings, and whom to tell its address.
type ControlWith<'a> = (&'a ControlConfig, Box<dyn FnOnce(std::net::SocketAddr) + 'a>);

fn run_live(
    scenario: &Scenario,
    names: &[String],
    live: &Live,
    journal: Option<SharedJournal>,
    control: Option<ControlWith<'_>>,
    view: View,
) -> anyhow::Result<ReportFile> {
    let list = select(scenario, names)?;
    let dashboard = match view {
        View::Dashboard => {
            let target = format!(
                "{}{}",
                live.endpoint.as_deref().unwrap_or("the bundled mock"),
                if live.time_scale == 1.0 {
                    String::new()
                } else {
                    format!(", {}x time", live.time_scale)
                }
            );
            let names: Vec<&str> = list.iter().map(|s| s.name()).collect();
            let board = crate::dashboard::Board::new(scenario, &names, target);
            Some(crate::dashboard::Dashboard::start(board).context("cannot start the dashboard (try --no-tui)")?)
        }
        _ => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let control = match control {
        Some((config, bound)) => {
            let c = rt.block_on(crate::control::Control::start(config, scenario))?;
            bound(c.addr);
            if let Some(d) = &dashboard {
                d.set_note(format!("control API on http://{}", c.addr));
            }
            Some(c)
        }
        None => None,
    };
    let mut runs = Vec::with_capacity(list.len());
    for strategy in &list {
        if dashboard.as_ref().is_some_and(|d| d.stop_requested()) {
            break; // `q`: the strategies not started are skipped
        }
        let started = Instant::now();
        // The same progress bar as a simulated run's, when a person is watching.
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
        let progress = (view == View::ProgressBar).then(|| progress_callback(&bar, strategy.name()));
        let hooks: Vec<sim::engine::StartHook> = control
            .iter()
            .map(|c| c.hook(strategy.name()))
            .chain(dashboard.iter().map(|d| d.hook(strategy.name())))
            .collect();
        let on_start: Option<sim::engine::StartHook> =
            (!hooks.is_empty()).then(|| Arc::new(move |ctx: &sim::RunContext| hooks.iter().for_each(|h| h(ctx))) as _);
        let mut report = rt.block_on(async {
            let mut provider = scenario.provider_config();
            provider.time_scale = live.time_scale;
            let (base_url, server) = match &live.endpoint {
                Some(url) => (url.clone(), None),
                None => {
                    let s =
                        mock_llm::server::start(mock_llm::server::ServerConfig::new(provider), "127.0.0.1:0").await?;
                    (format!("{}/v1", s.url()), Some(s))
                }
            };
            let backend = std::sync::Arc::new(sim::http::HttpBackend::new(sim::http::HttpConfig {
                base_url,
                api_key: live.api_key.clone(),
                model: scenario.provider.model.clone(),
                timeout: scenario.client.request_timeout.0.div_f64(live.time_scale),
                stream: scenario.client.stream,
                extra_root_pem: live.extra_root_pem.clone(),
                time_scale: live.time_scale,
            })?);
            if let Err(cause) = backend.preflight().await {
                anyhow::bail!(
                    "cannot reach the endpoint {base}: {cause}",
                    base = live.endpoint.as_deref().unwrap_or("(the bundled mock)")
                );
            }
            let run = |ctx: sim::RunContext| -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>> {
                strategy.run(ctx)
            };
            let opts = RunOptions {
                progress,
                time_scale: live.time_scale,
                trace: false,
                journal: journal.clone(),
                on_start: on_start.clone(),
            };
            let start = tokio::time::Instant::now();
            let mut report = sim::execute(
                scenario,
                strategy.name(),
                sim::Mode::Live,
                backend.clone(),
                start,
                &run,
                &opts,
            )
            .await;
            if let (Ok(r), Some(o)) = (&mut report, backend.overhead()) {
                r.summary.transport = Some(o.transport(live.time_scale, r.summary.latency_ms.p50));
            }
            if let Some(s) = server {
                s.stop().await?;
            }
            anyhow::Ok(report?)
        })?;
        bar.finish_and_clear();
        report.summary.wall_time_s = sim::report::round6(started.elapsed().as_secs_f64());
        if let Some(d) = &dashboard {
            d.finished(strategy.name(), &report);
        }
        runs.push(report);
    }
    if let Some(c) = control {
        rt.block_on(c.stop());
    }
    if let Some(d) = dashboard {
        let stopped = d.stop_requested();
        if let Err(e) = d.finish() {
            eprintln!("warning: the dashboard could not draw: {e}");
        }
        if stopped {
            eprintln!(
                "stopped from the dashboard (q): {} of {} strategies ran; the report covers what they did",
                runs.len(),
                list.len()
            );
        }
    }
    Ok(report_of(scenario, runs))
}
