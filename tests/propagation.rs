//! End to end: bind propagation (issue 21). A mount the host makes under a
//! bind's source after the container started appears inside with `rslave`
//! and not with the default (private); a slave bind of a source on a
//! private mount is refused; `shared`/`rshared` are not supported yet.

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

#[tokio::test]
async fn slave_binds_need_a_propagating_source_and_shared_is_not_supported_yet() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let private = own_mount(&agent, "private-src", "--make-private");
    let shared = own_mount(&agent, "shared-src", "--make-shared");
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
        let e = create(bind(&shared, p)).await.expect_err("refused");
        assert_eq!(e.code(), tonic::Code::Unimplemented, "{e:?}");
    }
    // The same source is fine as a private bind.
    create(bind(&private, "rprivate"))
        .await
        .expect("private bind");
    // berthctl's -v syntax.
    let v = format!("{}:/data:rslave", shared.display());
    common::cli::ok(&agent, &["run", "--rm", "-v", &v, "busybox", "true"]);
}
