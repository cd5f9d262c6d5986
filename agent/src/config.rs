//! berthd's configuration: command-line flags with embedded defaults, so the
//! agent runs with no config file and no external service.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// berthd: the berth container agent.
#[derive(Debug, Clone, Parser)]
#[command(name = "berthd", version, about)]
pub struct Config {
    /// Unix socket to serve the API on (root-only permissions).
    #[arg(long, env = "BERTHD_SOCKET", default_value = berth::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Directory holding all of berthd's state: images, containers, logs.
    #[arg(long, env = "BERTHD_STATE_DIR", default_value = "/var/lib/berth")]
    pub state_dir: PathBuf,
    /// Parent cgroup (relative to the cgroup root) of all container cgroups.
    #[arg(long, env = "BERTHD_CGROUP_PARENT", default_value = "berth")]
    pub cgroup_parent: String,
    /// Rotate a container's log when it reaches this many bytes (one old
    /// generation is kept).
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub log_max_bytes: u64,
    /// Also serve the API on this TCP address WITHOUT TLS or authentication.
    /// Only for trusted networks and tests; TLS support is planned.
    #[arg(long, value_name = "ADDR")]
    pub insecure_tcp: Option<SocketAddr>,
    /// Registry (HOST[:PORT]) to pull from over plain HTTP, without TLS.
    /// Repeatable. Loopback registries (localhost, 127.0.0.0/8, ::1) always are.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Pull the image of a container being created (Create, Run) when it is
    /// not stored, like `docker run`. Off by default: it makes a typo in an
    /// image name a network request to Docker Hub.
    #[arg(long, env = "BERTHD_AUTO_PULL")]
    pub auto_pull: bool,
    /// Log filter (tracing EnvFilter syntax), e.g. "info" or "berthd=debug".
    #[arg(long, env = "BERTHD_LOG", default_value = "info")]
    pub log: String,
}
