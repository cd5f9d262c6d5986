//! End to end: a container's bind mounts, tmpfs mounts and read-only root
//! (issue 21), against the real berthd and monitor. Volumes are in
//! tests/volumes.rs.

mod common;

use berth::v1 as pb;
use common::image::{busybox_with, Entry};
use common::{sh, Agent};

fn bind(source: &str, target: &str, read_only: bool) -> pb::Mount {
    pb::Mount {
        r#type: pb::mount::Type::Bind as i32,
        source: source.into(),
        target: target.into(),
        read_only,
        ..Default::default()
    }
}

fn tmpfs(target: &str, size: u64) -> pb::Mount {
    pb::Mount {
        r#type: pb::mount::Type::Tmpfs as i32,
        target: target.into(),
        tmpfs_size_bytes: size,
        ..Default::default()
    }
}

fn with_mounts(mut spec: pb::ContainerSpec, mounts: Vec<pb::Mount>) -> pb::ContainerSpec {
    spec.mounts = mounts;
    spec
}

/// A host directory for a bind source, beside the agent's state (removed
/// with the agent's directory).
fn host_dir(agent: &Agent, name: &str) -> std::path::PathBuf {
    let d = agent.dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn bind_rw_writes_through_and_ro_refuses_writes_with_erofs() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let src = host_dir(&agent, "src");
    std::fs::write(src.join("in"), "from-host").unwrap();
    let s = src.to_str().unwrap();

    let (exit, out, err) = agent
        .run_to_exit(with_mounts(
            sh("cat /data/in; echo from-container > /data/out"),
            vec![bind(s, "/data", false)],
        ))
        .await;
    assert_eq!(exit.exit_code, 0, "{out}{err}");
    assert_eq!(out.trim(), "from-host");
    assert_eq!(
        std::fs::read_to_string(src.join("out")).unwrap(),
        "from-container\n"
    );

    let (exit, out, err) = agent
        .run_to_exit(with_mounts(
            sh("cat /ro/in; touch /ro/new 2>&1; grep ' /ro ' /proc/mounts"),
            vec![bind(s, "/ro", true)],
        ))
        .await;
    assert_eq!(exit.exit_code, 0, "{out}{err}");
    assert!(out.contains("from-host"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains(" /ro "))
        .expect("a /ro mount");
    for flag in ["ro", "nosuid", "nodev"] {
        assert!(
            line.split_whitespace()
                .nth(3)
                .unwrap()
                .split(',')
                .any(|f| f == flag),
            "{flag} in {line}"
        );
    }
    assert!(!src.join("new").exists());
}

#[tokio::test]
async fn a_read_only_bind_is_read_only_all_the_way_down() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let src = host_dir(&agent, "rec");
    let sub = src.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    // A writable mount under the source: a plain MS_RDONLY bind would
    // leave it writable.
    nix::mount::mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .unwrap();
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _guard = Unmount(sub.clone());
    let (exit, out, err) = agent
        .run_to_exit(with_mounts(
            sh("touch /r/sub/x 2>&1; ls /r/sub"),
            vec![bind(src.to_str().unwrap(), "/r", true)],
        ))
        .await;
    assert_eq!(exit.exit_code, 0, "{out}{err}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(!sub.join("x").exists());
}

#[tokio::test]
async fn tmpfs_size_is_enforced_and_read_only_root_refuses_writes() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let mut spec = with_mounts(
        sh("touch /rootfile 2>&1; \
            dd if=/dev/zero of=/scratch/f bs=1024 count=2048 2>&1; \
            echo ok > /scratch/small 2>&1; \
            stat -c %a /scratch; grep ' /scratch ' /proc/mounts"),
        vec![tmpfs("/scratch", 1024 * 1024)],
    );
    spec.security = Some(pb::SecurityOptions {
        read_only_rootfs: true,
        ..Default::default()
    });
    let (exit, out, err) = agent.run_to_exit(spec).await;
    assert_eq!(exit.exit_code, 0, "{out}{err}");
    assert!(
        out.lines()
            .next()
            .unwrap()
            .contains("Read-only file system"),
        "{out}"
    );
    assert!(out.contains("No space left on device"), "{out}");
    assert!(out.contains("1777"), "{out}");
    let line = out.lines().find(|l| l.contains(" /scratch ")).unwrap();
    assert!(line.contains("size=1024k"), "{line}");
    assert!(line.contains("nosuid") && line.contains("nodev"), "{line}");
}

#[tokio::test]
async fn an_image_symlink_at_the_target_cannot_move_the_mount_out_of_the_root() {
    let agent = Agent::start().await;
    // The image's /evil points at a host directory (absolute), and /up
    // climbs out with "..", both dangling: both must resolve (and what they
    // name be made) inside the root.
    let victim = host_dir(&agent, "victim");
    let victim_s = victim.to_str().unwrap().to_string();
    let image = busybox_with(
        "docker.io/library/evil:latest",
        vec![
            Entry::Symlink("evil".into(), victim_s.clone()),
            Entry::Symlink("up".into(), "../../../../../../upland".into()),
        ],
    );
    agent.import(image, "").await.expect("import");
    let src = host_dir(&agent, "payload");
    std::fs::write(src.join("marker"), "x").unwrap();
    let s = src.to_str().unwrap();
    let mut spec = with_mounts(
        sh(&format!(
            "test -f {victim_s}/marker && test -f /upland/marker && echo inside"
        )),
        vec![bind(s, "/evil", false), bind(s, "/up", false)],
    );
    spec.image = "evil".into();
    let (exit, out, err) = agent.run_to_exit(spec).await;
    assert_eq!(exit.exit_code, 0, "{out}{err}");
    assert!(out.contains("inside"), "{out}");
    // The host's directory got nothing, and no mount landed on the host.
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&victim_s), "{mounts}");
}

#[tokio::test]
async fn bad_mounts_are_invalid_argument_and_create_nothing() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let src = host_dir(&agent, "ok");
    let s = src.to_str().unwrap();
    let state = agent.state_dir.to_str().unwrap().to_string();
    let cases: Vec<pb::Mount> = vec![
        bind(s, "relative", false),
        bind(s, "/", false),
        bind(s, "/a/../b", false),
        bind(s, "/proc/x", false),
        bind("/does/not/exist", "/d", false),
        bind("relative/src", "/d", false),
        bind("/", "/host", false),
        bind("/proc", "/p", false),
        bind(&state, "/s", false),
        pb::Mount {
            r#type: pb::mount::Type::Volume as i32,
            source: "bad/name".into(),
            target: "/v".into(),
            ..Default::default()
        },
        pb::Mount {
            r#type: pb::mount::Type::Volume as i32,
            source: "x".repeat(200),
            target: "/v".into(),
            ..Default::default()
        },
        pb::Mount {
            target: "/t".into(),
            ..Default::default()
        },
        pb::Mount {
            r#type: pb::mount::Type::Bind as i32,
            source: s.into(),
            target: "/t".into(),
            propagation: "sideways".into(),
            ..Default::default()
        },
    ];
    for m in cases {
        let spec = with_mounts(sh("true"), vec![m.clone()]);
        let e = agent
            .containers()
            .create(pb::CreateContainerRequest { spec: Some(spec) })
            .await
            .expect_err("refused");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{m:?}: {e:?}");
        assert!(e.message().len() < 600, "{}", e.message());
    }
    // Twice the same target.
    let spec = with_mounts(sh("true"), vec![bind(s, "/d", false), bind(s, "/d/", true)]);
    let e = agent
        .containers()
        .create(pb::CreateContainerRequest { spec: Some(spec) })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    // A propagation that does not exist (the others: tests/propagation.rs).
    let mut m = bind(s, "/d", false);
    m.propagation = "rsharedx".into();
    let e = agent
        .containers()
        .create(pb::CreateContainerRequest {
            spec: Some(with_mounts(sh("true"), vec![m])),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("unknown bind propagation"), "{e:?}");
    // Nothing was created: no container, no volume.
    let list = agent
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.containers.is_empty());
    let vols = agent
        .volumes()
        .list(pb::ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(vols.volumes.is_empty());
}

/// The start cost of mounts: median wall time of Run (create + start,
/// until the container runs) of 30 containers with one bind, one volume
/// and one tmpfs, against 30 without, interleaved. A measurement, not a
/// check: run with `cargo test -p berth --test mounts -- --ignored
/// --nocapture start_cost`.
#[tokio::test]
#[ignore]
async fn start_cost_of_mounts() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let src = host_dir(&agent, "bench");
    let s = src.to_str().unwrap();
    let three = || {
        vec![
            bind(s, "/b", false),
            pb::Mount {
                r#type: pb::mount::Type::Volume as i32,
                source: "benchvol".into(),
                target: "/v".into(),
                ..Default::default()
            },
            tmpfs("/t", 1 << 20),
        ]
    };
    let mut none = Vec::new();
    let mut with = Vec::new();
    for i in 0..31 {
        // Which goes first alternates: the second of a pair may find the
        // first one's teardown still running.
        let order = if i % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for mounted in order {
            let spec = if mounted {
                with_mounts(sh("true"), three())
            } else {
                sh("true")
            };
            let t = std::time::Instant::now();
            let c = agent.run(spec).await;
            let took = t.elapsed();
            agent.wait(&c.id).await;
            agent.force_remove(&c.id).await;
            // The first round warms caches.
            if i > 0 {
                if mounted { &mut with } else { &mut none }.push(took);
            }
        }
    }
    none.sort();
    with.sort();
    println!(
        "start (Run) median of {}: no mounts {:?}, 1 bind + 1 volume + 1 tmpfs {:?}",
        none.len(),
        none[none.len() / 2],
        with[with.len() / 2]
    );
}

/// Starts `id`, which must fail with FailedPrecondition; returns the message.
async fn start_fails(agent: &Agent, id: &str) -> String {
    let e = agent
        .containers()
        .start(pb::StartContainerRequest { id: id.into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    e.message().to_string()
}

#[tokio::test]
async fn an_image_symlink_into_proc_or_sys_fails_the_start_and_copies_nothing() {
    let agent = Agent::start().await;
    let image = busybox_with(
        "docker.io/library/kernelish:latest",
        vec![
            Entry::Symlink("fw".into(), "/sys/firmware".into()),
            Entry::Symlink("pr".into(), "/proc".into()),
            Entry::Symlink("cg".into(), "../sys/fs/cgroup".into()),
            Entry::Symlink("top".into(), "/".into()),
        ],
    );
    agent.import(image, "").await.expect("import");
    for (i, target) in ["/fw", "/pr", "/cg", "/top"].into_iter().enumerate() {
        let name = format!("kern{i}");
        let mut spec = with_mounts(
            sh("ls /"),
            vec![pb::Mount {
                r#type: pb::mount::Type::Volume as i32,
                source: name.clone(),
                target: target.into(),
                ..Default::default()
            }],
        );
        spec.image = "kernelish".into();
        let c = agent.create(spec).await;
        let msg = start_fails(&agent, &c.id).await;
        let want = if target == "/top" {
            "resolves to the container's root"
        } else {
            "resolves into /proc or /sys"
        };
        assert!(msg.contains(want), "{target}: {msg}");
        assert!(msg.contains(target), "{target}: {msg}");
        let data = agent.state_dir.join(format!("volumes/{name}/_data"));
        assert_eq!(
            std::fs::read_dir(&data).unwrap().count(),
            0,
            "{target}: the volume got something"
        );
        agent.force_remove(&c.id).await;
    }
}

#[tokio::test]
async fn a_bind_source_swapped_for_a_symlink_after_create_fails_the_start() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let base = host_dir(&agent, "swap");
    let data = base.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("mine"), "x").unwrap();
    let other = host_dir(&agent, "other");
    std::fs::write(other.join("secret"), "s").unwrap();
    let c = agent
        .create(with_mounts(
            sh("ls /data"),
            vec![bind(data.to_str().unwrap(), "/data", false)],
        ))
        .await;
    agent
        .containers()
        .start(pb::StartContainerRequest { id: c.id.clone() })
        .await
        .expect("first start");
    agent.wait(&c.id).await;
    let (out, _) = agent.logs(&c.id).await;
    assert!(out.contains("mine"), "{out}");

    std::fs::remove_dir_all(&data).unwrap();
    std::os::unix::fs::symlink(&other, &data).unwrap();
    let msg = start_fails(&agent, &c.id).await;
    assert!(msg.contains("symlink"), "{msg}");
    let (out, _) = agent.logs(&c.id).await;
    assert!(!out.contains("secret"), "{out}");
    // A symlink higher on the path counts as well.
    std::fs::remove_file(&data).unwrap();
    let moved = agent.dir.join("swap-real");
    std::fs::rename(&base, &moved).unwrap();
    std::fs::create_dir_all(moved.join("data")).unwrap();
    std::os::unix::fs::symlink(&moved, &base).unwrap();
    let msg = start_fails(&agent, &c.id).await;
    assert!(msg.contains("symlink"), "{msg}");
    agent.force_remove(&c.id).await;
}
