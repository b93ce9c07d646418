//! A guard for a resource outside the store: it accepts a fencing token
//! only if no higher one was accepted before, and remembers the highest in
//! a small file (fsynced before the token is accepted, checksummed so a
//! damaged file is refused rather than read as a low token).
//!
//! The file is one line: `concord-fencing v1 <highest> <crc32c hex>`, the
//! checksum covering `v1 <highest>`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &str = "concord-fencing";
/// A larger file is not ours.
const MAX_FILE_LEN: u64 = 256;

/// What a [`FencingGuard`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum FencingError {
    /// The token is lower than one already accepted: its holder lost the
    /// lock since.
    #[error("stale fencing token {token}: {highest} was accepted already")]
    Stale {
        /// The token refused.
        token: i64,
        /// The highest accepted.
        highest: i64,
    },
    /// The guard's file is damaged or not a guard file.
    #[error("fencing guard file {path:?} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing the file failed.
    #[error("fencing guard file {path:?}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The highest fencing token accepted, kept in a file.
#[derive(Debug)]
pub struct FencingGuard {
    path: PathBuf,
    highest: i64,
}

impl FencingGuard {
    /// Opens the guard kept in `path` (a missing file: nothing accepted yet).
    pub fn open(path: impl AsRef<Path>) -> Result<FencingGuard, FencingError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| FencingError::Io {
            path: path.clone(),
            source,
        };
        let highest = match fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(e)),
            Ok(m) if m.len() > MAX_FILE_LEN => {
                return Err(corrupt(&path, format!("{} bytes", m.len())))
            }
            Ok(_) => {
                let text = fs::read_to_string(&path).map_err(io)?;
                parse(&text).map_err(|reason| corrupt(&path, reason))?
            }
        };
        Ok(FencingGuard { path, highest })
    }

    /// The highest token accepted so far (0: none).
    pub fn highest(&self) -> i64 {
        self.highest
    }

    /// Accepts `token` if it is at least the highest accepted; a higher one
    /// is on disk before this returns.
    pub fn accept(&mut self, token: i64) -> Result<(), FencingError> {
        if token < self.highest {
            return Err(FencingError::Stale {
                token,
                highest: self.highest,
            });
        }
        if token > self.highest {
            self.persist(token).map_err(|source| FencingError::Io {
                path: self.path.clone(),
                source,
            })?;
            self.highest = token;
        }
        Ok(())
    }

    /// Writes a temporary file, fsyncs it, renames it over the guard file
    /// and fsyncs the directory: the old or the new value survives a crash.
    fn persist(&self, token: i64) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(render(token).as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &self.path)?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()
    }
}

fn corrupt(path: &Path, reason: String) -> FencingError {
    FencingError::Corrupt {
        path: path.to_path_buf(),
        reason,
    }
}

fn body(token: i64) -> String {
    format!("v1 {token}")
}

fn render(token: i64) -> String {
    let body = body(token);
    format!("{MAGIC} {body} {:08x}\n", crc32c::crc32c(body.as_bytes()))
}

fn parse(text: &str) -> Result<i64, String> {
    let fields: Vec<&str> = text.trim_end_matches('\n').split(' ').collect();
    let [magic, "v1", token, crc] = fields[..] else {
        return Err("not `concord-fencing v1 <token> <crc>`".into());
    };
    if magic != MAGIC {
        return Err(format!("bad magic {magic:?}"));
    }
    let token: i64 = token.parse().map_err(|_| format!("bad token {token:?}"))?;
    let want = format!("{:08x}", crc32c::crc32c(body(token).as_bytes()));
    if crc != want {
        return Err(format!("checksum {crc} does not match {want}"));
    }
    if token < 0 {
        return Err(format!("negative token {token}"));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_lower_tokens_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guard");
        let mut g = FencingGuard::open(&path).unwrap();
        g.accept(5).unwrap();
        g.accept(5).unwrap();
        assert!(matches!(
            g.accept(4),
            Err(FencingError::Stale {
                token: 4,
                highest: 5
            })
        ));
        g.accept(9).unwrap();
        drop(g);
        let mut g = FencingGuard::open(&path).unwrap();
        assert_eq!(g.highest(), 9);
        assert!(matches!(g.accept(5), Err(FencingError::Stale { .. })));
    }

    #[test]
    fn a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guard");
        FencingGuard::open(&path).unwrap().accept(1234).unwrap();
        // One digit flipped: a lower token that must not be believed.
        let text = fs::read_to_string(&path).unwrap().replace("1234", "1034");
        fs::write(&path, text).unwrap();
        let err = FencingGuard::open(&path).unwrap_err();
        assert!(matches!(err, FencingError::Corrupt { .. }), "{err}");
        fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            FencingGuard::open(&path),
            Err(FencingError::Corrupt { .. })
        ));
    }
}
