//! End to end: Networks.ConnectContainer and DisconnectContainer (issue
//! 19): a running container joins a second network (a new interface, an
//! address in its subnet, names both ways), keeps it across a kill -9 of
//! berthd and its own restart, and leaves it cleanly; bad requests change
//! nothing; events and berthctl. Leaving the first network, and the
//! default bridge: tests/connect_first.rs.
//!
//! berthd runs in a network namespace the test makes and deletes (see
//! tests/bridge.rs): all bridges, veths and tables live and die there.

mod common;

use berth::v1 as pb;
use common::cli::{expect_failure, ok};
use common::net::{connect, disconnect, endpoints, exec, httpd, nets, reaches, refused};
use common::{next_event, sh, Agent};
use tonic::Code;

async fn agent() -> Agent {
    let agent =
        Agent::start_in_netns(&["--bridge-name", "bct0", "--bridge-subnet", "10.76.0.0/24"]).await;
    agent.import_busybox().await;
    agent
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
