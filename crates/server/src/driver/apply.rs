//! Applying committed entries: runs of MVCC commands in one batch,
//! membership changes and server operations in between, and snapshots
//! received from the leader.

use std::sync::atomic::Ordering;

use concord_mvcc::{AuthOp, Command};
use concord_raft::{ConfChange, ConfChangeStep, Entry, EntryKind, Snapshot};

use super::Driver;
use crate::envelope::{self, MemberContext, Payload, ServerOp};
use crate::error::ServerError;
use crate::proposer::Outcome;
use crate::snapshot;

impl Driver {
    /// Applies committed entries in order: runs of MVCC commands go to the
    /// store in one batch; membership and server operations in between.
    pub(super) fn apply(&mut self, entries: &[Entry]) -> Result<(), ServerError> {
        let mut run: Vec<(u64, u64, Command)> = Vec::new();
        for e in entries {
            match &e.kind {
                EntryKind::Normal => match envelope::decode(&e.data) {
                    Ok(Some((id, Payload::Mvcc(cmd)))) => run.push((e.index, id, cmd)),
                    Ok(Some((id, Payload::Server(op)))) => {
                        self.apply_run(&mut run)?;
                        self.apply_server_op(op)?;
                        self.shared.proposer.respond(id, Ok(Outcome::Done));
                        // The store's applied index follows every entry, so
                        // that a snapshot's image and metadata agree.
                        run.push((e.index, 0, Command::Noop));
                    }
                    Ok(None) => run.push((e.index, 0, Command::Noop)),
                    Err(err) => {
                        // Only a bug puts an undecodable entry in the log;
                        // every member skips it the same way.
                        tracing::error!(index = e.index, error = %err, "skipping undecodable entry");
                        self.apply_run(&mut run)?;
                    }
                },
                EntryKind::ConfChange(cc) => {
                    self.apply_run(&mut run)?;
                    self.apply_conf_change(cc, &e.data)?;
                    run.push((e.index, 0, Command::Noop));
                }
            }
            self.applied = e.index;
        }
        self.apply_run(&mut run)
    }

    fn apply_run(&mut self, run: &mut Vec<(u64, u64, Command)>) -> Result<(), ServerError> {
        if run.is_empty() {
            return Ok(());
        }
        let mut meta = run_meta(run).into_iter();
        let batch: Vec<(u64, Command)> = run.drain(..).map(|(i, _, c)| (i, c)).collect();
        let auth_ops: Vec<AuthOp> = batch
            .iter()
            .filter_map(|(_, c)| match c.inner() {
                Command::Auth(op) => Some(op.clone()),
                _ => None,
            })
            .collect();
        // Events only when someone watches: building them was an
        // allocation per put that nobody read. A watcher added meanwhile is
        // sent to history for the revisions it missed (`skipped`).
        let watched = !self.shared.watch.is_empty();
        let applied = {
            let mut store = self.shared.store.write();
            store.set_events(watched);
            store.set_clock(self.shared.now_ms());
            let applied = store.apply_batch(&batch)?;
            if !auth_ops.is_empty() {
                self.shared.auth.applied(store.auth(), &auth_ops);
            }
            applied
        };
        let mut events = Vec::new();
        let (mut committed, mut failed) = (0u64, 0u64);
        for a in applied {
            let (id, revoked) = meta
                .find(|(i, ..)| *i == a.index)
                .map_or((0, None), |(_, id, r)| (id, r));
            if let Some(lease) = revoked {
                self.revoking.remove(&lease);
            }
            events.extend(a.events);
            match a.result {
                Ok(_) => committed += 1,
                Err(_) => failed += 1,
            }
            if id != 0 {
                self.shared
                    .proposer
                    .respond(id, Ok(Outcome::Mvcc(a.result)));
            }
        }
        // Once per batch: a counter update per entry showed in profiles.
        self.meters.committed.increment(committed);
        if failed > 0 {
            self.meters.failed.increment(failed);
        }
        self.publish(watched, events);
        Ok(())
    }

    /// Hands a batch's events to the watchers (or tells the hub that
    /// revisions went by unwatched).
    fn publish(&self, watched: bool, events: Vec<concord_mvcc::Event>) {
        if !watched {
            self.shared.watch.skipped(&self.shared.store.read());
        } else if !events.is_empty() {
            let store = self.shared.store.read();
            self.shared.watch.publish(events, &store);
        }
    }

    fn apply_server_op(&mut self, op: ServerOp) -> Result<(), ServerError> {
        if let ServerOp::Authenticate { name, token } = op {
            // Tokens live in memory only; nothing to save.
            if self.shared.auth.view().users.contains_key(&name) {
                let now = std::time::Instant::now();
                self.shared.auth.tokens.assign(token, name, now);
            }
            return Ok(());
        }
        let mut t = self.shared.members.write();
        match op {
            ServerOp::Authenticate { .. } => unreachable!("handled above"),
            ServerOp::SetAttributes {
                id,
                name,
                client_urls,
            } => t.set_attributes(id, &name, &client_urls),
            ServerOp::SetPeerUrls { id, peer_urls } => {
                t.set_peer_urls(id, &peer_urls);
                if let Some(u) = peer_urls.first() {
                    self.transport.set_peer(id, u.clone());
                }
            }
            ServerOp::Alarm {
                activate,
                member,
                alarm,
            } => {
                if activate {
                    t.alarms.insert((member, alarm));
                } else {
                    t.alarms.remove(&(member, alarm));
                }
            }
        }
        self.shared.data_dir().save_members(&t)?;
        Ok(())
    }

    fn apply_conf_change(&mut self, cc: &ConfChange, data: &[u8]) -> Result<(), ServerError> {
        failpoint!("before-apply-conf-change");
        let ctx: Option<MemberContext> = serde_json::from_slice(data).ok();
        let added = ctx.as_ref().and_then(|c| c.member.clone());
        let me = self.shared.me.id;
        let mut removed_self = false;
        {
            let mut t = self.shared.members.write();
            for step in &cc.changes {
                match *step {
                    ConfChangeStep::AddVoter(n) | ConfChangeStep::AddLearner(n) => {
                        let learner = matches!(step, ConfChangeStep::AddLearner(_));
                        match added.clone().filter(|m| m.id == n) {
                            Some(mut m) => {
                                m.is_learner = learner;
                                if let Some(u) = m.peer_urls.first() {
                                    self.transport.set_peer(n, u.clone());
                                }
                                t.add(m);
                            }
                            None if !learner => t.promote(n),
                            None => {}
                        }
                    }
                    ConfChangeStep::Remove(n) => {
                        t.remove(n);
                        self.transport.remove_peer(n);
                        removed_self |= n == me;
                    }
                }
            }
            self.shared.data_dir().save_members(&t)?;
        }
        failpoint!("after-apply-conf-change");
        if let Some(c) = ctx {
            self.shared.proposer.respond(c.request, Ok(Outcome::Done));
        }
        if removed_self {
            tracing::warn!("this member was removed from the cluster; stopping");
            self.shared.removed.store(true, Ordering::Relaxed);
            let _ = self.shared.shutdown.send(true);
        }
        Ok(())
    }

    pub(super) fn restore_snapshot(&mut self, s: &Snapshot) -> Result<(), ServerError> {
        // The received file is saved and marked in the WAL by now.
        failpoint!("raft-before-restore");
        let (members, image) = snapshot::decode(&s.data).map_err(ServerError::Internal)?;
        {
            let mut store = self.shared.store.write();
            store.restore(image)?;
            self.shared.auth.restored(store.auth());
        }
        failpoint!("raft-during-restore");
        self.shared.data_dir().save_members(&members)?;
        for m in members.members.values() {
            if let Some(u) = m.peer_urls.first() {
                self.transport.set_peer(m.id, u.clone());
            }
        }
        *self.shared.members.write() = members;
        self.applied = s.meta.index;
        self.snapshot_index = s.meta.index;
        tracing::info!(index = s.meta.index, "restored a snapshot from the leader");
        Ok(())
    }
}

/// Index, request id and (for revocations) lease id of each entry of a
/// run, in the order the store answers them (it skips applied indexes).
fn run_meta(run: &[(u64, u64, Command)]) -> Vec<(u64, u64, Option<i64>)> {
    run.iter()
        .map(|(i, id, c)| {
            let revoked = match c.inner() {
                Command::LeaseRevoke { id } => Some(*id),
                _ => None,
            };
            (*i, *id, revoked)
        })
        .collect()
}
