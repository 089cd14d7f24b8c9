//! OpenAI's wire format: validating a chat-completion request field by field, and the bodies of
//! answers and errors (OpenAI API reference; 429 bodies as captured in REFERENCE.md).

use serde_json::{Value, json};

use crate::headers::go_duration;
use crate::limiter::LimitKind;
use crate::provider::Throttled;

/// A chat-completion request, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    /// `model`.
    pub model: String,
    /// `messages` as (role, text content, name).
    pub messages: Vec<(String, String, Option<String>)>,
    /// `max_tokens` or `max_completion_tokens`, if given.
    pub max_tokens: Option<u32>,
    /// `stream`.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
}

/// An error answer: status and OpenAI's error body.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// `{"error": {...}}`.
    pub body: Value,
}

impl ApiError {
    /// 400 `invalid_request_error`, naming the parameter.
    pub fn invalid(message: impl Into<String>, param: Option<&str>, code: Option<&str>) -> Self {
        Self::new(400, message, "invalid_request_error", param, code)
    }

    /// An error with OpenAI's body shape.
    pub fn new(status: u16, message: impl Into<String>, kind: &str, param: Option<&str>, code: Option<&str>) -> Self {
        ApiError {
            status,
            body: json!({ "error": { "message": message.into(), "type": kind, "param": param, "code": code } }),
        }
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

fn wrong_type(param: &str, expected: &str, got: &Value) -> ApiError {
    ApiError::invalid(
        format!(
            "Invalid type for '{param}': expected {expected}, but got {} instead.",
            type_name(got)
        ),
        Some(param),
        Some("invalid_type"),
    )
}

/// Parses and validates a request body; every problem is a 400 naming the parameter.
pub fn parse_chat(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(
            format!("We could not parse the JSON body of your request. ({e}) The OpenAI API expects a JSON payload."),
            None,
            None,
        )
    })?;
    let Value::Object(obj) = &v else {
        return Err(wrong_type("body", "an object", &v));
    };
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Err(ApiError::invalid(
                "you must provide a model parameter",
                Some("model"),
                None,
            ));
        }
        Some(other) => return Err(wrong_type("model", "a string", other)),
    };
    let messages = match obj.get("messages") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => {
            return Err(ApiError::invalid(
                "Invalid 'messages': empty array. Expected an array with minimum length 1.",
                Some("messages"),
                Some("empty_array"),
            ));
        }
        Some(other) => return Err(wrong_type("messages", "an array", other)),
        None => {
            return Err(ApiError::invalid(
                "Missing required parameter: 'messages'.",
                Some("messages"),
                Some("missing_required_parameter"),
            ));
        }
    };
    let mut parsed = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let at = |f: &str| format!("messages[{i}].{f}");
        let Value::Object(m) = m else {
            return Err(wrong_type(&format!("messages[{i}]"), "an object", m));
        };
        let role = match m.get("role") {
            Some(Value::String(r)) => r.clone(),
            Some(other) => return Err(wrong_type(&at("role"), "a string", other)),
            None => {
                return Err(ApiError::invalid(
                    format!("Missing required parameter: '{}'.", at("role")),
                    Some(&at("role")),
                    Some("missing_required_parameter"),
                ));
            }
        };
        let content = match m.get("content") {
            Some(Value::String(c)) => c.clone(),
            Some(Value::Null) | None => String::new(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
            Some(other) => {
                return Err(wrong_type(
                    &at("content"),
                    "a string or an array of content parts",
                    other,
                ));
            }
        };
        let name = match m.get("name") {
            Some(Value::String(n)) => Some(n.clone()),
            Some(other) => return Err(wrong_type(&at("name"), "a string", other)),
            None => None,
        };
        parsed.push((role, content, name));
    }
    let mut max_tokens = None;
    for key in ["max_tokens", "max_completion_tokens"] {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => match n.as_i64() {
                Some(x) if x >= 1 => max_tokens = Some(u32::try_from(x).unwrap_or(u32::MAX)),
                Some(x) => {
                    return Err(ApiError::invalid(
                        format!(
                            "Invalid '{key}': integer below minimum value. Expected a value >= 1, but got {x} instead."
                        ),
                        Some(key),
                        Some("integer_below_min_value"),
                    ));
                }
                None => return Err(wrong_type(key, "an integer", &Value::Number(n.clone()))),
            },
            Some(other) => return Err(wrong_type(key, "an integer", other)),
        }
    }
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(wrong_type("stream", "a boolean", other)),
    };
    let include_usage = match obj.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(wrong_type("stream_options.include_usage", "a boolean", other)),
        },
        Some(other) => return Err(wrong_type("stream_options", "an object", other)),
    };
    Ok(ChatRequest {
        model,
        messages: parsed,
        max_tokens,
        stream,
        include_usage,
    })
}

/// The body of a 429 from a rate limit, OpenAI style: "Rate limit reached for MODEL in organization
/// ORG on tokens per min (TPM): Limit L, Used U, Requested R. Please try again in 644ms. …".
pub fn throttled_openai(model: &str, org: &str, t: &Throttled) -> Value {
    let (what, kind) = match t.limit {
        LimitKind::Tokens => ("tokens per min (TPM)", "tokens"),
        LimitKind::Requests => ("requests per min (RPM)", "requests"),
    };
    json!({ "error": {
        "message": format!(
            "Rate limit reached for {model} in organization {org} on {what}: Limit {}, Used {}, Requested {}. \
             Please try again in {}. Visit https://platform.openai.com/account/rate-limits to learn more.",
            t.limit_value, t.used, t.requested, go_duration(t.retry_after)
        ),
        "type": kind, "param": null, "code": "rate_limit_exceeded"
    }})
}

/// The body of a 429 from a rate limit, Azure style (note `code` is the string "429").
pub fn throttled_azure(t: &Throttled) -> Value {
    let what = match t.limit {
        LimitKind::Tokens => "token rate limit",
        LimitKind::Requests => "call rate limit",
    };
    let secs = t.retry_after.as_millis().div_ceil(1000).max(1);
    json!({ "error": {
        "code": "429",
        "message": format!(
            "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded \
             {what} of your current OpenAI S0 pricing tier. Please retry after {secs} seconds. Please go here: \
             https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."
        )
    }})
}

/// The body of a 429 for a request larger than the whole limit: no retry can help.
pub fn too_large(model: &str, org: &str, limit: LimitKind, limit_value: u64, requested: u64) -> Value {
    let what = match limit {
        LimitKind::Tokens => "tokens per min (TPM)",
        LimitKind::Requests => "requests per min (RPM)",
    };
    json!({ "error": {
        "message": format!(
            "Request too large for {model} in organization {org} on {what}: Limit {limit_value}, Requested {requested}. \
             The input or output tokens must be reduced in order to run successfully."
        ),
        "type": "tokens", "param": null, "code": "rate_limit_exceeded"
    }})
}

/// A 5xx body.
pub fn server_error(status: u16) -> Value {
    if status == 503 {
        json!({ "error": { "message": "The server is overloaded or not ready yet.", "type": "server_error", "param": null, "code": "server_is_overloaded" } })
    } else {
        json!({ "error": { "message": "The server had an error while processing your request. Sorry about that!", "type": "server_error", "param": null, "code": null } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(body: &str) -> ApiError {
        parse_chat(body.as_bytes()).expect_err("invalid")
    }

    #[test]
    fn valid_requests_parse() {
        let r = parse_chat(br#"{"model":"m","messages":[{"role":"user","content":"hi","name":"bo"}],"max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}"#)
            .expect("valid");
        assert_eq!(r.messages, vec![("user".into(), "hi".into(), Some("bo".into()))]);
        assert_eq!((r.max_tokens, r.stream, r.include_usage), (Some(5), true, true));
    }

    #[test]
    fn every_bad_field_is_named() {
        assert_eq!(bad("{not json").status, 400);
        assert_eq!(
            bad(r#"{"messages":[{"role":"user","content":"x"}]}"#).body["error"]["param"],
            "model"
        );
        assert_eq!(bad(r#"{"model":5,"messages":[]}"#).body["error"]["param"], "model");
        assert_eq!(
            bad(r#"{"model":"m","messages":[]}"#).body["error"]["code"],
            "empty_array"
        );
        assert_eq!(
            bad(r#"{"model":"m","messages":[{"content":"x"}]}"#).body["error"]["param"],
            "messages[0].role"
        );
        assert_eq!(
            bad(r#"{"model":"m","messages":[{"role":"user","content":7}]}"#).body["error"]["param"],
            "messages[0].content"
        );
        let neg = bad(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":-5}"#);
        assert_eq!(neg.body["error"]["code"], "integer_below_min_value");
        assert!(neg.body["error"]["message"].as_str().expect("text").contains("got -5"));
        assert_eq!(
            bad(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":"9"}"#).body["error"]["param"],
            "max_tokens"
        );
        assert_eq!(
            bad(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#).body["error"]["param"],
            "stream"
        );
        assert_eq!(bad("[1,2]").body["error"]["type"], "invalid_request_error");
    }
}
