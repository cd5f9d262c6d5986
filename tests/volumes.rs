//! End to end: volumes (issue 21): named volumes keep data across
//! containers and berthd restarts and are shared, anonymous ones go with
//! `rm -v`, a volume in use cannot be removed, prune, bad names, events.

mod common;

use berth::v1 as pb;
use common::{sh, Agent};

fn volume(name: &str, target: &str) -> pb::Mount {
    pb::Mount {
        r#type: pb::mount::Type::Volume as i32,
        source: name.into(),
        target: target.into(),
        ..Default::default()
    }
}

fn with_mounts(mut spec: pb::ContainerSpec, mounts: Vec<pb::Mount>) -> pb::ContainerSpec {
    spec.mounts = mounts;
    spec
}

async fn names(agent: &Agent, req: pb::ListVolumesRequest) -> Vec<String> {
    agent
        .volumes()
        .list(req)
        .await
        .expect("list")
        .into_inner()
        .volumes
        .into_iter()
        .map(|v| v.name)
        .collect()
}

async fn remove(agent: &Agent, id: &str, remove_volumes: bool) {
    agent
        .containers()
        .remove(pb::RemoveContainerRequest {
            id: id.into(),
            force: true,
            remove_volumes,
        })
        .await
        .expect("remove");
}

#[tokio::test]
async fn a_named_volume_keeps_data_across_containers_and_restarts_and_is_shared() {
    let mut agent = Agent::start().await;
    agent.import_busybox().await;
    let (exit, out, err) = agent
        .run_to_exit(with_mounts(
            sh("echo kept > /data/f; grep ' /data ' /proc/mounts"),
            vec![volume("dbdata", "/data")],
        ))
        .await;
    assert_eq!(exit.exit_code, 0, "{out}{err}");
    assert!(out.contains("nosuid") && out.contains("nodev"), "{out}");
    let first = agent
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers
        .remove(0);
    // Inspect shows the resolved mount.
    let m = &agent.inspect(&first.id).await.mounts[0];
    assert_eq!(m.volume_name, "dbdata");
    assert!(!m.anonymous);
    let data_dir = agent.state_dir.join("volumes/dbdata/_data");
    assert_eq!(m.source, data_dir.to_str().unwrap());
    // rm -v never removes a named volume.
    remove(&agent, &first.id, true).await;
    assert_eq!(
        std::fs::read_to_string(data_dir.join("f")).unwrap(),
        "kept\n"
    );

    // Two containers share it; the data survives a restart of berthd.
    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    agent.spawn().await;
    let a = agent
        .run(with_mounts(
            sh("sleep 1000"),
            vec![volume("dbdata", "/shared")],
        ))
        .await;
    let (exit, out, _) = agent
        .run_to_exit(with_mounts(
            sh("cat /data/f; echo more > /data/g"),
            vec![volume("dbdata", "/data")],
        ))
        .await;
    assert_eq!(exit.exit_code, 0);
    assert_eq!(out.trim(), "kept");
    let v = agent
        .volumes()
        .inspect(pb::InspectVolumeRequest {
            name: "dbdata".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.used_by.len(), 2);
    assert!(v.used_by.contains(&a.id));
    assert_eq!(v.driver, "local");

    // In use: FAILED_PRECONDITION, and nothing is removed.
    let e = agent
        .volumes()
        .remove(pb::RemoveVolumeRequest {
            name: "dbdata".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(data_dir.join("g").exists());
    agent.force_remove(&a.id).await;
}

#[tokio::test]
async fn anonymous_volumes_go_with_rm_v_and_stay_without() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let mut events = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            types: vec![pb::ObjectType::Volume as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let kept = agent
        .create(with_mounts(sh("true"), vec![volume("", "/anon")]))
        .await;
    let gone = agent
        .create(with_mounts(sh("true"), vec![volume("", "/anon")]))
        .await;
    let kept_vol = kept.mounts[0].volume_name.clone();
    let gone_vol = gone.mounts[0].volume_name.clone();
    assert!(kept.mounts[0].anonymous);
    assert_eq!(kept_vol.len(), 64);
    assert_ne!(kept_vol, gone_vol);
    for want in [&kept_vol, &gone_vol] {
        let ev = common::next_event(&mut events).await;
        assert_eq!(ev.r#type, pb::ObjectType::Volume as i32);
        assert_eq!(ev.action, pb::EventAction::Created as i32);
        assert_eq!(&ev.id, want);
    }
    remove(&agent, &kept.id, false).await;
    remove(&agent, &gone.id, true).await;
    let ev = common::next_event(&mut events).await;
    assert_eq!(ev.action, pb::EventAction::Removed as i32);
    assert_eq!(ev.id, gone_vol);
    let all = names(&agent, pb::ListVolumesRequest::default()).await;
    assert_eq!(all, vec![kept_vol.clone()]);
    assert!(!agent.state_dir.join("volumes").join(&gone_vol).exists());
}

#[tokio::test]
async fn create_list_filters_prune_and_bad_names() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let v = agent
        .volumes()
        .create(pb::CreateVolumeRequest {
            name: "labelled".into(),
            labels: [("tier".to_string(), "db".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(
        v.mountpoint,
        agent
            .state_dir
            .join("volumes/labelled/_data")
            .to_str()
            .unwrap()
    );
    let gen = agent
        .volumes()
        .create(pb::CreateVolumeRequest::default())
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(gen.name.len(), 64);
    let e = agent
        .volumes()
        .create(pb::CreateVolumeRequest {
            name: "labelled".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists);
    for bad in ["a", "-x", "a/b", "..", &"y".repeat(300)] {
        let e = agent
            .volumes()
            .create(pb::CreateVolumeRequest {
                name: bad.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
        assert!(e.message().len() < 300);
    }
    let e = agent
        .volumes()
        .create(pb::CreateVolumeRequest {
            name: "otherdrv".into(),
            driver: "nfs".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = agent
        .volumes()
        .inspect(pb::InspectVolumeRequest {
            name: "../../etc".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    let by_label = names(
        &agent,
        pb::ListVolumesRequest {
            labels: vec!["tier=db".into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_label, vec!["labelled".to_string()]);

    // One in use, the others dangling; prune takes the dangling ones.
    let user = agent
        .create(with_mounts(sh("true"), vec![volume("busy", "/b")]))
        .await;
    std::fs::write(
        agent.state_dir.join("volumes/labelled/_data/blob"),
        vec![0u8; 4096],
    )
    .unwrap();
    let dangling = names(
        &agent,
        pb::ListVolumesRequest {
            dangling: Some(true),
            ..Default::default()
        },
    )
    .await;
    assert!(!dangling.contains(&"busy".to_string()), "{dangling:?}");
    assert_eq!(dangling.len(), 2);
    let pruned = agent
        .volumes()
        .prune(pb::PruneVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pruned.removed.len(), 2);
    assert_eq!(pruned.reclaimed_bytes, 4096);
    assert_eq!(
        names(&agent, pb::ListVolumesRequest::default()).await,
        vec!["busy".to_string()]
    );
    remove(&agent, &user.id, false).await;
    agent
        .volumes()
        .remove(pb::RemoveVolumeRequest {
            name: "busy".into(),
        })
        .await
        .expect("free now");
}

#[tokio::test]
async fn mounts_with_userns_auto_are_refused_not_wrong() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let mut spec = with_mounts(sh("true"), vec![volume("u", "/u")]);
    spec.security = Some(pb::SecurityOptions {
        userns: "auto".into(),
        ..Default::default()
    });
    let e = agent
        .containers()
        .create(pb::CreateContainerRequest { spec: Some(spec) })
        .await
        .unwrap_err();
    // UNIMPLEMENTED (not supported yet), or FAILED_PRECONDITION on a
    // kernel without idmapped overlay layers; never a container.
    assert!(
        matches!(
            e.code(),
            tonic::Code::Unimplemented | tonic::Code::FailedPrecondition
        ),
        "{e:?}"
    );
    assert!(names(&agent, pb::ListVolumesRequest::default())
        .await
        .is_empty());
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn berthctl_v_mount_tmpfs_rm_v_and_volume_commands() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let src = agent.dir.join("ctl-src");
    std::fs::create_dir_all(&src).unwrap();
    let bind = format!("type=bind,source={},target=/b,readonly", src.display());
    ok(&agent.ctl(&["volume", "create", "-l", "team=db", "ctlvol"]));
    let out = ok(&agent.ctl(&[
        "run",
        "--rm",
        "-v",
        "ctlvol:/data",
        "--mount",
        &bind,
        "--tmpfs",
        "/t:size=1m",
        "--read-only",
        "busybox",
        "sh",
        "-c",
        "echo hi > /data/f && touch /b/x 2>&1; grep -c ' /t tmpfs' /proc/mounts",
    ]));
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.trim_end().ends_with('1'), "{out}");
    assert_eq!(
        std::fs::read_to_string(agent.state_dir.join("volumes/ctlvol/_data/f")).unwrap(),
        "hi\n"
    );
    let id = ok(&agent.ctl(&[
        "run", "-d", "-v", "/anon", "--name", "anon", "busybox", "sleep", "1000",
    ]));
    let inspect = ok(&agent.ctl(&["inspect", "anon"]));
    assert!(inspect.contains("\"anonymous\": true"), "{inspect}");
    let listed = ok(&agent.ctl(&["volume", "ls", "-q"]));
    assert_eq!(listed.lines().count(), 2, "{listed}");
    let in_use = agent.ctl(&[
        "volume",
        "rm",
        listed.lines().find(|l| *l != "ctlvol").unwrap(),
    ]);
    assert!(!in_use.status.success());
    ok(&agent.ctl(&["rm", "-f", "-v", id.trim()]));
    assert_eq!(ok(&agent.ctl(&["volume", "ls", "-q"])).trim(), "ctlvol");
    let filtered = ok(&agent.ctl(&["volume", "ls", "-q", "-f", "label=team=other"]));
    assert!(filtered.trim().is_empty());
    let pruned = ok(&agent.ctl(&["volume", "prune", "-f"]));
    assert!(
        pruned.contains("ctlvol") && pruned.contains("Total reclaimed space: 3"),
        "{pruned}"
    );
    let refused = agent.ctl(&["run", "--storage-opt", "size=1g", "busybox", "true"]);
    assert!(!refused.status.success());
    // The test's state is not on a file system with project quotas (see
    // tests/storage_opt.rs for one that is).
    assert!(String::from_utf8_lossy(&refused.stderr)
        .contains("not supported on this state file system"));
}

#[tokio::test]
async fn an_empty_volume_is_seeded_from_the_image_unless_nocopy() {
    use std::os::unix::fs::PermissionsExt;
    let agent = Agent::start().await;
    let image = common::image::busybox_with(
        "docker.io/library/seeded:latest",
        vec![
            common::image::Entry::Dir("seed", 0o750),
            common::image::Entry::Dir("seed/sub", 0o755),
            common::image::Entry::File("seed/sub/conf".into(), b"from-image".to_vec(), 0o640),
            // Copied as a symlink, never followed (it names a host path).
            common::image::Entry::Symlink("seed/link".into(), "/etc/shadow".into()),
        ],
    );
    agent.import(image, "").await.expect("import");
    let mut copied = sh("cat /seed/sub/conf; echo; echo new > /seed/added");
    copied.image = "seeded".into();
    copied.mounts = vec![volume("seeded", "/seed")];
    let (exit, out, err) = agent.run_to_exit(copied.clone()).await;
    assert_eq!(exit.exit_code, 0, "{out}{err}");
    assert_eq!(out.trim(), "from-image");
    let data = agent.state_dir.join("volumes/seeded/_data");
    let meta = std::fs::metadata(data.join("sub/conf")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(
        std::fs::metadata(&data).unwrap().permissions().mode() & 0o7777,
        0o750
    );
    assert_eq!(
        std::fs::read_link(data.join("link")).unwrap(),
        std::path::Path::new("/etc/shadow")
    );
    // No longer empty: a second container sees what the first left, and
    // the image's content is not copied over it again.
    std::fs::remove_file(data.join("sub/conf")).unwrap();
    let mut again = sh("ls /seed");
    again.image = "seeded".into();
    again.mounts = vec![volume("seeded", "/seed")];
    let (_, out, _) = agent.run_to_exit(again).await;
    assert!(out.contains("added") && out.contains("sub"), "{out}");
    assert!(!data.join("sub/conf").exists());
    // nocopy: stays empty.
    let mut m = volume("bare", "/seed");
    m.no_copy = true;
    let mut bare = sh("ls -A /seed | wc -l");
    bare.image = "seeded".into();
    bare.mounts = vec![m];
    let (exit, out, _) = agent.run_to_exit(bare).await;
    assert_eq!(exit.exit_code, 0);
    assert_eq!(out.trim(), "0");
}

#[tokio::test]
async fn a_container_adopted_after_kill_9_of_berthd_keeps_its_volume_and_its_claim() {
    let mut agent = Agent::start().await;
    agent.import_busybox().await;
    let c = agent
        .run(with_mounts(
            sh("i=0; while true; do i=$((i+1)); echo $i > /v/n; sleep 0.05; done"),
            vec![volume("live", "/v")],
        ))
        .await;
    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    agent.spawn().await;
    let n = agent.state_dir.join("volumes/live/_data/n");
    let read = || std::fs::read_to_string(&n).unwrap_or_default();
    let before = read();
    assert!(
        common::eventually(10, async || read() != before && !read().is_empty()).await,
        "the container no longer writes to its volume"
    );
    let e = agent
        .volumes()
        .remove(pb::RemoveVolumeRequest {
            name: "live".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert_eq!(agent.inspect(&c.id).await.mounts[0].volume_name, "live");
    agent.force_remove(&c.id).await;
    agent
        .volumes()
        .remove(pb::RemoveVolumeRequest {
            name: "live".into(),
        })
        .await
        .expect("free once its container is gone");
}

/// An image's `Volumes` become anonymous volumes (seeded from the image,
/// removed by `rm -v`), except where the spec mounts something itself; a
/// mount under one comes after it.
#[tokio::test]
async fn the_images_volumes_are_anonymous_volumes_seeded_from_it() {
    use common::image::{busybox_config, Config, Entry};
    let agent = Agent::start().await;
    let cfg = Config {
        volumes: vec!["/data".into(), "/cache/".into()],
        ..Default::default()
    };
    let seed = vec![
        Entry::Dir("data", 0o755),
        Entry::File("data/seed".into(), b"from the image\n".to_vec(), 0o644),
    ];
    agent
        .import(busybox_config("docker.io/library/vols:1", seed, cfg), "")
        .await
        .expect("import");
    let image = agent
        .images()
        .inspect(pb::InspectImageRequest {
            image: "vols:1".into(),
        })
        .await
        .expect("inspect image")
        .into_inner();
    let config = image.image.and_then(|i| i.config).expect("config");
    assert_eq!(config.volumes, ["/cache/", "/data"]);

    let spec = pb::ContainerSpec {
        image: "vols:1".into(),
        ..sh("cat /data/seed && echo written > /data/new && ls /data/sub")
    };
    // A named volume mounted inside /data: after /data's, given first.
    let (exit, out, err) = agent
        .run_to_exit(with_mounts(spec, vec![volume("inner", "/data/sub")]))
        .await;
    assert_eq!(exit.exit_code, 0, "{err}");
    assert_eq!(out, "from the image\n");
    let all = agent
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .containers;
    let c = &all[0];
    let mut targets: Vec<(&str, bool)> = c
        .mounts
        .iter()
        .map(|m| (m.target.as_str(), m.anonymous))
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [("/cache", true), ("/data", true), ("/data/sub", false)]
    );
    let data = c
        .mounts
        .iter()
        .find(|m| m.target == "/data")
        .expect("/data");
    let on_disk = agent
        .state_dir
        .join("volumes")
        .join(&data.volume_name)
        .join("_data");
    assert_eq!(
        std::fs::read_to_string(on_disk.join("new")).expect("the write is in the volume"),
        "written\n"
    );
    remove(&agent, &c.id, true).await;
    assert_eq!(
        names(&agent, pb::ListVolumesRequest::default()).await,
        ["inner"],
        "rm -v removed the image's volumes, not the named one"
    );

    // A mount of the spec's at an image volume's path replaces it.
    let spec = pb::ContainerSpec {
        image: "vols:1".into(),
        ..sh("true")
    };
    let c = agent
        .create(with_mounts(spec, vec![volume("inner", "/data")]))
        .await;
    let mut targets: Vec<&str> = c.mounts.iter().map(|m| m.target.as_str()).collect();
    targets.sort();
    assert_eq!(targets, ["/cache", "/data"]);
    assert!(c.mounts.iter().any(|m| m.target == "/data" && !m.anonymous));
    remove(&agent, &c.id, true).await;
    let out = agent.ctl(&["volume", "rm", "inner"]);
    assert!(out.status.success(), "{out:?}");
    agent.assert_clean().await;
}
