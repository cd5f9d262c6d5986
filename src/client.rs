//! Connecting to an agent over a unix socket or TCP.

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// Where an agent listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A unix socket path.
    Unix(PathBuf),
    /// An `http://host:port` URL.
    Tcp(String),
}

impl Address {
    /// Parses `unix:///path`, `/path` (a unix socket), or `http://host:port`.
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
            return Err(format!(
                "{s}: TLS is not supported yet; use a unix socket or http://"
            ));
        }
        Err(format!(
            "{s}: not an agent address (expected a unix socket path, unix:///path or http://host:port)"
        ))
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix://{}", p.display()),
            Address::Tcp(u) => f.write_str(u),
        }
    }
}

/// Opens a gRPC channel to the agent at `addr`.
pub async fn connect(addr: &Address) -> Result<Channel, tonic::transport::Error> {
    match addr {
        Address::Tcp(url) => Endpoint::from_shared(url.clone())?.connect().await,
        Address::Unix(path) => {
            let path = path.clone();
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
    }
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
        assert!(Address::parse("https://h:1").is_err());
        assert!(Address::parse("nonsense").is_err());
    }
}
