//! Downloads: resuming, sharing, and jobs of one blob.

use super::*;

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
