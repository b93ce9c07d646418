//! Safety properties checked while a simulation runs, one file each, each
//! citing the section of the Raft paper it comes from. A violation is a
//! message; the run reports the first one with the seed that replays it.

pub mod committed_never_lost;
pub mod election_safety;
pub mod leader_completeness;
pub mod log_matching;
pub mod monotonic;
pub mod state_machine_safety;

use std::collections::BTreeMap;

/// Facts gathered across the whole run, across crashes.
#[derive(Debug, Default)]
pub struct Facts {
    /// The leader seen for each term.
    pub leaders: BTreeMap<u64, u64>,
    /// Every applied entry by index: (term, payload hash), from whichever node applied it first.
    pub applied: BTreeMap<u64, (u64, u64)>,
    /// Highest index applied anywhere.
    pub max_applied: u64,
    /// Per node: (incarnation, commit, applied) last seen.
    pub progress: BTreeMap<u64, (u64, u64, u64)>,
    /// Leaders whose completeness was already checked: (term, node).
    pub checked_leaders: std::collections::BTreeSet<(u64, u64)>,
}
