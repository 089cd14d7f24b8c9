//! Paths and payload templates: how ASL moves JSON between states (AWS Step Functions developer
//! guide, "Processing input and output", "Reference paths", "Payload templates").
//!
//! - [`select`]: a path against the input (`$…`) or the context object (`$$…`). A definite path
//!   (no wildcard, filter, slice, union or deep scan) gives the one value it selects, and is a
//!   `States.Runtime` error when it selects nothing; an indefinite path gives an array of every
//!   match, possibly empty (AWS follows Jayway JSONPath there). Queries are evaluated by
//!   `serde_json_path` (RFC 9535).
//! - [`set`]: a `ResultPath` (a reference path) writes a result into the input, creating objects
//!   on the way; it fails with `States.ResultPathMatchFailure` where the input has a non-object in
//!   the way.
//! - [`template`]: `Parameters`, `ResultSelector`, `ItemSelector`: keys ending in `.$` take the
//!   value of a path or an intrinsic function, the rest is copied.

use serde_json::{Map, Value};
use serde_json_path::JsonPath;

use super::errors::{self, Failure};
use super::intrinsics;

/// Whether a path selects at most one value (no `*`, `..`, filter, slice or union), looking only
/// outside quoted names.
pub fn is_definite(path: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut depth = 0u32;
    let mut prev = '\0';
    for c in path.chars() {
        match quote {
            Some(q) => {
                if c == q && prev != '\\' {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => quote = Some(c),
                '[' => depth += 1,
                ']' => depth = depth.saturating_sub(1),
                '*' | '?' => return false,
                ':' | ',' if depth > 0 => return false,
                '.' if prev == '.' => return false,
                _ => {}
            },
        }
        prev = c;
    }
    true
}

/// A path in the syntax `serde_json_path` (RFC 9535) reads: AWS (Jayway JSONPath) also accepts
/// dot-notation names RFC 9535 does not (`$.bucket-name`, `$.2fa`), which are rewritten to
/// bracket notation (`$['bucket-name']`).
pub fn normalize(path: &str) -> String {
    let chars: Vec<char> = path.chars().collect();
    let mut out = String::with_capacity(path.len() + 8);
    let (mut i, mut depth, mut quote) = (0usize, 0u32, None::<char>);
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            out.push(c);
            if c == q && chars.get(i.wrapping_sub(1)) != Some(&'\\') {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => {
                out.push('.');
                i += 1;
                if chars.get(i) == Some(&'.') {
                    out.push('.');
                    i += 1;
                }
                let start = i;
                while i < chars.len() && !matches!(chars[i], '.' | '[') {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                let plain = name == "*"
                    || (name
                        .chars()
                        .next()
                        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || !f.is_ascii())
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii()));
                if plain || name.is_empty() {
                    out.push_str(&name);
                } else {
                    // `.name` becomes `['name']`: drop the dot just written.
                    out.pop();
                    out.push_str(&format!("['{}']", name.replace('\'', "\\'")));
                }
                continue;
            }
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    out
}

fn runtime_bad_path(path: &str, why: &str) -> Failure {
    Failure::new(errors::RUNTIME, format!("Invalid path '{path}' : {why}"))
}

/// The value `path` selects: from `input` for `$…`, from `context` for `$$…`.
pub fn select(path: &str, input: &Value, context: &Value) -> Result<Value, Failure> {
    let (doc, query) = match path.strip_prefix("$$") {
        Some(rest) => (context, format!("${rest}")),
        None => (input, path.to_owned()),
    };
    if !query.starts_with('$') {
        return Err(runtime_bad_path(path, "a path must start with '$'"));
    }
    if query == "$" {
        return Ok(doc.clone());
    }
    let parsed = JsonPath::parse(&normalize(&query)).map_err(|e| runtime_bad_path(path, &e.to_string()))?;
    let nodes = parsed.query(doc).all();
    if is_definite(&query) {
        match nodes.as_slice() {
            [one] => Ok((*one).clone()),
            _ => Err(runtime_bad_path(path, &format!("No results for path: {query}"))),
        }
    } else {
        Ok(Value::Array(nodes.into_iter().cloned().collect()))
    }
}

/// [`select`] for the field `field` of a state (`InputPath`, `ids.$`, …): a path that selects
/// nothing is reported as AWS words it, "The JSONPath '$.a' specified for the field 'InputPath'
/// could not be found in the input '{…}'".
pub fn select_field(field: &str, path: &str, input: &Value, context: &Value) -> Result<Value, Failure> {
    select(path, input, context).map_err(|f| {
        if f.error == errors::RUNTIME && f.cause.contains("No results for path") {
            let doc = if path.starts_with("$$") { context } else { input };
            Failure::new(
                errors::RUNTIME,
                format!(
                    "The JSONPath '{path}' specified for the field '{field}' could not be found in the input '{doc}'"
                ),
            )
        } else {
            f
        }
    })
}

/// One step of a reference path.
#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
}

/// The steps of a reference path (`$`, `.name`, `['name']`, `["name"]`, `[3]`).
fn reference_steps(path: &str) -> Result<Vec<Step>, String> {
    let rest = path.strip_prefix('$').ok_or("a reference path starts with '$'")?;
    let b: Vec<char> = rest.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            '.' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j] != '.' && b[j] != '[' {
                    j += 1;
                }
                if j == start {
                    return Err("an empty name".into());
                }
                steps.push(Step::Field(b[start..j].iter().collect()));
                i = j;
            }
            '[' => {
                let close = b[i..].iter().position(|c| *c == ']').ok_or("an unclosed '['")? + i;
                let inner: String = b[i + 1..close].iter().collect();
                let inner = inner.trim();
                if let Some(name) = inner
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                {
                    steps.push(Step::Field(name.to_owned()));
                } else {
                    let n = inner
                        .parse::<usize>()
                        .map_err(|_| format!("'[{inner}]' is not a name or an index"))?;
                    steps.push(Step::Index(n));
                }
                i = close + 1;
            }
            c => return Err(format!("unexpected '{c}'")),
        }
    }
    Ok(steps)
}

/// `input` with `value` written at the reference path `path` (`$`: `value` itself).
pub fn set(input: &Value, path: &str, value: Value) -> Result<Value, Failure> {
    let fail = |why: String| {
        Failure::new(
            errors::RESULT_PATH_MATCH_FAILURE,
            format!("Unable to apply ResultPath \"{path}\" to input {input}: {why}"),
        )
    };
    let steps = reference_steps(path).map_err(fail)?;
    if steps.is_empty() {
        return Ok(value);
    }
    let mut out = input.clone();
    let mut at = &mut out;
    let last = steps.len() - 1;
    for (k, step) in steps.iter().enumerate() {
        match step {
            Step::Field(name) => {
                let Value::Object(obj) = at else {
                    return Err(fail(format!("'{name}' is a field of a value that is not an object")));
                };
                if k == last {
                    obj.insert(name.clone(), value);
                    return Ok(out);
                }
                at = obj.entry(name.clone()).or_insert_with(|| Value::Object(Map::new()));
            }
            Step::Index(n) => {
                let Value::Array(arr) = at else {
                    return Err(fail(format!("[{n}] indexes a value that is not an array")));
                };
                let Some(slot) = arr.get_mut(*n) else {
                    return Err(fail(format!("[{n}] is past the end of the array")));
                };
                if k == last {
                    *slot = value;
                    return Ok(out);
                }
                at = slot;
            }
        }
    }
    Ok(out)
}

/// A payload template evaluated against `input` and `context`.
pub fn template(t: &Value, input: &Value, context: &Value, rng: &mut dyn FnMut() -> u64) -> Result<Value, Failure> {
    match t {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, v) in o {
                match k.strip_suffix(".$") {
                    Some(name) => {
                        let expr = v.as_str().ok_or_else(|| {
                            Failure::new(
                                errors::RUNTIME,
                                format!("The value of '{k}' must be a path or an intrinsic function"),
                            )
                        })?;
                        let value = if expr.starts_with("States.") {
                            intrinsics::evaluate(expr, input, context, rng)?
                        } else {
                            select_field(k, expr, input, context)?
                        };
                        out.insert(name.to_owned(), value);
                    }
                    None => {
                        out.insert(k.clone(), template(v, input, context, rng)?);
                    }
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(a) => a
            .iter()
            .map(|v| template(v, input, context, rng))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn definite_paths_give_a_value_and_fail_on_nothing() {
        let input = json!({"a": {"b": [10, 20]}, "odd key": 1});
        let ctx = json!({"State": {"Name": "S"}});
        assert_eq!(select("$.a.b[1]", &input, &ctx), Ok(json!(20)));
        assert_eq!(select("$['odd key']", &input, &ctx), Ok(json!(1)));
        assert_eq!(select("$$.State.Name", &input, &ctx), Ok(json!("S")));
        let err = select("$.missing", &input, &ctx).expect_err("nothing there");
        assert_eq!(err.error, "States.Runtime");
        assert!(err.cause.contains("Invalid path '$.missing'"), "{}", err.cause);
    }

    #[test]
    fn jayway_names_that_rfc_9535_lacks_are_read_as_bracket_names() {
        let input = json!({"bucket-name": {"2fa": true}, "a": {"b c": 1}});
        assert_eq!(normalize("$.bucket-name.2fa"), "$['bucket-name']['2fa']");
        assert_eq!(normalize("$.a['b c'].d"), "$.a['b c'].d");
        assert_eq!(select("$.bucket-name.2fa", &input, &json!({})), Ok(json!(true)));
    }

    #[test]
    fn indefinite_paths_give_an_array_of_every_match() {
        let input = json!({"items": [{"n": 1, "ok": true}, {"n": 2, "ok": false}, {"n": 3, "ok": true}]});
        let none = json!({});
        assert_eq!(select("$.items[*].n", &input, &none), Ok(json!([1, 2, 3])));
        assert_eq!(select("$.items[?(@.ok == true)].n", &input, &none), Ok(json!([1, 3])));
        assert_eq!(select("$..nothing", &input, &none), Ok(json!([])));
        assert!(is_definite("$['a*b'].c"));
        assert!(!is_definite("$.a[0:2]"));
    }

    #[test]
    fn result_path_writes_into_the_input_creating_objects() {
        let input = json!({"a": 1, "list": [0, 1]});
        assert_eq!(set(&input, "$", json!(5)), Ok(json!(5)));
        assert_eq!(
            set(&input, "$.r.s", json!(5)),
            Ok(json!({"a": 1, "list": [0, 1], "r": {"s": 5}}))
        );
        assert_eq!(set(&input, "$.list[1]", json!(9)), Ok(json!({"a": 1, "list": [0, 9]})));
        let err = set(&input, "$.a.b", json!(5)).expect_err("a is a number");
        assert_eq!(err.error, "States.ResultPathMatchFailure");
        let err = set(&json!("text"), "$.x", json!(1)).expect_err("not an object");
        assert_eq!(err.error, "States.ResultPathMatchFailure");
    }

    #[test]
    fn templates_evaluate_dollar_keys_and_copy_the_rest() {
        let input = json!({"name": "x", "n": [1, 2]});
        let ctx = json!({"Map": {"Item": {"Index": 3}}});
        let t = json!({"static": {"k": 1}, "who.$": "$.name", "i.$": "$$.Map.Item.Index",
                       "list": [{"v.$": "$.n[0]"}], "greeting.$": "States.Format('hi {}', $.name)"});
        let mut rng = || 0u64;
        let got = template(&t, &input, &ctx, &mut rng).expect("evaluates");
        assert_eq!(
            got,
            json!({"static": {"k": 1}, "who": "x", "i": 3, "list": [{"v": 1}], "greeting": "hi x"})
        );
    }
}
