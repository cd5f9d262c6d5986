//! End to end: image import, including hostile archives.

mod common;

use berth::v1 as pb;
use common::image::{self, Config, Entry, Layer, Tamper};
use common::{sh, Agent};

fn store_is_empty(agent: &Agent) {
    let root = agent.state_dir.join("images");
    for sub in ["layers", "blobs/sha256", "staging"] {
        let d = root.join(sub);
        let n = std::fs::read_dir(&d).map(|r| r.count()).unwrap_or(0);
        assert_eq!(n, 0, "{} is not empty", d.display());
    }
    let tmp = agent.state_dir.join("tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).map(|r| r.count()).unwrap_or(0),
        0,
        "upload left behind"
    );
}

fn hostile(entries: Vec<Entry>) -> Vec<u8> {
    image::busybox_with("docker.io/library/evil:latest", entries)
}

#[tokio::test]
async fn hostile_archives_are_refused_and_leave_nothing() {
    let agent = Agent::start().await;
    let victim = agent.dir.join("victim");
    let victim_s = victim.to_string_lossy().to_string();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "path traversal",
            hostile(vec![Entry::File(
                format!("../../../../../..{victim_s}"),
                b"x".to_vec(),
                0o644,
            )]),
        ),
        (
            "absolute path",
            hostile(vec![Entry::File(victim_s.clone(), b"x".to_vec(), 0o644)]),
        ),
        (
            "symlink escape",
            hostile(vec![
                Entry::Symlink("escape".into(), agent.dir.to_string_lossy().to_string()),
                Entry::File("escape/victim".into(), b"x".to_vec(), 0o644),
            ]),
        ),
        (
            "hardlink escape",
            hostile(vec![Entry::Hardlink("hl".into(), "/etc/passwd".into())]),
        ),
        (
            "hardlink traversal",
            hostile(vec![Entry::Hardlink(
                "hl".into(),
                "../../../../etc/passwd".into(),
            )]),
        ),
        (
            "corrupt blob",
            image::oci_archive(
                Some("docker.io/library/corrupt:latest"),
                &Config {
                    cmd: vec!["sh".into()],
                    ..Default::default()
                },
                &[Layer {
                    entries: image::busybox_layer(),
                    gzip: true,
                }],
                &Tamper {
                    corrupt_layer_blob: true,
                },
            ),
        ),
        (
            "not an archive",
            b"this is not a tar file at all".repeat(100),
        ),
    ];
    for (what, archive) in cases {
        let err = agent.import(archive, "").await.expect_err(what);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{what}: {err}");
        assert!(!victim.exists(), "{what}: wrote outside the store");
        store_is_empty(&agent);
        let list = agent
            .images()
            .list(pb::ListImagesRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(list.images.is_empty(), "{what}: an image was recorded");
    }
    // The host's files are untouched and nothing went through the links.
    assert!(std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .contains("root:"));
}

#[tokio::test]
async fn docker_save_archives_layers_and_whiteouts() {
    let agent = Agent::start().await;
    let base = image::busybox_layer();
    let upper = vec![
        // Delete a file and make a directory opaque, across layers.
        Entry::File("etc/.wh.image-file".into(), Vec::new(), 0o644),
        Entry::Dir("opaque", 0o755),
        Entry::File("opaque/.wh..wh..opq".into(), Vec::new(), 0o644),
        Entry::File("opaque/new".into(), b"new\n".to_vec(), 0o644),
        Entry::File("added".into(), b"added\n".to_vec(), 0o600),
    ];
    let mut base_with_dir = base.clone();
    base_with_dir.push(Entry::Dir("opaque", 0o755));
    base_with_dir.push(Entry::File("opaque/old".into(), b"old\n".to_vec(), 0o644));
    let archive = image::docker_archive(
        "layered:v1",
        &Config {
            entrypoint: vec!["/bin/sh".into(), "-c".into()],
            cmd: vec!["echo default".into()],
            working_dir: "/opaque".into(),
            user: "nobody".into(),
            stop_signal: "SIGUSR1".into(),
            ..Default::default()
        },
        &[
            Layer {
                entries: base_with_dir,
                gzip: true,
            },
            Layer {
                entries: upper,
                gzip: false,
            },
        ],
    );
    let resp = agent.import(archive, "").await.expect("import docker-save");
    let img = &resp.images[0];
    assert_eq!(img.references, ["docker.io/library/layered:v1"]);
    assert_eq!(img.layers.len(), 2);
    let cfg = img.config.clone().unwrap();
    assert_eq!(cfg.stop_signal, "SIGUSR1");

    // Image defaults: entrypoint + cmd, workdir, user.
    let spec = pb::ContainerSpec {
        image: "layered:v1".into(),
        ..Default::default()
    };
    let (exit, out, err) = agent.run_to_exit(spec).await;
    assert_eq!(exit.exit_code, 0, "{err}");
    assert_eq!(out, "default\n");
    let spec = pb::ContainerSpec {
        image: "layered:v1".into(),
        command: vec!["pwd; id -u; ls; test -e /etc/image-file || echo gone; cat /added".into()],
        user: "root".into(),
        ..Default::default()
    };
    let (exit, out, err) = agent.run_to_exit(spec).await;
    assert_eq!(exit.exit_code, 0, "{err}");
    assert_eq!(out, "/opaque\n0\nnew\ngone\nadded\n");

    // Inspect by id prefix, list, and remove refused while used.
    let id_hex = img.id.trim_start_matches("sha256:");
    let got = agent
        .images()
        .inspect(pb::InspectImageRequest {
            image: id_hex[..10].to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap();
    assert_eq!(got.id, img.id);
    let c = agent
        .create(pb::ContainerSpec {
            image: "layered:v1".into(),
            ..Default::default()
        })
        .await;
    let e = agent
        .images()
        .remove(pb::RemoveImageRequest {
            image: "layered:v1".into(),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    agent
        .containers()
        .remove(pb::RemoveContainerRequest {
            id: c.id,
            force: false,
            ..Default::default()
        })
        .await
        .unwrap();
    // The earlier run_to_exit containers still use it too.
    for c in agent
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers
    {
        agent
            .containers()
            .remove(pb::RemoveContainerRequest {
                id: c.id,
                force: false,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let r = agent
        .images()
        .remove(pb::RemoveImageRequest {
            image: "layered:v1".into(),
            force: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.deleted, img.id);
    store_is_empty(&agent);
    agent.assert_clean().await;
}

#[tokio::test]
async fn a_running_container_keeps_a_force_removed_image() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let c = agent
        .run(sh("trap 'exit 0' TERM; echo up; sleep 1000 & wait"))
        .await;
    agent
        .images()
        .remove(pb::RemoveImageRequest {
            image: "busybox".into(),
            force: true,
        })
        .await
        .unwrap();
    // Its layers stay until the container goes.
    assert!(
        std::fs::read_dir(agent.state_dir.join("images/layers"))
            .unwrap()
            .count()
            > 0
    );
    agent.stop(&c.id, 5).await.unwrap();
    agent
        .containers()
        .start(pb::StartContainerRequest { id: c.id.clone() })
        .await
        .unwrap();
    agent.force_remove(&c.id).await;
    store_is_empty(&agent);
    agent.assert_clean().await;
}

/// An upload a crash of berthd cut short does not stay on disk.
#[tokio::test]
async fn uploads_a_crash_cut_short_are_removed_at_start() {
    let mut agent = Agent::start().await;
    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    let tmp = agent.state_dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let leftover = tmp.join("upload-0123456789abcdef");
    std::fs::write(&leftover, vec![0u8; 1 << 20]).unwrap();
    agent.spawn().await;
    assert!(!leftover.exists(), "the half upload is still there");
    // Imports still work (the directory is made again).
    agent.import_busybox().await;
}

/// An image whose layer unpacks to more than the state file system has free
/// (here a 24 MiB file that gzip makes 24 KB) is refused with
/// RESOURCE_EXHAUSTED before it fills the disk, and leaves nothing.
#[tokio::test]
async fn a_layer_larger_than_the_free_space_is_refused_before_the_disk_fills() {
    let mut agent = Agent::start().await;
    let images = agent.state_on_tmpfs("images", "16m").await;
    let big = image::busybox_with(
        "big:1",
        vec![Entry::File("big".into(), vec![0u8; 24 << 20], 0o644)],
    );
    let err = agent.import(big, "").await.expect_err("does not fit");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("disk space"), "{err:?}");
    store_is_empty(&agent);
    let st = nix::sys::statvfs::statvfs(&images).unwrap();
    assert!(
        st.blocks_available() * st.fragment_size() > 15 << 20,
        "the space is given back"
    );
    // What fits still goes in.
    agent.import_busybox().await;
    let (exit, out, _) = agent.run_to_exit(sh("echo fits")).await;
    assert_eq!((exit.exit_code, out.as_str()), (0, "fits\n"));
}
