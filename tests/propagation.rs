//! End to end: bind propagation (issue 21). A mount the host makes under a
//! bind's source after the container started appears inside with `rslave`
//! and not with the default (private); with `rshared` mounts cross both
//! ways, and nothing else the container mounts reaches the host; a slave
//! bind of a source on a private mount is refused, a shared one of a
//! source on a slave mount too, and propagation on a volume or tmpfs.

mod common;

use std::path::Path;
use std::process::Command;

use berth::v1 as pb;
use common::{sh, Agent};

fn bind(source: &Path, propagation: &str) -> pb::Mount {
    pb::Mount {
        r#type: pb::mount::Type::Bind as i32,
        source: source.to_str().unwrap().into(),
        target: "/data".into(),
        propagation: propagation.into(),
        ..Default::default()
    }
}

fn mount(args: &[&str]) {
    let out = Command::new("mount").args(args).output().expect("mount");
    assert!(
        out.status.success(),
        "mount {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A directory under the agent's that is a mount of its own (a bind of
/// itself) with `propagation` ("--make-shared", "--make-private"); the
/// agent unmounts everything under its directory when dropped.
fn own_mount(agent: &Agent, name: &str, propagation: &str) -> std::path::PathBuf {
    let dir = agent.dir.join(name);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let d = dir.to_str().unwrap();
    mount(&["--bind", d, d]);
    mount(&[propagation, d]);
    dir
}

/// Waits for the host's "done" and says whether the mount made before it
/// was seen.
const WATCH: &str = "echo ready; \
    while [ ! -e /data/done ]; do sleep 0.1; done; \
    if [ -e /data/sub/marker ]; then echo seen; else echo not-seen; fi";

#[tokio::test]
async fn a_host_mount_under_the_source_reaches_rslave_binds_only() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let src = own_mount(&agent, "shared-src", "--make-shared");

    let mut slave_spec = sh(WATCH);
    slave_spec.mounts = vec![bind(&src, "rslave")];
    let slave = agent.run(slave_spec).await;
    let mut private_spec = sh(WATCH);
    private_spec.mounts = vec![bind(&src, "")];
    let private = agent.run(private_spec).await;
    agent.wait_for_output(&slave.id, "ready").await;
    agent.wait_for_output(&private.id, "ready").await;
    let shown = agent.inspect(&slave.id).await;
    assert_eq!(shown.mounts[0].propagation, "rslave");
    assert_eq!(
        agent.inspect(&private.id).await.mounts[0].propagation,
        "private"
    );

    // On the host, after both started: a tmpfs under the source with a
    // file in it, then "done" in the source itself (seen by both).
    let sub = src.join("sub");
    mount(&["-t", "tmpfs", "berth-test-prop", sub.to_str().unwrap()]);
    std::fs::write(sub.join("marker"), "x").unwrap();
    std::fs::write(src.join("done"), "x").unwrap();

    agent.wait(&slave.id).await;
    agent.wait(&private.id).await;
    let (out, err) = agent.logs(&slave.id).await;
    assert!(out.contains("\nseen"), "rslave: {out} {err}");
    let (out, err) = agent.logs(&private.id).await;
    assert!(out.contains("not-seen"), "private: {out} {err}");

    agent.force_remove(&slave.id).await;
    agent.force_remove(&private.id).await;
}

/// The host's mount table (this test process's, the host's namespace).
fn host_mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap()
}

/// Inside a privileged container with an rshared bind on /data: mounts a
/// tmpfs under the bind (must reach the host), one elsewhere (must not),
/// and one through a symlink in the bind pointing outside it (lands in the
/// container's /etc; must not reach the host either); then waits for the
/// host's mount under the source.
const SHARED: &str = "set -e; \
    mount -t tmpfs berth-prop-in /data/sub; echo in > /data/sub/from-container; \
    mkdir -p /mnt/x; mount -t tmpfs berth-prop-elsewhere /mnt/x; \
    ln -s /etc /data/link; mount -t tmpfs berth-prop-link /data/link; \
    echo ready; \
    while [ ! -e /data/done ]; do sleep 0.1; done; \
    if [ -e /data/hostsub/marker ]; then echo seen; else echo not-seen; fi";

#[tokio::test]
async fn an_rshared_bind_gives_mounts_under_it_to_the_host_and_nothing_else() {
    let agent = Agent::start_with(&["--allow-privileged"]).await;
    agent.import_busybox().await;
    let src = own_mount(&agent, "shared-src", "--make-shared");
    std::fs::create_dir(src.join("hostsub")).unwrap();
    let sub = src.join("sub");
    let before = host_mountinfo();

    let mut spec = sh(SHARED);
    spec.mounts = vec![bind(&src, "rshared")];
    spec.security = Some(pb::SecurityOptions {
        privileged: true,
        ..Default::default()
    });
    let c = agent.run(spec).await;
    agent.wait_for_output(&c.id, "ready").await;
    assert_eq!(agent.inspect(&c.id).await.mounts[0].propagation, "rshared");

    // The container's mount under the bind is on the host, under the source.
    let info = host_mountinfo();
    let line = info
        .lines()
        .find(|l| l.contains(" berth-prop-in "))
        .unwrap_or_else(|| panic!("the container's mount is not on the host: {info}"));
    assert!(
        line.split(' ').nth(4) == Some(sub.to_str().unwrap()),
        "{line}"
    );
    assert_eq!(
        std::fs::read_to_string(sub.join("from-container")).unwrap(),
        "in\n"
    );
    // Nothing else it mounted is, anywhere; nor its root, /proc, /dev
    // and the rest (made in its namespace under its directory).
    for name in ["berth-prop-elsewhere", "berth-prop-link"] {
        assert!(!info.contains(name), "{name} leaked to the host: {info}");
    }
    let own = agent.state_dir.join("containers").join(&c.id);
    let leaked: Vec<&str> = info
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|p| p.starts_with(own.to_str().unwrap()))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "the container's mounts on the host: {leaked:?}"
    );
    assert!(
        !before.contains(" berth-prop-in "),
        "a leftover of an earlier run: {before}"
    );
    // The symlink the container made is still a symlink on the host, with
    // nothing mounted on what it names.
    assert!(std::fs::symlink_metadata(src.join("link"))
        .unwrap()
        .file_type()
        .is_symlink());

    // And the host's later mounts still reach the container.
    let hostsub = src.join("hostsub");
    mount(&["-t", "tmpfs", "berth-prop-host", hostsub.to_str().unwrap()]);
    std::fs::write(hostsub.join("marker"), "x").unwrap();
    std::fs::write(src.join("done"), "x").unwrap();
    agent.wait(&c.id).await;
    let (out, err) = agent.logs(&c.id).await;
    assert!(out.contains("\nseen"), "rshared: {out} {err}");
    agent.force_remove(&c.id).await;

    // The container's mount outlives it on the host (as with runc); the
    // test unmounts it (the agent's drop unmounts whatever is left under
    // its directory when an assertion failed first).
    assert!(host_mountinfo().contains(" berth-prop-in "));
    for m in [&sub, &hostsub] {
        let out = Command::new("umount").arg(m).output().expect("umount");
        assert!(out.status.success(), "umount {m:?}: {out:?}");
    }
}

#[tokio::test]
async fn propagation_needs_a_fitting_source_and_is_for_binds_only() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let private = own_mount(&agent, "private-src", "--make-private");
    let shared = own_mount(&agent, "shared-src", "--make-shared");
    // A slave of `shared`'s peer group: a bind of it made a slave.
    let slave = agent.dir.join("slave-src");
    std::fs::create_dir(&slave).unwrap();
    mount(&["--bind", shared.to_str().unwrap(), slave.to_str().unwrap()]);
    mount(&["--make-slave", slave.to_str().unwrap()]);
    let create = async |m: pb::Mount| {
        let mut spec = sh("true");
        spec.mounts = vec![m];
        agent
            .containers()
            .create(pb::CreateContainerRequest { spec: Some(spec) })
            .await
    };
    let e = create(bind(&private, "rslave")).await.expect_err("refused");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("neither shared nor a slave"), "{e:?}");
    for p in ["shared", "rshared"] {
        let e = create(bind(&private, p)).await.expect_err("refused");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("neither shared nor a slave"), "{e:?}");
        let e = create(bind(&slave, p)).await.expect_err("refused");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("not shared (only a slave)"), "{e:?}");
    }
    // A slave source is fine for rslave.
    create(bind(&slave, "rslave")).await.expect("rslave bind");
    // Propagation is for binds: not a volume's, not a tmpfs's.
    for t in [pb::mount::Type::Volume, pb::mount::Type::Tmpfs] {
        let m = pb::Mount {
            r#type: t as i32,
            source: if t == pb::mount::Type::Volume {
                "propvol".into()
            } else {
                String::new()
            },
            target: "/data".into(),
            propagation: "rshared".into(),
            ..Default::default()
        };
        let e = create(m).await.expect_err("refused");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("for bind mounts"), "{e:?}");
    }
    // The same source is fine as a private bind.
    create(bind(&private, "rprivate"))
        .await
        .expect("private bind");
    // berthctl's -v and --mount syntax.
    let v = format!("{}:/data:rslave", shared.display());
    common::cli::ok(&agent, &["run", "--rm", "-v", &v, "busybox", "true"]);
    let v = format!("{}:/data:rshared", shared.display());
    common::cli::ok(&agent, &["run", "--rm", "-v", &v, "busybox", "true"]);
    let m = format!(
        "type=bind,source={},target=/data,bind-propagation=rshared",
        shared.display()
    );
    common::cli::ok(&agent, &["run", "--rm", "--mount", &m, "busybox", "true"]);
    // Nothing berth mounts may go under a shared bind: it would reach the
    // host and stay there.
    let before = host_mountinfo();
    let v = format!("{}:/data:rshared", shared.display());
    let args = [
        "run",
        "--rm",
        "-v",
        &v,
        "--tmpfs",
        "/data/run",
        "busybox",
        "true",
    ];
    common::cli::expect_failure(&agent.ctl(&args), &args, 125, &["under the shared bind"]);
    assert_eq!(host_mountinfo().lines().count(), before.lines().count());
}
