//! A real OCI registry for the pull tests: Debian's `docker-registry` (the
//! CNCF distribution server) on a random loopback port with its own storage,
//! images pushed with Debian's `skopeo`, and a loopback TCP proxy that can
//! hold a blob transfer mid-way. Everything is killed and deleted on drop,
//! even when the test fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::image::{sha256_hex, tar_bytes, Entry};

/// Fails loudly when a tool the pull tests need is missing.
pub fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} not found: install Debian's {package} (apt-get install {package}; .ci/run does)"
    );
}

/// A free loopback port (the registry binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A running docker-registry.
pub struct Registry {
    /// Temp dir: config, storage, htpasswd, log.
    pub dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Basic-auth credentials it requires, if any.
    pub creds: Option<(String, String)>,
    child: Option<Child>,
}

impl Registry {
    /// Starts an open registry.
    pub fn start() -> Registry {
        Self::start_inner(None)
    }

    /// Starts a registry that requires basic auth (htpasswd, bcrypt).
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Self::start_inner(Some((user.to_string(), password.to_string())))
    }

    fn start_inner(creds: Option<(String, String)>) -> Registry {
        require("docker-registry", "docker-registry");
        require("skopeo", "skopeo");
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .expect("tempdir")
            .keep();
        let port = free_port();
        let mut auth = String::new();
        if let Some((u, p)) = &creds {
            require("htpasswd", "apache2-utils");
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .expect("running htpasswd");
            assert!(out.status.success(), "htpasswd failed");
            std::fs::write(dir.join("htpasswd"), &out.stdout).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                dir.join("htpasswd").display()
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{{port}}\n{auth}",
            dir.join("storage").display()
        );
        let mut r = Registry {
            dir,
            port,
            creds,
            child: None,
        };
        // The port was free when chosen; a parallel test may take it first.
        for _ in 0..20 {
            std::fs::write(
                r.dir.join("config.yml"),
                config.replace("{port}", &r.port.to_string()),
            )
            .unwrap();
            if r.try_spawn() {
                return r;
            }
            r.port = free_port();
        }
        panic!("docker-registry did not come up:\n{}", r.log());
    }

    /// Starts (again) the registry process on the same port and storage.
    pub fn spawn(&mut self) {
        assert!(
            self.try_spawn(),
            "docker-registry did not come up:\n{}",
            self.log()
        );
    }

    /// Starts the registry; false if it exited (its port was taken).
    fn try_spawn(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("registry.log"))
            .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawning docker-registry");
        let mut child = child;
        // Ready when it logs that it listens on our port (counting lines
        // from earlier runs); gone if it exited, e.g. the port was taken.
        let ready = format!("listening on 127.0.0.1:{}", self.port);
        let before = self.log().matches(&ready).count();
        for _ in 0..800 {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if self.log().matches(&ready).count() > before {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Kills the registry process (storage stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's log (access log included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// How many GET requests for blob `digest` the registry has logged.
    pub fn blob_gets(&self, digest: &str) -> usize {
        let needle = format!("/blobs/{digest}");
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET ") && l.contains(&needle))
            .count()
    }

    /// Where the registry stores blob `digest`.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Pushes tag `tag` of the OCI layout at `layout` to `repo:dest_tag`
    /// with skopeo (all platforms of an index), plus any extra skopeo flags.
    pub fn push(&self, layout: &Path, tag: &str, dest: &str, extra: &[&str]) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--all", "--dest-tls-verify=false"]);
        if let Some((u, p)) = &self.creds {
            cmd.arg(format!("--dest-creds={u}:{p}"));
        }
        if extra.is_empty() {
            // Keep blobs byte for byte (skopeo would otherwise gzip the
            // uncompressed layers), so the tests know every digest.
            cmd.arg("--preserve-digests");
        }
        cmd.args(extra)
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{dest}", self.addr()));
        let out = cmd.output().expect("running skopeo");
        assert!(
            out.status.success(),
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A layer to build: entries, and whether to gzip it.
pub struct TestLayer {
    /// Tar entries.
    pub entries: Vec<Entry>,
    /// gzip (else uncompressed).
    pub gzip: bool,
}

/// An OCI image layout directory being built (deleted on drop).
pub struct Layout {
    /// Its directory.
    pub dir: PathBuf,
    refs: Vec<Value>,
}

impl Layout {
    /// An empty layout in a new temp dir.
    pub fn new() -> Layout {
        let dir = tempfile::Builder::new()
            .prefix("berth-layout-")
            .tempdir()
            .expect("tempdir")
            .keep();
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir,
            refs: Vec::new(),
        }
    }

    /// Stores a blob; returns its digest.
    pub fn blob(&self, data: &[u8]) -> String {
        let hex = sha256_hex(data);
        std::fs::write(self.dir.join("blobs/sha256").join(&hex), data).unwrap();
        format!("sha256:{hex}")
    }

    /// Adds an image for `arch`; returns (manifest descriptor with platform,
    /// layer blob digests).
    pub fn image(&self, arch: &str, cmd: &[&str], layers: Vec<TestLayer>) -> (Value, Vec<String>) {
        let mut diff_ids = Vec::new();
        let mut descs = Vec::new();
        let mut digests = Vec::new();
        for l in layers {
            let raw = tar_bytes(&l.entries);
            diff_ids.push(format!("sha256:{}", sha256_hex(&raw)));
            let (blob, mt) = if l.gzip {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&raw).unwrap();
                (
                    e.finish().unwrap(),
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                )
            } else {
                (raw, "application/vnd.oci.image.layer.v1.tar")
            };
            let d = self.blob(&blob);
            descs.push(json!({"mediaType": mt, "digest": d, "size": blob.len()}));
            digests.push(d);
        }
        let config = serde_json::to_vec(&json!({
            "architecture": arch,
            "os": "linux",
            "created": "2026-01-01T00:00:00Z",
            "config": {"Cmd": cmd, "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let cd = self.blob(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": descs,
        }))
        .unwrap();
        let md = self.blob(&manifest);
        (
            json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": md,
                "size": manifest.len(),
                "platform": {"os": "linux", "architecture": arch},
            }),
            digests,
        )
    }

    /// Adds a copy of the image `desc` (from [`image`](Self::image)) whose
    /// config claims other `diff_ids` for the same layer blobs; returns its
    /// manifest descriptor. For images whose config lies.
    pub fn with_diff_ids(&self, desc: &Value, diff_ids: &[String]) -> Value {
        let read = |d: &Value| {
            let hex = d["digest"].as_str().unwrap().trim_start_matches("sha256:");
            let data = std::fs::read(self.dir.join("blobs/sha256").join(hex)).unwrap();
            serde_json::from_slice::<Value>(&data).unwrap()
        };
        let mut manifest = read(desc);
        let mut config = read(&manifest["config"]);
        config["rootfs"]["diff_ids"] = json!(diff_ids);
        let config = serde_json::to_vec(&config).unwrap();
        manifest["config"]["digest"] = json!(self.blob(&config));
        manifest["config"]["size"] = json!(config.len());
        let manifest = serde_json::to_vec(&manifest).unwrap();
        let mut out = desc.clone();
        out["digest"] = json!(self.blob(&manifest));
        out["size"] = json!(manifest.len());
        out
    }

    /// Adds an image index of `manifests`; returns its descriptor.
    pub fn index(&self, manifests: Vec<Value>) -> Value {
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
        .unwrap();
        let d = self.blob(&index);
        json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": index.len()})
    }

    /// Names `desc` `tag` in index.json.
    pub fn tag(&mut self, tag: &str, mut desc: Value) {
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        if let Some(o) = desc.as_object_mut() {
            o.remove("platform");
        }
        self.refs.push(desc);
        let index =
            serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": self.refs})).unwrap();
        std::fs::write(self.dir.join("index.json"), index).unwrap();
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `n` bytes that do not compress (xorshift), for large layers.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// The GOARCH name of this machine.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A loopback TCP proxy in front of a registry. It holds the first
/// response to a request for one blob after `hold_after` bytes, until the
/// test releases it (the transfer continues) or cuts it (the connection
/// closes mid-blob, as when the registry dies).
pub struct Proxy {
    /// The proxy's port on 127.0.0.1.
    pub port: u16,
    /// Set once a transfer is being held.
    pub holding: Arc<AtomicBool>,
    /// 0 hold, 1 release, 2 cut.
    verdict: tokio::sync::watch::Sender<u8>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Proxies 127.0.0.1:`upstream`; holds the transfer of `digest`.
    pub async fn start(upstream: u16, digest: &str, hold_after: u64) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let holding = Arc::new(AtomicBool::new(false));
        let armed = Arc::new(AtomicBool::new(true));
        let (verdict, verdict_rx) = tokio::sync::watch::channel(0u8);
        let needle = format!("/blobs/{digest}").into_bytes();
        let h = holding.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Ok(up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue; // registry down: the client sees the connection close
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut ur, mut uw) = up.into_split();
                // Set when a request on this connection asks for the held blob.
                let hold_here = Arc::new(AtomicU64::new(0));
                let hh = hold_here.clone();
                let (armed, needle) = (armed.clone(), needle.clone());
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if buf[..n]
                            .windows(needle.len())
                            .any(|w| w == needle.as_slice())
                            && armed.swap(false, Ordering::SeqCst)
                        {
                            hh.store(1, Ordering::SeqCst);
                        }
                        if uw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = uw.shutdown().await;
                });
                let (h, mut verdict_rx) = (h.clone(), verdict_rx.clone());
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut sent_held = 0u64;
                    loop {
                        let n = match ur.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let mut chunk = &buf[..n];
                        if hold_here.load(Ordering::SeqCst) == 1 {
                            let room = hold_after.saturating_sub(sent_held) as usize;
                            if room < chunk.len() {
                                if cw.write_all(&chunk[..room]).await.is_err() {
                                    break;
                                }
                                h.store(true, Ordering::SeqCst);
                                let v = match verdict_rx.wait_for(|v| *v != 0).await {
                                    Ok(v) => *v,
                                    Err(_) => 2,
                                };
                                if v == 2 {
                                    // Cut: drop both sides mid-blob.
                                    return;
                                }
                                hold_here.store(2, Ordering::SeqCst);
                                chunk = &chunk[room..];
                            } else {
                                sent_held += chunk.len() as u64;
                            }
                        }
                        if cw.write_all(chunk).await.is_err() {
                            break;
                        }
                    }
                    let _ = cw.shutdown().await;
                });
            }
        });
        Proxy {
            port,
            holding,
            verdict,
            task,
        }
    }

    /// Lets the held transfer continue.
    pub fn release(&self) {
        let _ = self.verdict.send(1);
    }

    /// Breaks the held transfer off (the client sees the connection close).
    pub fn cut(&self) {
        let _ = self.verdict.send(2);
    }

    /// Waits until a transfer is being held.
    pub async fn wait_holding(&self) {
        while !self.holding.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
