//! The run's report: human summary and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::control::Stats;
use crate::{Args, BenchError};

/// Latency statistics in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
}

impl LatencySummary {
    /// Summarizes a histogram of microseconds (all zeros if it is empty).
    pub fn from_micros(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// A run's results. `total` counts finished requests (successes and errors;
/// puts for `watch`); `throughput` is successful operations per second (events
/// delivered per second over all watchers for `watch`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Workload name (`put`, `range-linearizable`, ...).
    pub workload: String,
    /// Endpoints used (after `--target-leader-only`).
    pub endpoints: Vec<String>,
    /// Connections.
    pub conns: usize,
    /// Client tasks (watch streams for `watch`).
    pub clients: usize,
    /// Requests finished.
    pub total: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Failures by gRPC code (`Timeout` for client-side timeouts).
    pub errors_by_code: BTreeMap<String, u64>,
    /// Measured wall time in seconds.
    pub duration_s: f64,
    /// Operations (or events) per second.
    pub throughput: f64,
    /// Latency of successful operations (put-to-event for `watch`).
    pub latency_ms: LatencySummary,
    /// `watch` only: events some watcher never received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_events: Option<u64>,
    /// `watch` only: events delivered over all watchers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_delivered: Option<u64>,
    /// `watch` only: successful puts per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub put_throughput: Option<f64>,
}

impl Report {
    /// A report from merged client statistics measured over `elapsed`.
    pub(crate) fn new(args: &Args, clients: usize, stats: &Stats, elapsed: Duration) -> Self {
        let duration_s = elapsed.as_secs_f64();
        let errors = stats.error_count();
        Report {
            workload: args.workload.name().to_string(),
            endpoints: args.endpoints.clone(),
            conns: args.conns,
            clients,
            total: stats.ok + errors,
            errors,
            errors_by_code: stats.errors.clone(),
            duration_s,
            throughput: rate(stats.ok, duration_s),
            latency_ms: LatencySummary::from_micros(&stats.hist),
            missing_events: None,
            events_delivered: None,
            put_throughput: None,
        }
    }

    /// The JSON object written by `--json`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a report serializes")
    }

    /// Writes the JSON object to `path`.
    pub fn write_json(&self, path: &Path) -> Result<(), BenchError> {
        let text = serde_json::to_string_pretty(self).expect("a report serializes");
        std::fs::write(path, text + "\n")
            .map_err(|e| BenchError(format!("writing {}: {e}", path.display())))
    }

    /// A few lines for humans.
    pub fn human(&self) -> String {
        let l = &self.latency_ms;
        let mut s = String::new();
        let _ = writeln!(s, "workload       {}", self.workload);
        let _ = writeln!(s, "endpoints      {}", self.endpoints.join(","));
        let _ = writeln!(s, "conns/clients  {}/{}", self.conns, self.clients);
        let _ = writeln!(s, "requests       {} ({} errors)", self.total, self.errors);
        let _ = writeln!(s, "duration       {:.3} s", self.duration_s);
        let unit = if self.events_delivered.is_some() {
            "events/s"
        } else {
            "ops/s"
        };
        let _ = writeln!(s, "throughput     {:.1} {unit}", self.throughput);
        if let Some(p) = self.put_throughput {
            let _ = writeln!(s, "put throughput {p:.1} ops/s");
        }
        let _ = writeln!(
            s,
            "latency (ms)   mean {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            l.mean, l.p50, l.p90, l.p99, l.p999, l.max
        );
        if let (Some(d), Some(m)) = (self.events_delivered, self.missing_events) {
            let _ = writeln!(s, "events         {d} delivered, {m} missing");
        }
        for (code, n) in &self.errors_by_code {
            let _ = writeln!(s, "error          {code}: {n}");
        }
        s
    }
}

/// `n` per second over `secs` (0 for an empty interval).
pub(crate) fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn summary_math() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for us in 1..=10_000 {
            h.record(us).unwrap();
        }
        let s = LatencySummary::from_micros(&h);
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.002 + 1e-9;
        assert!(close(s.mean, 5.0005), "{s:?}");
        assert!(close(s.p50, 5.0), "{s:?}");
        assert!(close(s.p90, 9.0), "{s:?}");
        assert!(close(s.p99, 9.9), "{s:?}");
        assert!(close(s.p999, 9.99), "{s:?}");
        assert!(close(s.max, 10.0), "{s:?}");
        assert!(s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.p999 && s.p999 <= s.max);
        let empty = Histogram::<u64>::new(3).unwrap();
        assert_eq!(
            LatencySummary::from_micros(&empty),
            LatencySummary::default()
        );
        assert_eq!(rate(10, 2.0), 5.0);
        assert_eq!(rate(10, 0.0), 0.0);
    }

    #[test]
    fn json_shape() {
        let args = Args::try_parse_from(["b", "--conns", "2", "--clients", "3", "put"]).unwrap();
        let mut stats = Stats::default();
        for _ in 0..4 {
            stats.ok(Duration::from_millis(2));
        }
        stats.error("Unavailable");
        let mut r = Report::new(&args, 3, &stats, Duration::from_secs(2));
        r.endpoints = vec!["http://127.0.0.1:2379".into()];
        let j = r.to_json();
        let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
        for k in [
            "workload",
            "endpoints",
            "conns",
            "clients",
            "total",
            "errors",
            "duration_s",
            "throughput",
            "latency_ms",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        assert!(!keys.contains(&"missing_events"));
        assert_eq!(j["workload"], "put");
        assert_eq!(j["endpoints"][0], "http://127.0.0.1:2379");
        assert_eq!(
            (j["conns"].as_u64(), j["clients"].as_u64()),
            (Some(2), Some(3))
        );
        assert_eq!(
            (j["total"].as_u64(), j["errors"].as_u64()),
            (Some(5), Some(1))
        );
        assert_eq!(j["errors_by_code"]["Unavailable"], 1);
        assert_eq!(j["throughput"].as_f64(), Some(2.0));
        let lat = j["latency_ms"].as_object().unwrap();
        let lat_keys: Vec<&str> = lat.keys().map(String::as_str).collect();
        assert_eq!(lat_keys.len(), 6);
        for k in ["mean", "p50", "p90", "p99", "p999", "max"] {
            assert!((lat[k].as_f64().unwrap() - 2.0).abs() < 0.01, "{k}");
        }
        r.missing_events = Some(0);
        r.events_delivered = Some(8);
        assert_eq!(r.to_json()["missing_events"], 0);
        assert!(r.human().contains("8 delivered, 0 missing"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        r.write_json(&path).unwrap();
        let back: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, r.to_json());
    }
}
