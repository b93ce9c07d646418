//! Clock faults in a run: which member's clock the lab changed and how,
//! who led when (sampled), and what the history shows: stale reads, and
//! writes whose wall-clock order contradicts their revision order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concord_proto::etcdserverpb::kv_client::KvClient;
use concord_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use concord_proto::etcdserverpb::StatusRequest;
use concord_rng::SplitMix64;
use serde::Serialize;

use crate::clock::{find_libfaketime, ClockConfig, ClockMode, MemberClock};
use crate::cluster::{channel, Cluster, MemberOptions, Target, NETWORKED_PEER_PORT};
use crate::netfault;
use crate::relay::Relays;
use crate::scenario::FaultKind;
use crate::workload::{get, Expected, Op, Recorder};
use crate::{LabError, RunConfig};

/// The rate `clock-fast` sets on the leader's clock.
pub const FAST: f64 = 1.5;
/// The rate `clock-slow` and `clock-skew` set on the leader's clock.
pub const SLOW: f64 = 0.7;

/// The members' faked clocks during a run with clock faults.
#[derive(Debug)]
pub struct ClockFaults {
    kind: FaultKind,
    cfg: ClockConfig,
    lib: std::path::PathBuf,
    clocks: Vec<MemberClock>,
    /// The workload's keys and how long a fault lasts (for the reader).
    reads: (usize, Duration),
    /// Members whose clock a fault changed, and when (ns since the run
    /// began).
    faulted: Vec<(usize, u64)>,
}

impl ClockFaults {
    /// Clocks for the members of the run `run` configures, with files in
    /// its directory, when its fault is a clock fault (`None` otherwise).
    pub fn new(run: &RunConfig) -> Result<Option<ClockFaults>, LabError> {
        let (kind, cfg, size, dir) = (run.scenario.kind, &run.clock, run.members, &run.out);
        let mode = match kind {
            FaultKind::ClockFast | FaultKind::ClockSlow | FaultKind::ClockSkew => ClockMode::Rate,
            FaultKind::ClockJump => ClockMode::Step,
            _ => return Ok(None),
        };
        let lib = find_libfaketime()?;
        let clocks = (0..size)
            .map(|i| MemberClock::new(dir.join(format!("m{}.faketime", i + 1)), mode))
            .collect::<Result<_, _>>()?;
        Ok(Some(ClockFaults {
            kind,
            cfg: cfg.clone(),
            lib,
            clocks,
            reads: (run.workload.keys, run.outage),
            faulted: Vec::new(),
        }))
    }

    /// Each member's environment (libfaketime and its clock file).
    pub fn envs(&self) -> Vec<Vec<(String, String)>> {
        self.clocks.iter().map(|c| c.env(&self.lib)).collect()
    }

    /// The rate a rate fault sets.
    pub fn rate(&self) -> f64 {
        let own = if self.kind == FaultKind::ClockFast {
            FAST
        } else {
            SLOW
        };
        self.cfg.rate.unwrap_or(own)
    }

    /// Changes `member`'s clock at `now`; returns the fault in words.
    pub fn inject(
        &mut self,
        member: usize,
        now: u64,
        rng: &mut SplitMix64,
    ) -> Result<String, LabError> {
        self.faulted.push((member, now));
        let rate = self.rate();
        let clock = &mut self.clocks[member];
        if self.kind == FaultKind::ClockJump {
            let secs = if rng.below(2) == 0 {
                self.cfg.jump_secs
            } else {
                -self.cfg.jump_secs
            };
            clock.set_offset(now, secs)?;
            return Ok(format!("m{} wall clock {secs:+} s", member + 1));
        }
        clock.set_rate(now, rate)?;
        Ok(format!("m{} clock x{rate}", member + 1))
    }

    /// Injects one fault on `leader`: its clock, and for `clock-skew`
    /// also a cut between it and the others, with a reader that asks only
    /// the cut-off leader for `outage`.
    pub async fn inject_fault(
        &mut self,
        cluster: &mut Cluster,
        leader: usize,
        rec: &Arc<Recorder>,
        rng: &mut SplitMix64,
        relays: &mut Relays,
    ) -> Result<String, LabError> {
        let label = self.inject(leader, rec.now(), rng)?;
        if self.kind != FaultKind::ClockSkew {
            return Ok(label);
        }
        let plan = netfault::plan(FaultKind::PartitionLeader, leader, cluster.size(), rng)
            .ok_or_else(|| LabError::Net("no partition plan".into()))?;
        let net = cluster
            .network()
            .ok_or_else(|| LabError::Net("the cluster has no network namespaces".into()))?;
        netfault::apply(&plan, net, relays, NETWORKED_PEER_PORT).await?;
        let url = cluster.endpoints()[leader].clone();
        let reader = 1000 + self.faulted.len();
        let (keys, outage) = self.reads;
        tokio::spawn(pinned_reader(url, reader, keys, rec.clone(), outage));
        Ok(format!("{label}, {}", plan.label))
    }

    /// Every clock back to the real rate, or to no offset.
    pub fn heal(&mut self, now: u64) -> Result<(), LabError> {
        for c in &mut self.clocks {
            match self.kind {
                FaultKind::ClockJump => c.set_offset(now, 0.0)?,
                _ => c.set_rate(now, 1.0)?,
            }
        }
        Ok(())
    }

    /// What the clocks did to the history.
    pub fn summary(&self, ops: &[Op], leaders: &[(u64, Option<usize>)]) -> ClockSummary {
        let wall = |i: usize, t: u64| t as f64 + self.clocks[i].offset_at(t);
        ClockSummary {
            mode: self.clocks[0].mode(),
            rate: (self.kind != FaultKind::ClockJump).then(|| self.rate()),
            jump_secs: (self.kind == FaultKind::ClockJump).then_some(self.cfg.jump_secs),
            lease_reads: self.cfg.lease_reads,
            faults: self.faulted.len(),
            stale_reads: stale_reads(ops),
            order: wall_order(ops, leaders, wall),
        }
    }
}

/// The members' flags and environment for a run: lease reads if asked,
/// libfaketime under clock faults. Both need Concord.
pub fn member_options(
    target: Target,
    cfg: &ClockConfig,
    clocks: Option<&ClockFaults>,
) -> Result<MemberOptions, LabError> {
    let mut opts = MemberOptions::default();
    if target != Target::Concord && (cfg.lease_reads || clocks.is_some()) {
        // etcd has no lease-read flag, and Go reads the clock through the
        // vDSO, which libfaketime does not reach.
        return Err(LabError::Start(
            "clock faults and --lease-reads run on Concord only".into(),
        ));
    }
    if cfg.lease_reads {
        opts.args.push("--experimental-lease-reads".into());
    }
    if let Some(c) = clocks {
        opts.env = c.envs();
    }
    Ok(opts)
}

/// A run's clock faults and their effects (in `report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct ClockSummary {
    /// How the clocks were faked.
    pub mode: ClockMode,
    /// The rate faults set, if they set one.
    pub rate: Option<f64>,
    /// The wall-clock step, if the faults stepped it.
    pub jump_secs: Option<f64>,
    /// Concord served reads on the leader's lease.
    pub lease_reads: bool,
    /// Clock faults injected.
    pub faults: usize,
    /// Reads that returned a value older than a write acknowledged before
    /// the read began (or nothing, after such a write).
    pub stale_reads: usize,
    /// Revision order against wall-clock order.
    pub order: WallOrder,
}

/// The clock lines of `report.md`.
pub fn markdown(c: &ClockSummary) -> String {
    let what = match (c.rate, c.jump_secs) {
        (_, Some(j)) => format!("wall clock stepped ±{j} s"),
        (Some(r), _) => format!("clock rate x{r}"),
        _ => String::new(),
    };
    let o = &c.order;
    format!(
        "- clock: {} faults ({what}), lease reads {}: {} stale reads; of {} acknowledged \
         writes, pairs whose order contradicts their revisions: {} by the lab's clock, {} by \
         the leaders' wall clocks (largest step back {:.0} ms)\n\n",
        c.faults,
        if c.lease_reads { "on" } else { "off" },
        c.stale_reads,
        o.writes,
        o.inverted_real,
        o.inverted_wall,
        o.max_back_ms
    )
}

/// Pairs of acknowledged writes in revision order whose timestamps say
/// the opposite, each write stamped when its answer came, by the clock of
/// the member that led then (sampled every 200 ms).
#[derive(Debug, Clone, Default, Serialize)]
pub struct WallOrder {
    /// Acknowledged writes with a revision.
    pub writes: usize,
    /// Inverted pairs with the lab's (real) clock: concurrent writes only.
    pub inverted_real: u64,
    /// Inverted pairs with the leaders' faked wall clocks.
    pub inverted_wall: u64,
    /// The largest amount by which a later revision's wall-clock stamp is
    /// below an earlier one's, in ms.
    pub max_back_ms: f64,
}

/// Counts stale reads: a get whose value's write has a lower revision than
/// a write to the same key acknowledged before the get was invoked (an
/// absent key after any such write: the workload never deletes). Values
/// are unique, so a value names its write.
pub fn stale_reads(ops: &[Op]) -> usize {
    let mut rev_of: HashMap<(&str, &str), u64> = HashMap::new();
    let mut acked: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
    for o in ops.iter().filter(|o| o.acked_write()) {
        let (Some(rev), Some(done)) = (o.rev(), o.complete) else {
            continue;
        };
        for (k, v) in o.writes() {
            rev_of.insert((k, v), rev);
            acked.entry(k).or_default().push((done, rev));
        }
    }
    let mut stale = 0;
    for o in ops.iter().filter(|o| o.op == "get") {
        let Some(r) = &o.result else { continue };
        // A value written by an unanswered write has no known revision.
        let seen = match r["value"].as_str() {
            None => 0,
            Some(v) => match rev_of.get(&(o.key.as_str(), v)) {
                Some(&rev) => rev,
                None => continue,
            },
        };
        let newer = acked
            .get(o.key.as_str())
            .is_some_and(|ws| ws.iter().any(|&(done, rev)| done < o.invoke && rev > seen));
        stale += usize::from(newer);
    }
    stale
}

/// Stamps each acknowledged write at its completion with the leader's
/// clock (`wall(member, t)`) and counts the pairs whose stamps contradict
/// their revisions.
pub fn wall_order(
    ops: &[Op],
    leaders: &[(u64, Option<usize>)],
    wall: impl Fn(usize, u64) -> f64,
) -> WallOrder {
    let leader_at = |t: u64| {
        let i = leaders.partition_point(|&(at, _)| at <= t);
        leaders[..i].iter().rev().find_map(|&(_, l)| l)
    };
    let mut writes: Vec<(u64, f64, f64)> = ops
        .iter()
        .filter(|o| o.acked_write())
        .filter_map(|o| {
            let (rev, done) = (o.rev()?, o.complete?);
            let stamp = leader_at(done).map_or(done as f64, |l| wall(l, done));
            Some((rev, done as f64, stamp))
        })
        .collect();
    writes.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut max_back = 0.0f64;
    let mut highest = f64::MIN;
    for w in &writes {
        max_back = max_back.max(highest - w.2);
        highest = highest.max(w.2);
    }
    let mut real: Vec<f64> = writes.iter().map(|w| w.1).collect();
    let mut stamped: Vec<f64> = writes.iter().map(|w| w.2).collect();
    WallOrder {
        writes: writes.len(),
        inverted_real: inversions(&mut real),
        inverted_wall: inversions(&mut stamped),
        max_back_ms: max_back / 1e6,
    }
}

/// Pairs `i < j` with `v[i] > v[j]` (merge sort; sorts `v`).
fn inversions(v: &mut [f64]) -> u64 {
    if v.len() < 2 {
        return 0;
    }
    let mid = v.len() / 2;
    let mut n = inversions(&mut v[..mid]) + inversions(&mut v[mid..]);
    let mut merged = Vec::with_capacity(v.len());
    let (mut i, mut j) = (0, mid);
    while i < mid && j < v.len() {
        if v[j] < v[i] {
            n += (mid - i) as u64;
            merged.push(v[j]);
            j += 1;
        } else {
            merged.push(v[i]);
            i += 1;
        }
    }
    merged.extend_from_slice(&v[i..mid]);
    merged.extend_from_slice(&v[j..]);
    v.copy_from_slice(&merged);
    n
}

/// Reads random workload keys from one member only (the cut-off leader)
/// for `outage`, recording each answered read as client `client`: the
/// workload's clients leave a member whose writes time out, this one
/// stays to see whether the member keeps answering reads.
async fn pinned_reader(
    url: String,
    client: usize,
    keys: usize,
    rec: Arc<Recorder>,
    outage: Duration,
) {
    let Ok(ch) = channel(&url, Duration::from_millis(300)).await else {
        return;
    };
    let mut kv = KvClient::new(ch);
    let mut rng = SplitMix64::new(client as u64);
    let until = tokio::time::Instant::now() + outage;
    while tokio::time::Instant::now() < until {
        let key = format!("k{}", rng.below(keys.max(1) as u64));
        let invoke = rec.now();
        let answer = tokio::time::timeout(Duration::from_millis(300), get(&mut kv, &key)).await;
        let Ok(Ok(result)) = answer else {
            // An unanswered read changed nothing: not in the history.
            continue;
        };
        rec.push(Op {
            client,
            op: "get",
            key,
            value: None,
            expected: Expected(None),
            txn: None,
            invoke,
            complete: Some(rec.now()),
            result: Some(result),
            error: None,
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Samples of who led: (ns since the run began, member), shared with the
/// sampling task.
pub type LeaderLog = Arc<Mutex<Vec<(u64, Option<usize>)>>>;

/// Samples which member leads every 200 ms until `stop`, stamped with the
/// recorder's clock; the samples are in the returned list.
pub fn sample_leaders(
    endpoints: Vec<String>,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<()>, LeaderLog) {
    let out = Arc::new(Mutex::new(Vec::new()));
    let log = out.clone();
    let task = tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let t = rec.now();
            let leader = leader(&endpoints).await;
            log.lock().expect("leader log").push((t, leader));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    (task, out)
}

/// The member that leads in the highest term any member reports.
async fn leader(endpoints: &[String]) -> Option<usize> {
    let mut seen = Vec::new();
    for (i, url) in endpoints.iter().enumerate() {
        let Ok(ch) = channel(url, Duration::from_millis(150)).await else {
            continue;
        };
        let mut client = MaintenanceClient::new(ch);
        let call = client.status(StatusRequest {});
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(200), call).await {
            let s = s.into_inner();
            seen.push((
                i,
                s.header.map_or(0, |h| h.member_id),
                s.leader,
                s.raft_term,
            ));
        }
    }
    let best = seen.iter().filter(|s| s.2 != 0).max_by_key(|s| s.3)?;
    seen.iter().find(|s| s.1 == best.2).map(|s| s.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: &'static str, key: &str, value: Option<&str>, t: (u64, u64), rev: u64) -> Op {
        let result = match kind {
            "get" => serde_json::json!({ "value": value }),
            _ => serde_json::json!({ "ok": true, "rev": rev }),
        };
        Op {
            client: 0,
            op: kind,
            key: key.into(),
            value: if kind == "get" {
                None
            } else {
                value.map(Into::into)
            },
            expected: Expected(None),
            txn: None,
            invoke: t.0,
            complete: Some(t.1),
            result: Some(result),
            error: None,
        }
    }

    #[test]
    fn stale_reads_are_counted() {
        let ops = vec![
            op("put", "k", Some("a"), (0, 10), 2),
            op("put", "k", Some("b"), (20, 30), 3),
            op("get", "k", Some("b"), (40, 50), 0),
            // Planted: after b's ack, a is read again, then nothing.
            op("get", "k", Some("a"), (40, 50), 0),
            op("get", "k", None, (40, 50), 0),
            // Concurrent with b: not stale.
            op("get", "k", Some("a"), (25, 35), 0),
        ];
        assert_eq!(stale_reads(&ops), 2);
    }

    #[test]
    fn a_clock_stepped_back_inverts_the_order() {
        let ops: Vec<Op> = (0..10)
            .map(|i| op("put", "k", Some("v"), (i * 100, i * 100 + 10), i + 1))
            .collect();
        let leaders = [(0, Some(0))];
        let same = wall_order(&ops, &leaders, |_, t| t as f64);
        assert_eq!(
            (same.writes, same.inverted_real, same.inverted_wall),
            (10, 0, 0)
        );
        // From 500 on, the leader's clock is 250 behind: the writes at
        // 310 and 410 are stamped after those at 510 and 610.
        let back = |_: usize, t: u64| t as f64 - if t >= 500 { 250.0 } else { 0.0 };
        let o = wall_order(&ops, &leaders, back);
        assert_eq!((o.inverted_real, o.inverted_wall), (0, 3));
        assert!((o.max_back_ms - 150.0 / 1e6).abs() < 1e-9);
        let mut v = vec![3.0, 1.0, 2.0];
        assert_eq!(inversions(&mut v), 2);
    }
}
