//! The scenarios: which fault, on which member, on what schedule.

use std::time::Duration;

use serde::Serialize;

/// A fault the lab injects into a member process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL the leader, restart it after the outage.
    KillLeader,
    /// SIGKILL a follower, restart it after the outage.
    KillFollower,
    /// SIGSTOP the leader, SIGCONT it after the outage.
    PauseLeader,
    /// Nothing: a healthy cluster under load (elections must stay 0).
    None,
    /// Cut the leader off from every other member (both ways).
    PartitionLeader,
    /// Cut a minority drawn by the seed off from the majority.
    PartitionMinority,
    /// Two sides that cannot reach each other, the leader on one, and a
    /// follower (the bridge) that reaches both.
    PartitionBridge,
    /// Drop the leader's packets to the other members; theirs to the
    /// leader still arrive.
    PartitionOneway,
    /// Drop packets on the leader's links, each with a fixed chance.
    LinkLoss,
    /// Delay the peer traffic on the leader's links (latency ± jitter).
    LinkLatency,
    /// Remove a follower, add a fresh member in its place.
    MemberReplace,
    /// Add a learner, promote it once caught up, later remove another member.
    LearnerPromote,
    /// MoveLeader to a follower.
    LeaderTransfer,
    /// Remove the leader from the cluster, later add a fresh member.
    LeaderRemove,
    /// Partition a 3-member cluster and try every kind of request on
    /// both sides (`crate::cap`).
    Cap,
    /// Leader kills and pauses, one at a time, timing elections
    /// (`crate::perf`).
    ConsensusPerf,
    /// Crash scenarios (`crash.rs`): a member dies at a failpoint.
    /// The leader, before its WAL write and fsync.
    CrashBeforeFsync,
    /// The leader, after its WAL fsync.
    CrashAfterFsync,
    /// The leader, before applying committed entries.
    CrashBeforeApply,
    /// The leader, after applying them.
    CrashAfterApply,
    /// The leader, with a snapshot image written but not synced or renamed.
    CrashSnapshotSave,
    /// A follower far behind, installing the leader's snapshot.
    CrashSnapshotRestore,
    /// A follower, applying a membership change.
    CrashMembership,
    /// Run the leader's clock fast (libfaketime; Concord only).
    ClockFast,
    /// Run the leader's clock slow (libfaketime; Concord only).
    ClockSlow,
    /// Step the leader's wall clock forward or back (libfaketime).
    ClockJump,
    /// Run the leader's clock slow and cut it off from the others: can it
    /// still serve reads on its lease after a new leader is elected?
    ClockSkew,
}

impl FaultKind {
    /// A network fault: the cluster runs in network namespaces.
    pub fn is_network(self) -> bool {
        !matches!(
            self,
            FaultKind::KillLeader
                | FaultKind::KillFollower
                | FaultKind::PauseLeader
                | FaultKind::None
                | FaultKind::ClockFast
                | FaultKind::ClockSlow
                | FaultKind::ClockJump
        ) && !self.is_membership()
            && !self.is_crash()
            && self != FaultKind::ConsensusPerf
    }

    /// A membership change or leadership transfer (`crate::membership`).
    pub fn is_membership(self) -> bool {
        matches!(
            self,
            FaultKind::MemberReplace
                | FaultKind::LearnerPromote
                | FaultKind::LeaderTransfer
                | FaultKind::LeaderRemove
        )
    }

    /// A clock fault: members run under libfaketime.
    pub fn is_clock(self) -> bool {
        matches!(
            self,
            FaultKind::ClockFast
                | FaultKind::ClockSlow
                | FaultKind::ClockJump
                | FaultKind::ClockSkew
        )
    }
}

/// A named scenario: one fault kind, repeated.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// The name `concord-lab run` takes.
    pub name: &'static str,
    /// One line for `concord-lab list`.
    pub about: &'static str,
    /// The fault injected.
    pub kind: FaultKind,
}

/// Every scenario.
pub const SCENARIOS: [Scenario; 20] = [
    Scenario {
        name: "healthy",
        about: "no faults: the workload alone; the report counts elections (there should be none)",
        kind: FaultKind::None,
    },
    Scenario {
        name: "leader-kill",
        about: "SIGKILL the leader, restart it after the outage; repeat",
        kind: FaultKind::KillLeader,
    },
    Scenario {
        name: "follower-kill",
        about: "SIGKILL a follower, restart it after the outage; repeat",
        kind: FaultKind::KillFollower,
    },
    Scenario {
        name: "leader-pause",
        about: "SIGSTOP the leader, SIGCONT it after the outage (a stalled process, not a dead one); repeat",
        kind: FaultKind::PauseLeader,
    },
    Scenario {
        name: "partition-leader",
        about: "network: cut the leader off from the other members (clients still reach all); heal; repeat",
        kind: FaultKind::PartitionLeader,
    },
    Scenario {
        name: "partition-minority",
        about: "network: cut a minority drawn by the seed off from the majority; heal; repeat",
        kind: FaultKind::PartitionMinority,
    },
    Scenario {
        name: "partition-bridge",
        about: "network: two sides that cannot see each other (the leader on one), one follower sees both",
        kind: FaultKind::PartitionBridge,
    },
    Scenario {
        name: "partition-oneway",
        about: "network: drop the leader's outgoing peer packets, keep its incoming ones; heal; repeat",
        kind: FaultKind::PartitionOneway,
    },
    Scenario {
        name: "link-loss",
        about: "network: drop 30% of the packets on the leader's links, both ways; heal; repeat",
        kind: FaultKind::LinkLoss,
    },
    Scenario {
        name: "link-latency",
        about: "network: delay the leader's peer traffic 150 ± 50 ms each way (a relay, no netem); repeat",
        kind: FaultKind::LinkLatency,
    },
    Scenario {
        name: "member-replace",
        about: "membership: remove a follower, add a fresh member in its place (new data dir); repeat",
        kind: FaultKind::MemberReplace,
    },
    Scenario {
        name: "learner-promote",
        about: "membership: add a learner, promote it once caught up, then remove another member; repeat",
        kind: FaultKind::LearnerPromote,
    },
    Scenario {
        name: "leader-transfer",
        about: "membership: MoveLeader to a follower drawn by the seed; repeat",
        kind: FaultKind::LeaderTransfer,
    },
    Scenario {
        name: "leader-remove",
        about: "membership: remove the leader (it must step down), then add a fresh member; repeat",
        kind: FaultKind::LeaderRemove,
    },
    Scenario {
        name: "cap",
        about: "network: partition 1 / 2; linearizable, serializable reads and writes on each side: a table",
        kind: FaultKind::Cap,
    },
    Scenario {
        name: "consensus-perf",
        about: "--trials leader kills and pauses: election time percentiles, throughput before/during/after",
        kind: FaultKind::ConsensusPerf,
    },
    Scenario {
        name: "clock-fast",
        about: "clock: the leader's clocks run x1.5 (libfaketime, Concord only); back to x1; repeat",
        kind: FaultKind::ClockFast,
    },
    Scenario {
        name: "clock-slow",
        about: "clock: the leader's clocks run x0.7 (its Raft ticks too); back to x1; repeat",
        kind: FaultKind::ClockSlow,
    },
    Scenario {
        name: "clock-jump",
        about: "clock: step the leader's wall clock 5 s forward or back (monotonic untouched); repeat",
        kind: FaultKind::ClockJump,
    },
    Scenario {
        name: "clock-skew",
        about: "clock+network: slow the leader's clock and cut it off; stale lease reads? (--lease-reads)",
        kind: FaultKind::ClockSkew,
    },
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<Scenario> {
    SCENARIOS
        .iter()
        .chain(&crate::crash::SCENARIOS)
        .copied()
        .find(|s| s.name == name)
}

/// When faults start (offsets from the start of the run): the first after
/// `warmup`, then one every `every`, each needing `outage` plus `every`
/// before the run's end so that recovery is seen.
pub fn schedule(secs: Duration, warmup: Duration, every: Duration) -> Vec<Duration> {
    let mut out = Vec::new();
    let mut at = warmup;
    while at + every <= secs {
        out.push(at);
        at += every;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_leave_room_to_recover() {
        let s = |a, b, c| {
            schedule(
                Duration::from_secs(a),
                Duration::from_secs(b),
                Duration::from_secs(c),
            )
        };
        let secs = |v: &[u64]| {
            v.iter()
                .map(|&x| Duration::from_secs(x))
                .collect::<Vec<_>>()
        };
        assert_eq!(s(20, 2, 6), secs(&[2, 8, 14]));
        assert!(s(5, 2, 6).is_empty());
        assert!(find("leader-kill").is_some() && find("nope").is_none());
    }
}
