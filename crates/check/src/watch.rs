//! The watch validator: did each watcher see every committed revision of
//! its range exactly once, in order, with no gap across reconnects (or was
//! it told that the revisions it missed were compacted)?
//!
//! What is known of the store: every write a client issued, with the
//! revision of those that were acknowledged (a write without an answer
//! may or may not have been committed), and the range read after the run
//! (each key's value and mod revision). The rules:
//!
//! 1. every event is in the watched range, at or after the start revision;
//! 2. revisions never go back, and no (revision, key) comes twice;
//! 3. every event is a write somebody issued (same key and value, or a
//!    delete of the key), at the revision it was acknowledged with, if it
//!    was;
//! 4. a reconnect resumes at most one past the last revision seen;
//! 5. every acknowledged write in the range, from the start revision up to
//!    the last revision the watcher saw, was seen, unless a compaction
//!    notice covers its revision;
//! 6. the watcher caught up: it saw the newest mod revision of the final
//!    read, and every key of the final read at its mod revision with its
//!    value (this also covers committed writes whose answer was lost).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// A put or a delete, as a watch reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The key was written.
    Put,
    /// The key was deleted.
    Delete,
}

/// One thing a watcher recorded, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum WatchEntry {
    /// An event delivered by the watch.
    Event {
        /// The event's revision (the key's mod revision).
        rev: u64,
        /// The key.
        key: String,
        /// Put or delete.
        kind: EventKind,
        /// The value put (`None` for a delete).
        #[serde(default)]
        value: Option<String>,
    },
    /// The stream broke; the watcher watched again from `resume`.
    Reconnect {
        /// The start revision of the new watch.
        resume: u64,
    },
    /// The store said revisions before `compact` are gone; the watcher
    /// resumed from `compact`, so revisions `resume..compact` are excused.
    Compacted {
        /// The revision the watcher asked for.
        resume: u64,
        /// The compaction revision the store reported.
        compact: u64,
    },
}

/// What one watcher saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchLog {
    /// Which watcher.
    pub watcher: usize,
    /// The first key of the range.
    pub key: String,
    /// The end of the range (exclusive); empty: the single key `key`.
    pub range_end: String,
    /// The revision the first watch started from.
    pub start: u64,
    /// Events and notices, in order.
    pub entries: Vec<WatchEntry>,
}

/// A write a client issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedWrite {
    /// The key.
    pub key: String,
    /// The value put; `None`: a delete.
    pub value: Option<String>,
    /// The revision it was acknowledged with; `None`: no answer came.
    pub rev: Option<u64>,
}

/// A key as the final read found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalKv {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: String,
    /// Its mod revision.
    pub mod_rev: u64,
}

/// The validator's findings for one watcher.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WatchVerdict {
    /// Which watcher.
    pub watcher: usize,
    /// Events seen.
    pub events: usize,
    /// Reconnects.
    pub reconnects: usize,
    /// Compaction notices.
    pub compactions: usize,
    /// The newest revision seen.
    pub last_rev: u64,
    /// What broke the rules (empty: none).
    pub violations: Vec<String>,
}

impl WatchLog {
    fn in_range(&self, key: &str) -> bool {
        if self.range_end.is_empty() {
            key == self.key
        } else {
            key >= self.key.as_str() && key < self.range_end.as_str()
        }
    }
}

/// Checks one watcher's log against the writes issued and the final read.
pub fn check_watch(log: &WatchLog, writes: &[IssuedWrite], finals: &[FinalKv]) -> WatchVerdict {
    let v = WatchVerdict {
        watcher: log.watcher,
        ..WatchVerdict::default()
    };
    let mut by_kv: HashMap<(&str, Option<&str>), Vec<Option<u64>>> = HashMap::new();
    for w in writes {
        by_kv
            .entry((w.key.as_str(), w.value.as_deref()))
            .or_default()
            .push(w.rev);
    }
    let mut scan = Scan {
        log,
        by_kv,
        seen: HashMap::new(),
        excused: Vec::new(),
        last: None,
        v,
    };
    for e in &log.entries {
        match e {
            WatchEntry::Event {
                rev,
                key,
                kind,
                value,
            } => {
                let value = value.as_deref().filter(|_| *kind == EventKind::Put);
                scan.event(*rev, key, value);
            }
            WatchEntry::Reconnect { resume } => {
                scan.v.reconnects += 1;
                let next = scan.last.map_or(log.start, |l| l + 1);
                if *resume > next {
                    let n = scan.v.reconnects;
                    scan.v.violations.push(format!(
                        "reconnect {n} resumed at {resume}, skipping from {next}"
                    ));
                }
            }
            WatchEntry::Compacted { resume, compact } => {
                scan.v.compactions += 1;
                scan.excused.push((*resume, *compact));
            }
        }
    }
    scan.v.last_rev = scan.last.unwrap_or(0);
    scan.missed(writes);
    scan.caught_up(finals);
    scan.v
}

/// One watcher's log, scanned in order.
struct Scan<'a> {
    log: &'a WatchLog,
    /// Issued writes by (key, value): their acknowledged revisions.
    by_kv: HashMap<(&'a str, Option<&'a str>), Vec<Option<u64>>>,
    /// Events seen: (revision, key) to the value put (`None`: a delete).
    seen: HashMap<(u64, &'a str), Option<&'a str>>,
    /// Revision ranges a compaction notice excuses.
    excused: Vec<(u64, u64)>,
    last: Option<u64>,
    v: WatchVerdict,
}

impl<'a> Scan<'a> {
    /// Rules 1-3 for one event.
    fn event(&mut self, rev: u64, key: &'a str, value: Option<&'a str>) {
        self.v.events += 1;
        let at = format!("event {} (rev {rev}, key {key})", self.v.events);
        let bad = &mut self.v.violations;
        if !self.log.in_range(key) || rev < self.log.start {
            bad.push(format!("{at} is outside the watched range"));
        }
        if let Some(l) = self.last.filter(|&l| rev < l) {
            bad.push(format!("{at} came after rev {l}"));
        }
        if self.seen.insert((rev, key), value).is_some() {
            bad.push(format!("{at} was delivered twice"));
        }
        match self.by_kv.get(&(key, value)) {
            None => bad.push(format!("{at}: nobody wrote that")),
            Some(revs) if !revs.iter().any(|r| r.is_none_or(|r| r == rev)) => {
                bad.push(format!("{at}: that write was acknowledged at {revs:?}"))
            }
            Some(_) => {}
        }
        self.last = Some(self.last.map_or(rev, |l| l.max(rev)));
    }

    fn excused(&self, rev: u64) -> bool {
        self.excused
            .iter()
            .any(|&(from, to)| rev >= from && rev < to)
    }

    /// Rule 5: acknowledged writes up to the last revision seen were seen.
    fn missed(&mut self, writes: &'a [IssuedWrite]) {
        let mut missed = HashSet::new();
        for w in writes {
            let Some(rev) = w.rev else { continue };
            if self.log.in_range(&w.key)
                && rev >= self.log.start
                && rev <= self.v.last_rev
                && !self.excused(rev)
                && !self.seen.contains_key(&(rev, w.key.as_str()))
                && missed.insert((rev, w.key.as_str()))
            {
                self.v.violations.push(format!(
                    "missed the acknowledged write of {} at rev {rev}",
                    w.key
                ));
            }
        }
    }

    /// Rule 6: the newest final revision and every final value were seen.
    fn caught_up(&mut self, finals: &[FinalKv]) {
        let finals: Vec<&FinalKv> = finals
            .iter()
            .filter(|f| self.log.in_range(&f.key) && f.mod_rev >= self.log.start)
            .collect();
        let newest = finals.iter().map(|f| f.mod_rev).max().unwrap_or(0);
        if newest > self.v.last_rev {
            self.v.violations.push(format!(
                "did not catch up: saw up to rev {}, the store is at {newest}",
                self.v.last_rev
            ));
            return;
        }
        for f in finals {
            let got = self.seen.get(&(f.mod_rev, f.key.as_str()));
            if got != Some(&Some(f.value.as_str())) && !self.excused(f.mod_rev) {
                self.v.violations.push(format!(
                    "never saw {} = {} at rev {} (the final read's)",
                    f.key, f.value, f.mod_rev
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(rev: u64, key: &str, value: &str) -> WatchEntry {
        WatchEntry::Event {
            rev,
            key: key.into(),
            kind: EventKind::Put,
            value: Some(value.into()),
        }
    }

    fn write(key: &str, value: &str, rev: Option<u64>) -> IssuedWrite {
        IssuedWrite {
            key: key.into(),
            value: Some(value.into()),
            rev,
        }
    }

    fn fin(key: &str, value: &str, mod_rev: u64) -> FinalKv {
        FinalKv {
            key: key.into(),
            value: value.into(),
            mod_rev,
        }
    }

    fn log(entries: Vec<WatchEntry>) -> WatchLog {
        WatchLog {
            watcher: 0,
            key: "k".into(),
            range_end: "l".into(),
            start: 1,
            entries,
        }
    }

    /// a@2, b@3 acknowledged; c's answer was lost but it was committed at 4;
    /// a txn wrote k1 and k2 at 5.
    fn writes() -> Vec<IssuedWrite> {
        vec![
            write("k1", "a", Some(2)),
            write("k2", "b", Some(3)),
            write("k1", "c", None),
            write("k1", "t", Some(5)),
            write("k2", "t", Some(5)),
            write("k3", "never", None),
        ]
    }

    fn finals() -> Vec<FinalKv> {
        vec![fin("k1", "t", 5), fin("k2", "t", 5)]
    }

    fn good() -> Vec<WatchEntry> {
        vec![
            put(2, "k1", "a"),
            WatchEntry::Reconnect { resume: 3 },
            put(3, "k2", "b"),
            put(4, "k1", "c"),
            put(5, "k1", "t"),
            put(5, "k2", "t"),
        ]
    }

    #[test]
    fn a_complete_watch_passes() {
        let v = check_watch(&log(good()), &writes(), &finals());
        assert!(v.violations.is_empty(), "{:?}", v.violations);
        assert_eq!((v.events, v.reconnects, v.last_rev), (5, 1, 5));
    }

    #[test]
    fn a_gap_is_caught() {
        // Planted: the reconnect resumed one revision too late and lost b@3.
        let mut bad = good();
        bad[1] = WatchEntry::Reconnect { resume: 4 };
        bad.remove(2);
        let v = check_watch(&log(bad), &writes(), &finals());
        assert_eq!(v.violations.len(), 2, "{:?}", v.violations);
        assert!(v.violations[0].contains("skipping from 3"));
        assert!(v.violations[1].contains("missed the acknowledged write of k2 at rev 3"));
    }

    #[test]
    fn a_duplicate_or_reordered_event_is_caught() {
        let mut dup = good();
        dup.insert(3, put(3, "k2", "b"));
        let v = check_watch(&log(dup), &writes(), &finals());
        assert!(v.violations[0].contains("delivered twice"), "{v:?}");
        let mut back = good();
        back.swap(2, 3);
        let v = check_watch(&log(back), &writes(), &finals());
        assert!(v.violations[0].contains("came after rev 4"), "{v:?}");
    }

    #[test]
    fn an_event_nobody_wrote_or_at_the_wrong_revision_is_caught() {
        let mut bad = good();
        bad[3] = put(4, "k1", "zz");
        let v = check_watch(&log(bad), &writes(), &finals());
        assert!(v.violations[0].contains("nobody wrote that"), "{v:?}");
        let mut bad = good();
        bad[0] = put(1, "k1", "a");
        let v = check_watch(&log(bad), &writes(), &finals());
        assert!(
            v.violations[0].contains("acknowledged at [Some(2)]"),
            "{v:?}"
        );
    }

    #[test]
    fn a_watcher_that_fell_behind_fails_unless_told_compacted() {
        let mut short = good();
        short.truncate(4);
        let v = check_watch(&log(short), &writes(), &finals());
        assert!(v.violations[0].contains("did not catch up"), "{v:?}");
        // Told that revisions 2..4 were compacted, it may skip them.
        let compacted = vec![
            WatchEntry::Compacted {
                resume: 1,
                compact: 4,
            },
            put(4, "k1", "c"),
            put(5, "k1", "t"),
            put(5, "k2", "t"),
        ];
        let v = check_watch(&log(compacted), &writes(), &finals());
        assert!(v.violations.is_empty(), "{:?}", v.violations);
        assert_eq!(v.compactions, 1);
    }

    #[test]
    fn the_final_read_catches_a_lost_unacknowledged_commit() {
        // c's answer was lost, so only the final read shows it committed.
        let finals = vec![fin("k1", "c", 4), fin("k2", "b", 3)];
        let writes = &writes()[..3];
        let saw = vec![put(2, "k1", "a"), put(3, "k2", "b"), put(4, "k1", "c")];
        assert!(check_watch(&log(saw.clone()), writes, &finals)
            .violations
            .is_empty());
        // Planted: an event at 4 for another key hides the missing one.
        let mut bad = saw;
        bad[2] = put(4, "k2", "b");
        let v = check_watch(&log(bad), writes, &finals);
        assert!(v
            .violations
            .iter()
            .any(|m| m.contains("never saw k1 = c at rev 4")));
    }

    #[test]
    fn logs_round_trip_as_json() {
        let l = log(good());
        let text = serde_json::to_string(&l).unwrap();
        assert!(text.contains(r#""type":"reconnect""#));
        assert_eq!(serde_json::from_str::<WatchLog>(&text).unwrap(), l);
    }
}
