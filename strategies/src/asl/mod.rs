//! Amazon States Language (ASL): the language of AWS Step Functions state machines, for the
//! `stepfn` strategy and for `orchbench asl`. Usable without the engine.
//!
//! - [`mod@check`]: validation of a definition before any run, every problem named with its JSON
//!   path (what `orchbench asl check` prints).
//!
//! The interpreter (states, data flow, Retry and Catch, the execution history) is the next
//! step of issue 10 and is not here yet.

pub mod check;

pub use check::{Problem, check, check_text};
