//! [`RunRng`]: a strategy's seeded generator for one purpose, usable through `rand_core`.
//!
//! The values come from [`SimRng`] (xoshiro256++, value-stable across versions of this crate and
//! of the `rand` ecosystem); the `rand_core::RngCore` implementation only lets strategies, ours
//! and users', use that ecosystem's API (`rand::Rng::random_range` and the like) on top of it.

use simkit::rng::SimRng;

/// A seeded generator from [`crate::RunContext::rng`].
#[derive(Clone, Debug)]
pub struct RunRng(SimRng);

impl RunRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(SimRng::new(seed))
    }

    /// A uniform draw in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        self.0.next_f64()
    }

    /// The generator underneath.
    pub fn sim(&mut self) -> &mut SimRng {
        &mut self.0
    }
}

impl rand_core::RngCore for RunRng {
    fn next_u32(&mut self) -> u32 {
        (self.0.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        rand_core::impls::fill_bytes_via_next(self, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::RngCore;

    #[test]
    fn the_same_seed_gives_the_same_stream_through_rand_core() {
        let (mut a, mut b) = (RunRng::new(7), RunRng::new(7));
        let mut bytes = [0u8; 13];
        a.fill_bytes(&mut bytes);
        let mut again = [0u8; 13];
        b.fill_bytes(&mut again);
        assert_eq!(bytes, again);
        assert_eq!(a.next_u64(), b.next_u64());
        // Another seed differs: the stream is really seeded.
        assert_ne!(RunRng::new(8).next_u64(), RunRng::new(7).next_u64());
    }
}
