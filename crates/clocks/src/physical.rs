//! Physical clocks, injectable so that tests and the simulator own time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of physical time in nanoseconds since the Unix epoch. It may
/// jump backwards (NTP steps); the hybrid clock above it never does.
pub trait PhysicalClock {
    /// The current physical time, in nanoseconds.
    fn now_nanos(&self) -> u64;
}

/// The operating system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl PhysicalClock for SystemClock {
    fn now_nanos(&self) -> u64 {
        // Before 1970 reads as 0; after 2554 saturates: both are not ours.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// A clock set by hand. Clones share the same time, so a test keeps one
/// handle and gives another to the code under test.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock reading `nanos`.
    pub fn new(nanos: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(nanos)))
    }

    /// Sets the time (backwards too).
    pub fn set(&self, nanos: u64) {
        self.0.store(nanos, Ordering::SeqCst);
    }

    /// Moves the time forward by `nanos`.
    pub fn advance(&self, nanos: u64) {
        self.0.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl PhysicalClock for ManualClock {
    fn now_nanos(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
