//! Number formatting shared by the report types and the cost model.

/// Rounds to 6 decimals, so that reports carry no float noise.
pub fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}
