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
    /// When the client received these values (time since its run started), so that a reader can
    /// age them: a `remaining` seen 5 s ago is not a `remaining` now. Set by the client (the
    /// engine's `RunContext::call`); `None` where unknown. Never sent as a header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<Duration>,
}

/// The header names, in OpenAI's order: the three limits (requests, tokens), remaining and reset.
pub mod names {
    /// `x-ratelimit-limit-requests`.
    pub const LIMIT_REQUESTS: &str = "x-ratelimit-limit-requests";
    /// `x-ratelimit-limit-tokens`.
    pub const LIMIT_TOKENS: &str = "x-ratelimit-limit-tokens";
    /// `x-ratelimit-remaining-requests`.
    pub const REMAINING_REQUESTS: &str = "x-ratelimit-remaining-requests";
    /// `x-ratelimit-remaining-tokens`.
    pub const REMAINING_TOKENS: &str = "x-ratelimit-remaining-tokens";
    /// `x-ratelimit-reset-requests`.
    pub const RESET_REQUESTS: &str = "x-ratelimit-reset-requests";
    /// `x-ratelimit-reset-tokens`.
    pub const RESET_TOKENS: &str = "x-ratelimit-reset-tokens";
}

/// One header's value: a count, or a reset time (written as a Go duration, [`go_duration`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimitValue {
    /// A limit or a remaining amount.
    Count(u64),
    /// Time until the limit is whole again.
    Reset(Duration),
}

impl RateLimitHeaders {
    /// The headers present, as (name, value), in OpenAI's order.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, RateLimitValue)> {
        use RateLimitValue::{Count, Reset};
        [
            (names::LIMIT_REQUESTS, self.limit_requests.map(Count)),
            (names::LIMIT_TOKENS, self.limit_tokens.map(Count)),
            (names::REMAINING_REQUESTS, self.remaining_requests.map(Count)),
            (names::REMAINING_TOKENS, self.remaining_tokens.map(Count)),
            (names::RESET_REQUESTS, self.reset_requests.map(Reset)),
            (names::RESET_TOKENS, self.reset_tokens.map(Reset)),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.map(|v| (name, v)))
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

/// Parses a Go-style duration (`1s`, `6m0s`, `12ms`, `1.5s`, `1h2m3.5s`, `250us`). `None` for
/// anything else, including values no `Duration` can hold (a hostile or broken endpoint's
/// `1e400s` is not a panic).
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
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_the_present_headers_in_openais_order() {
        // A limit that is not configured has no headers; the rest keep OpenAI's order.
        let h = RateLimitHeaders {
            limit_tokens: Some(60_000),
            remaining_tokens: Some(59_000),
            reset_tokens: Some(Duration::from_millis(1_000)),
            ..RateLimitHeaders::default()
        };
        let names: Vec<_> = h.entries().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [names::LIMIT_TOKENS, names::REMAINING_TOKENS, names::RESET_TOKENS]
        );
        assert_eq!(
            h.entries().last(),
            Some((names::RESET_TOKENS, RateLimitValue::Reset(Duration::from_millis(1_000))))
        );
    }

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
        // Values beyond any Duration, from a hostile endpoint, are refused, never a panic.
        assert_eq!(parse_go_duration("99999999999999999999999h"), None);
        assert_eq!(parse_go_duration(&format!("{}s", "9".repeat(400))), None);
        assert_eq!(parse_go_duration(""), None);
    }
}
