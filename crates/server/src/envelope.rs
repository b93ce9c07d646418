//! What a log entry carries: a request id (so the member that proposed it
//! can answer its client) and either an MVCC command or a server operation.
//!
//! Layout of a normal entry: 8-byte big-endian request id, 1 kind byte
//! (0 = MVCC command in its own codec, 1 = server operation as JSON), then
//! the payload. A membership change entry carries a [`MemberContext`] as JSON.

use bytes::Bytes;
use concord_mvcc::Command;
use serde::{Deserialize, Serialize};

/// A server-level replicated operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerOp {
    /// A member publishes its name and client URLs.
    SetAttributes {
        /// Member id.
        id: u64,
        /// Name.
        name: String,
        /// Client URLs.
        client_urls: Vec<String>,
    },
    /// MemberUpdate: new peer URLs.
    SetPeerUrls {
        /// Member id.
        id: u64,
        /// Peer URLs.
        peer_urls: Vec<String>,
    },
    /// A user logged in on some member: every member learns its token
    /// (if the user still exists when it applies), as etcd's simple
    /// tokens are assigned through the log.
    Authenticate {
        /// User.
        name: String,
        /// The token the member that checked the password made.
        token: String,
    },
    /// Raise or clear an alarm.
    Alarm {
        /// True to raise.
        activate: bool,
        /// Member the alarm is for.
        member: u64,
        /// etcd AlarmType value.
        alarm: i32,
    },
}

/// The payload of a normal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// An MVCC command.
    Mvcc(Command),
    /// A server operation.
    Server(ServerOp),
}

/// Data attached to a membership change entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberContext {
    /// Request id of the proposer.
    pub request: u64,
    /// The member added (absent for removals and promotions).
    pub member: Option<crate::members::Member>,
}

/// Encodes a normal entry.
pub fn encode(request: u64, payload: &Payload) -> Bytes {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&request.to_be_bytes());
    match payload {
        Payload::Mvcc(c) => {
            out.push(0);
            out.extend_from_slice(&c.encode());
        }
        Payload::Server(op) => {
            out.push(1);
            out.extend_from_slice(&serde_json::to_vec(op).expect("server op encodes"));
        }
    }
    Bytes::from(out)
}

/// Decodes a normal entry. An empty entry (a new leader's) is `None`.
pub fn decode(data: &[u8]) -> Result<Option<(u64, Payload)>, String> {
    if data.is_empty() {
        return Ok(None);
    }
    if data.len() < 9 {
        return Err(format!("entry of {} bytes is too short", data.len()));
    }
    let request = u64::from_be_bytes(data[..8].try_into().expect("8 bytes"));
    let payload = match data[8] {
        0 => Payload::Mvcc(Command::decode(&data[9..]).map_err(|e| e.to_string())?),
        1 => Payload::Server(serde_json::from_slice(&data[9..]).map_err(|e| e.to_string())?),
        k => return Err(format!("unknown entry kind {k}")),
    };
    Ok(Some((request, payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_refusals() {
        let p = Payload::Mvcc(Command::Compact { revision: 3 });
        assert_eq!(decode(&encode(7, &p)).unwrap(), Some((7, p)));
        let p = Payload::Server(ServerOp::Alarm {
            activate: true,
            member: 1,
            alarm: 1,
        });
        assert_eq!(decode(&encode(9, &p)).unwrap(), Some((9, p)));
        assert_eq!(decode(b"").unwrap(), None);
        assert!(decode(b"short").is_err());
        assert!(decode(&[0, 0, 0, 0, 0, 0, 0, 1, 7]).is_err());
        assert!(decode(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 99]).is_err());
    }
}
