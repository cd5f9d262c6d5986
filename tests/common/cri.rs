//! The CRI front end under test: a berthd serving `--cri-socket`, driven by
//! the real `crictl` of cri-tools v1.37.0.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::Agent;
use berth::v1 as pb;
use serde_json::{json, Value};

/// Where `.ci/run` installs crictl (`GOBIN=/usr/local/bin go install
/// sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0`); `BERTH_CRICTL` overrides it.
pub const CRICTL: &str = "/usr/local/bin/crictl";

/// The longest one crictl process of a test may run (`timeout`'s syntax).
pub const CRICTL_LIMIT: &str = "300";

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

    /// The crictl command line against this berthd's CRI socket (runtime
    /// and image endpoints both), with no config file of the host's: for a
    /// crictl the test spawns and ends itself (a port-forward, a client
    /// that goes away).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(crictl_path());
        cmd.args(self.common_args()).args(args);
        cmd
    }

    /// [`Cri::command`] killed after [`CRICTL_LIMIT`] (coreutils'
    /// `timeout`), for a crictl the test waits for: one that never ends (a
    /// stream that hangs) fails its test, which then cleans up, where a
    /// test killed from outside could not.
    pub fn bounded(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=10", CRICTL_LIMIT])
            .arg(crictl_path())
            .args(self.common_args())
            .args(args);
        cmd
    }

    fn common_args(&self) -> Vec<String> {
        let endpoint = format!("unix://{}", self.socket.display());
        [
            "--config",
            "/dev/null",
            "--runtime-endpoint",
            &endpoint,
            "--image-endpoint",
            &endpoint,
            "--timeout",
            "60s",
        ]
        .map(String::from)
        .to_vec()
    }

    /// Runs crictl ([`Cri::bounded`]) to its end.
    pub fn crictl(&self, args: &[&str]) -> Output {
        self.bounded(args).output().expect("running crictl")
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

/// A scratch directory for configs and kubelet's log directory.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> Scratch {
        Scratch(
            tempfile::Builder::new()
                .prefix("berth-cri-pods-")
                .tempdir()
                .expect("tempdir")
                .keep(),
        )
    }

    pub fn write(&self, name: &str, v: &Value) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, v.to_string()).expect("writing a config");
        p.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// kubelet's usual namespace options: network and IPC of the pod, PID of
/// the container's own.
pub fn pod_namespaces() -> Value {
    json!({"network": 0, "pid": 1, "ipc": 0})
}

pub fn pod_config(name: &str, log_dir: &Path) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "attempt": 0},
        "hostname": format!("{name}-host"),
        "log_directory": log_dir.display().to_string(),
        "dns_config": {"servers": ["10.96.0.10"], "searches": ["default.svc.cluster.local"], "options": ["ndots:5"]},
        "labels": {"app": name},
        "annotations": {"note": "made by a test"},
        "linux": {"security_context": {"namespace_options": pod_namespaces()}}
    })
}

pub fn container_config(name: &str, script: &str) -> Value {
    json!({
        "metadata": {"name": name, "attempt": 0},
        "image": {"image": "busybox"},
        "command": ["sh", "-c", script],
        "envs": [{"key": "GREETING", "value": "hello"}],
        "labels": {"role": name},
        "annotations": {"kind": "test"},
        "log_path": format!("{name}/0.log"),
        "linux": {
            "security_context": {"namespace_options": pod_namespaces()},
            "resources": {"oom_score_adj": 700}
        }
    })
}

/// Waits until `check` holds (polling; never a fixed sleep).
pub fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The namespace `kind` of container `id`'s init, read through ExecSync.
pub fn ns(cri: &Cri, id: &str, kind: &str) -> String {
    cri.ok(&["exec", "-s", id, "readlink", &format!("/proc/1/ns/{kind}")])
        .trim()
        .to_string()
}

pub fn state(cri: &Cri, id: &str) -> String {
    cri.json(&["inspect", "-o", "json", id])["status"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// CreateContainer and StartContainer in `pod`; the container's id.
pub fn start_in(cri: &Cri, pod: &str, config: &str, pod_config: &str) -> String {
    let id = cri
        .ok(&["create", pod, config, pod_config])
        .trim()
        .to_string();
    cri.ok(&["start", &id]);
    id
}
