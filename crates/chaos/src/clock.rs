//! Clock faults: members run under libfaketime (Debian's `faketime`),
//! loaded with `LD_PRELOAD` rather than through the `faketime` wrapper, so
//! that the member's pid is the lab's child and its clock can be changed
//! while it runs by rewriting its `FAKETIME_TIMESTAMP_FILE`.
//!
//! Two modes, fixed when a member starts:
//! - [`ClockMode::Rate`]: both `CLOCK_REALTIME` and `CLOCK_MONOTONIC` run
//!   at a rate (`+0 x0.5`). Rust's `Instant` and tokio's timers read the
//!   monotonic clock, and libfaketime also scales the timeouts of sleeps
//!   and waits, so the member's Raft ticks come slower or faster: this is
//!   the fault that matters for a leader's lease. `FAKETIME_XRESET` makes a
//!   rate change continue from the current fake time instead of jumping.
//! - [`ClockMode::Step`]: only `CLOCK_REALTIME` moves, by an offset
//!   (`FAKETIME_DONT_FAKE_MONOTONIC`), as when NTP steps a clock; Raft
//!   never sees it, the member's wall-clock timestamps (its logs) do.
//!   (With `FAKETIME_XRESET` libfaketime ignores offset changes, hence two
//!   modes.)
//!
//! Go programs (etcd) read the clock through the vDSO, not libc, so
//! libfaketime does not reach them: clock faults run on Concord only.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::LabError;

/// How a member's clock is faked (see the module's docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClockMode {
    /// The wall and monotonic clocks run at a rate.
    Rate,
    /// The wall clock is offset; the monotonic clock is the real one.
    Step,
}

/// Clock settings of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClockConfig {
    /// Start Concord with lease-based reads (`--experimental-lease-reads`).
    pub lease_reads: bool,
    /// The rate a clock fault sets (`None`: the scenario's own).
    pub rate: Option<f64>,
    /// How far `clock-jump` steps the wall clock, in seconds.
    pub jump_secs: f64,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            lease_reads: false,
            rate: None,
            jump_secs: 5.0,
        }
    }
}

/// Environment variable naming the libfaketime library to use, when it is
/// not in one of the usual places.
pub const LIB_ENV: &str = "CONCORD_LAB_LIBFAKETIME";

/// The multi-threaded libfaketime (a member runs many threads), found in
/// the usual library directories (`/usr/lib/<triplet>/faketime` and the
/// like) or at `$CONCORD_LAB_LIBFAKETIME`.
pub fn find_libfaketime() -> Result<PathBuf, LabError> {
    if let Some(p) = std::env::var_os(LIB_ENV) {
        let p = PathBuf::from(p);
        return match p.exists() {
            true => Ok(p),
            false => Err(LabError::Start(format!("{LIB_ENV}: no {}", p.display()))),
        };
    }
    let mut dirs = Vec::new();
    for root in ["/usr/lib", "/usr/lib64", "/usr/local/lib", "/lib"] {
        dirs.push(Path::new(root).join("faketime"));
        if let Ok(entries) = std::fs::read_dir(root) {
            dirs.extend(entries.flatten().map(|e| e.path().join("faketime")));
        }
    }
    for name in ["libfaketimeMT.so.1", "libfaketime.so.1"] {
        if let Some(p) = dirs.iter().map(|d| d.join(name)).find(|p| p.exists()) {
            return Ok(p);
        }
    }
    Err(LabError::Start(
        "clock faults need libfaketime (Debian package `faketime`), not found".into(),
    ))
}

/// Removes the shared memory and semaphore libfaketime creates for each
/// process it is loaded into (named by pid); a member killed by signal
/// never removes its own.
pub fn remove_shm(pids: &[u32]) {
    for pid in pids {
        let _ = std::fs::remove_file(format!("/dev/shm/faketime_shm_{pid}"));
        let _ = std::fs::remove_file(format!("/dev/shm/sem.faketime_sem_{pid}"));
    }
}

/// A member's faked clock: the file libfaketime reads, and what the lab
/// set, to tell the member's wall-clock time at any moment of the run.
#[derive(Debug, Clone)]
pub struct MemberClock {
    file: PathBuf,
    mode: ClockMode,
    /// From `at` (ns since the run began), the wall clock was `offset` ns
    /// ahead of the real one and ran at `rate`.
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    at: u64,
    offset: f64,
    rate: f64,
}

impl MemberClock {
    /// A clock of `mode` for the member whose file is `file` (written now,
    /// with no fault).
    pub fn new(file: PathBuf, mode: ClockMode) -> Result<MemberClock, LabError> {
        let c = MemberClock {
            file,
            mode,
            segments: vec![Segment {
                at: 0,
                offset: 0.0,
                rate: 1.0,
            }],
        };
        c.write(0.0, 1.0)?;
        Ok(c)
    }

    /// How this clock is faked.
    pub fn mode(&self) -> ClockMode {
        self.mode
    }

    /// The environment a member needs to run under this clock.
    pub fn env(&self, lib: &Path) -> Vec<(String, String)> {
        let mut env = vec![
            ("LD_PRELOAD".into(), lib.display().to_string()),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                self.file.display().to_string(),
            ),
            // Read the file on every call, so a fault starts at once.
            ("FAKETIME_NO_CACHE".into(), "1".into()),
        ];
        env.push(match self.mode {
            ClockMode::Rate => ("FAKETIME_XRESET".into(), "1".into()),
            ClockMode::Step => ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        });
        env
    }

    /// Runs the clock at `rate` from `now` (ns since the run began), on
    /// from where it is (rate mode).
    pub fn set_rate(&mut self, now: u64, rate: f64) -> Result<(), LabError> {
        let offset = self.offset_at(now);
        self.write(0.0, rate)?;
        self.segments.push(Segment {
            at: now,
            offset,
            rate,
        });
        Ok(())
    }

    /// Sets the wall clock `secs` ahead of the real one (behind if
    /// negative) from `now` (step mode).
    pub fn set_offset(&mut self, now: u64, secs: f64) -> Result<(), LabError> {
        self.write(secs, 1.0)?;
        self.segments.push(Segment {
            at: now,
            offset: secs * 1e9,
            rate: 1.0,
        });
        Ok(())
    }

    /// How far ahead of the real clock (ns, negative: behind) the
    /// member's wall clock is at `t` (ns since the run began).
    pub fn offset_at(&self, t: u64) -> f64 {
        let s = self
            .segments
            .iter()
            .rev()
            .find(|s| s.at <= t)
            .unwrap_or(&self.segments[0]);
        s.offset + (t.saturating_sub(s.at)) as f64 * (s.rate - 1.0)
    }

    fn write(&self, offset_secs: f64, rate: f64) -> Result<(), LabError> {
        // Written whole and renamed, so the member never reads half a spec.
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, spec(offset_secs, rate))?;
        std::fs::rename(&tmp, &self.file)?;
        Ok(())
    }
}

/// libfaketime's spec: an offset (always given, `x` needs one) and a rate.
/// The C locale's decimal point: members run with the lab's environment.
fn spec(offset_secs: f64, rate: f64) -> String {
    format!("{offset_secs:+.3} x{rate}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_follows_rates_and_steps() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = MemberClock::new(dir.path().join("m1"), ClockMode::Rate).unwrap();
        assert_eq!(spec(0.0, 1.0), "+0.000 x1\n");
        c.set_rate(1_000_000_000, 0.5).unwrap();
        let text = std::fs::read_to_string(dir.path().join("m1")).unwrap();
        assert_eq!(text, "+0.000 x0.5\n");
        // Two seconds at half speed: one second behind.
        assert_eq!(c.offset_at(3_000_000_000), -1e9);
        c.set_rate(3_000_000_000, 1.0).unwrap();
        assert_eq!(c.offset_at(9_000_000_000), -1e9, "the lag stays");
        let mut s = MemberClock::new(dir.path().join("m2"), ClockMode::Step).unwrap();
        s.set_offset(10, -2.5).unwrap();
        assert_eq!(s.offset_at(5), 0.0);
        assert_eq!(s.offset_at(20), -2.5e9);
        let env = s.env(Path::new("lib.so"));
        assert!(env.iter().any(|(k, _)| k == "FAKETIME_DONT_FAKE_MONOTONIC"));
    }
}
