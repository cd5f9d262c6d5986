//! End to end: pulling from a real registry (Debian's docker-registry on
//! loopback, images pushed with skopeo) into a real berthd.

mod common;

use std::path::Path;
use std::time::Duration;

use berth::v1 as pb;
use common::image::{busybox_layer, Entry};
use common::registry::{host_arch, noise, Layout, Proxy, Registry, TestLayer};
use common::Agent;
use tokio_stream::StreamExt;

/// A pull through the API: every progress message, then the image.
async fn pull(
    agent: &Agent,
    reference: &str,
    creds: Option<(&str, &str)>,
) -> Result<(Vec<pb::PullImageProgress>, pb::Image), tonic::Status> {
    let mut s = agent
        .images()
        .pull(pb::PullImageRequest {
            reference: reference.to_string(),
            credentials: creds.map(|(u, p)| pb::RegistryCredentials {
                username: u.into(),
                password: p.into(),
            }),
        })
        .await?
        .into_inner();
    let mut msgs = Vec::new();
    while let Some(m) = s.next().await {
        msgs.push(m?);
    }
    let image = msgs
        .last()
        .and_then(|m| m.image.clone())
        .expect("the last message carries the image");
    Ok((msgs, image))
}

/// Final state of each layer.
fn final_states(msgs: &[pb::PullImageProgress]) -> Vec<pb::LayerState> {
    msgs.last()
        .unwrap()
        .layers
        .iter()
        .map(|l| pb::LayerState::try_from(l.state).unwrap())
        .collect()
}

/// Runs berthctl with `input` on its stdin.
fn ctl_stdin(agent: &Agent, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(common::bin("berthctl"))
        .arg("--host")
        .arg(&agent.socket)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running berthctl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn file(path: &str, data: &[u8]) -> Entry {
    Entry::File(path.into(), data.to_vec(), 0o644)
}

/// Runs `script` in a container of `image`; returns stdout.
async fn run(agent: &Agent, image: &str, script: &str) -> String {
    let mut spec = common::sh(script);
    spec.image = image.to_string();
    let (exit, out, err) = agent.run_to_exit(spec).await;
    assert_eq!(exit.exit_code, 0, "stdout {out:?} stderr {err:?}");
    out
}

/// Files and directories under the store's dir `sub`.
fn entries(agent: &Agent, sub: &str) -> Vec<String> {
    std::fs::read_dir(agent.state_dir.join("images").join(sub))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn pull_by_tag_digest_and_through_an_index() {
    let reg = Registry::start();
    let agent = Agent::start().await;
    let mut layout = Layout::new();
    // The other platform comes first in the index: selection must pick ours.
    let other = if host_arch() == "amd64" {
        "arm64"
    } else {
        "amd64"
    };
    let mk = |arch: &str| {
        layout.image(
            arch,
            &["sh"],
            vec![
                TestLayer {
                    entries: busybox_layer(),
                    gzip: true,
                },
                TestLayer {
                    entries: vec![file("etc/arch", format!("{arch}\n").as_bytes())],
                    gzip: false,
                },
            ],
        )
    };
    let (other_desc, _) = mk(other);
    let (host_desc, _) = mk(host_arch());
    let index = layout.index(vec![other_desc, host_desc.clone()]);
    layout.tag("multi", index.clone());
    layout.tag("single", host_desc.clone());
    let (zed, _) = layout.image(
        host_arch(),
        &["sh"],
        vec![
            TestLayer {
                entries: busybox_layer(),
                gzip: true,
            },
            TestLayer {
                entries: vec![file("etc/zed", b"zstd layer\n")],
                gzip: true,
            },
        ],
    );
    layout.tag("zed", zed);
    reg.push(&layout.dir, "multi", "app/multi:1", &[]);
    reg.push(&layout.dir, "single", "app/single:1", &[]);
    reg.push(&layout.dir, "single", "app/docker:1", &["--format", "v2s2"]);
    reg.push(
        &layout.dir,
        "zed",
        "app/zed:1",
        &["--dest-compress-format", "zstd"],
    );
    let a = reg.addr();

    // Through the index, by tag.
    let (msgs, img) = pull(&agent, &format!("{a}/app/multi:1"), None)
        .await
        .expect("pull through the index");
    let last = msgs.last().unwrap();
    assert_eq!(last.index_digest, index["digest"].as_str().unwrap());
    assert_eq!(last.manifest_digest, host_desc["digest"].as_str().unwrap());
    assert_eq!(img.architecture, host_arch());
    assert_eq!(img.references, vec![format!("{a}/app/multi:1")]);
    assert_eq!(
        final_states(&msgs),
        vec![pb::LayerState::Done, pb::LayerState::Done]
    );
    assert!(last.layers.iter().all(|l| l.done_bytes == l.total_bytes));
    assert_eq!(
        run(&agent, &format!("{a}/app/multi:1"), "cat /etc/arch").await,
        format!("{}\n", host_arch())
    );

    // The same image by another tag: nothing to download.
    let (msgs, img2) = pull(&agent, &format!("{a}/app/single:1"), None)
        .await
        .expect("pull by tag");
    assert_eq!(img2.id, img.id);
    assert_eq!(final_states(&msgs), vec![pb::LayerState::AlreadyPresent; 2]);

    // By digest.
    let by_digest = format!("{a}/app/single@{}", host_desc["digest"].as_str().unwrap());
    let (_, img3) = pull(&agent, &by_digest, None)
        .await
        .expect("pull by digest");
    assert_eq!(img3.id, img.id);
    assert_eq!(
        run(&agent, &by_digest, "cat /etc/arch").await,
        format!("{}\n", host_arch())
    );

    // A Docker schema 2 manifest (skopeo converted it).
    let (msgs, img4) = pull(&agent, &format!("{a}/app/docker:1"), None)
        .await
        .expect("pull a docker schema 2 image");
    assert_eq!(img4.id, img.id);
    assert!(msgs
        .last()
        .unwrap()
        .layers
        .iter()
        .all(|l| l.media_type.starts_with("application/vnd.docker.")));

    // zstd layers (skopeo recompressed them).
    let (msgs, _) = pull(&agent, &format!("{a}/app/zed:1"), None)
        .await
        .expect("pull zstd layers");
    let zl = &msgs.last().unwrap().layers[1];
    assert!(zl.media_type.contains("zstd"), "{}", zl.media_type);
    assert_eq!(zl.state, pb::LayerState::Done as i32);
    assert_eq!(
        run(&agent, &format!("{a}/app/zed:1"), "cat /etc/zed").await,
        "zstd layer\n"
    );

    // Shared layers show in the disk usage.
    let listed = agent
        .images()
        .inspect(pb::InspectImageRequest {
            image: format!("{a}/app/zed:1"),
        })
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap();
    assert!(listed.shared_size_bytes > 0, "{listed:?}");
    assert!(listed.unique_size_bytes > 0, "{listed:?}");
    assert_eq!(
        listed.unique_size_bytes + listed.shared_size_bytes,
        listed.size_bytes
    );

    // Every pull was announced, with the digest it resolved to.
    let mut ev = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            from_seq: 1,
            actions: vec![pb::EventAction::Pulled as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let e = tokio::time::timeout(Duration::from_secs(30), ev.next())
        .await
        .expect("pulled event")
        .unwrap()
        .unwrap();
    assert_eq!(e.name, format!("{a}/app/multi:1"));
    assert_eq!(e.id, img.id);
    assert_eq!(
        e.image,
        format!("{a}/app/multi@{}", host_desc["digest"].as_str().unwrap())
    );

    // No tag, no platform: clear errors.
    let err = pull(&agent, &format!("{a}/app/nothing:1"), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    let err = pull(&agent, "Bad/Ref", None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(entries(&agent, "downloads").is_empty());
}

#[tokio::test]
async fn whiteouts_across_layers_give_the_right_tree() {
    let reg = Registry::start();
    let agent = Agent::start().await;
    let mut layout = Layout::new();
    let mut base = busybox_layer();
    base.extend([
        Entry::Dir("data", 0o755),
        file("data/a", b"a"),
        file("data/b", b"b"),
        Entry::Dir("opq", 0o755),
        file("opq/x", b"x"),
    ]);
    let (desc, _) = layout.image(
        host_arch(),
        &["sh"],
        vec![
            TestLayer {
                entries: base,
                gzip: true,
            },
            TestLayer {
                entries: vec![
                    file("data/.wh.a", b""),
                    file("opq/.wh..wh..opq", b""),
                    file("opq/y", b"y"),
                ],
                gzip: false,
            },
            TestLayer {
                entries: vec![file("data/c", b"c")],
                gzip: true,
            },
        ],
    );
    layout.tag("wh", desc);
    reg.push(&layout.dir, "wh", "wh:1", &[]);
    let r = format!("{}/wh:1", reg.addr());
    pull(&agent, &r, None).await.expect("pull");
    assert_eq!(
        run(&agent, &r, "ls /data; echo --; ls -A /opq").await,
        "b\nc\n--\ny\n"
    );
}

#[tokio::test]
async fn basic_auth_refuses_without_credentials_and_works_with_them() {
    let reg = Registry::start_with_auth("alice", "s3cret-pw");
    let agent = Agent::start().await;
    let mut layout = Layout::new();
    let (desc, _) = layout.image(
        host_arch(),
        &["sh"],
        vec![TestLayer {
            entries: busybox_layer(),
            gzip: true,
        }],
    );
    layout.tag("t", desc);
    reg.push(&layout.dir, "t", "private/app:1", &[]);
    let r = format!("{}/private/app:1", reg.addr());

    let err = pull(&agent, &r, None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    let err = pull(&agent, &r, Some(("alice", "wrong")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    pull(&agent, &r, Some(("alice", "s3cret-pw")))
        .await
        .expect("pull with credentials");
    // Per-request credentials are not remembered.
    agent
        .images()
        .remove(pb::RemoveImageRequest {
            image: r.clone(),
            force: false,
        })
        .await
        .unwrap();
    let err = pull(&agent, &r, None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    // Login checks the password, then stores it 0600, and pulls use it.
    let login = |pw: &str| {
        ctl_stdin(
            &agent,
            &["login", &reg.addr(), "-u", "alice", "--password-stdin"],
            &format!("{pw}\n"),
        )
    };
    let o = login("wrong");
    assert!(!o.status.success(), "login with a wrong password succeeded");
    let err = agent
        .images()
        .login(pb::LoginRequest {
            registry: reg.addr(),
            credentials: Some(pb::RegistryCredentials {
                username: "alice".into(),
                password: "wrong".into(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    let o = login("s3cret-pw");
    assert!(
        o.status.success(),
        "login failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains("s3cret-pw"));
    let auth_file = agent.state_dir.join("registry-auth.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&auth_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let o = agent.ctl(&["pull", &r]);
    assert!(
        o.status.success(),
        "pull with stored credentials: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("Pulled: {r}")), "{out}");
    assert!(
        !agent.log().contains("s3cret-pw"),
        "the password was logged"
    );
    let o = agent.ctl(&["logout", &reg.addr()]);
    assert!(o.status.success());
    assert!(!std::fs::read_to_string(&auth_file)
        .unwrap()
        .contains("s3cret-pw"));
}

/// Each way a registry can fail has its own code, so clients need not
/// parse messages.
#[tokio::test]
async fn registry_failures_have_their_codes() {
    let reg = Registry::start();
    let agent = Agent::start().await;
    let mut layout = Layout::new();
    let (desc, _) = layout.image(
        host_arch(),
        &["sh"],
        vec![TestLayer {
            entries: busybox_layer(),
            gzip: true,
        }],
    );
    layout.tag("t", desc);
    reg.push(&layout.dir, "t", "app/known:1", &[]);
    let a = reg.addr();

    // An unknown tag of a known repository, and an unknown repository.
    for r in [format!("{a}/app/known:nope"), format!("{a}/app/unknown:1")] {
        let err = pull(&agent, &r, None).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound, "{r}: {err:?}");
    }
    // Nothing listening: a loopback port that was just free.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = pull(&agent, &format!("127.0.0.1:{port}/app/known:1"), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    // The registry works: the failures above were the references'.
    pull(&agent, &format!("{a}/app/known:1"), None)
        .await
        .expect("pull of the known tag");
}

#[tokio::test]
async fn a_corrupt_blob_is_refused_and_leaves_nothing() {
    let reg = Registry::start();
    let agent = Agent::start().await;
    let mut layout = Layout::new();
    let (desc, layers) = layout.image(
        host_arch(),
        &["sh"],
        vec![
            TestLayer {
                entries: busybox_layer(),
                gzip: true,
            },
            TestLayer {
                entries: vec![file("big", &noise(1 << 20, 7))],
                gzip: false,
            },
        ],
    );
    layout.tag("t", desc);
    reg.push(&layout.dir, "t", "bad:1", &[]);
    // Flip a byte of the second layer in the registry's own storage.
    let p = reg.blob_path(&layers[1]);
    let mut data = std::fs::read(&p).unwrap();
    let n = data.len() / 2;
    data[n] ^= 0xff;
    std::fs::write(&p, data).unwrap();

    let err = pull(&agent, &format!("{}/bad:1", reg.addr()), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err:?}");
    assert!(err.message().contains(&layers[1]), "{}", err.message());
    assert!(
        entries(&agent, "layers").is_empty(),
        "{:?}",
        entries(&agent, "layers")
    );
    assert!(entries(&agent, "downloads").is_empty());
    assert!(entries(&agent, "staging").is_empty());
    let list = agent
        .images()
        .list(pb::ListImagesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(list.images.is_empty());
}

/// Builds and pushes an image with two small layers and one large one;
/// returns (reference path, layer digests).
fn push_big(reg: &Registry, layout: &mut Layout, repo: &str) -> Vec<String> {
    let (desc, layers) = layout.image(
        host_arch(),
        &["sh"],
        vec![
            TestLayer {
                entries: busybox_layer(),
                gzip: true,
            },
            TestLayer {
                entries: vec![file("small", b"small\n")],
                gzip: true,
            },
            TestLayer {
                entries: vec![file("big", &noise(32 << 20, 42))],
                gzip: false,
            },
        ],
    );
    layout.tag(repo, desc);
    reg.push(&layout.dir, repo, &format!("{repo}:1"), &[]);
    layers
}

#[tokio::test]
async fn an_interrupted_pull_resumes_without_refetching_finished_layers() {
    let mut reg = Registry::start();
    let agent = Agent::start().await;
    let mut layout = Layout::new();
    let layers = push_big(&reg, &mut layout, "resume");
    let proxy = Proxy::start(reg.port, &layers[2], 4 << 20).await;
    let r = format!("127.0.0.1:{}/resume:1", proxy.port);

    let mut s = agent
        .images()
        .pull(pb::PullImageRequest {
            reference: r.clone(),
            credentials: None,
        })
        .await
        .unwrap()
        .into_inner();
    proxy.wait_holding().await;
    // Wait until the small layers are finished (the big one is held).
    loop {
        let m = s
            .next()
            .await
            .expect("stream ended early")
            .expect("pull failed early");
        let st = final_states(std::slice::from_ref(&m));
        if st.len() == 3 && st[..2].iter().all(|s| *s == pb::LayerState::Done) {
            break;
        }
    }
    // The registry dies mid-blob.
    reg.stop();
    proxy.cut();
    let err = loop {
        match s.next().await.expect("the stream must end with an error") {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    let partial: Vec<String> = entries(&agent, "downloads");
    assert_eq!(partial.len(), 1, "{partial:?}");

    reg.spawn();
    let before = reg.log().len();
    let (msgs, img) = pull(&agent, &r, None).await.expect("resumed pull");
    let last = msgs.last().unwrap();
    assert_eq!(
        final_states(&msgs),
        vec![
            pb::LayerState::AlreadyPresent,
            pb::LayerState::AlreadyPresent,
            pb::LayerState::Done
        ]
    );
    assert!(
        last.layers[2].resumed_from_bytes > 0,
        "the big layer started over: {:?}",
        last.layers[2]
    );
    // The restarted registry served no finished layer again.
    let after = &reg.log()[before..];
    for d in &layers[..2] {
        assert!(!after.contains(&format!("/blobs/{d}")), "{d} fetched again");
    }
    assert!(entries(&agent, "downloads").is_empty());
    assert_eq!(
        run(&agent, &img.id, "wc -c < /big").await.trim(),
        (32u64 << 20).to_string()
    );
}

#[tokio::test]
async fn concurrent_pulls_download_each_blob_once() {
    let reg = Registry::start();
    let agent = Agent::start().await;
    let mut layout = Layout::new();
    let layers = push_big(&reg, &mut layout, "shared");
    // Hold the big blob so the second pull certainly arrives mid-download.
    let proxy = Proxy::start(reg.port, &layers[2], 1 << 20).await;
    let r = format!("127.0.0.1:{}/shared:1", proxy.port);

    let first = tokio::spawn({
        let ch = agent.channel.clone();
        let r = r.clone();
        async move {
            let mut c = pb::images_client::ImagesClient::new(ch);
            let mut s = c
                .pull(pb::PullImageRequest {
                    reference: r,
                    credentials: None,
                })
                .await?
                .into_inner();
            let mut last = None;
            while let Some(m) = s.next().await {
                last = Some(m?);
            }
            Ok::<_, tonic::Status>(last.unwrap().image.unwrap())
        }
    });
    proxy.wait_holding().await;
    let mut second = agent
        .images()
        .pull(pb::PullImageRequest {
            reference: r.clone(),
            credentials: None,
        })
        .await
        .unwrap()
        .into_inner();
    // The second pull joins the running download of the big layer.
    loop {
        let m = second.next().await.unwrap().unwrap();
        if m.layers.len() == 3 && m.layers[2].state == pb::LayerState::Downloading as i32 {
            break;
        }
    }
    proxy.release();
    let mut img2 = None;
    while let Some(m) = second.next().await {
        img2 = m.unwrap().image.or(img2);
    }
    let img1 = first.await.unwrap().expect("first pull");
    assert_eq!(img1.id, img2.unwrap().id);
    for d in &layers {
        assert_eq!(reg.blob_gets(d), 1, "blob {d} downloaded more than once");
    }
}

/// Two images share a layer blob, but the second one's config claims
/// another diff_id for it. Pulled while the first pull downloads the blob,
/// the second must not take the first's layer for its own: it unpacks the
/// blob itself and refuses it (the content is not its diff_id).
#[tokio::test]
async fn a_shared_blob_with_another_diff_id_is_not_taken_for_it() {
    let reg = Registry::start();
    let agent = Agent::start().await;
    let mut layout = Layout::new();
    let (good, blobs) = layout.image(
        host_arch(),
        &["sh"],
        vec![TestLayer {
            entries: vec![file("big", &noise(4 << 20, 7))],
            gzip: false,
        }],
    );
    let lie = format!("sha256:{}", "0".repeat(64));
    let bad = layout.with_diff_ids(&good, &[lie]);
    layout.tag("good", good);
    layout.tag("bad", bad);
    reg.push(&layout.dir, "good", "shared:good", &[]);
    reg.push(&layout.dir, "bad", "shared:bad", &[]);
    let proxy = Proxy::start(reg.port, &blobs[0], 1 << 20).await;
    let base = format!("127.0.0.1:{}/shared", proxy.port);

    let first = tokio::spawn({
        let ch = agent.channel.clone();
        let r = format!("{base}:good");
        async move {
            let mut c = pb::images_client::ImagesClient::new(ch);
            let mut s = c
                .pull(pb::PullImageRequest {
                    reference: r,
                    credentials: None,
                })
                .await?
                .into_inner();
            let mut last = None;
            while let Some(m) = s.next().await {
                last = Some(m?);
            }
            Ok::<_, tonic::Status>(last.unwrap().image.unwrap())
        }
    });
    proxy.wait_holding().await;
    let mut second = agent
        .images()
        .pull(pb::PullImageRequest {
            reference: format!("{base}:bad"),
            credentials: None,
        })
        .await
        .unwrap()
        .into_inner();
    // Its layer is planned (a job joined or started) while the blob is held.
    loop {
        let m = second.next().await.unwrap().unwrap();
        if m.layers.len() == 1 {
            break;
        }
    }
    proxy.release();
    let err = loop {
        match second.next().await.expect("the stream ends with an error") {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err:?}");
    first.await.unwrap().expect("the honest image is pulled");
}

#[tokio::test]
async fn run_pulls_a_missing_image() {
    let reg = Registry::start();
    let mut agent = Agent::start().await;
    let mut layout = Layout::new();
    let (desc, _) = layout.image(
        host_arch(),
        &["sh", "-c", "echo pulled and ran"],
        vec![TestLayer {
            entries: busybox_layer(),
            gzip: true,
        }],
    );
    layout.tag("t", desc);
    reg.push(&layout.dir, "t", "auto:1", &[]);
    let r = format!("{}/auto:1", reg.addr());

    // Without --auto-pull a missing image stays NotFound.
    let mut spec = pb::ContainerSpec {
        image: r.clone(),
        ..Default::default()
    };
    let err = agent
        .containers()
        .run(pb::RunContainerRequest {
            spec: Some(spec.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let _berthd = restart_with(&mut agent, &["--auto-pull"]).await;
    spec.auto_remove = false;
    let (exit, out, _) = agent.run_to_exit(spec).await;
    assert_eq!(exit.exit_code, 0);
    assert_eq!(out, "pulled and ran\n");
    let img = agent
        .images()
        .inspect(pb::InspectImageRequest { image: r })
        .await
        .expect("the image was stored")
        .into_inner();
    assert!(img.image.is_some());

    // A pull that fails says so, with the pull's own code.
    let missing = format!("{}/auto:nope", reg.addr());
    let err = agent
        .containers()
        .run(pb::RunContainerRequest {
            spec: Some(pb::ContainerSpec {
                image: missing.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(
        err.message().contains(&format!(
            "image {missing} is not stored and pulling it failed"
        )),
        "{}",
        err.message()
    );
}

/// Replaces the agent's berthd with one started with `extra` flags (on the
/// same socket and state). The returned guard kills it; the Agent's own
/// cleanup still removes containers, mounts and cgroups.
async fn restart_with(agent: &mut Agent, extra: &[&str]) -> KillOnDrop {
    // SIGKILL: a graceful stop would wait for our open channel to close.
    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(agent.dir.join("berthd.log"))
        .unwrap();
    let child = std::process::Command::new(common::bin("berthd"))
        .arg("--socket")
        .arg(&agent.socket)
        .arg("--state-dir")
        .arg(&agent.state_dir)
        .arg("--cgroup-parent")
        .arg(&agent.cgroup_parent)
        .args(extra)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let guard = KillOnDrop(child);
    let addr = berth::client::Address::Unix(agent.socket.clone());
    for _ in 0..400 {
        if agent.socket.exists() {
            if let Ok(ch) = berth::client::connect(&addr).await {
                agent.channel = ch;
                return guard;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("berthd did not come back:\n{}", agent.log());
}

/// Kills a process when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Bytes of regular files under `dir` on its own filesystem (mount points,
/// such as running containers' overlays, are not entered); hard links once.
fn du(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).unwrap().dev();
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.dev() != dev {
                continue;
            }
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && seen.insert(m.ino()) {
                total += m.len();
            }
        }
    }
    total
}

#[tokio::test]
async fn twenty_containers_share_the_image_layers() {
    let reg = Registry::start();
    let agent = Agent::start().await;
    let mut layout = Layout::new();
    let (desc, _) = layout.image(
        host_arch(),
        &["sh"],
        vec![
            TestLayer {
                entries: busybox_layer(),
                gzip: true,
            },
            TestLayer {
                entries: vec![file("payload", &noise(8 << 20, 3))],
                gzip: true,
            },
        ],
    );
    layout.tag("t", desc);
    reg.push(&layout.dir, "t", "many:1", &[]);
    let r = format!("{}/many:1", reg.addr());
    let (_, img) = pull(&agent, &r, None).await.expect("pull");
    assert!(img.size_bytes > 8 << 20);
    assert_eq!(img.unique_size_bytes, img.size_bytes);

    let before = du(&agent.state_dir);
    let mut ids = Vec::new();
    for _ in 0..20 {
        let mut spec = common::sh("cat /payload > /dev/null; sleep 600");
        spec.image = r.clone();
        let c = agent
            .containers()
            .run(pb::RunContainerRequest { spec: Some(spec) })
            .await
            .expect("run")
            .into_inner()
            .container
            .unwrap();
        ids.push(c.id);
    }
    let grown = du(&agent.state_dir) - before;
    // Twenty containers together add less than one copy of the image.
    assert!(
        grown < img.size_bytes as u64,
        "20 containers added {grown} bytes; the image is {} bytes",
        img.size_bytes
    );
    for id in ids {
        agent.force_remove(&id).await;
    }
    agent.assert_clean().await;
}
