//! The intrinsic functions (`States.Format(…)`, …) allowed in payload templates (AWS Step
//! Functions developer guide, "Intrinsic functions"). Arguments are string literals in single
//! quotes (`\'`, `\{`, `\}` and `\\` escaped), numbers, `true`, `false`, `null`, paths (`$…`,
//! `$$…`) and nested intrinsics. Every misuse is a `States.IntrinsicFailure` naming the function.
//! `States.MathRandom` and `States.UUID` draw from the run's seeded generator.

use base64::Engine as _;
use serde_json::{Map, Value};

use super::errors::{self, Failure};
use super::paths;

/// Evaluates the intrinsic call `expr` against `input` and `context`.
pub fn evaluate(expr: &str, input: &Value, context: &Value, rng: &mut dyn FnMut() -> u64) -> Result<Value, Failure> {
    let chars: Vec<char> = expr.trim().chars().collect();
    let mut p = Parser { s: &chars, i: 0 };
    let call = p.call().map_err(|why| fail(expr, &why))?;
    p.skip_ws();
    if p.i != chars.len() {
        return Err(fail(expr, "unexpected text after the call"));
    }
    eval(&call, input, context, rng)
}

/// Whether `expr` parses as an intrinsic call (for the checker); why not, when it does not.
pub fn check_syntax(expr: &str) -> Result<(), String> {
    let chars: Vec<char> = expr.trim().chars().collect();
    let mut p = Parser { s: &chars, i: 0 };
    p.call()?;
    p.skip_ws();
    if p.i != chars.len() {
        return Err("unexpected text after the call".into());
    }
    Ok(())
}

fn fail(what: &str, why: &str) -> Failure {
    Failure::new(errors::INTRINSIC_FAILURE, format!("{what}: {why}"))
}

#[derive(Debug)]
enum Arg {
    Literal(Value),
    Path(String),
    Call(Call),
}

#[derive(Debug)]
struct Call {
    name: String,
    args: Vec<Arg>,
}

struct Parser<'a> {
    s: &'a [char],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_whitespace()) {
            self.i += 1;
        }
    }

    fn call(&mut self) -> Result<Call, String> {
        self.skip_ws();
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '.')
        {
            self.i += 1;
        }
        let name: String = self.s[start..self.i].iter().collect();
        if !name.starts_with("States.") {
            return Err(format!("'{name}' is not an intrinsic function"));
        }
        self.skip_ws();
        if self.s.get(self.i) != Some(&'(') {
            return Err(format!("{name} needs '('"));
        }
        self.i += 1;
        let mut args = Vec::new();
        self.skip_ws();
        if self.s.get(self.i) == Some(&')') {
            self.i += 1;
            return Ok(Call { name, args });
        }
        loop {
            args.push(self.arg()?);
            self.skip_ws();
            match self.s.get(self.i) {
                Some(',') => self.i += 1,
                Some(')') => {
                    self.i += 1;
                    return Ok(Call { name, args });
                }
                _ => return Err(format!("{name}: expected ',' or ')'")),
            }
        }
    }

    fn arg(&mut self) -> Result<Arg, String> {
        self.skip_ws();
        match self.s.get(self.i) {
            Some('\'') => {
                self.i += 1;
                let mut out = String::new();
                loop {
                    match self.s.get(self.i) {
                        None => return Err("an unterminated string".into()),
                        Some('\\') => {
                            let c = *self.s.get(self.i + 1).ok_or("a dangling '\\'")?;
                            // `\{` and `\}` stay escaped for States.Format to see.
                            if c == '{' || c == '}' {
                                out.push('\\');
                            }
                            out.push(c);
                            self.i += 2;
                        }
                        Some('\'') => {
                            self.i += 1;
                            return Ok(Arg::Literal(Value::String(out)));
                        }
                        Some(c) => {
                            out.push(*c);
                            self.i += 1;
                        }
                    }
                }
            }
            Some('$') => {
                let start = self.i;
                let (mut depth, mut quote) = (0i32, None::<char>);
                while let Some(&c) = self.s.get(self.i) {
                    match quote {
                        Some(q) if c == q => quote = None,
                        Some(_) => {}
                        None => match c {
                            '\'' | '"' => quote = Some(c),
                            '[' | '(' => depth += 1,
                            ']' | ')' if depth > 0 => depth -= 1,
                            ',' | ')' if depth == 0 => break,
                            _ => {}
                        },
                    }
                    self.i += 1;
                }
                Ok(Arg::Path(
                    self.s[start..self.i].iter().collect::<String>().trim().to_owned(),
                ))
            }
            Some('S') => Ok(Arg::Call(self.call()?)),
            Some(_) => {
                let start = self.i;
                while self.s.get(self.i).is_some_and(|c| !matches!(c, ',' | ')')) {
                    self.i += 1;
                }
                let word: String = self.s[start..self.i].iter().collect();
                let v: Value =
                    serde_json::from_str(word.trim()).map_err(|_| format!("'{}' is not a value", word.trim()))?;
                if v.is_object() || v.is_array() || v.is_string() {
                    return Err(format!("'{}' is not a literal argument", word.trim()));
                }
                Ok(Arg::Literal(v))
            }
            None => Err("a missing argument".into()),
        }
    }
}

fn eval(call: &Call, input: &Value, context: &Value, rng: &mut dyn FnMut() -> u64) -> Result<Value, Failure> {
    let mut args = Vec::with_capacity(call.args.len());
    for a in &call.args {
        args.push(match a {
            Arg::Literal(v) => v.clone(),
            Arg::Path(p) => paths::select(p, input, context)?,
            Arg::Call(c) => eval(c, input, context, rng)?,
        });
    }
    let name = call.name.as_str();
    let bad = |why: &str| fail(name, why);
    let count = |n: std::ops::RangeInclusive<usize>| {
        if n.contains(&args.len()) {
            Ok(())
        } else {
            Err(bad(&format!("takes {} argument(s), got {}", describe(&n), args.len())))
        }
    };
    let string = |v: &Value, what: &str| {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| bad(&format!("{what} must be a string")))
    };
    let array = |v: &Value, what: &str| {
        v.as_array()
            .cloned()
            .ok_or_else(|| bad(&format!("{what} must be an array")))
    };
    let int = |v: &Value, what: &str| v.as_i64().ok_or_else(|| bad(&format!("{what} must be an integer")));
    match name {
        "States.Format" => {
            if args.is_empty() {
                return Err(bad("needs a template string"));
            }
            let t = string(&args[0], "the template")?;
            format(&t, &args[1..]).map(Value::String).map_err(|why| bad(&why))
        }
        "States.StringToJson" => {
            count(1..=1)?;
            serde_json::from_str(&string(&args[0], "the argument")?).map_err(|e| bad(&format!("not JSON: {e}")))
        }
        "States.JsonToString" => {
            count(1..=1)?;
            Ok(Value::String(args[0].to_string()))
        }
        "States.Array" => Ok(Value::Array(args)),
        "States.ArrayPartition" => {
            count(2..=2)?;
            let a = array(&args[0], "the first argument")?;
            let size = int(&args[1], "the chunk size")?;
            if size <= 0 {
                return Err(bad("the chunk size must be positive"));
            }
            Ok(Value::Array(
                a.chunks(size as usize).map(|c| Value::Array(c.to_vec())).collect(),
            ))
        }
        "States.ArrayContains" => {
            count(2..=2)?;
            Ok(Value::Bool(array(&args[0], "the first argument")?.contains(&args[1])))
        }
        "States.ArrayRange" => {
            count(3..=3)?;
            let (start, end, step) = (int(&args[0], "start")?, int(&args[1], "end")?, int(&args[2], "step")?);
            if step == 0 {
                return Err(bad("the step must not be zero"));
            }
            let mut out = Vec::new();
            let mut v = start;
            while (step > 0 && v <= end) || (step < 0 && v >= end) {
                out.push(Value::from(v));
                if out.len() > 1000 {
                    return Err(bad("at most 1000 elements"));
                }
                v += step;
            }
            Ok(Value::Array(out))
        }
        "States.ArrayGetItem" => {
            count(2..=2)?;
            let a = array(&args[0], "the first argument")?;
            let i = int(&args[1], "the index")?;
            usize::try_from(i)
                .ok()
                .and_then(|i| a.get(i).cloned())
                .ok_or_else(|| bad(&format!("index {i} is out of bounds for an array of {}", a.len())))
        }
        "States.ArrayLength" => {
            count(1..=1)?;
            Ok(Value::from(array(&args[0], "the argument")?.len()))
        }
        "States.ArrayUnique" => {
            count(1..=1)?;
            let mut out: Vec<Value> = Vec::new();
            for v in array(&args[0], "the argument")? {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
            Ok(Value::Array(out))
        }
        "States.Base64Encode" => {
            count(1..=1)?;
            let s = string(&args[0], "the argument")?;
            if s.len() > 10_000 {
                return Err(bad("at most 10,000 characters"));
            }
            Ok(Value::String(base64::engine::general_purpose::STANDARD.encode(s)))
        }
        "States.Base64Decode" => {
            count(1..=1)?;
            let s = string(&args[0], "the argument")?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(|e| bad(&format!("not base64: {e}")))?;
            String::from_utf8(bytes)
                .map(Value::String)
                .map_err(|_| bad("the decoded data is not UTF-8"))
        }
        "States.Hash" => {
            count(2..=2)?;
            let data = match &args[0] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let algo = string(&args[1], "the algorithm")?;
            Ok(Value::String(hash(&algo, data.as_bytes()).ok_or_else(|| {
                bad(&format!(
                    "unknown algorithm '{algo}' (MD5, SHA-1, SHA-256, SHA-384, SHA-512)"
                ))
            })?))
        }
        "States.JsonMerge" => {
            count(3..=3)?;
            if args[2] != Value::Bool(false) {
                return Err(bad("only a shallow merge (false) is supported, as in AWS"));
            }
            let (Value::Object(a), Value::Object(b)) = (&args[0], &args[1]) else {
                return Err(bad("both arguments must be objects"));
            };
            let mut out: Map<String, Value> = a.clone();
            for (k, v) in b {
                out.insert(k.clone(), v.clone());
            }
            Ok(Value::Object(out))
        }
        "States.MathAdd" => {
            count(2..=2)?;
            let sum = int(&args[0], "the first argument")?
                .checked_add(int(&args[1], "the second argument")?)
                .ok_or_else(|| bad("overflow"))?;
            Ok(Value::from(sum))
        }
        "States.MathRandom" => {
            count(2..=3)?;
            let (start, end) = (int(&args[0], "start")?, int(&args[1], "end")?);
            if end <= start {
                return Err(bad("end must be greater than start"));
            }
            let span = (end - start) as u64;
            Ok(Value::from(start + (rng() % span) as i64))
        }
        "States.UUID" => {
            count(0..=0)?;
            let (a, b) = (rng(), rng());
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&a.to_be_bytes());
            bytes[8..].copy_from_slice(&b.to_be_bytes());
            bytes[6] = (bytes[6] & 0x0f) | 0x40;
            bytes[8] = (bytes[8] & 0x3f) | 0x80;
            let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            Ok(Value::String(format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )))
        }
        "States.StringSplit" => {
            count(2..=2)?;
            let s = string(&args[0], "the string")?;
            let d = string(&args[1], "the delimiters")?;
            Ok(Value::Array(
                s.split(|c| d.contains(c))
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_owned()))
                    .collect(),
            ))
        }
        other => Err(bad(&format!("'{other}' is not an intrinsic function"))),
    }
}

fn describe(n: &std::ops::RangeInclusive<usize>) -> String {
    if n.start() == n.end() {
        n.start().to_string()
    } else {
        format!("{} to {}", n.start(), n.end())
    }
}

/// `States.Format`: each `{}` takes the next argument (a string as is, anything else as JSON);
/// `\{` and `\}` are literal braces.
fn format(t: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut it = t.chars().peekable();
    let mut used = 0;
    while let Some(c) = it.next() {
        match c {
            '\\' if matches!(it.peek(), Some('{') | Some('}')) => out.push(it.next().expect("peeked")),
            '{' if it.peek() == Some(&'}') => {
                it.next();
                let v = args
                    .get(used)
                    .ok_or_else(|| format!("the template has more {{}} than the {} argument(s)", args.len()))?;
                match v {
                    Value::String(s) => out.push_str(s),
                    other => out.push_str(&other.to_string()),
                }
                used += 1;
            }
            c => out.push(c),
        }
    }
    if used != args.len() {
        return Err(format!("{} argument(s) for {used} placeholder(s)", args.len()));
    }
    Ok(out)
}

fn hash(algo: &str, data: &[u8]) -> Option<String> {
    use sha2::Digest as _;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    Some(match algo {
        "MD5" => hex(&md5::Md5::digest(data)),
        "SHA-1" => hex(&sha1::Sha1::digest(data)),
        "SHA-256" => hex(&sha2::Sha256::digest(data)),
        "SHA-384" => hex(&sha2::Sha384::digest(data)),
        "SHA-512" => hex(&sha2::Sha512::digest(data)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(expr: &str, input: Value) -> Result<Value, Failure> {
        let mut n = 0u64;
        let mut rng = move || {
            n += 1;
            n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        };
        evaluate(expr, &input, &json!({"Execution": {"Name": "run-1"}}), &mut rng)
    }

    #[test]
    fn each_intrinsic_gives_what_aws_documents() {
        // The examples of the AWS developer guide's "Intrinsic functions" page.
        let cases = [
            (
                "States.Format('Hello, my name is {}.', $.name)",
                json!({"name": "Arnav"}),
                json!("Hello, my name is Arnav."),
            ),
            (
                "States.Format('{} \\{literal\\} {}', 1, $$.Execution.Name)",
                json!({}),
                json!("1 {literal} run-1"),
            ),
            (
                "States.StringToJson($.s)",
                json!({"s": "{\"number\": 20}"}),
                json!({"number": 20}),
            ),
            (
                "States.JsonToString($.o)",
                json!({"o": {"a": [1, true]}}),
                json!("{\"a\":[1,true]}"),
            ),
            (
                "States.Array('Foo', 2020, $.x, null)",
                json!({"x": {"y": 1}}),
                json!(["Foo", 2020, {"y": 1}, null]),
            ),
            (
                "States.ArrayPartition($.a, 4)",
                json!({"a": [1, 2, 3, 4, 5, 6, 7, 8, 9]}),
                json!([[1, 2, 3, 4], [5, 6, 7, 8], [9]]),
            ),
            ("States.ArrayContains($.a, 5)", json!({"a": [1, 5]}), json!(true)),
            ("States.ArrayRange(1, 9, 2)", json!({}), json!([1, 3, 5, 7, 9])),
            ("States.ArrayGetItem($.a, 1)", json!({"a": [1, 2, 3]}), json!(2)),
            ("States.ArrayLength($.a)", json!({"a": [1, 2, 3]}), json!(3)),
            (
                "States.ArrayUnique($.a)",
                json!({"a": [1, 2, 3, 3, 3, 3, 3]}),
                json!([1, 2, 3]),
            ),
            (
                "States.Base64Encode('Data to encode')",
                json!({}),
                json!("RGF0YSB0byBlbmNvZGU="),
            ),
            (
                "States.Base64Decode('RGF0YSB0byBlbmNvZGU=')",
                json!({}),
                json!("Data to encode"),
            ),
            (
                "States.Hash('input data', 'SHA-1')",
                json!({}),
                json!("aaff4a450a104cd177d28d18d74485e8cae074b7"),
            ),
            (
                "States.JsonMerge($.a, $.b, false)",
                json!({"a": {"k": 1, "j": 1}, "b": {"k": 2}}),
                json!({"k": 2, "j": 1}),
            ),
            ("States.MathAdd($.v, -1)", json!({"v": 111}), json!(110)),
            (
                "States.StringSplit('This.is+a,test=string', '.+,=')",
                json!({}),
                json!(["This", "is", "a", "test", "string"]),
            ),
            (
                "States.Format('{}', States.ArrayLength(States.Array(1, 2)))",
                json!({}),
                json!("2"),
            ),
        ];
        for (expr, input, want) in cases {
            assert_eq!(ev(expr, input), Ok(want), "{expr}");
        }
    }

    #[test]
    fn random_and_uuid_come_from_the_seeded_generator() {
        let r = ev("States.MathRandom(1, 999)", json!({})).expect("a number");
        assert!((1..999).contains(&r.as_i64().expect("an integer")));
        let u = ev("States.UUID()", json!({})).expect("a UUID");
        let u = u.as_str().expect("a string");
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4", "version 4: {u}");
        // The same generator gives the same UUID: runs replay exactly.
        assert_eq!(ev("States.UUID()", json!({})).expect("a UUID"), json!(u));
    }

    #[test]
    fn misuse_is_an_intrinsic_failure_naming_the_function() {
        for expr in [
            "States.Format('{} {}', 1)",
            "States.ArrayGetItem($.a, 7)",
            "States.Hash('x', 'CRC32')",
            "States.Nope(1)",
            "States.ArrayLength('not an array')",
            "States.Format('unterminated)",
        ] {
            let err = ev(expr, json!({"a": [1]})).expect_err(expr);
            assert_eq!(err.error, "States.IntrinsicFailure", "{expr}");
        }
        // A path that selects nothing is the path's error, as AWS reports it.
        assert_eq!(
            ev("States.ArrayLength($.missing)", json!({}))
                .expect_err("no path")
                .error,
            "States.Runtime"
        );
    }
}
