//! Exactly-once writes (beyond etcd): a client may tag a Put, DeleteRange
//! or Txn with a request id in gRPC metadata. The write then travels
//! through the log as [`Command::Once`], and every member's state machine
//! applies it at most once (`concord_mvcc`'s session table). Requests
//! without the keys are handled as etcd handles them.
//!
//! Metadata keys (both or neither):
//! - [`SESSION_KEY`]: the client's session id, a `u64` in hex (at most 16
//!   digits), chosen by the client and unique among its sessions;
//! - [`SEQ_KEY`]: the request's sequence number in the session, a `u64`
//!   in decimal, increasing, one request in flight per session.

use concord_mvcc::Command;
use tonic::metadata::MetadataMap;
use tonic::Status;

/// Metadata key of the client's session id (hex `u64`).
pub const SESSION_KEY: &str = "concord-session";
/// Metadata key of the request's sequence number (decimal `u64`).
pub const SEQ_KEY: &str = "concord-seq";

/// A request id: the client's session and the request's number in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId {
    /// Session id.
    pub session: u64,
    /// Sequence number.
    pub seq: u64,
}

/// The request id in `meta`, if the client sent one; malformed or half
/// ids are refused (InvalidArgument), so that a client that means to be
/// deduplicated never silently is not.
pub fn request_id(meta: &MetadataMap) -> Result<Option<RequestId>, Status> {
    let session = meta.get(SESSION_KEY);
    let seq = meta.get(SEQ_KEY);
    let bad = |what: &str| Status::invalid_argument(format!("concord: malformed {what}"));
    match (session, seq) {
        (None, None) => Ok(None),
        (Some(session), Some(seq)) => {
            let session = session
                .to_str()
                .ok()
                .filter(|s| !s.is_empty() && s.len() <= 16)
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or_else(|| bad(SESSION_KEY))?;
            let seq = seq
                .to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| bad(SEQ_KEY))?;
            Ok(Some(RequestId { session, seq }))
        }
        _ => Err(Status::invalid_argument(format!(
            "concord: {SESSION_KEY} and {SEQ_KEY} go together"
        ))),
    }
}

/// `cmd` under `id` (unchanged without one). The entry carries this
/// member's wall clock: the session table's clock is the largest such
/// time it has applied, the same on every member.
pub fn tag(id: Option<RequestId>, cmd: Command) -> Command {
    let Some(RequestId { session, seq }) = id else {
        return cmd;
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Command::Once {
        session,
        seq,
        now_ms,
        command: Box::new(cmd),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&'static str, &'static str)]) -> MetadataMap {
        let mut m = MetadataMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn ids_are_read_and_bad_ones_refused() {
        assert_eq!(request_id(&meta(&[])).unwrap(), None);
        let id = request_id(&meta(&[(SESSION_KEY, "00ff"), (SEQ_KEY, "42")])).unwrap();
        assert_eq!(
            id,
            Some(RequestId {
                session: 255,
                seq: 42
            })
        );
        for bad in [
            vec![(SESSION_KEY, "ff")],
            vec![(SEQ_KEY, "1")],
            vec![(SESSION_KEY, "zz"), (SEQ_KEY, "1")],
            vec![(SESSION_KEY, "1"), (SEQ_KEY, "-1")],
            vec![(SESSION_KEY, "11112222333344445"), (SEQ_KEY, "1")],
        ] {
            let e = request_id(&meta(&bad)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
        let cmd = Command::Compact { revision: 1 };
        assert_eq!(tag(None, cmd.clone()), cmd);
        assert!(matches!(
            tag(id, cmd),
            Command::Once {
                session: 255,
                seq: 42,
                ..
            }
        ));
    }
}
