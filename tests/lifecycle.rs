//! End to end: running containers through the real API.

mod common;

use berth::v1 as pb;
use common::{sh, Agent};

#[tokio::test]
async fn run_exit_code_and_output() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let (exit, out, err) = agent
        .run_to_exit(sh("echo hello; echo oops >&2; exit 3"))
        .await;
    assert_eq!(exit.exit_code, 3);
    assert_eq!(exit.signal, 0);
    assert!(!exit.oom_killed);
    assert_eq!(out, "hello\n");
    assert_eq!(err, "oops\n");
    agent.assert_clean().await;
}

#[tokio::test]
async fn isolation_env_workdir_hostname_pid1() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let mut spec = sh("echo $IMAGE_VAR $MINE; pwd; hostname; echo pid=$$; ps -o pid,comm | wc -l; ls /proc | grep -c '^[0-9]'");
    spec.env = vec!["MINE=set".into()];
    spec.working_dir = "/work/dir".into();
    spec.hostname = "box1".into();
    let (exit, out, err) = agent.run_to_exit(spec).await;
    assert_eq!(exit.exit_code, 0, "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "from-image set");
    assert_eq!(lines[1], "/work/dir");
    assert_eq!(lines[2], "box1");
    assert_eq!(lines[3], "pid=1");
    // Only the shell and the commands of this pipeline are visible.
    let procs: u32 = lines[5].trim().parse().unwrap();
    assert!(procs <= 4, "container sees {procs} processes: {out}");
}

#[tokio::test]
async fn writes_never_reach_the_image_and_host_is_hidden() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let (exit, _, err) = agent
        .run_to_exit(sh(
            "echo changed > /etc/image-file && rm /bin/true && touch /new",
        ))
        .await;
    assert_eq!(exit.exit_code, 0, "{err}");
    let (exit, out, err) = agent
        .run_to_exit(sh(
            "cat /etc/image-file; test -e /bin/true && echo has-true; test -e /new || echo no-new; \
             test -e /work || test -e /usr || test -e /home || echo no-host-dirs",
        ))
        .await;
    assert_eq!(exit.exit_code, 0, "{err}");
    assert_eq!(out, "from the image\nhas-true\nno-new\nno-host-dirs\n");
}

#[tokio::test]
async fn privileges_are_dropped() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let (exit, out, _) = agent
        .run_to_exit(sh(
            "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status",
        ))
        .await;
    assert_eq!(exit.exit_code, 0);
    // Docker's default capability set.
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    let mut spec = sh("id -u; id -g; grep CapEff /proc/self/status");
    spec.user = "nobody".into();
    let (exit, out, _) = agent.run_to_exit(spec).await;
    assert_eq!(exit.exit_code, 0);
    assert_eq!(out, "65534\n65534\nCapEff:\t0000000000000000\n");
    // Writing to the read-only /sys and /proc/sys fails.
    let (exit, _, _) = agent
        .run_to_exit(sh(
            "echo 1 > /proc/sys/kernel/domainname || echo 1 > /sys/kernel/profiling",
        ))
        .await;
    assert_ne!(exit.exit_code, 0);
}

#[tokio::test]
async fn minimal_dev_and_loopback() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let (exit, out, err) = agent
        .run_to_exit(sh(
            "ls /dev | sort | tr '\\n' ' '; echo; head -c 4 /dev/zero | wc -c; \
             cat /sys/class/net/lo/operstate; ls /sys/class/net | wc -l",
        ))
        .await;
    assert_eq!(exit.exit_code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    for dev in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx",
    ] {
        assert!(
            lines[0].split(' ').any(|d| d == dev),
            "/dev lacks {dev}: {}",
            lines[0]
        );
    }
    assert_eq!(lines[1].trim(), "4");
    // Only loopback, and it is up.
    assert_eq!(lines[2], "unknown");
    assert_eq!(lines[3].trim(), "1");
}

/// Each container gets a network namespace of its own with only `lo`, up:
/// one berthd made ahead of time, or (with `--spare-netns 0`, or when none
/// is ready) one its init creates.
#[tokio::test]
async fn every_container_has_its_own_network_namespace() {
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    for flags in [&[][..], &["--spare-netns", "0"][..]] {
        let agent = Agent::start_with(flags).await;
        agent.import_busybox().await;
        let mut seen = std::collections::HashSet::from([host.clone()]);
        let mut ids = Vec::new();
        // More than berthd keeps ready, started back to back.
        for _ in 0..6 {
            let c = agent
                .run(sh(
                    "echo $(cat /sys/class/net/lo/operstate) $(ls /sys/class/net | wc -l) ready; exec sleep 1000",
                ))
                .await;
            agent.wait_for_output(&c.id, "ready").await;
            assert_eq!(agent.logs(&c.id).await.0, "unknown 1 ready\n", "{flags:?}");
            let ns = std::fs::read_link(format!("/proc/{}/ns/net", c.pid)).unwrap();
            assert!(seen.insert(ns), "{flags:?}: a network namespace is shared");
            ids.push(c.id);
        }
        for id in &ids {
            agent.force_remove(id).await;
        }
        agent.assert_clean().await;
    }
}

/// RunAttached: one call gives the started container, every byte of its
/// output in order and then its exit; with auto_remove the container is gone
/// when the stream ends. A command that cannot run is FAILED_PRECONDITION
/// and leaves nothing behind.
#[tokio::test]
async fn run_attached_streams_the_start_the_output_and_the_exit() {
    use pb::run_attached_response::Event;
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let mut spec = sh("echo one; echo two >&2; echo three; exit 7");
    spec.auto_remove = true;
    let mut stream = agent
        .containers()
        .run_attached(pb::RunAttachedRequest { spec: Some(spec) })
        .await
        .unwrap()
        .into_inner();
    let Some(Event::Started(c)) = stream.message().await.unwrap().unwrap().event else {
        panic!("the first message is not `started`");
    };
    assert_eq!(c.state, pb::ContainerState::Running as i32);
    let (mut out, mut err, mut exit) = (Vec::new(), Vec::new(), None);
    while let Some(msg) = stream.message().await.unwrap() {
        assert!(exit.is_none(), "a message after `exit`: {msg:?}");
        match msg.event {
            Some(Event::Output(e)) if e.stream == pb::LogStream::Stderr as i32 => {
                err.extend(e.data)
            }
            Some(Event::Output(e)) => out.extend(e.data),
            Some(Event::Exit(x)) => exit = Some(x),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(String::from_utf8_lossy(&out), "one\nthree\n");
    assert_eq!(String::from_utf8_lossy(&err), "two\n");
    assert_eq!(exit.expect("no exit message").exit_code, 7);
    let gone = agent
        .containers()
        .inspect(pb::InspectContainerRequest { id: c.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(
        gone.code(),
        tonic::Code::NotFound,
        "auto_remove: removed when the stream ends"
    );

    let failed = agent
        .containers()
        .run_attached(pb::RunAttachedRequest {
            spec: Some(pb::ContainerSpec {
                image: "busybox".into(),
                command: vec!["no-such-command".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(failed.code(), tonic::Code::FailedPrecondition, "{failed:?}");
    assert!(failed.message().contains("not found"), "{failed:?}");
    let left = agent
        .containers()
        .list(pb::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        left.containers.is_empty(),
        "a failed RunAttached left {left:?}"
    );
    agent.assert_clean().await;
}

#[tokio::test]
async fn command_not_found_fails_start_with_127() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let c = agent
        .create(pb::ContainerSpec {
            image: "busybox".into(),
            command: vec!["no-such-command".into()],
            ..Default::default()
        })
        .await;
    let err = agent
        .containers()
        .start(pb::StartContainerRequest { id: c.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("no-such-command"),
        "{}",
        err.message()
    );
    let c = agent.inspect(&c.id).await;
    assert_eq!(c.state, pb::ContainerState::Exited as i32);
    assert_eq!(c.exit.unwrap().exit_code, 127);
    agent.assert_clean().await;
    // A failed Run leaves nothing at all.
    let err = agent
        .containers()
        .run(pb::RunContainerRequest {
            spec: Some(pb::ContainerSpec {
                image: "busybox".into(),
                name: "failing".into(),
                command: vec!["/nope".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let list = agent
        .containers()
        .list(pb::ListContainersRequest {
            name: "failing".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(list.containers.is_empty());
}

/// Every container runs under the monitor binary berthd installed in its
/// state dir, linked statically (no loader, no shared library), and its root
/// filesystem is mounted only inside the container: nothing on the host.
#[tokio::test]
async fn containers_run_under_the_static_monitor_and_mount_nothing_on_the_host() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let c = agent.run(sh("echo ready; exec sleep 1000")).await;
    agent.wait_for_output(&c.id, "ready").await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.pid)).unwrap();
    let monitor: i32 = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        std::fs::read_link(format!("/proc/{monitor}/exe")).unwrap(),
        agent.state_dir.join("bin/berth-monitor")
    );
    let maps = std::fs::read_to_string(format!("/proc/{monitor}/maps")).unwrap();
    assert!(
        !maps.contains(".so"),
        "the monitor maps shared libraries:\n{maps}"
    );
    assert_eq!(agent.mounts(), Vec::<String>::new(), "host mounts");
    let inside = std::fs::read_to_string(format!("/proc/{}/mountinfo", c.pid)).unwrap();
    assert!(
        inside
            .lines()
            .any(|l| l.split(' ').nth(4) == Some("/") && l.contains(" - overlay ")),
        "the container's / is not an overlay:\n{inside}"
    );
    agent
        .containers()
        .kill(pb::KillContainerRequest {
            id: c.id.clone(),
            signal: "KILL".into(),
        })
        .await
        .unwrap();
    assert_eq!(agent.wait(&c.id).await.exit.unwrap().signal, 9);
    agent.assert_clean().await;
}

#[tokio::test]
async fn stop_escalates_to_sigkill_for_a_term_ignoring_container() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let c = agent
        .run(sh("trap '' TERM; echo ready; while true; do sleep 1; done"))
        .await;
    agent.wait_for_output(&c.id, "ready").await;
    let started = std::time::Instant::now();
    let resp = agent.stop(&c.id, 1).await.unwrap();
    let took = started.elapsed();
    assert!(resp.killed, "a TERM-ignoring container needs SIGKILL");
    let exit = resp.container.unwrap().exit.unwrap();
    assert_eq!((exit.exit_code, exit.signal), (137, 9));
    // The grace period was honoured (no timing upper bound: hosts are noisy).
    assert!(took >= std::time::Duration::from_secs(1), "{took:?}");
    agent.assert_clean().await;

    // A container that handles SIGTERM ends without SIGKILL. (As PID 1 of
    // its namespace, a shell without a handler would ignore SIGTERM.)
    let c = agent
        .run(sh(
            "trap 'echo bye; exit 0' TERM; echo ready; sleep 1000 & wait",
        ))
        .await;
    agent.wait_for_output(&c.id, "ready").await;
    let resp = agent.stop(&c.name, 30).await.unwrap();
    assert!(!resp.killed);
    assert_eq!(resp.container.unwrap().exit.unwrap().exit_code, 0);
    assert!(agent.logs(&c.id).await.0.contains("bye"));
}

#[tokio::test]
async fn kill_sends_the_chosen_signal() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let c = agent
        .run(sh(
            "trap 'echo got-usr1; exit 42' USR1; echo ready; while true; do sleep 0.1; done",
        ))
        .await;
    agent.wait_for_output(&c.id, "ready").await;
    agent
        .containers()
        .kill(pb::KillContainerRequest {
            id: c.id[..12].to_string(),
            signal: "SIGUSR1".into(),
        })
        .await
        .unwrap();
    let w = agent
        .containers()
        .wait(pb::WaitContainerRequest {
            id: c.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.exit.unwrap().exit_code, 42);
    assert!(agent.logs(&c.id).await.0.contains("got-usr1"));
    let err = agent
        .containers()
        .kill(pb::KillContainerRequest {
            id: c.id.clone(),
            signal: "KILL".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test]
async fn auto_remove_and_restart() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let mut spec = sh("exit 7");
    spec.auto_remove = true;
    let c = agent.run(spec).await;
    // Wait still answers by full id after the removal.
    let w = agent
        .containers()
        .wait(pb::WaitContainerRequest {
            id: c.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.exit.unwrap().exit_code, 7);
    for _ in 0..200 {
        if agent
            .containers()
            .inspect(pb::InspectContainerRequest { id: c.id.clone() })
            .await
            .is_err()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let err = agent
        .containers()
        .inspect(pb::InspectContainerRequest { id: c.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(!agent.state_dir.join("containers").join(&c.id).exists());
    // Its files go in the background, but they do go.
    let trash = agent.state_dir.join("trash").join(&c.id);
    assert!(
        common::eventually(10, async || !trash.exists()).await,
        "{} never deleted",
        trash.display()
    );

    // An exited container starts again, keeping its writable layer and log.
    let c = agent.run(sh("echo run >> /count; wc -l < /count")).await;
    agent
        .containers()
        .wait(pb::WaitContainerRequest {
            id: c.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    agent
        .containers()
        .start(pb::StartContainerRequest { id: c.id.clone() })
        .await
        .unwrap();
    agent
        .containers()
        .wait(pb::WaitContainerRequest {
            id: c.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let out = agent.logs(&c.id).await.0;
    assert_eq!(out, "1\n2\n");
    let c = agent.inspect(&c.id.clone()).await;
    assert_eq!(c.start_count, 2);
    agent.assert_clean().await;
}

/// Imports busybox plus `extra` entries in its layer, as `name`.
async fn import_busybox_with(agent: &Agent, name: &str, extra: Vec<common::image::Entry>) {
    let archive = common::image::busybox_with(&format!("docker.io/library/{name}:latest"), extra);
    agent
        .import(archive, "")
        .await
        .expect("importing the image");
}

/// /etc/hostname and /etc/hosts are written before the container's root
/// becomes `/`, where an image's absolute symlink would lead into the host.
#[tokio::test]
async fn image_symlinks_at_etc_hostname_and_hosts_never_reach_the_host() {
    use common::image::Entry;
    let agent = Agent::start().await;
    let host = tempfile::tempdir().unwrap();
    let victim = host.path().join("hosts");
    std::fs::write(&victim, "host file\n").unwrap();
    let absent = host.path().join("hostname");
    import_busybox_with(
        &agent,
        "symlinked-etc",
        vec![
            Entry::Symlink("etc/hostname".into(), absent.to_string_lossy().into_owned()),
            Entry::Symlink("etc/hosts".into(), victim.to_string_lossy().into_owned()),
        ],
    )
    .await;
    let mut spec =
        sh("cat /etc/hostname; grep -c box2 /etc/hosts; readlink /etc/hosts || echo regular");
    spec.image = "symlinked-etc".into();
    spec.hostname = "box2".into();
    let (exit, out, err) = agent.run_to_exit(spec).await;
    assert_eq!(exit.exit_code, 0, "{err}");
    assert_eq!(out, "box2\n1\nregular\n");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host file\n");
    assert!(
        !absent.exists(),
        "{} was created on the host",
        absent.display()
    );
}

/// The image decides what /etc/passwd is; a device that never ends (or a
/// FIFO that never answers) must not hang or exhaust the start.
#[tokio::test]
async fn endless_account_files_are_not_read() {
    use common::image::Entry;
    let agent = Agent::start().await;
    import_busybox_with(
        &agent,
        "zero-passwd",
        vec![
            Entry::Symlink("etc/passwd".into(), "/dev/zero".into()),
            Entry::Symlink("etc/group".into(), "/dev/zero".into()),
        ],
    )
    .await;
    // (Not `id`: busybox's own lookup would read /dev/zero for ever.)
    let mut spec = sh("grep Uid /proc/self/status");
    spec.image = "zero-passwd".into();
    let (exit, out, err) = agent.run_to_exit(spec.clone()).await;
    assert_eq!(exit.exit_code, 0, "{err}");
    assert!(out.starts_with("Uid:\t0\t0\t0\t0"), "{out}");
    // Names need the files; numeric ids do not.
    spec.user = "nobody".into();
    let err = agent
        .containers()
        .run(pb::RunContainerRequest { spec: Some(spec) })
        .await
        .expect_err("a user name without a passwd file");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("nobody"), "{err:?}");
}

#[tokio::test]
async fn a_run_without_monitor_diagnostics_leaves_no_monitor_log() {
    // A spare monitor (the default) and one spawned for its container.
    for flags in [&[][..], &["--spare-monitors", "0"][..]] {
        let agent = Agent::start_with(flags).await;
        agent.import_busybox().await;
        let c = agent.run(sh("echo hi")).await;
        agent.wait(&c.id).await;
        assert_eq!(agent.logs(&c.id).await.0, "hi\n", "{flags:?}");
        let dir = agent.state_dir.join("containers").join(&c.id);
        assert!(dir.join("container.json").exists());
        // An empty log would cost an inode to make and one to delete.
        assert!(!dir.join("monitor.log").exists(), "{flags:?}");
        agent.assert_clean().await;
    }
}

/// An idle agent must not cost CPU: no periodic flush, poll or tick. After
/// a container has come and gone (so the background flush, the idle memory
/// trim and the blocking threads have all had work), berthd must become
/// completely still: none of its threads runs for a whole second.
#[tokio::test]
async fn an_idle_agent_becomes_still() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let (exit, _, _) = agent.run_to_exit(sh("true")).await;
    assert_eq!(exit.exit_code, 0);
    // Up to 30 windows of a second (times the harness's slow factor).
    let mut last = agent.thread_switches();
    let mut still = false;
    for _ in 0..30 * common::slow_factor() {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let now = agent.thread_switches();
        still = now.iter().all(|(tid, n)| last.get(tid) == Some(n));
        last = now;
        if still {
            break;
        }
    }
    assert!(still, "berthd's threads kept running while idle: {last:?}");
    agent.assert_clean().await;
}

/// Root in a container may make device nodes (as with Docker), but not use
/// them: without that, `mknod /dev/sda b 8 0` would open the host's disk.
/// The standard nodes in /dev work.
#[tokio::test]
async fn device_nodes_a_container_makes_cannot_be_opened() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let script = r#"
        for dir in /tmp /dev; do
            mknod $dir/made-null c 1 3 || exit 10
            if echo x > $dir/made-null; then echo "$dir: usable"; else echo "$dir: refused"; fi
        done
        echo x > /dev/null || exit 11
        [ "$(head -c 3 /dev/zero | wc -c)" = 3 ] || exit 12
        [ "$(head -c 3 /dev/urandom | wc -c)" = 3 ] || exit 13
        [ "$(head -c 3 /dev/random | wc -c)" = 3 ] || exit 14
        if echo x > /dev/full; then exit 15; fi
        echo done
    "#;
    let (exit, out, err) = agent.run_to_exit(sh(script)).await;
    assert_eq!(exit.exit_code, 0, "out: {out} err: {err}");
    assert_eq!(out, "/tmp: refused\n/dev: refused\ndone\n", "err: {err}");
    agent.assert_clean().await;
}
