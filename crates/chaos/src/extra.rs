//! The clients beside the key-value workload (watchers, lock holders,
//! lease clients): started with it, stopped with it, and the watchers
//! drained once the final revision is known.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use concord_check::{Hold, LeaseLife, WatchLog};
use tokio::task::JoinHandle;

use crate::validate::Records;
use crate::watchers::Drain;
use crate::workload::{Recorder, WorkloadConfig};

/// The running clients.
#[derive(Debug)]
pub struct Extra {
    stop: Arc<AtomicBool>,
    drain: Arc<Drain>,
    watchers: Vec<JoinHandle<WatchLog>>,
    holders: Vec<JoinHandle<Vec<Hold>>>,
    leases: Vec<JoinHandle<Vec<LeaseLife>>>,
}

impl Extra {
    /// Starts the clients `cfg` asks for.
    pub fn start(cfg: &WorkloadConfig, endpoints: &[String], rec: &Arc<Recorder>) -> Extra {
        let stop = Arc::new(AtomicBool::new(false));
        let drain = Arc::new(Drain::default());
        let e = || endpoints.to_vec();
        Extra {
            watchers: (0..cfg.watchers)
                .map(|i| tokio::spawn(crate::watchers::watch(i, e(), drain.clone())))
                .collect(),
            holders: (0..cfg.lock_holders)
                .map(|i| tokio::spawn(crate::locks::run(i, e(), rec.clone(), stop.clone())))
                .collect(),
            leases: (0..cfg.lease_clients)
                .map(|i| tokio::spawn(crate::leases::run(i, e(), rec.clone(), stop.clone())))
                .collect(),
            stop,
            drain,
        }
    }

    /// Stops the lock holders and lease clients (watchers go on) and
    /// collects their records.
    pub async fn stop(&mut self) -> Records {
        self.stop.store(true, Ordering::Relaxed);
        self.drain.stop.store(true, Ordering::Relaxed);
        let mut records = Records::default();
        for h in self.holders.drain(..) {
            records.holds.extend(h.await.unwrap_or_default());
        }
        for l in self.leases.drain(..) {
            records.leases.extend(l.await.unwrap_or_default());
        }
        records
    }

    /// Lets the watchers run until they have seen `until` (or `within`
    /// passed) and collects their logs into `records`.
    pub async fn drain(&mut self, until: u64, within: Duration, records: &mut Records) {
        self.drain.until.store(until.max(1), Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline
            && self.watchers.iter().any(|w| !w.is_finished())
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.drain.give_up.store(true, Ordering::Relaxed);
        for w in self.watchers.drain(..) {
            if let Ok(log) = w.await {
                records.watches.push(log);
            }
        }
    }
}
