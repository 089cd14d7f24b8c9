//! A [`TaskRunner`] that plays scripted outcomes, for dry runs (`orchbench asl run --script`)
//! and the conformance tests.
//!
//! A script maps a resource ARN to outcomes, consumed one per call in order; the last repeats.
//! An outcome is `echo` (the task's input back), a JSON value, or `error:NAME[:CAUSE]`, each
//! optionally after `delay:DURATION:` (`delay:2s:{"ok":true}`, `delay:500ms:error:Boom`). A
//! resource without a script echoes its input at once.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::errors::Failure;
use super::exec::{TaskCall, TaskRunner};

/// One scripted answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// How long the task runs.
    pub delay: Duration,
    /// What it gives: `None` echoes the input.
    pub result: Option<Result<Value, Failure>>,
}

impl Outcome {
    /// Parses one outcome (see the module docs).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut rest = text.trim();
        let mut delay = Duration::ZERO;
        if let Some(after) = rest.strip_prefix("delay:") {
            let (d, tail) = after
                .split_once(':')
                .ok_or_else(|| format!("`{text}`: delay:DURATION: must be followed by an outcome"))?;
            delay = parse_duration(d).ok_or_else(|| format!("`{text}`: `{d}` is not a duration (e.g. 2s, 500ms)"))?;
            rest = tail;
        }
        let result = if rest == "echo" {
            None
        } else if let Some(e) = rest.strip_prefix("error:") {
            let (name, cause) = e.split_once(':').unwrap_or((e, ""));
            if name.is_empty() {
                return Err(format!("`{text}`: error: needs a name"));
            }
            Some(Err(Failure::new(name, cause)))
        } else {
            Some(Ok(
                serde_json::from_str(rest).map_err(|e| format!("`{text}`: not JSON, echo or error:NAME ({e})"))?
            ))
        };
        Ok(Self { delay, result })
    }
}

fn parse_duration(s: &str) -> Option<Duration> {
    let (num, unit) = s.find(|c: char| c.is_ascii_alphabetic()).map(|i| s.split_at(i))?;
    let v: f64 = num.parse().ok()?;
    if !(v.is_finite() && v >= 0.0) {
        return None;
    }
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

/// Plays scripted outcomes per resource.
#[derive(Debug, Default)]
pub struct ScriptedRunner {
    script: Mutex<BTreeMap<String, (Vec<Outcome>, usize)>>,
    calls: Mutex<Vec<TaskCall>>,
}

impl ScriptedRunner {
    /// A runner with no script (every task echoes its input).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `ARN=OUTCOME;OUTCOME…` (see the module docs).
    pub fn add(&mut self, spec: &str) -> Result<(), String> {
        let (arn, outcomes) = spec
            .split_once('=')
            .ok_or_else(|| format!("`{spec}`: expected ARN=OUTCOME[;OUTCOME…]"))?;
        let list = outcomes.split(';').map(Outcome::parse).collect::<Result<Vec<_>, _>>()?;
        self.script
            .get_mut()
            .expect("not shared yet")
            .insert(arn.trim().to_owned(), (list, 0));
        Ok(())
    }

    /// Scripts `arn` with these outcomes.
    pub fn with(mut self, arn: &str, outcomes: Vec<Outcome>) -> Self {
        self.script
            .get_mut()
            .expect("not shared yet")
            .insert(arn.to_owned(), (outcomes, 0));
        self
    }

    /// Every call made so far, in order.
    pub fn calls(&self) -> Vec<TaskCall> {
        self.calls.lock().expect("no thread panicked holding the calls").clone()
    }
}

impl TaskRunner for ScriptedRunner {
    fn invoke(&self, call: TaskCall) -> BoxFuture<'_, Result<Value, Failure>> {
        let outcome = {
            let mut script = self.script.lock().expect("no thread panicked holding the script");
            script.get_mut(&call.resource).and_then(|(list, next)| {
                let o = list.get((*next).min(list.len().saturating_sub(1))).cloned();
                *next += 1;
                o
            })
        };
        self.calls
            .lock()
            .expect("no thread panicked holding the calls")
            .push(call.clone());
        Box::pin(async move {
            let Outcome { delay, result } = outcome.unwrap_or(Outcome {
                delay: Duration::ZERO,
                result: None,
            });
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            result.unwrap_or(Ok(call.input))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_parse_as_documented() {
        assert_eq!(
            Outcome::parse("echo"),
            Ok(Outcome {
                delay: Duration::ZERO,
                result: None
            })
        );
        assert_eq!(
            Outcome::parse("delay:1.5s:{\"a\":1}"),
            Ok(Outcome {
                delay: Duration::from_millis(1500),
                result: Some(Ok(serde_json::json!({"a": 1})))
            })
        );
        assert_eq!(
            Outcome::parse("error:Lambda.TooManyRequestsException:slow down").map(|o| o.result),
            Ok(Some(Err(Failure::new("Lambda.TooManyRequestsException", "slow down"))))
        );
        for bad in ["delay:xs:1", "error:", "{not json", "delay:1s"] {
            assert!(Outcome::parse(bad).is_err(), "{bad}");
        }
    }
}
