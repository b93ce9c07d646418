//! One complete run: fault phase, healing, liveness phase, then the
//! linearizability check of every client's history.

use std::time::Duration;

use concord_check::{check, History, Operation, Verdict};

use crate::config::SimConfig;
use crate::world::{Stats, World};

/// What the linearizability checker concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Linearizability {
    /// The history is linearizable.
    Ok,
    /// It is not; the explanation names the operations.
    Violation(String),
    /// The checker ran out of time.
    Unknown,
}

/// The outcome of one seed.
#[derive(Clone, Debug)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Invariant violations (the run stops at the first).
    pub violations: Vec<String>,
    /// Time from healing to a committed client write, or why liveness failed.
    pub liveness: Result<u64, String>,
    /// The checker's verdict on the client history.
    pub linearizability: Linearizability,
    /// Operations in the history.
    pub history_len: usize,
    /// Counters.
    pub stats: Stats,
    /// Hash of the whole run, for determinism checks.
    pub trace_hash: u64,
    /// Readable trace (when enabled).
    pub trace: Vec<String>,
    /// The client history.
    pub history: Vec<Operation>,
}

impl SimReport {
    /// True if anything went wrong (an unknown checker verdict is not a failure).
    pub fn failed(&self) -> bool {
        !self.violations.is_empty()
            || self.liveness.is_err()
            || matches!(self.linearizability, Linearizability::Violation(_))
    }

    /// One line describing the failure.
    pub fn failure(&self) -> Option<String> {
        if let Some(v) = self.violations.first() {
            return Some(v.clone());
        }
        if let Err(e) = &self.liveness {
            return Some(e.clone());
        }
        if let Linearizability::Violation(v) = &self.linearizability {
            return Some(format!(
                "not linearizable: {}",
                v.lines().next().unwrap_or("")
            ));
        }
        None
    }
}

/// Time the linearizability checker may spend on one run's history.
const CHECK_BUDGET: Duration = Duration::from_secs(5);

/// Step of the liveness phase.
const LIVENESS_STEP_US: u64 = 50_000;

/// Run one seed with `cfg`.
pub fn run(cfg: SimConfig) -> SimReport {
    let seed = cfg.seed;
    let (fault_phase, liveness_us) = (cfg.fault_phase_us, cfg.liveness_us);
    let mut w = World::new(cfg);
    w.run_until(fault_phase);
    let mut liveness = Err("not reached: a safety violation stopped the run".to_string());
    if w.violations.is_empty() {
        liveness = heal_and_wait(&mut w, liveness_us);
    }
    w.finish();
    let mut ops: Vec<Operation> = w
        .clients
        .iter()
        .flat_map(|c| c.history.iter().cloned())
        .collect();
    ops.sort_by_key(|o| (o.invoke, o.client));
    let linearizability = match History::new(ops.clone()) {
        Err(e) => Linearizability::Violation(format!("malformed history: {e}")),
        Ok(h) => match check(&h, CHECK_BUDGET).verdict {
            Verdict::Linearizable => Linearizability::Ok,
            Verdict::NotLinearizable(v) => Linearizability::Violation(format!("{v}")),
            Verdict::Unknown => Linearizability::Unknown,
        },
    };
    SimReport {
        seed,
        violations: w.violations.clone(),
        liveness,
        linearizability,
        history_len: ops.len(),
        stats: w.stats.clone(),
        trace_hash: w.trace_hash(),
        trace: std::mem::take(&mut w.trace),
        history: ops,
    }
}

/// Heal every fault, then within `bound` a leader must exist and a client
/// write must commit.
fn heal_and_wait(w: &mut World, bound: u64) -> Result<u64, String> {
    w.faults_on = false;
    w.net.heal();
    w.net.cfg.loss = 0.0;
    w.net.cfg.duplicate = 0.0;
    let crashed: Vec<u64> = w
        .nodes
        .iter()
        .filter(|(_, n)| !n.up())
        .map(|(&id, _)| id)
        .collect();
    for id in crashed {
        w.restart(id);
    }
    w.note(|| "faults healed: liveness phase".into());
    let start = w.now;
    while w.now < start + bound {
        let next = w.now + LIVENESS_STEP_US;
        w.run_until(next);
        if !w.violations.is_empty() {
            return Err("a safety violation stopped the run".into());
        }
        if w.leader().is_some() && w.last_write_ok.is_some_and(|t| t > start) {
            return Ok(w.now - start);
        }
    }
    Err(format!(
        "liveness: no leader with a committed client write within {} ms of healing",
        bound / 1000
    ))
}
