//! The six `x-ratelimit-*` values OpenAI sends on every response, and its duration format.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The rate-limit values of one response (OpenAI "Rate limits" guide: `x-ratelimit-limit-requests`,
/// `x-ratelimit-limit-tokens`, `x-ratelimit-remaining-*`, `x-ratelimit-reset-*`). A limit that is not
/// configured is `None` and its headers are omitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitHeaders {
    /// `x-ratelimit-limit-requests`.
    pub limit_requests: Option<u64>,
    /// `x-ratelimit-limit-tokens`.
    pub limit_tokens: Option<u64>,
    /// `x-ratelimit-remaining-requests`.
    pub remaining_requests: Option<u64>,
    /// `x-ratelimit-remaining-tokens`.
    pub remaining_tokens: Option<u64>,
    /// `x-ratelimit-reset-requests`: time until the request limit is whole again.
    pub reset_requests: Option<Duration>,
    /// `x-ratelimit-reset-tokens`: time until the token limit is whole again.
    pub reset_tokens: Option<Duration>,
}

impl RateLimitHeaders {
    /// The headers as (name, value) pairs, in OpenAI's order, resets written as Go durations.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(6);
        let mut push = |name, v: Option<String>| {
            if let Some(v) = v {
                out.push((name, v));
            }
        };
        push("x-ratelimit-limit-requests", self.limit_requests.map(|v| v.to_string()));
        push("x-ratelimit-limit-tokens", self.limit_tokens.map(|v| v.to_string()));
        push(
            "x-ratelimit-remaining-requests",
            self.remaining_requests.map(|v| v.to_string()),
        );
        push(
            "x-ratelimit-remaining-tokens",
            self.remaining_tokens.map(|v| v.to_string()),
        );
        push("x-ratelimit-reset-requests", self.reset_requests.map(go_duration));
        push("x-ratelimit-reset-tokens", self.reset_tokens.map(go_duration));
        out
    }
}

/// Formats a duration as Go's `time.Duration.String` does, rounded up to whole milliseconds, which
/// is how OpenAI writes reset times: `0s`, `12ms`, `1.5s`, `6m0s`, `1h2m3s` (OpenAI "Rate limits"
/// guide; Go `time/time.go`).
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_nanos().div_ceil(1_000_000);
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, frac) = (rest / 1000, rest % 1000);
    let mut secs = s.to_string();
    if frac > 0 {
        let f = format!("{frac:03}");
        secs.push('.');
        secs.push_str(f.trim_end_matches('0'));
    }
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

/// Parses a Go-style duration (`1s`, `6m0s`, `12ms`, `1.5s`, `1h2m3.5s`, `250us`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if num_end == 0 {
            return None;
        }
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_openai_writes_them() {
        // The examples are the ones OpenAI's guide shows.
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(go_duration(Duration::from_millis(12)), "12ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(
            go_duration(Duration::from_micros(11_400)),
            "12ms",
            "rounds up to whole ms"
        );
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_millis(3_723_250)), "1h2m3.25s");
    }

    #[test]
    fn written_durations_parse_back() {
        for ms in [1u64, 12, 999, 1000, 1500, 59_999, 360_000, 3_723_250] {
            let d = Duration::from_millis(ms);
            let back = parse_go_duration(&go_duration(d)).expect("parses");
            assert_eq!(back.as_millis(), d.as_millis(), "{}", go_duration(d));
        }
        assert_eq!(parse_go_duration("nonsense"), None);
        assert_eq!(parse_go_duration(""), None);
    }
}
