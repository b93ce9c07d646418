//! How a member decides at start-up whether it restarts, bootstraps or
//! joins.
//!
//! The decision is the data's, not a side file's: a member whose WAL holds
//! its log restarts, whatever the flags say; `member_id` only names it, and
//! when that file is missing or damaged the id is found again in the
//! member table by this member's advertised peer URLs (etcd derives member
//! ids from them too). What cannot be rebuilt stops the member with an
//! error that says what to do.

use crate::datadir::{DataDir, IdFile};
use crate::members::MemberTable;

/// The facts a start is decided from.
#[derive(Debug)]
pub(crate) struct Found<'a> {
    /// The WAL holds this member's Raft log.
    pub wal_log: bool,
    /// The backend's applied index.
    pub backend_applied: u64,
    /// The `member_id` file.
    pub id_file: IdFile,
    /// The member table (the file, else the newest snapshot's).
    pub table: Option<&'a MemberTable>,
    /// `--initial-advertise-peer-urls`.
    pub peer_urls: &'a [String],
    /// `--initial-cluster-state new`.
    pub new_cluster: bool,
}

/// How a member starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// From its own data, as member `id`; `rebuilt` when the `member_id`
    /// file was missing or damaged and the id was found in the table.
    Restart {
        /// This member's id.
        id: u64,
        /// The `member_id` file must be written again.
        rebuilt: bool,
    },
    /// Found a new cluster with `--initial-cluster`.
    Bootstrap,
    /// Join an existing cluster (added with MemberAdd first).
    Join,
}

/// Decides how a member starts, or says why it cannot and what to do.
pub(crate) fn plan(f: &Found<'_>, data_dir: &DataDir) -> Result<Plan, String> {
    let dir = data_dir.root().display();
    if !f.wal_log {
        if f.backend_applied > 0 {
            return Err(format!(
                "{dir} has a backend with entries applied up to index {} but no WAL: the \
                 member's Raft log is gone, so it cannot rejoin safely. Restore the wal/ \
                 directory from a backup, or remove this member (etcdctl member remove), \
                 empty {dir} and add it again",
                f.backend_applied
            ));
        }
        return Ok(if f.new_cluster {
            Plan::Bootstrap
        } else {
            Plan::Join
        });
    }
    let Some(table) = f.table else {
        return Err(format!(
            "{dir} has a WAL but no member table ({}) and no snapshot holding one: \
             restore the file from a backup, or remove this member (etcdctl member remove), \
             empty {dir} and add it again",
            data_dir.members_file().display()
        ));
    };
    let known = |id: u64| table.members.contains_key(&id) || table.removed.contains(&id);
    let broken = match &f.id_file {
        IdFile::Id(id) if known(*id) => {
            return Ok(Plan::Restart {
                id: *id,
                rebuilt: false,
            })
        }
        IdFile::Id(id) => format!("names member {id:x}, which the member table does not know"),
        IdFile::Missing => "is missing".to_string(),
        IdFile::Damaged(what) => format!("does not hold a member id (it holds {what})"),
    };
    match table.find_by_peer_urls(f.peer_urls) {
        Some(m) => Ok(Plan::Restart {
            id: m.id,
            rebuilt: true,
        }),
        None => Err(format!(
            "{} {broken}, and no member in the member table has the peer URLs {:?}: \
             write this member's id (decimal, from `etcdctl member list`) into that file, \
             or start it with the --initial-advertise-peer-urls it was added with",
            data_dir.member_id_file().display(),
            f.peer_urls
        )),
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

    fn found<'a>(t: Option<&'a MemberTable>, urls: &'a [String], id: IdFile) -> Found<'a> {
        Found {
            wal_log: true,
            backend_applied: 9,
            id_file: id,
            table: t,
            peer_urls: urls,
            new_cluster: true,
        }
    }

    #[test]
    fn a_wal_means_restart_whatever_the_flags_and_the_id_file_say() {
        let t = table();
        let b = t
            .find_by_peer_urls(&["http://127.0.0.1:2".into()])
            .unwrap()
            .id;
        let urls = vec!["http://127.0.0.1:2".to_string()];
        let dir = &DataDir::new("/d");
        let ok = |id| plan(&found(Some(&t), &urls, id), dir);
        assert_eq!(
            ok(IdFile::Id(b)),
            Ok(Plan::Restart {
                id: b,
                rebuilt: false
            })
        );
        // Missing, emptied, garbage or unknown id: found again by peer URLs.
        for id in [
            IdFile::Missing,
            IdFile::Damaged("\"\"".into()),
            IdFile::Damaged("\"x1\"".into()),
            IdFile::Id(12345),
        ] {
            assert_eq!(
                ok(id),
                Ok(Plan::Restart {
                    id: b,
                    rebuilt: true
                })
            );
        }
    }

    #[test]
    fn what_cannot_be_rebuilt_stops_with_what_to_do() {
        let t = table();
        let dir = &DataDir::new("/d");
        let other = vec!["http://127.0.0.1:9".to_string()];
        let e = plan(&found(Some(&t), &other, IdFile::Missing), dir).unwrap_err();
        assert!(
            e.contains("/d/member_id is missing") && e.contains("--initial-advertise-peer-urls"),
            "{e}"
        );
        let e = plan(&found(None, &other, IdFile::Id(1)), dir).unwrap_err();
        assert!(
            e.contains("no member table") && e.contains("member remove"),
            "{e}"
        );
        let mut f = found(Some(&t), &other, IdFile::Missing);
        f.wal_log = false;
        let e = plan(&f, dir).unwrap_err();
        assert!(e.contains("up to index 9 but no WAL"), "{e}");
    }

    #[test]
    fn without_data_the_flags_decide() {
        let t = table();
        let urls = vec![];
        let mut f = found(Some(&t), &urls, IdFile::Missing);
        f.wal_log = false;
        f.backend_applied = 0;
        assert_eq!(plan(&f, &DataDir::new("/d")), Ok(Plan::Bootstrap));
        f.new_cluster = false;
        assert_eq!(plan(&f, &DataDir::new("/d")), Ok(Plan::Join));
    }
}
