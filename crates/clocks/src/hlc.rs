//! The hybrid logical clock (Kulkarni et al. 2014), with CockroachDB's
//! max-offset guard.

use crate::PhysicalClock;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// An HLC timestamp: physical nanoseconds, then a logical counter that
/// orders events sharing a physical part. Ordered as the tuple.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp {
    /// Physical part, nanoseconds since the Unix epoch.
    pub wall: u64,
    /// Logical part.
    pub logical: u32,
}

impl Timestamp {
    /// The timestamp `(wall, logical)`.
    pub fn new(wall: u64, logical: u32) -> Self {
        Timestamp { wall, logical }
    }

    /// The smallest timestamp after this one.
    fn succ(self) -> Timestamp {
        match self.logical.checked_add(1) {
            Some(l) => Timestamp::new(self.wall, l),
            // 2^32 events in one nanosecond: borrow from the physical part.
            None => Timestamp::new(self.wall + 1, 0),
        }
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{:09},{}",
            self.wall / 1_000_000_000,
            self.wall % 1_000_000_000,
            self.logical
        )
    }
}

/// What to do with a remote timestamp further ahead of our physical clock
/// than the maximum offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetPolicy {
    /// Refuse it: the message is rejected and the clock does not move
    /// (CockroachDB's behaviour for a node whose clock is too far off).
    Refuse,
    /// Accept it but count it in [`Hlc::flagged`], for diagnostics.
    Flag,
}

/// A remote timestamp was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HlcError {
    /// The remote clock is ahead of ours by more than the maximum offset.
    #[error("remote timestamp {remote} is {ahead_nanos} ns ahead of the local physical clock (max offset {max_offset_nanos} ns)")]
    TooFarAhead {
        /// The refused timestamp.
        remote: Timestamp,
        /// By how much it is ahead of our physical clock.
        ahead_nanos: u64,
        /// The configured bound.
        max_offset_nanos: u64,
    },
}

/// A hybrid logical clock over the physical clock `C`.
///
/// Invariants: every timestamp it returns is greater than every timestamp
/// it returned or received before (including, after [`Hlc::resume`], the
/// persisted one), and its physical part is at least the physical clock's
/// reading. Under [`OffsetPolicy::Refuse`] with a physical clock that does
/// not step back, the physical part also stays within `max_offset` of the
/// physical clock.
#[derive(Debug)]
pub struct Hlc<C> {
    clock: C,
    last: Timestamp,
    max_offset: u64,
    policy: OffsetPolicy,
    flagged: u64,
}

impl<C: PhysicalClock> Hlc<C> {
    /// A fresh clock (nothing issued yet).
    pub fn new(clock: C, max_offset_nanos: u64, policy: OffsetPolicy) -> Self {
        Hlc {
            clock,
            last: Timestamp::default(),
            max_offset: max_offset_nanos,
            policy,
            flagged: 0,
        }
    }

    /// A clock restarted after a crash whose last persisted timestamp was
    /// `persisted`: everything it issues is later, even if the physical
    /// clock came back behind. Monotonic across restarts holds as long as
    /// the owner persists [`Hlc::last`] (or an upper bound of it) before
    /// it lets any timestamp it issued leave the process.
    pub fn resume(
        clock: C,
        max_offset_nanos: u64,
        policy: OffsetPolicy,
        persisted: Timestamp,
    ) -> Self {
        let mut h = Self::new(clock, max_offset_nanos, policy);
        h.last = persisted;
        h
    }

    /// The timestamp of a local or send event.
    pub fn now(&mut self) -> Timestamp {
        let pt = self.clock.now_nanos();
        self.last = if pt > self.last.wall {
            Timestamp::new(pt, 0)
        } else {
            self.last.succ()
        };
        self.last
    }

    /// The timestamp of receiving a message stamped `remote`: later than
    /// both our last timestamp and `remote`. A remote more than the max
    /// offset ahead of our physical clock is refused or flagged per policy.
    pub fn update(&mut self, remote: Timestamp) -> Result<Timestamp, HlcError> {
        let pt = self.clock.now_nanos();
        let ahead = remote.wall.saturating_sub(pt);
        if ahead > self.max_offset {
            match self.policy {
                OffsetPolicy::Refuse => {
                    return Err(HlcError::TooFarAhead {
                        remote,
                        ahead_nanos: ahead,
                        max_offset_nanos: self.max_offset,
                    })
                }
                OffsetPolicy::Flag => self.flagged += 1,
            }
        }
        let top = self.last.max(remote);
        self.last = if pt > top.wall {
            Timestamp::new(pt, 0)
        } else {
            top.succ()
        };
        debug_assert!(self.last > remote && self.last.wall >= pt);
        Ok(self.last)
    }

    /// The last timestamp issued (what to persist).
    pub fn last(&self) -> Timestamp {
        self.last
    }

    /// The configured maximum offset, nanoseconds.
    pub fn max_offset_nanos(&self) -> u64 {
        self.max_offset
    }

    /// Remote timestamps accepted past the max offset ([`OffsetPolicy::Flag`]).
    pub fn flagged(&self) -> u64 {
        self.flagged
    }

    /// The physical clock underneath.
    pub fn physical(&self) -> &C {
        &self.clock
    }
}
