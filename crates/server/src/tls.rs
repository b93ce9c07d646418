//! TLS for the client and peer listeners, as etcd configures it:
//! `--cert-file`/`--key-file` serve `https://` client URLs,
//! `--client-cert-auth` requires client certificates signed by
//! `--trusted-ca-file`, and the `--peer-*` flags do the same for peer URLs
//! (a member dials its peers with its peer certificate as client
//! certificate, and checks theirs against the peer CA).
//!
//! A certificate and key that do not load stop start-up, with the file's
//! name in the error; afterwards they are read again when their files
//! change (`tls_reload.rs`), so they can be rotated without a restart.
//! Trusted CA files are read once.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;

use crate::auth::ClientIdentity;
use crate::config::{parse_host_port, Config};
use crate::error::ServerError;
use crate::tls_reload::{load_certs, tls_err, CertFiles};

/// Longest a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most client handshakes in flight per listener.
const MAX_PENDING_HANDSHAKES: usize = 256;
/// Accepted connections queued for the gRPC server.
const ACCEPT_QUEUE: usize = 64;

/// TLS settings of a member, built from its configuration.
#[derive(Clone, Default)]
pub struct Tls {
    /// Serves `https://` client URLs.
    pub client: Option<TlsAcceptor>,
    /// Serves `https://` peer URLs.
    pub peer_acceptor: Option<TlsAcceptor>,
    /// Dials `https://` peer URLs.
    pub peer_connector: Option<TlsConnector>,
    /// Dials other members' `https://` client URLs (forwarding to the
    /// leader): trusts `--trusted-ca-file` (else the peer CA) and shows
    /// `--cert-file` as the client certificate.
    pub member_client: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("client", &self.client.is_some())
            .field("peer", &self.peer_acceptor.is_some())
            .finish()
    }
}

impl Tls {
    /// Loads the certificates named by the configuration.
    pub fn load(cfg: &Config) -> Result<Tls, ServerError> {
        let mut tls = Tls::default();
        if !cfg.cert_file.is_empty() {
            let ca = (!cfg.trusted_ca_file.is_empty()).then_some(cfg.trusted_ca_file.as_str());
            tls.client = Some(TlsAcceptor::from(server_config(
                &cfg.cert_file,
                &cfg.key_file,
                ca,
                cfg.client_cert_auth,
            )?));
            let roots = match (ca, cfg.peer_trusted_ca_file.as_str()) {
                (Some(ca), _) => ca,
                (None, peer) => peer,
            };
            if !roots.is_empty() {
                let mut c = client_config(&cfg.cert_file, &cfg.key_file, roots)?;
                Arc::make_mut(&mut c).alpn_protocols = vec![b"h2".to_vec()];
                tls.member_client = Some(c);
            }
        }
        if !cfg.peer_cert_file.is_empty() {
            let ca =
                (!cfg.peer_trusted_ca_file.is_empty()).then_some(cfg.peer_trusted_ca_file.as_str());
            tls.peer_acceptor = Some(TlsAcceptor::from(server_config(
                &cfg.peer_cert_file,
                &cfg.peer_key_file,
                ca,
                cfg.peer_client_cert_auth,
            )?));
            tls.peer_connector = Some(TlsConnector::from(client_config(
                &cfg.peer_cert_file,
                &cfg.peer_key_file,
                &cfg.peer_trusted_ca_file,
            )?));
        }
        Ok(tls)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_roots(file: &str) -> Result<RootCertStore, ServerError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(file)? {
        roots.add(c).map_err(|e| tls_err(file, e))?;
    }
    Ok(roots)
}

/// A server configuration; with `require_client_cert`, clients must show
/// a certificate signed by `ca`.
pub fn server_config(
    cert: &str,
    key: &str,
    ca: Option<&str>,
    require_client_cert: bool,
) -> Result<Arc<ServerConfig>, ServerError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(cert, e))?;
    let builder = match (ca, require_client_cert) {
        (Some(ca), true) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider())
                    .build()
                    .map_err(|e| tls_err(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        (None, true) => {
            return Err(ServerError::Config(
                "TLS: client certificate authentication needs a trusted CA file".into(),
            ))
        }
        (_, false) => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(CertFiles::load(cert, key, provider())?);
    // gRPC needs HTTP/2; /health and /metrics also answer HTTP/1.1.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration for dialling peers: trusts `ca`, and shows
/// `cert` as the client certificate.
pub fn client_config(cert: &str, key: &str, ca: &str) -> Result<Arc<ClientConfig>, ServerError> {
    if ca.is_empty() {
        return Err(ServerError::Config(
            "TLS: --peer-trusted-ca-file is required to verify peers".into(),
        ));
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(cert, e))?
        .with_root_certificates(load_roots(ca)?)
        .with_client_cert_resolver(CertFiles::load(cert, key, provider())?);
    Ok(Arc::new(config))
}

/// A byte stream to or from a peer, plain or TLS.
pub trait PeerIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> PeerIo for T {}

/// A boxed peer stream.
pub type PeerStream = Box<dyn PeerIo>;

/// Is this an `https://` URL.
pub fn is_tls_url(url: &str) -> bool {
    url.starts_with("https://")
}

/// Connects to a peer URL, with TLS for `https://` URLs.
pub async fn dial(url: &str, tls: Option<&TlsConnector>) -> io::Result<PeerStream> {
    Ok(dial_peer(url, tls).await?.0)
}

/// [`dial`], plus for a plaintext URL a second handle on the same socket
/// (non-blocking, like the first) that a thread outside the runtime may
/// write to.
pub async fn dial_peer(
    url: &str,
    tls: Option<&TlsConnector>,
) -> io::Result<(PeerStream, Option<std::net::TcpStream>)> {
    let addr = parse_host_port(url).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let tcp = TcpStream::connect(&addr).await?;
    let _ = tcp.set_nodelay(true);
    if !is_tls_url(url) {
        let std = tcp.into_std()?;
        let dup = std.try_clone()?;
        return Ok((Box::new(TcpStream::from_std(std)?), Some(dup)));
    }
    let Some(connector) = tls else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{url} needs TLS but no --peer-cert-file is configured"),
        ));
    };
    let host = addr
        .rsplit_once(':')
        .map_or(addr.as_str(), |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let s = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    Ok((Box::new(s), None))
}

/// Accepts a peer connection: completes the TLS handshake when the
/// listener serves TLS.
pub async fn accept_peer(tcp: TcpStream, tls: Option<&TlsAcceptor>) -> io::Result<PeerStream> {
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(Box::new(tcp)),
        Some(acceptor) => {
            let s = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
            Ok(Box::new(s))
        }
    }
}

/// A client connection after its TLS handshake, as the gRPC server takes it.
#[derive(Debug)]
pub struct TlsConn(tokio_rustls::server::TlsStream<TcpStream>, ClientIdentity);

impl ClientIdentity {
    /// The common name of the first certificate the client showed.
    fn of(s: &tokio_rustls::server::TlsStream<TcpStream>) -> ClientIdentity {
        let cn = s
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|der| common_name(der.as_ref()));
        ClientIdentity(cn)
    }
}

/// The subject common name of a DER certificate, if it has one.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = ClientIdentity;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.1.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Accepts client connections and completes their handshakes off the
/// accept loop (a slow or hostile client cannot stall the others); the
/// stream ends when the gRPC server drops it.
pub fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> ReceiverStream<io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = tx.closed() => return,
            };
            let tcp = match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let Ok(permit) = pending.clone().acquire_owned().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => {
                        drop(permit);
                        let id = ClientIdentity::of(&s);
                        let _ = tx.send(Ok(TlsConn(s, id))).await;
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "client TLS handshake failed"),
                    Err(_) => tracing::debug!("client TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_garbage_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = server_config(missing.to_str().unwrap(), "k", None, false).unwrap_err();
        assert!(e.to_string().contains("nope.pem"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let e = server_config(junk.to_str().unwrap(), "k", None, false).unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        let e = client_config("c", "k", "").unwrap_err();
        assert!(e.to_string().contains("--peer-trusted-ca-file"), "{e}");
    }

    #[test]
    fn the_common_name_is_read_from_a_certificate() {
        let mut p = rcgen::CertificateParams::new(vec!["client".into()]).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()).as_deref(), Some("alice"));
        p.distinguished_name = rcgen::DistinguishedName::new();
        let cert = p.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()), None);
        assert_eq!(common_name(b"not a certificate"), None);
    }

    #[test]
    fn tls_urls_are_recognised() {
        assert!(is_tls_url("https://127.0.0.1:2380"));
        assert!(!is_tls_url("http://127.0.0.1:2380"));
    }
}
