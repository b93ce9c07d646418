//! `--config-file`: etcd's YAML configuration, with the flags' names as
//! keys.
//!
//! A key Concord does not know is an error that names it (a typo must not
//! silently leave a default in place). Keys etcd defines for features
//! Concord does not have (v2, proxies, log rotation, pprof, ...) are
//! accepted with a warning naming each, so an etcd configuration carries
//! over; they change nothing.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_yaml::{Mapping, Value};

use crate::error::ServerError;

/// etcd (v3.5) configuration keys that Concord accepts and ignores.
const ETCD_IGNORED: &[&str] = &[
    "wal-dir",
    "backend-batch-interval",
    "backend-batch-limit",
    "backend-bbolt-freelist-type",
    "max-snapshots",
    "max-wals",
    "listen-client-http-urls",
    "discovery",
    "discovery-fallback",
    "discovery-proxy",
    "discovery-srv",
    "discovery-srv-name",
    "enable-v2",
    "v2-deprecation",
    "enable-pprof",
    "enable-grpc-gateway",
    "proxy",
    "proxy-failure-wait",
    "proxy-refresh-interval",
    "proxy-dial-timeout",
    "proxy-write-timeout",
    "proxy-read-timeout",
    "debug",
    "logger",
    "log-outputs",
    "log-format",
    "log-rotation-config-json",
    "enable-log-rotation",
    "force-new-cluster",
    "cipher-suites",
    "tls-min-version",
    "tls-max-version",
    "cors",
    "host-whitelist",
    "auth-token",
    "bcrypt-cost",
    "auth-token-ttl",
    "self-signed-cert-validity",
    "initial-election-tick-advance",
    "pre-vote",
    "grpc-keepalive-min-time",
    "grpc-keepalive-interval",
    "grpc-keepalive-timeout",
    "socket-options",
    "unsafe-no-fsync",
    "metrics",
];
/// Keys of etcd's transport-security sections that Concord ignores.
const ETCD_IGNORED_TLS: &[&str] = &[
    "client-cert-file",
    "client-key-file",
    "allowed-cn",
    "allowed-hostname",
    "crl-file",
];

/// Reads and checks a configuration file into `T` (the server's `Config`).
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ServerError> {
    let name = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ServerError::Config(format!("cannot read {name}: {e}")))?;
    let mut doc: Value =
        serde_yaml::from_str(&text).map_err(|e| ServerError::Config(format!("{name}: {e}")))?;
    if let Value::Mapping(m) = &mut doc {
        drop_ignored(m, ETCD_IGNORED, &name.to_string());
        for section in ["client-transport-security", "peer-transport-security"] {
            if let Some(Value::Mapping(inner)) = m.get_mut(section) {
                drop_ignored(inner, ETCD_IGNORED_TLS, &format!("{name}: {section}"));
            }
        }
    }
    let doc = if doc.is_null() {
        Value::Mapping(Mapping::new())
    } else {
        doc
    };
    T::deserialize(doc).map_err(|e| ServerError::Config(format!("{name}: {e}")))
}

fn drop_ignored(m: &mut Mapping, ignored: &[&str], what: &str) {
    m.retain(|k, _| {
        let Some(k) = k.as_str() else { return true };
        let skip = ignored.contains(&k) || k.starts_with("experimental-");
        if skip {
            tracing::warn!("{what}: {k} is an etcd setting Concord does not have; ignored");
        }
        !skip
    });
}

/// A YAML scalar read as a string: etcd's YAML loader turns
/// `auto-compaction-retention: 1` into "1".
pub fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or a number, not {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn file(text: &str) -> Result<Config, ServerError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, text).unwrap();
        load(&path)
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        let e = file("name: a\nsnapshot-cuont: 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("snapshot-cuont"), "{e}");
        let e = file("client-transport-security:\n  cert-fiel: x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cert-fiel"), "{e}");
    }

    #[test]
    fn etcd_keys_without_a_concord_feature_are_accepted() {
        let c = file(
            "name: a\nenable-v2: false\nlogger: zap\nexperimental-initial-corrupt-check: true\n\
             wal-dir: /x\nclient-transport-security:\n  client-cert-file: c\n",
        )
        .unwrap();
        assert_eq!(c.name, "a");
    }

    #[test]
    fn compaction_and_limits_take_etcds_yaml_forms() {
        let c = file(
            "auto-compaction-mode: revision\nauto-compaction-retention: 1000\n\
             max-txn-ops: 64\nmax-concurrent-streams: 100\nquota-backend-bytes: 1048576\n",
        )
        .unwrap();
        assert_eq!(c.auto_compaction_mode, "revision");
        assert_eq!(c.auto_compaction_retention, "1000");
        assert_eq!((c.max_txn_ops, c.max_concurrent_streams), (64, 100));
        assert_eq!(c.quota_backend_bytes, 1 << 20);
        let c = file("auto-compaction-retention: 1h30m\n").unwrap();
        assert_eq!(c.auto_compaction_mode, "periodic");
        assert_eq!(c.auto_compaction_retention, "1h30m");
        assert!(file("").is_ok());
    }
}
