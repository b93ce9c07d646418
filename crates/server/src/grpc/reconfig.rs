//! etcd's strict reconfiguration checks (`--strict-reconfig-check`, on by
//! default), run on the leader, which knows who it heard from lately:
//!
//! - adding a voter needs enough *started* members (ones that published
//!   their name) to make a quorum of the grown cluster, and every voter
//!   reachable;
//! - adding a learner needs every voter reachable;
//! - removing a voter needs enough started members for a quorum of what
//!   remains and, unless the member is already unreachable, enough
//!   reachable voters left for a quorum;
//! - promoting a learner needs enough started members for a quorum of the
//!   grown voter set.

use crate::error::ServerError;
use crate::members::MemberTable;

/// Who is in the cluster and what the leader knows of them.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The member table.
    pub members: &'a MemberTable,
    /// Members the leader heard from within an election timeout (itself
    /// included).
    pub active: &'a [u64],
}

impl View<'_> {
    fn voters(&self) -> impl Iterator<Item = &crate::members::Member> {
        self.members.members.values().filter(|m| !m.is_learner)
    }

    fn started_voters(&self, except: Option<u64>) -> usize {
        self.voters()
            .filter(|m| Some(m.id) != except && !m.name.is_empty())
            .count()
    }

    fn all_voters_active(&self) -> bool {
        self.voters().all(|m| self.active.contains(&m.id))
    }
}

fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// May a member be added?
pub fn may_add(v: View<'_>, learner: bool) -> Result<(), ServerError> {
    if !learner && v.started_voters(None) < quorum(v.voters().count() + 1) {
        return Err(ServerError::NotEnoughStartedMembers);
    }
    if !v.all_voters_active() {
        return Err(ServerError::Unhealthy);
    }
    Ok(())
}

/// May member `id` be removed?
pub fn may_remove(v: View<'_>, id: u64) -> Result<(), ServerError> {
    let Some(m) = v.members.members.get(&id) else {
        return Err(ServerError::MemberNotFound);
    };
    if m.is_learner {
        return Ok(());
    }
    let voters = v.voters().count();
    if v.started_voters(Some(id)) < quorum(voters - 1) {
        return Err(ServerError::NotEnoughStartedMembers);
    }
    if !v.active.contains(&id) {
        return Ok(()); // a member that is down is safe to remove
    }
    let active = v.voters().filter(|m| v.active.contains(&m.id)).count();
    if active - 1 < quorum(voters - 1) {
        return Err(ServerError::Unhealthy);
    }
    Ok(())
}

/// May learner `id` be promoted?
pub fn may_promote(v: View<'_>, id: u64) -> Result<(), ServerError> {
    let learner_started = v
        .members
        .members
        .get(&id)
        .is_some_and(|m| !m.name.is_empty());
    let started = v.started_voters(None) + usize::from(learner_started);
    if started < quorum(v.voters().count() + 1) {
        return Err(ServerError::NotEnoughStartedMembers);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::members::Member;

    fn table(members: &[(u64, &str, bool)]) -> MemberTable {
        let mut t = MemberTable::bootstrap(&[], "t");
        for &(id, name, is_learner) in members {
            t.add(Member {
                id,
                name: name.to_string(),
                peer_urls: vec![format!("http://h:{id}")],
                client_urls: Vec::new(),
                is_learner,
            });
        }
        t
    }

    #[test]
    fn healthy_cluster_allows_everything() {
        let t = table(&[
            (1, "a", false),
            (2, "b", false),
            (3, "c", false),
            (4, "d", true),
        ]);
        let v = View {
            members: &t,
            active: &[1, 2, 3, 4],
        };
        assert!(may_add(v, false).is_ok());
        assert!(may_add(v, true).is_ok());
        assert!(may_remove(v, 2).is_ok());
        assert!(may_promote(v, 4).is_ok());
    }

    #[test]
    fn a_member_down_blocks_adds_and_removing_a_live_voter() {
        let t = table(&[(1, "a", false), (2, "b", false), (3, "c", false)]);
        let v = View {
            members: &t,
            active: &[1, 2],
        };
        assert!(matches!(may_add(v, false), Err(ServerError::Unhealthy)));
        assert!(matches!(may_add(v, true), Err(ServerError::Unhealthy)));
        // Removing a live voter would leave 1 of 2 reachable: no quorum.
        assert!(matches!(may_remove(v, 2), Err(ServerError::Unhealthy)));
        // The member that is down may go.
        assert!(may_remove(v, 3).is_ok());
    }

    #[test]
    fn unstarted_members_block_growth() {
        // Two of three voters never published their names.
        let t = table(&[
            (1, "a", false),
            (2, "", false),
            (3, "", false),
            (4, "", true),
        ]);
        let v = View {
            members: &t,
            active: &[1, 2, 3, 4],
        };
        assert!(matches!(
            may_add(v, false),
            Err(ServerError::NotEnoughStartedMembers)
        ));
        assert!(may_add(v, true).is_ok());
        assert!(matches!(
            may_promote(v, 4),
            Err(ServerError::NotEnoughStartedMembers)
        ));
        assert!(matches!(
            may_remove(v, 1),
            Err(ServerError::NotEnoughStartedMembers)
        ));
    }
}
