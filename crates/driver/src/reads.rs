//! Linearizable reads: the reads of a round share one ReadIndex round;
//! each is released once the state machine has applied its read index.

use std::collections::BTreeMap;

use bytes::Bytes;
use concord_raft::{Index, RaftError, RawNode, ReadState};

/// Reads by stage, with the waiter `W` the host answers each through.
/// Ordered maps only: the simulator needs the same order on every run.
///
/// Invariant: a waiter is in exactly one stage (new, in flight under a
/// context, or waiting for an index) until it is handed back.
#[derive(Debug)]
pub struct Reads<W> {
    new: Vec<W>,
    next_ctx: u64,
    in_flight: BTreeMap<u64, Vec<W>>,
    by_index: BTreeMap<Index, Vec<W>>,
}

impl<W> Default for Reads<W> {
    fn default() -> Self {
        Reads {
            new: Vec::new(),
            next_ctx: 0,
            in_flight: BTreeMap::new(),
            by_index: BTreeMap::new(),
        }
    }
}

fn ctx_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

impl<W> Reads<W> {
    /// A read arrived: it joins the round's ReadIndex.
    pub fn push(&mut self, waiter: W) {
        self.new.push(waiter);
    }

    /// Reads waiting in any stage.
    pub fn len(&self) -> usize {
        self.new.len()
            + self.in_flight.values().map(Vec::len).sum::<usize>()
            + self.by_index.values().map(Vec::len).sum::<usize>()
    }

    /// True if no read waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts one ReadIndex round for the reads that arrived this round.
    /// If the core refuses it, the reads come back with its error.
    pub fn flush(&mut self, node: &mut RawNode) -> Result<(), (Vec<W>, RaftError)> {
        if self.new.is_empty() {
            return Ok(());
        }
        let waiters = std::mem::take(&mut self.new);
        self.next_ctx += 1;
        let ctx = self.next_ctx;
        match node.read_index(Bytes::copy_from_slice(&ctx.to_be_bytes())) {
            Ok(()) => {
                self.in_flight.insert(ctx, waiters);
                Ok(())
            }
            Err(e) => Err((waiters, e)),
        }
    }

    /// Read states of a `Ready`: their reads now wait for their index.
    pub fn confirmed(&mut self, states: Vec<ReadState>) {
        for rs in states {
            if let Some(w) = ctx_of(&rs.ctx).and_then(|c| self.in_flight.remove(&c)) {
                self.by_index.entry(rs.index).or_default().extend(w);
            }
        }
    }

    /// Reads the core dropped (leadership lost): handed back to be failed.
    pub fn dropped(&mut self, contexts: Vec<Bytes>) -> Vec<W> {
        contexts
            .iter()
            .filter_map(|c| ctx_of(c).and_then(|c| self.in_flight.remove(&c)))
            .flatten()
            .collect()
    }

    /// No leader is known: rounds in flight cannot finish; their reads are
    /// handed back to be failed. (Reads with an index keep waiting for it.)
    pub fn leader_lost(&mut self) -> Vec<W> {
        std::mem::take(&mut self.in_flight)
            .into_values()
            .flatten()
            .collect()
    }

    /// Reads whose index is applied, in index order.
    pub fn release(&mut self, applied: Index) -> Vec<W> {
        let mut out = Vec::new();
        while let Some(entry) = self.by_index.first_entry() {
            if *entry.key() > applied {
                break;
            }
            out.extend(entry.remove());
        }
        out
    }

    /// Every waiting read, handed back (stop or crash).
    pub fn clear(&mut self) -> Vec<W> {
        let mut out = std::mem::take(&mut self.new);
        out.extend(std::mem::take(&mut self.in_flight).into_values().flatten());
        out.extend(std::mem::take(&mut self.by_index).into_values().flatten());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_raft::Config;

    fn leader() -> RawNode {
        let mut n = RawNode::bootstrap(Config::new(1, 1), &[1]).unwrap();
        let drain = |n: &mut RawNode| {
            while n.has_ready() {
                let mut rd = n.ready();
                let _ = rd.persisted();
                n.advance(rd);
            }
        };
        drain(&mut n);
        n.campaign();
        drain(&mut n);
        assert!(n.is_leader());
        n
    }

    #[test]
    fn a_round_of_reads_shares_one_read_index_and_waits_for_apply() {
        let mut n = leader();
        let mut reads = Reads::default();
        reads.push("a");
        reads.push("b");
        reads.flush(&mut n).unwrap();
        assert!(reads.flush(&mut n).is_ok(), "nothing new: no round");
        let mut rd = n.ready();
        assert_eq!(rd.read_states.len(), 1, "one round for both reads");
        let index = rd.read_states[0].index;
        reads.confirmed(std::mem::take(&mut rd.read_states));
        let _ = rd.persisted();
        n.advance(rd);
        assert!(reads.release(index - 1).is_empty());
        assert_eq!(reads.release(index), vec!["a", "b"]);
        assert!(reads.is_empty());
    }

    #[test]
    fn refused_dropped_and_lost_reads_come_back() {
        let mut follower = RawNode::bootstrap(Config::new(2, 1), &[1, 2, 3]).unwrap();
        let mut reads = Reads::default();
        reads.push(1);
        let (back, _) = reads.flush(&mut follower).unwrap_err();
        assert_eq!(back, vec![1], "no leader: refused at once");
        let mut n = leader();
        reads.push(2);
        reads.flush(&mut n).unwrap();
        assert_eq!(
            reads.dropped(vec![Bytes::from_static(b"junk")]),
            Vec::<i32>::new()
        );
        assert_eq!(reads.leader_lost(), vec![2]);
        reads.push(3);
        assert_eq!(reads.clear(), vec![3]);
        assert!(reads.is_empty());
    }
}
