//! TLS for `https://` endpoints: tonic's rustls (ring, as the server).

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::Error;

/// Trust and identity for `https://` endpoints, as PEM.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    ca: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    domain: Option<String>,
}

impl TlsConfig {
    /// An empty configuration: the platform has no roots here, so give a CA.
    pub fn new() -> TlsConfig {
        TlsConfig::default()
    }

    /// Trust the CA certificate(s) in this PEM.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> TlsConfig {
        self.ca = Some(pem.into());
        self
    }

    /// Show this client certificate and key (PEM) to servers that ask.
    pub fn identity_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> TlsConfig {
        self.identity = Some((cert.into(), key.into()));
        self
    }

    /// Check the server's certificate for this name instead of the host.
    pub fn domain(mut self, name: impl Into<String>) -> TlsConfig {
        self.domain = Some(name.into());
        self
    }

    /// Reads the CA file and, when given, the certificate and key files.
    pub fn from_files(ca: &Path, cert_key: Option<(&Path, &Path)>) -> Result<TlsConfig, Error> {
        let read =
            |p: &Path| std::fs::read(p).map_err(|e| Error::Tls(format!("{}: {e}", p.display())));
        let mut cfg = TlsConfig::new().ca_pem(read(ca)?);
        if let Some((cert, key)) = cert_key {
            cfg = cfg.identity_pem(read(cert)?, read(key)?);
        }
        Ok(cfg)
    }

    /// tonic's configuration for one endpoint's host.
    pub(crate) fn to_tonic(&self, host: &str) -> ClientTlsConfig {
        let mut cfg = ClientTlsConfig::new().domain_name(self.domain.as_deref().unwrap_or(host));
        if let Some(ca) = &self.ca {
            cfg = cfg.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &self.identity {
            cfg = cfg.identity(Identity::from_pem(cert, key));
        }
        cfg
    }
}
