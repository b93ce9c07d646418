//! Session guarantees (beyond etcd): a client sends the highest revision
//! it has seen in [`MIN_REVISION_KEY`]; a serializable read served here
//! waits until this member has applied at least that revision, so reads
//! from followers never go back in time for that client (read-your-writes,
//! monotonic reads). The wait is bounded by [`MAX_WAIT`]; after it the
//! read is refused with Unavailable and [`BEHIND`], and the client tries
//! another member. Linearizable reads need none of this (the ReadIndex
//! barrier is stronger).

use std::time::{Duration, Instant};

use tonic::metadata::MetadataMap;
use tonic::Status;

use super::State;

/// Metadata key: the lowest revision the read may be served at (decimal).
pub const MIN_REVISION_KEY: &str = "concord-min-revision";
/// Longest wait for the member to catch up before the read is refused.
pub const MAX_WAIT: Duration = Duration::from_secs(1);
/// How often a waiting read looks at the applied revision.
const POLL: Duration = Duration::from_millis(2);
/// The start of the refusal's message (clients match on it).
pub const BEHIND: &str = "concord: member is behind the revision the client has seen";

/// The revision the client asks for, if any (malformed: InvalidArgument).
pub fn min_revision(meta: &MetadataMap) -> Result<Option<i64>, Status> {
    let Some(v) = meta.get(MIN_REVISION_KEY) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| Status::invalid_argument(format!("concord: malformed {MIN_REVISION_KEY}")))
}

/// Waits (at most [`MAX_WAIT`]) until the store's revision reaches `rev`.
pub async fn wait_applied(state: &State, rev: i64) -> Result<(), Status> {
    let deadline = Instant::now() + MAX_WAIT;
    loop {
        let current = state.store.read().current_revision();
        if current >= rev {
            return Ok(());
        }
        if Instant::now() >= deadline {
            metrics::counter!("concord_min_revision_refused_total").increment(1);
            return Err(Status::unavailable(format!(
                "{BEHIND} (applied {current}, asked {rev})"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_read_and_a_bad_one_refused() {
        let mut m = MetadataMap::new();
        assert_eq!(min_revision(&m).unwrap(), None);
        m.insert(MIN_REVISION_KEY, "17".parse().unwrap());
        assert_eq!(min_revision(&m).unwrap(), Some(17));
        m.insert(MIN_REVISION_KEY, "x".parse().unwrap());
        assert_eq!(
            min_revision(&m).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
