//! Helpers of the network tests (tests/{connect,connect_first,networks,...}.rs):
//! the Networks client, the agent's test network namespace and what is in
//! it (links, nftables), commands in containers and "reachable yet" waits.

use std::process::Output;

use berth::v1 as pb;
use berth::v1::networks_client::NetworksClient;
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

use super::{eventually, Agent, TestNetns};

/// The Networks client of `agent`.
pub fn nets(agent: &Agent) -> NetworksClient<Channel> {
    NetworksClient::new(agent.channel.clone())
}

/// The network namespace berthd runs in (`Agent::start_in_netns`).
pub fn ns(agent: &Agent) -> &TestNetns {
    agent.netns.as_ref().expect("the agent's network namespace")
}

/// Asserts a refusal: its code, its ErrorInfo reason, a bounded message.
pub fn refused(e: tonic::Status, code: Code, reason: &str) {
    assert_eq!(e.code(), code, "{e:?}");
    let got = e
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default();
    assert_eq!(got, reason, "{e:?}");
    assert!(e.message().len() < 400, "{e:?}");
}

/// Names of links in `ns` starting with `prefix`.
pub fn links(ns: &TestNetns, prefix: &str) -> Vec<String> {
    let out = ns.exec(&["ip", "-o", "link"]);
    link_names(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// The link names of `ip -o link` output (without `@peer`).
pub fn link_names(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
        .collect()
}

/// `nft list ruleset` in `ns`.
pub fn ruleset(ns: &TestNetns) -> String {
    String::from_utf8_lossy(&ns.exec(&["nft", "list", "ruleset"]).stdout).into()
}

/// Runs `script` in container `c` (berthctl exec); its exit code and output.
pub fn exec(agent: &Agent, c: &str, script: &str) -> (i32, String) {
    let o: Output = agent.ctl(&["exec", c, "sh", "-c", script]);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), out)
}

/// Whether container `from` gets `page` from `url` within 20 s.
pub async fn reaches(agent: &Agent, from: &str, url: &str, page: &str) -> bool {
    eventually(20, async || {
        let (code, out) = exec(agent, from, &format!("wget -q -O - {url}"));
        code == 0 && out.contains(page)
    })
    .await
}

/// Whether the agent's namespace gets `page` from `url` now (the host's
/// view of a published port).
pub fn host_gets(agent: &Agent, url: &str, page: &str) -> bool {
    // The host's busybox wget crashes with -T here: timeout(1) bounds it.
    let out = ns(agent).exec(&["timeout", "5", "busybox", "wget", "-q", "-O", "-", url]);
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains(page)
}

/// ConnectContainer.
pub async fn connect(
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

/// DisconnectContainer, not forced.
pub async fn disconnect(agent: &Agent, net: &str, c: &str) -> Result<(), tonic::Status> {
    nets(agent)
        .disconnect_container(pb::DisconnectContainerRequest {
            network: net.into(),
            container: c.into(),
            force: false,
        })
        .await
        .map(|_| ())
}

/// InspectNetwork's endpoints.
pub async fn endpoints(agent: &Agent, net: &str) -> Vec<pb::NetworkEndpoint> {
    nets(agent)
        .inspect_network(pb::InspectNetworkRequest {
            network: net.into(),
        })
        .await
        .expect("inspect network")
        .into_inner()
        .endpoints
}

/// Creates a bridge network `name` with `subnet` ("" for one of the pool).
pub async fn create_network(agent: &Agent, name: &str, subnet: &str) -> pb::Network {
    create_with(
        agent,
        pb::CreateNetworkRequest {
            name: name.into(),
            subnet: subnet.into(),
            ..Default::default()
        },
    )
    .await
}

/// Creates the network `req` asks for, which must succeed.
pub async fn create_with(agent: &Agent, req: pb::CreateNetworkRequest) -> pb::Network {
    let name = req.name.clone();
    nets(agent)
        .create_network(req)
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {e}"))
        .into_inner()
        .network
        .expect("the network")
}

/// Removes network `name`, which must succeed.
pub async fn remove_network(agent: &Agent, name: &str) {
    nets(agent)
        .remove_network(pb::RemoveNetworkRequest {
            network: name.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("removing {name}: {e}"));
}

/// A busybox httpd serving "from-<name>" on port 80, on network `net`.
pub fn httpd(net: &str, name: &str) -> pb::ContainerSpec {
    pb::ContainerSpec {
        name: name.into(),
        network: net.into(),
        ..super::sh(&format!(
            "mkdir -p /www && echo from-{name} > /www/index.html && exec httpd -f -p 80 -h /www"
        ))
    }
}

/// A busybox httpd serving `page` on port 80 (its network still to set,
/// see [`on`]).
pub fn serve(page: &str) -> pb::ContainerSpec {
    super::sh(&format!(
        "mkdir -p /www && echo {page} > /www/index.html && exec httpd -f -p 80 -h /www"
    ))
}

/// `spec` on network `net`.
pub fn on(net: &str, mut spec: pb::ContainerSpec) -> pb::ContainerSpec {
    spec.network = net.into();
    spec
}

/// Every container and network of `agent` removed.
pub async fn remove_all(agent: &Agent) {
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
    for n in nets(agent)
        .list_networks(pb::ListNetworksRequest {})
        .await
        .expect("list networks")
        .into_inner()
        .networks
    {
        nets(agent)
            .remove_network(pb::RemoveNetworkRequest { network: n.id })
            .await
            .expect("remove network");
    }
}
