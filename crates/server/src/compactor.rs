//! Auto compaction, as etcd's `--auto-compaction-mode` and
//! `--auto-compaction-retention` do it. Only the leader compacts (the
//! compaction goes through the log, so every member applies it); a member
//! that is not leader keeps sampling revisions so it can take over.
//!
//! - **periodic**: keep about `retention` of history. Every
//!   `min(retention, 1h) / 10` the current revision is sampled; once
//!   `retention` has passed since the start (then every `min(retention,
//!   1h)`), the history is compacted to the oldest sample, taken about
//!   `retention` ago. A retention of a day compacts hourly, each time to the
//!   revision of a day before.
//! - **revision**: every 5 minutes, compact to `current - retention`.
//!
//! The decisions are plain state machines over a clock and a revision
//! ([`Periodic`], [`Revisions`]), tested without waiting; [`run`] drives
//! them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use concord_mvcc::{Command, MvccError};

use crate::shared::Shared;

/// How often the revision mode compacts.
pub const REVISION_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Longest interval between periodic compactions.
const HOUR: Duration = Duration::from_secs(3600);

/// What auto compaction keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// No auto compaction.
    Off,
    /// About this much time of history.
    Period(Duration),
    /// This many revisions.
    Revisions(i64),
}

impl Retention {
    /// Parses the flags as etcd does: in periodic mode a bare number is
    /// hours, otherwise a Go duration (`1h30m`, `5m`, `90s`, `1.5h`); in
    /// revision mode a number of revisions. `0` is off.
    pub fn parse(mode: &str, retention: &str) -> Result<Retention, String> {
        let r = retention.trim();
        let bare = r.parse::<i64>().ok();
        match (mode, bare) {
            (_, Some(0)) => Ok(Retention::Off),
            (_, Some(n)) if n < 0 => Err(format!(
                "--auto-compaction-retention {r:?} must not be negative"
            )),
            ("periodic", Some(h)) => Ok(Retention::Period(Duration::from_secs(h as u64 * 3600))),
            ("periodic", None) => match go_duration(r) {
                Some(d) if d.is_zero() => Ok(Retention::Off),
                Some(d) => Ok(Retention::Period(d)),
                None => Err(format!(
                    "--auto-compaction-retention {r:?}: expected a duration such as 1h, 30m or 90s, or a number of hours"
                )),
            },
            ("revision", Some(n)) => Ok(Retention::Revisions(n)),
            ("revision", None) => Err(format!(
                "--auto-compaction-retention {r:?}: revision mode takes a number of revisions"
            )),
            (m, _) => Err(format!(
                "--auto-compaction-mode {m:?}: expected periodic or revision"
            )),
        }
    }
}

/// A Go duration: decimal numbers with units `ns`, `us`, `µs`, `ms`, `s`,
/// `m`, `h`, one after another (`1h30m`, `1.5h`, `300ms`).
pub fn go_duration(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += value * secs;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The periodic compactor's decisions (etcd's `Periodic`).
#[derive(Debug)]
pub struct Periodic {
    /// Between two samples.
    pub every: Duration,
    samples: VecDeque<i64>,
    keep: usize,
    /// Time since the last success (or the start) before compacting.
    wait: Duration,
    interval: Duration,
    last: Duration,
}

impl Periodic {
    /// A compactor started at `now` keeping about `period` of history.
    pub fn new(period: Duration, now: Duration) -> Periodic {
        let base = period.min(HOUR);
        let every = (base / 10).max(Duration::from_millis(1));
        Periodic {
            every,
            samples: VecDeque::new(),
            keep: (period.as_nanos() / every.as_nanos()) as usize + 1,
            wait: period,
            interval: base,
            last: now,
        }
    }

    /// One sample (every [`Periodic::every`]): `rev` is the current
    /// revision. Returns the revision to compact to, if it is time.
    pub fn tick(&mut self, now: Duration, rev: i64, leader: bool) -> Option<i64> {
        self.samples.push_back(rev);
        while self.samples.len() > self.keep {
            self.samples.pop_front();
        }
        if !leader || now.saturating_sub(self.last) < self.wait {
            return None;
        }
        self.wait = self.interval;
        self.samples.front().copied()
    }

    /// The compaction returned: `ok` (done, or compacted already).
    pub fn done(&mut self, now: Duration, ok: bool) {
        if ok {
            self.last = now;
        }
    }
}

/// The revision compactor's decisions (etcd's `Revision`).
#[derive(Debug)]
pub struct Revisions {
    keep: i64,
    last: i64,
}

impl Revisions {
    /// Keeps `keep` revisions.
    pub fn new(keep: i64) -> Revisions {
        Revisions { keep, last: 0 }
    }

    /// Every [`REVISION_INTERVAL`]: the revision to compact to, if any.
    pub fn tick(&mut self, rev: i64, leader: bool) -> Option<i64> {
        let to = rev - self.keep;
        (leader && to > 0 && to != self.last).then_some(to)
    }

    /// The compaction to `to` returned `ok`.
    pub fn done(&mut self, to: i64, ok: bool) {
        if ok {
            self.last = to;
        }
    }
}

/// Compacts to `rev` through the log; a revision compacted already counts
/// as done.
async fn compact(state: &Shared, rev: i64) -> bool {
    let cmd = Command::Compact { revision: rev };
    match state.propose(crate::envelope::Payload::Mvcc(cmd)).await {
        Ok(crate::proposer::Outcome::Mvcc(Ok(_))) => {
            tracing::info!(revision = rev, "completed auto compaction");
            true
        }
        Ok(crate::proposer::Outcome::Mvcc(Err(MvccError::Compacted))) => true,
        Ok(other) => {
            tracing::warn!(revision = rev, ?other, "failed auto compaction");
            false
        }
        Err(e) => {
            tracing::warn!(revision = rev, error = %e, "failed auto compaction");
            false
        }
    }
}

/// Runs auto compaction until the member stops.
pub async fn run(state: Arc<Shared>, retention: Retention) {
    let started = std::time::Instant::now();
    match retention {
        Retention::Off => std::future::pending().await,
        Retention::Period(period) => {
            let mut p = Periodic::new(period, started.elapsed());
            tracing::info!(retention = ?period, "auto compaction: periodic");
            loop {
                tokio::time::sleep(p.every).await;
                let rev = state.store.read().current_revision();
                if let Some(to) = p.tick(started.elapsed(), rev, state.is_leader()) {
                    let ok = compact(&state, to).await;
                    p.done(started.elapsed(), ok);
                }
            }
        }
        Retention::Revisions(keep) => {
            let mut r = Revisions::new(keep);
            tracing::info!(keep, "auto compaction: by revision");
            loop {
                tokio::time::sleep(REVISION_INTERVAL).await;
                let rev = state.store.read().current_revision();
                if let Some(to) = r.tick(rev, state.is_leader()) {
                    let ok = compact(&state, to).await;
                    r.done(to, ok);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn retention_parses_as_etcd_reads_it() {
        let p = |m, r| Retention::parse(m, r);
        assert_eq!(p("periodic", "0"), Ok(Retention::Off));
        assert_eq!(p("periodic", "1"), Ok(Retention::Period(3600 * S)));
        assert_eq!(p("periodic", "1h30m"), Ok(Retention::Period(5400 * S)));
        assert_eq!(p("periodic", "5m"), Ok(Retention::Period(300 * S)));
        assert_eq!(p("periodic", "1.5h"), Ok(Retention::Period(5400 * S)));
        assert_eq!(p("periodic", "300ms"), Ok(Retention::Period(S * 3 / 10)));
        assert_eq!(p("revision", "1000"), Ok(Retention::Revisions(1000)));
        assert!(p("revision", "5m")
            .unwrap_err()
            .contains("number of revisions"));
        assert!(p("periodic", "soon").unwrap_err().contains("duration"));
        assert!(p("hourly", "1")
            .unwrap_err()
            .contains("periodic or revision"));
        assert!(p("periodic", "-1").unwrap_err().contains("negative"));
        assert_eq!(go_duration("1h1m1s"), Some(3661 * S));
        assert_eq!(go_duration("10"), None);
    }

    #[test]
    fn periodic_compacts_after_one_period_to_the_revision_of_a_period_ago() {
        // 10 minutes: a sample every minute, 11 kept.
        let mut p = Periodic::new(600 * S, Duration::ZERO);
        assert_eq!(p.every, 60 * S);
        let mut rev = 1;
        let mut out = Vec::new();
        for minute in 1..=25u32 {
            rev += 100;
            if let Some(to) = p.tick(minute * 60 * S, rev, true) {
                out.push((minute, to));
                p.done(minute * 60 * S, true);
            }
        }
        // First at 10 min, to the first sample (1 min); then every 10 min,
        // each to the revision sampled about 10 min before.
        assert_eq!(out, vec![(10, 101), (20, 1001)]);
    }

    #[test]
    fn periodic_waits_while_not_leader_and_retries_a_failure() {
        let mut p = Periodic::new(10 * S, Duration::ZERO);
        for t in 1..=10u32 {
            assert_eq!(p.tick(t * S, t as i64, false), None);
        }
        // Leader now: compacts at once, to the oldest kept sample.
        let to = p.tick(11 * S, 11, true).expect("due");
        assert_eq!(to, 1);
        p.done(11 * S, false);
        // Failed: tries again on the next sample.
        assert!(p.tick(12 * S, 12, true).is_some());
        p.done(12 * S, true);
        assert_eq!(p.tick(13 * S, 13, true), None);
    }

    #[test]
    fn long_retentions_compact_hourly() {
        let mut p = Periodic::new(24 * 3600 * S, Duration::ZERO);
        assert_eq!(p.every, 360 * S);
        let mut at = Vec::new();
        let mut t = Duration::ZERO;
        for i in 0..(26 * 10) {
            t += p.every;
            if p.tick(t, i, true).is_some() {
                at.push(t.as_secs() / 3600);
                p.done(t, true);
            }
        }
        assert_eq!(at, vec![24, 25, 26]);
    }

    #[test]
    fn revision_mode_keeps_the_last_n() {
        let mut r = Revisions::new(100);
        assert_eq!(r.tick(50, true), None);
        assert_eq!(r.tick(150, false), None);
        assert_eq!(r.tick(150, true), Some(50));
        r.done(50, true);
        assert_eq!(r.tick(150, true), None, "nothing new");
        assert_eq!(r.tick(400, true), Some(300));
    }
}
