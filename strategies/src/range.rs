//! Ranges of the strategies' numeric settings, checked while a `[strategies.NAME]` table is read
//! (for serde's `deserialize_with`), so that a value out of range is refused with its key and
//! line (see `settings` in `lib.rs`) instead of reaching a model that cannot hold it.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;
use serde::de::Error as _;
use sim::scenario::Dur;

/// The most attempts a request may get, the first included: 1,000 (openai-python's default is
/// 3, the cookbook's 5; beyond a thousand a retry loop is a hang, not a policy).
pub const MAX_ATTEMPTS: u32 = 1_000;

/// Attempts per request, in `[1, MAX_ATTEMPTS]`.
pub fn attempts<'de, D: serde::Deserializer<'de>>(d: D) -> Result<NonZeroU32, D::Error> {
    let v = u32_in::<D, 1, MAX_ATTEMPTS>(d)?;
    Ok(NonZeroU32::new(v).expect("the range starts at 1"))
}

/// A whole number in `[MIN, MAX]`.
pub fn u32_in<'de, D: serde::Deserializer<'de>, const MIN: u32, const MAX: u32>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if !(MIN..=MAX).contains(&v) {
        return Err(D::Error::custom(format!(
            "{v} is out of range: it lies in [{MIN}, {MAX}]"
        )));
    }
    Ok(v)
}

/// An optional whole number in `[MIN, MAX]`.
pub fn opt_u64_in<'de, D: serde::Deserializer<'de>, const MIN: u64, const MAX: u64>(
    d: D,
) -> Result<Option<u64>, D::Error> {
    let v = Option::<u64>::deserialize(d)?;
    if let Some(v) = v
        && !(MIN..=MAX).contains(&v)
    {
        return Err(D::Error::custom(format!(
            "{v} is out of range: it lies in [{MIN}, {MAX}]"
        )));
    }
    Ok(v)
}

/// A duration in `[MIN_MS, MAX_MS]` milliseconds.
pub fn dur_in<'de, D: serde::Deserializer<'de>, const MIN_MS: u64, const MAX_MS: u64>(d: D) -> Result<Dur, D::Error> {
    let v = Dur::deserialize(d)?;
    let (min, max) = (Duration::from_millis(MIN_MS), Duration::from_millis(MAX_MS));
    if !(min..=max).contains(&v.0) {
        return Err(D::Error::custom(format!(
            "`{}` is out of range: it lies in [{}, {}]",
            String::from(v),
            String::from(Dur(min)),
            String::from(Dur(max))
        )));
    }
    Ok(v)
}
