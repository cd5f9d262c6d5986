//! End to end: a full state disk (issue 23, items 1 and 2). The containers'
//! state is on a small tmpfs, filled by a container's log; stop, kill,
//! forced remove and pause must all work, exits keep their true codes and
//! are announced once across a restart of berthd, and the records catch up
//! once space returns.

mod common;

use berth::v1 as pb;
use common::invariants::all_events;
use common::{eventually, sh, Agent};
use pb::ContainerState as CState;

/// Bytes still free on the file system of `dir`.
fn free_bytes(dir: &std::path::Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(dir).expect("statvfs");
    st.blocks_available() * st.fragment_size()
}

async fn inspect(agent: &Agent, id: &str) -> pb::Container {
    agent
        .containers()
        .inspect(pb::InspectContainerRequest { id: id.into() })
        .await
        .expect("inspect")
        .into_inner()
        .container
        .unwrap_or_default()
}

/// The record berthd saved for `id`, as JSON.
fn saved(dir: &std::path::Path, id: &str) -> serde_json::Value {
    let bytes = std::fs::read(dir.join(id).join("container.json")).unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

#[tokio::test]
async fn a_full_disk_never_keeps_containers_from_stopping_and_exits_keep_their_codes() {
    let mut agent = Agent::start_with(&["--log-max-bytes", "1073741824"]).await;
    agent.import_busybox().await;
    let containers = agent.state_on_tmpfs("containers", "8m").await;

    // Exits 7 at its stop signal: the true code to keep.
    let trapper = agent
        .run(sh(
            "trap 'exit 7' TERM; echo ready; while :; do sleep 0.1; done",
        ))
        .await;
    agent.wait_for_output(&trapper.id, "ready").await;
    let killed = agent.run(sh("exec sleep 600")).await;
    let removed = agent.run(sh("exec sleep 600")).await;
    let paused = agent.run(sh("exec sleep 600")).await;
    let filler = agent.run(sh("yes berth-fills-the-disk")).await;
    let full = eventually(120, async || free_bytes(&containers) < 64 * 1024).await;
    assert!(full, "the log did not fill the tmpfs");

    // Pause and resume: the container is frozen, and PAUSED says so.
    let r = agent
        .containers()
        .pause(pb::PauseContainerRequest {
            id: paused.id.clone(),
        })
        .await;
    assert_eq!(
        r.expect("pause on a full disk")
            .into_inner()
            .container
            .unwrap_or_default()
            .state,
        CState::Paused as i32
    );
    agent
        .containers()
        .resume(pb::ResumeContainerRequest {
            id: paused.id.clone(),
        })
        .await
        .expect("resume on a full disk");

    // Stop: the container exits with its own code.
    agent
        .stop(&trapper.id, 10)
        .await
        .expect("stop on a full disk");
    assert_eq!(
        agent
            .wait(&trapper.id)
            .await
            .exit
            .unwrap_or_default()
            .exit_code,
        7
    );
    // Kill SIGKILL.
    agent
        .containers()
        .kill(pb::KillContainerRequest {
            id: killed.id.clone(),
            signal: "SIGKILL".into(),
        })
        .await
        .expect("kill on a full disk");
    assert_eq!(
        agent.wait(&killed.id).await.exit.unwrap_or_default().signal,
        9
    );
    // Forced removal.
    agent
        .containers()
        .remove(pb::RemoveContainerRequest {
            id: removed.id.clone(),
            force: true,
            ..Default::default()
        })
        .await
        .expect("rm -f on a full disk");
    agent.stop(&filler.id, 1).await.expect("stop the filler");
    agent
        .stop(&paused.id, 1)
        .await
        .expect("stop the paused one");
    for id in [&trapper.id, &killed.id] {
        assert_eq!(inspect(&agent, id).await.state, CState::Exited as i32);
    }
    // The disk is behind: the trapper's record still says running.
    assert_ne!(saved(&containers, &trapper.id)["state"], "exited");

    // Space returns (the operator truncates the log): the records catch up
    // without anything else happening.
    std::fs::write(containers.join(&filler.id).join("container.log"), b"").unwrap();
    // The records are saved again one by one, in no set order: wait for both.
    let caught_up = eventually(30, async || {
        let rec = saved(&containers, &trapper.id);
        rec["state"] == "exited"
            && rec["exit"]["exit_code"] == 7
            && saved(&containers, &killed.id)["state"] == "exited"
    })
    .await;
    assert!(
        caught_up,
        "the records were not saved again: {} / {}",
        saved(&containers, &trapper.id),
        saved(&containers, &killed.id)
    );

    // A restart of berthd keeps the true codes and announces no exit again.
    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    agent.spawn().await;
    let rec = inspect(&agent, &trapper.id).await;
    assert_eq!(rec.state, CState::Exited as i32);
    assert_eq!(rec.exit.unwrap_or_default().exit_code, 7);
    let events = all_events(&agent).await;
    for c in [&trapper, &killed, &removed, &paused, &filler] {
        let exits: Vec<_> = events
            .iter()
            .filter(|e| e.id == c.id && e.action == pb::EventAction::Exited as i32)
            .collect();
        assert_eq!(exits.len(), 1, "{}: {exits:?}", c.name);
        assert_ne!(
            exits[0].exit.unwrap_or_default().exit_code,
            255,
            "{exits:?}"
        );
    }
    let paused_at = events
        .iter()
        .position(|e| e.id == paused.id && e.action == pb::EventAction::Paused as i32);
    let resumed_at = events
        .iter()
        .position(|e| e.id == paused.id && e.action == pb::EventAction::Resumed as i32);
    assert!(
        paused_at.is_some() && paused_at < resumed_at,
        "PAUSED, then RESUMED"
    );
    for c in [&trapper, &killed, &paused, &filler] {
        agent.force_remove(&c.id).await;
    }
    // (The tmpfs goes with the agent; `assert_clean` would count it.)
    let left: Vec<_> = std::fs::read_dir(&containers)
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "container directories left: {left:?}");
}

/// Writes `path` until the file system says it is full.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![b'x'; 64 * 1024];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // The last partial chunks too.
    for size in [4096usize, 512, 1] {
        while f.write(&chunk[..size]).is_ok_and(|n| n > 0) {}
    }
}

/// The event log shares the state disk with everything else: when
/// something else fills it, every event is still logged (the log's
/// reserve), across a SIGKILL of berthd and a restart on the still-full
/// disk, and the log goes on when space returns.
#[tokio::test]
async fn a_full_disk_loses_no_event() {
    let mut agent = Agent::start().await;
    agent.import_busybox().await;
    let events_dir = agent.state_on_tmpfs("events", "4m").await;
    let filler = events_dir.join("filler");
    fill(&filler);
    assert!(free_bytes(&events_dir) < 4096, "the tmpfs is not full");

    let mut ran = Vec::new();
    for code in 1..=12 {
        let c = agent.run(sh(&format!("exit {code}"))).await;
        assert_eq!(
            agent.wait(&c.id).await.exit.unwrap_or_default().exit_code,
            code
        );
        agent.force_remove(&c.id).await;
        ran.push((c.id, code));
    }
    // Killed and started again with the disk still full.
    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    agent.spawn().await;
    let check = |events: &[pb::Event], ran: &[(String, i32)]| {
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        let want: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, want, "the log has a gap or a duplicate");
        for (id, code) in ran {
            let actions: Vec<i32> = events
                .iter()
                .filter(|e| &e.id == id)
                .map(|e| e.action)
                .collect();
            use pb::EventAction as A;
            assert_eq!(
                actions,
                [A::Created, A::Started, A::Exited, A::Removed].map(|a| a as i32),
                "{id}"
            );
            let exit = events
                .iter()
                .find(|e| &e.id == id && e.action == A::Exited as i32)
                .and_then(|e| e.exit)
                .unwrap_or_default();
            assert_eq!(exit.exit_code, *code);
        }
    };
    check(&all_events(&agent).await, &ran);
    // Space returns: the log goes on from where it was.
    std::fs::remove_file(&filler).expect("removing the filler");
    let c = agent.run(sh("exit 3")).await;
    agent.wait(&c.id).await;
    agent.force_remove(&c.id).await;
    ran.push((c.id, 3));
    check(&all_events(&agent).await, &ran);
}

/// `bytes` of data gzip cannot shrink (xorshift).
fn incompressible(bytes: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Gives the tmpfs at `dir` a new size (space returns, as when an operator
/// makes room).
fn resize(dir: &std::path::Path, size: &str) {
    nix::mount::mount(
        None::<&str>,
        dir,
        None::<&str>,
        nix::mount::MsFlags::MS_REMOUNT,
        Some(format!("size={size}").as_str()),
    )
    .expect("remounting the tmpfs");
}

/// Files under `dir`, recursively (what an import may have left behind).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// An import that does not fit, first where the upload is spooled, then in
/// the image store: RESOURCE_EXHAUSTED with reason NO_SPACE, nothing left
/// behind, a running container unaffected; once space returns the same
/// import succeeds and the image runs.
#[tokio::test]
async fn an_import_that_does_not_fit_leaves_nothing_and_succeeds_once_space_returns() {
    use tonic_types::StatusExt;
    let mut agent = Agent::start().await;
    agent.import_busybox().await;
    let spool = agent.state_on_tmpfs("tmp", "4m").await;
    let images = agent.state_on_tmpfs("images", "8m").await;
    let running = agent.run(sh("echo up; exec sleep 600")).await;
    agent.wait_for_output(&running.id, "up").await;
    let big = common::image::busybox_with(
        "docker.io/library/big:1",
        vec![common::image::Entry::File(
            "big".into(),
            incompressible(6 << 20),
            0o644,
        )],
    );
    let before = (free_bytes(&spool), free_bytes(&images));
    let stored_before = files_under(&images);

    let refused = |e: tonic::Status, what: &str| {
        assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{what}: {e:?}");
        let reason = e
            .get_details_error_info()
            .map(|i| i.reason)
            .unwrap_or_default();
        assert_eq!(reason, "NO_SPACE", "{what}: {e:?}");
    };
    let left_nothing = |what: &str| {
        assert_eq!(
            files_under(&spool),
            Vec::<std::path::PathBuf>::new(),
            "{what}"
        );
        assert_eq!(files_under(&images), stored_before, "{what}");
        let now = (free_bytes(&spool), free_bytes(&images));
        assert!(
            now.0 + 64 * 1024 >= before.0 && now.1 + 64 * 1024 >= before.1,
            "{what}: space not given back: {before:?} -> {now:?}"
        );
    };
    // The upload does not fit where it is spooled.
    let e = agent
        .import(big.clone(), "")
        .await
        .expect_err("no room to spool");
    refused(e, "spool");
    left_nothing("after the spool filled");
    // It fits there now, not in the store (blob and unpacked layer).
    resize(&spool, "16m");
    let e = agent
        .import(big.clone(), "")
        .await
        .expect_err("no room to store");
    refused(e, "store");
    left_nothing("after the store filled");
    let listed = agent
        .images()
        .list(pb::ListImagesRequest {})
        .await
        .expect("list")
        .into_inner()
        .images;
    assert_eq!(listed.len(), 1, "only busybox: {listed:?}");

    // Space returns: the same import works and the image runs.
    resize(&images, "64m");
    agent
        .import(big, "")
        .await
        .expect("import once space returned");
    let mut spec = sh("wc -c < /big");
    spec.image = "big:1".into();
    let (exit, out, err) = agent.run_to_exit(spec).await;
    assert_eq!(exit.exit_code, 0, "{err}");
    assert_eq!(out.trim(), (6u64 << 20).to_string());
    agent.stop(&running.id, 1).await.expect("stop");
    agent.force_remove(&running.id).await;
}
