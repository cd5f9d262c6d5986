//! End to end: a container's network mode (issue 19, first slice): `none`
//! (a namespace of its own with only `lo`), `host` (berthd's namespace),
//! `container:<x>` (another running container's), and the modes not built
//! yet refused as such. No traffic leaves loopback. The bridge is in
//! tests/bridge.rs.

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;

use berth::v1 as pb;
use common::{eventually, sh, Agent};
use tonic::Code;

fn net_ns_of(pid: impl std::fmt::Display) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("reading a network namespace")
}

fn with_network(mut spec: pb::ContainerSpec, network: &str) -> pb::ContainerSpec {
    spec.network = network.into();
    spec
}

/// The interface names `ip -o link` printed.
fn links(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
        .collect()
}

/// A local TCP port nobody listens on right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port");
    l.local_addr().expect("its address").port()
}

/// GET / from `127.0.0.1:port`, once something answers there.
async fn http_get(port: u16) -> String {
    let mut page = String::new();
    let answered = eventually(30, async || {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        page.clear();
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_ok() && s.read_to_string(&mut page).is_ok()
    })
    .await;
    assert!(answered, "nothing answered on 127.0.0.1:{port}");
    page
}

/// A busybox httpd serving `page` on `addr`, in the foreground.
fn httpd(page: &str, addr: &str) -> pb::ContainerSpec {
    sh(&format!(
        "mkdir -p /www && echo {page} > /www/index.html && exec httpd -f -p {addr} -h /www"
    ))
}

#[tokio::test]
async fn none_has_only_loopback_in_a_namespace_of_its_own() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    for network in ["", "none"] {
        let (exit, out, err) = agent
            .run_to_exit(with_network(sh("ip -o link"), network))
            .await;
        assert_eq!(exit.exit_code, 0, "{network:?}: {err}");
        assert_eq!(links(&out), ["lo"], "{network:?}: {out}");
    }
    let c = agent.run(with_network(sh("exec sleep 100"), "none")).await;
    assert_ne!(net_ns_of(c.pid), net_ns_of("self"));
    assert_eq!(agent.inspect(&c.id).await.network, "none");
    agent.force_remove(&c.id).await;
}

#[tokio::test]
async fn host_is_berthds_network() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let port = free_port();
    let c = agent
        .run(with_network(
            httpd("from-host-mode", &format!("127.0.0.1:{port}")),
            "host",
        ))
        .await;
    assert_eq!(net_ns_of(c.pid), net_ns_of(agent.pid()));
    // A service in the container is on the host's loopback.
    assert!(http_get(port).await.contains("from-host-mode"));
    let c = agent.inspect(&c.id).await;
    assert_eq!(c.network, "host");
    agent.force_remove(&c.id).await;

    // The host's interfaces (those it had before and after: other tests
    // add and remove some meanwhile), and its name, in a UTS namespace of
    // its own.
    let host_links = || {
        let out = std::process::Command::new("ip")
            .args(["-o", "link"])
            .output()
            .expect("ip -o link on the host (iproute2)");
        links(&String::from_utf8_lossy(&out.stdout))
    };
    let before = host_links();
    let (exit, out, err) = agent
        .run_to_exit(with_network(sh("ip -o link; hostname"), "host"))
        .await;
    assert_eq!(exit.exit_code, 0, "{err}");
    let after = host_links();
    let seen = links(&out);
    let stable: Vec<&String> = before.iter().filter(|l| after.contains(l)).collect();
    // Where the host has only lo (the cgroup v2 VM), that is what is compared;
    // the namespace itself was compared above.
    assert!(!stable.is_empty(), "the host has no interface? {before:?}");
    for l in stable {
        assert!(seen.contains(l), "the container did not see {l}: {out}");
    }
    let host_name = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(out.lines().last(), Some(host_name.as_str()), "{out}");
    let (exit, out, _) = agent
        .run_to_exit(pb::ContainerSpec {
            hostname: "own-name".into(),
            ..with_network(sh("hostname"), "host")
        })
        .await;
    assert_eq!((exit.exit_code, out.trim()), (0, "own-name"));
    assert_eq!(
        nix::unistd::gethostname().unwrap().into_string().unwrap(),
        host_name,
        "a host-network container renamed the host"
    );
}

#[tokio::test]
async fn a_container_joins_a_running_containers_network() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let web = agent
        .run(pb::ContainerSpec {
            name: "web".into(),
            hostname: "webhost".into(),
            ..with_network(httpd("from-the-sidecar", "127.0.0.1:8080"), "none")
        })
        .await;
    let side = agent
        .run(with_network(
            sh("until wget -q -O - http://127.0.0.1:8080/; do sleep 0.1; done; hostname; exec sleep 100"),
            "container:web",
        ))
        .await;
    assert_eq!(net_ns_of(side.pid), net_ns_of(web.pid));
    agent.wait_for_output(&side.id, "from-the-sidecar").await;
    agent.wait_for_output(&side.id, "webhost").await;
    let side = agent.inspect(&side.id).await;
    assert_eq!(side.network, format!("container:{}", web.id));
    assert_eq!(side.spec.unwrap().network, "container:web");

    // By id prefix too; and it stays in the namespace when web stops.
    let prefix = &web.id[..12];
    let other = agent
        .run(with_network(
            sh("exec sleep 100"),
            &format!("container:{prefix}"),
        ))
        .await;
    assert_eq!(net_ns_of(other.pid), net_ns_of(web.pid));
    agent.force_remove(&web.id).await;
    let still = agent.inspect(&other.id).await;
    assert_eq!(still.state, pb::ContainerState::Running as i32);
    assert_eq!(net_ns_of(still.pid), net_ns_of(side.pid));
    for id in [&side.id, &other.id] {
        agent.force_remove(id).await;
    }
}

#[tokio::test]
async fn joining_needs_the_other_container_running() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let peer = agent
        .create(pb::ContainerSpec {
            name: "peer".into(),
            ..sh("exec sleep 100")
        })
        .await;
    let joiner = agent
        .create(with_network(sh("exec sleep 100"), "container:peer"))
        .await;
    let e = agent
        .containers()
        .start(pb::StartContainerRequest {
            id: joiner.id.clone(),
        })
        .await
        .expect_err("started beside a container that is not running");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("peer") && e.message().contains("not running"),
        "{e:?}"
    );
    let after = agent.inspect(&joiner.id).await;
    assert_eq!(after.state, pb::ContainerState::Created as i32);
    assert_eq!(after.start_count, 0);
    // Once it runs, the same container starts.
    agent
        .containers()
        .start(pb::StartContainerRequest {
            id: peer.id.clone(),
        })
        .await
        .expect("starting peer");
    agent
        .containers()
        .start(pb::StartContainerRequest {
            id: joiner.id.clone(),
        })
        .await
        .expect("starting beside a running container");
    let (joiner, peer) = (
        agent.inspect(&joiner.id).await,
        agent.inspect(&peer.id).await,
    );
    assert_eq!(net_ns_of(joiner.pid), net_ns_of(peer.pid));
    agent.force_remove(&joiner.id).await;
    agent.force_remove(&peer.id).await;
}

#[tokio::test]
async fn bad_and_unbuilt_networks_are_refused_and_make_nothing() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let create = async |spec: pb::ContainerSpec| {
        agent
            .containers()
            .create(pb::CreateContainerRequest { spec: Some(spec) })
            .await
            .expect_err("created")
    };
    for (network, code, text) in [
        // A user-defined network's name (tests/networks.rs): none here.
        ("mynet", Code::NotFound, "no such network: mynet"),
        ("container:nobody", Code::NotFound, "no such container"),
        ("container:", Code::InvalidArgument, "names no container"),
        ("a b", Code::InvalidArgument, "is none of"),
    ] {
        let e = create(with_network(sh("true"), network)).await;
        assert_eq!(e.code(), code, "{network}: {e:?}");
        assert!(e.message().contains(text), "{network}: {e:?}");
    }
    let e = create(with_network(sh("true"), &"x".repeat(100_000))).await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().len() < 1000);
    let peer = agent
        .create(pb::ContainerSpec {
            name: "p".into(),
            ..sh("true")
        })
        .await;
    let e = create(pb::ContainerSpec {
        hostname: "mine".into(),
        ..with_network(sh("true"), "container:p")
    })
    .await;
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let listed = agent
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 1, "only the peer: {listed:?}");
    agent.force_remove(&peer.id).await;
}

#[tokio::test]
async fn berthctl_run_network() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let out = agent.ctl(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(links(&String::from_utf8_lossy(&out.stdout)), ["lo"]);
    // Published ports need the bridge (tests/bridge.rs, which runs it in a
    // network namespace of its own): refused before anything is made.
    let out = agent.ctl(&["run", "--rm", "-p", "8080:80", "busybox", "true"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("published ports need network"),
        "{out:?}"
    );
}

/// The mode is part of the record: after kill -9 and a restart of berthd,
/// a stopped joiner starts again in the namespace of the adopted peer.
#[tokio::test]
async fn the_network_survives_a_restart_of_berthd() {
    let mut agent = Agent::start().await;
    agent.import_busybox().await;
    let peer = agent
        .run(pb::ContainerSpec {
            name: "peer".into(),
            ..sh("exec sleep 100")
        })
        .await;
    let joiner = agent
        .create(with_network(sh("exec sleep 100"), "container:peer"))
        .await;
    let host = agent
        .create(with_network(sh("exec sleep 100"), "host"))
        .await;
    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    agent.spawn().await;
    for id in [&joiner.id, &host.id] {
        agent
            .containers()
            .start(pb::StartContainerRequest { id: id.clone() })
            .await
            .expect("starting after a restart of berthd");
    }
    let joiner = agent.inspect(&joiner.id).await;
    assert_eq!(joiner.network, format!("container:{}", peer.id));
    assert_eq!(net_ns_of(joiner.pid), net_ns_of(peer.pid));
    let host = agent.inspect(&host.id).await;
    assert_eq!(host.network, "host");
    assert_eq!(net_ns_of(host.pid), net_ns_of(agent.pid()));
    for id in [&joiner.id, &host.id, &peer.id] {
        agent.force_remove(id).await;
    }
}

/// Every container gets an /etc/resolv.conf from the host's: as it is in
/// the host's network; otherwise without the host's loopback resolvers
/// (unreachable from another namespace), with its other lines. Nothing is
/// resolved: no traffic leaves the machine.
#[tokio::test]
async fn resolv_conf_is_derived_from_the_hosts() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let (exit, out, err) = agent
        .run_to_exit(with_network(sh("cat /etc/resolv.conf"), "host"))
        .await;
    assert_eq!(exit.exit_code, 0, "{err}");
    assert_eq!(out, host);

    let (exit, out, err) = agent
        .run_to_exit(with_network(sh("cat /etc/resolv.conf"), "none"))
        .await;
    assert_eq!(exit.exit_code, 0, "{err}");
    let servers: Vec<std::net::IpAddr> = out
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .map(|a| a.trim().parse().expect("a nameserver address"))
        .collect();
    assert!(!servers.is_empty(), "no nameserver: {out}");
    assert!(servers.iter().all(|a| !a.is_loopback()), "{out}");
    let is_stub = |l: &str| l.trim() == "nameserver 127.0.0.53";
    let stub_only = host.lines().any(is_stub)
        && host
            .lines()
            .filter(|l| l.starts_with("nameserver"))
            .all(is_stub);
    if !stub_only {
        // What the host has besides loopback resolvers, in order.
        let kept: Vec<&str> = host
            .lines()
            .filter(|l| {
                l.strip_prefix("nameserver")
                    .and_then(|a| a.trim().parse::<std::net::IpAddr>().ok())
                    .is_none_or(|a| !a.is_loopback())
            })
            .collect();
        assert_eq!(out.lines().take(kept.len()).collect::<Vec<_>>(), kept);
    }
}
