//! Applying one command to the in-memory state: validate, then mutate.

use crate::auth::AuthError;
use crate::command::{Command, Response};
use crate::error::{MvccError, Result};
use crate::intervals::check_intervals;
use crate::request::{DeleteRangeRequest, PutRequest, TxnRequest};
use crate::state::{key_bounds, State};
use crate::types::Event;

/// What applying one log entry produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Raft log index of the entry.
    pub index: u64,
    /// The answer for the client, or the request error (in which case
    /// nothing changed).
    pub result: Result<Response>,
    /// Events this entry produced, in revision order, for live watchers.
    pub events: Vec<Event>,
    /// Store revision after the entry.
    pub revision: i64,
}

impl State {
    /// Applies one command; on error nothing changed.
    pub(crate) fn apply_command(
        &mut self,
        index: u64,
        cmd: &Command,
    ) -> (Result<Response>, Vec<Event>) {
        let mut events = Vec::new();
        let r = match cmd {
            Command::Noop => Ok(Response::Empty {
                revision: self.current_rev,
            }),
            Command::Put(p) => self.apply_put(p, &mut events),
            Command::DeleteRange(d) => self.apply_delete(d, &mut events),
            Command::Txn(t) => self.apply_txn(t, &mut events),
            Command::Compact { revision } => self.compact(*revision).map(|()| Response::Compact {
                revision: self.current_rev,
            }),
            Command::LeaseGrant { id, ttl, now_ms } => self
                .lease_grant(index, *id, *ttl, *now_ms)
                .map(|id| Response::LeaseGrant {
                    id,
                    ttl: (*ttl).max(1),
                    revision: self.current_rev,
                }),
            Command::LeaseRevoke { id } => self.lease_revoke(*id).map(|ev| {
                events = ev;
                Response::LeaseRevoke {
                    revision: self.current_rev,
                }
            }),
            Command::Once {
                session,
                seq,
                now_ms,
                command,
            } => return self.apply_once(index, *session, *seq, *now_ms, command),
            Command::LeaseCheckpoint { checkpoints } => {
                self.lease_checkpoint(checkpoints);
                Ok(Response::Empty {
                    revision: self.current_rev,
                })
            }
            Command::Auth(op) => self.auth.apply(op).map_err(MvccError::Auth).map(|()| {
                self.changes.auth = Some(self.auth.clone());
                Response::Empty {
                    revision: self.current_rev,
                }
            }),
            Command::Checked { auth_revision, cmd } => {
                if matches!(**cmd, Command::Checked { .. }) {
                    Err(MvccError::Codec("nested checked command".into()))
                } else if self.auth.enabled && *auth_revision < self.auth.revision {
                    Err(MvccError::Auth(AuthError::OldRevision))
                } else {
                    return self.apply_command(index, cmd);
                }
            }
        };
        (r, events)
    }

    fn apply_put(&mut self, p: &PutRequest, events: &mut Vec<Event>) -> Result<Response> {
        self.check_put(p)?;
        let mut w = self.writer();
        let mut resp = self.put(&mut w, p)?;
        *events = self.finish(w);
        resp.revision = self.current_rev;
        Ok(Response::Put(resp))
    }

    fn apply_delete(
        &mut self,
        d: &DeleteRangeRequest,
        events: &mut Vec<Event>,
    ) -> Result<Response> {
        key_bounds(&d.key, &d.range_end)?;
        if d.key.len() + d.range_end.len() > self.limits.max_request_bytes {
            return Err(MvccError::RequestTooLarge);
        }
        let mut w = self.writer();
        let mut resp = self.delete_range(&mut w, d)?;
        *events = self.finish(w);
        resp.revision = self.current_rev;
        Ok(Response::DeleteRange(resp))
    }

    fn apply_txn(&mut self, t: &TxnRequest, events: &mut Vec<Event>) -> Result<Response> {
        self.check_txn_static(t)?;
        check_intervals(&t.success)?;
        check_intervals(&t.failure)?;
        let mut path = Vec::new();
        self.txn_path(t, &mut path)?;
        let mut w = self.writer();
        let mut resp = self.txn(&mut w, t, &mut path.iter())?;
        *events = self.finish(w);
        resp.revision = self.current_rev;
        Ok(Response::Txn(resp))
    }
}
