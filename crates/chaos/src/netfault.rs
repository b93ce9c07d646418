//! Network faults as plans: which member pairs a scenario cuts, makes
//! lossy or slow, drawn from the leader and the seed, then applied to a
//! cluster's [`Network`] (healing flushes them all).

use concord_rng::SplitMix64;

use crate::net::{Network, Rule};
use crate::relay::Relays;
use crate::scenario::FaultKind;
use crate::LabError;

/// The chance that a packet on a lossy link is dropped.
pub const LOSS: f64 = 0.3;
/// The delay a slow link adds to each chunk, and its jitter (±).
pub const LATENCY_MS: (u64, u64) = (150, 50);

/// What one network fault does; members by index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetPlan {
    /// Which members, in words (`m1 / m2 m3`).
    pub label: String,
    /// (from, to): every packet from `from` to `to` is dropped.
    pub cuts: Vec<(usize, usize)>,
    /// (from, to): packets from `from` to `to` dropped with [`LOSS`].
    pub lossy: Vec<(usize, usize)>,
    /// (a, b): peer traffic both ways between `a` and `b` delayed by
    /// [`LATENCY_MS`].
    pub slow: Vec<(usize, usize)>,
}

fn names(members: &[usize]) -> String {
    let v: Vec<String> = members.iter().map(|i| format!("m{}", i + 1)).collect();
    v.join(" ")
}

/// Both directions of every pair across `a` and `b`.
fn across(a: &[usize], b: &[usize]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for &x in a {
        for &y in b {
            out.push((x, y));
            out.push((y, x));
        }
    }
    out
}

/// Removes `k` members of `pool` chosen by `rng`.
fn draw(pool: &mut Vec<usize>, k: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let mut out: Vec<usize> = (0..k)
        .map(|_| pool.remove(rng.below(pool.len() as u64) as usize))
        .collect();
    out.sort_unstable();
    out
}

/// The plan for `kind` in a cluster of `size` led by `leader`; `None`
/// for a fault that is not a network fault.
pub fn plan(kind: FaultKind, leader: usize, size: usize, rng: &mut SplitMix64) -> Option<NetPlan> {
    let others: Vec<usize> = (0..size).filter(|&i| i != leader).collect();
    let mut p = NetPlan::default();
    match kind {
        FaultKind::PartitionLeader => {
            p.cuts = across(&[leader], &others);
            p.label = format!("{} / {}", names(&[leader]), names(&others));
        }
        FaultKind::PartitionMinority => {
            let mut pool: Vec<usize> = (0..size).collect();
            let minority = draw(&mut pool, (size - 1) / 2, rng);
            pool.sort_unstable();
            p.cuts = across(&minority, &pool);
            p.label = format!("{} / {}", names(&minority), names(&pool));
        }
        FaultKind::PartitionBridge => {
            // The bridge is a follower; the leader's side gets half of
            // the rest, so each side alone is a minority.
            let mut pool = others;
            let bridge = draw(&mut pool, 1, rng);
            let mut side = draw(&mut pool, (size - 3) / 2, rng);
            side.push(leader);
            side.sort_unstable();
            p.cuts = across(&side, &pool);
            p.label = format!(
                "{} / {} ({} sees both)",
                names(&side),
                names(&pool),
                names(&bridge)
            );
        }
        FaultKind::PartitionOneway => {
            p.cuts = others.iter().map(|&o| (leader, o)).collect();
            p.label = format!("{} -/-> {}", names(&[leader]), names(&others));
        }
        FaultKind::LinkLoss => {
            p.lossy = across(&[leader], &others);
            let pct = LOSS * 100.0;
            p.label = format!("{} <-> {} {pct:.0}% loss", names(&[leader]), names(&others));
        }
        FaultKind::LinkLatency => {
            p.slow = others.iter().map(|&o| (leader, o)).collect();
            let (lat, jit) = LATENCY_MS;
            p.label = format!("{} <-> {} {lat}±{jit} ms", names(&[leader]), names(&others));
        }
        FaultKind::KillLeader | FaultKind::KillFollower | FaultKind::PauseLeader => return None,
        FaultKind::None => return None,
        // Clock faults (`crate::skew`); clock-skew's cut is a PartitionLeader plan.
        FaultKind::ClockFast | FaultKind::ClockSlow | FaultKind::ClockJump => return None,
        FaultKind::ClockSkew => return None,
        // Crashes at failpoints (crash.rs).
        _ => return None,
    }
    Some(p)
}

/// Puts `plan` into effect: the rules into the members' namespaces, the
/// slow links through `relays` (peer port `peer_port`).
pub async fn apply(
    plan: &NetPlan,
    net: &Network,
    relays: &mut Relays,
    peer_port: u16,
) -> Result<(), LabError> {
    let mut rules: Vec<Rule> = plan.cuts.iter().map(|&(f, t)| net.cut(f, t)).collect();
    rules.extend(plan.lossy.iter().map(|&(f, t)| net.lose(f, t, LOSS)));
    for &(a, b) in &plan.slow {
        rules.extend(relays.slow_link(net, a, b, peer_port).await?);
    }
    net.install(&rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kind: FaultKind, leader: usize, size: usize, seed: u64) -> NetPlan {
        plan(kind, leader, size, &mut SplitMix64::new(seed)).unwrap()
    }

    #[test]
    fn partitions_cut_both_ways_across_the_sides() {
        let l = p(FaultKind::PartitionLeader, 1, 3, 1);
        assert_eq!(l.label, "m2 / m1 m3");
        assert_eq!(l.cuts, vec![(1, 0), (0, 1), (1, 2), (2, 1)]);
        for seed in 0..20 {
            let m = p(FaultKind::PartitionMinority, 0, 5, seed);
            assert_eq!(m.cuts.len(), 2 * 2 * 3, "2 vs 3 members");
            let b = p(FaultKind::PartitionBridge, 0, 3, seed);
            assert_eq!(b.cuts.len(), 2, "one pair cut, the bridge sees both");
            assert!(b.cuts.contains(&(0, 1)) || b.cuts.contains(&(0, 2)));
            let b5 = p(FaultKind::PartitionBridge, 4, 5, seed);
            assert_eq!(b5.cuts.len(), 2 * 2 * 2, "2 | 2 and a bridge");
        }
    }

    #[test]
    fn one_way_cuts_only_the_leaders_sends() {
        let o = p(FaultKind::PartitionOneway, 2, 3, 1);
        assert_eq!(o.cuts, vec![(2, 0), (2, 1)]);
        assert_eq!(o.label, "m3 -/-> m1 m2");
        assert!(plan(FaultKind::KillLeader, 0, 3, &mut SplitMix64::new(1)).is_none());
    }
}
