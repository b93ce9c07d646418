//! What the clocks say about a run: where wall-clock order contradicts
//! causality, how much Lamport order claims, and who lost a write.

use crate::sim::{Event, Kind, Run};
use concord_clocks::Causality;

/// A pair of events, by id: `first` happened before `second`, or (for
/// Lamport) the two are concurrent and Lamport ordered them anyway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair {
    /// The earlier event (causally, or by Lamport).
    pub first: usize,
    /// The later one.
    pub second: usize,
}

/// The ordering findings of one run.
#[derive(Debug, Default)]
pub struct Findings {
    /// Causally ordered pairs (`first -> second`).
    pub causal_pairs: usize,
    /// Concurrent pairs.
    pub concurrent_pairs: usize,
    /// `first -> second`, yet `second`'s wall clock reads earlier (or equal).
    pub wall_violations: Vec<Pair>,
    /// Of those, messages received "before" they were sent by the clocks.
    pub message_violations: Vec<Pair>,
    /// Concurrent pairs that Lamport timestamps order strictly anyway.
    pub lamport_ordered_concurrent: Vec<Pair>,
    /// Causal pairs whose HLC or Lamport stamps disagree: must stay empty.
    pub clock_bugs: Vec<Pair>,
    /// Largest lead of an HLC timestamp over its own physical clock, ns.
    pub max_hlc_lead_ns: i64,
}

/// How two events relate, by their vector clocks.
pub fn relate(a: &Event, b: &Event) -> Causality {
    a.vc.compare(&b.vc)
}

/// Every pair compared (quadratic: the lab draws dozens of events).
pub fn analyze(run: &Run) -> Findings {
    let mut f = Findings::default();
    let ev = &run.events;
    for (i, a) in ev.iter().enumerate() {
        f.max_hlc_lead_ns = f.max_hlc_lead_ns.max(a.hlc_rel_ns() - a.wall_ns);
        for b in &ev[i + 1..] {
            match relate(a, b) {
                Causality::Before => {
                    f.causal_pairs += 1;
                    let pair = Pair {
                        first: a.id,
                        second: b.id,
                    };
                    if b.wall_ns <= a.wall_ns {
                        f.wall_violations.push(pair);
                        if matches!(b.kind, Kind::Recv { msg, .. } if msg == a.id) {
                            f.message_violations.push(pair);
                        }
                    }
                    if a.lamport >= b.lamport || a.hlc >= b.hlc {
                        f.clock_bugs.push(pair);
                    }
                }
                Causality::Concurrent => {
                    f.concurrent_pairs += 1;
                    if a.lamport != b.lamport {
                        let (first, second) = if a.lamport < b.lamport {
                            (a.id, b.id)
                        } else {
                            (b.id, a.id)
                        };
                        f.lamport_ordered_concurrent.push(Pair { first, second });
                    }
                }
                // Events come in true-time order, so never After; Equal
                // would be two events with one history.
                Causality::After | Causality::Equal => f.clock_bugs.push(Pair {
                    first: a.id,
                    second: b.id,
                }),
            }
        }
    }
    f
}

/// The register outcome: which writes each register kept and lost.
#[derive(Debug)]
pub struct Writes {
    /// Every write's value, in true-time order.
    pub all: Vec<String>,
    /// The value LWW by wall clock kept.
    pub lww_wall: Option<String>,
    /// The value LWW by HLC kept.
    pub lww_hlc: Option<String>,
    /// The values the MV-Register kept (the writes no later write saw).
    pub mv: Vec<String>,
    /// Writes LWW-by-wall ignored though they causally followed the value
    /// that beat them: `(write, winner)`.
    pub wall_ignored: Vec<(String, String)>,
}

/// Reads the run's merged registers and explains them.
pub fn writes(run: &Run) -> Writes {
    let all = run
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            Kind::Write(v) => Some(v.clone()),
            _ => None,
        })
        .collect();
    let wall_ignored = run
        .wall_ignored
        .iter()
        .map(|(id, kept)| (run.events[*id].label.clone(), kept.clone()))
        .collect();
    Writes {
        all,
        lww_wall: run.registers.lww_wall.get().cloned(),
        lww_hlc: run.registers.lww_hlc.get().cloned(),
        mv: run.registers.mv.values().cloned().collect(),
        wall_ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{run, Config};

    fn config(seed: u64) -> Config {
        Config {
            seed,
            procs: 4,
            events: 30,
            skew_ms: 120,
            drift_ppm: 200,
            max_offset_ms: 250,
        }
    }

    #[test]
    fn lamport_and_hlc_never_contradict_causality_but_wall_clocks_do() {
        let mut wall = 0;
        for seed in 0..30 {
            let r = run(&config(seed));
            let f = analyze(&r);
            assert!(f.clock_bugs.is_empty(), "seed {seed}: {:?}", f.clock_bugs);
            assert_eq!(
                f.causal_pairs + f.concurrent_pairs,
                r.events.len() * (r.events.len() - 1) / 2
            );
            wall += f.wall_violations.len();
        }
        assert!(
            wall > 0,
            "120 ms of skew must misorder something in 30 runs"
        );
    }

    #[test]
    fn the_check_catches_a_planted_clock_bug() {
        let mut r = run(&config(28));
        let recv = r
            .events
            .iter()
            .position(|e| matches!(e.kind, Kind::Recv { .. }))
            .unwrap();
        r.events[recv].lamport = 0;
        assert!(!analyze(&r).clock_bugs.is_empty());
    }

    #[test]
    fn runs_are_reproducible_from_the_seed() {
        let (a, b) = (run(&config(5)), run(&config(5)));
        let stamps = |r: &Run| {
            r.events
                .iter()
                .map(|e| (e.label.clone(), e.wall_ns, e.hlc))
                .collect::<Vec<_>>()
        };
        assert_eq!(stamps(&a), stamps(&b));
        assert_ne!(stamps(&a), stamps(&run(&config(6))));
    }

    #[test]
    fn seed_28_shows_lww_losing_writes_that_the_mv_register_keeps() {
        let r = run(&config(28));
        let w = writes(&r);
        assert_eq!(w.lww_wall.as_deref(), Some("A1"));
        assert_eq!(w.wall_ignored.len(), 2);
        assert_eq!(w.lww_hlc.as_deref(), Some("D8"));
        assert_eq!(w.mv, ["C5", "D8"]);
    }
}
