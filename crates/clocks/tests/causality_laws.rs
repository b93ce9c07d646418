//! Property tests over simulated message-passing runs: vector clocks
//! characterize happened-before exactly, Lamport clocks only one way.

use concord_clocks::{Causality, Lamport, VClock};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    Local(usize),
    Send(usize),
    Recv(usize, usize),
}

struct Event {
    vc: VClock,
    lamport: u64,
    /// Indexes of events that happened before this one (the ground truth,
    /// built from program order and messages, not from any clock).
    past: std::collections::BTreeSet<usize>,
}

fn run(steps: &[Step], n: usize) -> Vec<Event> {
    let mut vcs = vec![VClock::new(); n];
    let mut ls = vec![Lamport::new(); n];
    let mut last: Vec<Option<usize>> = vec![None; n];
    let mut inflight: Vec<(usize, VClock, u64)> = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    for step in steps {
        let (p, msg) = match *step {
            Step::Local(p) | Step::Send(p) => (p % n, None),
            Step::Recv(p, i) if !inflight.is_empty() => {
                (p % n, Some(inflight.remove(i % inflight.len())))
            }
            Step::Recv(..) => continue,
        };
        let mut past = std::collections::BTreeSet::new();
        if let Some(prev) = last[p] {
            past.extend(events[prev].past.iter().copied());
            past.insert(prev);
        }
        let lamport = match &msg {
            Some((from, vc, l)) => {
                past.extend(events[*from].past.iter().copied());
                past.insert(*from);
                vcs[p].merge(vc);
                ls[p].observe(*l)
            }
            None => ls[p].tick(),
        };
        vcs[p].increment(p as u64);
        let id = events.len();
        if matches!(step, Step::Send(_)) {
            inflight.push((id, vcs[p].clone(), lamport));
        }
        events.push(Event {
            vc: vcs[p].clone(),
            lamport,
            past,
        });
        last[p] = Some(id);
    }
    events
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        (0usize..4).prop_map(Step::Local),
        (0usize..4).prop_map(Step::Send),
        (0usize..4, 0usize..8).prop_map(|(p, i)| Step::Recv(p, i)),
    ];
    prop::collection::vec(step, 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn vector_clocks_are_exactly_happened_before(steps in steps()) {
        let ev = run(&steps, 3);
        for (j, f) in ev.iter().enumerate() {
            for (i, e) in ev.iter().enumerate() {
                let hb = f.past.contains(&i);
                prop_assert_eq!(hb, e.vc.compare(&f.vc) == Causality::Before, "{} -> {}", i, j);
                if hb {
                    prop_assert!(e.lamport < f.lamport);
                }
            }
        }
    }
}
