//! Validation of an ASL definition (JSONPath query language), before any run: every problem is
//! reported, each with the JSON path of the offending value, in a stable order (keys sorted).
//!
//! The rules are those of the Amazon States Language specification
//! (<https://states-language.net/spec.html>) and the AWS Step Functions developer guide
//! ("State machine structure", one page per state type, "Handling errors"):
//! - a state machine has `StartAt` naming one of its `States`, which must not be empty;
//! - every state has a known `Type` and only the fields of that type;
//! - Task, Pass, Wait, Parallel and Map states have exactly one of `Next` and `End: true`;
//!   Choice, Succeed and Fail have neither (a Choice moves by its rules and `Default`);
//! - every `Next` (of a state, a Choice rule, `Default`, a catcher) names a state of the same
//!   machine or branch, and every state is reachable from `StartAt`;
//! - `States.ALL` appears alone in its `ErrorEquals` and only in the last retrier or catcher;
//! - a Wait has exactly one of `Seconds`, `SecondsPath`, `Timestamp`, `TimestampPath`; a Fail at
//!   most one of `Error`/`ErrorPath` and of `Cause`/`CausePath`;
//! - a Map's `MaxConcurrency` is a non-negative integer, its tolerated failure percentage lies
//!   in [0, 100]; a retrier's `MaxAttempts` is non-negative, `IntervalSeconds` and
//!   `MaxDelaySeconds` positive, `BackoffRate` at least 1.0, `JitterStrategy` FULL or NONE;
//! - paths (`InputPath`, `OutputPath`, `ResultPath`, `ItemsPath`, every `…Path`, a rule's
//!   `Variable`) are strings starting with `$` (`InputPath`, `OutputPath` and `ResultPath` may also
//!   be null); a `ResultPath` is a reference path (no `*`, `..`, `?(` or `[a,b]`); a field named
//!   `key.$` in `Parameters`, `ResultSelector` or `ItemSelector` holds a path or an intrinsic
//!   function (`States.…(…)`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{Map, Value};

/// One thing wrong with a definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where, as a JSON path into the definition: `$.States.Validate.Next`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Parses `text` as JSON and checks it; a text that is not JSON is one problem at `$`.
pub fn check_text(text: &str) -> Vec<Problem> {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => check(&v),
        Err(e) => vec![Problem {
            path: "$".into(),
            message: format!("not JSON: {e}"),
        }],
    }
}

/// Every problem of the definition `def`; empty when it is valid.
pub fn check(def: &Value) -> Vec<Problem> {
    let mut c = Checker::default();
    c.machine(def, "$", true);
    c.problems
}

const STATE_TYPES: &[&str] = &["Task", "Pass", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map"];

/// The fields each state type may have (JSONPath query language), besides `Type` and `Comment`.
fn fields_of(ty: &str) -> &'static [&'static str] {
    const IO: &[&str] = &["InputPath", "OutputPath"];
    match ty {
        "Task" => &[
            "Resource",
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Retry",
            "Catch",
            "TimeoutSeconds",
            "TimeoutSecondsPath",
            "HeartbeatSeconds",
            "HeartbeatSecondsPath",
            "Credentials",
            "Assign",
        ],
        "Pass" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "Result",
            "Assign",
        ],
        "Choice" => &["Choices", "Default", "InputPath", "OutputPath", "Assign"],
        "Wait" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Seconds",
            "SecondsPath",
            "Timestamp",
            "TimestampPath",
            "Assign",
        ],
        "Succeed" => IO,
        "Fail" => &["Error", "ErrorPath", "Cause", "CausePath"],
        "Parallel" => &[
            "Branches",
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Retry",
            "Catch",
            "Assign",
        ],
        "Map" => &[
            "ItemProcessor",
            "Iterator",
            "ItemsPath",
            "ItemSelector",
            "Parameters",
            "ItemReader",
            "ItemBatcher",
            "ResultWriter",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
            "ToleratedFailureCount",
            "ToleratedFailureCountPath",
            "Label",
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "ResultSelector",
            "Retry",
            "Catch",
            "Assign",
        ],
        _ => &[],
    }
}

/// The comparison operators of a Choice rule (each also has a `…Path` form except the `Is…`
/// tests and `StringMatches`).
const COMPARISONS: &[&str] = &[
    "StringEquals",
    "StringLessThan",
    "StringGreaterThan",
    "StringLessThanEquals",
    "StringGreaterThanEquals",
    "NumericEquals",
    "NumericLessThan",
    "NumericGreaterThan",
    "NumericLessThanEquals",
    "NumericGreaterThanEquals",
    "BooleanEquals",
    "TimestampEquals",
    "TimestampLessThan",
    "TimestampGreaterThan",
    "TimestampLessThanEquals",
    "TimestampGreaterThanEquals",
];
const TESTS: &[&str] = &[
    "IsNull",
    "IsPresent",
    "IsNumeric",
    "IsString",
    "IsBoolean",
    "IsTimestamp",
    "StringMatches",
];

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

/// `base.key`, or `base['key']` when the key is not a plain identifier.
fn child(base: &str, key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("{base}.{key}")
    } else {
        format!("{base}['{}']", key.replace('\'', "\\'"))
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Checker {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// A state machine, the top level or a Parallel branch or Map processor.
    fn machine(&mut self, v: &Value, at: &str, top: bool) {
        let Some(obj) = v.as_object() else {
            self.problem(at, format!("a state machine must be an object, not {}", type_name(v)));
            return;
        };
        let allowed: &[&str] = if top {
            &[
                "Comment",
                "StartAt",
                "States",
                "TimeoutSeconds",
                "Version",
                "QueryLanguage",
            ]
        } else {
            &["Comment", "StartAt", "States", "ProcessorConfig"]
        };
        for k in obj.keys() {
            if !allowed.contains(&k.as_str()) {
                self.problem(child(at, k), format!("unknown field `{k}` of a state machine"));
            }
        }
        if top {
            self.non_negative_integer(obj, at, "TimeoutSeconds");
            if let Some(q) = obj.get("QueryLanguage")
                && q != "JSONPath"
            {
                self.problem(
                    child(at, "QueryLanguage"),
                    "only the JSONPath query language is supported (JSONata is not)",
                );
            }
        }
        let states = match obj.get("States") {
            Some(Value::Object(s)) if !s.is_empty() => Some(s),
            Some(Value::Object(_)) => {
                self.problem(child(at, "States"), "a state machine needs at least one state");
                None
            }
            Some(other) => {
                self.problem(
                    child(at, "States"),
                    format!("must be an object, not {}", type_name(other)),
                );
                None
            }
            None => {
                self.problem(at, "missing `States`");
                None
            }
        };
        let names: BTreeSet<&str> = states
            .map(|s| s.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let start = match obj.get("StartAt") {
            Some(Value::String(s)) => {
                if states.is_some() && !names.contains(s.as_str()) {
                    self.problem(child(at, "StartAt"), format!("`{s}` is not a state of this machine"));
                }
                Some(s.as_str())
            }
            Some(other) => {
                self.problem(
                    child(at, "StartAt"),
                    format!("must be a string, not {}", type_name(other)),
                );
                None
            }
            None => {
                self.problem(at, "missing `StartAt`");
                None
            }
        };
        let Some(states) = states else { return };
        let states_at = child(at, "States");
        let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, state) in states {
            let path = child(&states_at, name);
            let targets = self.state(state, &path, &names);
            edges.insert(name.as_str(), targets);
        }
        // Reachability from StartAt, by every transition a state can take.
        if let Some(start) = start.filter(|s| names.contains(s)) {
            let mut seen: BTreeSet<&str> = BTreeSet::from([start]);
            let mut queue = VecDeque::from([start]);
            while let Some(s) = queue.pop_front() {
                for t in edges.get(s).into_iter().flatten() {
                    if names.contains(t) && seen.insert(t) {
                        queue.push_back(t);
                    }
                }
            }
            for name in states.keys() {
                if !seen.contains(name.as_str()) {
                    self.problem(
                        child(&states_at, name),
                        format!("state `{name}` cannot be reached from `{start}`"),
                    );
                }
            }
        }
    }

    /// One state; returns the names it can move to.
    fn state<'a>(&mut self, v: &'a Value, at: &str, names: &BTreeSet<&str>) -> Vec<&'a str> {
        let mut targets = Vec::new();
        let Some(obj) = v.as_object() else {
            self.problem(at, format!("a state must be an object, not {}", type_name(v)));
            return targets;
        };
        let ty = match obj.get("Type") {
            Some(Value::String(t)) if STATE_TYPES.contains(&t.as_str()) => t.as_str(),
            Some(Value::String(t)) => {
                self.problem(
                    child(at, "Type"),
                    format!("unknown state type `{t}` (one of {})", STATE_TYPES.join(", ")),
                );
                return targets;
            }
            Some(other) => {
                self.problem(child(at, "Type"), format!("must be a string, not {}", type_name(other)));
                return targets;
            }
            None => {
                self.problem(at, "missing `Type`");
                return targets;
            }
        };
        let allowed = fields_of(ty);
        for k in obj.keys() {
            if k != "Type" && k != "Comment" && !allowed.contains(&k.as_str()) {
                self.problem(child(at, k), format!("unknown field `{k}` of a {ty} state"));
            }
        }
        // Next / End.
        let moves_on = matches!(ty, "Task" | "Pass" | "Wait" | "Parallel" | "Map");
        if moves_on {
            match (obj.get("Next"), obj.get("End")) {
                (Some(_), Some(_)) => self.problem(at, "has both `Next` and `End`: exactly one is allowed"),
                (None, None) => self.problem(at, "needs `Next` or `End: true`"),
                (None, Some(Value::Bool(true))) => {}
                (None, Some(_)) => self.problem(child(at, "End"), "must be true"),
                (Some(_), None) => {}
            }
        }
        if let Some(t) = self.next(obj, at, "Next", names) {
            targets.push(t);
        }
        // Paths.
        for k in ["InputPath", "OutputPath"] {
            self.path_field(obj, at, k, true, false);
        }
        self.path_field(obj, at, "ResultPath", true, true);
        for k in [
            "ItemsPath",
            "SecondsPath",
            "TimestampPath",
            "ErrorPath",
            "CausePath",
            "TimeoutSecondsPath",
            "HeartbeatSecondsPath",
            "MaxConcurrencyPath",
            "ToleratedFailurePercentagePath",
            "ToleratedFailureCountPath",
        ] {
            self.path_field(obj, at, k, false, false);
        }
        for k in ["Parameters", "ResultSelector", "ItemSelector"] {
            if let Some(p) = obj.get(k) {
                self.payload_template(p, &child(at, k));
            }
        }
        match ty {
            "Task" => {
                match obj.get("Resource") {
                    Some(Value::String(_)) => {}
                    Some(other) => self.problem(
                        child(at, "Resource"),
                        format!("must be a string, not {}", type_name(other)),
                    ),
                    None => self.problem(at, "a Task needs `Resource`"),
                }
                self.positive_integer(obj, at, "TimeoutSeconds");
                self.positive_integer(obj, at, "HeartbeatSeconds");
                if let (Some(t), Some(h)) = (
                    obj.get("TimeoutSeconds").and_then(Value::as_u64),
                    obj.get("HeartbeatSeconds").and_then(Value::as_u64),
                ) && h >= t
                {
                    self.problem(child(at, "HeartbeatSeconds"), "must be smaller than `TimeoutSeconds`");
                }
            }
            "Choice" => targets.extend(self.choice(obj, at, names)),
            "Wait" => {
                let given: Vec<&str> = ["Seconds", "SecondsPath", "Timestamp", "TimestampPath"]
                    .into_iter()
                    .filter(|k| obj.contains_key(*k))
                    .collect();
                if given.len() != 1 {
                    self.problem(
                        at,
                        format!(
                            "a Wait needs exactly one of `Seconds`, `SecondsPath`, `Timestamp`, `TimestampPath` (has {})",
                            if given.is_empty() { "none".to_owned() } else { given.join(", ") }
                        ),
                    );
                }
                self.non_negative_integer(obj, at, "Seconds");
                if let Some(ts) = obj.get("Timestamp")
                    && !ts.as_str().is_some_and(is_timestamp)
                {
                    self.problem(
                        child(at, "Timestamp"),
                        "must be an RFC 3339 timestamp, e.g. 2026-01-01T00:00:00Z",
                    );
                }
            }
            "Fail" => {
                for (a, b) in [("Error", "ErrorPath"), ("Cause", "CausePath")] {
                    if obj.contains_key(a) && obj.contains_key(b) {
                        self.problem(at, format!("has both `{a}` and `{b}`: at most one is allowed"));
                    }
                    if let Some(v) = obj.get(a)
                        && !v.is_string()
                    {
                        self.problem(child(at, a), format!("must be a string, not {}", type_name(v)));
                    }
                }
            }
            "Parallel" => match obj.get("Branches") {
                Some(Value::Array(branches)) if !branches.is_empty() => {
                    for (i, b) in branches.iter().enumerate() {
                        self.machine(b, &format!("{}[{i}]", child(at, "Branches")), false);
                    }
                }
                Some(_) => self.problem(child(at, "Branches"), "must be a non-empty array of state machines"),
                None => self.problem(at, "a Parallel needs `Branches`"),
            },
            "Map" => {
                match (obj.get("ItemProcessor"), obj.get("Iterator")) {
                    (Some(_), Some(_)) => self.problem(at, "has both `ItemProcessor` and `Iterator`: use one"),
                    (None, None) => self.problem(at, "a Map needs `ItemProcessor` (or the older `Iterator`)"),
                    (Some(p), None) => self.machine(p, &child(at, "ItemProcessor"), false),
                    (None, Some(p)) => self.machine(p, &child(at, "Iterator"), false),
                }
                if obj.contains_key("Parameters") && obj.contains_key("ItemSelector") {
                    self.problem(at, "has both `Parameters` and `ItemSelector`: use one");
                }
                self.non_negative_integer(obj, at, "MaxConcurrency");
                self.non_negative_integer(obj, at, "ToleratedFailureCount");
                if let Some(p) = obj.get("ToleratedFailurePercentage")
                    && !p.as_f64().is_some_and(|p| (0.0..=100.0).contains(&p))
                {
                    self.problem(
                        child(at, "ToleratedFailurePercentage"),
                        "must be a number from 0 to 100",
                    );
                }
            }
            _ => {}
        }
        if matches!(ty, "Task" | "Parallel" | "Map") {
            self.retriers(obj, at);
            targets.extend(self.catchers(obj, at, names));
        }
        targets
    }

    /// `key` must name a state, when present; returns it.
    fn next<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        at: &str,
        key: &str,
        names: &BTreeSet<&str>,
    ) -> Option<&'a str> {
        match obj.get(key)? {
            Value::String(s) => {
                if !names.contains(s.as_str()) {
                    self.problem(child(at, key), format!("`{s}` is not a state of this machine"));
                }
                Some(s.as_str())
            }
            other => {
                self.problem(
                    child(at, key),
                    format!("must be a state name, not {}", type_name(other)),
                );
                None
            }
        }
    }

    fn choice<'a>(&mut self, obj: &'a Map<String, Value>, at: &str, names: &BTreeSet<&str>) -> Vec<&'a str> {
        let mut targets = Vec::new();
        match obj.get("Choices") {
            Some(Value::Array(rules)) if !rules.is_empty() => {
                for (i, rule) in rules.iter().enumerate() {
                    let path = format!("{}[{i}]", child(at, "Choices"));
                    self.rule(rule, &path, true);
                    if let Some(r) = rule.as_object() {
                        match self.next(r, &path, "Next", names) {
                            Some(t) => targets.push(t),
                            None if !r.contains_key("Next") => self.problem(&path, "a Choice rule needs `Next`"),
                            None => {}
                        }
                    }
                }
            }
            Some(_) => self.problem(child(at, "Choices"), "must be a non-empty array of rules"),
            None => self.problem(at, "a Choice needs `Choices`"),
        }
        if let Some(t) = self.next(obj, at, "Default", names) {
            targets.push(t);
        }
        targets
    }

    /// A Choice rule (`top`: it carries `Next`) or a nested one inside And/Or/Not.
    fn rule(&mut self, v: &Value, at: &str, top: bool) {
        let Some(r) = v.as_object() else {
            self.problem(at, format!("a Choice rule must be an object, not {}", type_name(v)));
            return;
        };
        let is_operator = |k: &str| {
            COMPARISONS.contains(&k)
                || TESTS.contains(&k)
                || k.strip_suffix("Path").is_some_and(|b| COMPARISONS.contains(&b))
        };
        let mut operators = Vec::new();
        for k in r.keys() {
            let ok = is_operator(k)
                || matches!(k.as_str(), "And" | "Or" | "Not" | "Variable" | "Comment")
                || (top && matches!(k.as_str(), "Next" | "Assign"));
            if !ok {
                self.problem(child(at, k), format!("unknown field `{k}` of a Choice rule"));
            }
            if is_operator(k) || matches!(k.as_str(), "And" | "Or" | "Not") {
                operators.push(k.as_str());
            }
        }
        if operators.len() != 1 {
            self.problem(
                at,
                format!(
                    "a Choice rule needs exactly one comparison, or And, Or or Not (has {})",
                    if operators.is_empty() {
                        "none".to_owned()
                    } else {
                        operators.join(", ")
                    }
                ),
            );
            return;
        }
        let op = operators[0];
        match op {
            "And" | "Or" => match r.get(op) {
                Some(Value::Array(rs)) if !rs.is_empty() => {
                    for (i, sub) in rs.iter().enumerate() {
                        self.rule(sub, &format!("{}[{i}]", child(at, op)), false);
                    }
                }
                _ => self.problem(child(at, op), "must be a non-empty array of rules"),
            },
            "Not" => match r.get(op) {
                Some(sub @ Value::Object(_)) => self.rule(sub, &child(at, op), false),
                _ => self.problem(child(at, op), "must be one rule"),
            },
            _ => {
                match r.get("Variable") {
                    Some(Value::String(p)) if p.starts_with('$') => {}
                    Some(_) => self.problem(child(at, "Variable"), "must be a path starting with `$`"),
                    None => self.problem(at, format!("`{op}` needs `Variable`")),
                }
                let value = &r[op];
                let expect_ok = if op.ends_with("Path") && op != "StringMatches" && !TESTS.contains(&op) {
                    value.as_str().is_some_and(|p| p.starts_with('$'))
                } else if TESTS.contains(&op) && op != "StringMatches" {
                    value.is_boolean()
                } else if op.starts_with("String") || op.starts_with("Timestamp") {
                    value.is_string()
                } else if op.starts_with("Numeric") {
                    value.is_number()
                } else {
                    value.is_boolean()
                };
                if !expect_ok {
                    self.problem(child(at, op), format!("wrong value for `{op}`: {}", type_name(value)));
                }
            }
        }
    }

    fn errors_list(&mut self, item: &Map<String, Value>, at: &str, last: bool) {
        match item.get("ErrorEquals") {
            Some(Value::Array(errs)) if !errs.is_empty() && errs.iter().all(Value::is_string) => {
                if errs.iter().any(|e| e == "States.ALL") {
                    if errs.len() > 1 {
                        self.problem(child(at, "ErrorEquals"), "`States.ALL` must appear alone");
                    }
                    if !last {
                        self.problem(
                            child(at, "ErrorEquals"),
                            "`States.ALL` must be in the last retrier or catcher",
                        );
                    }
                }
            }
            Some(_) => self.problem(child(at, "ErrorEquals"), "must be a non-empty array of error names"),
            None => self.problem(at, "missing `ErrorEquals`"),
        }
    }

    fn retriers(&mut self, obj: &Map<String, Value>, at: &str) {
        let Some(v) = obj.get("Retry") else { return };
        let Some(list) = v.as_array() else {
            self.problem(child(at, "Retry"), "must be an array of retriers");
            return;
        };
        for (i, r) in list.iter().enumerate() {
            let path = format!("{}[{i}]", child(at, "Retry"));
            let Some(r) = r.as_object() else {
                self.problem(&path, "a retrier must be an object");
                continue;
            };
            for k in r.keys() {
                let known = [
                    "ErrorEquals",
                    "IntervalSeconds",
                    "MaxAttempts",
                    "BackoffRate",
                    "MaxDelaySeconds",
                    "JitterStrategy",
                    "Comment",
                ];
                if !known.contains(&k.as_str()) {
                    self.problem(child(&path, k), format!("unknown field `{k}` of a retrier"));
                }
            }
            self.errors_list(r, &path, i + 1 == list.len());
            self.positive_integer(r, &path, "IntervalSeconds");
            self.non_negative_integer(r, &path, "MaxAttempts");
            self.positive_integer(r, &path, "MaxDelaySeconds");
            if let Some(b) = r.get("BackoffRate")
                && !b.as_f64().is_some_and(|b| b >= 1.0)
            {
                self.problem(child(&path, "BackoffRate"), "must be a number of at least 1.0");
            }
            if let Some(j) = r.get("JitterStrategy")
                && j != "FULL"
                && j != "NONE"
            {
                self.problem(child(&path, "JitterStrategy"), "must be FULL or NONE");
            }
        }
    }

    fn catchers<'a>(&mut self, obj: &'a Map<String, Value>, at: &str, names: &BTreeSet<&str>) -> Vec<&'a str> {
        let mut targets = Vec::new();
        let Some(v) = obj.get("Catch") else { return targets };
        let Some(list) = v.as_array() else {
            self.problem(child(at, "Catch"), "must be an array of catchers");
            return targets;
        };
        for (i, c) in list.iter().enumerate() {
            let path = format!("{}[{i}]", child(at, "Catch"));
            let Some(c) = c.as_object() else {
                self.problem(&path, "a catcher must be an object");
                continue;
            };
            for k in c.keys() {
                if !["ErrorEquals", "Next", "ResultPath", "Comment", "Assign"].contains(&k.as_str()) {
                    self.problem(child(&path, k), format!("unknown field `{k}` of a catcher"));
                }
            }
            self.errors_list(c, &path, i + 1 == list.len());
            match self.next(c, &path, "Next", names) {
                Some(t) => targets.push(t),
                None if !c.contains_key("Next") => self.problem(&path, "a catcher needs `Next`"),
                None => {}
            }
            self.path_field(c, &path, "ResultPath", true, true);
        }
        targets
    }

    /// A path field: a string starting with `$` (or null where `nullable`); a reference path
    /// (no wildcards, filters, unions or deep scans) where `reference`.
    fn path_field(&mut self, obj: &Map<String, Value>, at: &str, key: &str, nullable: bool, reference: bool) {
        let Some(v) = obj.get(key) else { return };
        match v {
            Value::Null if nullable => {}
            Value::String(p) if p.starts_with('$') => {
                if let Err(why) = jsonpath_syntax(p) {
                    self.problem(child(at, key), format!("`{p}` is not a valid path: {why}"));
                } else if reference && ["*", "..", "?(", ","].iter().any(|bad| p.contains(bad)) {
                    self.problem(
                        child(at, key),
                        format!("`{p}` is not a reference path (no `*`, `..`, filters or unions)"),
                    );
                }
            }
            Value::String(p) => self.problem(child(at, key), format!("`{p}` is not a path: it must start with `$`")),
            other => self.problem(child(at, key), format!("must be a path, not {}", type_name(other))),
        }
    }

    /// `Parameters`, `ResultSelector`, `ItemSelector`: any JSON, where a key ending in `.$` holds
    /// a path or an intrinsic function.
    fn payload_template(&mut self, v: &Value, at: &str) {
        match v {
            Value::Object(o) => {
                for (k, sub) in o {
                    let path = child(at, k);
                    if k.ends_with(".$") {
                        match sub.as_str() {
                            Some(s) if s.starts_with('$') => {
                                if let Err(why) = jsonpath_syntax(s) {
                                    self.problem(path, format!("`{s}` is not a valid path: {why}"));
                                }
                            }
                            Some(s) if s.starts_with("States.") => {
                                if let Err(why) = super::intrinsics::check_syntax(s) {
                                    self.problem(path, format!("`{s}` is not a valid intrinsic function call: {why}"));
                                }
                            }
                            _ => self.problem(
                                path,
                                format!("`{k}` must hold a path (`$…`) or an intrinsic function (`States.…(…)`)"),
                            ),
                        }
                    } else {
                        self.payload_template(sub, &path);
                    }
                }
            }
            Value::Array(a) => {
                for (i, sub) in a.iter().enumerate() {
                    self.payload_template(sub, &format!("{at}[{i}]"));
                }
            }
            _ => {}
        }
    }

    fn positive_integer(&mut self, obj: &Map<String, Value>, at: &str, key: &str) {
        if let Some(v) = obj.get(key)
            && v.as_u64().is_none_or(|n| n == 0)
        {
            self.problem(child(at, key), "must be a positive integer");
        }
    }

    fn non_negative_integer(&mut self, obj: &Map<String, Value>, at: &str, key: &str) {
        if let Some(v) = obj.get(key)
            && v.as_u64().is_none()
        {
            self.problem(child(at, key), "must be a non-negative integer");
        }
    }
}

/// Whether a path parses as JSONPath (RFC 9535, as `serde_json_path` reads it); `$$…` is a path
/// into the context object.
fn jsonpath_syntax(p: &str) -> Result<(), String> {
    let q = match p.strip_prefix("$$") {
        Some(rest) => format!("${rest}"),
        None => p.to_owned(),
    };
    serde_json_path::JsonPath::parse(&super::paths::normalize(&q))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Whether `s` looks like an RFC 3339 timestamp (`YYYY-MM-DDThh:mm:ss` with an optional fraction
/// and a `Z` or `±hh:mm` offset), as ASL requires for `Timestamp`.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20 || !(digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10)) {
        return false;
    }
    if !(matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn paths(def: Value) -> Vec<String> {
        check(&def).into_iter().map(|p| p.path).collect()
    }

    #[test]
    fn the_reference_two_state_machine_is_valid() {
        // DESIGN.md's seed definition: a controller Task, then a Map of validators.
        let def = json!({
            "StartAt": "TPMController",
            "States": {
                "TPMController": {"Type": "Task", "Resource": "arn:aws:lambda:::function:tpm-controller",
                                   "ResultPath": "$.concurrency", "Next": "DynamicValidator"},
                "DynamicValidator": {
                    "Type": "Map", "ItemsPath": "$.chunks", "MaxConcurrencyPath": "$.concurrency.value",
                    "ItemProcessor": {"StartAt": "Validate", "States": {
                        "Validate": {"Type": "Task", "Resource": "arn:aws:lambda:::function:validate-chunk",
                                     "Retry": [{"ErrorEquals": ["RateLimited"], "IntervalSeconds": 2, "BackoffRate": 2.0},
                                               {"ErrorEquals": ["States.ALL"], "MaxAttempts": 2}],
                                     "End": true}}},
                    "End": true}
            }
        });
        assert_eq!(check(&def), vec![]);
    }

    #[test]
    fn every_structural_problem_is_named_with_its_path() {
        // One definition with one of each mistake: each must be reported at its own path, and
        // none hides another.
        let def = json!({
            "StartAt": "A",
            "States": {
                "A": {"Type": "Pass", "Next": "Missing", "Bogus": 1},
                "B": {"Type": "Pass", "End": true, "Next": "A"},
                "C": {"Type": "Teleport"},
                "D": {"Type": "Map", "MaxConcurrency": -1, "ItemProcessor": {"StartAt": "X", "States": {"X": {"Type": "Succeed"}}}, "End": true},
                "E": {"Type": "Task", "Resource": "r", "End": true,
                      "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "A"}, {"ErrorEquals": ["Oops"], "Next": "A"}]},
                "F": {"Type": "Wait", "End": true}
            }
        });
        let got = paths(def);
        for want in [
            "$.States.A.Next",
            "$.States.A.Bogus",
            "$.States.B",
            "$.States.C.Type",
            "$.States.D.MaxConcurrency",
            "$.States.E.Catch[0].ErrorEquals",
            "$.States.F",
        ] {
            assert!(got.iter().any(|p| p == want), "no problem at {want}: {got:#?}");
        }
        // B, C, D, E and F are unreachable from A (A goes nowhere that exists).
        assert!(
            got.iter()
                .filter(|p| ["$.States.B", "$.States.D", "$.States.E"].contains(&p.as_str()))
                .count()
                >= 3
        );
    }

    #[test]
    fn start_at_and_next_must_name_states_of_the_same_machine() {
        // A Map's processor is its own scope: its states are not visible outside it.
        let def = json!({
            "StartAt": "Inner",
            "States": {"M": {"Type": "Map", "ItemProcessor": {"StartAt": "Inner", "States": {
                "Inner": {"Type": "Pass", "Next": "M"}}}, "End": true}}
        });
        let got = paths(def);
        assert!(
            got.contains(&"$.States.M.ItemProcessor.States.Inner.Next".to_owned()),
            "{got:#?}"
        );
        assert!(got.contains(&"$.StartAt".to_owned()), "{got:#?}");
    }

    #[test]
    fn states_all_must_be_alone_and_last() {
        let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "r", "End": true,
            "Retry": [{"ErrorEquals": ["States.ALL", "X"]}]}}});
        let got = check(&def);
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(got[0].message.contains("alone"));
    }

    #[test]
    fn choice_rules_need_one_operator_a_variable_and_a_next() {
        let def = json!({"StartAt": "C", "States": {
            "C": {"Type": "Choice", "Default": "Done", "Choices": [
                {"Variable": "$.n", "NumericGreaterThan": 3, "Next": "Done"},
                {"Variable": "$.n", "NumericEquals": 1, "StringEquals": "x", "Next": "Done"},
                {"NumericEquals": 1, "Next": "Done"},
                {"Not": {"Variable": "$.s", "StringMatches": "a*"}, "Next": "Done"},
                {"Variable": "$.n", "IsPresent": "yes", "Next": "Done"},
                {"Variable": "$.n", "NumericEqualsPath": "$.m"}
            ]},
            "Done": {"Type": "Succeed"}}});
        let got = paths(def);
        assert_eq!(
            got,
            vec![
                "$.States.C.Choices[1]",
                "$.States.C.Choices[2]",
                "$.States.C.Choices[4].IsPresent",
                "$.States.C.Choices[5]",
            ]
        );
    }

    #[test]
    fn paths_and_templates_are_checked() {
        let def = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true,
            "InputPath": "input", "ResultPath": "$.a[*]", "OutputPath": null,
            "Parameters": {"ok.$": "$.x", "fn.$": "States.Format('{}', $.y)", "bad.$": 3, "nested": {"worse.$": "x"},
                           "broken.$": "$.a[", "call.$": "States.Format('unclosed"}}}});
        assert_eq!(
            paths(def),
            vec![
                "$.States.P.InputPath",
                "$.States.P.ResultPath",
                "$.States.P.Parameters['bad.$']",
                "$.States.P.Parameters['broken.$']",
                "$.States.P.Parameters['call.$']",
                "$.States.P.Parameters.nested['worse.$']",
            ]
        );
    }

    #[test]
    fn timestamps_follow_rfc_3339() {
        for ok in ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.123+01:00"] {
            assert!(is_timestamp(ok), "{ok}");
        }
        for bad in [
            "2026-01-01",
            "2026-01-01 00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
        ] {
            assert!(!is_timestamp(bad), "{bad}");
        }
    }

    #[test]
    fn text_that_is_not_json_is_one_problem_at_the_root() {
        let got = check_text("{\"StartAt\": ");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "$");
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            prop_oneof![
                Just("Task"),
                Just("Pass"),
                Just("Choice"),
                Just("Map"),
                Just("Parallel"),
                Just("End"),
                Just("$.a"),
                Just("States.ALL"),
                Just("A"),
                Just("B"),
                Just("x.$")
            ]
            .prop_map(|s| Value::String(s.to_owned())),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            let keys = prop_oneof![
                Just("StartAt"),
                Just("States"),
                Just("Type"),
                Just("Next"),
                Just("End"),
                Just("A"),
                Just("B"),
                Just("Choices"),
                Just("Branches"),
                Just("ItemProcessor"),
                Just("Retry"),
                Just("Catch"),
                Just("ErrorEquals"),
                Just("Variable"),
                Just("And"),
                Just("Not"),
                Just("Parameters"),
                Just("k.$")
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(keys.prop_map(str::to_owned), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any JSON at all gets an answer (a list of problems, maybe empty), never a panic.
        #[test]
        fn any_json_gets_an_answer_never_a_panic(v in any_json()) {
            let problems = check(&v);
            for p in &problems {
                prop_assert!(p.path.starts_with('$'));
            }
        }
    }
}
