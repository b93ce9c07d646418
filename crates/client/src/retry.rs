//! Retry policy: exponential backoff with full jitter, seeded randomness.

use std::time::Duration;

use concord_rng::SplitMix64;

/// When and how often a safe call is tried again.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: never retry).
    pub max_attempts: u32,
    /// The backoff's first ceiling.
    pub base_delay: Duration,
    /// The largest ceiling the backoff grows to.
    pub max_delay: Duration,
    /// Time for all attempts together, pauses included.
    pub budget: Duration,
    /// Seed of the jitter (tests pass their own to get the same pauses).
    pub seed: u64,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(25),
            max_delay: Duration::from_secs(1),
            budget: Duration::from_secs(10),
            seed: 0x0063_6f6e_636f_7264,
        }
    }
}

/// Pauses drawn with "full jitter": uniform in `[0, min(max, base * 2^n)]`.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    rng: SplitMix64,
}

impl Backoff {
    /// A backoff with `policy`'s delays and randomness from `seed`.
    pub fn new(policy: &RetryPolicy, seed: u64) -> Backoff {
        Backoff {
            base: policy.base_delay,
            max: policy.max_delay,
            rng: SplitMix64::new(seed),
        }
    }

    /// The ceiling before retry number `retry` (0 for the first retry).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The pause before retry number `retry`.
    pub fn delay(&mut self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry).as_micros() as u64;
        Duration::from_micros(self.rng.below(ceiling + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_is_bounded_and_seeded() {
        let policy = RetryPolicy::default();
        let mut a = Backoff::new(&policy, 7);
        let mut b = Backoff::new(&policy, 7);
        for n in 0..30 {
            let d = a.delay(n);
            assert_eq!(d, b.delay(n));
            assert!(d <= a.ceiling(n));
            assert!(a.ceiling(n) <= policy.max_delay);
        }
        assert_eq!(a.ceiling(0), policy.base_delay);
        assert_eq!(a.ceiling(2), policy.base_delay * 4);
    }

    #[test]
    fn jitter_spreads() {
        let policy = RetryPolicy::default();
        let mut a = Backoff::new(&policy, 1);
        let draws: Vec<_> = (0..50).map(|_| a.delay(5)).collect();
        let small = draws.iter().filter(|d| **d < a.ceiling(5) / 2).count();
        assert!(small > 5 && small < 45, "{small} of 50 below half");
    }
}
