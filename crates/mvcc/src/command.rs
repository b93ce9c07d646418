//! Commands that travel through the Raft log, their responses, and the
//! binary encoding.
//!
//! Encoding: one version byte ([`CODEC_VERSION`]) followed by the `postcard`
//! encoding of [`Command`] (varint integers, length-prefixed bytes, enum
//! variants as varint tags). Decoding refuses an unknown version, malformed
//! or truncated input and trailing bytes.

use crate::auth::AuthOp;
use crate::error::{MvccError, Result};
use crate::request::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, TxnRequest, TxnResponse,
};
use serde::{Deserialize, Serialize};

/// Version byte leading every encoded command.
pub const CODEC_VERSION: u8 = 1;

/// A state-machine command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Does nothing (a new leader's empty entry, for instance).
    Noop,
    /// etcd Put.
    Put(PutRequest),
    /// etcd DeleteRange.
    DeleteRange(DeleteRangeRequest),
    /// etcd Txn.
    Txn(TxnRequest),
    /// etcd Compact: drop history before `revision`.
    Compact {
        /// Compaction revision.
        revision: i64,
    },
    /// Grants a lease. `id == 0` asks the state machine for an id derived
    /// from the log index (deterministic on every replica).
    LeaseGrant {
        /// Requested id, 0 = generate.
        id: i64,
        /// TTL in seconds.
        ttl: i64,
        /// The proposing leader's clock (ms), used only for the volatile
        /// expiry on the node that applies it.
        now_ms: i64,
    },
    /// Revokes a lease, deleting its keys in one revision (also how the
    /// leader expires leases).
    LeaseRevoke {
        /// Lease id.
        id: i64,
    },
    /// Records remaining TTLs so they survive a leader change.
    LeaseCheckpoint {
        /// `(lease id, remaining ttl seconds)`.
        checkpoints: Vec<(i64, i64)>,
    },
    /// A change to the auth store.
    Auth(AuthOp),
    /// A client's command whose permissions were checked against the auth
    /// store at `auth_revision`: refused with
    /// [`crate::AuthError::OldRevision`] if auth is enabled and the
    /// revision moved since (the permissions it was checked against may
    /// be gone). Never nested.
    Checked {
        /// Auth revision at the check.
        auth_revision: u64,
        /// The command.
        cmd: Box<Command>,
    },
    /// A Put, DeleteRange, Txn or LeaseGrant carrying a client's request id:
    /// applied at most once per `(session, seq)`; a retry is answered from
    /// the session table (`session.rs`). Last, so that older entries keep
    /// their encoding.
    Once {
        /// The client's session id.
        session: u64,
        /// The request's sequence number in the session (increasing).
        seq: u64,
        /// The proposing member's clock (ms): the session table's clock is
        /// the largest of these seen, so every member expires alike.
        now_ms: i64,
        /// The write itself.
        command: Box<Command>,
    },
}

impl Command {
    /// The command itself, without its [`Command::Once`] and
    /// [`Command::Checked`] wrappers (a request id around an auth check).
    pub fn inner(&self) -> &Command {
        match self {
            Command::Once { command, .. } => command.inner(),
            Command::Checked { cmd, .. } => cmd,
            c => c,
        }
    }
}

/// The answer to a successfully applied command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// For [`Command::Noop`] and [`Command::LeaseCheckpoint`].
    Empty {
        /// Header revision.
        revision: i64,
    },
    /// Put.
    Put(PutResponse),
    /// DeleteRange.
    DeleteRange(DeleteRangeResponse),
    /// Txn.
    Txn(TxnResponse),
    /// Compact.
    Compact {
        /// Header revision.
        revision: i64,
    },
    /// LeaseGrant.
    LeaseGrant {
        /// Granted id.
        id: i64,
        /// TTL.
        ttl: i64,
        /// Header revision.
        revision: i64,
    },
    /// LeaseRevoke.
    LeaseRevoke {
        /// Header revision.
        revision: i64,
    },
}

impl Command {
    /// Encodes the command.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![CODEC_VERSION];
        // Serializing into a Vec cannot fail for these types.
        let body = postcard::to_allocvec(self).expect("command encoding cannot fail");
        out.extend_from_slice(&body);
        out
    }

    /// Decodes a command, refusing malformed input.
    pub fn decode(buf: &[u8]) -> Result<Command> {
        let (&version, body) = buf
            .split_first()
            .ok_or_else(|| MvccError::Codec("empty input".into()))?;
        if version != CODEC_VERSION {
            return Err(MvccError::Codec(format!("unknown version {version}")));
        }
        let (cmd, rest) = postcard::take_from_bytes::<Command>(body)
            .map_err(|e| MvccError::Codec(e.to_string()))?;
        if !rest.is_empty() {
            return Err(MvccError::Codec(format!("{} trailing bytes", rest.len())));
        }
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Compare, CompareResult, CompareTarget, RequestOp};
    use bytes::Bytes;

    fn sample() -> Command {
        Command::Txn(TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal,
                target: CompareTarget::Value(Bytes::from_static(b"v")),
                key: Bytes::from_static(b"k"),
                range_end: Bytes::new(),
            }],
            success: vec![RequestOp::Put(PutRequest {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"w"),
                ..Default::default()
            })],
            failure: vec![],
        })
    }

    #[test]
    fn roundtrip() {
        for c in [
            sample(),
            Command::Noop,
            Command::Compact { revision: 7 },
            Command::LeaseGrant {
                id: 0,
                ttl: 5,
                now_ms: 1,
            },
            Command::LeaseCheckpoint {
                checkpoints: vec![(1, 2)],
            },
            Command::Auth(AuthOp::RoleAdd { name: "r".into() }),
            Command::Checked {
                auth_revision: 3,
                cmd: Box::new(sample()),
            },
        ] {
            assert_eq!(Command::decode(&c.encode()).unwrap(), c);
        }
    }

    #[test]
    fn rejects_malformed() {
        let enc = sample().encode();
        assert!(Command::decode(&[]).is_err());
        assert!(Command::decode(&[9, 0]).is_err());
        assert!(Command::decode(&enc[..enc.len() - 1]).is_err());
        let mut long = enc.clone();
        long.push(0);
        assert!(Command::decode(&long).is_err());
        assert!(Command::decode(&[CODEC_VERSION, 200]).is_err());
    }
}
