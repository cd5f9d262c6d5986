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
    /// How many events the durable event log keeps for replay (whole
    /// segments of 10,000 are dropped from the front beyond this).
    #[arg(long, default_value_t = 100_000)]
    pub events_retain: u64,
    /// Also serve the API on this TCP address WITHOUT TLS or authentication.
    /// Only for trusted networks and tests; use --listen for anything else.
    #[arg(long, value_name = "ADDR")]
    pub insecure_tcp: Option<SocketAddr>,
    /// Also serve the API on this TCP address with mutual TLS: needs
    /// --tls-cert, --tls-key and --tls-client-ca.
    #[arg(long, env = "BERTHD_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// The agent's TLS certificate chain (PEM), for --listen.
    #[arg(long, env = "BERTHD_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "BERTHD_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM) that client certificates must chain to: only
    /// holders of such a certificate can call the API over --listen.
    #[arg(long, env = "BERTHD_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Registry (HOST[:PORT]) to pull from over plain HTTP, without TLS.
    /// Repeatable. Loopback registries (localhost, 127.0.0.0/8, ::1) always are.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Pull the image of a container being created (Create, Run) when it is
    /// not stored, like `docker run`. `--auto-pull=false` turns it off (a
    /// typo in an image name then never becomes a registry request).
    #[arg(
        long,
        env = "BERTHD_AUTO_PULL",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub auto_pull: bool,
    /// Network namespaces to keep ready for starting containers (creating
    /// one is the slowest step of a start); 0 makes every container create
    /// its own.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub spare_netns: usize,
    /// Container monitors to keep started and waiting, so a container
    /// start does not wait for one to be spawned; 0 spawns one per start.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub spare_monitors: usize,
    /// The bridge of `--network bridge` containers, made at the first start
    /// of one.
    #[arg(long, value_name = "NAME", default_value = crate::network::bridge::DEFAULT_NAME)]
    pub bridge_name: String,
    /// The bridge's IPv4 subnet; its first address is the bridge's. It must
    /// not overlap a route of the host.
    #[arg(long, value_name = "CIDR", default_value = crate::network::bridge::DEFAULT_SUBNET)]
    pub bridge_subnet: String,
    /// The network of containers whose spec names none: `bridge` (berth's
    /// bridge, as Docker's default) or `none` (only `lo`; no bridge, veth
    /// or nftables work at all). A container with `--userns auto` gets
    /// `none` either way (the bridge does not support it yet).
    #[arg(
        long,
        env = "BERTHD_DEFAULT_NETWORK",
        value_enum,
        default_value = "bridge",
        value_name = "MODE"
    )]
    pub default_network: crate::network::DefaultNetwork,
    /// Where the plugins of `cni` networks are looked up, colon-separated
    /// (a conflist names plugins by file name only).
    #[arg(
        long,
        env = "BERTHD_CNI_BIN_DIR",
        value_name = "DIRS",
        default_value = crate::network::cni::DEFAULT_BIN_DIRS
    )]
    pub cni_bin_dir: String,
    /// Accept privileged containers (`berthctl run --privileged`): every
    /// capability, no seccomp, every host device, nothing masked; root on
    /// the host in all but name. Off by default: a request for one is then
    /// refused (FAILED_PRECONDITION). Each one is logged at WARN.
    #[arg(long)]
    pub allow_privileged: bool,
    /// Limit the writable layer of every container created without
    /// `--storage-opt size=` to SIZE (bytes, or with a k, m, g, t or p suffix,
    /// 1024-based; 1m to 1024p): a project quota, as `--storage-opt size=`,
    /// so one container cannot fill the state file system. berthd refuses
    /// to start when that file system does not enforce project quotas.
    /// Containers created before keep what they had.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub default_storage_size: Option<u64>,
    /// Also serve the Kubernetes CRI v1 (`runtime.v1`) on this unix socket
    /// (root-only permissions), for crictl and kubelet. Off by default.
    /// Images, pods and their containers are served; streaming (exec,
    /// attach, port-forward) and a few more calls answer UNIMPLEMENTED
    /// (docs/cri.md).
    #[arg(long, env = "BERTHD_CRI_SOCKET", value_name = "PATH")]
    pub cri_socket: Option<PathBuf>,
    /// Where the CRI's pod network is configured: the first CNI
    /// configuration (.conflist, .conf or .json) in file name order, read
    /// at each pod's start, as kubelet's network plugins expect. Without
    /// one, pods get loopback only and NetworkReady is false.
    #[arg(
        long,
        env = "BERTHD_CRI_CNI_CONF_DIR",
        value_name = "DIR",
        default_value = crate::cri::DEFAULT_CNI_CONF_DIR
    )]
    pub cri_cni_conf_dir: PathBuf,
    /// Where the CRI streaming server listens (the URLs Exec, Attach and
    /// PortForward return): ADDR:PORT, port 0 for one the system picks.
    /// Its only credential is the single-use token in each URL, as
    /// kubelet's: keep it on loopback.
    #[arg(
        long,
        env = "BERTHD_CRI_STREAMING_ADDR",
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:0"
    )]
    pub cri_streaming_addr: std::net::SocketAddr,
    /// Log filter: a level, and per-target levels, comma-separated, e.g.
    /// "info", "berthd=debug,info" or "warn,h2=off".
    #[arg(long, env = "BERTHD_LOG", default_value = "info")]
    pub log: tracing_subscriber::filter::Targets,
}

/// Parses a size: a whole number of bytes, or with a `k`, `m`, `g`, `t` or
/// `p` suffix (1024-based, `kb`/`kib` too, any case), as Docker's sizes.
fn parse_size(s: &str) -> Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(split);
    let shift = match unit {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        _ => return Err("expected a number with an optional k, m, g, t or p suffix".into()),
    };
    let size = num
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or("expected a number with an optional k, m, g, t or p suffix")?;
    use crate::container::layer_quota::{MAX_SIZE, MIN_SIZE};
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        return Err("out of range (1m to 1024p)".into());
    }
    Ok(size)
}

/// The TLS files of `--listen`, all present.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Server certificate chain.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// CA for client certificates.
    pub client_ca: PathBuf,
}

impl Config {
    /// The TLS files for `--listen`. TCP without client authentication would
    /// hand root on this host to anyone who can reach the port, so all three
    /// files are required and a half-configured listener is refused.
    pub fn listen_tls(&self) -> Result<Option<(SocketAddr, TlsFiles)>, String> {
        let Some(addr) = self.listen else {
            if self.tls_cert.is_some() || self.tls_key.is_some() || self.tls_client_ca.is_some() {
                return Err(
                    "--tls-cert, --tls-key and --tls-client-ca only apply with --listen".into(),
                );
            }
            return Ok(None);
        };
        match (&self.tls_cert, &self.tls_key, &self.tls_client_ca) {
            (Some(cert), Some(key), Some(ca)) => Ok(Some((
                addr,
                TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: ca.clone(),
                },
            ))),
            _ => Err(format!(
                "--listen {addr} needs --tls-cert, --tls-key and --tls-client-ca: TCP is served only with mutual TLS (plain TCP needs --insecure-tcp)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str]) -> Config {
        match Config::try_parse_from(std::iter::once("berthd").chain(args.iter().copied())) {
            Ok(c) => c,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    #[test]
    fn default_storage_size_takes_dockers_sizes_in_range() {
        assert_eq!(cfg(&[]).default_storage_size, None);
        let got = |s: &str| cfg(&["--default-storage-size", s]).default_storage_size;
        assert_eq!(got("10G"), Some(10 << 30));
        assert_eq!(got("8m"), Some(8 << 20));
        assert_eq!(got("2097152"), Some(2 << 20));
        assert_eq!(got("1024p"), Some(1 << 60));
        for bad in [
            "0",
            "1k",
            "1025p",
            "8x",
            "",
            "-1m",
            "1.5g",
            "99999999999999999999",
        ] {
            let r = Config::try_parse_from(["berthd", "--default-storage-size", bad]);
            assert!(r.is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn listen_requires_all_tls_files() {
        assert!(matches!(cfg(&[]).listen_tls(), Ok(None)));
        assert!(cfg(&["--listen", "127.0.0.1:7443"]).listen_tls().is_err());
        assert!(cfg(&[
            "--listen",
            "127.0.0.1:7443",
            "--tls-cert",
            "c",
            "--tls-key",
            "k"
        ])
        .listen_tls()
        .is_err());
        assert!(cfg(&["--tls-cert", "c"]).listen_tls().is_err());
        let full = cfg(&[
            "--listen",
            "127.0.0.1:7443",
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
            "--tls-client-ca",
            "ca",
        ]);
        assert!(matches!(full.listen_tls(), Ok(Some(_))));
    }

    #[test]
    fn log_filter_takes_levels_per_target_and_rejects_unknown_levels() {
        use tracing::Level;
        let f = cfg(&["--log", "berthd=debug,warn"]).log;
        assert!(f.would_enable("berthd::server", &Level::DEBUG));
        assert!(!f.would_enable("h2::codec", &Level::INFO));
        assert!(f.would_enable("h2::codec", &Level::WARN));
        let default = cfg(&[]).log;
        assert!(default.would_enable("berthd", &Level::INFO));
        assert!(!default.would_enable("berthd", &Level::DEBUG));
        let bad = Config::try_parse_from(["berthd", "--log", "berthd=loud"]);
        assert!(bad.is_err(), "an unknown level must be a usage error");
    }
}
