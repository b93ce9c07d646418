//! The lease validator: once a client was told its lease is gone (a revoke
//! answered, or the lease's time-to-live reported as expired), no read that
//! starts afterwards may find a key attached to that lease.
//!
//! A read invoked after the acknowledgement is ordered after the expiry in
//! any linearizable store, so finding the key there means the store served
//! a key its lease had already taken away.

use serde::{Deserialize, Serialize};

/// How a lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseEnd {
    /// The client revoked it.
    Revoked,
    /// The client stopped its keep-alives and it ran out.
    Expired,
}

/// A read of a key attached to a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRead {
    /// The key.
    pub key: String,
    /// When the read was sent (ns since the run began).
    pub invoke: u64,
    /// When its answer came.
    pub complete: u64,
    /// Whether the key was there.
    pub present: bool,
}

/// One lease's life as a client saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseLife {
    /// The client.
    pub client: usize,
    /// The lease id.
    pub lease: i64,
    /// Keys put with the lease.
    pub keys: Vec<String>,
    /// How it ended, and when that was acknowledged (`None`: the run
    /// ended first, or no answer came).
    pub ended: Option<(LeaseEnd, u64)>,
    /// Answers that said the lease was gone but came from a member that
    /// had not applied the lease's puts (not taken as the end).
    #[serde(default)]
    pub stale_ends: usize,
    /// Reads of its keys after the end was acknowledged.
    pub reads: Vec<LeaseRead>,
}

/// The validator's findings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LeaseVerdict {
    /// Leases recorded.
    pub leases: usize,
    /// Revoked, with the revoke answered.
    pub revoked: usize,
    /// Expired with the expiry acknowledged.
    pub expired: usize,
    /// Reads checked (invoked after an acknowledged end).
    pub reads: usize,
    /// "Gone" answers from members behind the lease's puts, not taken as
    /// the end (see `LeaseLife::stale_ends`).
    pub stale_ends: usize,
    /// What broke the rule (empty: none).
    pub violations: Vec<String>,
}

/// Checks every lease: no key read present by a read invoked after the
/// lease's end was acknowledged.
pub fn check_leases(lives: &[LeaseLife]) -> LeaseVerdict {
    let mut v = LeaseVerdict {
        leases: lives.len(),
        ..LeaseVerdict::default()
    };
    for life in lives {
        v.stale_ends += life.stale_ends;
        let Some((how, at)) = life.ended else {
            continue;
        };
        match how {
            LeaseEnd::Revoked => v.revoked += 1,
            LeaseEnd::Expired => v.expired += 1,
        }
        for r in life.reads.iter().filter(|r| r.invoke > at) {
            v.reads += 1;
            if !life.keys.contains(&r.key) {
                continue;
            }
            if r.present {
                v.violations.push(format!(
                    "lease {:x} ({how:?} at {at} ns): {} read present at {} ns",
                    life.lease, r.key, r.invoke
                ));
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(key: &str, invoke: u64, present: bool) -> LeaseRead {
        LeaseRead {
            key: key.into(),
            invoke,
            complete: invoke + 5,
            present,
        }
    }

    fn life(reads: Vec<LeaseRead>) -> LeaseLife {
        LeaseLife {
            client: 0,
            lease: 0x2a,
            keys: vec!["lease/0/a".into(), "lease/0/b".into()],
            ended: Some((LeaseEnd::Expired, 100)),
            stale_ends: 0,
            reads,
        }
    }

    #[test]
    fn keys_gone_after_the_end_pass() {
        let v = check_leases(&[life(vec![
            read("lease/0/a", 110, false),
            read("lease/0/b", 120, false),
        ])]);
        assert!(v.violations.is_empty(), "{:?}", v.violations);
        assert_eq!((v.leases, v.expired, v.reads), (1, 1, 2));
    }

    #[test]
    fn a_key_read_after_its_lease_ended_is_caught() {
        // Planted: b is still there 20 ns after the expiry was acknowledged.
        let v = check_leases(&[life(vec![
            read("lease/0/a", 110, false),
            read("lease/0/b", 120, true),
        ])]);
        assert_eq!(v.violations.len(), 1);
        assert!(v.violations[0].contains("lease/0/b read present at 120"));
    }

    #[test]
    fn reads_that_began_before_the_end_or_of_unended_leases_are_not_judged() {
        let early = life(vec![read("lease/0/a", 90, true)]);
        let mut running = life(vec![read("lease/0/a", 500, true)]);
        running.ended = None;
        let v = check_leases(&[early, running]);
        assert!(v.violations.is_empty(), "{:?}", v.violations);
        assert_eq!(v.reads, 0);
    }
}
