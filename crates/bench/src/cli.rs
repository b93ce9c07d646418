//! Command-line flags (clap derive). The binary parses them; tests build
//! them with [`clap::Parser::try_parse_from`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::keys::digits;
use crate::BenchError;

/// Flags shared by every workload, then the workload.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "concord-bench",
    version,
    about = "Load generator for etcd v3 endpoints"
)]
pub struct Args {
    /// Comma-separated endpoints, `host:port` or `http://host:port`.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// Number of gRPC connections (channels), round-robin over the endpoints.
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Number of closed-loop client tasks; client i uses connection i % conns.
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// Requests to issue overall (puts for `watch`). Ignored with --duration-secs.
    #[arg(long, global = true, default_value_t = 10_000)]
    pub total: u64,
    /// Run for this many seconds instead of --total requests.
    #[arg(long, global = true)]
    pub duration_secs: Option<f64>,
    /// Key size in bytes.
    #[arg(long, global = true, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, global = true, default_value_t = 256)]
    pub val_size: usize,
    /// Number of distinct keys written or read.
    #[arg(long, global = true, default_value_t = 100_000)]
    pub key_space: u64,
    /// `put` writes keys in order (0, 1, 2, ... across all clients, modulo
    /// the key space) instead of at random: `--total N --key-space N`
    /// writes N distinct keys.
    #[arg(long, global = true)]
    pub sequential_keys: bool,
    /// Also write the report as JSON to this file.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// No progress bar on stderr.
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Send put/txn-put traffic to the leader only (found with Maintenance.Status).
    #[arg(long, global = true)]
    pub target_leader_only: bool,
    /// Log in as `name:password` (etcd auth) before the run: one
    /// Authenticate, then the token on every request, as etcd's clients
    /// send it. For the KV workloads (`put`, `range`, `txn-put`).
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// Per-request timeout in seconds (a timed-out request counts as an error).
    #[arg(long, global = true, default_value_t = 30.0)]
    pub request_timeout_secs: f64,
    /// The workload.
    #[command(subcommand)]
    pub workload: Workload,
}

/// What the clients do.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Workload {
    /// Put random keys from the key space.
    Put,
    /// Range of single keys, after a prefill that is not measured.
    Range {
        /// `l` linearizable, `s` serializable.
        #[arg(long, value_enum, default_value_t = Consistency::L)]
        consistency: Consistency,
        /// Keys written (not measured) before the run; reads pick among them.
        #[arg(long, default_value_t = 1000)]
        prefill: u64,
    },
    /// Txn with one always-true compare (mod_revision > -1) and a success put.
    TxnPut,
    /// Watch fan-out: watchers on one prefix, one put client writing under it.
    Watch {
        /// Number of watch streams (spread over the connections).
        #[arg(long, default_value_t = 16)]
        watchers: usize,
    },
    /// Keepalive round trips on keepalive streams.
    LeaseKeepalive {
        /// Number of leases granted (TTL 60) before the run.
        #[arg(long, default_value_t = 100)]
        leases: usize,
    },
}

/// Read consistency of the `range` workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    /// Linearizable (through the leader's read index).
    #[value(alias = "linearizable")]
    L,
    /// Serializable (local read on whichever member answers).
    #[value(alias = "serializable")]
    S,
}

impl Workload {
    /// The name used in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Range {
                consistency: Consistency::L,
                ..
            } => "range-linearizable",
            Workload::Range {
                consistency: Consistency::S,
                ..
            } => "range-serializable",
            Workload::TxnPut => "txn-put",
            Workload::Watch { .. } => "watch",
            Workload::LeaseKeepalive { .. } => "lease-keepalive",
        }
    }
}

impl Args {
    /// The run's time limit, if it is time-bound.
    pub fn duration(&self) -> Option<Duration> {
        self.duration_secs.map(Duration::from_secs_f64)
    }

    /// The per-request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout_secs)
    }

    /// Checks the flags that clap cannot.
    pub fn validate(&self) -> Result<(), BenchError> {
        let fail = |m: String| Err(BenchError(m));
        if self.conns == 0 || self.clients == 0 {
            return fail("--conns and --clients must be at least 1".into());
        }
        if self.key_space == 0 || self.key_size == 0 {
            return fail("--key-space and --key-size must be at least 1".into());
        }
        if digits(self.key_space - 1) > self.key_size {
            return fail(format!(
                "--key-size {} is too small for --key-space {} (needs {} bytes)",
                self.key_size,
                self.key_space,
                digits(self.key_space - 1)
            ));
        }
        match self.duration_secs {
            Some(d) if !(d > 0.0 && d.is_finite()) => {
                return fail("--duration-secs must be positive".into())
            }
            None if self.total == 0 => return fail("--total must be at least 1".into()),
            _ => {}
        }
        if !(self.request_timeout_secs > 0.0 && self.request_timeout_secs.is_finite()) {
            return fail("--request-timeout-secs must be positive".into());
        }
        if let Some(u) = &self.user {
            if !u.contains(':') {
                return fail("--user must be name:password".into());
            }
            if matches!(
                self.workload,
                Workload::Watch { .. } | Workload::LeaseKeepalive { .. }
            ) {
                return fail("--user applies to put, range and txn-put".into());
            }
        }
        match &self.workload {
            Workload::Range { prefill, .. } if *prefill > self.key_space => fail(format!(
                "--prefill {prefill} exceeds --key-space {}",
                self.key_space
            )),
            Workload::Watch { watchers } if *watchers == 0 => {
                fail("--watchers must be at least 1".into())
            }
            Workload::Watch { .. } if self.val_size < 8 => {
                fail("watch needs --val-size >= 8 (the send timestamp)".into())
            }
            Workload::LeaseKeepalive { leases } if *leases == 0 => {
                fail("--leases must be at least 1".into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("concord-bench").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn parses_flags_before_and_after_the_workload() {
        let a = parse(&[
            "--endpoints",
            "127.0.0.1:2379,http://127.0.0.1:22379",
            "--conns",
            "4",
            "range",
            "--consistency",
            "s",
            "--clients",
            "64",
        ]);
        assert_eq!(
            a.endpoints,
            vec!["127.0.0.1:2379", "http://127.0.0.1:22379"]
        );
        assert_eq!((a.conns, a.clients, a.total), (4, 64, 10_000));
        assert_eq!(
            a.workload,
            Workload::Range {
                consistency: Consistency::S,
                prefill: 1000
            }
        );
        assert_eq!(a.workload.name(), "range-serializable");
        a.validate().unwrap();
    }

    #[test]
    fn defaults_and_subcommand_names() {
        let a = parse(&["put"]);
        assert_eq!((a.key_size, a.val_size, a.key_space), (8, 256, 100_000));
        assert!(a.duration().is_none() && !a.no_progress && !a.target_leader_only);
        assert_eq!(parse(&["txn-put"]).workload, Workload::TxnPut);
        assert_eq!(
            parse(&["watch", "--watchers", "3"]).workload,
            Workload::Watch { watchers: 3 }
        );
        assert_eq!(
            parse(&["lease-keepalive", "--leases", "7"]).workload,
            Workload::LeaseKeepalive { leases: 7 }
        );
        let r = parse(&["range", "--consistency", "linearizable"]);
        assert_eq!(r.workload.name(), "range-linearizable");
    }

    #[test]
    fn rejects_bad_combinations() {
        assert!(parse(&["--key-size", "4", "put"]).validate().is_err());
        assert!(parse(&["--key-size", "5", "put"]).validate().is_ok());
        assert!(parse(&["--conns", "0", "put"]).validate().is_err());
        assert!(parse(&["--total", "0", "put"]).validate().is_err());
        assert!(parse(&["--total", "0", "--duration-secs", "1", "put"])
            .validate()
            .is_ok());
        assert!(parse(&["--key-space", "10", "range", "--prefill", "11"])
            .validate()
            .is_err());
        assert!(parse(&["--val-size", "4", "watch"]).validate().is_err());
        assert!(Args::try_parse_from(["concord-bench", "range", "--consistency", "x"]).is_err());
        assert!(Args::try_parse_from(["concord-bench"]).is_err());
    }
}
