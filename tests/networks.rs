//! End to end: user-defined networks (issue 19): the Networks service,
//! containers on a network of their own reaching each other by name and
//! alias but not other networks, internal networks without outbound NAT,
//! events, a restart of berthd, and nothing left behind after `rm`.
//!
//! Every test runs berthd in a network namespace of its own, made by the
//! test and deleted with the agent (see tests/bridge.rs): bridges, veths
//! and nftables tables live and die there; the only other place traffic
//! goes is a second namespace a test makes ("outside").

mod common;

use berth::v1 as pb;
use common::net::{links, nets, ns, on, refused, remove_all, ruleset, serve as httpd};
use common::{eventually, next_event, sh, Agent, TestNetns};
use tonic::Code;

async fn agent() -> Agent {
    // A default bridge subnet of this test's own, outside the pool.
    let agent =
        Agent::start_in_netns(&["--bridge-name", "bnt0", "--bridge-subnet", "10.77.0.0/24"]).await;
    agent.import_busybox().await;
    agent
}

async fn create(agent: &Agent, name: &str, subnet: &str, internal: bool) -> pb::Network {
    let (name, subnet) = (name.into(), subnet.into());
    let req = pb::CreateNetworkRequest {
        name,
        subnet,
        internal,
        ..Default::default()
    };
    common::net::create_with(agent, req).await
}

/// Nothing of berth's networks is left: no bridge of a user network, no
/// veth, no table of berth.
async fn assert_no_leftovers(agent: &Agent) {
    let ns = ns(agent);
    let clean = eventually(30, async || {
        links(ns, "br-").is_empty()
            && links(ns, "bth").is_empty()
            && !ruleset(ns).contains("table inet berth")
    })
    .await;
    assert!(
        clean,
        "leftovers: links {:?} {:?}, ruleset:\n{}",
        links(ns, "br-"),
        links(ns, "bth"),
        ruleset(ns)
    );
}

#[tokio::test]
async fn networks_are_created_listed_inspected_and_removed_and_bad_requests_change_nothing() {
    use std::os::unix::fs::MetadataExt;
    let agent = agent().await;
    let mut events = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            types: vec![pb::ObjectType::Network as i32],
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    let a = nets(&agent)
        .create_network(pb::CreateNetworkRequest {
            name: "alpha".into(),
            labels: [("team".to_string(), "blue".to_string())].into(),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner()
        .network
        .expect("network");
    assert_eq!(
        (a.subnet.as_str(), a.gateway.as_str(), a.driver.as_str()),
        ("10.89.0.0/24", "10.89.0.1", "bridge")
    );
    assert_eq!(a.bridge, format!("br-{}", &a.id[..12]));
    let b = nets(&agent)
        .create_network(pb::CreateNetworkRequest {
            name: "beta".into(),
            subnet: "10.90.8.0/22".into(),
            gateway: "10.90.8.254".into(),
            internal: true,
            ..Default::default()
        })
        .await
        .expect("create with a subnet")
        .into_inner()
        .network
        .expect("network");
    assert_eq!((b.gateway.as_str(), b.internal), ("10.90.8.254", true));
    let record = agent.state_dir.join(format!("networks/{}.json", a.id));
    assert_eq!(
        std::fs::metadata(&record).expect("record").mode() & 0o777,
        0o600
    );

    let ev = next_event(&mut events).await;
    assert_eq!(
        (ev.r#type, ev.action, ev.id.as_str(), ev.name.as_str()),
        (
            pb::ObjectType::Network as i32,
            pb::EventAction::Created as i32,
            a.id.as_str(),
            "alpha"
        )
    );
    assert_eq!(ev.labels.get("team").map(String::as_str), Some("blue"));
    assert_eq!(next_event(&mut events).await.id, b.id);

    // Refusals, each changing nothing.
    let req = |name: &str, subnet: &str| pb::CreateNetworkRequest {
        name: name.into(),
        subnet: subnet.into(),
        ..Default::default()
    };
    let mut c = nets(&agent);
    let e = c
        .create_network(req("gamma", "10.90.9.0/24"))
        .await
        .unwrap_err();
    refused(e, Code::FailedPrecondition, "NETWORK_SUBNET_OVERLAP");
    let e = c
        .create_network(req("gamma", "10.77.0.128/25"))
        .await
        .unwrap_err();
    refused(e, Code::FailedPrecondition, "NETWORK_SUBNET_OVERLAP");
    let e = c.create_network(req("alpha", "")).await.unwrap_err();
    refused(e, Code::AlreadyExists, "NETWORK_NAME_IN_USE");
    let e = c.create_network(req("bridge", "")).await.unwrap_err();
    refused(e, Code::InvalidArgument, "INVALID_REQUEST");
    let e = c
        .create_network(req(&"n".repeat(100_000), ""))
        .await
        .unwrap_err();
    refused(e, Code::InvalidArgument, "INVALID_REQUEST");
    let e = c
        .create_network(req("gamma", "fd00::/64"))
        .await
        .unwrap_err();
    // An IPv6 prefix goes in ipv6_subnet, with enable_ipv6 (tests/ipv6.rs).
    assert!(e.message().contains("is IPv6"), "{e:?}");
    refused(e, Code::InvalidArgument, "INVALID_REQUEST");
    let e = c
        .remove_network(pb::RemoveNetworkRequest {
            network: "bridge".into(),
        })
        .await
        .unwrap_err();
    refused(e, Code::FailedPrecondition, "NETWORK_PREDEFINED");
    let e = c
        .inspect_network(pb::InspectNetworkRequest {
            network: "nope".into(),
        })
        .await
        .unwrap_err();
    refused(e, Code::NotFound, "NETWORK_NOT_FOUND");
    let e = c
        .connect_container(pb::ConnectContainerRequest {
            network: "alpha".into(),
            container: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = agent
        .containers()
        .create(pb::CreateContainerRequest {
            spec: Some(on("nope", sh("true"))),
        })
        .await
        .unwrap_err();
    refused(e, Code::NotFound, "NETWORK_NOT_FOUND");

    let listed = c
        .list_networks(pb::ListNetworksRequest {})
        .await
        .expect("list")
        .into_inner()
        .networks;
    assert_eq!(listed, vec![a.clone(), b.clone()]);
    let inspected = c
        .inspect_network(pb::InspectNetworkRequest {
            network: a.id[..8].into(),
        })
        .await
        .expect("inspect by id prefix")
        .into_inner();
    assert_eq!(inspected.network.as_ref(), Some(&a));

    // In use: refused until its container goes.
    let ctr = agent.create(on("alpha", sh("true"))).await;
    let e = c
        .remove_network(pb::RemoveNetworkRequest {
            network: "alpha".into(),
        })
        .await
        .unwrap_err();
    refused(e, Code::FailedPrecondition, "NETWORK_IN_USE");
    agent.force_remove(&ctr.id).await;
    for n in ["alpha", "beta"] {
        c.remove_network(pb::RemoveNetworkRequest { network: n.into() })
            .await
            .expect("remove");
    }
    let ev = next_event(&mut events).await;
    assert_eq!(
        (ev.action, ev.id.as_str()),
        (pb::EventAction::Removed as i32, a.id.as_str())
    );
    assert!(!record.exists());
    assert_no_leftovers(&agent).await;
}

#[tokio::test]
async fn containers_reach_each_other_by_name_and_alias_and_not_across_networks() {
    let agent = agent().await;
    create(&agent, "front", "", false).await;
    create(&agent, "back", "", false).await;
    let web = agent
        .run(pb::ContainerSpec {
            name: "web".into(),
            network_aliases: vec!["www".into()],
            ..on("front", httpd("from-web"))
        })
        .await;
    let web = agent.inspect(&web.id).await;
    let ws = web.network_settings.clone().expect("settings");
    assert_eq!(ws.ip_address, "10.89.0.2", "{ws:?}");
    assert!(web.network.starts_with("network:"), "{}", web.network);

    // Same network: by name and alias.
    let (exit, out, err) = agent
        .run_to_exit(on(
            "front",
            sh("until wget -q -O - http://web/; do sleep 0.2; done; \
                wget -q -O - http://www/; ip route; cat /etc/hosts"),
        ))
        .await;
    assert_eq!(exit.exit_code, 0, "{out}{err}");
    assert_eq!(out.matches("from-web").count(), 2, "{out}");
    assert!(out.contains("default via 10.89.0.1"), "{out}");

    // Another network: neither the name nor the address.
    let (exit, out, err) = agent
        .run_to_exit(on(
            "back",
            sh(&format!(
                "grep -w web /etc/hosts; ping -c 1 -W 1 {ip} || echo unreachable; \
                 ip -o -4 addr show eth0",
                ip = ws.ip_address
            )),
        ))
        .await;
    assert_eq!(exit.exit_code, 0, "{out}{err}");
    assert!(out.contains("unreachable"), "{out}{err}");
    assert!(out.contains("inet 10.89.1.2/24"), "{out}");
    // Nor from the default bridge.
    let (_, out, err) = agent
        .run_to_exit(on(
            "bridge",
            sh(&format!(
                "ping -c 1 -W 1 {} || echo unreachable",
                ws.ip_address
            )),
        ))
        .await;
    assert!(out.contains("unreachable"), "{out}{err}");
    // The host (the agent's namespace) reaches it.
    let ok = eventually(30, async || {
        ns(&agent)
            .exec(&[
                "busybox",
                "wget",
                "-q",
                "-O",
                "-",
                &format!("http://{}/", ws.ip_address),
            ])
            .status
            .success()
    })
    .await;
    assert!(ok, "the host does not reach the container");

    // A running container learns of containers created and removed later.
    let watcher = agent
        .run(pb::ContainerSpec {
            name: "watcher".into(),
            ..on(
                "front",
                sh(
                    "until grep -qw late /etc/hosts; do sleep 0.2; done; echo joined; \
                    until ! grep -qw late /etc/hosts; do sleep 0.2; done; echo left",
                ),
            )
        })
        .await;
    let late = agent
        .create(pb::ContainerSpec {
            name: "late".into(),
            ..on("front", sh("true"))
        })
        .await;
    agent.wait_for_output(&watcher.id, "joined").await;
    agent.force_remove(&late.id).await;
    agent.wait_for_output(&watcher.id, "left").await;

    let inspected = nets(&agent)
        .inspect_network(pb::InspectNetworkRequest {
            network: "front".into(),
        })
        .await
        .expect("inspect")
        .into_inner();
    let web_ep = inspected
        .endpoints
        .iter()
        .find(|e| e.container_name == "web")
        .expect("web on front");
    assert_eq!(
        (web_ep.ip_address.as_str(), web_ep.aliases.clone()),
        ("10.89.0.2", vec!["www".to_string()])
    );
    remove_all(&agent).await;
    assert_no_leftovers(&agent).await;
}

/// A namespace beyond the agent's, linked to it by a veth: 172.31.250.2,
/// with no route back to any container subnet (only masquerading reaches
/// it and gets answers).
struct Outside {
    ns: TestNetns,
}

impl Outside {
    fn new(agent: &Agent) -> Outside {
        let out = Outside {
            ns: TestNetns::new(),
        };
        let run = |ns: &TestNetns, args: &[&str]| {
            let o = ns.exec(args);
            assert!(o.status.success(), "{args:?}: {o:?}");
        };
        let agent_ns = ns(agent);
        run(
            agent_ns,
            &[
                "ip",
                "link",
                "add",
                "upl0",
                "type",
                "veth",
                "peer",
                "name",
                "upl1",
                "netns",
                &out.ns.name,
            ],
        );
        run(
            agent_ns,
            &["ip", "addr", "add", "172.31.250.1/24", "dev", "upl0"],
        );
        run(agent_ns, &["ip", "link", "set", "upl0", "up"]);
        run(
            &out.ns,
            &["ip", "addr", "add", "172.31.250.2/24", "dev", "upl1"],
        );
        run(&out.ns, &["ip", "link", "set", "upl1", "up"]);
        out
    }
}

#[tokio::test]
async fn an_internal_network_has_no_outbound_nat() {
    let agent = agent().await;
    let _outside = Outside::new(&agent);
    let open = create(&agent, "open", "", false).await;
    let closed = create(&agent, "closed", "", true).await;
    let (exit, out, err) = agent
        .run_to_exit(on("open", sh("ping -c 1 -W 5 172.31.250.2")))
        .await;
    assert_eq!(exit.exit_code, 0, "outbound from a network: {out}{err}");
    let (_, out, err) = agent
        .run_to_exit(on(
            "closed",
            sh("ping -c 1 -W 1 172.31.250.2 || echo unreachable"),
        ))
        .await;
    assert!(out.contains("unreachable"), "{out}{err}");
    // While a container is on them, their tables say so.
    agent.run(on("open", sh("sleep 600"))).await;
    agent.run(on("closed", sh("sleep 600"))).await;
    let rules = ruleset(ns(&agent));
    assert!(
        rules.contains(&format!(
            "ip saddr {} oifname != \"{}\" masquerade",
            open.subnet, open.bridge
        )),
        "{rules}"
    );
    assert!(
        !rules.contains(&format!("ip saddr {} oifname", closed.subnet)),
        "{rules}"
    );
    remove_all(&agent).await;
    assert_no_leftovers(&agent).await;
}

/// After kill -9 of berthd and a restart: networks, addresses and names
/// are as they were, and removing everything leaves nothing.
#[tokio::test]
async fn networks_survive_a_restart_of_berthd() {
    let mut agent = agent().await;
    let net = create(&agent, "keep", "10.91.0.0/24", false).await;
    let web = agent
        .run(pb::ContainerSpec {
            name: "web".into(),
            ..on("keep", httpd("still-here"))
        })
        .await;
    let before = agent.inspect(&web.id).await.network_settings;

    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    // What a network removed in a crash could leave: its bridge and table
    // (to be removed), beside a bridge with a name like Docker's and no
    // table of berth's (to be left alone).
    for args in [
        &["ip", "link", "add", "br-0123456789ab", "type", "bridge"][..],
        &["ip", "link", "add", "br-dockerlike0", "type", "bridge"][..],
        &["nft", "add table inet berth_0123456789ab"][..],
    ] {
        let made = ns(&agent).exec(args);
        assert!(made.status.success(), "{args:?}: {made:?}");
    }
    agent.spawn().await;
    let cleaned = eventually(30, async || {
        links(ns(&agent), "br-") == vec![net.bridge.clone(), "br-dockerlike0".to_string()]
            && !ruleset(ns(&agent)).contains("berth_0123456789ab")
    })
    .await;
    assert!(
        cleaned,
        "links {:?}, ruleset:\n{}",
        links(ns(&agent), "br-"),
        ruleset(ns(&agent))
    );
    let deleted = ns(&agent).exec(&["ip", "link", "del", "br-dockerlike0"]);
    assert!(deleted.status.success(), "{deleted:?}");

    let listed = nets(&agent)
        .list_networks(pb::ListNetworksRequest {})
        .await
        .expect("list")
        .into_inner()
        .networks;
    assert_eq!(listed, vec![net.clone()]);
    assert_eq!(agent.inspect(&web.id).await.network_settings, before);
    // The next container gets the next address, and reaches web by name.
    let (exit, out, err) = agent
        .run_to_exit(on(
            "keep",
            sh("until wget -q -O - http://web/; do sleep 0.2; done; ip -o -4 addr show eth0"),
        ))
        .await;
    assert_eq!(exit.exit_code, 0, "{out}{err}");
    assert!(out.contains("still-here"), "{out}");
    assert!(out.contains("inet 10.91.0.3/24"), "{out}");
    let e = nets(&agent)
        .create_network(pb::CreateNetworkRequest {
            name: "again".into(),
            subnet: "10.91.0.0/16".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    refused(e, Code::FailedPrecondition, "NETWORK_SUBNET_OVERLAP");
    remove_all(&agent).await;
    assert_no_leftovers(&agent).await;
}

#[tokio::test]
async fn berthctl_manages_networks() {
    use common::cli::{expect_failure, ok};
    let agent = agent().await;
    let id = ok(
        &agent,
        &[
            "network",
            "create",
            "--subnet",
            "10.92.0.0/24",
            "--label",
            "a=b",
            "cli-net",
        ],
    );
    assert_eq!(id.trim().len(), 64, "{id}");
    let ls = ok(&agent, &["network", "ls"]);
    assert!(
        ls.contains("cli-net") && ls.contains("10.92.0.0/24"),
        "{ls}"
    );
    let out = ok(
        &agent,
        &[
            "run",
            "--rm",
            "--network",
            "cli-net",
            "--network-alias",
            "me",
            "--name",
            "c1",
            "busybox",
            "--",
            "sh",
            "-c",
            "grep -w me /etc/hosts",
        ],
    );
    assert!(out.contains("10.92.0.2"), "{out}");
    let inspect = ok(&agent, &["network", "inspect", "cli-net"]);
    assert!(
        inspect.contains("\"subnet\": \"10.92.0.0/24\""),
        "{inspect}"
    );
    expect_failure(
        &agent.ctl(&["network", "connect", "cli-net", "c1"]),
        &["network", "connect"],
        1,
        &["no such container"],
    );
    ok(&agent, &["network", "rm", "cli-net"]);
    assert!(!ok(&agent, &["network", "ls"]).contains("cli-net"));
    assert_no_leftovers(&agent).await;
}

/// Ports published from a user network answer on the host, and a host port
/// is one container's across all networks (the default bridge included).
#[tokio::test]
async fn ports_are_published_from_a_network_and_shared_across_networks() {
    let agent = agent().await;
    create(&agent, "pub", "", false).await;
    let web = agent
        .run(pb::ContainerSpec {
            ports: vec![pb::PortMapping {
                host_ip: String::new(),
                host_port: 18080,
                container_port: 80,
                protocol: "tcp".into(),
            }],
            ..on("pub", httpd("published"))
        })
        .await;
    let mut last = String::new();
    let ok = eventually(30, async || {
        let out = ns(&agent).exec(&[
            "busybox",
            "wget",
            "-q",
            "-O",
            "-",
            "http://127.0.0.1:18080/",
        ]);
        last = String::from_utf8_lossy(&out.stdout).into();
        out.status.success()
    })
    .await;
    assert!(ok && last.contains("published"), "{last}");
    let other = agent
        .create(pb::ContainerSpec {
            ports: vec![pb::PortMapping {
                host_ip: String::new(),
                host_port: 18080,
                container_port: 80,
                protocol: "tcp".into(),
            }],
            ..on("bridge", httpd("other"))
        })
        .await;
    let e = agent
        .containers()
        .start(pb::StartContainerRequest {
            id: other.id.clone(),
        })
        .await
        .unwrap_err();
    refused(e, Code::AlreadyExists, "PORT_ALLOCATED");
    agent.force_remove(&web.id).await;
    remove_all(&agent).await;
    assert_no_leftovers(&agent).await;
}
