//! Amazon States Language (ASL): the language of AWS Step Functions state machines, for the
//! `stepfn` strategy and for `orchbench asl`. Usable without the engine: it needs only a tokio
//! clock (paused for simulated time) and a [`exec::TaskRunner`].
//!
//! Start at [`exec::run`]. The modules:
//! - [`mod@check`]: validation of a definition before any run, every problem named with its JSON
//!   path (`orchbench asl check`);
//! - [`exec`]: the interpreter: every state type, data flow, Retry and Catch, Map and Parallel
//!   concurrency, timeouts, the context object, and AWS's execution history;
//! - [`paths`]: paths (`$…`, `$$…`, JSONPath by `serde_json_path`), `ResultPath` writes and
//!   payload templates;
//! - [`intrinsics`]: `States.Format` and the other intrinsic functions;
//! - [`errors`]: [`errors::Failure`] and the predefined error names;
//! - [`script`]: a task runner that plays scripted outcomes (`orchbench asl run --script`);
//! - [`time`]: RFC 3339 timestamps.

pub mod check;
pub mod errors;
pub mod exec;
pub mod intrinsics;
pub mod paths;
pub mod script;
pub mod time;

pub use check::{Problem, check, check_text};
