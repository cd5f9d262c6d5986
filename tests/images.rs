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

#[tokio::test]
async fn history_pairs_the_configs_steps_with_the_layers() {
    use common::cli::{expect_failure, json_lines, ok};
    let agent = Agent::start().await;
    let imported = agent
        .import(image::two_layer("docker.io/library/layered:v1"), "")
        .await
        .expect("import");
    let img = &imported.images[0];
    let h = agent
        .images()
        .history(pb::ImageHistoryRequest {
            image: "layered:v1".into(),
        })
        .await
        .expect("history")
        .into_inner();
    assert_eq!(h.id, img.id);
    let by: Vec<&str> = h.entries.iter().map(|e| e.created_by.as_str()).collect();
    assert_eq!(
        by,
        [
            "ADD rootfs.tar /",
            "ENV PATH=/bin",
            "RUN echo layered > /etc/layered",
            "CMD [\"sh\"]"
        ]
    );
    let layers: Vec<&str> = h.entries.iter().map(|e| e.layer.as_str()).collect();
    assert_eq!(
        layers,
        [img.layers[0].as_str(), "", img.layers[1].as_str(), ""]
    );
    let empty: Vec<bool> = h.entries.iter().map(|e| e.empty_layer).collect();
    assert_eq!(empty, [false, true, false, true]);
    // busybox is about a megabyte; the second layer holds one 8-byte file.
    assert!(h.entries[0].size_bytes > 500_000, "{:?}", h.entries[0]);
    assert!(
        (8..100_000).contains(&h.entries[2].size_bytes),
        "{:?}",
        h.entries[2]
    );
    assert_eq!(h.entries[1].size_bytes, 0);
    assert_eq!(h.entries[3].comment, "made by CMD [\"sh\"]");
    assert_eq!(
        h.entries[0].created_at.as_ref().map(|t| t.seconds),
        Some(1_767_225_600)
    );

    // berthctl: Docker's columns, newest step first.
    let out = ok(&agent, &["image", "history", "layered:v1"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    for col in ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"] {
        assert!(lines[0].contains(col), "{out}");
    }
    let short = &img.id["sha256:".len().."sha256:".len() + 12];
    assert!(
        lines[1].starts_with(short) && lines[1].contains("CMD [\"sh\"]"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("<missing>") && lines[2].contains("RUN echo layered"),
        "{out}"
    );
    assert!(
        lines[4].contains("ADD rootfs.tar /") && lines[4].contains("MB"),
        "{out}"
    );
    assert_eq!(
        ok(&agent, &["history", "-q", "layered:v1"]),
        format!("{short}\n<missing>\n<missing>\n<missing>\n")
    );
    let full = ok(&agent, &["history", "--no-trunc", "-q", "layered:v1"]);
    assert_eq!(full.lines().next(), Some(img.id.as_str()));
    let json = json_lines(&ok(&agent, &["history", "-o", "json", "layered:v1"]));
    assert_eq!(json.len(), 4);
    assert_eq!(json[2]["createdBy"], "RUN echo layered > /etc/layered");

    // An unknown image: NOT_FOUND, and berthctl says which.
    let err = agent
        .images()
        .history(pb::ImageHistoryRequest {
            image: "nosuch:v1".into(),
        })
        .await
        .expect_err("history of an unknown image");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let args = ["history", "nosuch:v1"];
    expect_failure(&agent.ctl(&args), &args, 1, &["nosuch"]);
    let long = "a".repeat(600);
    let err = agent
        .images()
        .history(pb::ImageHistoryRequest { image: long })
        .await
        .expect_err("history of a name too long");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}
