//! Seeded randomness helpers over the core's splitmix64 stream.

pub use concord_raft::rng::SplitMix64;

/// Convenience methods used everywhere in the simulator.
pub trait RngExt {
    /// True with probability `p` (0.0..=1.0).
    fn chance(&mut self, p: f64) -> bool;
    /// Uniform in `[lo, hi]`.
    fn range(&mut self, lo: u64, hi: u64) -> u64;
    /// Uniform float in `[0, 1)`.
    fn unit(&mut self) -> f64;
    /// A random element.
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T;
}

impl RngExt for SplitMix64 {
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi);
        lo + self.below(hi - lo + 1)
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}
