//! The Raft driver's decisions, with no I/O.
//!
//! A driver owns a [`concord_raft::RawNode`] and does its I/O: it writes
//! the log, sends messages, applies entries and answers clients. The
//! decisions of that work live here, so that the server's driver thread
//! and the simulator run the same code:
//! - [`Cycle`]: one `Ready` from start to `advance`, as a sequence of
//!   [`Step`]s: what is sent when, whether the write comes before or after
//!   applying, whether it is fsynced;
//! - [`Reads`]: linearizable reads, one ReadIndex round per batch, each
//!   read released once its index is applied;
//! - [`Proposals`]: proposals gathered over a round and proposed in
//!   batches bounded by bytes;
//! - [`flush`]: the end of a round of inputs, where batching comes from.
//!
//! A round, as both hosts run it: take the inputs that arrived (up to
//! [`MAX_INPUTS_PER_ROUND`]); [`flush`]; then, while the node has a
//! `Ready`, run a [`Cycle`] to its end.
#![deny(missing_docs)]

mod cycle;
mod proposals;
mod reads;

pub use cycle::{Cycle, Finished, Order, Step};
pub use proposals::{by_bytes, Proposals, MAX_PROPOSAL_BATCH_BYTES};
pub use reads::Reads;

use concord_raft::{RaftError, RawNode};

/// Inputs handled per round before the `Ready` is processed.
pub const MAX_INPUTS_PER_ROUND: usize = 8192;

/// What a [`flush`] could not hand to the core: the ids of proposals and
/// the waiters of reads it refused, with the reason.
#[derive(Debug)]
pub struct Refused<I, W> {
    /// Proposals refused, by batch, with the core's error.
    pub proposals: Vec<(Vec<I>, RaftError)>,
    /// Reads refused (no leader known, too many pending), with the error.
    pub reads: Option<(Vec<W>, RaftError)>,
}

impl<I, W> Refused<I, W> {
    /// True if everything went to the core.
    pub fn is_empty(&self) -> bool {
        self.proposals.is_empty() && self.reads.is_none()
    }
}

/// The end of a round: the round's proposals go to the core in batches
/// bounded by bytes (a follower forwards each batch as one message), then
/// one ReadIndex round covers all of the round's reads.
pub fn flush<I, W>(
    node: &mut RawNode,
    proposals: &mut Proposals<I>,
    reads: &mut Reads<W>,
) -> Refused<I, W> {
    Refused {
        proposals: proposals.flush(node),
        reads: reads.flush(node).err(),
    }
}
