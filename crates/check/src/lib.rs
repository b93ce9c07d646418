//! A linearizability checker for Concord's etcd-style key-value API.
//!
//! A [`History`] of client operations (each with invoke and complete times
//! and the result the client saw) is linearizable if there is one total
//! order of the operations that respects real time (an op that completed
//! before another was invoked comes first) and in which every result is what
//! the sequential model ([`apply`]) would return.
//!
//! The history is split into independent key partitions
//! (P-compositionality), and each is searched with the Wing & Gong /
//! Lowe algorithm with a state cache, as in the porcupine checker.
//! Operations whose response was lost (no `complete`) may take effect at
//! any time after their invoke, or never.
//!
//! Beside it live the validators of the chaos lab's other clients:
//! [`check_watch`] (watchers saw every committed revision once, in order),
//! [`check_locks`] (lock holders never overlapped, tokens grew) and
//! [`check_leases`] (no key of an ended lease read afterwards). The on-disk format is JSON lines;
//! see `HISTORY.md` in this crate.
//!
//! ```
//! use concord_check::{check, History, Verdict};
//! use std::time::Duration;
//!
//! let history = History::parse_jsonl(r#"
//! {"client": 1, "op": "put", "key": "k", "value": "a", "invoke": 0, "complete": 10, "result": {"ok": true}}
//! {"client": 2, "op": "get", "key": "k", "invoke": 20, "complete": 30, "result": {"value": null}}
//! "#).unwrap();
//! let report = check(&history, Duration::from_secs(1));
//! assert!(matches!(report.verdict, Verdict::NotLinearizable(_)));
//! ```
#![deny(missing_docs)]

mod check;
mod explain;
mod gen;
mod history;
mod lease;
mod lock;
mod model;
mod partition;
mod shrink;
mod watch;
mod wgl;

pub use check::{check, Report, Verdict};
pub use explain::{Candidate, Violation, WitnessOp};
pub use gen::{generate, GenConfig};
pub use history::{Cmp, Command, Compare, History, HistoryError, Operation, Output, Time, TxnOp};
pub use lease::{check_leases, LeaseEnd, LeaseLife, LeaseRead, LeaseVerdict};
pub use lock::{check_locks, Hold, LockVerdict};
pub use model::{apply, State};
pub use watch::{check_watch, EventKind, FinalKv, IssuedWrite, WatchEntry, WatchLog, WatchVerdict};
