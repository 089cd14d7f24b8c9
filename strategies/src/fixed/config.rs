//! Settings of the `fixed` strategy, read from `[strategies.fixed]`.

use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use crate::retry::Backoff;

/// `[strategies.fixed]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedConfig {
    /// Attempts per chunk, the first included, 1 to 1,000. Default 8.
    #[serde(default = "default_attempts")]
    pub max_attempts: Attempts,
    /// Delays between attempts.
    #[serde(default)]
    pub backoff: Backoff,
}

/// A number of attempts, 1 to [`crate::range::MAX_ATTEMPTS`]. Default 8.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Attempts(#[serde(deserialize_with = "crate::range::attempts")] pub NonZeroU32);

impl Default for Attempts {
    fn default() -> Self {
        default_attempts()
    }
}

fn default_attempts() -> Attempts {
    Attempts(NonZeroU32::new(8).expect("8 is not zero"))
}
