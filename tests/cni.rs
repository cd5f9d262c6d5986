//! End to end: CNI networks (issue 19): a network whose driver is `cni`
//! runs a conflist of the standard plugins (Debian's
//! containernetworking-plugins: `bridge` with a bridge of the test's own,
//! `host-local` with a data directory under the test's, `portmap`): a
//! container gets an address in the subnet, containers and the host reach
//! each other, `-p` works through portmap, and after `rm`, and after kill
//! -9 of berthd, a restart and `rm`, the address is released and no veth
//! is left. Bad conflists are refused.
//!
//! berthd runs in a network namespace of its own, made by the test and
//! deleted with the agent (see tests/bridge.rs): the plugins' bridge,
//! veths and iptables rules live and die there.

mod common;

use std::path::{Path, PathBuf};

use berth::v1 as pb;
use berth::v1::networks_client::NetworksClient;
use common::{eventually, sh, Agent, TestNetns};
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

/// The plugins the tests use (the Debian package's directory).
const PLUGINS: &str = "/usr/lib/cni";
const SUBNET_PREFIX: &str = "10.66.0.";
const GATEWAY: &str = "10.66.0.1";

async fn agent() -> Agent {
    for p in ["bridge", "host-local", "portmap", "loopback"] {
        assert!(
            Path::new(PLUGINS).join(p).is_file(),
            "CNI plugin {p} missing in {PLUGINS}: install containernetworking-plugins"
        );
    }
    let agent = Agent::start_in_netns(&[
        "--bridge-name",
        "bcni0",
        "--bridge-subnet",
        "10.76.0.0/24",
        "--cni-bin-dir",
        PLUGINS,
    ])
    .await;
    agent.import_busybox().await;
    agent
}

fn ns(agent: &Agent) -> &TestNetns {
    agent.netns.as_ref().expect("the agent's network namespace")
}

fn nets(agent: &Agent) -> NetworksClient<Channel> {
    NetworksClient::new(agent.channel.clone())
}

/// host-local's data directory of this agent.
fn ipam_dir(agent: &Agent) -> PathBuf {
    agent.dir.join("cni-ipam")
}

fn conflist(agent: &Agent, with_portmap: bool) -> String {
    let portmap = if with_portmap {
        r#",{"type":"portmap","capabilities":{"portMappings":true}}"#
    } else {
        ""
    };
    format!(
        r#"{{"cniVersion":"1.0.0","name":"cnitest","plugins":[
            {{"type":"bridge","bridge":"cnitest0","isGateway":true,
              "ipam":{{"type":"host-local","dataDir":"{}",
                       "ranges":[[{{"subnet":"{SUBNET_PREFIX}0/24","gateway":"{GATEWAY}"}}]]}}}}
            {portmap}]}}"#,
        ipam_dir(agent).display()
    )
}

async fn create(agent: &Agent, name: &str, list: &str) -> Result<pb::Network, tonic::Status> {
    nets(agent)
        .create_network(pb::CreateNetworkRequest {
            name: name.into(),
            driver: "cni".into(),
            cni_conflist: list.as_bytes().to_vec(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().network.expect("the network"))
}

/// Addresses host-local holds (its files named by address).
fn allocated(agent: &Agent) -> Vec<String> {
    let dir = ipam_dir(agent).join("cnitest");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect()
}

fn veths(agent: &Agent) -> Vec<String> {
    let out = ns(agent).exec(&["ip", "-o", "link", "show", "type", "veth"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
        .collect()
}

/// The address the plugins gave container `name` (from InspectNetwork).
async fn address_of(agent: &Agent, network: &str, name: &str) -> String {
    let r = nets(agent)
        .inspect_network(pb::InspectNetworkRequest {
            network: network.into(),
        })
        .await
        .expect("inspect network")
        .into_inner();
    let ep = r
        .endpoints
        .iter()
        .find(|e| e.container_name == name)
        .unwrap_or_else(|| panic!("{name} not on {network}: {r:?}"));
    assert_eq!(ep.interface, "eth0");
    ep.ip_address.clone()
}

fn httpd(page: &str) -> pb::ContainerSpec {
    sh(&format!(
        "mkdir -p /www && echo {page} > /www/index.html && exec httpd -f -p 80 -h /www"
    ))
}

/// `wget` of `url` from the agent's namespace, until it answers.
async fn fetch_from_host(agent: &Agent, url: &str) -> String {
    let mut last = String::new();
    let ok = eventually(30, async || {
        let out = ns(agent).exec(&["busybox", "wget", "-q", "-O", "-", url]);
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out.status.success()
    })
    .await;
    assert!(ok, "wget {url} from the host: {last}");
    last
}

async fn released(agent: &Agent) {
    let clean = eventually(30, async || {
        allocated(agent).is_empty() && veths(agent).is_empty()
    })
    .await;
    assert!(
        clean,
        "left: addresses {:?}, veths {:?}\n{}",
        allocated(agent),
        veths(agent),
        agent.log()
    );
}

fn refused(e: tonic::Status, code: Code, reason: &str) {
    assert_eq!(e.code(), code, "{e:?}");
    let got = e
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default();
    assert_eq!(got, reason, "{e:?}");
    assert!(e.message().len() < 1000, "{e:?}");
}

#[tokio::test]
async fn a_cni_bridge_network_connects_containers_host_and_ports_and_releases_everything() {
    let mut agent = agent().await;
    let net = create(&agent, "cninet", &conflist(&agent, true))
        .await
        .expect("creating the CNI network");
    assert_eq!(net.driver, "cni");
    assert_eq!(net.cni_plugins, ["bridge", "portmap"]);

    agent
        .run(pb::ContainerSpec {
            name: "web".into(),
            network: "cninet".into(),
            ports: vec![pb::PortMapping {
                host_ip: String::new(),
                host_port: 18081,
                container_port: 80,
                protocol: "tcp".into(),
            }],
            ..httpd("through-cni")
        })
        .await;
    let ip = address_of(&agent, "cninet", "web").await;
    assert!(ip.starts_with(SUBNET_PREFIX), "{ip}");
    assert_eq!(allocated(&agent), vec![ip.clone()]);

    // Another container reaches it; its own address is in the subnet and
    // its /etc/hosts names it.
    let (exit, out, err) = agent
        .run_to_exit(pb::ContainerSpec {
            name: "client".into(),
            network: "cninet".into(),
            ..sh(&format!(
                "until wget -q -O - http://{ip}/; do sleep 0.2; done; \
                 ip -o -4 addr show eth0; grep client /etc/hosts"
            ))
        })
        .await;
    assert_eq!(exit.exit_code, 0, "{out}{err}");
    assert!(out.contains("through-cni"), "{out}");
    assert!(out.contains(&format!("inet {SUBNET_PREFIX}")), "{out}");
    // The host reaches it directly, and through portmap's forward.
    assert!(fetch_from_host(&agent, &format!("http://{ip}/"))
        .await
        .contains("through-cni"));
    assert!(fetch_from_host(&agent, &format!("http://{GATEWAY}:18081/"))
        .await
        .contains("through-cni"));

    // In use: not removable.
    let e = nets(&agent)
        .remove_network(pb::RemoveNetworkRequest {
            network: "cninet".into(),
        })
        .await
        .unwrap_err();
    refused(e, Code::FailedPrecondition, "NETWORK_IN_USE");

    // rm (the client exited already): everything released.
    let listed = agent
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .containers;
    for c in &listed {
        agent.force_remove(&c.id).await;
    }
    released(&agent).await;

    // kill -9 of berthd with a container attached; after the restart it is
    // still attached (CHECKed), and its rm releases it.
    let web = agent
        .run(pb::ContainerSpec {
            name: "web2".into(),
            network: "cninet".into(),
            ..httpd("after-restart")
        })
        .await;
    let ip = address_of(&agent, "cninet", "web2").await;
    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    agent.spawn().await;
    assert_eq!(address_of(&agent, "cninet", "web2").await, ip);
    assert!(fetch_from_host(&agent, &format!("http://{ip}/"))
        .await
        .contains("after-restart"));
    assert!(!agent.log().contains("CNI CHECK"), "{}", agent.log());
    agent.force_remove(&web.id).await;
    released(&agent).await;

    // A container that dies while berthd is away is released at the next
    // start.
    let web = agent
        .run(pb::ContainerSpec {
            name: "web3".into(),
            network: "cninet".into(),
            ..httpd("dies")
        })
        .await;
    let pid = agent.inspect(&web.id).await.pid;
    assert!(pid > 0);
    assert_eq!(allocated(&agent).len(), 1);
    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("killing the container");
    agent.spawn().await;
    released(&agent).await;
    agent.force_remove(&web.id).await;

    nets(&agent)
        .remove_network(pb::RemoveNetworkRequest {
            network: net.id.clone(),
        })
        .await
        .expect("removing the network");
    released(&agent).await;
}

#[tokio::test]
async fn bad_conflists_and_unsupported_requests_are_refused() {
    let agent = agent().await;
    let good = conflist(&agent, false);
    for (what, list) in [
        (
            "unknown plugin",
            good.replace("\"bridge\",", "\"no-such-plugin\","),
        ),
        (
            "path in type",
            good.replace("\"bridge\",", "\"../../bin/sh\","),
        ),
        (
            "absolute ipam",
            good.replace("host-local", "/usr/lib/cni/host-local"),
        ),
        ("huge", format!(r#"{{"pad":"{}"}}"#, "x".repeat(70_000))),
        ("not json", "{".to_string()),
        (
            "no plugins",
            r#"{"cniVersion":"1.0.0","name":"x","plugins":[]}"#.to_string(),
        ),
    ] {
        let e = create(&agent, "bad", &list).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
        assert!(e.message().len() < 1000, "{what}: {e:?}");
    }
    // A subnet is the conflist's business.
    let e = nets(&agent)
        .create_network(pb::CreateNetworkRequest {
            name: "bad".into(),
            driver: "cni".into(),
            subnet: "10.67.0.0/24".into(),
            cni_conflist: good.clone().into_bytes(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let listed = nets(&agent)
        .list_networks(pb::ListNetworksRequest {})
        .await
        .expect("list")
        .into_inner()
        .networks;
    assert!(listed.is_empty(), "{listed:?}");

    // -p without a plugin that takes ports: refused at Create.
    create(&agent, "noports", &good).await.expect("creating");
    let e = agent
        .containers()
        .create(pb::CreateContainerRequest {
            spec: Some(pb::ContainerSpec {
                network: "noports".into(),
                ports: vec![pb::PortMapping {
                    host_ip: String::new(),
                    host_port: 18082,
                    container_port: 80,
                    protocol: "tcp".into(),
                }],
                ..httpd("x")
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("portMappings"), "{e:?}");

    // A plugin that fails ADD fails the start clearly, with nothing left:
    // a bridge name the kernel refuses.
    let failing = good.replace("cnitest0", "this-name-is-far-too-long-for-a-link");
    create(&agent, "failing", &failing).await.expect("creating");
    let c = agent
        .create(pb::ContainerSpec {
            network: "failing".into(),
            ..httpd("x")
        })
        .await;
    let e = agent
        .containers()
        .start(pb::StartContainerRequest { id: c.id.clone() })
        .await
        .unwrap_err();
    refused(e, Code::FailedPrecondition, "CNI_PLUGIN_FAILED");
    agent.force_remove(&c.id).await;
    released(&agent).await;
}
