//! End to end: Networks.ConnectContainer and DisconnectContainer (issue
//! 19): a running container joins a second network (a new interface, an
//! address in its subnet, names both ways), keeps it across a kill -9 of
//! berthd and its own restart, and leaves it cleanly; bad requests change
//! nothing; events and berthctl. A container leaves its first network
//! (keeping the others, or only `lo`), joins the default bridge, and gets a
//! first network again (published ports follow it).
//!
//! berthd runs in a network namespace the test makes and deletes (see
//! tests/bridge.rs): all bridges, veths and tables live and die there.

mod common;

use berth::v1 as pb;
use berth::v1::networks_client::NetworksClient;
use common::cli::{expect_failure, ok};
use common::{eventually, next_event, sh, Agent};
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

async fn agent() -> Agent {
    let agent =
        Agent::start_in_netns(&["--bridge-name", "bct0", "--bridge-subnet", "10.76.0.0/24"]).await;
    agent.import_busybox().await;
    agent
}

fn nets(agent: &Agent) -> NetworksClient<Channel> {
    NetworksClient::new(agent.channel.clone())
}

fn refused(e: tonic::Status, code: Code, reason: &str) {
    assert_eq!(e.code(), code, "{e:?}");
    let got = e
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default();
    assert_eq!(got, reason, "{e:?}");
    assert!(e.message().len() < 400, "{e:?}");
}

fn httpd(net: &str, name: &str) -> pb::ContainerSpec {
    pb::ContainerSpec {
        name: name.into(),
        network: net.into(),
        ..sh(&format!(
            "mkdir -p /www && echo from-{name} > /www/index.html && exec httpd -f -p 80 -h /www"
        ))
    }
}

/// Runs `script` in container `c` (berthctl exec); its exit code and output.
fn exec(agent: &Agent, c: &str, script: &str) -> (i32, String) {
    let o = agent.ctl(&["exec", c, "sh", "-c", script]);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), out)
}

async fn reaches(agent: &Agent, from: &str, url: &str, page: &str) -> bool {
    eventually(20, async || {
        let (code, out) = exec(agent, from, &format!("wget -q -O - {url}"));
        code == 0 && out.contains(page)
    })
    .await
}

async fn connect(
    agent: &Agent,
    net: &str,
    c: &str,
    aliases: &[&str],
    ip: &str,
) -> Result<pb::NetworkEndpoint, tonic::Status> {
    nets(agent)
        .connect_container(pb::ConnectContainerRequest {
            network: net.into(),
            container: c.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            ipv4_address: ip.into(),
        })
        .await
        .map(|r| r.into_inner().endpoint.unwrap_or_default())
}

async fn disconnect(agent: &Agent, net: &str, c: &str) -> Result<(), tonic::Status> {
    nets(agent)
        .disconnect_container(pb::DisconnectContainerRequest {
            network: net.into(),
            container: c.into(),
            force: false,
        })
        .await
        .map(|_| ())
}

async fn endpoints(agent: &Agent, net: &str) -> Vec<pb::NetworkEndpoint> {
    nets(agent)
        .inspect_network(pb::InspectNetworkRequest {
            network: net.into(),
        })
        .await
        .expect("inspect network")
        .into_inner()
        .endpoints
}

#[tokio::test]
async fn a_running_container_joins_and_leaves_a_second_network() {
    let mut agent = agent().await;
    for (name, subnet) in [("net1", "10.93.0.0/24"), ("net2", "10.94.0.0/24")] {
        nets(&agent)
            .create_network(pb::CreateNetworkRequest {
                name: name.into(),
                subnet: subnet.into(),
                ..Default::default()
            })
            .await
            .expect("create network");
    }
    let mut events = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            types: vec![pb::ObjectType::Network as i32],
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    let a = agent.run(httpd("net1", "a")).await;
    let b = agent.run(httpd("net2", "b")).await;
    let host_mode = agent
        .run(pb::ContainerSpec {
            name: "h".into(),
            network: "none".into(),
            ..sh("sleep 600")
        })
        .await;

    // Apart: A neither resolves nor reaches B.
    let (code, out) = exec(
        &agent,
        "a",
        "ping -c 1 -W 1 10.94.0.2 || echo unreachable; grep -w b /etc/hosts",
    );
    assert!(out.contains("unreachable") && code != 0, "{out}");

    // Bad requests change nothing.
    let before = agent.inspect(&a.id).await;
    refused(
        connect(&agent, "nope", "a", &[], "").await.unwrap_err(),
        Code::NotFound,
        "NETWORK_NOT_FOUND",
    );
    assert_eq!(
        connect(&agent, "net2", "nope", &[], "")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    refused(
        connect(&agent, "net1", "a", &[], "").await.unwrap_err(),
        Code::AlreadyExists,
        "NETWORK_ALREADY_CONNECTED",
    );
    refused(
        connect(&agent, "host", "a", &[], "").await.unwrap_err(),
        Code::FailedPrecondition,
        "NETWORK_PREDEFINED",
    );
    refused(
        connect(&agent, "bridge", "h", &[], "").await.unwrap_err(),
        Code::FailedPrecondition,
        "NETWORK_MODE_NOT_CONNECTABLE",
    );
    refused(
        connect(&agent, "net2", "h", &[], "").await.unwrap_err(),
        Code::FailedPrecondition,
        "NETWORK_MODE_NOT_CONNECTABLE",
    );
    refused(
        connect(&agent, "net2", "a", &[], "10.94.0.2")
            .await
            .unwrap_err(),
        Code::AlreadyExists,
        "NETWORK_ADDRESS_IN_USE",
    );
    assert_eq!(
        connect(&agent, "net2", "a", &[], "10.95.0.9")
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        connect(&agent, "net2", "a", &["bad alias"], "")
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    refused(
        disconnect(&agent, "net2", "a").await.unwrap_err(),
        Code::FailedPrecondition,
        "NETWORK_NOT_CONNECTED",
    );
    refused(
        disconnect(&agent, "bridge", "a").await.unwrap_err(),
        Code::FailedPrecondition,
        "NETWORK_NOT_CONNECTED",
    );
    refused(
        disconnect(&agent, "host", "a").await.unwrap_err(),
        Code::FailedPrecondition,
        "NETWORK_PREDEFINED",
    );
    assert_eq!(
        agent.inspect(&a.id).await.connected_networks,
        before.connected_networks
    );
    assert_eq!(endpoints(&agent, "net2").await.len(), 1);

    // Connected: eth1 in net2's subnet, names both ways, no new default route.
    let t = std::time::Instant::now();
    let ep = connect(&agent, "net2", "a", &["alpha"], "10.94.0.50")
        .await
        .expect("connect");
    let took = t.elapsed();
    eprintln!("connect of a running container took {took:?}");
    assert_eq!(
        (ep.interface.as_str(), ep.ip_address.as_str()),
        ("eth1", "10.94.0.50"),
        "{ep:?}"
    );
    let ev = next_event(&mut events).await;
    assert_eq!(ev.action, pb::EventAction::Connected as i32, "{ev:?}");
    assert_eq!(
        (ev.name.as_str(), ev.container_id.as_str()),
        ("net2", a.id.as_str())
    );
    let (_, out) = exec(&agent, "a", "ip -o -4 addr show eth1; ip route");
    assert!(out.contains("inet 10.94.0.50/24"), "{out}");
    assert_eq!(out.matches("default").count(), 1, "{out}");
    assert!(
        reaches(&agent, "a", "http://b/", "from-b").await,
        "A does not reach B by name"
    );
    assert!(
        reaches(&agent, "b", "http://a/", "from-a").await,
        "B does not reach A by name"
    );
    assert!(
        reaches(&agent, "b", "http://alpha/", "from-a").await,
        "B does not reach A's alias"
    );
    let inspected = agent.inspect(&a.id).await;
    assert_eq!(inspected.connected_networks.len(), 1, "{inspected:?}");
    assert_eq!(inspected.connected_networks[0].ip_address, "10.94.0.50");
    assert_eq!(endpoints(&agent, "net2").await.len(), 2);

    // berthd killed and back: still connected, still resolving.
    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    agent.spawn().await;
    // The stream ended with the old berthd.
    let mut events = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            types: vec![pb::ObjectType::Network as i32],
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    assert_eq!(
        agent.inspect(&a.id).await.connected_networks,
        inspected.connected_networks
    );
    assert!(
        reaches(&agent, "b", "http://alpha/", "from-a").await,
        "after berthd's restart"
    );
    refused(
        connect(&agent, "net2", "a", &[], "10.94.0.50")
            .await
            .unwrap_err(),
        Code::AlreadyExists,
        "NETWORK_ALREADY_CONNECTED",
    );

    // The container restarted: eth1 made again.
    ok(&agent, &["stop", "-t", "1", "a"]);
    ok(&agent, &["start", "a"]);
    let (_, out) = exec(&agent, "a", "ip -o -4 addr show eth1");
    assert!(out.contains("inet 10.94.0.50/24"), "{out}");
    assert!(
        reaches(&agent, "a", "http://b/", "from-b").await,
        "after the container's restart"
    );
    assert!(
        reaches(&agent, "b", "http://a/", "from-a").await,
        "after the container's restart"
    );

    // The network cannot go while A is on it.
    let e = nets(&agent)
        .remove_network(pb::RemoveNetworkRequest {
            network: "net2".into(),
        })
        .await
        .unwrap_err();
    refused(e, Code::FailedPrecondition, "NETWORK_IN_USE");

    // Disconnected (through berthctl): interface and name gone.
    let out = ok(&agent, &["network", "disconnect", "net2", "a"]);
    assert_eq!(out.trim(), "a");
    let ev = next_event(&mut events).await;
    assert_eq!(ev.action, pb::EventAction::Disconnected as i32, "{ev:?}");
    let (_, out) = exec(&agent, "a", "ip link show eth1 || echo no-eth1");
    assert!(out.contains("no-eth1"), "{out}");
    let (_, out) = exec(&agent, "b", "grep -w alpha /etc/hosts || echo no-alpha");
    assert!(out.contains("no-alpha"), "{out}");
    assert!(agent.inspect(&a.id).await.connected_networks.is_empty());
    // The address is free again: berthctl connects with it.
    let out = ok(
        &agent,
        &[
            "network",
            "connect",
            "--alias",
            "again",
            "--ip",
            "10.94.0.50",
            "net2",
            "a",
        ],
    );
    assert!(out.contains("eth1 10.94.0.50/24 a"), "{out}");
    expect_failure(
        &agent.ctl(&["network", "connect", "net2", "a"]),
        &["network", "connect"],
        1,
        &["already connected"],
    );
    ok(&agent, &["network", "disconnect", "net2", "a"]);

    agent.force_remove(&b.id).await;
    agent.force_remove(&host_mode.id).await;
    nets(&agent)
        .remove_network(pb::RemoveNetworkRequest {
            network: "net2".into(),
        })
        .await
        .expect("net2 is removable after the disconnect");
    agent.force_remove(&a.id).await;
    nets(&agent)
        .remove_network(pb::RemoveNetworkRequest {
            network: "net1".into(),
        })
        .await
        .expect("remove net1");
}

#[tokio::test]
async fn a_created_container_gets_its_connection_at_start() {
    let agent = agent().await;
    for (name, subnet) in [("n1", "10.96.0.0/24"), ("n2", "10.97.0.0/24")] {
        nets(&agent)
            .create_network(pb::CreateNetworkRequest {
                name: name.into(),
                subnet: subnet.into(),
                ..Default::default()
            })
            .await
            .expect("create network");
    }
    let b = agent.run(httpd("n2", "b")).await;
    let c = agent
        .containers()
        .create(pb::CreateContainerRequest {
            spec: Some(pb::ContainerSpec {
                name: "c".into(),
                network: "n1".into(),
                ..sh("sleep 600")
            }),
        })
        .await
        .expect("create")
        .into_inner()
        .container
        .expect("container");
    let ep = connect(&agent, "n2", "c", &[], "").await.expect("connect");
    assert_eq!(
        (ep.interface.as_str(), ep.ip_address.as_str()),
        ("eth1", "10.97.0.3")
    );
    ok(&agent, &["start", "c"]);
    let (_, out) = exec(&agent, "c", "ip -o -4 addr show eth1");
    assert!(out.contains("inet 10.97.0.3/24"), "{out}");
    assert!(reaches(&agent, "c", "http://b/", "from-b").await);
    agent.force_remove(&c.id).await;
    agent.force_remove(&b.id).await;
    for n in ["n1", "n2"] {
        nets(&agent)
            .remove_network(pb::RemoveNetworkRequest { network: n.into() })
            .await
            .expect("the networks are free once the containers are removed");
    }
}

fn ns(agent: &Agent) -> &common::TestNetns {
    agent.netns.as_ref().expect("the agent's network namespace")
}

/// Whether the agent's namespace gets `page` from `url` (the host's view
/// of a published port).
fn host_gets(agent: &Agent, url: &str, page: &str) -> bool {
    // The host's busybox wget has no usable -T here: timeout(1) bounds it.
    let out = ns(agent).exec(&["timeout", "5", "busybox", "wget", "-q", "-O", "-", url]);
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains(page)
}

/// Interface names inside container `c`.
fn interfaces(agent: &Agent, c: &str) -> Vec<String> {
    let (_, out) = exec(agent, c, "ip -o link");
    let mut names: Vec<String> = out
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

/// Whether `from` fails to fetch `url` (a refused or timed-out wget; no
/// retry: the caller has already seen the interface go).
fn cannot_reach(agent: &Agent, from: &str, url: &str) -> bool {
    let (code, out) = exec(agent, from, &format!("wget -q -T 2 -O - {url}"));
    code != 0 && !out.contains("from-")
}

#[tokio::test]
async fn a_container_leaves_its_first_network_joins_the_bridge_and_gets_a_first_network_again() {
    let mut agent = agent().await;
    nets(&agent)
        .create_network(pb::CreateNetworkRequest {
            name: "front".into(),
            subnet: "10.98.0.0/24".into(),
            ..Default::default()
        })
        .await
        .expect("create network");
    let web = agent.run(httpd("front", "web")).await;
    let onbridge = agent.run(httpd("bridge", "onbridge")).await;
    let a = agent
        .run(pb::ContainerSpec {
            network_aliases: vec!["alpha".into()],
            ports: vec![pb::PortMapping {
                host_ip: String::new(),
                host_port: 18090,
                container_port: 80,
                protocol: "tcp".into(),
            }],
            ..httpd("front", "a")
        })
        .await;
    let a_ip = agent
        .inspect(&a.id)
        .await
        .network_settings
        .expect("network settings")
        .ip_address;
    assert!(
        eventually(20, async || host_gets(
            &agent,
            "http://127.0.0.1:18090/",
            "from-a"
        ))
        .await,
        "the published port does not answer:\n{}",
        ruleset(&agent)
    );
    assert!(reaches(&agent, "web", "http://alpha/", "from-a").await);
    let mut events = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            types: vec![pb::ObjectType::Network as i32],
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();

    // A container on a user network joins the default bridge (berthctl):
    // eth1 there, traffic both ways, no second default route, no names.
    let out = ok(&agent, &["network", "connect", "bridge", "a"]);
    assert!(out.contains("eth1 10.76.0."), "{out}");
    let ev = next_event(&mut events).await;
    assert_eq!(ev.action, pb::EventAction::Connected as i32, "{ev:?}");
    assert_eq!(ev.name, "bridge", "{ev:?}");
    let inspected = agent.inspect(&a.id).await;
    assert_eq!(inspected.connected_networks.len(), 1, "{inspected:?}");
    let on_bridge = inspected.connected_networks[0].clone();
    assert_eq!(
        (on_bridge.network_id.as_str(), on_bridge.interface.as_str()),
        ("bridge", "eth1")
    );
    let (_, out) = exec(&agent, "a", "ip route");
    assert_eq!(out.matches("default").count(), 1, "{out}");
    let onbridge_ip = agent
        .inspect(&onbridge.id)
        .await
        .network_settings
        .expect("settings")
        .ip_address;
    assert!(
        reaches(
            &agent,
            "a",
            &format!("http://{onbridge_ip}/"),
            "from-onbridge"
        )
        .await,
        "A does not reach a container on the bridge"
    );
    assert!(
        reaches(
            &agent,
            "onbridge",
            &format!("http://{}/", on_bridge.ip_address),
            "from-a"
        )
        .await,
        "the bridge container does not reach A"
    );
    refused(
        connect(&agent, "bridge", "a", &[], "").await.unwrap_err(),
        Code::AlreadyExists,
        "NETWORK_ALREADY_CONNECTED",
    );
    // Aliases need a user-defined network; nothing changes.
    assert_eq!(
        connect(&agent, "bridge", "web", &["w"], "")
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert!(agent.inspect(&web.id).await.connected_networks.is_empty());

    // A leaves its first network: eth0, its address, its name and its
    // published port go; the bridge connection stays.
    disconnect(&agent, "front", "a")
        .await
        .expect("disconnect the first network");
    let ev = next_event(&mut events).await;
    assert_eq!(ev.action, pb::EventAction::Disconnected as i32, "{ev:?}");
    assert_eq!(ev.name, "front", "{ev:?}");
    assert_eq!(interfaces(&agent, "a"), ["eth1", "lo"]);
    assert!(cannot_reach(&agent, "web", &format!("http://{a_ip}/")));
    let (_, out) = exec(&agent, "web", "grep -w alpha /etc/hosts || echo no-alpha");
    assert!(out.contains("no-alpha"), "{out}");
    let (_, out) = exec(&agent, "a", "grep -w web /etc/hosts || echo no-web");
    assert!(out.contains("no-web"), "{out}");
    assert!(!host_gets(&agent, "http://127.0.0.1:18090/", "from-a"));
    assert!(
        !ruleset(&agent).contains("18090"),
        "the published port's rule is left:\n{}",
        ruleset(&agent)
    );
    let inspected = agent.inspect(&a.id).await;
    assert!(inspected.network_settings.is_none(), "{inspected:?}");
    assert_eq!(inspected.connected_networks, [on_bridge.clone()]);
    let names: Vec<_> = endpoints(&agent, "front")
        .await
        .into_iter()
        .map(|e| e.container_name)
        .collect();
    assert_eq!(names, ["web"]);
    assert!(
        reaches(
            &agent,
            "a",
            &format!("http://{onbridge_ip}/"),
            "from-onbridge"
        )
        .await,
        "the bridge connection did not survive"
    );
    refused(
        disconnect(&agent, "front", "a").await.unwrap_err(),
        Code::FailedPrecondition,
        "NETWORK_NOT_CONNECTED",
    );

    // berthd killed and back, then A restarted: still only on the bridge.
    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    agent.spawn().await;
    let mut events = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            types: vec![pb::ObjectType::Network as i32],
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    let after = agent.inspect(&a.id).await;
    assert!(after.network_settings.is_none(), "{after:?}");
    assert_eq!(after.connected_networks, [on_bridge.clone()]);
    ok(&agent, &["stop", "-t", "1", "a"]);
    ok(&agent, &["start", "a"]);
    assert_eq!(interfaces(&agent, "a"), ["eth1", "lo"]);
    assert!(
        reaches(
            &agent,
            "a",
            &format!("http://{onbridge_ip}/"),
            "from-onbridge"
        )
        .await,
        "after berthd's and the container's restart"
    );

    // Off the bridge too: only lo, and the bridge container cannot reach it.
    ok(&agent, &["network", "disconnect", "bridge", "a"]);
    let ev = next_event(&mut events).await;
    assert_eq!(ev.action, pb::EventAction::Disconnected as i32, "{ev:?}");
    assert_eq!(interfaces(&agent, "a"), ["lo"]);
    assert!(cannot_reach(
        &agent,
        "onbridge",
        &format!("http://{}/", on_bridge.ip_address)
    ));
    assert!(agent.inspect(&a.id).await.connected_networks.is_empty());

    // The next network is its first again: eth0, the default route, its
    // alias, its published port.
    let ep = connect(&agent, "front", "a", &["again"], "")
        .await
        .expect("connect again");
    assert_eq!(ep.interface, "eth0", "{ep:?}");
    assert_eq!(interfaces(&agent, "a"), ["eth0", "lo"]);
    let (_, out) = exec(&agent, "a", "ip route");
    assert!(out.contains("default via 10.98.0.1"), "{out}");
    assert!(reaches(&agent, "web", "http://again/", "from-a").await);
    assert!(reaches(&agent, "a", "http://web/", "from-web").await);
    assert!(
        eventually(20, async || host_gets(
            &agent,
            "http://127.0.0.1:18090/",
            "from-a"
        ))
        .await,
        "the published port does not answer again"
    );
    let inspected = agent.inspect(&a.id).await;
    let settings = inspected.network_settings.expect("settings again");
    assert_eq!(settings.ports.len(), 1, "{settings:?}");
    assert_eq!(settings.ports[0].host_port, 18090);

    agent.force_remove(&a.id).await;
    agent.force_remove(&web.id).await;
    agent.force_remove(&onbridge.id).await;
    nets(&agent)
        .remove_network(pb::RemoveNetworkRequest {
            network: "front".into(),
        })
        .await
        .expect("remove front");
    assert!(
        eventually(20, async || !ruleset(&agent).contains("18090")).await,
        "{}",
        ruleset(&agent)
    );
}

#[tokio::test]
async fn a_created_container_that_left_its_network_starts_with_only_its_other_networks() {
    let agent = agent().await;
    nets(&agent)
        .create_network(pb::CreateNetworkRequest {
            name: "side".into(),
            subnet: "10.99.0.0/24".into(),
            ..Default::default()
        })
        .await
        .expect("create network");
    let web = agent.run(httpd("side", "web")).await;
    let c = agent
        .containers()
        .create(pb::CreateContainerRequest {
            spec: Some(pb::ContainerSpec {
                name: "c".into(),
                network: "bridge".into(),
                ..sh("sleep 600")
            }),
        })
        .await
        .expect("create")
        .into_inner()
        .container
        .expect("container");
    connect(&agent, "side", "c", &[], "")
        .await
        .expect("connect");
    disconnect(&agent, "bridge", "c")
        .await
        .expect("disconnect the first network of a created container");
    assert!(agent.inspect(&c.id).await.network_settings.is_none());
    ok(&agent, &["start", "c"]);
    assert_eq!(interfaces(&agent, "c"), ["eth1", "lo"]);
    assert!(reaches(&agent, "c", "http://web/", "from-web").await);
    agent.force_remove(&c.id).await;
    agent.force_remove(&web.id).await;
    nets(&agent)
        .remove_network(pb::RemoveNetworkRequest {
            network: "side".into(),
        })
        .await
        .expect("remove side");
}

fn ruleset(agent: &Agent) -> String {
    String::from_utf8_lossy(&ns(agent).exec(&["nft", "list", "ruleset"]).stdout).into()
}
