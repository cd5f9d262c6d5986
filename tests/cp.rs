//! End to end: `cp` (issue 20): files and directories into and out of a
//! running container as tar streams, against the real berthd and monitor.
//! Every container path is resolved inside the container's root: symlinks
//! planted in the container, and hostile archives, must neither read nor
//! write anything outside it.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth::v1 as pb;
use berth::v1::exec_client::ExecClient;
use common::{eventually, sh, Agent};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_types::StatusExt;

/// A running busybox container that sleeps (with `mounts`).
async fn sleeper(agent: &Agent, mounts: Vec<pb::Mount>) -> pb::Container {
    let mut spec = sh("sleep 100000");
    spec.mounts = mounts;
    agent.run(spec).await
}

/// Runs `script` in the container: its stdout (the exit must be 0).
async fn exec(agent: &Agent, id: &str, script: &str) -> String {
    let r = ExecClient::new(agent.channel.clone())
        .exec_sync(pb::ExecSyncRequest {
            spec: Some(pb::ExecSpec {
                container: id.into(),
                argv: vec!["sh".into(), "-c".into(), script.into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("exec")
        .into_inner();
    let out = String::from_utf8_lossy(&r.stdout).into_owned();
    assert_eq!(
        r.exit.as_ref().map(|e| e.exit_code),
        Some(0),
        "{script}: {out}{}",
        String::from_utf8_lossy(&r.stderr)
    );
    out
}

fn reason(s: &tonic::Status) -> String {
    s.get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

fn ctl_ok(agent: &Agent, args: &[&str]) -> Vec<u8> {
    let out = agent.ctl(args);
    assert!(
        out.status.success(),
        "berthctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

async fn copy_to(
    agent: &Agent,
    id: &str,
    path: &str,
    archive: Vec<u8>,
) -> Result<pb::CopyToResponse, tonic::Status> {
    let mut msgs = vec![pb::CopyToRequest {
        request: Some(pb::copy_to_request::Request::Open(pb::CopyToOpen {
            id: id.into(),
            path: path.into(),
            ..Default::default()
        })),
    }];
    for c in archive.chunks(64 * 1024) {
        msgs.push(pb::CopyToRequest {
            request: Some(pb::copy_to_request::Request::Data(c.to_vec())),
        });
    }
    agent
        .containers()
        .copy_to(tokio_stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

async fn copy_from(
    agent: &Agent,
    id: &str,
    path: &str,
) -> Result<(pb::PathStat, Vec<u8>), tonic::Status> {
    let mut s = agent
        .containers()
        .copy_from(pb::CopyFromRequest {
            id: id.into(),
            path: path.into(),
        })
        .await?
        .into_inner();
    let mut stat = None;
    let mut data = Vec::new();
    while let Some(m) = s.next().await {
        match m?.response {
            Some(pb::copy_from_response::Response::Stat(st)) => stat = Some(st),
            Some(pb::copy_from_response::Response::Data(d)) => data.extend(d),
            None => {}
        }
    }
    Ok((stat.expect("a stat first"), data))
}

/// The names in a tar.
fn names(archive: &[u8]) -> Vec<String> {
    tar::Archive::new(archive)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// A tar entry with a raw name (the `tar` crate's builder refuses `..` and
/// absolute names, as it should).
fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    if matches!(kind, tar::EntryType::Char) {
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
    }
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn tar_of(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        raw_entry(&mut b, name, *kind, link, data);
    }
    b.into_inner().unwrap()
}

/// A tree with files, a nested and an empty directory, a relative
/// symlink and modes of their own.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deep")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(root.join("sub/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::write(root.join("sub/deep/z"), vec![7u8; 300_000]).unwrap();
    std::fs::set_permissions(root.join("a.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::set_permissions(
        root.join("sub/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(root.join("empty"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("../a.txt", root.join("sub/link")).unwrap();
}

fn assert_same_tree(a: &Path, b: &Path) {
    for rel in ["a.txt", "sub/run.sh", "sub/deep/z"] {
        assert_eq!(
            std::fs::read(a.join(rel)).unwrap(),
            std::fs::read(b.join(rel)).unwrap(),
            "{rel}"
        );
    }
    for rel in ["a.txt", "sub/run.sh", "empty", "sub", "sub/deep/z"] {
        let (ma, mb) = (
            a.join(rel).metadata().unwrap(),
            b.join(rel).metadata().unwrap(),
        );
        assert_eq!(ma.mode() & 0o7777, mb.mode() & 0o7777, "mode of {rel}");
        if !ma.is_dir() {
            assert_eq!(ma.mtime(), mb.mtime(), "mtime of {rel}");
        }
    }
    assert_eq!(
        std::fs::read_link(b.join("sub/link")).unwrap(),
        PathBuf::from("../a.txt")
    );
}

#[tokio::test]
async fn a_tree_round_trips_with_files_dirs_a_symlink_and_modes() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let c = sleeper(&agent, vec![]).await;
    let src = agent.dir.join("tree");
    make_tree(&src);

    // Into an existing directory: /tmp/tree.
    ctl_ok(
        &agent,
        &["cp", src.to_str().unwrap(), &format!("{}:/tmp/", c.id)],
    );
    let seen = exec(&agent, &c.id, "cat /tmp/tree/a.txt; readlink /tmp/tree/sub/link; stat -c %a /tmp/tree/sub/run.sh /tmp/tree/empty; stat -c %u:%g /tmp/tree/a.txt").await;
    assert_eq!(seen, "alpha\n../a.txt\n755\n700\n0:0\n");
    // Out to a new name whose parent exists: made, with the contents.
    let out = agent.dir.join("back");
    ctl_ok(
        &agent,
        &["cp", &format!("{}:/tmp/tree", c.id), out.to_str().unwrap()],
    );
    assert_same_tree(&src, &out);
    // `dir/.` copies the contents into an existing directory.
    let into = agent.dir.join("into");
    std::fs::create_dir(&into).unwrap();
    ctl_ok(
        &agent,
        &[
            "cp",
            &format!("{}:/tmp/tree/.", c.id),
            into.to_str().unwrap(),
        ],
    );
    assert_same_tree(&src, &into);
    // A file to a new file name in the container, and a file over a file.
    ctl_ok(
        &agent,
        &[
            "cp",
            src.join("a.txt").to_str().unwrap(),
            &format!("{}:/tmp/renamed", c.id),
        ],
    );
    assert_eq!(exec(&agent, &c.id, "cat /tmp/renamed").await, "alpha\n");
    // A file into a directory that is not there: refused, as Docker does.
    let e = agent.ctl(&[
        "cp",
        src.join("a.txt").to_str().unwrap(),
        &format!("{}:/nodir/", c.id),
    ]);
    assert_eq!(
        e.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&e.stderr)
    );

    // `cp c:/etc/hosts -`: a tar of one entry, "hosts".
    let tar = ctl_ok(&agent, &["cp", &format!("{}:/etc/hosts", c.id), "-"]);
    assert_eq!(names(&tar), ["hosts"]);
    let mut ar = tar::Archive::new(&tar[..]);
    let mut e = ar.entries().unwrap().next().unwrap().unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut e, &mut text).unwrap();
    assert!(text.contains("localhost"), "{text}");
    // And `-` in: a tar on stdin into a directory.
    let archive = tar_of(&[("fromstdin", tar::EntryType::Regular, "", b"piped\n")]);
    let mut child = std::process::Command::new(common::bin("berthctl"))
        .args([
            "--host",
            agent.socket.to_str().unwrap(),
            "cp",
            "-",
            &format!("{}:/tmp", c.id),
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &archive).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert_eq!(exec(&agent, &c.id, "cat /tmp/fromstdin").await, "piped\n");

    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn symlinks_in_the_container_never_lead_out_of_its_root() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let c = sleeper(&agent, vec![]).await;
    // A file on the host, outside the container, and a directory.
    let outside = agent.dir.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), "host secret").unwrap();
    let host = outside
        .to_str()
        .unwrap()
        .trim_start_matches('/')
        .to_string();
    exec(
        &agent,
        &c.id,
        &format!(
            "mkdir -p /a/b && ln -s / /a/b/root && ln -s ../../../../../../../.. /a/b/up \
             && ln -s /{host}/secret /abs && ln -s /{host} /absdir"
        ),
    )
    .await;

    // Reading through them finds the container's paths, which are not there.
    for path in [
        format!("/a/b/root/{host}/secret"),
        format!("/a/b/up/{host}/secret"),
        "/absdir/secret".to_string(),
    ] {
        let e = copy_from(&agent, &c.id, &path).await.unwrap_err();
        assert_eq!(
            (e.code(), reason(&e).as_str()),
            (Code::NotFound, "PATH_NOT_FOUND"),
            "{path}: {e:?}"
        );
    }
    // The link itself is copied as a link; -L finds nothing to follow.
    let (st, tar) = copy_from(&agent, &c.id, "/abs").await.unwrap();
    assert_eq!(st.mode & 0o170000, 0o120000);
    assert_eq!(st.link_target, format!("/{host}/secret"));
    assert_eq!(names(&tar), ["abs"]);
    let out = agent.ctl(&[
        "cp",
        "-L",
        &format!("{}:/abs", c.id),
        agent.dir.join("got").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!agent.dir.join("got").exists());
    // `..` and `/` through links stop at the container's root: copying
    // into /a/b/up/ writes the container's /, not the host's.
    let name = format!("cp-canary-{}", std::process::id());
    copy_to(
        &agent,
        &c.id,
        "/a/b/up/",
        tar_of(&[(&name, tar::EntryType::Regular, "", b"in")]),
    )
    .await
    .unwrap();
    assert!(!Path::new("/").join(&name).exists());
    assert_eq!(exec(&agent, &c.id, &format!("cat /{name}")).await, "in");
    // Into the host directory through the absolute link: not there.
    let e = copy_to(
        &agent,
        &c.id,
        "/absdir",
        tar_of(&[("secret", tar::EntryType::Regular, "", b"x")]),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert_eq!(
        std::fs::read_to_string(outside.join("secret")).unwrap(),
        "host secret"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);

    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn a_hostile_archive_changes_nothing_outside_and_is_refused() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let c = sleeper(&agent, vec![]).await;
    let outside = agent.dir.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim"), "untouched").unwrap();
    let host = outside.to_str().unwrap().to_string();
    exec(&agent, &c.id, "mkdir -p /dst").await;
    use tar::EntryType::{Char, Link, Regular, Symlink};
    let up = "../../../../../../../../..";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dot-dot", tar_of(&[("../x", Regular, "", b"x")])),
        (
            "absolute",
            tar_of(&[(&format!("{host}/victim"), Regular, "", b"x")]),
        ),
        (
            "symlink to the host dir, then a file through it",
            tar_of(&[
                ("evil", Symlink, &host, b""),
                ("evil/victim", Regular, "", b"x"),
            ]),
        ),
        (
            "symlink to /etc, then a file through it",
            tar_of(&[
                ("etc", Symlink, "/etc", b""),
                ("etc/passwd", Regular, "", b"x"),
            ]),
        ),
        (
            "relative symlink up, then a file through it",
            tar_of(&[
                ("up", Symlink, up, b""),
                (&format!("up{host}/victim"), Regular, "", b"x"),
            ]),
        ),
        (
            "hard link out",
            tar_of(&[("hl", Link, &format!("{up}/etc/passwd"), b"")]),
        ),
        ("device node", tar_of(&[("null", Char, "", b"")])),
        ("not a tar", vec![1u8; 4096]),
    ];
    for (what, archive) in cases {
        let e = copy_to(&agent, &c.id, "/dst", archive).await.unwrap_err();
        assert_eq!(
            (e.code(), reason(&e).as_str()),
            (Code::InvalidArgument, "INVALID_ARCHIVE"),
            "{what}: {e:?}"
        );
        assert!(e.message().len() < 300, "{what}: {}", e.message());
    }
    assert_eq!(
        std::fs::read_to_string(outside.join("victim")).unwrap(),
        "untouched"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    // The container's /etc/passwd is its own still, and nothing was made
    // beside the refused entries but the symlinks (never followed).
    let passwd = exec(
        &agent,
        &c.id,
        "cat /etc/passwd; ls -A /dst | sort | tr '\\n' ' '",
    )
    .await;
    assert!(passwd.contains("root:"), "{passwd}");
    assert!(passwd.trim_end().ends_with("etc evil up"), "{passwd}");
    // A name of 5000 bytes is refused without being echoed whole.
    let long = format!("{}/x", "d".repeat(5000));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    b.append_data(&mut h, &long, &[][..]).unwrap();
    let e = copy_to(&agent, &c.id, "/dst", b.into_inner().unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().len() < 300, "{}", e.message());

    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn a_copy_into_a_running_container_sees_its_mounts() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let data = agent.dir.join("data");
    std::fs::create_dir(&data).unwrap();
    let c = sleeper(
        &agent,
        vec![
            pb::Mount {
                r#type: pb::mount::Type::Tmpfs as i32,
                target: "/scratch".into(),
                ..Default::default()
            },
            pb::Mount {
                r#type: pb::mount::Type::Bind as i32,
                source: data.to_str().unwrap().into(),
                target: "/data".into(),
                ..Default::default()
            },
        ],
    )
    .await;
    let f = agent.dir.join("f");
    std::fs::write(&f, "mounted").unwrap();
    ctl_ok(
        &agent,
        &["cp", f.to_str().unwrap(), &format!("{}:/scratch/", c.id)],
    );
    ctl_ok(
        &agent,
        &["cp", f.to_str().unwrap(), &format!("{}:/data/", c.id)],
    );
    // On the tmpfs as the container sees it (not in the layer beneath).
    let seen = exec(
        &agent,
        &c.id,
        "cat /scratch/f; grep -c ' /scratch tmpfs' /proc/mounts",
    )
    .await;
    assert_eq!(seen, "mounted1\n");
    assert_eq!(std::fs::read_to_string(data.join("f")).unwrap(), "mounted");
    // And out of the tmpfs again.
    let tar = ctl_ok(&agent, &["cp", &format!("{}:/scratch/f", c.id), "-"]);
    assert_eq!(names(&tar), ["f"]);

    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn missing_containers_and_paths_are_not_found() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let c = sleeper(&agent, vec![]).await;
    let e = copy_from(&agent, "no-such-container", "/etc")
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::NotFound, "CONTAINER_NOT_FOUND")
    );
    let e = copy_to(&agent, "no-such-container", "/tmp", Vec::new())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = copy_from(&agent, &c.id, "/no/such/file").await.unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::NotFound, "PATH_NOT_FOUND")
    );
    let e = copy_to(&agent, &c.id, "/no/such/dir", Vec::new())
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::NotFound, "PATH_NOT_FOUND")
    );
    let e = copy_to(&agent, &c.id, "/etc/hosts", Vec::new())
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::FailedPrecondition, "NOT_A_DIRECTORY")
    );
    let e = copy_from(&agent, &c.id, "relative").await.unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::InvalidArgument, "INVALID_PATH")
    );
    let e = copy_from(&agent, &c.id, &format!("/{}", "a".repeat(5000)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().len() < 200, "{}", e.message());
    let out = agent.ctl(&[
        "cp",
        &format!("{}:/no/such", c.id),
        agent.dir.join("x").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = agent.ctl(&["cp", "a", "b"]);
    assert_ne!(out.status.code(), Some(0));

    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

/// A created or exited container is copied from and to through its own
/// layer on the image's (a detached overlay, gone after the copy): what is
/// copied in before the start is there when it runs, what it wrote and
/// deleted shows after its exit, its mounts and a read-only root are
/// refused, and `berthctl cp` works the same.
#[tokio::test]
async fn a_stopped_container_is_copied_through_its_writable_layer() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let script = "cat /tmp/in/hello; cat /tmp/by-ctl; echo made > /tmp/made; rm /bin/ls";
    let mut spec = sh(script);
    spec.mounts = vec![pb::Mount {
        r#type: pb::mount::Type::Volume as i32,
        source: "cp-stopped-vol".into(),
        target: "/data".into(),
        ..Default::default()
    }];
    let c = agent.create(spec).await;

    // Created: the image's files, and a copy in.
    let (stat, data) = copy_from(&agent, &c.id, "/bin/ls")
        .await
        .expect("copy from");
    assert_eq!(stat.name, "ls");
    assert_eq!(names(&data), ["ls"]);
    let archive = tar_of(&[
        ("in", tar::EntryType::Directory, "", b""),
        ("in/hello", tar::EntryType::Regular, "", b"hello-from-cp\n"),
    ]);
    copy_to(&agent, &c.id, "/tmp", archive)
        .await
        .expect("copy to");
    let local = agent.dir.join("by-ctl");
    std::fs::write(&local, "by-berthctl\n").unwrap();
    ctl_ok(
        &agent,
        &[
            "cp",
            local.to_str().unwrap(),
            &format!("{}:/tmp/by-ctl", c.id),
        ],
    );
    // Its mounts exist only while it runs.
    for path in ["/data", "/data/x", "/tmp/../data/."] {
        let e = copy_from(&agent, &c.id, path).await.unwrap_err();
        assert_eq!(
            (e.code(), reason(&e).as_str()),
            (Code::FailedPrecondition, "CP_UNSUPPORTED"),
            "{path}"
        );
        assert!(e.message().contains("mount /data"), "{e:?}");
    }
    let e = copy_to(&agent, &c.id, "/data", tar_of(&[]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    // It runs with what was copied in.
    agent
        .containers()
        .start(pb::StartContainerRequest { id: c.id.clone() })
        .await
        .expect("start");
    let exit = agent.wait(&c.id).await.exit.expect("exit");
    let (out, err) = agent.logs(&c.id).await;
    assert_eq!(exit.exit_code, 0, "{out}{err}");
    assert_eq!(out, "hello-from-cp\nby-berthctl\n", "{err}");

    // Exited: what it wrote, and not what it deleted (its whiteout).
    let made = ctl_ok(&agent, &["cp", &format!("{}:/tmp/made", c.id), "-"]);
    assert_eq!(
        tar::Archive::new(&made[..])
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut s = String::new();
                std::io::Read::read_to_string(&mut e, &mut s).unwrap();
                s
            })
            .collect::<Vec<_>>(),
        ["made\n"]
    );
    let e = copy_from(&agent, &c.id, "/bin/ls").await.unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::NotFound, "PATH_NOT_FOUND")
    );
    agent.force_remove(&c.id).await;

    // A read-only root stays read-only.
    let mut spec = sh("true");
    spec.security = Some(pb::SecurityOptions {
        read_only_rootfs: true,
        ..Default::default()
    });
    let ro = agent.create(spec).await;
    let e = copy_to(
        &agent,
        &ro.id,
        "/tmp",
        tar_of(&[("f", tar::EntryType::Regular, "", b"x")]),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::FailedPrecondition, "READ_ONLY")
    );
    agent.force_remove(&ro.id).await;
    let _ = agent
        .volumes()
        .remove(pb::RemoveVolumeRequest {
            name: "cp-stopped-vol".into(),
        })
        .await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn files_copied_into_a_userns_container_belong_to_its_ids() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    if (v.next().unwrap_or(0), v.next().unwrap_or(0)) < (6, 15) {
        eprintln!("kernel {release}: no --userns auto here (tests/userns.rs proves the refusal)");
        return;
    }
    let mut spec = sh("sleep 100000");
    spec.security = Some(pb::SecurityOptions {
        userns: "auto".into(),
        ..Default::default()
    });
    let c = agent.run(spec).await;
    let m = c.userns.expect("a mapping");
    let mut b = tar::Builder::new(Vec::new());
    for (name, uid) in [("root-owned", 0u64), ("user-owned", 1000)] {
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_uid(uid);
        h.set_gid(uid);
        b.append_data(&mut h, name, &b"hi"[..]).unwrap();
    }
    let archive = b.into_inner().unwrap();
    // Without copy_uid_gid: the container's root.
    copy_to(&agent, &c.id, "/tmp", archive.clone())
        .await
        .unwrap();
    assert_eq!(
        exec(
            &agent,
            &c.id,
            "stat -c %u:%g /tmp/root-owned /tmp/user-owned"
        )
        .await,
        "0:0\n0:0\n"
    );
    // With it: the archive's ids, as the container sees them.
    let mut msgs = vec![pb::CopyToRequest {
        request: Some(pb::copy_to_request::Request::Open(pb::CopyToOpen {
            id: c.id.clone(),
            path: "/tmp".into(),
            copy_uid_gid: true,
            ..Default::default()
        })),
    }];
    msgs.push(pb::CopyToRequest {
        request: Some(pb::copy_to_request::Request::Data(archive)),
    });
    agent
        .containers()
        .copy_to(tokio_stream::iter(msgs))
        .await
        .unwrap();
    assert_eq!(
        exec(
            &agent,
            &c.id,
            "stat -c %u:%g /tmp/root-owned /tmp/user-owned"
        )
        .await,
        "0:0\n1000:1000\n"
    );
    // On the host: the container's mapped ids, never host root.
    let pid = agent.inspect(&c.id).await.pid;
    let host = std::fs::metadata(format!("/proc/{pid}/root/tmp/user-owned")).unwrap();
    assert_eq!(
        (host.uid(), host.gid()),
        (m.host_uid + 1000, m.host_gid + 1000)
    );
    // Out: the container's ids again.
    let (_, tar) = copy_from(&agent, &c.id, "/tmp/user-owned").await.unwrap();
    let mut ar = tar::Archive::new(&tar[..]);
    let e = ar.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(
        (e.header().uid().unwrap(), e.header().gid().unwrap()),
        (1000, 1000)
    );

    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

/// 100 MB in and out with berthctl: time and berthd's peak RSS (VmHWM).
/// `cargo test -p berth --test cp -- --ignored --nocapture throughput`
#[tokio::test]
#[ignore]
async fn throughput_and_peak_rss_of_100_mb() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let c = sleeper(&agent, vec![]).await;
    let big = agent.dir.join("big");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&big).unwrap();
        let mut x = 0x9e3779b97f4a7c15u64;
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..100 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            f.write_all(&buf).unwrap();
        }
    }
    let hwm = || {
        std::fs::read_to_string(format!("/proc/{}/status", agent.pid()))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("VmHWM"))
            .unwrap()
            .to_string()
    };
    eprintln!("berthd before: {}", hwm());
    let t = std::time::Instant::now();
    ctl_ok(
        &agent,
        &["cp", big.to_str().unwrap(), &format!("{}:/tmp/big", c.id)],
    );
    eprintln!("cp in 100 MiB: {:?}, berthd {}", t.elapsed(), hwm());
    let back = agent.dir.join("back");
    let t = std::time::Instant::now();
    ctl_ok(
        &agent,
        &["cp", &format!("{}:/tmp/big", c.id), back.to_str().unwrap()],
    );
    eprintln!("cp out 100 MiB: {:?}, berthd {}", t.elapsed(), hwm());
    assert_eq!(std::fs::read(&big).unwrap(), std::fs::read(&back).unwrap());
    assert!(eventually(1, async || true).await);
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}
