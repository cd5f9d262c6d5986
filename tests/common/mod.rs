//! Shared harness of the end-to-end tests: starts a real `berthd` on a
//! private socket, state dir and cgroup parent, talks to it through the real
//! API and the real `berthctl`, and cleans up everything it made even when a
//! test fails (containers, monitors, mounts, cgroups, files).

#![allow(dead_code)]

pub mod build;
pub mod cli;
pub mod cri;
pub mod fleet;
pub mod image;
pub mod invariants;
pub mod net;
pub mod probe;
pub mod registry;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use berth::v1 as pb;
use berth::v1::{
    agent_client::AgentClient, containers_client::ContainersClient, events_client::EventsClient,
    images_client::ImagesClient,
};
use tonic::transport::Channel;

/// Where the workspace's binaries are (next to the test executable's deps dir).
pub fn bin(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("BERTH_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let p = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join(name);
    assert!(
        p.exists(),
        "{} not built: run the suite with `cargo test --workspace` so the binaries are built",
        p.display()
    );
    p
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the end-to-end tests need root (namespaces, mounts, cgroups): run them as root"
    );
}

/// Scales timeouts for slow machines (the cgroup v2 VM runs under emulation).
pub fn slow_factor() -> u32 {
    std::env::var("BERTH_TEST_SLOW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// A name no other test (in this or another test process) uses: pid, a
/// per-process counter, and the time (clocks can be coarse, e.g. in the VM).
fn unique(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let n: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    format!("{prefix}-{}-{k}-{:x}", std::process::id(), n & 0xffffffffff)
}

/// A running berthd for one test.
pub struct Agent {
    /// Everything of this agent lives here.
    pub dir: PathBuf,
    /// Its socket.
    pub socket: PathBuf,
    /// Its state dir.
    pub state_dir: PathBuf,
    /// Its cgroup parent (relative).
    pub cgroup_parent: String,
    child: Option<Child>,
    /// Flags given to every start of this berthd, after the harness's own.
    extra_args: Vec<String>,
    /// Environment given to the next start of this berthd only (e.g. a
    /// crash point, see `crash_at`).
    next_env: Vec<(String, String)>,
    /// A channel to it.
    pub channel: Channel,
    /// The network namespace berthd runs in, when the test made one
    /// (`start_in_netns`); deleted after everything else of the agent.
    pub netns: Option<TestNetns>,
}

/// A network namespace a test made (`ip netns add`), deleted when dropped,
/// with whatever links and nftables tables berthd made in it.
pub struct TestNetns {
    /// Its name under /run/netns.
    pub name: String,
}

impl TestNetns {
    /// Makes one, with `lo` up.
    pub fn new() -> TestNetns {
        let name = unique("bt");
        let ok = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("running ip");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ok(&["netns", "add", &name]);
        let ns = TestNetns { name };
        ok(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Runs `f` on a thread of its own that has entered the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(&path).expect("opening the test's netns");
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("entering the test's netns");
                f()
            })
            .join()
            .expect("thread in the test's netns")
        })
    }

    /// Runs a command in the namespace (`ip netns exec`).
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("running ip netns exec")
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

impl Agent {
    /// Starts berthd and waits until it serves.
    pub async fn start() -> Agent {
        Agent::start_with(&[]).await
    }

    /// Starts berthd with extra flags and waits until it serves.
    pub async fn start_with(extra_args: &[&str]) -> Agent {
        Agent::start_in(None, extra_args).await
    }

    /// Starts a second berthd, with its own state, under `other`'s cgroup
    /// parent (a misconfiguration that must not harm `other`).
    pub async fn start_beside(other: &Agent) -> Agent {
        Agent::start_in(Some(other.cgroup_parent.clone()), &[]).await
    }

    /// Starts berthd in a network namespace of its own (made now, deleted
    /// with the agent), so what it makes for networks never touches the
    /// host's.
    pub async fn start_in_netns(extra_args: &[&str]) -> Agent {
        require_root();
        let netns = TestNetns::new();
        Agent::start_full(None, extra_args, Some(netns)).await
    }

    async fn start_in(cgroup_parent: Option<String>, extra_args: &[&str]) -> Agent {
        Agent::start_full(cgroup_parent, extra_args, None).await
    }

    async fn start_full(
        cgroup_parent: Option<String>,
        extra_args: &[&str],
        netns: Option<TestNetns>,
    ) -> Agent {
        require_root();
        let name = unique("berth-test");
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("berthd.sock");
        let state_dir = dir.join("state");
        let mut agent = Agent {
            dir: dir.clone(),
            socket: socket.clone(),
            state_dir,
            cgroup_parent: cgroup_parent.unwrap_or(name),
            child: None,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            next_env: Vec::new(),
            channel: Channel::from_static("http://unused").connect_lazy(),
            netns,
        };
        agent.spawn().await;
        agent
    }

    /// (Re)starts the berthd process on the same state.
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("berthd.log"))
            .unwrap();
        let mut cmd = Command::new(bin("berthd"));
        cmd.arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .arg("--log")
            .arg("berthd=debug,info")
            // Tests use made-up image names; those must never turn into
            // requests to a registry on the internet.
            .arg("--auto-pull=false");
        // berthd's default network is the bridge; an agent in the host's
        // network namespace must not make one there (nor race the other
        // tests' agents for its name and subnet), so it defaults to
        // `none`. Agents in a namespace of their own keep the real default.
        if self.netns.is_none()
            && !self
                .extra_args
                .iter()
                .any(|a| a.starts_with("--default-network"))
        {
            cmd.arg("--default-network=none");
        }
        cmd.args(&self.extra_args)
            .envs(std::mem::take(&mut self.next_env))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // The child inherits the network namespace of the thread that
        // forks it.
        let child = match &self.netns {
            Some(ns) => ns.run(|| cmd.spawn()),
            None => cmd.spawn(),
        }
        .expect("spawning berthd");
        self.child = Some(child);
        let addr = berth::client::Address::Unix(self.socket.clone());
        for _ in 0..(200 * slow_factor()) {
            if self.socket.exists() {
                if let Ok(ch) = berth::client::connect(&addr).await {
                    // Served by the new berthd, not merely connected: a
                    // child the old one was forking when it died holds
                    // its listening socket until that child's exec, so a
                    // connect can land there and be reset a moment later.
                    let info = AgentClient::new(ch.clone())
                        .info(pb::InfoRequest::default())
                        .await;
                    if info.is_ok() {
                        self.channel = ch;
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("berthd did not come up; log:\n{}", self.log());
    }

    /// Restarts berthd (SIGKILL, then a start on the same state) armed to
    /// die at crash point `point` (berthd's `crash` module), as `kill -9`
    /// would at that instant.
    pub async fn restart_crashing_at(&mut self, point: &str) {
        self.stop_agent(nix::sys::signal::Signal::SIGKILL);
        self.next_env = vec![("BERTHD_CRASH_AT".into(), point.into())];
        self.spawn().await;
    }

    /// Adds flags to every later start of this berthd (after the harness's
    /// own and those it was started with).
    pub fn add_args(&mut self, args: &[&str]) {
        self.extra_args.extend(args.iter().map(|a| a.to_string()));
    }

    /// True once the berthd process has ended (reaped).
    pub fn agent_died(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(_))) | None => {
                self.child = None;
                true
            }
            _ => false,
        }
    }

    /// Stops the berthd process (containers keep running).
    pub fn stop_agent(&mut self, signal: nix::sys::signal::Signal) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), signal);
            let _ = c.wait();
        }
    }

    /// For tests of a full disk: stops berthd, puts the state subdirectory
    /// `sub` on a tmpfs of `size` (`mount -o size=`) of its own, with what
    /// it held copied over, and starts berthd again. Returns its path; the
    /// mount goes with the agent's others when it is dropped.
    pub async fn state_on_tmpfs(&mut self, sub: &str, size: &str) -> PathBuf {
        self.stop_agent(nix::sys::signal::Signal::SIGTERM);
        let dir = self.state_dir.join(sub);
        let saved = self.dir.join(format!("{sub}-before-tmpfs"));
        std::fs::rename(&dir, &saved).unwrap();
        std::fs::create_dir(&dir).unwrap();
        nix::mount::mount(
            Some("berth-test-tmpfs"),
            &dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size}").as_str()),
        )
        .unwrap();
        let cp = Command::new("cp")
            .arg("-a")
            .arg(saved.join("."))
            .arg(&dir)
            .status()
            .unwrap();
        assert!(cp.success(), "copying {sub} onto the tmpfs");
        self.spawn().await;
        dir
    }

    /// Stops container `id` (id, prefix or name) with a grace period of
    /// `timeout` seconds.
    pub async fn stop(
        &self,
        id: &str,
        timeout: u32,
    ) -> Result<pb::StopContainerResponse, tonic::Status> {
        self.containers()
            .stop(pb::StopContainerRequest {
                id: id.to_string(),
                timeout_seconds: Some(timeout),
            })
            .await
            .map(|r| r.into_inner())
    }

    /// The process id of berthd.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("berthd is not running").id()
    }

    /// Context switches so far of each of berthd's threads, by thread id:
    /// a thread whose count did not change has not run.
    pub fn thread_switches(&self) -> std::collections::HashMap<u32, u64> {
        let mut out = std::collections::HashMap::new();
        let tasks = format!("/proc/{}/task", self.pid());
        for t in std::fs::read_dir(tasks).unwrap().flatten() {
            let Ok(tid) = t.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            // A thread that just ended has no status any more.
            let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
                continue;
            };
            let n = status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            out.insert(tid, n);
        }
        out
    }

    /// berthd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("berthd.log")).unwrap_or_default()
    }

    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }
    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }
    pub fn events(&self) -> EventsClient<Channel> {
        EventsClient::new(self.channel.clone())
    }
    pub fn agent(&self) -> AgentClient<Channel> {
        AgentClient::new(self.channel.clone())
    }
    pub fn volumes(&self) -> berth::v1::volumes_client::VolumesClient<Channel> {
        berth::v1::volumes_client::VolumesClient::new(self.channel.clone())
    }

    /// Uploads an archive through Images.Import.
    pub async fn import(
        &self,
        archive: Vec<u8>,
        reference: &str,
    ) -> Result<pb::ImportImageResponse, tonic::Status> {
        let msgs = import_messages(archive, reference);
        self.images()
            .import(tokio_stream::iter(msgs))
            .await
            .map(|r| r.into_inner())
    }

    /// Imports the busybox test image as `busybox` (docker.io/library/busybox:latest).
    pub async fn import_busybox(&self) {
        self.import(image::busybox("docker.io/library/busybox:latest"), "")
            .await
            .expect("importing busybox");
    }

    /// Creates and starts a container through the API.
    pub async fn run(&self, spec: pb::ContainerSpec) -> pb::Container {
        self.containers()
            .run(pb::RunContainerRequest { spec: Some(spec) })
            .await
            .expect("run")
            .into_inner()
            .container
            .expect("a container")
    }

    /// Creates a container through the API.
    pub async fn create(&self, spec: pb::ContainerSpec) -> pb::Container {
        self.containers()
            .create(pb::CreateContainerRequest { spec: Some(spec) })
            .await
            .expect("create")
            .into_inner()
            .container
            .expect("a container")
    }

    /// Inspects a container through the API.
    pub async fn inspect(&self, id: &str) -> pb::Container {
        self.containers()
            .inspect(pb::InspectContainerRequest { id: id.to_string() })
            .await
            .expect("inspect")
            .into_inner()
            .container
            .expect("a container")
    }

    /// Waits for a container through the API.
    pub async fn wait(&self, id: &str) -> pb::WaitContainerResponse {
        self.containers()
            .wait(pb::WaitContainerRequest {
                id: id.to_string(),
                ..Default::default()
            })
            .await
            .expect("wait")
            .into_inner()
    }

    /// Runs a container to completion through the API and returns (exit, stdout).
    pub async fn run_to_exit(&self, spec: pb::ContainerSpec) -> (pb::ExitStatus, String, String) {
        let c = self
            .containers()
            .run(pb::RunContainerRequest { spec: Some(spec) })
            .await
            .expect("run")
            .into_inner()
            .container
            .unwrap();
        let w = self
            .containers()
            .wait(pb::WaitContainerRequest {
                id: c.id.clone(),
                ..Default::default()
            })
            .await
            .expect("wait")
            .into_inner();
        let (out, err) = self.logs(&c.id).await;
        (w.exit.unwrap(), out, err)
    }

    /// Removes the container, killing it first if it runs; panics on error.
    pub async fn force_remove(&self, id: &str) {
        self.containers()
            .remove(pb::RemoveContainerRequest {
                id: id.to_string(),
                force: true,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("removing {id}: {e}"));
    }

    /// Polls the container's log until its stdout contains `needle`.
    pub async fn wait_for_output(&self, id: &str, needle: &str) {
        for _ in 0..(500 * slow_factor()) {
            if self.logs(id).await.0.contains(needle) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("container {id} never printed {needle:?}");
    }

    /// All logged output of a container, (stdout, stderr).
    pub async fn logs(&self, id: &str) -> (String, String) {
        use tokio_stream::StreamExt;
        let mut s = self
            .containers()
            .logs(pb::LogsRequest {
                id: id.to_string(),
                ..Default::default()
            })
            .await
            .expect("logs")
            .into_inner();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while let Some(e) = s.next().await {
            let e = e.expect("log entry");
            if e.stream == pb::LogStream::Stderr as i32 {
                err.extend(e.data);
            } else {
                out.extend(e.data);
            }
        }
        (
            String::from_utf8_lossy(&out).into(),
            String::from_utf8_lossy(&err).into(),
        )
    }

    /// Runs berthctl against this agent.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(bin("berthctl"))
            .arg("--host")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running berthctl")
    }

    /// Mount points under this agent's directory.
    pub fn mounts(&self) -> Vec<String> {
        let prefix = self.dir.to_string_lossy().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect()
    }

    /// Container cgroup directories that exist under this agent's parent.
    pub fn cgroups(&self) -> Vec<PathBuf> {
        cgroup_roots()
            .into_iter()
            .map(|r| r.join(&self.cgroup_parent))
            .filter(|p| p.is_dir())
            .flat_map(|p| {
                std::fs::read_dir(p)
                    .map(|rd| {
                        rd.flatten()
                            .map(|e| e.path())
                            .filter(|p| p.is_dir())
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The host cgroup dir of a container for `controller` (v1) or the
    /// unified dir (v2).
    pub fn cgroup_dir(&self, id: &str, controller: &str) -> PathBuf {
        let root = Path::new("/sys/fs/cgroup");
        if root.join("cgroup.controllers").exists() {
            root.join(&self.cgroup_parent).join(id)
        } else {
            root.join(controller).join(&self.cgroup_parent).join(id)
        }
    }

    /// Pids of monitors, exec helpers and containers started by this agent. Spare
    /// monitors, started ahead and not yet given a container, belong to
    /// berthd rather than to a container and are not counted: a monitor
    /// serves a container once it names its directory on its command line
    /// or has made it its working directory.
    pub fn processes(&self) -> Vec<i32> {
        let needle = self.dir.to_string_lossy().to_string();
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
            let serving =
                cmd.split('\0').filter(|a| !a.is_empty()).count() > 2 || cwd.starts_with(&self.dir);
            // Exec helpers (`berth-monitor __exec`) serve a container too.
            let exec_helper = cmd.ends_with("\0__exec\0");
            // A CRI pod's PID holder (`berthd __pod-pause <pod dir>`).
            let pod_holder = cmd.contains("\0__pod-pause\0");
            if cmd.contains(&needle)
                && (cmd.contains("\0__monitor\0") && serving || exec_helper || pod_holder)
            {
                pids.push(pid);
            }
        }
        for cg in self.cgroups() {
            for p in std::fs::read_to_string(cg.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
            {
                if let Ok(p) = p.parse() {
                    pids.push(p);
                }
            }
        }
        pids
    }

    /// Asserts nothing of any container is left: no mount, cgroup or process.
    pub async fn assert_clean(&self) {
        // Teardown after an exit happens just after the exit is reported.
        for _ in 0..(100 * slow_factor()) {
            if self.mounts().is_empty() && self.cgroups().is_empty() && self.processes().is_empty()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "leftovers: mounts {:?}, cgroups {:?}, processes {:?}",
            self.mounts(),
            self.cgroups(),
            self.processes()
        );
    }
}

fn cgroup_roots() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    std::fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- berthd log ({}) ---\n{}",
                self.dir.display(),
                self.log()
            );
        }
        self.stop_agent(nix::sys::signal::Signal::SIGKILL);
        // A paused container left by a failed test is frozen: a frozen
        // process acts on SIGKILL only once thawed, and its cgroup stays.
        for cg in self.cgroups() {
            let _ = std::fs::write(cg.join("freezer.state"), "THAWED");
            let _ = std::fs::write(cg.join("cgroup.freeze"), "0");
        }
        // Kill what berthd started: container processes (through their
        // cgroups) and monitors.
        for _ in 0..3 {
            for pid in self.processes() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut mounts = self.mounts();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        // A killed process leaves its cgroup only once the kernel has torn
        // it down, which on a loaded machine takes longer than the kills
        // above: remove until nothing is left (or a generous bound passes),
        // so a failed test leaves no cgroup behind either.
        let deadline =
            std::time::Instant::now() + Duration::from_secs(10 * u64::from(slow_factor()));
        loop {
            for pid in self.processes() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            for cg in self.cgroups() {
                let _ = std::fs::remove_dir(&cg);
            }
            let mut left = false;
            for r in cgroup_roots() {
                let parent = r.join(&self.cgroup_parent);
                let _ = std::fs::remove_dir(&parent);
                left |= parent.exists();
            }
            if !left || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `cond` every 20 ms for up to `secs` seconds (scaled for slow
/// machines); true as soon as it holds, false if it never did.
pub async fn eventually(secs: u64, mut cond: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..(secs * 50 * u64::from(slow_factor())) {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond().await
}

/// The next event of a subscription (waiting at most a minute, scaled).
pub async fn next_event(s: &mut tonic::Streaming<pb::Event>) -> pb::Event {
    tokio::time::timeout(Duration::from_secs(60 * slow_factor() as u64), s.message())
        .await
        .expect("no event within 60 s")
        .expect("stream error")
        .expect("stream ended")
}

/// The messages of an Import of `archive` tagged `reference`.
pub fn import_messages(archive: Vec<u8>, reference: &str) -> Vec<pb::ImportImageRequest> {
    let mut msgs = vec![pb::ImportImageRequest {
        payload: Some(pb::import_image_request::Payload::Options(
            pb::ImportOptions {
                reference: reference.to_string(),
            },
        )),
    }];
    for c in archive.chunks(256 * 1024) {
        msgs.push(pb::ImportImageRequest {
            payload: Some(pb::import_image_request::Payload::Chunk(c.to_vec())),
        });
    }
    msgs
}

/// A ContainerSpec for the busybox image running `sh -c script`.
pub fn sh(script: &str) -> pb::ContainerSpec {
    pb::ContainerSpec {
        image: "busybox".into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}
