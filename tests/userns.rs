//! End to end: `--userns auto` (issue 18, user namespaces). The container's
//! root is uid 0 in a user namespace of its own whose ids are a range of
//! host ids berthd allocated for it: no other container's, kept in its
//! record across berthd restarts, free again once it is removed. The image
//! layers appear owned by the container's ids through idmapped mounts, and
//! nothing of the image store is chowned.

mod common;

use std::os::unix::fs::MetadataExt;

use berth::v1 as pb;
use common::{sh, Agent};

/// `script` in busybox, in a user namespace of its own.
fn auto(script: &str) -> pb::ContainerSpec {
    let mut spec = sh(script);
    spec.security = Some(pb::SecurityOptions {
        userns: "auto".into(),
        ..Default::default()
    });
    spec
}

/// Whether this kernel runs `--userns auto` (Linux 6.15 or later). When it
/// does not, proves the clear refusal instead: Create is
/// FAILED_PRECONDITION, "not supported yet", and nothing is created.
async fn supported(agent: &Agent) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    if (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (6, 15) {
        return true;
    }
    let e = agent
        .containers()
        .create(pb::CreateContainerRequest {
            spec: Some(auto("true")),
        })
        .await
        .expect_err("--userns auto on a kernel before 6.15");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("not supported yet"), "{e:?}");
    let listed = agent
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.containers.is_empty(), "{listed:?}");
    eprintln!("kernel {release}: --userns auto refused as not supported, as it must be");
    false
}

/// The host ids of the container's id 0, checked against what the kernel
/// says of its process.
fn mapping(c: &pb::Container) -> pb::UserNamespaceMapping {
    c.userns
        .unwrap_or_else(|| panic!("container {} has no user namespace mapping", c.id))
}

/// The `Uid:` or `Gid:` line of a host process's status, as its four ids.
fn status_ids(pid: i32, key: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in {status}"));
    line[key.len()..]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

fn disjoint(a: &pb::UserNamespaceMapping, b: &pb::UserNamespaceMapping) -> bool {
    let apart = |x: u32, y: u32| {
        let (x, y) = (u64::from(x), u64::from(y));
        x + u64::from(a.size) <= y || y + u64::from(b.size) <= x
    };
    apart(a.host_uid, b.host_uid) && apart(a.host_gid, b.host_gid)
}

/// Container root is uid 0 inside and an unprivileged host uid outside: its
/// uid_map, its process's ids seen from the host, the owner on the host of
/// a file it makes; the image's files are its root's (idmapped), while the
/// image store on the host still belongs to host root.
#[tokio::test]
async fn auto_runs_container_root_as_an_unprivileged_host_range() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    if !supported(&agent).await {
        return;
    }
    let c = agent
        .run(auto(
            "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; \
             stat -c 'image %u:%g' /bin/busybox; echo hi > /made; \
             stat -c 'made %u:%g' /made; echo ready; exec sleep 1000",
        ))
        .await;
    agent.wait_for_output(&c.id, "ready").await;
    let m = mapping(&agent.inspect(&c.id).await);
    assert_eq!(m.size, 65536);
    assert!(m.host_uid >= 65536 && m.host_gid >= 65536, "{m:?}");

    let (out, err) = agent.logs(&c.id).await;
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0"], "id -u: {out}{err}");
    assert_eq!(lines[1], ["0"], "id -g: {out}{err}");
    let uid = m.host_uid.to_string();
    let gid = m.host_gid.to_string();
    assert_eq!(lines[2], ["0", uid.as_str(), "65536"], "uid_map: {out}");
    assert_eq!(lines[3], ["0", gid.as_str(), "65536"], "gid_map: {out}");
    // Without the idmapped layers the image's files would be nobody's
    // (65534) inside.
    assert!(out.contains("image 0:0"), "{out}");
    assert!(out.contains("made 0:0"), "{out}");

    // On the host, its process is the mapped ids, never root.
    let pid = agent.inspect(&c.id).await.pid;
    assert!(pid > 0);
    assert_eq!(status_ids(pid, "Uid:"), vec![m.host_uid; 4]);
    assert_eq!(status_ids(pid, "Gid:"), vec![m.host_gid; 4]);

    // The file it made belongs on the host to its mapped root.
    let upper = agent.state_dir.join("containers").join(&c.id).join("upper");
    let made = std::fs::metadata(upper.join("made")).unwrap();
    assert_eq!((made.uid(), made.gid()), (m.host_uid, m.host_gid));

    // Nothing of the image store was chowned: every file there is still
    // host root's.
    let mut stack = vec![agent.state_dir.join("images")];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            assert!(
                md.uid() < 65536 && md.gid() < 65536,
                "{} is owned by {}:{}",
                e.path().display(),
                md.uid(),
                md.gid()
            );
            seen += 1;
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    assert!(seen > 10, "the image store has {seen} entries");

    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

/// Container root cannot do what host root can: its capabilities are its
/// user namespace's, so making a device node (host root's alone; a default
/// container's root may, on its `nodev` root) fails, and so does giving a
/// file to a uid it does not map.
#[tokio::test]
async fn auto_root_has_no_host_privileges() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    if !supported(&agent).await {
        return;
    }
    let (exit, out, err) = agent
        .run_to_exit(auto(
            "mknod /dev-null-copy c 1 3 && echo mknod ok || echo mknod refused; \
             touch /f; chown 70000 /f && echo chown ok || echo chown refused",
        ))
        .await;
    assert_eq!(exit.exit_code, 0, "{out}{err}");
    // CAP_MKNOD is in its (namespaced) set, but a device node is host
    // root's to make.
    assert!(out.contains("mknod refused"), "{out}{err}");
    assert!(out.contains("chown refused"), "{out}{err}");
    // The same in a default container: host root may.
    let (_, out, err) = agent
        .run_to_exit(sh("mknod /dev-null-copy c 1 3 && echo mknod ok"))
        .await;
    assert!(out.contains("mknod ok"), "{out}{err}");
}

/// Two containers never share ids; a range stays its container's across a
/// berthd restart and is free again once the container is removed.
#[tokio::test]
async fn ranges_are_disjoint_kept_across_restarts_and_released_on_remove() {
    let mut agent = Agent::start().await;
    agent.import_busybox().await;
    if !supported(&agent).await {
        return;
    }
    let a = agent.create(auto("true")).await;
    let b = agent.create(auto("true")).await;
    let (ma, mb) = (mapping(&a), mapping(&b));
    assert!(disjoint(&ma, &mb), "{ma:?} {mb:?}");

    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    agent.spawn().await;
    assert_eq!(mapping(&agent.inspect(&a.id).await), ma);
    assert_eq!(mapping(&agent.inspect(&b.id).await), mb);
    let c = agent.create(auto("true")).await;
    let mc = mapping(&c);
    assert!(disjoint(&mc, &ma) && disjoint(&mc, &mb), "{mc:?}");

    // a's range is free again: the next container gets it (the lowest free
    // range), and runs in it.
    agent.force_remove(&a.id).await;
    let d = agent.run(auto("cat /proc/self/uid_map")).await;
    assert_eq!(mapping(&d), ma);
    agent.wait(&d.id).await;
    let out = agent.logs(&d.id).await.0;
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", ma.host_uid.to_string().as_str(), "65536"]
    );
    for id in [&b.id, &c.id, &d.id] {
        agent.force_remove(id).await;
    }
    agent.assert_clean().await;
}

/// A container that writes into its layer, stopped and started again, finds
/// its files and still owns them (the upper dir is its own across starts).
#[tokio::test]
async fn a_restarted_container_keeps_its_files_and_ids() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    if !supported(&agent).await {
        return;
    }
    let c = agent
        .run(auto(
            "if [ -e /kept ]; then stat -c 'kept %u' /kept; else touch /kept; fi; \
             mkdir -p /etc/new && echo again > /etc/new/f && cat /etc/new/f",
        ))
        .await;
    assert_eq!(agent.wait(&c.id).await.exit.unwrap().exit_code, 0);
    agent
        .containers()
        .start(pb::StartContainerRequest { id: c.id.clone() })
        .await
        .expect("second start");
    assert_eq!(agent.wait(&c.id).await.exit.unwrap().exit_code, 0);
    let (out, err) = agent.logs(&c.id).await;
    assert!(out.contains("kept 0"), "{out}{err}");
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

/// Without `userns` nothing changes: container root is host root.
#[tokio::test]
async fn default_is_the_hosts_user_namespace() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let c = agent.run(sh("cat /proc/self/uid_map")).await;
    assert!(c.userns.is_none());
    assert_eq!(agent.wait(&c.id).await.exit.unwrap().exit_code, 0);
    let out = agent.logs(&c.id).await.0;
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "4294967295"]
    );
    agent.force_remove(&c.id).await;
}

/// `berthctl run --userns auto` and `--userns host`; inspect shows the
/// mapping.
#[tokio::test]
async fn berthctl_userns_flag() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    if !supported(&agent).await {
        return;
    }
    let out = agent.ctl(&[
        "run",
        "--name",
        "mapped",
        "--userns",
        "auto",
        "busybox",
        "--",
        "cat",
        "/proc/self/uid_map",
    ]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(fields[0], "0", "{stdout}");
    assert_ne!(fields[1], "0", "{stdout}");
    let inspect = agent.ctl(&["inspect", "-o", "json", "mapped"]);
    assert!(inspect.status.success(), "{inspect:?}");
    let json = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        json.contains(&format!("\"hostUid\":{}", fields[1])),
        "{json}"
    );

    let out = agent.ctl(&[
        "run",
        "--rm",
        "--userns",
        "host",
        "busybox",
        "--",
        "cat",
        "/proc/self/uid_map",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("4294967295"));

    let out = agent.ctl(&[
        "run", "--rm", "--userns", "keep-id", "busybox", "--", "true",
    ]);
    assert!(!out.status.success());
    agent.ctl(&["rm", "-f", "mapped"]);
    agent.assert_clean().await;
}

/// What cannot be had with a user namespace of its own is refused at
/// Create with the right status, and creates nothing.
#[tokio::test]
async fn what_userns_cannot_have_is_refused_clearly() {
    let agent = Agent::start_with(&["--allow-privileged"]).await;
    agent.import_busybox().await;
    let kernel_runs_it = supported(&agent).await;
    let create = |spec: pb::ContainerSpec| {
        let mut client = agent.containers();
        async move {
            client
                .create(pb::CreateContainerRequest { spec: Some(spec) })
                .await
                .expect_err("create must fail")
        }
    };
    let mut bad = auto("true");
    bad.security.as_mut().unwrap().userns = "keep-id".repeat(100);
    let e = create(bad).await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().len() < 300, "{}", e.message());

    let mut privileged = auto("true");
    privileged.security.as_mut().unwrap().privileged = true;
    let e = create(privileged).await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");

    let mut host = auto("true");
    host.network = "host".into();
    let e = create(host).await;
    let expected = if kernel_runs_it {
        tonic::Code::Unimplemented
    } else {
        tonic::Code::FailedPrecondition
    };
    assert_eq!(e.code(), expected, "{e:?}");
    assert!(e.message().contains("not supported yet"), "{e:?}");

    let listed = agent
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.containers.is_empty(), "{listed:?}");
}
