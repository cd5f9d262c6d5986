//! Unit tests of `mounts.rs`.

use super::*;

fn paths(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn an_images_volumes_are_checked_bounded_and_skipped_in_a_user_namespace() {
    let spec = SpecRecord::default();
    let got = with_image_volumes(&spec, &paths(&["/a/b", "/a/", "//c/."])).unwrap();
    let targets: Vec<&str> = got.iter().map(|m| m.target.as_str()).collect();
    assert_eq!(targets, ["/a", "/c", "/a/b"], "by depth");
    assert!(got
        .iter()
        .all(|m| m.kind == MountKind::Volume && m.source.is_empty()));
    for hostile in ["relative", "/a/../../etc", "/proc/x", "/"] {
        let e = with_image_volumes(&spec, &paths(&[hostile])).unwrap_err();
        assert!(
            e.to_string().contains("the image's volume"),
            "{hostile}: {e}"
        );
    }
    let many: Vec<String> = (0..65).map(|i| format!("/v{i}")).collect();
    assert!(with_image_volumes(&spec, &many).is_err());
    let userns = SpecRecord {
        userns: "auto".into(),
        ..Default::default()
    };
    assert!(with_image_volumes(&userns, &paths(&["/data"]))
        .unwrap()
        .is_empty());
}

#[test]
fn nothing_is_mounted_under_a_shared_bind_and_the_images_volumes_there_are_skipped() {
    let bind = |target: &str, propagation: &str| MountSpec {
        kind: MountKind::Bind,
        source: "/srv/x".into(),
        target: target.into(),
        read_only: false,
        propagation: propagation.into(),
        recursive: None,
        tmpfs_size: 0,
        tmpfs_mode: 0,
        no_copy: false,
        build: false,
        read_only_top_only: false,
        pod_shm: false,
    };
    let spec = SpecRecord {
        mounts: vec![bind("/data", "rshared")],
        ..Default::default()
    };
    let got = with_image_volumes(&spec, &paths(&["/data/db", "/data", "/other"])).unwrap();
    let targets: Vec<&str> = got.iter().map(|m| m.target.as_str()).collect();
    assert_eq!(targets, ["/data", "/other"], "/data/db stays the bind's");
    let mut nested = spec.clone();
    nested.mounts.push(MountSpec {
        kind: MountKind::Tmpfs,
        source: String::new(),
        ..bind("/data/run", "")
    });
    let e = with_image_volumes(&nested, &[]).unwrap_err();
    assert!(e.to_string().contains("under the shared bind"), "{e}");
    // Beside it, or under an rslave bind: fine.
    let mut beside = SpecRecord {
        mounts: vec![bind("/data", "rslave"), bind("/data/sub", "")],
        ..Default::default()
    };
    beside.mounts.push(bind("/database", "rshared"));
    with_image_volumes(&beside, &paths(&["/data/db"])).unwrap();
}

#[test]
fn only_a_builds_own_binds_reach_under_the_state_dir() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    for d in ["build/caches/abc", "build/work/b1/context", "containers/c1"] {
        std::fs::create_dir_all(s.join(d)).unwrap();
    }
    std::fs::write(s.join("build/cache.json"), "{}").unwrap();
    let bind = |source: &Path, build: bool| MountSpec {
        kind: MountKind::Bind,
        source: source.to_string_lossy().into_owned(),
        target: "/m".into(),
        read_only: true,
        propagation: String::new(),
        recursive: Some(false),
        tmpfs_size: 0,
        tmpfs_mode: 0,
        no_copy: false,
        build,
        read_only_top_only: false,
        pod_shm: false,
    };
    let check_one = |m: MountSpec| {
        let mut spec = SpecRecord {
            mounts: vec![m],
            ..Default::default()
        };
        check(&mut spec, s)
    };
    for ok in ["build/caches/abc", "build/work/b1/context"] {
        assert!(check_one(bind(&s.join(ok), true)).is_ok(), "{ok}");
        let e = check_one(bind(&s.join(ok), false)).unwrap_err();
        assert!(e.to_string().contains("state directory"), "{ok}: {e}");
    }
    for refused in [
        "build",
        "build/caches",
        "build/cache.json",
        "containers/c1",
        "",
    ] {
        let e = check_one(bind(&s.join(refused), true)).unwrap_err();
        assert!(e.to_string().contains("state directory"), "{refused}: {e}");
    }
    // A CRI pod's /dev/shm: its own pod's, or the host's with hostIPC, and
    // only with the flag the CRI front end alone sets.
    for d in [
        "cri/pods/p1/ns/shm",
        "cri/pods/p2/ns/shm",
        "cri/pods/p1/ns/other",
    ] {
        std::fs::create_dir_all(s.join(d)).unwrap();
    }
    let shm = |source: &Path, flagged: bool| MountSpec {
        pod_shm: flagged,
        read_only: false,
        ..bind(source, false)
    };
    let in_pod = |m: MountSpec, host_ipc: bool| {
        let mut spec = SpecRecord {
            mounts: vec![m],
            pod: Some(crate::container::record::PodJoin {
                id: "p1".into(),
                ns_dir: s.join("cri/pods/p1/ns"),
                host_ipc,
                ..Default::default()
            }),
            ..Default::default()
        };
        check(&mut spec, s)
    };
    let own = s.join("cri/pods/p1/ns/shm");
    assert!(in_pod(shm(&own, true), false).is_ok());
    assert!(in_pod(shm(Path::new("/dev/shm"), true), true).is_ok());
    for (source, flagged, host_ipc) in [
        (own.clone(), false, false),
        (own.clone(), true, true),
        ("/dev/shm".into(), true, false),
        ("/dev/shm".into(), false, true),
        (s.join("cri/pods/p2/ns/shm"), true, false),
        (s.join("cri/pods/p1/ns/other"), true, false),
        ("/dev".into(), true, true),
    ] {
        let e = in_pod(shm(&source, flagged), host_ipc).unwrap_err();
        assert!(
            e.to_string().contains("no container may have"),
            "{} {flagged} {host_ipc}: {e}",
            source.display()
        );
    }
}
