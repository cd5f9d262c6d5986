//! Where the API is served: the unix socket, TCP with mutual TLS
//! (`--listen`) and plain TCP (`--insecure-tcp`). Every listener feeds one
//! stream of connections to the gRPC server.
//!
//! TLS is done here with tokio-rustls rather than by tonic so that each
//! rejected client (no certificate, a certificate from another CA, not TLS at
//! all) is logged with its address, and so that a slow or hostile handshake
//! runs in its own task and never holds up accepting other connections.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::authority::AuthorityFix;
use crate::config::TlsFiles;

/// A client that has not finished its TLS handshake in this time is dropped,
/// so half-open connections cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// A TLS file could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the configuration (key does not match, bad CA).
    #[error("TLS configuration: {0}")]
    Tls(String),
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> ListenError {
    ListenError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Builds the acceptor of `--listen`: the agent's certificate, and client
/// certificates required and verified against the client CA.
pub fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ListenError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| file_error(&files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(&files.cert, e))?;
    if certs.is_empty() {
        return Err(file_error(&files.cert, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_error(&files.key, e))?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&files.client_ca)
        .map_err(|e| file_error(&files.client_ca, e))?
    {
        let ca = ca.map_err(|e| file_error(&files.client_ca, e))?;
        roots.add(ca).map_err(|e| file_error(&files.client_ca, e))?;
    }
    if roots.is_empty() {
        return Err(file_error(
            &files.client_ca,
            "no CA certificate in the file",
        ));
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| ListenError::Tls(e.to_string()))?;
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ListenError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| ListenError::Tls(e.to_string()))?;
    // gRPC is HTTP/2; tonic's client insists on negotiating it by ALPN.
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Connections for the gRPC server, from whichever listener.
pub type Incoming = mpsc::Receiver<io::Result<Conn>>;

/// Backs off after an accept error (EMFILE and friends) instead of spinning.
async fn accept_failed(what: &str, e: &io::Error) {
    tracing::warn!("accepting a {what} connection failed: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Accepts on the unix socket.
pub fn serve_unix(listener: UnixListener, tx: mpsc::Sender<io::Result<Conn>>) {
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    if tx.send(Ok(Conn::Unix(AuthorityFix::new(s)))).await.is_err() {
                        return;
                    }
                }
                Err(e) => accept_failed("unix", &e).await,
            }
        }
    });
}

/// Accepts plain TCP (`--insecure-tcp`).
pub fn serve_insecure_tcp(listener: TcpListener, tx: mpsc::Sender<io::Result<Conn>>) {
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    let _ = s.set_nodelay(true);
                    if tx.send(Ok(Conn::Tcp(s))).await.is_err() {
                        return;
                    }
                }
                Err(e) => accept_failed("TCP", &e).await,
            }
        }
    });
}

/// Accepts TCP with mutual TLS (`--listen`); each handshake runs in its own
/// task, and a client that fails it is logged and dropped.
pub fn serve_tls(listener: TcpListener, acceptor: TlsAcceptor, tx: mpsc::Sender<io::Result<Conn>>) {
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    accept_failed("TLS", &e).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        tracing::debug!(%peer, "TLS client authenticated");
                        let _ = tx.send(Ok(Conn::Tls(Box::new(tls)))).await;
                    }
                    Ok(Err(e)) => reject(peer, &e.to_string()),
                    Err(_) => reject(peer, "TLS handshake timed out"),
                }
            });
        }
    });
}

fn reject(peer: SocketAddr, why: &str) {
    tracing::warn!(%peer, "rejected a TCP client: {why}");
}

/// A connection from any listener.
pub enum Conn {
    /// From the unix socket, accepting any `:authority`.
    Unix(AuthorityFix<UnixStream>),
    /// From `--insecure-tcp`.
    Tcp(TcpStream),
    /// From `--listen`, after the mutual TLS handshake.
    Tls(Box<TlsStream<TcpStream>>),
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_flush(cx),
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
