//! End to end: `--sysctl` (ContainerSpec.sysctls) sets kernel parameters of
//! the container's own namespaces, never the host's, and refuses the rest
//! before anything is made.

mod common;

use common::Agent;

fn host(path: &str) -> String {
    std::fs::read_to_string(path).expect("the host's sysctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A value unlike the host's, so the test sees the container's own.
fn other_than(host: &str, a: &'static str, b: &'static str) -> &'static str {
    if host.trim() == a {
        b
    } else {
        a
    }
}

#[tokio::test]
async fn sysctls_of_the_containers_namespaces_are_set_there_only() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let port_file = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
    let shm_file = "/proc/sys/kernel/shm_rmid_forced";
    let lo_file = "/proc/sys/net/ipv4/conf/lo/accept_local";
    let (host_port, host_shm, host_lo, host_domain) = (
        host(port_file),
        host(shm_file),
        host(lo_file),
        host("/proc/sys/kernel/domainname"),
    );
    let port = other_than(&host_port, "42", "43");
    let shm = other_than(&host_shm, "1", "0");
    let lo = other_than(&host_lo, "1", "0");
    let args = [
        format!("net.ipv4.ip_unprivileged_port_start={port}"),
        format!("kernel.shm_rmid_forced={shm}"),
        // The slash form, as sysctl(8) takes it for names with dots.
        format!("net/ipv4/conf/lo/accept_local={lo}"),
        "kernel.domainname=berth.test".to_string(),
    ];
    for network in ["none", "bridge"] {
        let mut cmd = vec!["run", "-d", "--network", network];
        for a in &args {
            cmd.extend(["--sysctl", a.as_str()]);
        }
        let name = format!("tuned-{network}");
        cmd.extend(["--name", &name, "busybox", "sh", "-c"]);
        cmd.push("cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shm_rmid_forced /proc/sys/net/ipv4/conf/lo/accept_local /proc/sys/kernel/domainname; exec sleep 1000");
        let run = agent.ctl(&cmd);
        assert!(run.status.success(), "{}", text(&run.stderr));
        let want = format!("{port}\n{shm}\n{lo}\nberth.test\n");
        let logged = common::eventually(60, async || {
            text(&agent.ctl(&["logs", &name]).stdout) == want
        })
        .await;
        assert!(logged, "{}", text(&agent.ctl(&["logs", &name]).stdout));
        // Its execs share the namespaces, and the container cannot change
        // them itself: /proc/sys is read-only inside.
        let write = agent.ctl(&[
            "exec",
            &name,
            "sh",
            "-c",
            "echo 1024 > /proc/sys/net/ipv4/ip_unprivileged_port_start",
        ]);
        assert!(!write.status.success(), "{write:?}");
        let exec = agent.ctl(&["exec", &name, "cat", port_file]);
        assert_eq!(text(&exec.stdout), format!("{port}\n"));
        let inspect = agent.inspect(&name).await;
        let spec = inspect.spec.expect("spec");
        assert_eq!(spec.sysctls.len(), 4, "{:?}", spec.sysctls);
        assert_eq!(spec.sysctls["kernel.domainname"], "berth.test");
        agent.force_remove(&name).await;
    }
    assert_eq!(host(port_file), host_port, "the host's changed");
    assert_eq!(host(shm_file), host_shm, "the host's changed");
    assert_eq!(host(lo_file), host_lo, "the host's changed");
    assert_eq!(
        host("/proc/sys/kernel/domainname"),
        host_domain,
        "the host's changed"
    );
    agent.assert_clean().await;
}

#[tokio::test]
async fn sysctls_of_the_host_are_refused_and_nothing_is_made() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    for (args, why) in [
        (
            vec!["--sysctl", "vm.overcommit_memory=1"],
            "not a sysctl of the container's own namespaces",
        ),
        (
            vec!["--sysctl", "kernel.core_pattern=|/tmp/x"],
            "not a sysctl of the container's own namespaces",
        ),
        (
            vec!["--sysctl", "net/../../kernel/core_pattern=x"],
            "a sysctl name is",
        ),
        (vec!["--sysctl", "kernel.hostname=x"], "set the hostname"),
        (
            vec!["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"],
            "on the host's network",
        ),
        (
            vec!["--sysctl", "net.ipv4.ip_forward=1\u{1b}[2J"],
            "without control characters",
        ),
    ] {
        let mut cmd = vec!["run", "--rm"];
        cmd.extend(args.iter().copied());
        cmd.extend(["busybox", "true"]);
        let out = agent.ctl(&cmd);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = text(&out.stderr);
        assert!(
            err.contains("InvalidArgument") || err.contains("invalid"),
            "{err}"
        );
        assert!(err.contains(why), "{args:?}: {err}");
    }
    let ps = agent.ctl(&["ps", "-a", "-q"]);
    assert_eq!(text(&ps.stdout), "", "a refused container was made");

    // `container:x` where x is on the host's network is the host's network
    // too: refused at the start. (The value is the host's own, so even a
    // regression here changes nothing on this machine.)
    let forward = host("/proc/sys/net/ipv4/ip_forward");
    let hostc = agent.ctl(&[
        "run",
        "-d",
        "--name",
        "hostc",
        "--network",
        "host",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(hostc.status.success(), "{}", text(&hostc.stderr));
    let setting = format!("net.ipv4.ip_forward={}", forward.trim());
    let out = agent.ctl(&[
        "run",
        "--rm",
        "--network",
        "container:hostc",
        "--sysctl",
        &setting,
        "busybox",
        "true",
    ]);
    assert!(
        !out.status.success(),
        "a net sysctl reached the host's namespace"
    );
    assert!(
        text(&out.stderr).contains("is the host's"),
        "{}",
        text(&out.stderr)
    );
    agent.force_remove("hostc").await;

    // A sysctl of its namespaces that this kernel does not have fails the
    // start, naming it.
    let out = agent.ctl(&[
        "run",
        "--rm",
        "--sysctl",
        "net.ipv4.no_such_sysctl=1",
        "busybox",
        "true",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("setting /proc/sys/net/ipv4/no_such_sysctl"),
        "{err}"
    );
    agent.assert_clean().await;
}
