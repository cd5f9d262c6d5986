//! Registry client setup: plain HTTP for loopback and `--insecure-registry`
//! registries, HTTPS with the system roots otherwise, and timeouts.

use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::Client;

use crate::image::ImageError;

/// Makes registry clients; one per agent.
pub(super) struct Clients {
    insecure: Vec<String>,
}

/// True for registries on the loopback interface, which are reached over
/// plain HTTP without being listed (as Docker does for 127.0.0.0/8): traffic
/// that never leaves the host gains nothing from TLS.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => registry.split(':').next().unwrap_or(""),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Clients {
    /// `insecure` lists registries (host[:port]) reached over plain HTTP.
    pub(super) fn new(insecure: Vec<String>) -> Self {
        // reqwest is built without a default TLS provider (see Cargo.toml);
        // this fails only if one is installed already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Clients { insecure }
    }

    /// True if `registry` is reached over plain HTTP.
    fn plain_http(&self, registry: &str) -> bool {
        is_loopback(registry) || self.insecure.iter().any(|i| i == registry)
    }

    /// A registry client for one registry and one set of credentials (the
    /// client caches auth per registry, so clients are never shared across
    /// credentials).
    pub(super) fn client(&self, registry: &str) -> Result<Client, ImageError> {
        Self::build(self.config(registry, false))
    }

    /// A client for pushing to `registry`: as [`client`](Self::client), but
    /// blobs are uploaded monolithically (one PUT with the blob's length).
    /// Chunked uploads are not portable: ECR answers a PATCH with 201 and
    /// wants chunks of at least 5 MiB, while oci-client sends 4 MiB chunks
    /// and accepts only 202.
    pub(super) fn push_client(&self, registry: &str) -> Result<Client, ImageError> {
        Self::build(self.config(registry, true))
    }

    /// The client configuration for `registry`.
    fn config(&self, registry: &str, monolithic_push: bool) -> ClientConfig {
        ClientConfig {
            protocol: if self.plain_http(registry) {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(Duration::from_secs(30)),
            // A stalled transfer fails (and can be resumed) instead of hanging.
            read_timeout: Some(Duration::from_secs(120)),
            use_monolithic_push: monolithic_push,
            ..Default::default()
        }
    }

    /// Builds a client from `config`.
    fn build(config: ClientConfig) -> Result<Client, ImageError> {
        Client::try_from(config)
            .map_err(|e| ImageError::io("creating the registry client", std::io::Error::other(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes upload each blob in one PUT (ECR refuses oci-client's
    /// chunked PATCH uploads); pulls keep the default.
    #[test]
    fn pushes_upload_monolithically() {
        let c = Clients::new(Vec::new());
        assert!(c.config("example.com", true).use_monolithic_push);
        assert!(!c.config("example.com", false).use_monolithic_push);
    }

    #[test]
    fn loopback_registries_are_plain_http() {
        for r in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "docker.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[fe80::1]:5000",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }
}
