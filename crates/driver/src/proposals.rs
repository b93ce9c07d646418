//! Proposals gathered over a round, proposed in batches bounded by bytes.

use bytes::Bytes;
use concord_raft::{RaftError, RawNode};

/// Most bytes of proposals in one batch: a follower forwards each batch
/// to the leader as one message, which must stay far below a peer frame.
pub const MAX_PROPOSAL_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Proposals waiting for the end of the round, with the id the host
/// answers each by.
#[derive(Debug)]
pub struct Proposals<I> {
    pending: Vec<(I, Bytes)>,
    max_batch_bytes: usize,
}

impl<I> Default for Proposals<I> {
    fn default() -> Self {
        Proposals {
            pending: Vec::new(),
            max_batch_bytes: MAX_PROPOSAL_BATCH_BYTES,
        }
    }
}

impl<I> Proposals<I> {
    /// Queues a proposal for the end of the round.
    pub fn push(&mut self, id: I, data: Bytes) {
        self.pending.push((id, data));
    }

    /// Proposals queued.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True if none is queued.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Drops what is queued (a crash), returning the ids.
    pub fn clear(&mut self) -> Vec<I> {
        self.pending.drain(..).map(|(id, _)| id).collect()
    }

    /// Proposes what is queued, in order, in batches of at most the
    /// batch bound. Returns the batches the core refused, by id.
    pub fn flush(&mut self, node: &mut RawNode) -> Vec<(Vec<I>, RaftError)> {
        let mut refused = Vec::new();
        if self.pending.is_empty() {
            return refused;
        }
        for batch in by_bytes(std::mem::take(&mut self.pending), self.max_batch_bytes) {
            let (ids, data): (Vec<I>, Vec<Bytes>) = batch.into_iter().unzip();
            if let Err(e) = node.propose_batch(data) {
                refused.push((ids, e));
            }
        }
        refused
    }
}

/// Cuts `items` into runs of at most `max` payload bytes (at least one
/// item each), in order.
pub fn by_bytes<I>(items: Vec<(I, Bytes)>, max: usize) -> Vec<Vec<(I, Bytes)>> {
    let mut out: Vec<Vec<(I, Bytes)>> = Vec::new();
    let mut bytes = 0;
    for (id, data) in items {
        match out.last_mut() {
            Some(run) if bytes + data.len() <= max => {
                bytes += data.len();
                run.push((id, data));
            }
            _ => {
                bytes = data.len();
                out.push(vec![(id, data)]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals_are_batched_by_bytes_in_order() {
        let items: Vec<(u64, Bytes)> = (0..10)
            .map(|i| (i, Bytes::from(vec![0u8; 300 + i as usize])))
            .collect();
        let runs = by_bytes(items, 1000);
        assert!(runs
            .iter()
            .all(|r| r.iter().map(|(_, d)| d.len()).sum::<usize>() <= 1000));
        let ids: Vec<u64> = runs.iter().flatten().map(|(i, _)| *i).collect();
        assert_eq!(ids, (0..10).collect::<Vec<_>>());
        assert_eq!(runs.len(), 4);
        // One item over the bound still goes, alone.
        let runs = by_bytes(
            vec![(1, Bytes::from(vec![0; 5000])), (2, Bytes::new())],
            1000,
        );
        assert_eq!(runs.len(), 2);
    }
}
