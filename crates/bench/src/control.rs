//! What the client tasks share: when to stop, how far along the run is, and
//! the per-client statistics they return.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Largest latency recorded, in microseconds (one hour); larger ones saturate.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// The stop condition of a closed-loop run: a request budget or a deadline.
#[derive(Debug)]
pub(crate) struct Control {
    total: Option<u64>,
    deadline: Option<Instant>,
    issued: AtomicU64,
    done: AtomicU64,
}

impl Control {
    /// A run of `total` requests, or of `duration` if given (then `total`
    /// is ignored). The clock starts now.
    pub(crate) fn new(total: u64, duration: Option<Duration>) -> Self {
        Control {
            total: duration.is_none().then_some(total),
            deadline: duration.map(|d| Instant::now() + d),
            issued: AtomicU64::new(0),
            done: AtomicU64::new(0),
        }
    }

    /// Claims the next request and returns its sequence number (0, 1, 2, ...
    /// across all clients); `None` once the budget or the time is spent.
    pub(crate) fn next_seq(&self) -> Option<u64> {
        let seq = self.issued.fetch_add(1, Ordering::Relaxed);
        if let Some(deadline) = self.deadline {
            return (Instant::now() < deadline).then_some(seq);
        }
        (seq < self.total.unwrap_or(u64::MAX)).then_some(seq)
    }

    /// Claims the next request; false once the budget or the time is spent.
    pub(crate) fn next(&self) -> bool {
        if let Some(deadline) = self.deadline {
            return Instant::now() < deadline;
        }
        let total = self.total.unwrap_or(u64::MAX);
        self.issued.fetch_add(1, Ordering::Relaxed) < total
    }

    /// Marks one request as finished (for the progress bar).
    pub(crate) fn finish_one(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests finished so far.
    pub(crate) fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// The request budget, if the run is not time-bound.
    pub(crate) fn total(&self) -> Option<u64> {
        self.total
    }
}

/// One client's results: latencies of successful requests (µs) and error
/// counts by gRPC code.
#[derive(Debug, Clone)]
pub(crate) struct Stats {
    pub(crate) hist: Histogram<u64>,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) ok: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            hist: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid bounds"),
            errors: BTreeMap::new(),
            ok: 0,
        }
    }
}

impl Stats {
    /// Records a successful request.
    pub(crate) fn ok(&mut self, latency: Duration) {
        self.ok += 1;
        self.record(latency);
    }

    /// Records a latency without counting a request (watch events).
    pub(crate) fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.hist.saturating_record(us);
    }

    /// Counts an error under `label` (a gRPC code name, `Timeout`, ...).
    pub(crate) fn error(&mut self, label: impl Into<String>) {
        *self.errors.entry(label.into()).or_default() += 1;
    }

    /// Counts a gRPC error under its code.
    pub(crate) fn status(&mut self, status: &tonic::Status) {
        self.error(format!("{:?}", status.code()));
    }

    /// Total errors.
    pub(crate) fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds another client's results.
    pub(crate) fn merge(&mut self, other: &Stats) {
        self.hist.add(&other.hist).expect("same bounds");
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.ok += other.ok;
    }

    /// Times one request with a timeout and records its outcome. Returns the
    /// response on success.
    pub(crate) async fn timed<T, F>(&mut self, timeout: Duration, fut: F) -> Option<T>
    where
        F: Future<Output = Result<T, tonic::Status>>,
    {
        let start = Instant::now();
        let r = tokio::time::timeout(timeout, fut).await;
        self.outcome(start, r)
    }

    /// Records the outcome of a request started at `start` and awaited under
    /// a timeout. Returns the response on success.
    pub(crate) fn outcome<T>(
        &mut self,
        start: Instant,
        r: Result<Result<T, tonic::Status>, tokio::time::error::Elapsed>,
    ) -> Option<T> {
        match r {
            Ok(Ok(v)) => {
                self.ok(start.elapsed());
                Some(v)
            }
            Ok(Err(s)) => {
                self.status(&s);
                None
            }
            Err(_) => {
                self.error("Timeout");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_shared_exactly() {
        let c = Control::new(5, None);
        let claimed = (0..10).filter(|_| c.next()).count();
        assert_eq!(claimed, 5);
        assert_eq!(c.total(), Some(5));
        let timed = Control::new(5, Some(Duration::from_millis(20)));
        assert!(timed.next() && timed.total().is_none());
        std::thread::sleep(Duration::from_millis(30));
        assert!(!timed.next());
    }

    #[test]
    fn stats_merge() {
        let mut a = Stats::default();
        a.ok(Duration::from_micros(100));
        a.error("Unavailable");
        let mut b = Stats::default();
        b.ok(Duration::from_micros(300));
        b.ok(Duration::from_nanos(10)); // recorded as 1 µs
        b.error("Unavailable");
        b.status(&tonic::Status::deadline_exceeded("x"));
        a.merge(&b);
        assert_eq!(a.ok, 3);
        assert_eq!(a.hist.len(), 3);
        assert_eq!(a.hist.min(), 1);
        assert_eq!(a.error_count(), 3);
        assert_eq!(a.errors["Unavailable"], 2);
        assert_eq!(a.errors["DeadlineExceeded"], 1);
    }
}
