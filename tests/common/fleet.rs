//! Fleets for the multi-host tests: berthd agents, each in its own network
//! namespace with its own address on a bridge the test creates, serving the
//! API with mutual TLS, and a berthctl set up with an inventory of them.
//!
//! Everything is torn down on drop, failed test or not: agents and their
//! containers (through [`Agent`]'s own drop), then namespaces, veths and the
//! bridge.
//!
//! Agents are started with `nsenter --net=/run/netns/NS`, which joins only
//! the network namespace. `ip netns exec` would also give berthd a private
//! mount namespace with a fresh /sys, and so no /sys/fs/cgroup: berthd could
//! not create container cgroups there.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{bin, slow_factor, Agent};

/// The TCP port every agent listens on, inside its own namespace.
pub const PORT: u16 = 7443;

static NEXT_NET: AtomicU32 = AtomicU32::new(0);

/// Runs `ip ARGS`, panicking with its stderr if it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running ip {args:?}: {e} (is iproute2 installed?)"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bridge, with one network namespace per host attached by a veth pair,
/// all in a private /24 used nowhere else. Removed on drop.
pub struct Net {
    /// Bridge interface name (on the host side).
    pub bridge: String,
    /// First three octets of the /24.
    pub prefix: String,
    /// Namespace names, in host order.
    pub namespaces: Vec<String>,
    tag: String,
}

impl Net {
    /// Creates the bridge (the test process reaches the hosts through its
    /// address .1) and `n` namespaces at .11, .12, ...
    pub fn new(n: usize) -> Net {
        let k = NEXT_NET.fetch_add(1, Ordering::SeqCst);
        // Interface names are at most 15 bytes: keep the tag short but
        // unique across concurrent test processes and tests.
        let tag = format!("{:x}{k:x}", std::process::id() % 0xfffff);
        // A /24 no interface of the host has: one left by a test process
        // killed before its drop would take this one's traffic.
        let start = (std::process::id() * 7 + k * 13) % 250;
        let subnet = (0..250)
            .map(|i| (start + i) % 250 + 1)
            .find(|s| !subnet_in_use(&format!("10.231.{s}.0/24")))
            .expect("a free 10.231.x.0/24");
        let mut net = Net {
            bridge: format!("bfb{tag}"),
            prefix: format!("10.231.{subnet}"),
            namespaces: Vec::new(),
            tag,
        };
        ip(&["link", "add", &net.bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}.1/24", net.prefix),
            "dev",
            &net.bridge,
        ]);
        ip(&["link", "set", &net.bridge, "up"]);
        for i in 0..n {
            let ns = format!("berthfleet-{}-{i}", net.tag);
            ip(&["netns", "add", &ns]);
            net.namespaces.push(ns.clone());
            let host_if = format!("bfh{}x{i}", net.tag);
            let ns_if = format!("bfn{}x{i}", net.tag);
            ip(&[
                "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
            ]);
            ip(&["link", "set", &host_if, "master", &net.bridge, "up"]);
            ip(&["link", "set", &ns_if, "netns", &ns]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.ip(i)),
                "dev",
                &ns_if,
            ]);
            ip(&["-n", &ns, "link", "set", &ns_if, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, 11 + i)
    }

    /// Takes host `i`'s link down or up: its agent stays up but cannot be
    /// reached, like a network partition.
    pub fn set_link(&self, i: usize, up: bool) {
        let ns_if = format!("bfn{}x{i}", self.tag);
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.namespaces[i], "link", "set", &ns_if, state]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and so the pair.
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

/// Whether an interface of the host (up or not) has an address in `cidr`.
fn subnet_in_use(cidr: &str) -> bool {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "to", cidr])
        .output()
        .expect("running ip addr");
    !out.stdout.is_empty()
}

/// A CA, server certificates for each host and a client certificate, made
/// with `berthctl certs`, plus a second CA's client certificate that the
/// agents must refuse.
pub struct Certs {
    /// Directory of the fleet CA and its certificates.
    pub dir: PathBuf,
    /// Directory of an unrelated CA and its client certificate "rogue".
    pub rogue_dir: PathBuf,
}

/// Runs berthctl with `args` and no BERTH_* environment from the caller.
pub fn berthctl(envs: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut cmd = Command::new(bin("berthctl"));
    for (k, _) in std::env::vars() {
        if k.starts_with("BERTH_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running berthctl")
}

fn must(out: Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    /// Makes the CAs and certificates under `dir`.
    pub fn new(dir: &Path, ips: &[String]) -> Certs {
        let certs = Certs {
            dir: dir.join("certs"),
            rogue_dir: dir.join("rogue"),
        };
        let d = certs.dir.to_string_lossy().to_string();
        must(berthctl(&[], &["certs", "init", "--dir", &d]), "certs init");
        for (i, addr) in ips.iter().enumerate() {
            let name = format!("n{}", i + 1);
            must(
                berthctl(
                    &[],
                    &[
                        "certs", "issue", "server", &name, "--san", addr, "--dir", &d,
                    ],
                ),
                "certs issue server",
            );
        }
        must(
            berthctl(&[], &["certs", "issue", "client", "ops", "--dir", &d]),
            "certs issue client",
        );
        let r = certs.rogue_dir.to_string_lossy().to_string();
        must(berthctl(&[], &["certs", "init", "--dir", &r]), "rogue init");
        must(
            berthctl(&[], &["certs", "issue", "client", "rogue", "--dir", &r]),
            "rogue issue",
        );
        certs
    }
}

/// An [`Agent`] not started yet: its drop cleans up like any other.
fn new_agent() -> Agent {
    super::require_root();
    let name = super::unique("berth-fleet");
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).expect("agent dir");
    Agent {
        socket: dir.join("berthd.sock"),
        state_dir: dir.join("state"),
        dir,
        cgroup_parent: name,
        child: None,
        extra_args: Vec::new(),
        next_env: Vec::new(),
        channel: tonic::transport::Channel::from_static("http://unused").connect_lazy(),
        netns: None,
    }
}

/// One agent of a fleet.
pub struct Member {
    /// The agent (its drop kills it and cleans up its containers).
    pub agent: Agent,
    /// Its namespace (None: an agent on loopback, for the benchmark).
    pub ns: Option<String>,
    /// Its address.
    pub ip: String,
    /// Its name in the inventory (n1, n2, ...).
    pub name: String,
    args: Vec<String>,
}

impl Member {
    /// An agent named `name` (its server certificate's name) that will
    /// listen with mutual TLS on `listen`.
    pub fn new(certs: &Certs, name: &str, listen: &str, ns: Option<String>) -> Member {
        let agent = new_agent();
        let path = |f: String| certs.dir.join(f).to_string_lossy().to_string();
        let args: Vec<String> = vec![
            "--socket".into(),
            agent.socket.to_string_lossy().into(),
            "--state-dir".into(),
            agent.state_dir.to_string_lossy().into(),
            "--cgroup-parent".into(),
            agent.cgroup_parent.clone(),
            "--log".into(),
            "berthd=debug,info".into(),
            "--auto-pull=false".into(),
            // Fleet tests are not about container networks: no bridge.
            "--default-network=none".into(),
            "--listen".into(),
            listen.to_string(),
            "--tls-cert".into(),
            path(format!("{name}.pem")),
            "--tls-key".into(),
            path(format!("{name}-key.pem")),
            "--tls-client-ca".into(),
            path("ca.pem".into()),
        ];
        Member {
            agent,
            ns,
            ip: listen
                .rsplit_once(':')
                .map_or(listen, |(h, _)| h)
                .to_string(),
            name: name.to_string(),
            args,
        }
    }

    /// (Re)starts berthd in the namespace, then waits for its socket and for
    /// its TLS port.
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.agent.dir.join("berthd.log"))
            .expect("log file");
        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(bin("berthd"));
                c
            }
            None => Command::new(bin("berthd")),
        };
        let child = cmd
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawning berthd under nsenter");
        self.agent.child = Some(child);
        let addr = berth::client::Address::Unix(self.agent.socket.clone());
        for _ in 0..(200 * slow_factor()) {
            let tls_up = std::fs::read_to_string(self.agent.dir.join("berthd.log"))
                .map(|l| l.matches("serving on TCP with mutual TLS").count())
                .unwrap_or(0);
            if self.agent.socket.exists() && tls_up > 0 {
                if let Ok(ch) = berth::client::connect(&addr).await {
                    self.agent.channel = ch;
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("berthd did not come up; log:\n{}", self.agent.log());
    }
}

/// A fleet: agents first, so they are dropped (killed, cleaned) before the
/// network goes.
pub struct Fleet {
    /// The agents, n1..nN.
    pub members: Vec<Member>,
    /// Their network (None for agents on loopback).
    pub net: Option<Net>,
    /// The certificates.
    pub certs: Certs,
    /// The inventory berthctl uses.
    pub inventory: PathBuf,
    /// Where the test's files live.
    pub dir: tempfile::TempDir,
}

impl Fleet {
    /// Starts `n` agents serving mutual TLS, each in its own namespace, and
    /// writes an inventory naming them n1..nN (group "all", label
    /// parity=odd|even).
    pub async fn start(n: usize) -> Fleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let net = Net::new(n);
        let ips: Vec<String> = (0..n).map(|i| net.ip(i)).collect();
        let certs = Certs::new(dir.path(), &ips);
        let mut members = Vec::new();
        let mut inv = String::new();
        inv.push_str(&format!(
            "[defaults]\ntls_ca = \"{0}/ca.pem\"\ntls_cert = \"{0}/ops.pem\"\ntls_key = \"{0}/ops-key.pem\"\n\n",
            certs.dir.display()
        ));
        for (i, ip) in ips.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let mut m = Member::new(
                &certs,
                &name,
                &format!("{ip}:{PORT}"),
                Some(net.namespaces[i].clone()),
            );
            m.spawn().await;
            let parity = if i % 2 == 0 { "odd" } else { "even" };
            inv.push_str(&format!(
                "[hosts.{name}]\naddress = \"{ip}:{PORT}\"\ngroups = [\"all\"]\nlabels = {{ parity = \"{parity}\" }}\n\n"
            ));
            members.push(m);
        }
        let inventory = dir.path().join("hosts.toml");
        std::fs::write(&inventory, inv).expect("writing the inventory");
        Fleet {
            members,
            net: Some(net),
            certs,
            inventory,
            dir,
        }
    }

    /// `n` agents with mutual TLS on loopback ports, no namespaces: for
    /// the benchmark, where 50 namespaces would measure nothing more.
    pub async fn start_local(n: usize) -> Fleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = Certs::new(dir.path(), &vec!["127.0.0.1".to_string(); n]);
        let mut inv = format!(
            "[defaults]\ntls_ca = \"{0}/ca.pem\"\ntls_cert = \"{0}/ops.pem\"\ntls_key = \"{0}/ops-key.pem\"\n\n",
            certs.dir.display()
        );
        let mut members = Vec::new();
        for i in 0..n {
            let name = format!("n{}", i + 1);
            // A free port: bind, note it, release it for berthd.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let listen = format!("127.0.0.1:{port}");
            let mut m = Member::new(&certs, &name, &listen, None);
            m.spawn().await;
            inv.push_str(&format!("[hosts.{name}]\naddress = \"{listen}\"\n\n"));
            members.push(m);
        }
        let inventory = dir.path().join("hosts.toml");
        std::fs::write(&inventory, inv).expect("writing the inventory");
        Fleet {
            members,
            net: None,
            certs,
            inventory,
            dir,
        }
    }

    /// Runs berthctl with this fleet's inventory.
    pub fn ctl(&self, args: &[&str]) -> Output {
        berthctl(&[("BERTH_INVENTORY", &self.inventory)], args)
    }

    /// A berthctl command with this fleet's inventory, to spawn.
    pub fn ctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("berthctl"));
        for (k, _) in std::env::vars() {
            if k.starts_with("BERTH_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("BERTH_INVENTORY", &self.inventory).args(args);
        cmd
    }
}
