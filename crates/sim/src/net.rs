//! The simulated network between nodes and clients: per-message loss, delay,
//! reordering (random delays), duplication, one-way cuts (partitions of any
//! shape) and clogging (links that delay everything for a while).

use std::collections::BTreeSet;

use crate::rng::SplitMix64;

/// Endpoint ids: Raft members use their node id; clients use `CLIENT_BASE + id`.
pub const CLIENT_BASE: u64 = 1000;

/// Link behaviour.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Probability a message is lost.
    pub loss: f64,
    /// Probability a message is delivered twice.
    pub duplicate: f64,
    /// Delay range in microseconds (random delays reorder messages).
    pub delay_us: (u64, u64),
    /// Extra delay on clogged links.
    pub clog_delay_us: (u64, u64),
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            loss: 0.0,
            duplicate: 0.0,
            delay_us: (100, 2_000),
            clog_delay_us: (50_000, 400_000),
        }
    }
}

/// Network state.
#[derive(Clone, Debug, Default)]
pub struct Net {
    /// Settings.
    pub cfg: NetConfig,
    /// Cut one-way links (from, to): messages are dropped.
    pub cut: BTreeSet<(u64, u64)>,
    /// Clogged one-way links: messages are delayed a lot.
    pub clogged: BTreeSet<(u64, u64)>,
    /// Counters for the report.
    pub sent: u64,
    /// Messages lost to loss or cuts.
    pub dropped: u64,
    /// Messages delivered twice.
    pub duplicated: u64,
}

impl Net {
    /// Delivery delays for one message from `from` to `to`: empty if lost,
    /// two entries if duplicated. Client links (either end at or above
    /// `CLIENT_BASE`) never duplicate: clients talk over connections, and a
    /// refused request that came back to life would make a "definitely had
    /// no effect" answer a lie.
    pub fn schedule(&mut self, rng: &mut SplitMix64, from: u64, to: u64) -> Vec<u64> {
        self.sent += 1;
        if self.cut.contains(&(from, to)) || rng.chance(self.cfg.loss) {
            self.dropped += 1;
            return Vec::new();
        }
        let (lo, hi) = if self.clogged.contains(&(from, to)) {
            self.cfg.clog_delay_us
        } else {
            self.cfg.delay_us
        };
        let first = rng.range(lo, hi);
        let client_link = from >= CLIENT_BASE || to >= CLIENT_BASE;
        if !client_link && rng.chance(self.cfg.duplicate) {
            self.duplicated += 1;
            return vec![first, rng.range(lo, hi)];
        }
        vec![first]
    }

    /// True if `from` can currently reach `to`.
    pub fn connected(&self, from: u64, to: u64) -> bool {
        !self.cut.contains(&(from, to))
    }

    /// Restore every link.
    pub fn heal(&mut self) {
        self.cut.clear();
        self.clogged.clear();
    }

    /// Cut both directions between every pair across `a` and `b`.
    pub fn split(&mut self, a: &[u64], b: &[u64]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x, y));
                self.cut.insert((y, x));
            }
        }
    }
}
