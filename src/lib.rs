//! The `orchbench` command line, as a library: every command can run in-process.
//!
//! Start at [`cli::execute`]. [`cli::run_scenario`] runs a scenario under strategies and returns
//! the report; [`builtin`] holds the scenarios embedded in the binary; [`control`] is the live
//! control API (`run --live --control ADDR`); [`dashboard`] the live terminal view.
//!
//! The crates underneath: `mock-llm` (the provider model) ← `sim` (the engine) ← `strategies` ←
//! `reports` and this CLI.

#![warn(missing_docs)]

pub mod builtin;
pub mod cli;
pub mod control;
pub mod dashboard;

pub use cli::{Cli, Live, execute, load_scenario, run_scenario, run_scenario_live, run_sweep};
