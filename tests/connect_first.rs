//! End to end (issue 19): any network can be left, as with Docker. A
//! container leaves the network it was created on (its eth0, address,
//! names and published ports go; its other networks stay, or only `lo`),
//! joins the default bridge, keeps that across a kill -9 of berthd and its
//! own restart, and gets a first network again (eth0, default route,
//! published ports). Traffic is checked both ways each time.
//!
//! berthd runs in a network namespace the test makes and deletes.

mod common;

use berth::v1 as pb;
use common::cli::ok;
use common::net::{
    connect, create_network, disconnect, endpoints, exec, host_gets, httpd, link_names, ns,
    reaches, refused, remove_network, ruleset,
};
use common::{eventually, next_event, sh, Agent};
use tonic::Code;

async fn agent() -> Agent {
    let agent =
        Agent::start_in_netns(&["--bridge-name", "bcf0", "--bridge-subnet", "10.76.0.0/24"]).await;
    agent.import_busybox().await;
    agent
}

/// Interface names inside container `c`.
fn interfaces(agent: &Agent, c: &str) -> Vec<String> {
    let (_, out) = exec(agent, c, "ip -o link");
    let mut names = link_names(&out);
    names.sort();
    names
}

/// Whether `from` fails to fetch `url` (a refused or timed-out wget; no
/// retry: the caller has already seen the interface go).
fn cannot_reach(agent: &Agent, from: &str, url: &str) -> bool {
    // busybox's own timeout: its wget crashes with -T (Debian 1.35).
    // The marker proves the shell ran: a failed exec is not "unreachable".
    let (code, out) = exec(
        agent,
        from,
        &format!("echo wget-ran; busybox timeout 5 wget -q -O - {url}"),
    );
    assert!(out.contains("wget-ran"), "the exec did not run: {out}");
    assert!(!out.contains("not found"), "{out}");
    code != 0 && !out.contains("from-")
}

#[tokio::test]
async fn a_container_leaves_its_first_network_joins_the_bridge_and_gets_a_first_network_again() {
    let mut agent = agent().await;
    create_network(&agent, "front", "10.98.0.0/24").await;
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
        ruleset(ns(&agent))
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
        !ruleset(ns(&agent)).contains("18090"),
        "the published port's rule is left:\n{}",
        ruleset(ns(&agent))
    );
    let inspected = agent.inspect(&a.id).await;
    assert!(inspected.network_settings.is_none(), "{inspected:?}");
    assert_eq!(
        inspected.connected_networks,
        std::slice::from_ref(&on_bridge)
    );
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
    assert_eq!(after.connected_networks, std::slice::from_ref(&on_bridge));
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
    remove_network(&agent, "front").await;
    assert!(
        eventually(20, async || !ruleset(ns(&agent)).contains("18090")).await,
        "{}",
        ruleset(ns(&agent))
    );
}

#[tokio::test]
async fn a_created_container_that_left_its_network_starts_with_only_its_other_networks() {
    let agent = agent().await;
    create_network(&agent, "side", "10.99.0.0/24").await;
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
    remove_network(&agent, "side").await;
}
