//! The replicated state machine: the checker's key-value model, plus client
//! sessions so that a proposal delivered twice is applied once.

use std::collections::BTreeMap;

use bytes::Bytes;
use concord_check::{apply, Command, Output, State};
use serde::{Deserialize, Serialize};

/// What a client proposal carries through the log.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Proposal {
    /// Client id.
    pub client: u64,
    /// Client sequence number (one outstanding request per client).
    pub seq: u64,
    /// The operation.
    pub command: Command,
}

impl Proposal {
    /// Encode for the log.
    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("serializable"))
    }

    /// Decode from the log.
    pub fn decode(data: &[u8]) -> Self {
        serde_json::from_slice(data).expect("the log holds only encoded proposals")
    }
}

/// The state machine of one node. In the simulation it is durable as soon as
/// an entry is applied (like a backend that stores the applied index in the
/// same transaction as the data).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Kv {
    /// Keys and values.
    pub state: State,
    /// Highest sequence applied per client.
    pub sessions: BTreeMap<u64, u64>,
    /// Raft index of the last applied entry.
    pub applied: u64,
    /// Outputs of each client's last request (not in snapshots).
    #[serde(skip)]
    pub last_output: BTreeMap<u64, Output>,
}

impl Kv {
    /// Apply a committed proposal at `index`. Returns its output (the stored
    /// one for a duplicate of the latest request, `None` for older duplicates).
    pub fn apply(&mut self, index: u64, p: &Proposal) -> Option<Output> {
        assert!(
            index > self.applied,
            "apply out of order: {index} after {}",
            self.applied
        );
        self.applied = index;
        let last = self.sessions.get(&p.client).copied().unwrap_or(0);
        if p.seq <= last {
            return if p.seq == last {
                self.last_output.get(&p.client).cloned()
            } else {
                None
            };
        }
        let out = apply(&mut self.state, &p.command);
        self.sessions.insert(p.client, p.seq);
        self.last_output.insert(p.client, out.clone());
        Some(out)
    }

    /// Note an applied entry that carries no proposal.
    pub fn skip(&mut self, index: u64) {
        assert!(index > self.applied, "apply out of order");
        self.applied = index;
    }

    /// Execute a read-only command against the current state.
    pub fn read(&self, command: &Command) -> Output {
        let mut copy = self.state.clone();
        apply(&mut copy, command)
    }

    /// Snapshot image.
    pub fn image(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("serializable"))
    }

    /// Restore from a snapshot image.
    pub fn restore(data: &[u8]) -> Self {
        serde_json::from_slice(data).expect("snapshot images are produced by Kv::image")
    }
}
