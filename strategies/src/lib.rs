//! Orchestration strategies, each behind the one [`Strategy`] trait, and the functions that run
//! them through a scenario.
//!
//! Start at [`Strategy`] and [`simulate`]; [`build`] makes a strategy by name with its settings
//! from the scenario's `[strategies.NAME]` table.
//!
//! - [`fixed`]: a fixed worker pool with exponential backoff (the baseline most teams write);
//! - [`cookbook`]: the OpenAI cookbook's parallel processor, the reference to beat;
//! - [`adaptive`]: fan-out under a feedback controller (a header-learning token pacer, or AIMD);
//! - [`asl`]: the Amazon States Language: checker and interpreter;
//! - [`stepfn`]: Step Functions executions of an ASL definition over simulated Lambda;
//! - [`sqs`]: SQS choreography: a message per chunk, Lambda validators behind an event source
//!   mapping, results and counters in a table;
//! - [`aws`]: the simulated AWS services (Lambda, SQS, DynamoDB) the serverless designs share;
//! - `kit` (feature `kit`): the testing kit: generated cases, the invariants every strategy owes,
//!   and `kit::check_strategy` for your own strategy's tests;
//! - [`retry`]: backoff policies shared by strategies;
//! - [`error`]: the error type, [`StrategyError`].
//!
//! Each strategy lives in a folder with the same shape: `mod.rs` (the strategy and its run loop)
//! and `config.rs` (its `[strategies.NAME]` settings).

#![warn(missing_docs)]

pub mod adaptive;
pub mod asl;
pub mod aws;
pub mod cookbook;
pub mod error;
pub mod fixed;
#[cfg(feature = "kit")]
pub mod kit;
pub mod range;
pub mod retry;
pub mod sqs;
pub mod stepfn;

use std::future::Future;
use std::pin::Pin;

use serde::de::DeserializeOwned;
use sim::{RunContext, RunOptions, RunReport, Scenario, SimError};

pub use error::StrategyError;

/// The future a strategy's run returns.
pub type BoxRun = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// An orchestration strategy.
///
/// `run` takes files from [`RunContext::next_file`] until it returns `None`, validates their chunks
/// with [`RunContext::call`], reports each chunk with [`RunContext::chunk_done`], and returns when
/// all its work has ended. It spawns tasks only with [`RunContext::spawn`], so that a crash can
/// abort them (and a panic in one ends the run with an error). After a crash, `run` is called
/// again and the feed hands out the unfinished files with only the chunks that have no stored
/// result.
///
/// What else the engine offers a design, so that none bends the context its own way:
/// - [`RunContext::redrive`] reopens a failed file with only its unfinished chunks;
/// - [`RunContext::wait_final`] and [`RunContext::all_final`] wait without polling (a task that
///   spins on `is_final` stops paused time);
/// - [`RunContext::durable`] holds state that survives a crash (what AWS services keep);
/// - [`RunContext::rng`] gives a seeded generator per purpose (`rand_core::RngCore`);
/// - [`RunContext::add_metric`], [`RunContext::gauge`] and [`RunContext::artifact`] put the
///   strategy's own figures, per-second gauges and JSON Lines artifacts in the report;
/// - `ctx.params().setting("NAME.key")` reads a setting the timeline or a sweep changes live
///   (declare it in [`live_settings`]);
/// - [`retry::Backoff`] decides retries for any error with a hint, not only LLM calls.
pub trait Strategy: Send + Sync {
    /// Its name, as given to `--strategy`.
    fn name(&self) -> &str;
    /// One line on what it does.
    fn describe(&self) -> &str;
    /// Runs it (see the trait docs).
    fn run(&self, ctx: RunContext) -> BoxRun;
}

/// Resolves when `file`'s cancellation is requested. Its token also fires when the file ends
/// (completed or failed: nothing more to do), which is no cancellation: then this never resolves.
pub(crate) async fn cancel_requested(ctx: &RunContext, file: &sim::FileTask) {
    file.cancel.cancelled().await;
    if matches!(
        ctx.status(file.id),
        sim::FileStatus::Completed | sim::FileStatus::Failed
    ) {
        std::future::pending::<()>().await;
    }
}

/// The names of every strategy, in the order comparisons show them.
pub const NAMES: &[&str] = &["fixed", "cookbook", "adaptive", "stepfn", "sqs"];

/// Builds the strategy `name`, with its settings from the scenario's `[strategies.NAME]` table.
/// The whole scenario's strategy settings are checked first (see [`check_scenario`]), whichever
/// strategy is built: a typo would otherwise be silently ignored.
pub fn build(name: &str, scenario: &Scenario) -> Result<Box<dyn Strategy>, StrategyError> {
    if !NAMES.contains(&name) {
        return Err(StrategyError::Unknown {
            name: name.to_owned(),
            known: NAMES.join(", "),
        });
    }
    check_scenario(scenario)?;
    build_from(name, scenario, scenario.strategy_table(name))
}

fn build_from(
    name: &str,
    scenario: &Scenario,
    table: Option<(&toml::Table, usize)>,
) -> Result<Box<dyn Strategy>, StrategyError> {
    // A strategy's own check of its settings, refused where its table is.
    let refused = |message: String| StrategyError::Settings {
        origin: scenario.source.origin.clone(),
        name: name.to_owned(),
        line: table.map_or(0, |(_, l)| l),
        message,
    };
    match name {
        "fixed" => Ok(Box::new(fixed::Fixed::new(settings(name, scenario, table)?))),
        "cookbook" => Ok(Box::new(cookbook::Cookbook::new(settings(name, scenario, table)?))),
        "adaptive" => Ok(Box::new(adaptive::Adaptive::new(settings(name, scenario, table)?))),
        "sqs" => sqs::Sqs::new(settings(name, scenario, table)?)
            .map(|s| Box::new(s) as Box<dyn Strategy>)
            .map_err(refused),
        "stepfn" => {
            let config: stepfn::StepFnConfig = settings(name, scenario, table)?;
            let origin = std::path::Path::new(&scenario.source.origin);
            let base = origin.is_file().then(|| origin.parent()).flatten();
            stepfn::StepFn::new(config, base)
                .map(|s| Box::new(s) as Box<dyn Strategy>)
                .map_err(refused)
        }
        _ => Err(StrategyError::Unknown {
            name: name.to_owned(),
            known: NAMES.join(", "),
        }),
    }
}

/// The settings of strategy `name` that it reads live from the parameter store, as
/// `NAME.key`: a timeline `set`, a sweep or a control API can change them during a run.
pub fn live_settings(name: &str) -> &'static [&'static str] {
    match name {
        "fixed" => fixed::LIVE_SETTINGS,
        _ => &[],
    }
}

/// Checks every strategy setting a scenario names: each `[strategies.NAME]` table names a
/// strategy, and each dotted `NAME.key` in `[params]` or a timeline `set` is a live setting of
/// that strategy whose value its table would accept.
pub fn check_scenario(scenario: &Scenario) -> Result<(), StrategyError> {
    check_tables(scenario)?;
    // The tables themselves first, so that a bad table is blamed on itself, not on a live
    // setting checked against it below.
    for name in scenario.strategies.keys() {
        build_from(name, scenario, scenario.strategy_table(name))?;
    }
    let mut dotted: Vec<(String, f64, String)> = scenario
        .params
        .strategy
        .iter()
        .map(|(k, v)| (k.clone(), *v, "[params]".to_owned()))
        .collect();
    for e in &scenario.timeline {
        if let sim::scenario::Action::Set(u) = &e.get_ref().action {
            let line = scenario.source.line_of(e.span().start);
            dotted.extend(
                u.strategy
                    .iter()
                    .map(|(k, v)| (k.clone(), *v, format!("line {line}: timeline `set`"))),
            );
        }
    }
    for (key, value, place) in dotted {
        let bad = |message: String| StrategyError::Setting {
            origin: scenario.source.origin.clone(),
            place: place.clone(),
            key: key.clone(),
            message,
        };
        let (name, k) = key.split_once('.').expect("the parameter store only keeps dotted keys");
        if !NAMES.contains(&name) {
            return Err(bad(format!(
                "there is no strategy `{name}`; the strategies are: {}",
                NAMES.join(", ")
            )));
        }
        let live = live_settings(name);
        if !live.contains(&k) {
            return Err(bad(format!(
                "`{name}` does not read `{k}` live; its live settings are: {}",
                if live.is_empty() {
                    "none".to_owned()
                } else {
                    live.join(", ")
                }
            )));
        }
        let (mut table, line) = scenario
            .strategy_table(name)
            .map_or((toml::Table::new(), 0), |(t, l)| (t.clone(), l));
        table.insert(k.to_owned(), sim::scenario::toml_number(value));
        if let Err(e) = build_from(name, scenario, Some((&table, line))) {
            return Err(bad(match e {
                StrategyError::Settings { message, .. } => message,
                other => other.to_string(),
            }));
        }
    }
    Ok(())
}

/// Every strategy, each with its settings from the scenario.
pub fn all(scenario: &Scenario) -> Result<Vec<Box<dyn Strategy>>, StrategyError> {
    // The whole scenario's settings once, not once per strategy (`build` checks them all).
    check_scenario(scenario)?;
    NAMES
        .iter()
        .map(|n| build_from(n, scenario, scenario.strategy_table(n)))
        .collect()
}

/// Refuses `[strategies.NAME]` tables whose NAME is no strategy, naming the table and its line.
pub fn check_tables(scenario: &Scenario) -> Result<(), StrategyError> {
    for name in scenario.strategies.keys() {
        if !NAMES.contains(&name.as_str()) {
            let (_, line) = scenario
                .strategy_table(name)
                .expect("the name comes from the scenario's own tables");
            return Err(StrategyError::UnknownTable {
                origin: scenario.source.origin.clone(),
                name: name.clone(),
                line,
                known: NAMES.join(", "),
            });
        }
    }
    Ok(())
}

fn settings<T: DeserializeOwned + Default>(
    name: &str,
    scenario: &Scenario,
    table: Option<(&toml::Table, usize)>,
) -> Result<T, StrategyError> {
    let Some((table, line)) = table else {
        return Ok(T::default());
    };
    table.clone().try_into().map_err(|e: toml::de::Error| {
        // A table's deserializer does not say which key it refused: find it, and its line.
        let (line, message) = match blame::<T>(table, &[]) {
            Some((path, message)) => {
                let last = path.last().expect("a blamed path names a key");
                let key_line = line_of_key(&scenario.source.text, line, last)
                    .or_else(|| line_of_key(&scenario.source.text, line, &path[0]))
                    .unwrap_or(line);
                (key_line, format!("`{}`: {message}", path.join(".")))
            }
            None => (line, e.message().trim_end().to_owned()),
        };
        StrategyError::Settings {
            origin: scenario.source.origin.clone(),
            name: name.to_owned(),
            line,
            message,
        }
    })
}

/// The key of `table` (under `prefix`) whose value alone, with every other key at its default,
/// makes `T` refuse the table, with the refusal; a nested table is searched for its own key.
fn blame<T: DeserializeOwned>(table: &toml::Table, prefix: &[String]) -> Option<(Vec<String>, String)> {
    for (key, value) in table {
        let mut path = prefix.to_vec();
        path.push(key.clone());
        // `{prefix…: {key: value}}`: this one key, with every other at its default.
        let mut alone = toml::Table::new();
        alone.insert(key.clone(), value.clone());
        for outer in prefix.iter().rev() {
            let mut t = toml::Table::new();
            t.insert(outer.clone(), toml::Value::Table(alone));
            alone = t;
        }
        if let Err(e) = alone.try_into::<T>() {
            if let toml::Value::Table(inner) = value
                && let Some(found) = blame::<T>(inner, &path)
            {
                return Some(found);
            }
            return Some((path, e.message().trim_end().to_owned()));
        }
    }
    None
}

/// The line, from `from` on, on which `key` is set (`key =` starting a line or after `{`/`,`).
fn line_of_key(text: &str, from: usize, key: &str) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| {
            l.match_indices(key).any(|(at, _)| {
                let before = l[..at].trim_end();
                let after = l[at + key.len()..].trim_start();
                let quoted = before.ends_with('"') && after.starts_with('"');
                let (before, after) = if quoted {
                    (before[..before.len() - 1].trim_end(), after[1..].trim_start())
                } else {
                    (before, after)
                };
                after.starts_with('=') && (before.is_empty() || before.ends_with('{') || before.ends_with(','))
            })
        })
        .map(|(i, _)| i + 1)
}

/// Runs `strategy` through `scenario` in simulated time.
pub fn simulate(strategy: &dyn Strategy, scenario: &Scenario, opts: &RunOptions) -> Result<RunReport, SimError> {
    let run = |ctx: RunContext| -> Pin<Box<dyn Future<Output = ()> + '_>> { strategy.run(ctx) };
    sim::simulate(scenario, strategy.name(), &run, opts)
}
