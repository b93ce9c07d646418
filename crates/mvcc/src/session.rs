//! Client sessions: exactly-once writes (Raft dissertation, section 6.3).
//!
//! A write may carry a request id, `(session, seq)` ([`Command::Once`]).
//! The table keeps, per session, the last applied sequence number and its
//! response. A request with that number again (a client's retry) gets the
//! recorded response and changes nothing; a smaller number gets
//! [`MvccError::AlreadyApplied`]; a larger one is applied and recorded.
//! Every member applies the same entries, so every member's table is the
//! same; it is persisted with the applied index and carried in snapshots.
//!
//! Expiry runs on a replicated clock: the largest proposer time carried by
//! the tagged entries so far, never a member's own wall clock (members'
//! clocks differ; their tables would too). A session idle for
//! [`SESSION_TTL_MS`] on that clock is dropped, and at most
//! [`MAX_SESSIONS`] are kept, the least recently used dropped first.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::command::{Command, Response};
use crate::error::{MvccError, Result};
use crate::state::State;
use crate::types::Event;

/// A session idle this long (ms of the replicated clock) is forgotten; a
/// retry after that is applied again, so clients give up well before.
pub const SESSION_TTL_MS: i64 = 10 * 60 * 1000;
/// Sessions kept at most; beyond, the least recently used is dropped.
pub const MAX_SESSIONS: usize = 10_000;

/// One client session's last applied request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The session id the client chose.
    pub id: u64,
    /// The last applied sequence number.
    pub seq: u64,
    /// Replicated clock (ms) when it was applied.
    pub last_ms: i64,
    /// What applying it answered (a request error included).
    pub response: Result<Response>,
}

/// The session table, ordered by last use for expiry.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    table: BTreeMap<u64, SessionRecord>,
    by_age: BTreeSet<(i64, u64)>,
    clock_ms: i64,
}

impl Sessions {
    /// Adds a record (load, restore, apply), replacing the session's last.
    pub(crate) fn insert(&mut self, rec: SessionRecord) {
        self.clock_ms = self.clock_ms.max(rec.last_ms);
        if let Some(old) = self.table.get(&rec.id) {
            self.by_age.remove(&(old.last_ms, old.id));
        }
        self.by_age.insert((rec.last_ms, rec.id));
        self.table.insert(rec.id, rec);
        debug_assert_eq!(self.table.len(), self.by_age.len());
    }

    fn remove_oldest(&mut self) -> Option<u64> {
        let (_, id) = self.by_age.pop_first()?;
        self.table.remove(&id);
        Some(id)
    }

    /// Moves the clock to `now_ms` (never back); drops sessions idle for
    /// the TTL. Returns the dropped ids.
    fn advance(&mut self, now_ms: i64) -> Vec<u64> {
        self.clock_ms = self.clock_ms.max(now_ms);
        let mut gone = Vec::new();
        while let Some(&(last, _)) = self.by_age.first() {
            if last.saturating_add(SESSION_TTL_MS) >= self.clock_ms {
                break;
            }
            gone.extend(self.remove_oldest());
        }
        gone
    }

    /// The session's record.
    pub(crate) fn get(&self, id: u64) -> Option<&SessionRecord> {
        self.table.get(&id)
    }

    /// All records, in session id order.
    pub(crate) fn records(&self) -> impl Iterator<Item = &SessionRecord> {
        self.table.values()
    }

    /// Number of sessions.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}

impl State {
    /// Applies `cmd` under the request id `(session, seq)` at most once.
    pub(crate) fn apply_once(
        &mut self,
        index: u64,
        session: u64,
        seq: u64,
        now_ms: i64,
        cmd: &Command,
    ) -> (Result<Response>, Vec<Event>) {
        if matches!(cmd, Command::Once { .. })
            || !matches!(
                cmd.inner(),
                Command::Put(_)
                    | Command::DeleteRange(_)
                    | Command::Txn(_)
                    | Command::LeaseGrant { .. }
            )
        {
            let e = MvccError::Codec("only a put, delete, txn or lease grant takes an id".into());
            return (Err(e), Vec::new());
        }
        for id in self.sessions.advance(now_ms) {
            self.changes.sessions.push((id, None));
        }
        match self.sessions.get(session) {
            Some(r) if r.seq == seq => return (r.response.clone(), Vec::new()),
            Some(r) if r.seq > seq => return (Err(MvccError::AlreadyApplied), Vec::new()),
            _ => {}
        }
        let (result, events) = self.apply_command(index, cmd);
        if let Err(MvccError::Storage(_) | MvccError::Corrupt(_)) = result {
            // The store is poisoned; nothing is recorded.
            return (result, events);
        }
        if let Err(MvccError::Auth(crate::auth::AuthError::OldRevision)) = result {
            // Checked against permissions since changed, so not applied:
            // the client checks again and retries under the same id.
            return (result, events);
        }
        if self.sessions.get(session).is_none() && self.sessions.len() >= MAX_SESSIONS {
            let id = self
                .sessions
                .remove_oldest()
                .expect("a full table has a session");
            self.changes.sessions.push((id, None));
        }
        let rec = SessionRecord {
            id: session,
            seq,
            last_ms: self.sessions.clock_ms,
            response: result.clone(),
        };
        self.changes.sessions.push((session, Some(rec.clone())));
        self.sessions.insert(rec);
        (result, events)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::request::PutRequest;
    use crate::store::Store;

    fn once(session: u64, seq: u64, now_ms: i64, key: &str) -> Command {
        Command::Once {
            session,
            seq,
            now_ms,
            command: Box::new(Command::Put(PutRequest {
                key: Bytes::from(key.to_string()),
                value: Bytes::from_static(b"v"),
                ..Default::default()
            })),
        }
    }

    fn revision(r: &Result<Response>) -> i64 {
        match r {
            Ok(Response::Put(p)) => p.revision,
            other => panic!("not a put: {other:?}"),
        }
    }

    #[test]
    fn a_retry_gets_the_recorded_response_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path().join("db")).unwrap();
        let first = s.apply(1, &once(7, 1, 1000, "a")).unwrap().unwrap();
        let rev = s.current_revision();
        let again = s.apply(2, &once(7, 1, 1001, "a")).unwrap().unwrap();
        assert_eq!(again.result, first.result);
        assert_eq!(s.current_revision(), rev, "the retry applied again");
        assert!(again.events.is_empty());
        // The next number applies; an older one is refused.
        let next = s.apply(3, &once(7, 2, 1002, "a")).unwrap().unwrap();
        assert_eq!(revision(&next.result), rev + 1);
        let old = s.apply(4, &once(7, 1, 1003, "a")).unwrap().unwrap();
        assert_eq!(old.result, Err(MvccError::AlreadyApplied));
        // Another session with the same number is its own.
        let other = s.apply(5, &once(8, 1, 1004, "b")).unwrap().unwrap();
        assert_eq!(revision(&other.result), rev + 2);
        // Untagged writes are not deduplicated.
        let plain = Command::Put(PutRequest {
            key: Bytes::from_static(b"c"),
            ..Default::default()
        });
        s.apply(6, &plain).unwrap();
        s.apply(7, &plain).unwrap();
        assert_eq!(s.current_revision(), rev + 4);
    }

    #[test]
    fn the_table_survives_a_restart_and_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut s = Store::open(&path).unwrap();
        let first = s.apply(1, &once(7, 1, 1000, "a")).unwrap().unwrap();
        s.checkpoint().unwrap();
        drop(s);
        let mut s = Store::open(&path).unwrap();
        let retry = s.apply(2, &once(7, 1, 1000, "a")).unwrap().unwrap();
        assert_eq!(retry.result, first.result);
        assert_eq!(s.current_revision(), 2);
        let image = s.snapshot().unwrap();
        let mut t = Store::open(dir.path().join("other")).unwrap();
        t.restore(&image).unwrap();
        let retry = t.apply(3, &once(7, 1, 1000, "a")).unwrap().unwrap();
        assert_eq!(retry.result, first.result);
        assert_eq!(t.current_revision(), 2);
        drop(t);
        let t = Store::open(dir.path().join("other")).unwrap();
        assert_eq!(t.sessions().len(), 1);
    }

    #[test]
    fn idle_sessions_expire_on_the_replicated_clock_and_the_table_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path().join("db")).unwrap();
        s.apply(1, &once(1, 1, 0, "a")).unwrap();
        s.apply(2, &once(2, 1, SESSION_TTL_MS, "a")).unwrap();
        // Session 1 is exactly one TTL idle: kept.
        assert_eq!(s.sessions().len(), 2);
        // A proposer whose clock lags does not move the clock back.
        s.apply(3, &once(3, 1, 5, "a")).unwrap();
        assert_eq!(s.sessions().len(), 3);
        s.apply(4, &once(2, 2, SESSION_TTL_MS + 1, "a")).unwrap();
        let ids: Vec<u64> = s.sessions().iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![2, 3], "session 1 expired");
        // Its retry is applied again: expiry is the documented limit.
        let rev = s.current_revision();
        s.apply(5, &once(1, 1, SESSION_TTL_MS + 1, "a")).unwrap();
        assert_eq!(s.current_revision(), rev + 1);

        let mut index = 10;
        for id in 100..100 + MAX_SESSIONS as u64 {
            index += 1;
            s.apply(index, &once(id, 1, SESSION_TTL_MS + 2, "b"))
                .unwrap();
        }
        assert_eq!(s.sessions().len(), MAX_SESSIONS);
        assert!(s.sessions().iter().all(|r| r.id >= 100), "oldest dropped");
    }

    #[test]
    fn only_writes_take_an_id() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path().join("db")).unwrap();
        let cmd = Command::Once {
            session: 1,
            seq: 1,
            now_ms: 0,
            command: Box::new(Command::Compact { revision: 1 }),
        };
        let r = s.apply(1, &cmd).unwrap().unwrap();
        assert!(matches!(r.result, Err(MvccError::Codec(_))));
        assert!(s.sessions().is_empty());
    }
}
