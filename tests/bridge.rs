//! End to end: `--network bridge` (issue 19): berth's bridge, a veth and an
//! address per container, published ports through nftables DNAT, `--dns`
//! and `--add-host`, and nothing left behind after `rm` or a restart of
//! berthd.
//!
//! Every test runs berthd in a network namespace of its own, made by the
//! test (`ip netns add`, `lo` up) and deleted with the agent, with a bridge
//! name and subnet of its own: the bridge, the veths and berth's nftables
//! table live and die in that namespace, and the host's networking is
//! never touched. "The host" below is that namespace.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use berth::v1 as pb;
use common::{eventually, sh, Agent, TestNetns};
use tonic::Code;

/// A bridge name and a /24 no other test of this process uses.
fn bridge_args() -> (String, String) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let k = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("bt{:x}x{k}", std::process::id() & 0xffff);
    let subnet = format!("10.{}.{}.0/24", 180 + (std::process::id() % 50), k % 250);
    (name, subnet)
}

/// An agent in a network namespace of its own, with its own bridge.
async fn bridge_agent() -> (Agent, String, String) {
    let (name, subnet) = bridge_args();
    let agent = Agent::start_in_netns(&["--bridge-name", &name, "--bridge-subnet", &subnet]).await;
    agent.import_busybox().await;
    (agent, name, subnet)
}

fn ns(agent: &Agent) -> &TestNetns {
    agent.netns.as_ref().expect("the agent's network namespace")
}

fn on_bridge(mut spec: pb::ContainerSpec) -> pb::ContainerSpec {
    spec.network = "bridge".into();
    spec
}

/// A busybox httpd serving `page` on port 80, in the foreground.
fn httpd(page: &str) -> pb::ContainerSpec {
    on_bridge(sh(&format!(
        "mkdir -p /www && echo {page} > /www/index.html && exec httpd -f -p 80 -h /www"
    )))
}

fn publish(host_ip: &str, host_port: u32, container_port: u32) -> pb::PortMapping {
    pb::PortMapping {
        host_ip: host_ip.into(),
        host_port,
        container_port,
        protocol: "tcp".into(),
    }
}

/// GET `url` with busybox wget from the agent's namespace, once it answers.
async fn fetch_from_host(ns: &TestNetns, url: &str) -> String {
    let mut last = String::new();
    let ok = eventually(30, async || {
        let out = ns.exec(&["busybox", "wget", "-q", "-O", "-", url]);
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out.status.success()
    })
    .await;
    assert!(ok, "{url} did not answer from the host: {last}");
    last
}

/// Host-side veths of berth in the agent's namespace.
fn veths(ns: &TestNetns) -> Vec<String> {
    let out = ns.exec(&["ip", "-o", "link"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
        .filter(|n| n.starts_with("bth"))
        .collect()
}

/// berth's nftables table in the agent's namespace, as `nft list` prints it
/// ("" when there is none).
fn nft_table(ns: &TestNetns) -> String {
    let out = ns.exec(&["nft", "list", "table", "inet", "berth"]);
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).into()
    } else {
        String::new()
    }
}

/// Nothing of a bridge container is left: no veth, no nftables table.
async fn assert_no_leftovers(agent: &Agent) {
    let ns = ns(agent);
    let clean = eventually(30, async || {
        veths(ns).is_empty() && nft_table(ns).is_empty()
    })
    .await;
    assert!(
        clean,
        "leftovers: veths {:?}, table:\n{}",
        veths(ns),
        nft_table(ns)
    );
}

fn settings(c: &pb::Container) -> pb::NetworkSettings {
    c.network_settings
        .clone()
        .unwrap_or_else(|| panic!("no network settings: {c:?}"))
}

#[tokio::test]
async fn bridge_containers_reach_each_other_and_the_host_reaches_them() {
    let (agent, bridge, subnet) = bridge_agent().await;
    let ns = ns(&agent);
    let web = agent
        .run(pb::ContainerSpec {
            name: "web".into(),
            ports: vec![publish("", 0, 80)],
            ..httpd("from-web")
        })
        .await;
    let web = agent.inspect(&web.id).await;
    assert_eq!(web.network, "bridge");
    let net = settings(&web);
    let prefix = subnet.trim_end_matches(".0/24");
    assert_eq!(net.ip_address, format!("{prefix}.2"), "{net:?}");
    assert_eq!(net.gateway, format!("{prefix}.1"));
    assert_eq!(
        (net.prefix_length, net.bridge.as_str()),
        (24, bridge.as_str())
    );
    assert_eq!(net.ports.len(), 1, "{net:?}");
    let host_port = net.ports[0].host_port;
    assert_ne!(host_port, 0, "the bound port is shown");

    // Another container reaches it by address; it has eth0 with its own
    // address, a default route through the bridge, its DNS server and its
    // extra host.
    let (exit, out, err) = agent
        .run_to_exit(pb::ContainerSpec {
            dns: vec!["192.0.2.53".into()],
            extra_hosts: vec!["db.example:192.0.2.7".into()],
            ..on_bridge(sh(&format!(
                "until wget -q -O - http://{}/; do sleep 0.2; done; \
                 ip -o -4 addr show eth0; ip route; cat /etc/hosts /etc/resolv.conf",
                net.ip_address
            )))
        })
        .await;
    assert_eq!(exit.exit_code, 0, "{out}{err}");
    assert!(out.contains("from-web"), "{out}");
    assert!(out.contains(&format!("inet {prefix}.3/24")), "{out}");
    assert!(out.contains(&format!("default via {prefix}.1")), "{out}");
    assert!(out.contains("192.0.2.7\tdb.example"), "{out}");
    assert!(out.contains("nameserver 192.0.2.53"), "{out}");
    assert!(!out.contains("nameserver 127."), "{out}");

    // The host reaches it by address, and through the published port on
    // 127.0.0.1 (DNAT in the output hook, route_localnet) and on the
    // bridge's address.
    let page = fetch_from_host(ns, &format!("http://{}/", net.ip_address)).await;
    assert!(page.contains("from-web"), "{page}");
    let page = fetch_from_host(ns, &format!("http://127.0.0.1:{host_port}/")).await;
    assert!(page.contains("from-web"), "{page}");
    let page = fetch_from_host(ns, &format!("http://{}:{host_port}/", net.gateway)).await;
    assert!(page.contains("from-web"), "{page}");
    // And another container through the published port (hairpin through
    // the host).
    let (exit, out, err) = agent
        .run_to_exit(on_bridge(sh(&format!(
            "wget -q -O - http://{}:{host_port}/",
            net.gateway
        ))))
        .await;
    assert_eq!(exit.exit_code, 0, "{out}{err}");
    assert!(out.contains("from-web"), "{out}");

    // Its address is released on rm: the next container gets it.
    let listed = agent
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .containers;
    for c in listed {
        agent.force_remove(&c.id).await;
    }
    assert_no_leftovers(&agent).await;
    let again = agent.create(on_bridge(sh("true"))).await;
    assert_eq!(settings(&again).ip_address, format!("{prefix}.2"));
    agent.force_remove(&again.id).await;
    assert_no_leftovers(&agent).await;
}

#[tokio::test]
async fn a_taken_host_port_is_refused_and_changes_nothing() {
    let (agent, _, _) = bridge_agent().await;
    let ns = ns(&agent);
    let held = ns
        .run(|| std::net::TcpListener::bind("0.0.0.0:0"))
        .expect("binding a port in the agent's namespace");
    let held_port = u32::from(held.local_addr().expect("its address").port());
    let first = agent
        .run(pb::ContainerSpec {
            ports: vec![publish("", 0, 80)],
            ..httpd("first")
        })
        .await;
    let taken = settings(&agent.inspect(&first.id).await).ports[0].host_port;

    let start = async |port: u32| {
        let c = agent
            .create(pb::ContainerSpec {
                ports: vec![publish("", 0, 81), publish("", port, 80)],
                ..httpd("second")
            })
            .await;
        let e = agent
            .containers()
            .start(pb::StartContainerRequest { id: c.id.clone() })
            .await
            .expect_err("started on a taken port");
        let after = agent.inspect(&c.id).await;
        assert_eq!(after.state, pb::ContainerState::Created as i32);
        agent.force_remove(&c.id).await;
        e
    };
    let e = start(taken).await;
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(e.message().contains(&taken.to_string()), "{e:?}");
    let e = start(held_port).await;
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains(&held_port.to_string()), "{e:?}");
    // Only the first container's port is forwarded; its page still answers.
    let table = nft_table(ns);
    assert_eq!(table.matches("elements = ").count(), 1, "{table}");
    assert!(table.contains(&format!("{{ {taken} : ")), "{table}");
    assert!(!table.contains(". 81"), "{table}");
    let page = fetch_from_host(ns, &format!("http://127.0.0.1:{taken}/")).await;
    assert!(page.contains("first"), "{page}");
    drop(held);
    agent.force_remove(&first.id).await;
    assert_no_leftovers(&agent).await;
}

#[tokio::test]
async fn bad_bridge_requests_are_refused() {
    let (agent, _, _) = bridge_agent().await;
    let create = async |spec: pb::ContainerSpec| {
        agent
            .containers()
            .create(pb::CreateContainerRequest { spec: Some(spec) })
            .await
            .expect_err("created")
    };
    let many: Vec<_> = (1..=300).map(|p| publish("", 0, p)).collect();
    for (spec, field) in [
        (
            pb::ContainerSpec {
                ports: vec![publish("", 8080, 80)],
                network: "none".into(),
                ..sh("true")
            },
            "bridge",
        ),
        (
            pb::ContainerSpec {
                ports: vec![publish("", 8080, 0)],
                ..on_bridge(sh("true"))
            },
            "container port",
        ),
        (
            pb::ContainerSpec {
                ports: vec![publish("x".repeat(10_000).as_str(), 8080, 80)],
                ..on_bridge(sh("true"))
            },
            "host ip",
        ),
        (
            pb::ContainerSpec {
                ports: vec![publish("", 8080, 80), publish("127.0.0.1", 8080, 81)],
                ..on_bridge(sh("true"))
            },
            "twice",
        ),
        (
            pb::ContainerSpec {
                ports: many,
                ..on_bridge(sh("true"))
            },
            "at most 256",
        ),
        (
            pb::ContainerSpec {
                dns: vec!["not-an-ip".into()],
                ..on_bridge(sh("true"))
            },
            "not an IP",
        ),
        (
            pb::ContainerSpec {
                extra_hosts: vec!["no-address".into()],
                ..on_bridge(sh("true"))
            },
            "name:address",
        ),
    ] {
        let e = create(spec).await;
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().contains(field), "{field}: {e:?}");
        assert!(e.message().len() < 1000, "{e:?}");
    }
    let e = create(pb::ContainerSpec {
        ports: vec![publish("::1", 8080, 80)],
        ..on_bridge(sh("true"))
    })
    .await;
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
    // Nothing was made, and no address was kept: the next one gets the
    // first.
    let c = agent.create(on_bridge(sh("true"))).await;
    assert!(settings(&c).ip_address.ends_with(".2"), "{c:?}");
    let listed = agent
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 1);
    agent.force_remove(&c.id).await;
}

/// After kill -9 of berthd and a restart: the running container keeps its
/// address and published port, leftovers of containers that no longer
/// exist are removed, and `rm` then leaves nothing.
#[tokio::test]
async fn the_bridge_survives_a_restart_of_berthd_and_leftovers_go() {
    let (mut agent, _, subnet) = bridge_agent().await;
    let web = agent
        .run(pb::ContainerSpec {
            ports: vec![publish("", 0, 80)],
            ..httpd("still-here")
        })
        .await;
    let before = settings(&agent.inspect(&web.id).await);
    let port = before.ports[0].host_port;
    let page = fetch_from_host(ns(&agent), &format!("http://127.0.0.1:{port}/")).await;
    assert!(page.contains("still-here"), "{page}");
    let stopped = agent.create(on_bridge(sh("true"))).await;

    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    // What a container that vanished while berthd was away would leave: a
    // veth of berth's and a port forward.
    let prefix = subnet.trim_end_matches(".0/24");
    let made = ns(&agent).exec(&[
        "ip",
        "link",
        "add",
        "bth0000deadbeef",
        "type",
        "veth",
        "peer",
        "name",
        "bthpeer0",
    ]);
    assert!(made.status.success(), "{made:?}");
    let stale = format!("add element inet berth tcp_any {{ 9999 : {prefix}.99 . 80 }}");
    let made = ns(&agent).exec(&["nft", &stale]);
    assert!(made.status.success(), "{made:?}");
    agent.spawn().await;

    let table_clean = eventually(30, async || {
        !veths(ns(&agent)).iter().any(|v| v == "bth0000deadbeef") && {
            let t = nft_table(ns(&agent));
            !t.contains("9999") && t.contains(&format!("{}", port))
        }
    })
    .await;
    assert!(
        table_clean,
        "veths {:?}, table:\n{}",
        veths(ns(&agent)),
        nft_table(ns(&agent))
    );
    let after = settings(&agent.inspect(&web.id).await);
    assert_eq!(after, before);
    let page = fetch_from_host(ns(&agent), &format!("http://127.0.0.1:{port}/")).await;
    assert!(page.contains("still-here"), "{page}");
    // The stopped container's address is still its own: a new one gets the
    // next, and the stopped one starts with the address it had.
    let new = agent.create(on_bridge(sh("true"))).await;
    assert_eq!(settings(&new).ip_address, format!("{prefix}.4"));
    assert_eq!(
        settings(&agent.inspect(&stopped.id).await).ip_address,
        format!("{prefix}.3")
    );
    for id in [&web.id, &stopped.id, &new.id] {
        agent.force_remove(id).await;
    }
    assert_no_leftovers(&agent).await;
}

#[tokio::test]
async fn berthctl_publishes_ports() {
    let (agent, _, _) = bridge_agent().await;
    let out = agent.ctl(&[
        "run",
        "-d",
        "--name",
        "web",
        // No --network: the bridge is the default, as with Docker.
        "-p",
        "127.0.0.1:8080:80",
        "busybox",
        "--",
        "sh",
        "-c",
        "mkdir -p /www && echo via-ctl > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    assert!(out.status.success(), "{out:?}");
    let page = fetch_from_host(ns(&agent), "http://127.0.0.1:8080/").await;
    assert!(page.contains("via-ctl"), "{page}");
    // `port` says where each published port listens, as `docker port`.
    let text = |o: std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        text(agent.ctl(&["port", "web"])),
        "80/tcp -> 127.0.0.1:8080\n"
    );
    assert_eq!(
        text(agent.ctl(&["port", "web", "80"])),
        "80/tcp -> 127.0.0.1:8080\n"
    );
    let out = agent.ctl(&["port", "web", "81"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no public port \"81\""));
    let out = agent.ctl(&["run", "--rm", "-p", "8080:80/sctp", "busybox", "true"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tcp or udp"),
        "{out:?}"
    );
    let out = agent.ctl(&["rm", "-f", "web"]);
    assert!(out.status.success(), "{out:?}");
    assert_no_leftovers(&agent).await;
}

/// A container whose spec names no network is on the bridge, as with
/// Docker; `berthd --default-network none` gives it only `lo`, and then
/// `-p` needs a network named.
#[tokio::test]
async fn the_bridge_is_the_default_network_unless_berthd_says_none() {
    let (agent, bridge, _) = bridge_agent().await;
    let c = agent.run(sh("exec sleep 100")).await;
    assert_eq!(c.network, "bridge");
    assert_eq!(settings(&c).bridge, bridge);
    let (exit, out, err) = agent.run_to_exit(sh("ip -o -4 addr show eth0")).await;
    assert_eq!(exit.exit_code, 0, "{err}");
    assert!(out.contains("inet 10."), "{out}");
    let all = agent
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .expect("list")
        .into_inner();
    for c in all.containers {
        agent.force_remove(&c.id).await;
    }
    assert_no_leftovers(&agent).await;
    drop(agent);

    let (name, subnet) = bridge_args();
    let agent = Agent::start_in_netns(&[
        "--bridge-name",
        &name,
        "--bridge-subnet",
        &subnet,
        "--default-network",
        "none",
    ])
    .await;
    agent.import_busybox().await;
    let (exit, out, err) = agent.run_to_exit(sh("ip -o link")).await;
    assert_eq!(exit.exit_code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "only lo: {out}");
    let e = agent
        .containers()
        .create(pb::CreateContainerRequest {
            spec: Some(pb::ContainerSpec {
                ports: vec![publish("", 0, 80)],
                ..sh("true")
            }),
        })
        .await
        .expect_err("-p with the default network none");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(veths(ns(&agent)).is_empty());
    assert!(nft_table(ns(&agent)).is_empty(), "no bridge work at all");
}

/// `-P` publishes every port the image exposes, on ports the kernel picks,
/// and not again one `-p` already publishes.
#[tokio::test]
async fn publish_all_publishes_the_images_exposed_ports() {
    let (agent, _, _) = bridge_agent().await;
    let cfg = common::image::Config {
        exposed_ports: vec!["80/tcp".into(), "53/udp".into(), "7/sctp".into()],
        ..Default::default()
    };
    agent
        .import(
            common::image::busybox_config("docker.io/library/exposing:1", Vec::new(), cfg),
            "",
        )
        .await
        .expect("import");
    let image = agent
        .images()
        .inspect(pb::InspectImageRequest {
            image: "exposing:1".into(),
        })
        .await
        .expect("inspect image")
        .into_inner()
        .image
        .and_then(|i| i.config)
        .expect("config");
    assert_eq!(image.exposed_ports, ["53/udp", "7/sctp", "80/tcp"]);

    let c = agent
        .run(pb::ContainerSpec {
            image: "exposing:1".into(),
            publish_all: true,
            ports: vec![pb::PortMapping {
                protocol: "udp".into(),
                ..publish("", 0, 53)
            }],
            ..httpd("published-all")
        })
        .await;
    let mut ports: Vec<(u32, String, bool)> = settings(&c)
        .ports
        .iter()
        .map(|p| (p.container_port, p.protocol.clone(), p.host_port > 0))
        .collect();
    ports.sort();
    assert_eq!(
        ports,
        [(53, "udp".into(), true), (80, "tcp".into(), true)],
        "53/udp once, sctp not at all"
    );
    let web = settings(&c)
        .ports
        .iter()
        .find(|p| p.container_port == 80)
        .map(|p| p.host_port)
        .expect("80 published");
    let page = fetch_from_host(ns(&agent), &format!("http://127.0.0.1:{web}/")).await;
    assert!(page.contains("published-all"), "{page}");

    // berthctl's -P, and `port` tells where.
    let out = agent.ctl(&[
        "run",
        "-d",
        "--name",
        "p",
        "-P",
        "exposing:1",
        "httpd",
        "-f",
        "-p",
        "80",
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = agent.ctl(&["port", "p", "80"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("80/tcp -> 0.0.0.0:"),
        "{out:?}"
    );
    for id in [c.id.as_str(), "p"] {
        let out = agent.ctl(&["rm", "-f", id]);
        assert!(out.status.success(), "{out:?}");
    }
    assert_no_leftovers(&agent).await;
}

/// `stats` counts a bridge container's traffic on `eth0`; a host-network
/// container has no counters of its own.
#[tokio::test]
async fn stats_count_the_bridge_containers_traffic() {
    let (agent, _, _) = bridge_agent().await;
    let c = agent.run(httpd("counted")).await;
    let ip = settings(&c).ip_address;
    let page = fetch_from_host(ns(&agent), &format!("http://{ip}/")).await;
    assert!(page.contains("counted"), "{page}");
    let host = agent
        .run(pb::ContainerSpec {
            network: "host".into(),
            ..sh("exec sleep 1000")
        })
        .await;
    let sample = berth::v1::stats_client::StatsClient::new(agent.channel.clone())
        .stats(pb::StatsRequest {
            containers: vec![c.id.clone(), host.id.clone()],
            stream: false,
            ..Default::default()
        })
        .await
        .expect("stats")
        .into_inner()
        .message()
        .await
        .expect("sample")
        .expect("one sample");
    let of = |id: &str| {
        sample
            .containers
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .expect("the container's stats")
    };
    let net = of(&c.id).network.expect("bridge counters");
    let names: Vec<&str> = net.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["eth0"]);
    let eth0 = &net.interfaces[0];
    // The page went out, the request came in.
    assert!(eth0.tx_bytes > 100 && eth0.rx_bytes > 50, "{eth0:?}");
    assert!(eth0.tx_packets > 0 && eth0.rx_packets > 0, "{eth0:?}");
    assert_eq!((net.rx_bytes, net.tx_bytes), (eth0.rx_bytes, eth0.tx_bytes));
    assert!(
        of(&host.id).network.is_none(),
        "the host's counters are not a container's"
    );
    agent.force_remove(&host.id).await;
    agent.force_remove(&c.id).await;
    assert_no_leftovers(&agent).await;
}
