//! Duties that come with ticks: a leader revokes expired leases and
//! checkpoints remaining TTLs; every member publishes its name and client
//! URLs once a leader is known.

use bytes::Bytes;
use concord_mvcc::Command;

use super::{Driver, LEASE_CHECKPOINT_TICKS, MAX_LEASE_CHECKPOINT_BATCH};
use crate::envelope::{self, Payload, ServerOp};

impl Driver {
    /// Leader only: revoke expired leases and checkpoint remaining TTLs.
    pub(super) fn lease_duties(&mut self) {
        let now = self.shared.now_ms();
        let expired = self.shared.store.read().expired_leases(now);
        for id in expired {
            // Re-propose a revoke that did not apply within 50 ticks.
            if self.revoking.get(&id).is_some_and(|&t| self.ticks < t + 50) {
                continue;
            }
            self.revoking.insert(id, self.ticks);
            self.proposals.push(
                0,
                envelope::encode(0, &Payload::Mvcc(Command::LeaseRevoke { id })),
            );
        }
        if self.ticks % LEASE_CHECKPOINT_TICKS == 0 {
            let checkpoints = self.shared.store.read().lease_remaining(now);
            for entry in checkpoint_entries(&checkpoints) {
                self.proposals.push(0, entry);
            }
        }
    }

    /// Once a leader is known, publish this member's name and client URLs
    /// if the table does not have them yet.
    pub(super) fn maybe_publish_attributes(&mut self) {
        if self.published_attributes || self.shared.status.read().leader == 0 {
            return;
        }
        let me = self.shared.me.id;
        let wanted = self.shared.me.client_urls.clone();
        let current = self.shared.members.read().members.get(&me).cloned();
        match current {
            Some(m) if m.name == self.shared.me.name && m.client_urls == wanted => {
                self.published_attributes = true;
            }
            // At once, then every 10 ticks until it is applied.
            Some(_) if self.attributes_sent_at.is_none_or(|t| self.ticks >= t + 10) => {
                self.attributes_sent_at = Some(self.ticks);
                let op = ServerOp::SetAttributes {
                    id: me,
                    name: self.shared.me.name.clone(),
                    client_urls: wanted,
                };
                self.proposals
                    .push(0, envelope::encode(0, &Payload::Server(op)));
            }
            _ => {}
        }
    }
}

/// The LeaseCheckpoint entries for `checkpoints`: at most
/// [`MAX_LEASE_CHECKPOINT_BATCH`] leases each, so an entry stays a few
/// tens of KiB (a lease is two integers) however many leases there are.
fn checkpoint_entries(checkpoints: &[(i64, i64)]) -> Vec<Bytes> {
    checkpoints
        .chunks(MAX_LEASE_CHECKPOINT_BATCH)
        .map(|batch| {
            let cmd = Command::LeaseCheckpoint {
                checkpoints: batch.to_vec(),
            };
            envelope::encode(0, &Payload::Mvcc(cmd))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_million_leases_checkpoint_in_bounded_entries() {
        let leases: Vec<(i64, i64)> = (0..1_000_000).map(|i| (i64::MAX - i, 1 << 40)).collect();
        let entries = checkpoint_entries(&leases);
        assert_eq!(entries.len(), 1000);
        let largest = entries.iter().map(Bytes::len).max().unwrap();
        assert!(largest <= 32 * 1024, "largest entry {largest} bytes");
        // Every lease once, in order.
        let mut seen = Vec::new();
        for e in &entries {
            let Some((_, Payload::Mvcc(Command::LeaseCheckpoint { checkpoints }))) =
                envelope::decode(e).unwrap()
            else {
                panic!("not a lease checkpoint");
            };
            seen.extend(checkpoints);
        }
        assert_eq!(seen, leases);
    }
}
