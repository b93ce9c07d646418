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
pub const SCENARIOS: [Scenario; 4] = [
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
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<Scenario> {
    SCENARIOS.iter().copied().find(|s| s.name == name)
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
