//! End to end: a CRI pod's network through a real CNI conflist (bridge,
//! host-local, portmap in a network namespace of the test's own), and a
//! pod's shared PID namespace, driven by crictl.

mod common;

use std::path::Path;

use common::cri::{container_config, pod_config, start_in, state, wait_for, Cri, Scratch};
use serde_json::json;

/// The pod network of the CNI test: a bridge of its own and host-local
/// addresses recorded under `ipam`, in berthd's own network namespace.
fn pod_conflist(ipam: &Path) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"pods","plugins":[
            {{"type":"bridge","bridge":"cripods0","isGateway":true,
              "ipam":{{"type":"host-local","dataDir":"{}",
                       "ranges":[[{{"subnet":"10.67.0.0/24","gateway":"10.67.0.1"}}]]}}}},
            {{"type":"portmap","capabilities":{{"portMappings":true}}}}]}}"#,
        ipam.display()
    )
}

/// The addresses host-local has handed out.
fn allocated(ipam: &Path) -> Vec<String> {
    std::fs::read_dir(ipam.join("pods"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

fn pod_ip(cri: &Cri, pod: &str) -> String {
    cri.json(&["inspectp", "-o", "json", pod])["status"]["network"]["ip"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn pods_get_addresses_from_the_cni_network_and_reach_each_other() {
    let scratch = Scratch::new();
    let ipam = scratch.0.join("ipam");
    let mut cri = Cri::start_with_cni(&pod_conflist(&ipam)).await;
    cri.agent.import_busybox().await;
    let logs = scratch.0.join("logs");

    // kubelet's pod CIDR is taken (the conflist's IPAM decides addresses).
    cri.ok(&["update-runtime-config", "--pod-cidr", "10.244.0.0/24"]);

    // A usable configuration: the network is ready.
    let info = cri.json(&["info"]);
    let ready = info["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "NetworkReady"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready["status"], true, "{info}");

    // Two pods, two addresses of the subnet.
    let a_json = scratch.write("a.json", &pod_config("a", &logs));
    let mut b = pod_config("b", &logs);
    b["port_mappings"] = json!([{"protocol": 0, "container_port": 80, "host_port": 18088}]);
    let b_json = scratch.write("b.json", &b);
    let pod_a = cri.ok(&["runp", &a_json]).trim().to_string();
    let pod_b = cri.ok(&["runp", &b_json]).trim().to_string();
    let (ip_a, ip_b) = (pod_ip(&cri, &pod_a), pod_ip(&cri, &pod_b));
    assert!(
        ip_a.starts_with("10.67.0.") && ip_b.starts_with("10.67.0."),
        "{ip_a} {ip_b}"
    );
    assert_ne!(ip_a, ip_b);
    let mut held = allocated(&ipam);
    held.sort();
    let mut want = vec![ip_a.clone(), ip_b.clone()];
    want.sort();
    assert_eq!(held, want);

    // An httpd in b, reached from a container of a by b's address, and
    // from the host through b's hostPort (portmap).
    let web = scratch.write(
        "web.json",
        &container_config(
            "web",
            "mkdir -p /www && echo hello-from-b > /www/index.html && exec httpd -f -p 80 -h /www",
        ),
    );
    start_in(&cri, &pod_b, &web, &b_json);
    let client = scratch.write(
        "client.json",
        &container_config("client", "exec sleep 1000"),
    );
    let client = start_in(&cri, &pod_a, &client, &a_json);
    let url = format!("http://{ip_b}/");
    let mut last = String::new();
    wait_for("b's page from a", || {
        let out = cri.crictl(&["exec", "-s", &client, "wget", "-q", "-O", "-", &url]);
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        last.contains("hello-from-b")
    });
    let netns = cri
        .agent
        .netns
        .as_ref()
        .expect("berthd's network namespace");
    wait_for("b's page through its hostPort", || {
        let out = netns.exec(&[
            "busybox",
            "wget",
            "-q",
            "-O",
            "-",
            "http://10.67.0.1:18088/",
        ]);
        String::from_utf8_lossy(&out.stdout).contains("hello-from-b")
    });

    // A kill -9 of berthd keeps the pods' addresses and their traffic.
    cri.agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    cri.agent.spawn().await;
    assert_eq!(pod_ip(&cri, &pod_b), ip_b);
    assert_eq!(
        allocated(&ipam).len(),
        2,
        "an address was released by the restart"
    );
    let out = cri.ok(&["exec", "-s", &client, "wget", "-q", "-O", "-", &url]);
    assert!(out.contains("hello-from-b"), "{out}");
    let netns = cri
        .agent
        .netns
        .as_ref()
        .expect("berthd's network namespace");

    // Stopping a pod releases its address; removing both leaves nothing.
    cri.ok(&["stopp", &pod_a]);
    assert_eq!(allocated(&ipam), vec![ip_b.clone()]);
    assert_eq!(pod_ip(&cri, &pod_a), "");
    cri.ok(&["rmp", &pod_a]);
    cri.ok(&["rmp", "-f", &pod_b]);
    assert_eq!(allocated(&ipam), Vec::<String>::new());
    // DEL ran in the pods' namespaces while they were pinned: no veth is
    // left for the kernel to tear down later.
    let veths = netns.exec(&["ip", "-o", "link", "show", "type", "veth"]);
    assert_eq!(String::from_utf8_lossy(&veths.stdout), "", "veths left");
}

/// The host pids of the PID holders (`berthd __pod-pause`) of this berthd.
fn holders(cri: &Cri) -> Vec<i32> {
    let needle = cri.agent.state_dir.display().to_string();
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| {
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let cmd = String::from_utf8_lossy(&cmd);
                    cmd.contains("\0__pod-pause\0") && cmd.contains(&needle)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_pod_without_namespace_options_shares_one_pid_namespace() {
    let cri = Cri::start().await;
    cri.agent.import_busybox().await;
    let scratch = Scratch::new();
    // cri-api's defaults, as critest sends them: every namespace the pod's.
    let mut pod = pod_config("pidpod", &scratch.0.join("logs"));
    pod["linux"] = json!({});
    let pod_json = scratch.write("pod.json", &pod);
    let pod = cri.ok(&["runp", &pod_json]).trim().to_string();
    let inspect = cri.json(&["inspectp", "-o", "json", &pod]);
    assert_eq!(
        inspect["status"]["linux"]["namespaces"]["options"]["pid"], "POD",
        "{inspect}"
    );
    assert_eq!(holders(&cri).len(), 1, "one holder for the pod");
    // It holds no copy of the host's mounts (other pods' namespace pins
    // and /dev/shm would live on in one): its root is its only mount.
    let holder = holders(&cri)[0];
    let mounts = std::fs::read_to_string(format!("/proc/{holder}/mountinfo"))
        .expect("the holder's mountinfo");
    assert_eq!(mounts.lines().count(), 1, "the holder's mounts: {mounts}");

    let mut a = container_config("a", "exec sleep 1001");
    a["linux"]["security_context"] = json!({});
    let mut b = container_config("b", "exec sleep 1002");
    b["linux"]["security_context"] = json!({});
    let a = start_in(&cri, &pod, &scratch.write("a.json", &a), &pod_json);
    let b = start_in(&cri, &pod, &scratch.write("b.json", &b), &pod_json);
    wait_for("both running", || {
        state(&cri, &a) == "CONTAINER_RUNNING" && state(&cri, &b) == "CONTAINER_RUNNING"
    });
    // Each sees the other's process; neither is PID 1 (the holder is).
    let ps = cri.ok(&["exec", "-s", &a, "ps", "-o", "pid,args"]);
    assert!(
        ps.contains("sleep 1002") && ps.contains("sleep 1001"),
        "{ps}"
    );
    let own_pid_ns = |id: &str| cri.ok(&["exec", "-s", id, "readlink", "/proc/self/ns/pid"]);
    assert_eq!(own_pid_ns(&a), own_pid_ns(&b));
    // Not even its namespaces can be read (it is not dumpable).
    let err = cri.fails(&["exec", "-s", &a, "readlink", "/proc/1/ns/pid"]);
    assert!(err.contains("exited with 1"), "{err}");
    // PID 1 shows the pod nothing of the host: not its root, not its files.
    let out = cri.crictl(&["exec", "-s", &a, "ls", "/proc/1/root/"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        !listing.contains("etc") && !listing.contains("usr"),
        "{listing}"
    );

    // Even a container that may ptrace finds an empty root there.
    let mut tracer = container_config("tracer", "exec sleep 1003");
    tracer["linux"]["security_context"] =
        json!({"capabilities": {"add_capabilities": ["SYS_PTRACE"]}});
    let tracer = start_in(
        &cri,
        &pod,
        &scratch.write("tracer.json", &tracer),
        &pod_json,
    );
    wait_for("tracer running", || {
        state(&cri, &tracer) == "CONTAINER_RUNNING"
    });
    let root = cri.ok(&["exec", "-s", &tracer, "ls", "-A", "/proc/1/root/"]);
    assert_eq!(root.trim(), "", "the holder's root shows: {root}");

    // The holder ends with the pod's stop; nothing is left after rmp.
    cri.ok(&["stopp", &pod]);
    wait_for("the holder's end", || holders(&cri).is_empty());
    cri.ok(&["rmp", &pod]);
    assert!(!cri.agent.state_dir.join("cri/pods").join(&pod).exists());
}
