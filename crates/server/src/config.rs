//! Server configuration: etcd's flag names (and `--config-file` YAML with
//! the same keys), so that an etcd user's configuration carries over.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::error::ServerError;

/// Default `--max-request-bytes` (etcd: 1.5 MiB).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// Default `--quota-backend-bytes` (etcd: 2 GiB).
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Default `--max-txn-ops` (etcd: 128).
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

/// Flags of the `concord` binary. Names follow etcd's.
#[derive(Debug, Clone, Parser, Deserialize)]
#[command(
    name = "concord",
    version,
    about = "Concord: an etcd v3 compatible coordination service"
)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct Config {
    /// Human-readable name of this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Directory for the WAL, snapshots and the backend.
    #[arg(long, default_value = "default.concord")]
    pub data_dir: PathBuf,
    /// URLs to listen on for client traffic (comma separated).
    #[arg(long, default_value = "http://localhost:2379")]
    pub listen_client_urls: String,
    /// Client URLs advertised to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2379")]
    pub advertise_client_urls: String,
    /// URLs to listen on for peer traffic.
    #[arg(long, default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,
    /// This member's peer URLs, advertised to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster: `name=peerurl,name=peerurl,...`.
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// `new` to bootstrap a cluster, `existing` to join one.
    #[arg(long, default_value = "new")]
    pub initial_cluster_state: String,
    /// Token that makes cluster and member ids unique per cluster.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Election timeout in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
    /// Serve linearizable reads on the leader's lease (no heartbeat round
    /// per read) instead of ReadIndex. Safe only while the members' clocks
    /// run at rates within `--max-clock-drift` of each other.
    #[arg(long, default_value_t = false)]
    pub experimental_lease_reads: bool,
    /// Bound, in milliseconds, on how far members' clocks may drift apart
    /// over one election timeout; the lease is the election timeout minus
    /// this (lease reads only; rounded down to heartbeat intervals).
    #[arg(long, default_value_t = 200)]
    pub max_clock_drift: u64,
    /// Applied entries between snapshots.
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Backend size beyond which the NOSPACE alarm is raised (0 = default).
    #[arg(long, default_value_t = DEFAULT_QUOTA_BACKEND_BYTES)]
    pub quota_backend_bytes: u64,
    /// Largest client request accepted.
    #[arg(long, default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// Most operations in each list of a txn (compares, success, failure),
    /// as etcd counts them.
    #[arg(long, default_value_t = DEFAULT_MAX_TXN_OPS)]
    pub max_txn_ops: usize,
    /// Auth token kind: `simple` (random tokens kept by every member,
    /// valid for `--auth-token-ttl` seconds after their last use), or
    /// `jwt,pub-key=PEM,priv-key=PEM,sign-method=ES256|RS256|...,ttl=5m`
    /// (signed tokens any member holding the public key accepts).
    #[arg(long, default_value = "simple")]
    pub auth_token: String,
    /// Seconds a simple token stays valid after its last use.
    #[arg(long, default_value_t = 300)]
    pub auth_token_ttl: u64,
    /// bcrypt cost of password hashes (etcd's default: 10).
    #[arg(long, default_value_t = 10)]
    pub bcrypt_cost: u32,
    /// Most concurrent HTTP/2 streams per client connection.
    #[arg(long, default_value_t = u32::MAX)]
    pub max_concurrent_streams: u32,
    /// Auto compaction mode: `periodic` (the retention is a time) or
    /// `revision` (the retention is a number of revisions).
    #[arg(long, default_value = "periodic")]
    pub auto_compaction_mode: String,
    /// History auto compaction keeps; `0` turns it off. Periodic: a
    /// duration (`1h`, `30m`, `90s`) or a bare number of hours; revision:
    /// a number of revisions.
    #[arg(long, default_value = "0")]
    #[serde(deserialize_with = "crate::config_file::string_or_number")]
    pub auto_compaction_retention: String,
    /// Refuse membership changes that could cost the cluster its quorum
    /// (a voter added while a member is unreachable or too few members have
    /// started; an active voter removed while others are down), as etcd.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub strict_reconfig_check: bool,
    /// Extra URLs serving /health, /livez, /readyz and /metrics.
    #[arg(long, default_value = "")]
    pub listen_metrics_urls: String,
    /// Certificate (PEM) served on `https://` client URLs.
    #[arg(long, default_value = "")]
    pub cert_file: String,
    /// Private key (PEM) of `--cert-file`.
    #[arg(long, default_value = "")]
    pub key_file: String,
    /// CA (PEM) that client certificates must be signed by.
    #[arg(long, default_value = "")]
    pub trusted_ca_file: String,
    /// Require client certificates signed by `--trusted-ca-file`.
    #[arg(long, default_value_t = false)]
    pub client_cert_auth: bool,
    /// Certificate (PEM) served on `https://` peer URLs and shown when
    /// dialling peers.
    #[arg(long, default_value = "")]
    pub peer_cert_file: String,
    /// Private key (PEM) of `--peer-cert-file`.
    #[arg(long, default_value = "")]
    pub peer_key_file: String,
    /// CA (PEM) that peer certificates must be signed by.
    #[arg(long, default_value = "")]
    pub peer_trusted_ca_file: String,
    /// Require peers to show certificates signed by `--peer-trusted-ca-file`.
    #[arg(long, default_value_t = false)]
    pub peer_client_cert_auth: bool,
    /// YAML file with the same keys as the flags; flags given on the
    /// command line are overridden by the file, as in etcd.
    #[arg(long)]
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    /// Threads serving gRPC and peer I/O (Concord only; 0 = half the CPUs,
    /// at least one). The Raft driver and the WAL writer have their own.
    #[arg(long, default_value_t = 0)]
    pub worker_threads: usize,
    /// Log level filter (`info`, `debug`, ...).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// etcd's config-file section for client TLS (the file form of
    /// `--cert-file`, `--key-file`, `--trusted-ca-file`, `--client-cert-auth`).
    #[arg(skip)]
    #[serde(default)]
    pub client_transport_security: Option<TransportSecurity>,
    /// etcd's config-file section for peer TLS (the `--peer-*` flags).
    #[arg(skip)]
    #[serde(default)]
    pub peer_transport_security: Option<TransportSecurity>,
}

/// A `client-transport-security` or `peer-transport-security` section of an
/// etcd config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct TransportSecurity {
    /// Certificate file.
    pub cert_file: String,
    /// Key file.
    pub key_file: String,
    /// CA that client (or peer) certificates must be signed by.
    pub trusted_ca_file: String,
    /// Require certificates signed by the CA.
    pub client_cert_auth: bool,
    /// Self-signed certificates (not supported: refused if true).
    pub auto_tls: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config::parse_from(["concord"])
    }
}

/// One member of the initial cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    /// Member name.
    pub name: String,
    /// Its peer URLs.
    pub peer_urls: Vec<String>,
}

impl Config {
    /// Parses flags, then the config file if one is named.
    pub fn load(args: impl IntoIterator<Item = String>) -> Result<Config, ServerError> {
        let cfg = match Config::try_parse_from(args) {
            Ok(c) => c,
            // --help and --version print and exit, as every CLI does.
            Err(e)
                if matches!(
                    e.kind(),
                    clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
                ) =>
            {
                e.exit()
            }
            Err(e) => return Err(ServerError::Config(e.to_string())),
        };
        match &cfg.config_file {
            Some(path) => {
                let mut file: Config = crate::config_file::load(path)?;
                file.config_file = cfg.config_file.clone();
                file.apply_transport_sections()?;
                file.validate()?;
                Ok(file)
            }
            None => {
                cfg.validate()?;
                Ok(cfg)
            }
        }
    }

    /// Checks values that clap cannot.
    pub fn validate(&self) -> Result<(), ServerError> {
        let bad = |m: String| Err(ServerError::Config(m));
        if self.heartbeat_interval == 0 || self.election_timeout < 5 * self.heartbeat_interval {
            return bad(format!(
                "--election-timeout ({}) must be at least 5 times --heartbeat-interval ({})",
                self.election_timeout, self.heartbeat_interval
            ));
        }
        if !matches!(self.initial_cluster_state.as_str(), "new" | "existing") {
            return bad(format!(
                "--initial-cluster-state must be 'new' or 'existing', not {:?}",
                self.initial_cluster_state
            ));
        }
        self.validate_tls()?;
        crate::compactor::Retention::parse(
            &self.auto_compaction_mode,
            &self.auto_compaction_retention,
        )
        .map_err(ServerError::Config)?;
        if self.max_txn_ops == 0 {
            return bad("--max-txn-ops must be at least 1".into());
        }
        crate::auth::jwt::JwtTokens::from_flag(&self.auth_token)?;
        if self.auth_token_ttl == 0 {
            return bad("--auth-token-ttl must be at least 1".into());
        }
        if !(4..=31).contains(&self.bcrypt_cost) {
            return bad(format!(
                "--bcrypt-cost {} is outside bcrypt's 4..=31",
                self.bcrypt_cost
            ));
        }
        self.initial_members()?;
        self.client_listen_addrs()?;
        self.peer_listen_addrs()?;
        self.metrics_listen_addrs()?;
        if !self.initial_members()?.iter().any(|m| m.name == self.name) {
            return bad(format!(
                "--initial-cluster has no member named {:?} (--name)",
                self.name
            ));
        }
        Ok(())
    }

    /// Copies etcd's nested TLS sections onto the flat settings.
    fn apply_transport_sections(&mut self) -> Result<(), ServerError> {
        fn apply(
            name: &str,
            section: Option<TransportSecurity>,
            (cert, key, ca, auth): (&mut String, &mut String, &mut String, &mut bool),
        ) -> Result<(), ServerError> {
            let Some(t) = section else {
                return Ok(());
            };
            if t.auto_tls {
                return Err(ServerError::Config(format!(
                    "{name}: auto-tls is not supported; give cert-file and key-file"
                )));
            }
            (*cert, *key, *ca, *auth) = (
                t.cert_file,
                t.key_file,
                t.trusted_ca_file,
                t.client_cert_auth,
            );
            Ok(())
        }
        apply(
            "client-transport-security",
            self.client_transport_security.take(),
            (
                &mut self.cert_file,
                &mut self.key_file,
                &mut self.trusted_ca_file,
                &mut self.client_cert_auth,
            ),
        )?;
        apply(
            "peer-transport-security",
            self.peer_transport_security.take(),
            (
                &mut self.peer_cert_file,
                &mut self.peer_key_file,
                &mut self.peer_trusted_ca_file,
                &mut self.peer_client_cert_auth,
            ),
        )
    }

    /// TLS flags must come in working sets: `https://` URLs need a
    /// certificate and key, certificate authentication needs a CA.
    fn validate_tls(&self) -> Result<(), ServerError> {
        let bad = |m: &str| Err(ServerError::Config(m.to_string()));
        let https = |urls: &str| list(urls).iter().any(|u| u.starts_with("https://"));
        if self.cert_file.is_empty() != self.key_file.is_empty() {
            return bad("--cert-file and --key-file go together");
        }
        if self.peer_cert_file.is_empty() != self.peer_key_file.is_empty() {
            return bad("--peer-cert-file and --peer-key-file go together");
        }
        if (https(&self.listen_client_urls) || https(&self.listen_metrics_urls))
            && self.cert_file.is_empty()
        {
            return bad("https:// client URLs need --cert-file and --key-file");
        }
        if self.client_cert_auth && self.trusted_ca_file.is_empty() {
            return bad("--client-cert-auth needs --trusted-ca-file");
        }
        if https(&self.listen_peer_urls) && self.peer_cert_file.is_empty() {
            return bad("https:// peer URLs need --peer-cert-file and --peer-key-file");
        }
        if !self.peer_cert_file.is_empty() && self.peer_trusted_ca_file.is_empty() {
            return bad("--peer-cert-file needs --peer-trusted-ca-file to verify peers");
        }
        if self.peer_client_cert_auth && self.peer_trusted_ca_file.is_empty() {
            return bad("--peer-client-cert-auth needs --peer-trusted-ca-file");
        }
        Ok(())
    }

    /// Parses `--initial-cluster`.
    pub fn initial_members(&self) -> Result<Vec<InitialMember>, ServerError> {
        let mut out: Vec<InitialMember> = Vec::new();
        for part in self.initial_cluster.split(',').filter(|s| !s.is_empty()) {
            let (name, url) = part.split_once('=').ok_or_else(|| {
                ServerError::Config(format!("--initial-cluster: {part:?} is not name=url"))
            })?;
            parse_host_port(url)?;
            match out.iter_mut().find(|m| m.name == name) {
                Some(m) => m.peer_urls.push(url.to_string()),
                None => out.push(InitialMember {
                    name: name.to_string(),
                    peer_urls: vec![url.to_string()],
                }),
            }
        }
        if out.is_empty() {
            return Err(ServerError::Config("--initial-cluster is empty".into()));
        }
        Ok(out)
    }

    /// Socket addresses of `--listen-client-urls`.
    pub fn client_listen_addrs(&self) -> Result<Vec<String>, ServerError> {
        split_urls(&self.listen_client_urls)
    }

    /// Socket addresses of `--listen-peer-urls`.
    pub fn peer_listen_addrs(&self) -> Result<Vec<String>, ServerError> {
        split_urls(&self.listen_peer_urls)
    }

    /// Socket addresses of `--listen-metrics-urls`.
    pub fn metrics_listen_addrs(&self) -> Result<Vec<String>, ServerError> {
        split_urls(&self.listen_metrics_urls)
    }

    /// `--advertise-client-urls` as a list.
    pub fn advertised_client_urls(&self) -> Vec<String> {
        list(&self.advertise_client_urls)
    }

    /// `--initial-advertise-peer-urls` as a list.
    pub fn advertised_peer_urls(&self) -> Vec<String> {
        list(&self.initial_advertise_peer_urls)
    }

    /// Worker threads of the async runtime.
    pub fn runtime_threads(&self) -> usize {
        if self.worker_threads > 0 {
            return self.worker_threads;
        }
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        (cpus / 2).max(1)
    }

    /// One Raft tick.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval)
    }

    /// Election timeout in ticks.
    pub fn election_ticks(&self) -> u32 {
        (self.election_timeout / self.heartbeat_interval).max(2) as u32
    }

    /// The clock-drift bound in ticks (below the election timeout).
    pub fn max_clock_drift_ticks(&self) -> u32 {
        let ticks = (self.max_clock_drift / self.heartbeat_interval) as u32;
        ticks.min(self.election_ticks() - 1)
    }
}

/// A comma-separated flag value as a list.
pub fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn split_urls(s: &str) -> Result<Vec<String>, ServerError> {
    list(s).iter().map(|u| parse_host_port(u)).collect()
}

/// `http://host:port`, `https://host:port` (or `host:port`) to
/// `host:port`. Unix sockets are refused.
pub fn parse_host_port(url: &str) -> Result<String, ServerError> {
    let rest = if let Some(r) = url.strip_prefix("http://") {
        r
    } else if let Some(r) = url.strip_prefix("https://") {
        r
    } else if url.starts_with("unix") {
        return Err(ServerError::Config(format!(
            "{url}: only http:// and https:// URLs are supported"
        )));
    } else {
        url
    };
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(rest.to_string())
        }
        _ => Err(ServerError::Config(format!(
            "{url}: expected http://host:port"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ServerError> {
        Config::load(
            std::iter::once("concord")
                .chain(args.iter().copied())
                .map(String::from),
        )
    }

    #[test]
    fn etcd_flags_parse() {
        let c = parse(&[
            "--name",
            "n1",
            "--initial-cluster",
            "n1=http://127.0.0.1:2380,n2=http://127.0.0.1:22380",
            "--listen-client-urls",
            "http://127.0.0.1:2379",
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
        ])
        .unwrap();
        assert_eq!(c.initial_members().unwrap().len(), 2);
        assert_eq!(c.client_listen_addrs().unwrap(), vec!["127.0.0.1:2379"]);
        assert_eq!(c.election_ticks(), 10);
        assert!(c.strict_reconfig_check, "on by default, as in etcd");
        let c = parse(&["--strict-reconfig-check=false"]).unwrap();
        assert!(!c.strict_reconfig_check);
    }

    #[test]
    fn bad_values_get_clear_errors() {
        let e = parse(&["--election-timeout", "100"]).unwrap_err();
        assert!(e.to_string().contains("5 times"), "{e}");
        let e = parse(&["--name", "x"]).unwrap_err();
        assert!(e.to_string().contains("no member named"), "{e}");
        let e = parse(&["--listen-client-urls", "unix://a:1"]).unwrap_err();
        assert!(e.to_string().contains("only http://"), "{e}");
        let e = parse(&["--listen-client-urls", "https://a:1"]).unwrap_err();
        assert!(e.to_string().contains("need --cert-file"), "{e}");
        let e = parse(&["--cert-file", "c.pem"]).unwrap_err();
        assert!(e.to_string().contains("go together"), "{e}");
        let e = parse(&["--client-cert-auth"]).unwrap_err();
        assert!(e.to_string().contains("--trusted-ca-file"), "{e}");
        let e = parse(&["--peer-cert-file", "p.pem", "--peer-key-file", "k.pem"]).unwrap_err();
        assert!(e.to_string().contains("--peer-trusted-ca-file"), "{e}");
        let e = parse(&["--listen-peer-urls", "https://127.0.0.1:2380"]).unwrap_err();
        assert!(e.to_string().contains("need --peer-cert-file"), "{e}");
        let e = parse(&["--initial-cluster-state", "old"]).unwrap_err();
        assert!(e.to_string().contains("existing"), "{e}");
    }

    #[test]
    fn config_file_uses_etcd_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "name: a\ninitial-cluster: a=http://127.0.0.1:3380\nsnapshot-count: 5\n",
        )
        .unwrap();
        let c = parse(&["--config-file", path.to_str().unwrap()]).unwrap();
        assert_eq!(c.name, "a");
        assert_eq!(c.snapshot_count, 5);
        assert_eq!(c.heartbeat_interval, 100);
    }

    #[test]
    fn config_file_takes_etcds_transport_security_sections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "name: a\n\
             initial-cluster: a=https://127.0.0.1:3380\n\
             listen-client-urls: https://127.0.0.1:3379\n\
             listen-peer-urls: https://127.0.0.1:3380\n\
             client-transport-security:\n  cert-file: s.pem\n  key-file: s-key.pem\n  \
             trusted-ca-file: ca.pem\n  client-cert-auth: true\n\
             peer-transport-security:\n  cert-file: p.pem\n  key-file: p-key.pem\n  \
             trusted-ca-file: pca.pem\n  client-cert-auth: true\n  auto-tls: false\n",
        )
        .unwrap();
        let c = parse(&["--config-file", path.to_str().unwrap()]).unwrap();
        assert_eq!(
            (c.cert_file.as_str(), c.key_file.as_str()),
            ("s.pem", "s-key.pem")
        );
        assert_eq!(c.trusted_ca_file, "ca.pem");
        assert!(c.client_cert_auth && c.peer_client_cert_auth);
        assert_eq!(c.peer_trusted_ca_file, "pca.pem");
        std::fs::write(
            &path,
            "name: a\ninitial-cluster: a=http://127.0.0.1:3380\n\
             client-transport-security:\n  auto-tls: true\n",
        )
        .unwrap();
        let e = parse(&["--config-file", path.to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("auto-tls"), "{e}");
    }
}
