//! The data directory: where each file lives, how small metadata files are
//! written (atomically and durably), and what is read back from them.
//!
//! Layout under `--data-dir`:
//! - `wal/`: the write-ahead log (the truth about this member's Raft state)
//! - `snap/`: Raft snapshot files
//! - `backend.redb`: the MVCC backend
//! - `members.json`: the replicated member table, as last applied here
//! - `member_id`: this member's id, in decimal

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::members::MemberTable;

/// A member's data directory: the one place that knows its layout.
#[derive(Debug, Clone)]
pub(crate) struct DataDir {
    root: PathBuf,
}

/// What the `member_id` file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IdFile {
    /// No such file.
    Missing,
    /// It does not hold an id (empty, truncated, garbage).
    Damaged(String),
    /// This member's id.
    Id(u64),
}

impl DataDir {
    /// The directory at `root` (nothing is created).
    pub(crate) fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    /// Creates the directory if it does not exist.
    pub(crate) fn create(root: impl Into<PathBuf>) -> std::io::Result<DataDir> {
        let dir = DataDir::new(root);
        std::fs::create_dir_all(&dir.root)?;
        Ok(dir)
    }

    /// The directory itself (temporary files go here: same filesystem).
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The MVCC backend file.
    pub(crate) fn backend(&self) -> PathBuf {
        self.root.join("backend.redb")
    }

    /// The write-ahead log's directory.
    pub(crate) fn wal(&self) -> PathBuf {
        self.root.join("wal")
    }

    /// The Raft snapshots' directory.
    pub(crate) fn snap(&self) -> PathBuf {
        self.root.join("snap")
    }

    /// The member table file.
    pub(crate) fn members_file(&self) -> PathBuf {
        self.root.join("members.json")
    }

    /// The file that names this member.
    pub(crate) fn member_id_file(&self) -> PathBuf {
        self.root.join("member_id")
    }

    /// The backend file's size in bytes (0 if it cannot be read).
    pub(crate) fn backend_size(&self) -> u64 {
        std::fs::metadata(self.backend()).map_or(0, |m| m.len())
    }

    /// Reads the `member_id` file.
    pub(crate) fn read_member_id(&self) -> std::io::Result<IdFile> {
        match std::fs::read(self.member_id_file()) {
            Ok(b) => {
                let text = String::from_utf8_lossy(&b);
                Ok(match text.trim().parse::<u64>() {
                    Ok(id) if id != 0 => IdFile::Id(id),
                    _ => {
                        IdFile::Damaged(format!("{:?}", text.chars().take(40).collect::<String>()))
                    }
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(IdFile::Missing),
            Err(e) => Err(e),
        }
    }

    /// Writes the `member_id` file (atomically) unless it already says `id`.
    pub(crate) fn save_member_id(&self, id: u64) -> std::io::Result<()> {
        if self.read_member_id()? == IdFile::Id(id) {
            return Ok(());
        }
        self.write_atomic("member_id", id.to_string().as_bytes())
    }

    /// Loads the member table file, if there is one; a damaged file is an
    /// error, not an empty table.
    pub(crate) fn load_members(&self) -> std::io::Result<Option<MemberTable>> {
        let path = self.members_file();
        match std::fs::read(&path) {
            Ok(buf) => MemberTable::decode(&buf).map(Some).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Saves the member table atomically and durably.
    pub(crate) fn save_members(&self, table: &MemberTable) -> std::io::Result<()> {
        self.write_atomic("members.json", &table.encode())
    }

    /// Writes `bytes` to the file `name` so that a crash leaves either the
    /// old file or the new one, durably: a temp file, fsync, rename, fsync
    /// of the directory.
    fn write_atomic(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.root.join(format!("{name}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, self.root.join(name))?;
        std::fs::File::open(&self.root)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_file_is_written_atomically_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        assert_eq!(dir.read_member_id().unwrap(), IdFile::Missing);
        dir.save_member_id(42).unwrap();
        assert_eq!(dir.read_member_id().unwrap(), IdFile::Id(42));
        assert!(!tmp.path().join("member_id.tmp").exists());
        std::fs::write(dir.member_id_file(), b"").unwrap();
        assert!(matches!(dir.read_member_id().unwrap(), IdFile::Damaged(_)));
        std::fs::write(dir.member_id_file(), b"0\n").unwrap();
        assert!(matches!(dir.read_member_id().unwrap(), IdFile::Damaged(_)));
    }

    #[test]
    fn the_member_table_roundtrips_and_garbage_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        assert_eq!(dir.load_members().unwrap(), None);
        let t = MemberTable::bootstrap(&[("a".into(), vec!["http://127.0.0.1:1".into()])], "tok");
        dir.save_members(&t).unwrap();
        assert_eq!(dir.load_members().unwrap(), Some(t));
        assert!(!tmp.path().join("members.json.tmp").exists());
        std::fs::write(dir.members_file(), b"{not json").unwrap();
        assert!(dir.load_members().is_err());
    }
}
