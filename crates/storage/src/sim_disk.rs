//! An in-memory [`Disk`] that knows what is durable: the simulator's disk.
//!
//! Every file keeps its durable bytes, its current bytes and the list of
//! operations since its last `sync`; every directory keeps its durable names,
//! its current names and the list of name changes since its last `sync_dir`.
//! A crash throws away what was not made durable, according to the
//! [`CrashMode`]: everything, or everything but a torn prefix of the last
//! write. All randomness comes from the seed, so a run is reproducible.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::disk::{Disk, DiskFile};

/// What survives a crash besides the durable state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced write, size change, create, rename and remove is lost.
    #[default]
    LoseUnsynced,
    /// On each file, unsynced operations before its last unsynced write reach
    /// the disk, and that last write keeps a random prefix (the rest of its
    /// range keeps the old bytes); later size changes are lost. In each
    /// directory a random prefix of the unsynced name changes survives.
    TearLastWrite,
    /// Like [`CrashMode::TearLastWrite`], but the lost part of the torn write
    /// is overwritten with random garbage.
    TearWithGarbage,
}

/// The simulated disk. Clones share the same state.
#[derive(Clone, Debug)]
pub struct SimDisk {
    inner: Arc<Mutex<State>>,
}

/// A file of [`SimDisk`]; it becomes stale (every call fails) after a crash.
#[derive(Debug)]
pub struct SimFile {
    disk: SimDisk,
    inode: u64,
    epoch: u64,
}

#[derive(Debug)]
enum FileOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<FileOp>,
}

#[derive(Debug)]
enum DirOp {
    Link(String, u64),
    Unlink(String),
    Rename {
        from: String,
        to: String,
        inode: u64,
    },
}

#[derive(Debug, Default)]
struct Dir {
    durable: BTreeMap<String, u64>,
    current: BTreeMap<String, u64>,
    pending: Vec<DirOp>,
}

#[derive(Debug)]
struct State {
    rng: concord_rng::SplitMix64,
    epoch: u64,
    mode: CrashMode,
    /// Mutating operations left before a scheduled crash.
    crash_after: Option<u64>,
    /// A scheduled crash happened: every call fails until `restart`.
    down: bool,
    fail_next_sync: bool,
    syncs: u64,
    crashes: u64,
    next_inode: u64,
    dirs: BTreeMap<PathBuf, Dir>,
    inodes: HashMap<u64, Inode>,
}

fn apply(buf: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write { offset, data } => write_into(buf, *offset, data),
        FileOp::SetLen(len) => buf.resize(*len as usize, 0),
    }
}

fn write_into(buf: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    let end = start + data.len();
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[start..end].copy_from_slice(data);
}

fn apply_dir(names: &mut BTreeMap<String, u64>, op: &DirOp) {
    match op {
        DirOp::Link(name, inode) => {
            names.insert(name.clone(), *inode);
        }
        DirOp::Unlink(name) => {
            names.remove(name);
        }
        DirOp::Rename { from, to, inode } => {
            names.remove(from);
            names.insert(to.clone(), *inode);
        }
    }
}

fn crashed() -> io::Error {
    io::Error::other("simulated crash: the disk is down")
}

fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let parent = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent"))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::other("path has no file name"))?;
    Ok((parent.to_path_buf(), name.to_string()))
}

impl State {
    fn next_random(&mut self) -> u64 {
        self.rng.next_u64()
    }

    fn check(&self, epoch: Option<u64>) -> io::Result<()> {
        if self.down {
            return Err(crashed());
        }
        if epoch.is_some_and(|e| e != self.epoch) {
            return Err(io::Error::other(
                "stale file handle: the disk crashed since it was opened",
            ));
        }
        Ok(())
    }

    /// Count one mutating operation; `op` performs it. If a scheduled crash
    /// is due, the operation takes effect or not (coin flip), then the disk
    /// crashes and the call fails.
    fn mutate<T>(&mut self, op: impl FnOnce(&mut State) -> io::Result<T>) -> io::Result<T> {
        let due = match &mut self.crash_after {
            Some(0) | None => false,
            Some(n) => {
                *n -= 1;
                *n == 0
            }
        };
        if !due {
            return op(self);
        }
        self.crash_after = None;
        if self.next_random() % 2 == 0 {
            let _ = op(self);
        }
        self.crash_now();
        self.down = true;
        Err(crashed())
    }

    fn dir(&mut self, dir: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(dir).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory {}", dir.display()),
            )
        })
    }

    fn lookup(&mut self, path: &Path) -> io::Result<u64> {
        let (dir, name) = split(path)?;
        self.dir(&dir)?.current.get(&name).copied().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no file {}", path.display()),
            )
        })
    }

    fn inode(&mut self, inode: u64) -> &mut Inode {
        self.inodes
            .get_mut(&inode)
            .expect("open handle refers to a live inode")
    }

    fn crash_now(&mut self) {
        let mode = self.mode;
        let mut inodes = std::mem::take(&mut self.inodes);
        for ino in inodes.values_mut() {
            let pending = std::mem::take(&mut ino.pending);
            if mode != CrashMode::LoseUnsynced {
                if let Some(last) = pending
                    .iter()
                    .rposition(|op| matches!(op, FileOp::Write { .. }))
                {
                    for op in &pending[..last] {
                        apply(&mut ino.durable, op);
                    }
                    if let FileOp::Write { offset, data } = &pending[last] {
                        let keep = (self.next_random() % (data.len() as u64 + 1)) as usize;
                        write_into(&mut ino.durable, *offset, &data[..keep]);
                        if mode == CrashMode::TearWithGarbage && keep < data.len() {
                            let junk: Vec<u8> = (keep..data.len())
                                .map(|_| self.next_random() as u8)
                                .collect();
                            write_into(&mut ino.durable, offset + keep as u64, &junk);
                        }
                    }
                }
            }
            ino.current = ino.durable.clone();
        }
        self.inodes = inodes;
        let mut dirs = std::mem::take(&mut self.dirs);
        for dir in dirs.values_mut() {
            let pending = std::mem::take(&mut dir.pending);
            let keep = match mode {
                CrashMode::LoseUnsynced => 0,
                _ => (self.next_random() % (pending.len() as u64 + 1)) as usize,
            };
            for op in &pending[..keep] {
                apply_dir(&mut dir.durable, op);
            }
            dir.current = dir.durable.clone();
        }
        self.dirs = dirs;
        let live: std::collections::HashSet<u64> = self
            .dirs
            .values()
            .flat_map(|d| d.durable.values().copied())
            .collect();
        self.inodes.retain(|id, _| live.contains(id));
        self.epoch += 1;
        self.crashes += 1;
    }
}

impl SimDisk {
    /// An empty disk whose tearing and coin flips follow `seed`.
    pub fn new(seed: u64) -> Self {
        let state = State {
            rng: concord_rng::SplitMix64::new(seed),
            epoch: 0,
            mode: CrashMode::default(),
            crash_after: None,
            down: false,
            fail_next_sync: false,
            syncs: 0,
            crashes: 0,
            next_inode: 1,
            dirs: BTreeMap::new(),
            inodes: HashMap::new(),
        };
        SimDisk {
            inner: Arc::new(Mutex::new(state)),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Choose what survives the next crashes.
    pub fn set_crash_mode(&self, mode: CrashMode) {
        self.state().mode = mode;
    }

    /// Power loss now: unsynced state is lost (or torn, per the mode), open
    /// handles become stale. The disk stays up for the next "process".
    pub fn crash(&self) {
        let mut s = self.state();
        s.crash_now();
        s.down = false;
        s.crash_after = None;
    }

    /// Crash during the `n`-th mutating operation from now (n >= 1). After
    /// it, every call fails until [`SimDisk::restart`].
    pub fn crash_after_ops(&self, n: u64) {
        self.state().crash_after = Some(n.max(1));
    }

    /// True after a scheduled crash, until [`SimDisk::restart`].
    pub fn is_down(&self) -> bool {
        self.state().down
    }

    /// Bring the disk back after a scheduled crash (the "reboot").
    pub fn restart(&self) {
        let mut s = self.state();
        s.down = false;
        s.crash_after = None;
    }

    /// Make the next file sync fail with an I/O error (nothing becomes durable).
    pub fn fail_next_sync(&self) {
        self.state().fail_next_sync = true;
    }

    /// Number of successful file syncs so far.
    pub fn syncs(&self) -> u64 {
        self.state().syncs
    }

    /// Number of crashes so far.
    pub fn crashes(&self) -> u64 {
        self.state().crashes
    }

    /// The current (not necessarily durable) content of a file, for tests.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let mut s = self.state();
        let ino = s.lookup(path).ok()?;
        Some(s.inode(ino).current.clone())
    }
}

impl Disk for SimDisk {
    type File = SimFile;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.check(None)?;
        s.dirs.entry(dir.to_path_buf()).or_default();
        Ok(())
    }

    fn open(&self, path: &Path) -> io::Result<SimFile> {
        let mut s = self.state();
        s.check(None)?;
        let inode = s.lookup(path)?;
        Ok(SimFile {
            disk: self.clone(),
            inode,
            epoch: s.epoch,
        })
    }

    fn create(&self, path: &Path) -> io::Result<SimFile> {
        let mut s = self.state();
        s.check(None)?;
        let (dir, name) = split(path)?;
        s.dir(&dir)?;
        let inode = s.mutate(|s| {
            if let Some(&ino) = s.dir(&dir)?.current.get(&name) {
                let f = s.inode(ino);
                f.current.clear();
                f.pending.push(FileOp::SetLen(0));
                return Ok(ino);
            }
            let ino = s.next_inode;
            s.next_inode += 1;
            s.inodes.insert(ino, Inode::default());
            let d = s.dir(&dir)?;
            d.current.insert(name.clone(), ino);
            d.pending.push(DirOp::Link(name.clone(), ino));
            Ok(ino)
        })?;
        Ok(SimFile {
            disk: self.clone(),
            inode,
            epoch: s.epoch,
        })
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut s = self.state();
        s.check(None)?;
        Ok(s.dir(dir)?.current.keys().cloned().collect())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.check(None)?;
        let (dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        if dir != to_dir {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "SimDisk renames only within one directory",
            ));
        }
        let inode = s.lookup(from)?;
        s.mutate(|s| {
            let d = s.dir(&dir)?;
            d.current.remove(&from_name);
            d.current.insert(to_name.clone(), inode);
            d.pending.push(DirOp::Rename {
                from: from_name,
                to: to_name,
                inode,
            });
            Ok(())
        })
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.check(None)?;
        let (dir, name) = split(path)?;
        s.lookup(path)?;
        s.mutate(|s| {
            let d = s.dir(&dir)?;
            d.current.remove(&name);
            d.pending.push(DirOp::Unlink(name));
            Ok(())
        })
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.check(None)?;
        s.dir(dir)?;
        s.mutate(|s| {
            let d = s.dir(dir)?;
            for op in std::mem::take(&mut d.pending) {
                apply_dir(&mut d.durable, &op);
            }
            Ok(())
        })
    }
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut State, u64) -> io::Result<T>) -> io::Result<T> {
        let mut s = self.disk.state();
        s.check(Some(self.epoch))?;
        f(&mut s, self.inode)
    }
}

impl DiskFile for SimFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.with(|s, ino| {
            let data = &s.inode(ino).current;
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let n = buf.len().min(data.len() - start);
            buf[..n].copy_from_slice(&data[start..start + n]);
            Ok(n)
        })
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.with(|s, ino| {
            s.mutate(|s| {
                let f = s.inode(ino);
                write_into(&mut f.current, offset, data);
                f.pending.push(FileOp::Write {
                    offset,
                    data: data.to_vec(),
                });
                Ok(())
            })
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        self.with(|s, ino| {
            if std::mem::take(&mut s.fail_next_sync) {
                return Err(io::Error::other("simulated fdatasync failure (EIO)"));
            }
            s.mutate(|s| {
                let f = s.inode(ino);
                for op in std::mem::take(&mut f.pending) {
                    apply(&mut f.durable, &op);
                }
                s.syncs += 1;
                Ok(())
            })
        })
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.with(|s, ino| {
            s.mutate(|s| {
                let f = s.inode(ino);
                f.current.resize(len as usize, 0);
                f.pending.push(FileOp::SetLen(len));
                Ok(())
            })
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with(|s, ino| Ok(s.inode(ino).current.len() as u64))
    }
}
