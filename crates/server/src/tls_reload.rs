//! A certificate and key read again when their files change, so a member's
//! certificates can be rotated without a restart, as etcd re-reads them
//! for new handshakes.
//!
//! A handshake looks at the files' modification time and size at most once
//! per [`CHECK_INTERVAL`]; when either changed, the pair is loaded again.
//! A pair that does not load (a half-written file, a key that does not
//! match the certificate) leaves the previous one in use with a warning,
//! and is tried again at the next check. Existing connections keep the
//! certificate they were made with; trusted CA files are read once.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

use crate::error::ServerError;

/// How often a handshake may look at the files.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Modification time and size of the certificate and key files.
type Stamp = [(Option<SystemTime>, u64); 2];

fn stamp(cert: &str, key: &str) -> Stamp {
    let one = |f: &str| {
        std::fs::metadata(Path::new(f)).map_or((None, 0), |m| (m.modified().ok(), m.len()))
    };
    [one(cert), one(key)]
}

/// The member's certificate and key, from `cert` and `key`.
pub struct CertFiles {
    cert: String,
    key: String,
    provider: Arc<CryptoProvider>,
    state: Mutex<State>,
}

struct State {
    current: Arc<CertifiedKey>,
    /// The files as they were when `current` was loaded.
    loaded: Stamp,
    /// The files as they were at the last failed load (warned once).
    failed: Option<Stamp>,
    checked: Instant,
}

impl std::fmt::Debug for CertFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertFiles")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

impl CertFiles {
    /// Loads the pair; an error names the file (it stops start-up).
    pub fn load(
        cert: &str,
        key: &str,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<CertFiles>, ServerError> {
        let loaded = stamp(cert, key);
        let current = Arc::new(load_pair(cert, key, &provider)?);
        Ok(Arc::new(CertFiles {
            cert: cert.to_string(),
            key: key.to_string(),
            provider,
            state: Mutex::new(State {
                current,
                loaded,
                failed: None,
                checked: Instant::now(),
            }),
        }))
    }

    /// The pair to use now (reloaded first if the files changed).
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut s = self.state.lock();
        if s.checked.elapsed() >= CHECK_INTERVAL {
            s.checked = Instant::now();
            let now = stamp(&self.cert, &self.key);
            if now != s.loaded {
                match load_pair(&self.cert, &self.key, &self.provider) {
                    Ok(pair) => {
                        tracing::info!(cert = %self.cert, "reloaded the TLS certificate");
                        s.current = Arc::new(pair);
                        s.loaded = now;
                        s.failed = None;
                    }
                    Err(e) if s.failed != Some(now) => {
                        tracing::warn!(error = %e, "keeping the previous TLS certificate");
                        s.failed = Some(now);
                    }
                    Err(_) => {}
                }
            }
        }
        s.current.clone()
    }
}

fn load_pair(
    cert: &str,
    key: &str,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, ServerError> {
    let certs = load_certs(cert)?;
    let key_der = load_key(key)?;
    CertifiedKey::from_der(certs, key_der, provider).map_err(|e| tls_err(key, e))
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for CertFiles {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A TLS configuration error about `file`.
pub(crate) fn tls_err(file: &str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Config(format!("TLS: {file}: {e}"))
}

/// The PEM certificates in `file` (at least one).
pub(crate) fn load_certs(file: &str) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let certs = CertificateDer::pem_file_iter(Path::new(file))
        .map_err(|e| tls_err(file, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(file, e))?;
    if certs.is_empty() {
        return Err(tls_err(file, "no PEM certificate in the file"));
    }
    Ok(certs)
}

/// The PEM private key in `file`.
pub(crate) fn load_key(file: &str) -> Result<PrivateKeyDer<'static>, ServerError> {
    PrivateKeyDer::from_pem_file(Path::new(file)).map_err(|e| tls_err(file, e))
}
