//! Per-node clocks that run fast or slow: each node's tick period is the
//! nominal one times (1 + skew), and the skew drifts in a bounded random walk.
//! Lease reads are exactly as safe as these clocks are within the bound the
//! core was configured with (`max_clock_drift_ticks`).

use crate::rng::SplitMix64;

/// One node's clock.
#[derive(Clone, Debug)]
pub struct Clock {
    /// Current rate error: +0.05 means ticks come 5% slower.
    pub skew: f64,
    /// Largest |skew| this clock may reach.
    pub bound: f64,
}

impl Clock {
    /// A clock with a random initial skew within `bound`.
    pub fn new(rng: &mut SplitMix64, bound: f64) -> Self {
        Clock {
            skew: (rng.unit() * 2.0 - 1.0) * bound,
            bound,
        }
    }

    /// Sim-time until the next tick, drifting a little each time.
    pub fn next_tick_in(&mut self, rng: &mut SplitMix64, nominal_us: u64) -> u64 {
        let step = (rng.unit() * 2.0 - 1.0) * self.bound * 0.05;
        self.skew = (self.skew + step).clamp(-self.bound, self.bound);
        ((nominal_us as f64) * (1.0 + self.skew)).max(1.0) as u64
    }
}
