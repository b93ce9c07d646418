//! One `Ready`, from `RawNode::ready` to `RawNode::advance`, as steps
//! for the host to carry out.
//!
//! The order (the `Ready` contract, decided here once for the server and
//! the simulator):
//! 1. send the messages that may go at once (a leader's appends go out
//!    while it writes its own log, Raft thesis 10.2.1);
//! 2. either persist first: write (fsync if it must), then send what
//!    waited for the write (votes, acks), then restore a received snapshot
//!    and apply committed entries; this is the order whenever a message
//!    waits for the write, or a snapshot arrived (it must be durable before
//!    the state machine takes it);
//! 3. or apply first: restore and apply, then write. Nothing waits for the
//!    write (a leader), and committed entries are durable on a quorum
//!    already, so clients are answered without waiting for this member's
//!    own fsync. The host must then not make its state machine durable
//!    past its durable log (the server's backend checkpoints run between
//!    cycles, after the write);
//! 4. [`Cycle::finish`]: reads confirmed by the `Ready` wait for their
//!    index, dropped ones are handed back, the node advances, and reads
//!    whose index is applied are released.
//!
//! The write is fsynced if the `Ready` must sync (new entries, a snapshot,
//! a new term or vote); a hard state that only moves the commit index is
//! written and reaches the disk with a later fsync.

use concord_raft::{Entry, Index, Message, PlantedBug, RawNode, Ready, Snapshot, SoftState};

use crate::reads::Reads;

/// Whether the write comes before applying or after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Write, send what waited for it, then apply.
    PersistFirst,
    /// Apply, then write.
    ApplyFirst,
}

/// One thing for the host to do, in the order [`Cycle::next_step`] gives them.
#[derive(Debug)]
pub enum Step {
    /// Send these messages now.
    Send(Vec<Message>),
    /// Write [`Cycle::ready`]'s snapshot (to its own file, durably), then
    /// its entries (replacing stored entries from the first index on) and
    /// hard state; fsync if `sync`. Then call [`Cycle::written`].
    Write {
        /// Wait for the fsync before [`Cycle::written`].
        sync: bool,
    },
    /// Load this snapshot, received from the leader and durable now, into
    /// the state machine.
    Restore(Snapshot),
    /// Apply these committed entries, in order.
    Apply(Vec<Entry>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    SendNow,
    Write,
    Release,
    Restore,
    Apply,
}

const PERSIST_FIRST: [Stage; 5] = [
    Stage::SendNow,
    Stage::Write,
    Stage::Release,
    Stage::Restore,
    Stage::Apply,
];
const APPLY_FIRST: [Stage; 5] = [
    Stage::SendNow,
    Stage::Restore,
    Stage::Apply,
    Stage::Write,
    Stage::Release,
];

/// A `Ready` being handled.
#[derive(Debug)]
pub struct Cycle {
    rd: Ready,
    order: Order,
    sync: bool,
    /// Position in the order's stages.
    next: usize,
    /// A [`Step::Write`] was handed out and [`Cycle::written`] not called.
    writing: bool,
}

/// What a finished cycle hands back to the host.
#[derive(Debug)]
pub struct Finished<W> {
    /// Reads to answer now: their index is applied.
    pub released: Vec<W>,
    /// Reads whose round cannot finish: no leader is known.
    pub no_leader: Vec<W>,
    /// Reads the core dropped (leadership changed).
    pub dropped: Vec<W>,
}

impl Cycle {
    /// Takes the node's next `Ready` (the caller checked `has_ready`).
    pub fn start(node: &mut RawNode) -> Cycle {
        let skip_own_fsync = node.config().bug(PlantedBug::AckBeforeOwnFsync);
        let rd = node.ready();
        let order = if rd.has_messages_after_persist() || rd.snapshot.is_some() {
            Order::PersistFirst
        } else {
            Order::ApplyFirst
        };
        let planted = skip_own_fsync && order == Order::ApplyFirst && !rd.entries.is_empty();
        Cycle {
            sync: rd.must_sync() && !planted,
            order,
            rd,
            next: 0,
            writing: false,
        }
    }

    /// The order this cycle follows.
    pub fn order(&self) -> Order {
        self.order
    }

    /// The `Ready` (for [`Step::Write`]: its snapshot, entries and hard
    /// state stay in place until the cycle finishes).
    pub fn ready(&self) -> &Ready {
        &self.rd
    }

    /// Role or leader changed with this `Ready`.
    pub fn soft_state(&self) -> Option<SoftState> {
        self.rd.soft_state
    }

    /// True while a [`Step::Write`] is out and not yet [`Cycle::written`].
    pub fn is_writing(&self) -> bool {
        self.writing
    }

    /// The next step, or `None` when only [`Cycle::finish`] is left.
    /// Panics while a write is out: the order depends on its completion.
    pub fn next_step(&mut self) -> Option<Step> {
        assert!(!self.writing, "Cycle::next_step before Cycle::written");
        let stages = match self.order {
            Order::PersistFirst => &PERSIST_FIRST,
            Order::ApplyFirst => &APPLY_FIRST,
        };
        while let Some(&stage) = stages.get(self.next) {
            self.next += 1;
            let rd = &mut self.rd;
            let step = match stage {
                Stage::SendNow => Some(std::mem::take(&mut rd.messages))
                    .filter(|m| !m.is_empty())
                    .map(Step::Send),
                Stage::Write => rd.must_persist().then(|| {
                    self.writing = true;
                    Step::Write { sync: self.sync }
                }),
                Stage::Release => Some(rd.persisted())
                    .filter(|m| !m.is_empty())
                    .map(Step::Send),
                Stage::Restore => rd.snapshot.take().map(Step::Restore),
                Stage::Apply => Some(std::mem::take(&mut rd.committed_entries))
                    .filter(|e| !e.is_empty())
                    .map(Step::Apply),
            };
            if step.is_some() {
                return step;
            }
        }
        None
    }

    /// The write of [`Step::Write`] is done (and fsynced if it had to be).
    pub fn written(&mut self) {
        assert!(self.writing, "Cycle::written without a write out");
        self.writing = false;
    }

    /// Ends the cycle once every step is done: the `Ready`'s reads go to
    /// `reads`, the node advances, and the reads whose index the state
    /// machine has applied (`applied`) come back to be answered.
    pub fn finish<W>(
        mut self,
        node: &mut RawNode,
        reads: &mut Reads<W>,
        applied: Index,
    ) -> Finished<W> {
        assert!(self.next_step().is_none(), "Cycle::finish with steps left");
        let no_leader = match self.rd.soft_state {
            Some(SoftState { leader: 0, .. }) => reads.leader_lost(),
            _ => Vec::new(),
        };
        reads.confirmed(std::mem::take(&mut self.rd.read_states));
        let dropped = reads.dropped(std::mem::take(&mut self.rd.dropped_reads));
        node.advance(self.rd);
        Finished {
            released: reads.release(applied),
            no_leader,
            dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use concord_raft::{Body, Config};

    /// Runs a cycle to its end, recording its steps.
    fn run(node: &mut RawNode) -> (Order, Vec<String>) {
        let mut c = Cycle::start(node);
        let mut steps = Vec::new();
        while let Some(s) = c.next_step() {
            steps.push(match s {
                Step::Send(m) => format!(
                    "send {}",
                    m.iter()
                        .map(|m| m.body.name())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Step::Write { sync } => {
                    c.written();
                    format!("write sync={sync}")
                }
                Step::Restore(s) => format!("restore {}", s.meta.index),
                Step::Apply(e) => format!(
                    "apply {}",
                    e.iter()
                        .map(|e| e.index.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            });
        }
        let order = c.order();
        c.finish(node, &mut Reads::<()>::default(), 0);
        (order, steps)
    }

    fn drain(node: &mut RawNode) {
        while node.has_ready() {
            run(node);
        }
    }

    #[test]
    fn a_leader_applies_before_its_write_and_syncs_only_new_entries() {
        let mut n = RawNode::bootstrap(Config::new(1, 1), &[1]).unwrap();
        drain(&mut n);
        n.campaign();
        drain(&mut n);
        let last = n.last_index();
        n.propose(Bytes::from_static(b"x")).unwrap();
        // The new entry: written and fsynced; nothing to apply yet.
        assert_eq!(
            run(&mut n),
            (Order::ApplyFirst, vec!["write sync=true".into()])
        );
        // Its commit: applied, then the commit-only hard state written
        // without waiting for an fsync.
        assert_eq!(
            run(&mut n),
            (
                Order::ApplyFirst,
                vec![format!("apply {}", last + 1), "write sync=false".into()]
            )
        );
    }

    #[test]
    fn a_follower_acks_only_after_its_write() {
        let mut n = RawNode::bootstrap(Config::new(2, 1), &[1, 2, 3]).unwrap();
        drain(&mut n);
        n.step(concord_raft::Message {
            group: 1,
            from: 1,
            to: 2,
            term: 2,
            body: Body::Append {
                index: 1,
                log_term: 1,
                entries: vec![concord_raft::Entry::normal(2, 2, Bytes::from_static(b"x"))],
                commit: 2,
            },
        })
        .unwrap();
        let (order, steps) = run(&mut n);
        assert_eq!(order, Order::PersistFirst);
        assert_eq!(steps, vec!["write sync=true", "send MsgAppResp", "apply 2"]);
    }

    #[test]
    #[should_panic(expected = "Cycle::next_step before Cycle::written")]
    fn the_write_must_complete_before_the_next_step() {
        let mut n = RawNode::bootstrap(Config::new(1, 1), &[1]).unwrap();
        let mut c = Cycle::start(&mut n);
        while let Some(s) = c.next_step() {
            if matches!(s, Step::Write { .. }) {
                let _ = c.next_step();
            }
        }
    }
}
