//! End to end: dual-stack (IPv4 + IPv6) user-defined networks (issue 19).
//! Containers on one reach each other over IPv6 by address and by name,
//! the host reaches them, containers of another network do not; their
//! IPv6 addresses survive kill -9 of berthd; and nothing is left behind.
//!
//! berthd runs in a network namespace of its own, made by the test and
//! deleted with the agent (as in tests/networks.rs): bridges, veths,
//! addresses and nftables tables live and die there.

mod common;

use berth::v1 as pb;
use common::net::{links, nets, ns, on, refused, remove_all, serve as httpd};
use common::{eventually, sh, Agent, TestNetns};
use tonic::Code;

async fn agent() -> Agent {
    let agent =
        Agent::start_in_netns(&["--bridge-name", "bst0", "--bridge-subnet", "10.76.0.0/24"]).await;
    agent.import_busybox().await;
    agent
}

async fn create6(agent: &Agent, name: &str, subnet6: &str) -> pb::Network {
    nets(agent)
        .create_network(pb::CreateNetworkRequest {
            name: name.into(),
            enable_ipv6: true,
            ipv6_subnet: subnet6.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {e}"))
        .into_inner()
        .network
        .expect("the network")
}

fn out(ns: &TestNetns, args: &[&str]) -> String {
    String::from_utf8_lossy(&ns.exec(args).stdout).into()
}

async fn assert_no_leftovers(agent: &Agent, prefixes: &[&str]) {
    let ns = ns(agent);
    let clean = async || {
        let addrs = out(ns, &["ip", "-o", "-6", "addr"]);
        links(ns, "br-").is_empty()
            && links(ns, "bth").is_empty()
            && links(ns, "bt").is_empty()
            && !out(ns, &["nft", "list", "ruleset"]).contains("table inet berth")
            && !prefixes.iter().any(|p| addrs.contains(p))
    };
    let ok = eventually(30, clean).await;
    assert!(
        ok,
        "leftovers: links {:?}, addresses:\n{}\nruleset:\n{}",
        links(ns, "b"),
        out(ns, &["ip", "-o", "-6", "addr"]),
        out(ns, &["nft", "list", "ruleset"])
    );
}

#[tokio::test]
async fn dual_stack_containers_reach_each_other_over_ipv6_and_not_across_networks() {
    let agent = agent().await;
    let six = create6(&agent, "six", "fd00:99::/64").await;
    assert_eq!(
        (
            six.enable_ipv6,
            six.ipv6_subnet.as_str(),
            six.ipv6_gateway.as_str(),
            six.subnet.as_str()
        ),
        (true, "fd00:99::/64", "fd00:99::1", "10.89.0.0/24")
    );
    // Without a prefix: the first /64 of the pool.
    let other = create6(&agent, "other", "").await;
    assert_eq!(other.ipv6_subnet, "fd62:6572:7468::/64");

    let web = agent
        .run(pb::ContainerSpec {
            name: "web".into(),
            ..on("six", httpd("from-web"))
        })
        .await;
    let ws = agent
        .inspect(&web.id)
        .await
        .network_settings
        .expect("settings");
    assert_eq!(
        (
            ws.ipv6_address.as_str(),
            ws.ipv6_prefix_length,
            ws.ipv6_gateway.as_str()
        ),
        ("fd00:99::2", 64, "fd00:99::1"),
        "{ws:?}"
    );

    // Same network: by IPv6 address (httpd on [::]:80), and by name, the
    // name resolving to the IPv6 address for an IPv6 lookup.
    let (exit, stdout, err) = agent
        .run_to_exit(on(
            "six",
            sh(
                "until wget -q -O - 'http://[fd00:99::2]:80/'; do sleep 0.2; done; \
                ping -6 -c 1 -W 5 web; ip -6 route; ip -o -6 addr show eth0; cat /etc/hosts",
            ),
        ))
        .await;
    assert_eq!(exit.exit_code, 0, "{stdout}{err}");
    assert!(stdout.contains("from-web"), "{stdout}");
    assert!(stdout.contains("PING web (fd00:99::2)"), "{stdout}");
    assert!(
        stdout.contains("default via fd00:99::1 dev eth0"),
        "{stdout}"
    );
    assert!(stdout.contains("inet6 fd00:99::3/64"), "{stdout}");
    // Usable at once: not "tentative" (its link-local address may be).
    assert!(
        !stdout
            .lines()
            .any(|l| l.contains("fd00:99::3/64") && l.contains("tentative")),
        "nodad: {stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("fd00:99::2\t") && l.ends_with(" web")),
        "{stdout}"
    );

    // The host (the agent's namespace) reaches it over IPv6.
    let reached = eventually(30, async || {
        ns(&agent)
            .exec(&["busybox", "wget", "-q", "-O", "-", "http://[fd00:99::2]/"])
            .status
            .success()
    })
    .await;
    assert!(reached, "the host does not reach the container over IPv6");

    // Another dual-stack network: neither the name nor the address.
    let (exit, stdout, err) = agent
        .run_to_exit(on(
            "other",
            sh(
                "grep -w web /etc/hosts; ping -6 -c 1 -W 1 fd00:99::2 || echo unreachable; \
                ip -o -6 addr show eth0",
            ),
        ))
        .await;
    assert_eq!(exit.exit_code, 0, "{stdout}{err}");
    assert!(stdout.contains("unreachable"), "{stdout}{err}");
    assert!(stdout.contains("inet6 fd62:6572:7468::2/64"), "{stdout}");

    // A container connected later gets an IPv6 address on eth1 too.
    let late = agent
        .run(pb::ContainerSpec {
            name: "late".into(),
            ..on(
                "other",
                sh(
                    "until ip -o -6 addr show eth1 | grep -q fd00:99::; do sleep 0.2; done; \
                    wget -q -O - 'http://[fd00:99::2]/'; sleep 600",
                ),
            )
        })
        .await;
    let ep = nets(&agent)
        .connect_container(pb::ConnectContainerRequest {
            network: "six".into(),
            container: "late".into(),
            ..Default::default()
        })
        .await
        .expect("connect")
        .into_inner()
        .endpoint
        .expect("endpoint");
    // The lowest free: ::3 is the exited client's, kept until its rm.
    assert_eq!(
        (ep.interface.as_str(), ep.ipv6_address.as_str()),
        ("eth1", "fd00:99::4")
    );
    agent.wait_for_output(&late.id, "from-web").await;

    // While containers are on it, its table masquerades its IPv6 prefix.
    let rules = out(ns(&agent), &["nft", "list", "ruleset"]);
    assert!(
        rules.contains(&format!(
            "ip6 saddr fd00:99::/64 oifname != \"{}\" masquerade",
            six.bridge
        )),
        "{rules}"
    );
    let inspected = nets(&agent)
        .inspect_network(pb::InspectNetworkRequest {
            network: "six".into(),
        })
        .await
        .expect("inspect")
        .into_inner();
    let mut v6: Vec<_> = inspected
        .endpoints
        .iter()
        .map(|e| e.ipv6_address.as_str())
        .collect();
    v6.sort();
    assert_eq!(v6, ["fd00:99::2", "fd00:99::3", "fd00:99::4"]);

    remove_all(&agent).await;
    assert_no_leftovers(&agent, &["fd00:99:", "fd62:6572:7468:"]).await;
}

/// An internal dual-stack network reaches nothing outside over IPv6
/// either, while a non-internal one is masqueraded out.
#[tokio::test]
async fn an_internal_dual_stack_network_has_no_ipv6_outbound() {
    let agent = agent().await;
    let outside = TestNetns::new();
    let run = |ns: &TestNetns, args: &[&str]| {
        let o = ns.exec(args);
        assert!(o.status.success(), "{args:?}: {o:?}");
    };
    let a = ns(&agent);
    run(
        a,
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
            &outside.name,
        ],
    );
    run(
        a,
        &[
            "ip",
            "addr",
            "add",
            "fd00:250::1/64",
            "dev",
            "upl0",
            "nodad",
        ],
    );
    run(a, &["ip", "link", "set", "upl0", "up"]);
    run(
        &outside,
        &[
            "ip",
            "addr",
            "add",
            "fd00:250::2/64",
            "dev",
            "upl1",
            "nodad",
        ],
    );
    run(&outside, &["ip", "link", "set", "upl1", "up"]);
    create6(&agent, "open6", "fd00:98::/64").await;
    nets(&agent)
        .create_network(pb::CreateNetworkRequest {
            name: "closed6".into(),
            internal: true,
            enable_ipv6: true,
            ipv6_subnet: "fd00:97::/64".into(),
            ..Default::default()
        })
        .await
        .expect("internal network");
    // The outside has no route back to fd00:98::/64: only the masquerade
    // gets an answer back.
    let (exit, stdout, err) = agent
        .run_to_exit(on("open6", sh("ping -6 -c 1 -W 5 fd00:250::2")))
        .await;
    assert_eq!(exit.exit_code, 0, "IPv6 outbound: {stdout}{err}");
    let (_, stdout, err) = agent
        .run_to_exit(on(
            "closed6",
            sh("ping -6 -c 1 -W 1 fd00:250::2 || echo unreachable"),
        ))
        .await;
    assert!(stdout.contains("unreachable"), "{stdout}{err}");
    remove_all(&agent).await;
    ns(&agent).exec(&["ip", "link", "del", "upl0"]);
    assert_no_leftovers(&agent, &["fd00:98:", "fd00:97:"]).await;
}

/// After kill -9 of berthd and a restart, IPv6 addresses are as they were
/// and claimed again; removing everything leaves nothing.
#[tokio::test]
async fn ipv6_addresses_survive_kill_9_and_nothing_leaks() {
    let mut agent = agent().await;
    create6(&agent, "keep6", "fd00:91::/112").await;
    let web = agent
        .run(pb::ContainerSpec {
            name: "web".into(),
            ..on("keep6", httpd("still-here"))
        })
        .await;
    let before = agent.inspect(&web.id).await.network_settings;
    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    agent.spawn().await;
    assert_eq!(agent.inspect(&web.id).await.network_settings, before);
    let (exit, stdout, err) = agent
        .run_to_exit(on(
            "keep6",
            sh(
                "until wget -q -O - 'http://[fd00:91::2]/'; do sleep 0.2; done; \
                ip -o -6 addr show eth0",
            ),
        ))
        .await;
    assert_eq!(exit.exit_code, 0, "{stdout}{err}");
    assert!(stdout.contains("still-here"), "{stdout}");
    assert!(stdout.contains("inet6 fd00:91::3/112"), "{stdout}");
    // The prefix is still taken after the restart.
    let e = nets(&agent)
        .create_network(pb::CreateNetworkRequest {
            name: "again".into(),
            enable_ipv6: true,
            ipv6_subnet: "fd00:91::/64".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    refused(e, Code::FailedPrecondition, "NETWORK_SUBNET_OVERLAP");
    remove_all(&agent).await;
    assert_no_leftovers(&agent, &["fd00:91:"]).await;
}

#[tokio::test]
async fn bad_ipv6_requests_are_refused_and_change_nothing() {
    let agent = agent().await;
    create6(&agent, "taken", "fd00:1::/64").await;
    let req = |name: &str, ipv6: bool, subnet: &str, subnet6: &str, gateway6: &str| {
        pb::CreateNetworkRequest {
            name: name.into(),
            enable_ipv6: ipv6,
            subnet: subnet.into(),
            ipv6_subnet: subnet6.into(),
            ipv6_gateway: gateway6.into(),
            ..Default::default()
        }
    };
    let mut c = nets(&agent);
    for bad in [
        req("x", false, "fd00:2::/64", "", ""),
        req("x", false, "", "fd00:2::/64", ""),
        req("x", true, "", "fd00:2::/56", ""),
        req("x", true, "", "fd00:2::1/64", ""),
        req("x", true, "", "fe80::/64", ""),
        req("x", true, "", "fd00:2::/64", "fd00:3::1"),
        req("x", true, "", "", "fd00:2::1"),
        req("x", true, "", &"f".repeat(100_000), ""),
    ] {
        let e = c.create_network(bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().len() < 400, "{e:?}");
    }
    let e = c
        .create_network(req("x", true, "", "fd00:1:0:0:8000::/66", ""))
        .await
        .unwrap_err();
    refused(e, Code::FailedPrecondition, "NETWORK_SUBNET_OVERLAP");

    // A host with IPv6 disabled: a clear FAILED_PRECONDITION.
    let set = |v: &str| {
        let o = ns(&agent).exec(&[
            "sysctl",
            "-w",
            &format!("net.ipv6.conf.default.disable_ipv6={v}"),
        ]);
        assert!(o.status.success(), "{o:?}");
    };
    set("1");
    let e = c.create_network(req("x", true, "", "", "")).await;
    set("0");
    refused(e.unwrap_err(), Code::FailedPrecondition, "NETWORK_NO_IPV6");

    let listed = c
        .list_networks(pb::ListNetworksRequest {})
        .await
        .expect("list")
        .into_inner()
        .networks;
    assert_eq!(
        listed.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["taken"]
    );
    remove_all(&agent).await;
    assert_no_leftovers(&agent, &["fd00:1:"]).await;
}

#[tokio::test]
async fn berthctl_creates_a_dual_stack_network() {
    use common::cli::{expect_failure, ok};
    let agent = agent().await;
    let id = ok(
        &agent,
        &[
            "network",
            "create",
            "--ipv6",
            "--subnet",
            "10.95.0.0/24",
            "--subnet",
            "fd00:95::/64",
            "--gateway",
            "fd00:95::fe",
            "cli6",
        ],
    );
    let n = nets(&agent)
        .inspect_network(pb::InspectNetworkRequest {
            network: id.trim().into(),
        })
        .await
        .expect("inspect")
        .into_inner()
        .network
        .expect("network");
    assert_eq!(
        (
            n.subnet.as_str(),
            n.ipv6_subnet.as_str(),
            n.ipv6_gateway.as_str()
        ),
        ("10.95.0.0/24", "fd00:95::/64", "fd00:95::fe")
    );
    let ls = ok(&agent, &["network", "ls"]);
    assert!(ls.contains("10.95.0.0/24,fd00:95::/64"), "{ls}");
    let two = [
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "fd00:96::/64",
        "--subnet",
        "fd00:97::/64",
        "two",
    ];
    expect_failure(&agent.ctl(&two), &two, 1, &["at most one IPv6"]);
    remove_all(&agent).await;
}
