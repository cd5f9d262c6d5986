//! What a pull stores: tags, digests, indexes, layer formats, whiteouts.

use super::*;

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
