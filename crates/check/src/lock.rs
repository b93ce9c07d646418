//! The lock validator: no two holders of one lock at once, and fencing
//! tokens (the lock key's create revision) that only grow.
//!
//! A client knows it held the lock from when the Lock answer arrived
//! (`acquired`) to when it sent Unlock (`released`); the real hold covers
//! that interval, so two recorded intervals that overlap are two real holds
//! that overlapped. One clock (the lab's) times every client.
//!
//! A hold counts only if it was **valid**: the holder's lease was known
//! alive throughout. A keep-alive (or the grant) sent at `s` and answered
//! with a TTL > 0 keeps the lease alive until at least `s + ttl` on the
//! server; we credit `s + ttl - margin` (margin: a tenth of the TTL plus
//! 100 ms, for clock rates and the server's own timer). A hold whose
//! interval is not covered by those credits may have lost the lock to its
//! lease's expiry, and the lock service is then right to give it to
//! another: such holds are skipped. (A keep-alive answered by a deposed
//! leader that does not know it yet vouches wrongly; the rule trusts it.) The rules, over valid holds of one
//! lock ordered by `acquired`:
//!
//! 1. no two overlap: the later is acquired after the earlier is released;
//! 2. tokens strictly grow;
//! 3. the hold's fenced write (a txn guarded by the lock key's mod revision
//!    being the token) succeeded: the key was still there (a hold whose
//!    key was already gone has token 0, is not ordered, and fails this).

use serde::{Deserialize, Serialize};

/// One time a client held a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The lock's name.
    pub lock: String,
    /// The client.
    pub holder: usize,
    /// The fencing token: the lock key's create revision.
    pub token: u64,
    /// When the Lock answer arrived (ns since the run began).
    pub acquired: u64,
    /// When Unlock was sent.
    pub released: u64,
    /// The lease's TTL as granted, in ms.
    pub ttl_ms: u64,
    /// Send times of the grant and keep-alives answered with TTL > 0,
    /// from one TTL before `acquired` to `released`.
    pub confirmed: Vec<u64>,
    /// Whether the fenced write succeeded (`None`: no answer came).
    pub fenced: Option<bool>,
}

/// The validator's findings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LockVerdict {
    /// Holds recorded.
    pub holds: usize,
    /// Holds whose lease was not known alive throughout (not judged).
    pub invalid: usize,
    /// What broke the rules (empty: none).
    pub violations: Vec<String>,
}

impl Hold {
    /// Whether the lease was known alive from `acquired` to `released`.
    pub fn valid(&self) -> bool {
        let ttl = self.ttl_ms * 1_000_000;
        let credit = ttl.saturating_sub(ttl / 10 + 100_000_000);
        let mut sends = self.confirmed.clone();
        sends.sort_unstable();
        let mut alive_until = None::<u64>;
        for s in sends.into_iter().filter(|&s| s <= self.released) {
            if s > self.acquired && alive_until.is_none_or(|u| s > u) {
                return false; // a moment inside the hold nobody vouched for
            }
            alive_until = Some(alive_until.map_or(s + credit, |u| u.max(s + credit)));
        }
        alive_until.is_some_and(|u| u >= self.released && u >= self.acquired)
    }
}

/// Checks every hold (of any lock) by the rules above.
pub fn check_locks(holds: &[Hold]) -> LockVerdict {
    let mut v = LockVerdict {
        holds: holds.len(),
        ..LockVerdict::default()
    };
    let mut valid: Vec<&Hold> = Vec::new();
    for h in holds {
        if h.released < h.acquired {
            v.violations.push(format!(
                "{} holder {} token {}: released before acquired",
                h.lock, h.holder, h.token
            ));
        } else if h.valid() {
            valid.push(h);
        } else {
            v.invalid += 1;
        }
    }
    valid.sort_by_key(|h| (h.lock.clone(), h.acquired));
    let mut newest: Option<&Hold> = None; // the last hold with a token
    for (i, a) in valid.iter().enumerate() {
        if a.fenced == Some(false) {
            v.violations.push(format!(
                "{}: holder {}'s fenced write with token {} failed though its lease was alive",
                a.lock, a.holder, a.token
            ));
        }
        if let Some(p) = newest.filter(|p| p.lock == a.lock && a.token > 0) {
            if a.token <= p.token {
                v.violations.push(format!(
                    "{}: token {} (holder {}) acquired after token {} (holder {})",
                    a.lock, a.token, a.holder, p.token, p.holder
                ));
            }
        }
        if a.token > 0 || newest.is_some_and(|p| p.lock != a.lock) {
            newest = Some(*a).filter(|a| a.token > 0);
        }
        let later = valid[i + 1..].iter().take_while(|b| b.lock == a.lock);
        for b in later.take_while(|b| b.acquired <= a.released) {
            v.violations.push(format!(
                "{}: holder {} (token {}) and holder {} (token {}) held it at once, \
                 from {} to {} ns",
                a.lock,
                a.holder,
                a.token,
                b.holder,
                b.token,
                b.acquired,
                a.released.min(b.released)
            ));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn hold(holder: usize, token: u64, acquired_ms: u64, released_ms: u64) -> Hold {
        Hold {
            lock: "lock/0".into(),
            holder,
            token,
            acquired: acquired_ms * MS,
            released: released_ms * MS,
            ttl_ms: 2000,
            // Keep-alives every 500 ms from a grant well before.
            confirmed: (0..20).map(|i| i * 500 * MS).collect(),
            fenced: Some(true),
        }
    }

    #[test]
    fn disjoint_holds_with_growing_tokens_pass() {
        let holds = [
            hold(0, 10, 100, 200),
            hold(1, 12, 210, 300),
            hold(0, 15, 400, 450),
        ];
        let v = check_locks(&holds);
        assert!(v.violations.is_empty(), "{:?}", v.violations);
        assert_eq!((v.holds, v.invalid), (3, 0));
    }

    #[test]
    fn overlapping_holds_are_caught() {
        // Planted: holder 1 got the lock before holder 0 let it go.
        let holds = [hold(0, 10, 100, 200), hold(1, 12, 150, 300)];
        let v = check_locks(&holds);
        assert_eq!(v.violations.len(), 1, "{:?}", v.violations);
        assert!(v.violations[0].contains("held it at once"));
    }

    #[test]
    fn a_shrinking_token_is_caught() {
        let holds = [hold(0, 12, 100, 200), hold(1, 10, 210, 300)];
        let v = check_locks(&holds);
        assert!(v.violations[0].contains("token 10 (holder 1) acquired after token 12"));
    }

    #[test]
    fn a_failed_fenced_write_under_a_live_lease_is_caught() {
        let mut h = hold(0, 10, 100, 200);
        h.fenced = Some(false);
        assert!(check_locks(&[h]).violations[0].contains("fenced write"));
    }

    #[test]
    fn holds_whose_lease_may_have_lapsed_are_not_judged() {
        // Holder 0's keep-alives stopped at 1 s: with a 2 s TTL its lease
        // may have expired by 5 s, so holder 1 could rightly take the lock.
        let mut lapsed = hold(0, 10, 900, 5000);
        lapsed.confirmed = vec![0, 500 * MS, 1000 * MS];
        assert!(!lapsed.valid());
        let holds = [lapsed, hold(1, 12, 4000, 4100)];
        let v = check_locks(&holds);
        assert!(v.violations.is_empty(), "{:?}", v.violations);
        assert_eq!(v.invalid, 1);
        // A gap in the middle of a hold also makes it unjudged.
        let mut gap = hold(0, 10, 100, 9000);
        gap.confirmed = vec![0, 3000 * MS, 8000 * MS];
        assert!(!gap.valid());
        // And a hold with no keep-alive before it is not vouched for.
        let mut none = hold(0, 10, 100, 200);
        none.confirmed = vec![150 * MS];
        assert!(!none.valid());
    }
}
