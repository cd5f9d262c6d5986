//! Pulled images in use: auto-pull on run, layers shared by containers.

use super::*;

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
        .arg("--default-network=none")
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
