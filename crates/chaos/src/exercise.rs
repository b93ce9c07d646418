//! The `clock-skew` exercise: the `clock-skew` scenario (the leader's
//! clock slowed, then the leader cut off from the others) at a rate within
//! the drift bound and one beyond it, each with lease reads off and on,
//! and a table of what each did.
//!
//! With Concord's defaults (election timeout 1000 ms, heartbeat 100 ms,
//! drift bound 200 ms) a leader's lease is 8 of its ticks from a quorum's
//! heartbeat acknowledgement, and followers do not elect for at least 10
//! of theirs. A leader whose clock runs at rate `r` holds the lease
//! `800 / r` real ms: no longer than the followers wait while `r >= 0.8`.

use std::fmt::Write as _;

use crate::lab::Report;

/// Concord's default election timeout, ms.
pub const ELECTION_MS: f64 = 1000.0;
/// Concord's default clock-drift bound (`--max-clock-drift`), ms.
pub const DRIFT_MS: f64 = 200.0;
/// The rate within the bound the exercise runs.
pub const WITHIN: f64 = 0.9;
/// The rates beyond the bound the exercise runs: a new leader needs a
/// randomized election timeout (1 to 2 s) and a (pre-)vote round, so a
/// lease only a little past the bound rarely overlaps its first write.
pub const BEYOND: [f64; 2] = [0.5, 0.25];

/// The slowest leader clock the lease tolerates: `(election - drift) /
/// election`.
pub fn bound_rate() -> f64 {
    (ELECTION_MS - DRIFT_MS) / ELECTION_MS
}

/// The runs of the exercise: (rate, lease reads).
pub fn matrix() -> [(f64, bool); 6] {
    [
        (WITHIN, false),
        (WITHIN, true),
        (BEYOND[0], false),
        (BEYOND[0], true),
        (BEYOND[1], false),
        (BEYOND[1], true),
    ]
}

/// The exercise's table, one row per run.
pub fn table(runs: &[Report]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| leader clock | lease reads | faults | ops answered | linearizable | stale reads | \
         elections | writes | inverted (real clock) | inverted (wall clock) | max step back |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        let Some(c) = &r.clock else { continue };
        let rate = c.rate.unwrap_or(1.0);
        let side = if rate >= bound_rate() {
            "within"
        } else {
            "beyond"
        };
        let mut lin: String = r.linearizable.chars().take(90).collect();
        if lin.len() < r.linearizable.len() {
            lin.push_str("...");
        }
        let _ = writeln!(
            s,
            "| x{rate} ({side} the bound) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} ms |",
            if c.lease_reads { "on" } else { "off" },
            c.faults,
            r.ok,
            lin.replace('|', "/"),
            c.stale_reads,
            r.elections,
            c.order.writes,
            c.order.inverted_real,
            c.order.inverted_wall,
            c.order.max_back_ms
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_lies_between_the_two_rates() {
        assert!((bound_rate() - 0.8).abs() < 1e-9);
        assert!(WITHIN >= bound_rate() && BEYOND.iter().all(|&r| r < bound_rate()));
    }
}
