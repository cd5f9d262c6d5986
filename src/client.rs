//! Connecting to an agent over a unix socket, plain TCP, or TCP with mutual
//! TLS.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

/// Where an agent listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A unix socket path.
    Unix(PathBuf),
    /// An `http://host:port` URL: plain TCP, for agents started with
    /// `--insecure-tcp`.
    Tcp(String),
    /// An `https://host:port` URL: TCP with TLS, for agents started with
    /// `--listen`; needs a [`ClientTls`] to connect.
    Tls(String),
}

impl Address {
    /// Parses `unix:///path`, `/path` (a unix socket), `http://host:port` or
    /// `https://host:port`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix://") {
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        if s.starts_with('/') || s.starts_with('.') {
            return Ok(Address::Unix(PathBuf::from(s)));
        }
        if s.starts_with("http://") {
            return Ok(Address::Tcp(s.to_string()));
        }
        if s.starts_with("https://") {
            return Ok(Address::Tls(s.to_string()));
        }
        Err(format!(
            "{s}: not an agent address (expected a unix socket path, unix:///path, http://host:port or https://host:port)"
        ))
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix://{}", p.display()),
            Address::Tcp(u) | Address::Tls(u) => f.write_str(u),
        }
    }
}

/// What a client needs to talk TLS to an agent: the CA that signed the
/// agent's certificate and, for mutual TLS, the client's own certificate and
/// key (all PEM).
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// PEM of the CA certificate(s) that server certificates must chain to.
    pub ca_pem: Vec<u8>,
    /// PEM of the client certificate and its private key.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Name to verify the server certificate against, when it differs from
    /// the host in the address (e.g. the agent is reached through a tunnel).
    pub server_name: Option<String>,
}

impl ClientTls {
    /// Reads the CA and (when both are given) the client certificate and key
    /// from PEM files.
    pub fn from_files(
        ca: &Path,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<ClientTls, ConnectError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| ConnectError::Tls(format!("{}: {e}", p.display())))
        };
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            (None, None) => None,
            _ => {
                return Err(ConnectError::Tls(
                    "a client certificate needs its key, and a key its certificate".into(),
                ))
            }
        };
        Ok(ClientTls {
            ca_pem: read(ca)?,
            identity,
            server_name: None,
        })
    }
}

/// Why a channel could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// The transport failed: no route, refused, TLS handshake rejected.
    Transport(tonic::transport::Error),
    /// The TLS settings are missing or unusable.
    Tls(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Transport(e) => e.fmt(f),
            ConnectError::Tls(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Transport(e) => Some(e),
            ConnectError::Tls(_) => None,
        }
    }
}

impl From<tonic::transport::Error> for ConnectError {
    fn from(e: tonic::transport::Error) -> Self {
        ConnectError::Transport(e)
    }
}

/// Opens a gRPC channel to the agent at `addr` (unix socket or plain TCP).
pub async fn connect(addr: &Address) -> Result<Channel, tonic::transport::Error> {
    match addr {
        Address::Tcp(url) | Address::Tls(url) => {
            Endpoint::from_shared(url.clone())?.connect().await
        }
        Address::Unix(path) => connect_unix(path).await,
    }
}

/// Opens a gRPC channel to the agent at `addr`, with TLS for an `https://`
/// address. HTTP/2 keep-alives make a dead agent (or network) show up as a
/// failed call or stream within seconds instead of a hang.
pub async fn connect_with(
    addr: &Address,
    tls: Option<&ClientTls>,
) -> Result<Channel, ConnectError> {
    match addr {
        Address::Unix(path) => Ok(connect_unix(path).await?),
        Address::Tcp(url) => Ok(tcp_endpoint(url)?.connect().await?),
        Address::Tls(url) => {
            let tls = tls.ok_or_else(|| {
                ConnectError::Tls(format!(
                    "{url}: TLS needs a CA certificate (--tls-ca, or tls_ca in the inventory)"
                ))
            })?;
            let mut cfg = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
            if let Some((cert, key)) = &tls.identity {
                cfg = cfg.identity(Identity::from_pem(cert, key));
            }
            if let Some(name) = &tls.server_name {
                cfg = cfg.domain_name(name.clone());
            }
            Ok(tcp_endpoint(url)?.tls_config(cfg)?.connect().await?)
        }
    }
}

fn tcp_endpoint(url: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_string())?
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true))
}

async fn connect_unix(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    // The URI is required by the HTTP/2 layer but never resolved.
    Endpoint::from_static("http://berthd.local")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        assert_eq!(
            Address::parse("/run/berth/berthd.sock"),
            Ok(Address::Unix("/run/berth/berthd.sock".into()))
        );
        assert_eq!(
            Address::parse("unix:///tmp/x.sock"),
            Ok(Address::Unix("/tmp/x.sock".into()))
        );
        assert_eq!(
            Address::parse("http://10.0.0.1:7070"),
            Ok(Address::Tcp("http://10.0.0.1:7070".into()))
        );
        assert_eq!(
            Address::parse("https://h:1"),
            Ok(Address::Tls("https://h:1".into()))
        );
        assert!(Address::parse("nonsense").is_err());
    }

    #[tokio::test]
    async fn tls_address_needs_tls_settings() {
        let r = connect_with(&Address::Tls("https://127.0.0.1:1".into()), None).await;
        assert!(matches!(r, Err(ConnectError::Tls(_))), "{r:?}");
    }
}
