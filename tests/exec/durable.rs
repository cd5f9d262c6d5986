//! An exec's exit is never lost: execs keep running across a SIGKILL and
//! restart of berthd, their exit is recorded by the exec helper and
//! announced once (EXEC_EXITED) by the next berthd, and InspectExec shows
//! it.

use super::*;

/// A command that says "ready", waits for `flag` to exist, writes 1 MB to
/// its stdout with the shell's own `echo` (a SIGPIPE would end the shell
/// itself: 141), and exits with `code`.
fn waits_for(flag: &str, code: i32) -> Vec<String> {
    let line = "x".repeat(499);
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "echo ready; while [ ! -e {flag} ]; do sleep 0.02; done; \
             i=0; while [ $i -lt 2000 ]; do echo {line}; i=$((i+1)); done; exit {code}"
        ),
    ]
}

/// Starts `argv` interactively and waits for its "ready": (exec id, pid,
/// the stream, which must stay alive until berthd is killed).
async fn start_waiting(
    agent: &Agent,
    container: &str,
    argv: Vec<String>,
) -> (
    String,
    i32,
    mpsc::Sender<pb::ExecRequest>,
    tonic::Streaming<pb::ExecResponse>,
) {
    let s = pb::ExecSpec {
        container: container.into(),
        argv,
        ..Default::default()
    };
    let (tx, mut resp) = open(agent, s).await;
    let started = match resp
        .message()
        .await
        .expect("stream")
        .expect("ended")
        .response
    {
        Some(Out::Started(s)) => s,
        other => panic!("expected started, got {other:?}"),
    };
    let mut out = String::new();
    read_until(&mut resp, &mut out, "ready").await;
    (started.exec_id, started.pid, tx, resp)
}

/// Whether host pid `pid` is a live process (not gone, not a zombie).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z'))
}

/// Every EXEC_EXITED event of container `c` in the whole log, up to the
/// EXEC_EXITED of `marker` (an exec run last for that purpose): (exec id,
/// exit code) in order.
async fn exec_exits_until(agent: &Agent, c: &str, marker: &str) -> Vec<(String, i32)> {
    let mut events = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            containers: vec![c.into()],
            actions: vec![pb::EventAction::ExecExited as i32],
            from_seq: 1,
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    let mut seen = Vec::new();
    loop {
        let ev = common::next_event(&mut events).await;
        let x = ev.exec.expect("exec");
        if x.exec_id == marker {
            return seen;
        }
        seen.push((x.exec_id, x.exit.map_or(-1, |e| e.exit_code)));
    }
}

/// Runs `argv` to completion in `c`; its exec id.
async fn sync_id(agent: &Agent, c: &str, argv: &[&str]) -> String {
    sync(
        agent,
        pb::ExecSyncRequest {
            spec: Some(spec(c, argv)),
            ..Default::default()
        },
    )
    .await
    .expect("exec")
    .exec_id
}

/// InspectExec of `id`.
async fn inspect(agent: &Agent, id: &str) -> Result<pb::ExecInfo, tonic::Status> {
    ExecClient::new(agent.channel.clone())
        .inspect_exec(pb::InspectExecRequest { exec_id: id.into() })
        .await
        .map(|r| r.into_inner().exec.expect("exec"))
}

/// Waits (at most a minute) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    assert!(
        common::eventually(60, async || cond()).await,
        "timed out waiting until {what}"
    );
}

#[tokio::test]
async fn an_exec_runs_across_a_berthd_kill_and_its_exit_is_announced_once() {
    let mut agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    let (exec_id, pid, tx, resp) = start_waiting(&agent, &c.id, waits_for("/tmp/go", 7)).await;

    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    drop((tx, resp));
    assert!(alive(pid), "the exec died with berthd");
    agent.spawn().await;
    // It runs on: berthd re-adopted it. Let it go on and end.
    assert!(alive(pid), "the exec died at berthd's restart");
    std::fs::write(format!("/proc/{pid}/root/tmp/go"), "").expect("flag");
    until("the exec has ended", || !alive(pid)).await;

    let marker = sync_id(&agent, &c.id, &["true"]).await;
    let exits = exec_exits_until(&agent, &c.id, &marker).await;
    assert_eq!(exits, vec![(exec_id.clone(), 7)], "one EXEC_EXITED, code 7");
    let x = inspect(&agent, &exec_id).await.expect("inspect");
    assert!(!x.running);
    assert_eq!(
        x.exit.as_ref().map(|e| (e.exit_code, e.signal)),
        Some((7, 0))
    );
    assert_eq!((x.container_id.as_str(), x.pid), (c.id.as_str(), pid));
    assert_eq!(x.command[0], "sh");
    assert!(x.started_at.is_some() && x.exit.unwrap().finished_at.is_some());

    // Once more: a second restart announces nothing again.
    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    agent.spawn().await;
    let marker = sync_id(&agent, &c.id, &["true"]).await;
    let exits = exec_exits_until(&agent, &c.id, &marker).await;
    assert_eq!(
        exits.iter().filter(|(id, _)| *id == exec_id).count(),
        1,
        "{exits:?}"
    );

    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn an_exec_that_ends_while_berthd_is_down_is_announced_at_its_start() {
    let mut agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    let (exec_id, pid, tx, resp) = start_waiting(&agent, &c.id, waits_for("/tmp/go", 3)).await;
    let running = inspect(&agent, &exec_id).await.expect("inspect");
    assert!(running.running && running.exit.is_none(), "{running:?}");

    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    drop((tx, resp));
    // With berthd gone, it writes 1 MB nobody reads: it neither blocks on
    // the full pipe nor dies of SIGPIPE (its code says it got to the end).
    std::fs::write(format!("/proc/{pid}/root/tmp/go"), "").expect("flag");
    until("the exec has ended", || !alive(pid)).await;
    agent.spawn().await;

    let marker = sync_id(&agent, &c.id, &["true"]).await;
    let exits = exec_exits_until(&agent, &c.id, &marker).await;
    assert_eq!(exits, vec![(exec_id.clone(), 3)], "one EXEC_EXITED, code 3");
    let x = inspect(&agent, &exec_id).await.expect("inspect");
    assert_eq!(x.exit.map(|e| e.exit_code), Some(3));

    // A second restart announces nothing again.
    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    agent.spawn().await;
    let marker = sync_id(&agent, &c.id, &["true"]).await;
    let exits = exec_exits_until(&agent, &c.id, &marker).await;
    assert_eq!(
        exits.iter().filter(|(id, _)| *id == exec_id).count(),
        1,
        "{exits:?}"
    );

    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn inspect_exec_is_not_found_for_unknown_ids_and_after_the_container_goes() {
    let agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    let r = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &["sh", "-c", "exit 4"])),
            ..Default::default()
        },
    )
    .await
    .expect("exec");
    // At once after ExecSync returns, the exit is there.
    let x = inspect(&agent, &r.exec_id).await.expect("inspect");
    assert_eq!((x.running, x.exit.map(|e| e.exit_code)), (false, Some(4)));
    assert_eq!(x.command, vec!["sh", "-c", "exit 4"]);

    for unknown in [
        "0".repeat(64),
        r.exec_id[..12].to_string(),
        "../../etc/passwd".into(),
        String::new(),
    ] {
        let e = inspect(&agent, &unknown).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{unknown:?}: {e:?}");
        assert_eq!(reason(&e), "EXEC_NOT_FOUND");
    }

    agent.force_remove(&c.id).await;
    let e = inspect(&agent, &r.exec_id).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    agent.assert_clean().await;
}

/// The records of finished execs are bounded: the 64 that ended last are
/// kept.
#[tokio::test]
async fn finished_exec_records_are_bounded() {
    let agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    let mut ids = Vec::new();
    for _ in 0..70 {
        ids.push(sync_id(&agent, &c.id, &["true"]).await);
    }
    // Pruning follows each exit, off the call's path.
    let first = ids[0].clone();
    assert!(
        common::eventually(60, async || inspect(&agent, &first).await.is_err()).await,
        "the oldest record was kept"
    );
    let records = agent.state_dir.join("containers").join(&c.id).join("execs");
    let files = || {
        std::fs::read_dir(&records)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".exit.json"))
            .count()
    };
    until("at most 64 records are left", || files() <= 64).await;
    inspect(&agent, &ids[69]).await.expect("the newest is kept");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(records.join(format!("{}.exit.json", ids[69])))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}
