//! The CRI front end under test: a berthd serving `--cri-socket`, driven by
//! the real `crictl` of cri-tools v1.37.0.

use std::path::PathBuf;
use std::process::{Command, Output};

use super::Agent;
use berth::v1 as pb;
use serde_json::Value;

/// Where `.ci/run` installs crictl (`GOBIN=/usr/local/bin go install
/// sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0`); `BERTH_CRICTL` overrides it.
pub const CRICTL: &str = "/usr/local/bin/crictl";

pub fn crictl_path() -> PathBuf {
    let p = std::env::var_os("BERTH_CRICTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(CRICTL));
    assert!(
        p.is_file(),
        "{} not found: the CRI tests need crictl v1.37.0; install it with \
         `GOBIN=/usr/local/bin go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0` (.ci/run does)",
        p.display()
    );
    p
}

/// A berthd serving CRI on a socket of its own; the socket goes with it.
pub struct Cri {
    /// The berthd.
    pub agent: Agent,
    /// Its CRI socket.
    pub socket: PathBuf,
}

impl Cri {
    /// A berthd serving CRI, with an empty CNI configuration directory of
    /// its own (never the host's /etc/cni/net.d): pods get loopback only.
    pub async fn start() -> Cri {
        Cri::start_full(None).await
    }

    /// A berthd serving CRI in a network namespace of the test's own, its
    /// pod network the CNI conflist `conflist` (plugins from Debian's
    /// containernetworking-plugins in /usr/lib/cni).
    pub async fn start_with_cni(conflist: &str) -> Cri {
        Cri::start_full(Some(conflist)).await
    }

    async fn start_full(conflist: Option<&str>) -> Cri {
        crictl_path();
        let dir = tempfile::Builder::new()
            .prefix("berth-cri-")
            .tempdir()
            .expect("tempdir")
            .keep();
        let socket = dir.join("cri.sock");
        let conf = dir.join("cni-conf");
        std::fs::create_dir_all(&conf).expect("the CNI configuration directory");
        let mut args = vec![
            "--cri-socket".to_string(),
            socket.display().to_string(),
            "--cri-cni-conf-dir".to_string(),
            conf.display().to_string(),
        ];
        let agent = match conflist {
            Some(list) => {
                std::fs::write(conf.join("10-pods.conflist"), list).expect("writing the conflist");
                args.extend(["--cni-bin-dir".to_string(), "/usr/lib/cni".to_string()]);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Agent::start_in_netns(&args).await
            }
            None => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Agent::start_with(&args).await
            }
        };
        assert!(socket.exists(), "no CRI socket; log:\n{}", agent.log());
        Cri { agent, socket }
    }

    /// The directory of this berthd's CRI files (socket, CNI configuration).
    pub fn dir(&self) -> &std::path::Path {
        self.socket.parent().expect("the socket's directory")
    }

    /// Runs crictl against this berthd's CRI socket (runtime and image
    /// endpoints both), with no config file of the host's.
    pub fn crictl(&self, args: &[&str]) -> Output {
        let endpoint = format!("unix://{}", self.socket.display());
        Command::new(crictl_path())
            .args(["--config", "/dev/null"])
            .args(["--runtime-endpoint", &endpoint])
            .args(["--image-endpoint", &endpoint])
            .args(["--timeout", "60s"])
            .args(args)
            .output()
            .expect("running crictl")
    }

    /// crictl that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.crictl(args);
        assert!(
            out.status.success(),
            "crictl {args:?} failed: {}\nberthd log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.agent.log()
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// crictl that must fail; its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.crictl(args);
        assert!(
            !out.status.success(),
            "crictl {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("crictl {args:?}: {e}: {out}"))
    }

    /// berth's own view of its images.
    pub async fn berth_images(&self) -> Vec<pb::Image> {
        self.agent
            .images()
            .list(pb::ListImagesRequest::default())
            .await
            .expect("listing images")
            .into_inner()
            .images
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        if let Some(dir) = self.socket.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
