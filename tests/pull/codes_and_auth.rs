//! Credentials, and the code of each way a pull fails.

use super::*;

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
    reg.push(&layout.dir, "t", "private/app:2", &[]);
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
    // The same image under another tag: the pull names that tag only,
    // not every reference the image now has.
    let r2 = format!("{}/private/app:2", reg.addr());
    let o = agent.ctl(&["pull", &r2]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let pulled: Vec<&str> = out.lines().filter(|l| l.starts_with("Pulled: ")).collect();
    assert_eq!(pulled.len(), 1, "{out}");
    assert!(
        pulled[0].starts_with(&format!("Pulled: {r2} (sha256:")),
        "{out}"
    );
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
