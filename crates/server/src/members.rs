//! The member table: ids, names, URLs, learners, removed ids and alarms.
//!
//! It changes only by applying log entries (conf changes, attribute and
//! alarm entries), so every member holds the same table. It is persisted
//! as a small JSON file, written atomically when it changes, and carried
//! inside Raft snapshots. Re-applying an entry is harmless (every change is
//! a set), which lets restart replay entries the file already covers.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Raft node id.
    pub id: u64,
    /// Name (empty until the member publishes it).
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Client URLs (empty until the member publishes them).
    pub client_urls: Vec<String>,
    /// Non-voting member.
    pub is_learner: bool,
}

/// The replicated member table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberTable {
    /// Cluster id, fixed at bootstrap.
    pub cluster_id: u64,
    /// Current members.
    pub members: BTreeMap<u64, Member>,
    /// Ids removed for good; they may never come back.
    pub removed: BTreeSet<u64>,
    /// Raised alarms: `(member id, alarm type)`.
    pub alarms: BTreeSet<(u64, i32)>,
}

/// FNV-1a, 64 bits: stable ids from names and URLs.
pub fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.iter().chain(std::iter::once(&0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h.max(1)
}

/// The id of a member: a hash of its sorted peer URLs, the cluster token and
/// a salt (0 at bootstrap, the time for members added later, so that a
/// re-added member gets a new id as in etcd).
pub fn member_id(peer_urls: &[String], token: &str, salt: u64) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut parts: Vec<&[u8]> = urls.iter().map(|u| u.as_bytes()).collect();
    let salt = salt.to_be_bytes();
    parts.push(token.as_bytes());
    parts.push(&salt);
    fnv64(&parts)
}

impl MemberTable {
    /// The table of a cluster bootstrapped from `--initial-cluster`.
    pub fn bootstrap(initial: &[(String, Vec<String>)], token: &str) -> MemberTable {
        let mut t = MemberTable::default();
        let mut ids = Vec::new();
        for (name, urls) in initial {
            let id = member_id(urls, token, 0);
            ids.push(id.to_be_bytes());
            t.members.insert(
                id,
                Member {
                    id,
                    name: name.clone(),
                    peer_urls: urls.clone(),
                    client_urls: Vec::new(),
                    is_learner: false,
                },
            );
        }
        ids.sort_unstable();
        let mut parts: Vec<&[u8]> = ids.iter().map(|b| b.as_slice()).collect();
        parts.push(token.as_bytes());
        t.cluster_id = fnv64(&parts);
        t
    }

    /// Members as a list ordered by id.
    pub fn list(&self) -> Vec<Member> {
        self.members.values().cloned().collect()
    }

    /// A member whose peer URLs overlap `urls`.
    pub fn find_by_peer_urls(&self, urls: &[String]) -> Option<&Member> {
        self.members
            .values()
            .find(|m| m.peer_urls.iter().any(|u| urls.contains(u)))
    }

    /// Adds or replaces a member (learner or voter).
    pub fn add(&mut self, m: Member) {
        if !self.removed.contains(&m.id) {
            self.members.insert(m.id, m);
        }
    }

    /// Removes a member for good.
    pub fn remove(&mut self, id: u64) {
        self.members.remove(&id);
        self.removed.insert(id);
        self.alarms.retain(|(m, _)| *m != id);
    }

    /// Marks a learner as a voter.
    pub fn promote(&mut self, id: u64) {
        if let Some(m) = self.members.get_mut(&id) {
            m.is_learner = false;
        }
    }

    /// Records a member's name and client URLs.
    pub fn set_attributes(&mut self, id: u64, name: &str, client_urls: &[String]) {
        if let Some(m) = self.members.get_mut(&id) {
            m.name = name.to_string();
            m.client_urls = client_urls.to_vec();
        }
    }

    /// Replaces a member's peer URLs.
    pub fn set_peer_urls(&mut self, id: u64, urls: &[String]) {
        if let Some(m) = self.members.get_mut(&id) {
            m.peer_urls = urls.to_vec();
        }
    }

    /// Encodes the table (for the file and for snapshots).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("member table encodes")
    }

    /// Decodes a table, refusing malformed input.
    pub fn decode(buf: &[u8]) -> Result<MemberTable, String> {
        serde_json::from_slice(buf).map_err(|e| format!("member table: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> MemberTable {
        MemberTable::bootstrap(
            &[
                ("a".into(), vec!["http://127.0.0.1:1".into()]),
                ("b".into(), vec!["http://127.0.0.1:2".into()]),
            ],
            "tok",
        )
    }

    #[test]
    fn bootstrap_ids_are_stable_and_distinct() {
        let (t1, t2) = (table(), table());
        assert_eq!(t1, t2);
        assert_eq!(t1.members.len(), 2);
        let other = MemberTable::bootstrap(&[("a".into(), vec!["http://127.0.0.1:1".into()])], "x");
        assert_ne!(other.cluster_id, t1.cluster_id);
    }

    #[test]
    fn removed_members_never_return() {
        let mut t = table();
        let id = *t.members.keys().next().unwrap();
        let m = t.members[&id].clone();
        t.remove(id);
        t.add(m);
        assert!(!t.members.contains_key(&id));
    }
}
