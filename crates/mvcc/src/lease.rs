//! Leases: grant, revoke (deleting attached keys in one revision),
//! remaining-TTL checkpoints, and the leader-side expiry queries.
//!
//! The state machine never reads a clock. Expiry times are volatile and
//! leader-local: a grant sets `now_ms + ttl` from the time the proposer wrote
//! into the command, [`State::lease_promote`] (called by a new leader) sets
//! `now + remaining` for every lease, [`State::lease_renew`] serves
//! keep-alives. The leader asks [`State::expired_leases`] and proposes
//! [`crate::Command::LeaseRevoke`] for each; the revocation is what is
//! replicated.

use crate::config::MAX_LEASE_TTL;
use crate::error::{MvccError, Result};
use crate::request::LeaseTimeToLive;
use crate::state::{Lease, State};
use crate::types::{Event, LeaseRecord};

/// Derives a lease id from a log index (splitmix64), positive and non-zero.
fn derive_id(seed: u64) -> i64 {
    ((concord_rng::mix(seed) >> 1) as i64).max(1)
}

impl State {
    /// Grants a lease; `id == 0` derives one from `index`.
    pub(crate) fn lease_grant(
        &mut self,
        index: u64,
        id: i64,
        ttl: i64,
        now_ms: i64,
    ) -> Result<i64> {
        if ttl > MAX_LEASE_TTL {
            return Err(MvccError::LeaseTtlTooLarge);
        }
        if id < 0 {
            return Err(MvccError::LeaseNotFound);
        }
        let id = if id == 0 {
            let mut seed = index;
            let mut id = derive_id(seed);
            while self.leases.contains_key(&id) {
                seed = seed.wrapping_add(1 << 32);
                id = derive_id(seed);
            }
            id
        } else {
            id
        };
        if self.leases.contains_key(&id) {
            return Err(MvccError::LeaseExists);
        }
        let ttl = ttl.max(1);
        let rec = LeaseRecord {
            id,
            ttl,
            remaining_ttl: 0,
        };
        self.changes.leases.push((id, Some(rec.clone())));
        // The expiry is on the applying member's clock when it has one:
        // the proposer's clock (a follower's, say) means nothing here.
        let now_ms = self.local_now_ms.unwrap_or(now_ms);
        let expiry_ms = Some(now_ms.saturating_add(ttl.saturating_mul(1000)));
        self.leases.insert(
            id,
            Lease {
                rec,
                keys: Default::default(),
                expiry_ms,
            },
        );
        Ok(id)
    }

    /// Revokes a lease: its keys are deleted in one revision.
    pub(crate) fn lease_revoke(&mut self, id: i64) -> Result<Vec<Event>> {
        let lease = self.leases.get(&id).ok_or(MvccError::LeaseNotFound)?;
        let keys: Vec<_> = lease.keys.iter().cloned().collect();
        let mut w = self.writer();
        for k in keys {
            self.delete_raw(&mut w, k)?;
        }
        self.leases.remove(&id);
        self.changes.leases.push((id, None));
        Ok(self.finish(w))
    }

    /// Records remaining TTLs (unknown ids are skipped, like etcd).
    pub(crate) fn lease_checkpoint(&mut self, checkpoints: &[(i64, i64)]) {
        for &(id, remaining) in checkpoints {
            if let Some(l) = self.leases.get_mut(&id) {
                l.rec.remaining_ttl = remaining.max(0);
                self.changes.leases.push((id, Some(l.rec.clone())));
            }
        }
    }

    /// A new leader restarts every lease's clock from its remaining TTL.
    pub(crate) fn lease_promote(&mut self, now_ms: i64) {
        for l in self.leases.values_mut() {
            let secs = if l.rec.remaining_ttl > 0 {
                l.rec.remaining_ttl
            } else {
                l.rec.ttl
            };
            l.expiry_ms = Some(now_ms.saturating_add(secs.saturating_mul(1000)));
        }
    }

    /// Keep-alive on the leader: expiry = now + ttl. Returns the TTL.
    pub(crate) fn lease_renew(&mut self, id: i64, now_ms: i64) -> Result<i64> {
        let l = self.leases.get_mut(&id).ok_or(MvccError::LeaseNotFound)?;
        l.expiry_ms = Some(now_ms.saturating_add(l.rec.ttl.saturating_mul(1000)));
        Ok(l.rec.ttl)
    }

    /// Leases whose expiry is at or before `now_ms`, in id order.
    pub(crate) fn expired_leases(&self, now_ms: i64) -> Vec<i64> {
        self.leases
            .values()
            .filter(|l| l.expiry_ms.is_some_and(|e| e <= now_ms))
            .map(|l| l.rec.id)
            .collect()
    }

    /// Seconds left on a lease at `now_ms`, never more than granted:
    /// whole seconds left (etcd truncates) for TimeToLive, or rounded up
    /// (`ceil`) for checkpoints, so that a restart never shortens a lease.
    fn remaining_secs(l: &Lease, now_ms: i64, ceil: bool) -> i64 {
        let secs = match l.expiry_ms {
            Some(e) => {
                let ms = (e - now_ms).max(0);
                if ceil {
                    (ms + 999) / 1000
                } else {
                    ms / 1000
                }
            }
            None if l.rec.remaining_ttl > 0 => l.rec.remaining_ttl,
            None => l.rec.ttl,
        };
        secs.min(l.rec.ttl)
    }

    /// Remaining TTLs to checkpoint, rounded up.
    pub(crate) fn lease_remaining(&self, now_ms: i64) -> Vec<(i64, i64)> {
        self.leases
            .values()
            .map(|l| (l.rec.id, Self::remaining_secs(l, now_ms, true)))
            .collect()
    }

    /// Lease TimeToLive at `now_ms`.
    pub(crate) fn lease_ttl(&self, id: i64, now_ms: i64, keys: bool) -> Result<LeaseTimeToLive> {
        let l = self.leases.get(&id).ok_or(MvccError::LeaseNotFound)?;
        Ok(LeaseTimeToLive {
            id,
            ttl: Self::remaining_secs(l, now_ms, false),
            granted_ttl: l.rec.ttl,
            keys: if keys {
                l.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }
}
