//! The small `Disk` trait everything in this crate is generic over, and its
//! real implementation over `std::fs`.
//!
//! The trait is deliberately narrow: positional reads and writes, `fdatasync`,
//! `set_len`, and the directory operations a crash-safe log needs (create,
//! rename, remove, list, fsync of the directory). The simulator plugs in
//! [`crate::SimDisk`], which loses whatever was not synced when it "crashes".

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A file system: opens files and changes directories.
///
/// Durability contract (what [`crate::SimDisk`] enforces): data written to a
/// file is durable only after [`DiskFile::sync`]; a created, renamed or
/// removed name is durable only after [`Disk::sync_dir`] of its directory.
pub trait Disk: Clone + Debug + Send + Sync + 'static {
    /// Open handle to one file.
    type File: DiskFile;

    /// Create `dir` and its parents if missing (durable at once).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Open an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Self::File>;
    /// Create a file (truncating it if it exists), open for reading and writing.
    fn create(&self, path: &Path) -> io::Result<Self::File>;
    /// Names (not paths) of the regular files in `dir`, sorted.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Atomically rename `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Remove a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Make the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file: positional I/O plus `fdatasync`.
pub trait DiskFile: Debug + Send + 'static {
    /// Read up to `buf.len()` bytes at `offset`; returns how many were read
    /// (0 at or past the end).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Write all of `data` at `offset`, extending the file if needed.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Make the file's data (and the size needed to read it) durable: fdatasync.
    fn sync(&mut self) -> io::Result<()>;
    /// Truncate or extend (with zeros) to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;

    /// True if the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Append `data` at the current end of the file.
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let end = self.len()?;
        self.write_at(end, data)
    }

    /// Fill `buf` from `offset`; an error if the file ends first.
    fn read_exact_at(&self, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(offset, buf)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file ended early",
                ));
            }
            buf = &mut buf[n..];
            offset += n as u64;
        }
        Ok(())
    }

    /// The whole file, read into memory.
    fn read_all(&self) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.len()?)
            .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "file too large"))?;
        let mut buf = vec![0u8; len];
        self.read_exact_at(0, &mut buf)?;
        Ok(buf)
    }
}

/// The real file system (`std::fs`, Unix positional I/O, `fdatasync`).
#[derive(Clone, Copy, Debug, Default)]
pub struct FsDisk;

/// A file of [`FsDisk`].
#[derive(Debug)]
pub struct FsFile {
    file: File,
    path: PathBuf,
}

impl FsFile {
    /// The path the file was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Disk for FsDisk {
    type File = FsFile;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn open(&self, path: &Path) -> io::Result<FsFile> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(FsFile {
            file,
            path: path.to_path_buf(),
        })
    }

    fn create(&self, path: &Path) -> io::Result<FsFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(FsFile {
            file,
            path: path.to_path_buf(),
        })
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Ok(name) = entry.file_name().into_string() {
                    names.push(name);
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

impl DiskFile for FsFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match FileExt::read_at(&self.file, buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}
