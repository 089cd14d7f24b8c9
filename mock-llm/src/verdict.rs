//! The validator's answer for a chunk: a deterministic function of the seed and the chunk, so a
//! run's results can be checked end to end.

use serde::{Deserialize, Serialize};

use crate::rng::{SimRng, mix64};

/// A chunk's validation result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Verdict {
    /// Whether the chunk passed validation.
    pub valid: bool,
    /// How many issues were found (0 when valid, 1–3 otherwise).
    pub issues: u8,
}

impl Verdict {
    /// The verdict for the chunk identified by `key`, under `seed`, where a share `invalid_rate` of
    /// chunks are invalid.
    pub fn for_chunk(seed: u64, key: u64, invalid_rate: f64) -> Self {
        let mut rng = SimRng::new(mix64(seed ^ mix64(key)));
        if rng.chance(invalid_rate) {
            Verdict {
                valid: false,
                issues: rng.range_inclusive(1, 3) as u8,
            }
        } else {
            Verdict { valid: true, issues: 0 }
        }
    }

    /// A compact code: 1 = valid, 2–4 = invalid with 1–3 issues (0 is left for "no result").
    pub fn code(self) -> u8 {
        if self.valid { 1 } else { 1 + self.issues.clamp(1, 3) }
    }

    /// The inverse of [`Verdict::code`]; `None` for 0 or an unknown code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Verdict { valid: true, issues: 0 }),
            2..=4 => Some(Verdict {
                valid: false,
                issues: code - 1,
            }),
            _ => None,
        }
    }

    /// The completion's content, as the validator model writes it: a JSON object.
    pub fn content(self, key: u64) -> String {
        let issues: Vec<String> = (1..=self.issues)
            .map(|i| format!("issue {i} in chunk {key:#x}"))
            .collect();
        serde_json::json!({ "valid": self.valid, "issues": issues }).to_string()
    }

    /// Reads a verdict back from a completion's content.
    pub fn parse(content: &str) -> Option<Self> {
        #[derive(Deserialize)]
        struct Body {
            valid: bool,
            issues: Vec<String>,
        }
        let body: Body = serde_json::from_str(content).ok()?;
        Some(Verdict {
            valid: body.valid,
            issues: body.issues.len().min(255) as u8,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_a_function_of_seed_and_chunk() {
        let a: Vec<_> = (0..100).map(|k| Verdict::for_chunk(1, k, 0.3)).collect();
        let b: Vec<_> = (0..100).map(|k| Verdict::for_chunk(1, k, 0.3)).collect();
        let c: Vec<_> = (0..100).map(|k| Verdict::for_chunk(2, k, 0.3)).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let invalid = (0..10_000).filter(|k| !Verdict::for_chunk(9, *k, 0.3).valid).count();
        assert!((2_800..3_200).contains(&invalid), "about 30% invalid, got {invalid}");
    }

    #[test]
    fn content_and_code_round_trip() {
        for v in [
            Verdict { valid: true, issues: 0 },
            Verdict {
                valid: false,
                issues: 2,
            },
        ] {
            assert_eq!(Verdict::parse(&v.content(77)), Some(v));
            assert_eq!(Verdict::from_code(v.code()), Some(v));
        }
        assert_eq!(Verdict::parse("not json"), None);
    }
}
