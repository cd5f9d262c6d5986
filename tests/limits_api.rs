//! End to end: every request field is bounded, hostile input gets a short
//! error with the right code from a real client, and the largest container
//! accepted still lists everywhere (issue 23, items 4, 7, 8, 10, 11).

mod common;

use std::time::Duration;

use berth::v1 as pb;
use common::{sh, Agent};
use tonic::{Code, Status};

/// A change to a spec.
type Edit<'a> = Box<dyn Fn(&mut pb::ContainerSpec) + 'a>;

/// An error as a client sees it: the code, and a message that quotes at
/// most a short prefix of the input.
fn short(e: &Status, code: Code) {
    assert_eq!(e.code(), code, "{e:?}");
    assert!(e.message().len() < 400, "{} bytes", e.message().len());
}

async fn create_err(agent: &Agent, spec: pb::ContainerSpec) -> Status {
    agent
        .containers()
        .create(pb::CreateContainerRequest { spec: Some(spec) })
        .await
        .expect_err("refused")
}

fn field(e: &Status) -> String {
    use tonic_types::StatusExt;
    e.get_details_bad_request()
        .map(|b| b.field_violations[0].field.clone())
        .unwrap_or_default()
}

/// The host's online CPUs, counted from the kernel's list.
fn online_cpus() -> u32 {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/online").expect("cpu list");
    s.trim()
        .split(',')
        .map(|p| match p.split_once('-') {
            Some((a, b)) => b.parse::<u32>().unwrap() - a.parse::<u32>().unwrap() + 1,
            None => 1,
        })
        .sum()
}

#[tokio::test]
async fn hostile_input_is_refused_with_a_short_error_naming_the_field() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let mb = "x".repeat(1 << 20);

    // 100,000 env entries (about 1 MB): refused, by the count limit, while
    // the agent keeps answering.
    let mut spec = sh("true");
    spec.env = (0..100_000).map(|i| format!("K{i}=v")).collect();
    let e = create_err(&agent, spec).await;
    short(&e, Code::InvalidArgument);
    assert_eq!(field(&e), "env");
    assert!(e.message().contains("4096"), "{}", e.message());
    agent.agent().info(pb::InfoRequest {}).await.unwrap();

    // Each field, over its limit: INVALID_ARGUMENT naming it, not the
    // 1 MB back (nor RESOURCE_EXHAUSTED metadata, nor an h2 error).
    let cases: Vec<(&str, Edit)> = vec![
        ("name", Box::new(|s| s.name = mb.clone())),
        ("image", Box::new(|s| s.image = mb.clone())),
        ("command", Box::new(|s| s.command = vec![mb.clone()])),
        ("env", Box::new(|s| s.env = vec![format!("A={mb}")])),
        ("working_dir", Box::new(|s| s.working_dir = mb.clone())),
        ("user", Box::new(|s| s.user = mb.clone())),
        ("hostname", Box::new(|s| s.hostname = mb.clone())),
        ("stop_signal", Box::new(|s| s.stop_signal = mb.clone())),
        (
            "labels",
            Box::new(|s| {
                s.labels.insert("k".into(), mb.clone());
            }),
        ),
        (
            "labels",
            Box::new(|s| {
                s.labels.insert(mb.clone(), "v".into());
            }),
        ),
        (
            "resources.cpuset_cpus",
            Box::new(|s| {
                s.resources = Some(pb::Resources {
                    cpuset_cpus: mb.clone(),
                    ..Default::default()
                })
            }),
        ),
        // NUL bytes cannot reach the kernel: refused at Create, not at Start.
        ("command", Box::new(|s| s.command = vec!["a\0b".into()])),
        ("env", Box::new(|s| s.env = vec!["A=\0".into()])),
        ("user", Box::new(|s| s.user = "ro\0ot".into())),
        (
            "working_dir",
            Box::new(|s| s.working_dir = "/tmp\0x".into()),
        ),
        // A restart mode this agent does not know is not "no".
        (
            "restart_policy.mode",
            Box::new(|s| {
                s.restart_policy = Some(pb::RestartPolicy {
                    mode: 99,
                    max_retries: 0,
                })
            }),
        ),
    ];
    for (want, set) in &cases {
        let mut spec = sh("true");
        set(&mut spec);
        let e = create_err(&agent, spec).await;
        short(&e, Code::InvalidArgument);
        assert_eq!(&field(&e), want, "{}", e.message());
    }

    // Lookups by a 1 MB id, name or reference: the right code, short.
    let mut c = agent.containers();
    let e = c
        .inspect(pb::InspectContainerRequest { id: mb.clone() })
        .await
        .unwrap_err();
    short(&e, Code::NotFound);
    let e = c
        .remove(pb::RemoveContainerRequest {
            id: mb.clone(),
            force: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    short(&e, Code::NotFound);
    let e = agent
        .images()
        .inspect(pb::InspectImageRequest { image: mb.clone() })
        .await
        .unwrap_err();
    short(&e, Code::InvalidArgument);
    let out = agent.ctl(&["inspect", &"y".repeat(100_000)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.len() < 400 && err.contains("no such container"),
        "{err}"
    );

    // A request over the agent's 4 MiB: RESOURCE_EXHAUSTED, as gRPC says.
    let mut spec = sh("true");
    spec.env = vec![format!("A={}", "x".repeat(5 << 20))];
    let e = create_err(&agent, spec).await;
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");

    // Names that would read as another container's id.
    let first = agent.create(sh("true")).await;
    let mut spec = sh("true");
    spec.name = first.id[..12].to_string();
    let e = create_err(&agent, spec).await;
    short(&e, Code::InvalidArgument);
    assert_eq!(field(&e), "name");
    let mut spec = sh("true");
    spec.name = "0123456789abcdef".repeat(4);
    short(&create_err(&agent, spec).await, Code::InvalidArgument);
    assert_eq!(agent.inspect(&first.id[..12]).await.id, first.id);

    // Cpusets the host cannot give: refused at Create and at Update.
    let beyond = online_cpus().to_string();
    for cpus in [beyond.as_str(), "0-9999"] {
        let mut spec = sh("true");
        spec.resources = Some(pb::Resources {
            cpuset_cpus: cpus.into(),
            ..Default::default()
        });
        let e = create_err(&agent, spec).await;
        short(&e, Code::InvalidArgument);
        assert_eq!(field(&e), "resources.cpuset_cpus");
        let e = c
            .update(pb::UpdateContainerRequest {
                id: first.id.clone(),
                resources: Some(pb::Resources {
                    cpuset_cpus: cpus.into(),
                    ..Default::default()
                }),
                restart_policy: None,
            })
            .await
            .unwrap_err();
        short(&e, Code::InvalidArgument);
    }
    let e = c
        .update(pb::UpdateContainerRequest {
            id: first.id.clone(),
            resources: None,
            restart_policy: Some(pb::RestartPolicy {
                mode: 99,
                max_retries: 0,
            }),
        })
        .await
        .unwrap_err();
    short(&e, Code::InvalidArgument);
    let after = agent.inspect(&first.id).await;
    let spec = after.spec.unwrap();
    assert_eq!(spec.resources.unwrap().cpuset_cpus, "");
    assert_eq!(
        spec.restart_policy.unwrap().mode,
        pb::restart_policy::Mode::No as i32
    );

    // Subscribing from a seq far beyond the log: OUT_OF_RANGE at once,
    // saying the next one, instead of a stream that never delivers.
    let mut events = agent.events();
    let sub = events.subscribe(pb::SubscribeRequest {
        from_seq: 1_000_000_000,
        ..Default::default()
    });
    let e = tokio::time::timeout(Duration::from_secs(60), sub)
        .await
        .expect("Subscribe answered")
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    assert!(e.message().contains("the next is"), "{}", e.message());

    // List filters are bounded too.
    let e = c
        .list(pb::ListContainersRequest {
            name: mb.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    short(&e, Code::InvalidArgument);

    // Nothing of the refused calls exists.
    let list = c
        .list(pb::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.containers.len(), 1);
    agent.force_remove(&first.id).await;
    agent.assert_clean().await;
}

/// The largest container the limits accept: an env of nearly 1 MiB and
/// 256 KiB of labels.
fn largest(name: &str) -> pb::ContainerSpec {
    let mut spec = sh("true");
    spec.name = name.into();
    // 4000 entries of 260 bytes with their NUL: 1,040,000 bytes, leaving
    // room for the command and the image's PATH under 1 MiB.
    spec.env = (0..4000)
        .map(|i| {
            let k = format!("K{i:04}=");
            format!("{k}{}", "v".repeat(259 - k.len()))
        })
        .collect();
    spec.labels = (0..1024)
        .map(|i| (format!("{i:0>200}"), "w".repeat(56)))
        .collect();
    spec
}

#[tokio::test]
async fn the_largest_accepted_containers_still_list_and_snapshot() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    // Two of them make a List larger than gRPC's default 4 MiB.
    let a = agent.create(largest("big-a")).await;
    let b = agent.create(largest("big-b")).await;
    assert!(a.effective_env.len() > 4000);

    let out = agent.ctl(&["ps", "-a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ps = String::from_utf8_lossy(&out.stdout);
    assert!(ps.contains("big-a") && ps.contains("big-b"), "{ps}");
    let out = agent.ctl(&["inspect", "big-a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A snapshot subscription with a default client: one event per
    // container, each under 4 MiB.
    let mut s = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            snapshot: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    loop {
        let ev = common::next_event(&mut s).await;
        if ev.action == pb::EventAction::SnapshotDone as i32 {
            break;
        }
        seen.push(ev.id);
    }
    seen.sort();
    let mut want = vec![a.id.clone(), b.id.clone()];
    want.sort();
    assert_eq!(seen, want);

    agent.force_remove(&a.id).await;
    agent.force_remove(&b.id).await;
    agent.assert_clean().await;
}

/// A following reader that stops reading while the container writes far
/// more than the log keeps: when it reads on, the stream says output was
/// lost (DATA_LOSS) instead of silently skipping to the newest file.
#[tokio::test]
async fn a_follower_that_rotation_outran_is_told() {
    let agent = Agent::start_with(&["--log-max-bytes", "65536"]).await;
    agent.import_busybox().await;
    // 20 MB through a 64 KiB log: about 300 rotations, while the reader
    // (a 2 MiB HTTP/2 window and a short queue) holds back a few MB.
    let c = agent
        .create(sh(
            "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 20000000",
        ))
        .await;
    let mut logs = agent
        .containers()
        .logs(pb::LogsRequest {
            id: c.id.clone(),
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    agent
        .containers()
        .start(pb::StartContainerRequest { id: c.id.clone() })
        .await
        .unwrap();
    assert_eq!(agent.wait(&c.id).await.exit.unwrap().exit_code, 0);
    let mut bytes = 0usize;
    let end = loop {
        match logs.message().await {
            Ok(Some(e)) => bytes += e.data.len(),
            Ok(None) => break None,
            Err(s) => break Some(s),
        }
    };
    let e = end.unwrap_or_else(|| panic!("the stream ended after {bytes} bytes without a word"));
    assert_eq!(e.code(), Code::DataLoss, "{e:?}");
    assert!(bytes < 20_000_000);
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

/// A full state file system is RESOURCE_EXHAUSTED saying what is full, not
/// INTERNAL, and nothing is left of the refused call.
#[tokio::test]
async fn a_full_disk_is_resource_exhausted() {
    use std::io::Write;
    let mut agent = Agent::start().await;
    agent.import_busybox().await;
    let dir = agent.state_on_tmpfs("containers", "1m").await;
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let page = [0u8; 4096];
    while f.write_all(&page).is_ok() {}
    drop(f);
    let e = create_err(&agent, sh("true")).await;
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().starts_with("file system full: "),
        "{}",
        e.message()
    );
    let list = agent
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.containers.is_empty());
    // Space again: it works.
    std::fs::remove_file(&filler).unwrap();
    // (The tmpfs mount goes when the agent is dropped.)
    let c = agent.create(sh("true")).await;
    agent.force_remove(&c.id).await;
}
