//! Pushing: a round trip through the loopback registry (push an imported
//! image, remove it, pull it back: same digests), blobs the registry has
//! are not sent again, and basic auth.

use super::*;
use common::cli::{expect_failure, ok};
use common::image;

/// A push through the API: every progress message (the last is `done`).
async fn push(
    agent: &Agent,
    image: &str,
    target: &str,
    creds: Option<(&str, &str)>,
) -> Result<Vec<pb::PushImageProgress>, tonic::Status> {
    let mut s = agent
        .images()
        .push(pb::PushImageRequest {
            image: image.to_string(),
            target: target.to_string(),
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
    assert!(
        msgs.last().is_some_and(|m| m.done),
        "the last message is done"
    );
    Ok(msgs)
}

fn push_states(msgs: &[pb::PushImageProgress]) -> Vec<pb::LayerState> {
    msgs.last()
        .map(|m| {
            m.layers
                .iter()
                .map(|l| pb::LayerState::try_from(l.state).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_pushed_image_pulls_back_with_the_same_digests() {
    let reg = Registry::start();
    let agent = Agent::start().await;
    let original = agent
        .import(image::two_layer("docker.io/library/layered:v1"), "")
        .await
        .expect("import")
        .images
        .remove(0);
    let target = format!("{}/team/layered:v1", reg.addr());
    ok(&agent, &["tag", "layered:v1", &target]);

    // berthctl: one line per layer state, then the digest pushed.
    let out = ok(&agent, &["push", &target]);
    assert!(
        out.contains(&format!("Pushed: {target} ({})", original.manifest_digest)),
        "{out}"
    );
    assert!(out.contains("uploading") && out.contains("done"), "{out}");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            agent
                .state_dir
                .join("images/blobs/sha256")
                .join(&original.manifest_digest["sha256:".len()..]),
        )
        .expect("stored manifest"),
    )
    .expect("manifest JSON");
    for l in manifest["layers"].as_array().expect("layers") {
        let d = l["digest"].as_str().expect("digest");
        assert!(reg.blob_path(d).exists(), "the registry lacks {d}");
    }

    // Again, to another tag: the registry has every blob, none is sent.
    let msgs = push(
        &agent,
        "layered:v1",
        &format!("{}/team/layered:v2", reg.addr()),
        None,
    )
    .await
    .expect("second push");
    assert_eq!(
        push_states(&msgs),
        [
            pb::LayerState::AlreadyPresent,
            pb::LayerState::AlreadyPresent
        ]
    );

    // To another repository of the registry: the blobs are mounted from
    // the one the image is known under there, not uploaded.
    let other = format!("{}/other/layered:v1", reg.addr());
    ok(&agent, &["tag", "layered:v1", &other]);
    let msgs = push(&agent, &other, "", None)
        .await
        .expect("push to another repository");
    assert_eq!(
        push_states(&msgs),
        [
            pb::LayerState::AlreadyPresent,
            pb::LayerState::AlreadyPresent
        ]
    );
    assert!(reg.log().contains("from=team"), "no mount was asked for");

    // skopeo sees the stored manifest's digest in the registry.
    let o = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{target}"),
        ])
        .output()
        .expect("running skopeo");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&o.stdout).expect("skopeo JSON");
    assert_eq!(seen["Digest"], original.manifest_digest.as_str());

    // Removed, then pulled back: the same image.
    agent
        .images()
        .remove(pb::RemoveImageRequest {
            image: original.id.clone(),
            force: false,
        })
        .await
        .expect("remove");
    let (_, back) = pull(&agent, &target, None).await.expect("pull back");
    assert_eq!(back.id, original.id);
    assert_eq!(back.manifest_digest, original.manifest_digest);
    assert_eq!(back.layers, original.layers);
    assert_eq!(
        ok(&agent, &["run", "--rm", &target, "cat", "/etc/layered"]),
        "layered\n"
    );
    // What was pulled back can be pushed again.
    push(&agent, &target, "", None)
        .await
        .expect("push of the pulled image");
}

#[tokio::test]
async fn pushes_need_the_registrys_credentials_and_a_name() {
    let reg = Registry::start_with_auth("alice", "s3cret-pw");
    let agent = Agent::start().await;
    let original = agent
        .import(image::two_layer("docker.io/library/layered:v1"), "")
        .await
        .expect("import")
        .images
        .remove(0);
    let target = format!("{}/private/layered:v1", reg.addr());

    let err = push(&agent, "layered:v1", &target, None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    let err = push(&agent, "layered:v1", &target, Some(("alice", "wrong")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    ok(&agent, &["tag", "layered:v1", &target]);
    let args = ["push", &target];
    let o = agent.ctl(&args);
    assert_ne!(
        o.status.code(),
        Some(0),
        "a push without credentials worked"
    );
    let msgs = push(&agent, "layered:v1", &target, Some(("alice", "s3cret-pw")))
        .await
        .expect("push with credentials");
    assert_eq!(
        msgs.last().map(|m| m.manifest_digest.as_str()),
        Some(original.manifest_digest.as_str())
    );
    let (_, back) = pull(&agent, &target, Some(("alice", "s3cret-pw")))
        .await
        .expect("pull with credentials");
    assert_eq!(back.id, original.id);

    // No such image; an id with nowhere to push; a digest target.
    let err = push(&agent, "nosuch:v1", "", None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    let err = push(&agent, &original.id, "", None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let digest_target = format!(
        "{}/private/layered@{}",
        reg.addr(),
        original.manifest_digest
    );
    let err = push(&agent, "layered:v1", &digest_target, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let args = ["push", "nosuch:v1"];
    expect_failure(&agent.ctl(&args), &args, 1, &["nosuch"]);
}
