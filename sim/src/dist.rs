//! Distributions of the workload's integer quantities (chunks per file, token counts).

use serde::{Deserialize, Serialize};
use simkit::rng::SimRng;

/// A distribution of positive integers, written in TOML as
/// `{ dist = "fixed", value = 150 }`, `{ dist = "uniform", min = 5, max = 30 }` or
/// `{ dist = "normal", mean = 1200, stddev = 300 }` (rounded, and never below 1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawDist", into = "RawDist")]
pub struct Dist(RawDist);

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "kebab-case", deny_unknown_fields)]
enum RawDist {
    Fixed { value: u32 },
    Uniform { min: u32, max: u32 },
    Normal { mean: f64, stddev: f64 },
}

impl TryFrom<RawDist> for Dist {
    type Error = String;
    fn try_from(raw: RawDist) -> Result<Self, String> {
        match raw {
            RawDist::Fixed { value: 0 } => Err("`value` must be at least 1".into()),
            RawDist::Uniform { min: 0, .. } => Err("`min` must be at least 1".into()),
            RawDist::Uniform { min, max } if min > max => {
                Err(format!("`min` ({min}) must not be greater than `max` ({max})"))
            }
            RawDist::Normal { mean, .. } if !(mean.is_finite() && mean >= 1.0) => {
                Err(format!("`mean` ({mean}) must be a finite number >= 1"))
            }
            RawDist::Normal { stddev, .. } if !(stddev.is_finite() && stddev >= 0.0) => {
                Err(format!("`stddev` ({stddev}) must be a finite number >= 0"))
            }
            ok => Ok(Dist(ok)),
        }
    }
}

impl From<Dist> for RawDist {
    fn from(d: Dist) -> RawDist {
        d.0
    }
}

impl Dist {
    /// Always `value`.
    pub fn fixed(value: u32) -> Self {
        Dist::try_from(RawDist::Fixed { value }).expect("fixed() is called with a positive value")
    }

    /// Uniform on `min..=max`.
    pub fn uniform(min: u32, max: u32) -> Self {
        Dist::try_from(RawDist::Uniform { min, max }).expect("uniform() is called with 1 <= min <= max")
    }

    /// One draw.
    pub fn sample(&self, rng: &mut SimRng) -> u32 {
        match self.0 {
            RawDist::Fixed { value } => value,
            RawDist::Uniform { min, max } => rng.range_inclusive(u64::from(min), u64::from(max)) as u32,
            RawDist::Normal { mean, stddev } => {
                let x = mean + stddev * rng.standard_normal();
                x.round().clamp(1.0, f64::from(u32::MAX)) as u32
            }
        }
    }

    /// Refuses a distribution that can draw above `max`: a fixed value or a uniform `max` above
    /// it, or a normal whose mean plus three standard deviations is above it.
    pub fn check_at_most(&self, max: u32) -> Result<(), String> {
        let top = match self.0 {
            RawDist::Fixed { value } => f64::from(value),
            RawDist::Uniform { max, .. } => f64::from(max),
            RawDist::Normal { mean, stddev } => mean + 3.0 * stddev,
        };
        if top > f64::from(max) {
            return Err(format!(
                "draws can reach {top}, above the largest allowed, {max} (for a normal: mean + 3 × stddev)"
            ));
        }
        Ok(())
    }

    /// The smallest value a draw can take.
    pub fn min(&self) -> u32 {
        match self.0 {
            RawDist::Fixed { value } => value,
            RawDist::Uniform { min, .. } => min,
            RawDist::Normal { .. } => 1,
        }
    }

    /// The mean of the distribution (before clamping).
    pub fn mean(&self) -> f64 {
        match self.0 {
            RawDist::Fixed { value } => f64::from(value),
            RawDist::Uniform { min, max } => (f64::from(min) + f64::from(max)) / 2.0,
            RawDist::Normal { mean, .. } => mean,
        }
    }
}
