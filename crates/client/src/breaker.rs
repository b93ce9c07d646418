//! A circuit breaker per endpoint: closed (calls go through), open (calls
//! go elsewhere for a while) and half-open (a bounded number of probes go
//! through; their successes close it, a failure opens it again).
//!
//! A failure is a broken connection, a connection that could not be
//! made, a passed deadline, or an answer slower than
//! [`BreakerConfig::slow_call`]. Errors the member answers with (no
//! leader, a compare that failed, ...) show it alive and count as
//! successes. The state of each endpoint is the gauge
//! `concord_client_breaker_state{endpoint}` (0 closed, 1 half-open,
//! 2 open) and [`crate::Client::breaker_state`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When a breaker opens and how it closes again.
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker (0: never opens).
    pub failures_to_open: u32,
    /// An answer slower than this counts as a failure.
    pub slow_call: Duration,
    /// How long an open breaker keeps calls away before it lets probes
    /// through (half-open).
    pub open_for: Duration,
    /// Probes in flight at once in half-open; that many successes close it.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            failures_to_open: 3,
            slow_call: Duration::from_secs(2),
            open_for: Duration::from_secs(2),
            half_open_probes: 2,
        }
    }
}

/// Where an endpoint's breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Probes go through, up to a bound.
    HalfOpen,
    /// Calls go elsewhere.
    Open,
}

impl BreakerState {
    fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

#[derive(Debug, Clone)]
struct Breaker {
    state: BreakerState,
    failures: u32,
    /// When it opened, or when half-open let its first probe through.
    since: Instant,
    probes: u32,
    successes: u32,
}

impl Breaker {
    fn new(now: Instant) -> Breaker {
        Breaker {
            state: BreakerState::Closed,
            failures: 0,
            since: now,
            probes: 0,
            successes: 0,
        }
    }

    fn set(&mut self, url: &str, state: BreakerState, now: Instant) {
        self.state = state;
        self.since = now;
        self.failures = 0;
        self.probes = 0;
        self.successes = 0;
        metrics::gauge!("concord_client_breaker_state", "endpoint" => url.to_string())
            .set(state.gauge());
    }

    /// Whether a call may go here now; takes a probe slot when half-open.
    fn admit(&mut self, url: &str, cfg: &BreakerConfig, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open if now.duration_since(self.since) >= cfg.open_for => {
                self.set(url, BreakerState::HalfOpen, now);
                self.probes = 1;
                true
            }
            BreakerState::Open => false,
            BreakerState::HalfOpen => {
                // Probes whose callers gave up never report: after
                // another `open_for`, their slots are free again.
                if now.duration_since(self.since) >= cfg.open_for {
                    self.since = now;
                    self.probes = 0;
                }
                if self.probes < cfg.half_open_probes.max(1) {
                    self.probes += 1;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Whether an open breaker's wait is over (a probe may go).
    fn probe_due(&self, cfg: &BreakerConfig, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => false,
            BreakerState::Open => now.duration_since(self.since) >= cfg.open_for,
            BreakerState::HalfOpen => self.probes < cfg.half_open_probes.max(1),
        }
    }

    fn record(&mut self, url: &str, cfg: &BreakerConfig, ok: bool, now: Instant) {
        match self.state {
            BreakerState::Closed if ok => self.failures = 0,
            BreakerState::Closed => {
                self.failures += 1;
                if cfg.failures_to_open > 0 && self.failures >= cfg.failures_to_open {
                    self.set(url, BreakerState::Open, now);
                }
            }
            BreakerState::HalfOpen if ok => {
                self.probes = self.probes.saturating_sub(1);
                self.successes += 1;
                if self.successes >= cfg.half_open_probes.max(1) {
                    self.set(url, BreakerState::Closed, now);
                }
            }
            BreakerState::HalfOpen => self.set(url, BreakerState::Open, now),
            // An answer to a call sent before it opened.
            BreakerState::Open => {}
        }
    }
}

/// The breakers of all endpoints.
#[derive(Debug)]
pub(crate) struct Breakers {
    cfg: BreakerConfig,
    all: Mutex<HashMap<String, Breaker>>,
}

impl Breakers {
    pub(crate) fn new(cfg: BreakerConfig) -> Breakers {
        Breakers {
            cfg,
            all: Mutex::new(HashMap::new()),
        }
    }

    fn with<R>(&self, url: &str, now: Instant, f: impl FnOnce(&mut Breaker) -> R) -> R {
        let mut all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        let b = all
            .entry(url.to_string())
            .or_insert_with(|| Breaker::new(now));
        f(b)
    }

    /// The breaker's state of `url`.
    pub(crate) fn state(&self, url: &str) -> BreakerState {
        self.with(url, Instant::now(), |b| b.state)
    }

    /// Where a call meant for `preferred` goes: a probe to an endpoint
    /// whose breaker waits for one (when `may_probe`: a call safe to send
    /// again elsewhere), else `preferred` if its breaker admits it, else
    /// the first endpoint whose breaker does, else `preferred` all the
    /// same (every breaker open: better to try than to fail).
    pub(crate) fn pick(&self, preferred: String, urls: &[String], may_probe: bool) -> String {
        let now = Instant::now();
        let cfg = &self.cfg;
        if may_probe {
            for u in urls {
                if self.with(u, now, |b| b.probe_due(cfg, now) && b.admit(u, cfg, now)) {
                    return u.clone();
                }
            }
        }
        if self.with(&preferred, now, |b| b.admit(&preferred, cfg, now)) {
            return preferred;
        }
        urls.iter()
            .find(|u| self.with(u, now, |b| b.admit(u, cfg, now)))
            .cloned()
            .unwrap_or(preferred)
    }

    /// Records how a call to `url` went: `failed` (no answer) or answered
    /// after `took`.
    pub(crate) fn record(&self, url: &str, failed: bool, took: Duration) {
        let now = Instant::now();
        let ok = !failed && took <= self.cfg.slow_call;
        self.with(url, now, |b| b.record(url, &self.cfg, ok, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failures_to_open: 2,
            slow_call: Duration::from_millis(100),
            open_for: Duration::from_millis(500),
            half_open_probes: 2,
        }
    }

    #[test]
    fn opens_on_errors_and_slow_calls_then_closes_after_probes() {
        let c = cfg();
        let t0 = Instant::now();
        let mut b = Breaker::new(t0);
        b.record("u", &c, false, t0);
        b.record("u", &c, true, t0);
        b.record("u", &c, false, t0);
        assert_eq!(
            b.state,
            BreakerState::Closed,
            "failures must be consecutive"
        );
        b.record("u", &c, false, t0);
        assert_eq!(b.state, BreakerState::Open);
        assert!(!b.admit("u", &c, t0 + Duration::from_millis(100)));
        // After open_for: half-open, a bounded number of probes.
        let t1 = t0 + Duration::from_millis(600);
        assert!(b.probe_due(&c, t1));
        assert!(b.admit("u", &c, t1));
        assert_eq!(b.state, BreakerState::HalfOpen);
        assert!(b.admit("u", &c, t1));
        assert!(!b.admit("u", &c, t1), "only two probes at once");
        b.record("u", &c, true, t1);
        assert_eq!(b.state, BreakerState::HalfOpen);
        b.record("u", &c, true, t1);
        assert_eq!(b.state, BreakerState::Closed);
        // A failed probe opens it again.
        b.record("u", &c, false, t1);
        b.record("u", &c, false, t1);
        let t2 = t1 + Duration::from_millis(600);
        assert!(b.admit("u", &c, t2));
        b.record("u", &c, false, t2);
        assert_eq!(b.state, BreakerState::Open);
    }

    #[test]
    fn slow_answers_count_as_failures_and_routing_avoids_an_open_breaker() {
        let urls: Vec<String> = vec!["a".into(), "b".into()];
        let bs = Breakers::new(cfg());
        bs.record("a", false, Duration::from_millis(150));
        assert_eq!(bs.state("a"), BreakerState::Closed);
        bs.record("a", false, Duration::from_millis(150));
        assert_eq!(bs.state("a"), BreakerState::Open);
        assert_eq!(bs.pick("a".into(), &urls, true), "b");
        assert_eq!(bs.pick("a".into(), &urls, false), "b");
        bs.record("b", true, Duration::ZERO);
        bs.record("b", true, Duration::ZERO);
        assert_eq!(
            bs.pick("a".into(), &urls, false),
            "a",
            "all open: try anyway"
        );
    }

    #[test]
    fn the_state_is_a_gauge_per_endpoint() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshots = recorder.snapshotter();
        let bs = Breakers::new(cfg());
        metrics::with_local_recorder(&recorder, || {
            bs.record("a", true, Duration::ZERO);
            bs.record("a", true, Duration::ZERO);
        });
        let gauges: Vec<_> = snapshots
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(k, ..)| k.key().name() == "concord_client_breaker_state")
            .collect();
        assert_eq!(gauges.len(), 1);
        let (key, _, _, value) = &gauges[0];
        let label = key.key().labels().next().unwrap();
        assert_eq!((label.key(), label.value()), ("endpoint", "a"));
        assert_eq!(*value, DebugValue::Gauge(2.0.into()));
    }
}
