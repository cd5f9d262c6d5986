//! End to end: exec into a running container (issue 20), through the API
//! (Exec, ExecSync) and `berthctl exec`.

mod common;

use std::time::Duration;

use berth::v1 as pb;
use berth::v1::exec_client::ExecClient;
use berth::v1::exec_request::Request as In;
use berth::v1::exec_response::Response as Out;
use common::image::{busybox_with, Entry};
use common::{cli, Agent};
use tokio::sync::mpsc;
use tonic::Code;
use tonic_types::StatusExt;

/// An agent with busybox (plus the `stty` and `unshare` applets).
async fn agent_with(args: &[&str]) -> Agent {
    let agent = Agent::start_with(args).await;
    let extra = ["stty", "unshare"]
        .iter()
        .map(|a| Entry::Symlink(format!("bin/{a}"), "busybox".into()))
        .collect();
    agent
        .import(busybox_with("docker.io/library/busybox:latest", extra), "")
        .await
        .expect("import");
    agent
}

/// A running container that sleeps, with FOO=bar in its env and /tmp as
/// its working directory.
async fn sleeper(agent: &Agent) -> pb::Container {
    agent
        .run(pb::ContainerSpec {
            image: "busybox".into(),
            command: vec!["sleep".into(), "1000".into()],
            env: vec!["FOO=bar".into()],
            working_dir: "/tmp".into(),
            ..Default::default()
        })
        .await
}

fn spec(container: &str, argv: &[&str]) -> pb::ExecSpec {
    pb::ExecSpec {
        container: container.into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn sync(
    agent: &Agent,
    req: pb::ExecSyncRequest,
) -> Result<pb::ExecSyncResponse, tonic::Status> {
    ExecClient::new(agent.channel.clone())
        .exec_sync(req)
        .await
        .map(|r| r.into_inner())
}

/// Runs `s` to completion: (exit code, stdout, stderr).
async fn run(agent: &Agent, s: pb::ExecSpec) -> (i32, String, String) {
    let r = sync(
        agent,
        pb::ExecSyncRequest {
            spec: Some(s),
            ..Default::default()
        },
    )
    .await
    .expect("exec");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        r.exit.expect("exit").exit_code,
        text(&r.stdout),
        text(&r.stderr),
    )
}

fn reason(s: &tonic::Status) -> String {
    s.get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

#[tokio::test]
async fn output_exit_code_env_user_and_working_dir() {
    let agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    let (code, out, err) = run(
        &agent,
        spec(&c.id, &["sh", "-c", "echo out; echo err >&2; exit 7"]),
    )
    .await;
    assert_eq!((code, out.as_str(), err.as_str()), (7, "out\n", "err\n"));

    // The container's env, user and working directory, by name too.
    let (_, out, _) = run(
        &agent,
        spec(&c.name, &["sh", "-c", "echo $FOO $(id -u) $(pwd)"]),
    )
    .await;
    assert_eq!(out, "bar 0 /tmp\n");
    let mut s = spec(
        &c.id,
        &["sh", "-c", "echo $FOO $BAR $(id -u):$(id -g) $(pwd)"],
    );
    s.env = vec!["FOO=baz".into(), "BAR=1".into()];
    s.user = "1000:1001".into();
    s.working_dir = "/".into();
    let (_, out, _) = run(&agent, s).await;
    assert_eq!(out, "baz 1 1000:1001 /\n");

    // A command that is not there, or a working directory that is not.
    let e = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &["nonexistent"])),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::FailedPrecondition, "CANNOT_EXECUTE"),
        "{e:?}"
    );
    let info = e.get_details_error_info().unwrap();
    assert_eq!(
        info.metadata.get("exit_code").map(String::as_str),
        Some("127")
    );
    let mut s = spec(&c.id, &["true"]);
    s.working_dir = "/no/such/dir".into();
    let e = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(s),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn joins_the_pid_namespace_and_cgroup_and_keeps_seccomp() {
    let agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    let host_ns = std::fs::read_link(format!("/proc/{}/ns/pid", c.pid)).unwrap();
    let (_, out, _) = run(&agent, spec(&c.id, &["readlink", "/proc/self/ns/pid"])).await;
    assert_eq!(out.trim(), host_ns.to_string_lossy());
    // The same cgroup as the init, seen from the same cgroup namespace (a
    // process outside the namespace's root would show "/..").
    let (_, out, _) = run(
        &agent,
        spec(
            &c.id,
            &[
                "sh",
                "-c",
                "cat /proc/self/cgroup; echo --; cat /proc/1/cgroup",
            ],
        ),
    )
    .await;
    let (mine, init) = out.split_once("--\n").expect("two parts");
    assert_eq!(mine, init);
    assert!(!mine.contains(".."), "{mine}");
    // The init is PID 1 there; the exec sees it.
    let (_, out, _) = run(&agent, spec(&c.id, &["cat", "/proc/1/cmdline"])).await;
    assert_eq!(out, "sleep\u{0}1000\u{0}");
    // The container's seccomp filter applies: no user namespaces.
    let (code, _, err) = run(&agent, spec(&c.id, &["unshare", "-U", "true"])).await;
    assert_ne!(code, 0, "{err}");
    // The host pid of an exec process is in the container's cgroup.
    let (_, out, _) = run(&agent, spec(&c.id, &["sh", "-c", "echo $$"])).await;
    assert!(out.trim().parse::<i32>().unwrap() > 1, "{out}");

    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

/// An interactive exec: the request sender and the response stream.
async fn open(
    agent: &Agent,
    s: pb::ExecSpec,
) -> (
    mpsc::Sender<pb::ExecRequest>,
    tonic::Streaming<pb::ExecResponse>,
) {
    let (tx, rx) = mpsc::channel(16);
    tx.send(pb::ExecRequest {
        request: Some(In::Start(s)),
    })
    .await
    .unwrap();
    let resp = ExecClient::new(agent.channel.clone())
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("exec")
        .into_inner();
    (tx, resp)
}

fn req(r: In) -> pb::ExecRequest {
    pb::ExecRequest { request: Some(r) }
}

/// Reads responses until stdout holds `needle` (or the exit): all stdout so far.
async fn read_until(resp: &mut tonic::Streaming<pb::ExecResponse>, out: &mut String, needle: &str) {
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while !out.contains(needle) {
            match resp
                .message()
                .await
                .expect("stream")
                .expect("ended")
                .response
            {
                Some(Out::Stdout(b)) => out.push_str(&String::from_utf8_lossy(&b)),
                Some(Out::Exit(x)) => panic!("exited {x:?} before {needle:?}: {out}"),
                _ => {}
            }
        }
    })
    .await;
    assert!(found.is_ok(), "no {needle:?} in {out:?}");
}

/// The exit, after any output.
async fn exit_of(resp: &mut tonic::Streaming<pb::ExecResponse>) -> pb::ExitStatus {
    loop {
        match resp
            .message()
            .await
            .expect("stream")
            .expect("ended")
            .response
        {
            Some(Out::Exit(x)) => return x,
            _ => continue,
        }
    }
}

#[tokio::test]
async fn stdin_is_streamed_and_a_tty_is_the_containers_own_and_resizes() {
    let agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;

    // Piped stdin: cat echoes it, and ends at close_stdin.
    let mut s = spec(&c.id, &["cat"]);
    s.stdin = true;
    let (tx, mut resp) = open(&agent, s).await;
    let started = resp.message().await.unwrap().unwrap();
    assert!(
        matches!(started.response, Some(Out::Started(ref st)) if st.pid > 0 && st.exec_id.len() == 64),
        "{started:?}"
    );
    tx.send(req(In::Stdin(b"hello\n".to_vec()))).await.unwrap();
    let mut out = String::new();
    read_until(&mut resp, &mut out, "hello\n").await;
    tx.send(req(In::CloseStdin(true))).await.unwrap();
    assert_eq!(exit_of(&mut resp).await.exit_code, 0);

    // A terminal: isatty inside, its size, a resize, and the exit code.
    let mut s = spec(&c.id, &["sh"]);
    s.tty = true;
    s.stdin = true;
    s.terminal_size = Some(pb::TerminalSize {
        rows: 30,
        cols: 100,
    });
    let (tx, mut resp) = open(&agent, s).await;
    let mut out = String::new();
    tx.send(req(In::Stdin(
        b"test -t 0 && echo IS-A-TTY; stty size; tty\n".to_vec(),
    )))
    .await
    .unwrap();
    read_until(&mut resp, &mut out, "30 100").await;
    read_until(&mut resp, &mut out, "/dev/pts/").await;
    assert!(out.contains("IS-A-TTY"), "{out}");
    tx.send(req(In::Resize(pb::TerminalSize {
        rows: 40,
        cols: 120,
    })))
    .await
    .unwrap();
    tx.send(req(In::Stdin(b"stty size\n".to_vec())))
        .await
        .unwrap();
    read_until(&mut resp, &mut out, "40 120").await;
    tx.send(req(In::Stdin(b"exit 3\n".to_vec()))).await.unwrap();
    assert_eq!(exit_of(&mut resp).await.exit_code, 3);

    // A signal by name ends a process that waits.
    let (tx, mut resp) = open(&agent, spec(&c.id, &["sleep", "1000"])).await;
    resp.message().await.unwrap().unwrap();
    tx.send(req(In::Signal("TERM".into()))).await.unwrap();
    let x = exit_of(&mut resp).await;
    assert_eq!((x.signal, x.exit_code), (15, 143));

    // A client that goes away takes its exec along.
    let (tx, mut resp) = open(&agent, spec(&c.id, &["sleep", "1000"])).await;
    let pid = match resp.message().await.unwrap().unwrap().response {
        Some(Out::Started(s)) => s.pid,
        other => panic!("{other:?}"),
    };
    drop((tx, resp));
    assert!(
        common::eventually(30, async || !std::path::Path::new(&format!("/proc/{pid}"))
            .exists())
        .await,
        "exec {pid} outlived its client"
    );

    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn exec_sync_times_out_and_truncates() {
    let agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    let r = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &["sh", "-c", "echo before; exec sleep 1000"])),
            timeout_ms: 300,
            ..Default::default()
        },
    )
    .await
    .expect("exec");
    assert!(r.timed_out);
    let x = r.exit.unwrap();
    assert_eq!((x.signal, x.exit_code), (9, 137));
    assert_eq!(r.stdout, b"before\n");

    let r = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &["sh", "-c", "yes | head -c 100000"])),
            max_output_bytes: 1000,
            ..Default::default()
        },
    )
    .await
    .expect("exec");
    assert!(r.truncated && !r.timed_out);
    assert_eq!(r.stdout.len(), 1000);
    assert_eq!(r.exit.unwrap().exit_code, 0);

    // Stdin as bytes.
    let r = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &["wc", "-c"])),
            stdin: vec![b'x'; 70_000],
            ..Default::default()
        },
    )
    .await
    .expect("exec");
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "70000");

    // Limits: refused before anything runs.
    for bad in [
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &["true"])),
            timeout_ms: 3_600_001,
            ..Default::default()
        },
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &["true"])),
            max_output_bytes: (16 << 20) + 1,
            ..Default::default()
        },
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &[])),
            ..Default::default()
        },
        pb::ExecSyncRequest {
            spec: Some(pb::ExecSpec {
                tty: true,
                ..spec(&c.id, &["true"])
            }),
            ..Default::default()
        },
        pb::ExecSyncRequest {
            spec: Some(spec(&"x".repeat(300), &["true"])),
            ..Default::default()
        },
    ] {
        let e = sync(&agent, bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().len() < 200, "{e:?}");
    }
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn only_running_containers_take_an_exec() {
    let agent = agent_with(&[]).await;
    let not_running = |e: tonic::Status, state: &str| {
        assert_eq!(
            (e.code(), reason(&e).as_str()),
            (Code::FailedPrecondition, "CONTAINER_NOT_RUNNING"),
            "{e:?}"
        );
        let info = e.get_details_error_info().unwrap();
        assert_eq!(info.metadata.get("state").map(String::as_str), Some(state));
    };
    let e = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(spec("nosuch", &["true"])),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    let created = agent.create(common::sh("sleep 1000")).await;
    let e = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(spec(&created.id, &["true"])),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    not_running(e, "created");

    let c = sleeper(&agent).await;
    agent
        .containers()
        .pause(pb::PauseContainerRequest { id: c.id.clone() })
        .await
        .expect("pause");
    let e = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &["true"])),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    not_running(e, "paused");
    agent
        .containers()
        .resume(pb::ResumeContainerRequest { id: c.id.clone() })
        .await
        .expect("resume");
    // A privileged exec on an agent that does not allow them.
    let mut s = spec(&c.id, &["true"]);
    s.privileged = true;
    let e = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(s),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::FailedPrecondition, "PRIVILEGED_NOT_ALLOWED")
    );
    agent
        .containers()
        .kill(pb::KillContainerRequest {
            id: c.id.clone(),
            signal: "KILL".into(),
        })
        .await
        .expect("kill");
    agent.wait(&c.id).await;
    let e = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &["true"])),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    not_running(e, "exited");

    agent.force_remove(&c.id).await;
    agent.force_remove(&created.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn execs_are_announced_on_the_event_stream() {
    let agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    let mut events = agent
        .events()
        .subscribe(pb::SubscribeRequest {
            containers: vec![c.id.clone()],
            actions: vec![
                pb::EventAction::ExecStarted as i32,
                pb::EventAction::ExecExited as i32,
            ],
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    let r = sync(
        &agent,
        pb::ExecSyncRequest {
            spec: Some(spec(&c.id, &["sh", "-c", "exit 5"])),
            ..Default::default()
        },
    )
    .await
    .expect("exec");
    let started = common::next_event(&mut events).await;
    let exited = common::next_event(&mut events).await;
    assert_eq!(started.action, pb::EventAction::ExecStarted as i32);
    assert_eq!(exited.action, pb::EventAction::ExecExited as i32);
    for ev in [&started, &exited] {
        assert_eq!(
            (ev.id.as_str(), ev.name.as_str()),
            (c.id.as_str(), c.name.as_str())
        );
        let x = ev.exec.as_ref().expect("exec");
        assert_eq!(x.exec_id, r.exec_id);
        assert_eq!(x.command, vec!["sh", "-c", "exit 5"]);
    }
    assert_eq!(exited.exec.unwrap().exit.unwrap().exit_code, 5);
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn berthctl_exec_exit_status_and_stdin() {
    let agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    let o = agent.ctl(&["exec", &c.name, "sh", "-c", "echo hi; exit 4"]);
    assert_eq!(
        (cli::code(&o), cli::stdout(&o).as_str()),
        (4, "hi\n"),
        "{}",
        cli::stderr(&o)
    );
    let o = agent.ctl(&[
        "exec",
        "-e",
        "X=1",
        "-u",
        "1000",
        "-w",
        "/",
        &c.name,
        "sh",
        "-c",
        "echo $X $(id -u) $(pwd)",
    ]);
    assert_eq!(cli::stdout(&o), "1 1000 /\n", "{}", cli::stderr(&o));
    let o = agent.ctl(&["exec", &c.name, "nonexistent"]);
    assert_eq!(cli::code(&o), 127, "{}", cli::stderr(&o));
    // -i: stdin streams through, end of file closes it.
    let mut child = std::process::Command::new(common::bin("berthctl"))
        .args([
            "-H",
            agent.socket.to_str().unwrap(),
            "exec",
            "-i",
            &c.id,
            "sh",
            "-c",
            "cat; exit 6",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("berthctl");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"through stdin\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        (o.status.code(), String::from_utf8_lossy(&o.stdout).as_ref()),
        (Some(6), "through stdin\n")
    );
    let o = agent.ctl(&["exec", "nosuch", "true"]);
    assert_eq!(cli::code(&o), 1, "{}", cli::stderr(&o));
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn binary_stdin_a_stop_during_an_exec_and_a_restarted_berthd() {
    let mut agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;

    // 4 MiB of every byte value through cat, unchanged.
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut s = spec(&c.id, &["cat"]);
    s.stdin = true;
    let (tx, mut resp) = open(&agent, s).await;
    let sender = {
        let data = data.clone();
        tokio::spawn(async move {
            for chunk in data.chunks(256 * 1024) {
                tx.send(req(In::Stdin(chunk.to_vec()))).await.unwrap();
            }
            tx.send(req(In::CloseStdin(true))).await.unwrap();
            tx
        })
    };
    let mut got = Vec::new();
    let exit = loop {
        match resp
            .message()
            .await
            .expect("stream")
            .expect("ended")
            .response
        {
            Some(Out::Stdout(b)) => got.extend_from_slice(&b),
            Some(Out::Exit(x)) => break x,
            _ => {}
        }
    };
    drop(sender.await.unwrap());
    assert_eq!(exit.exit_code, 0);
    assert!(
        got == data,
        "{} bytes came back of {}",
        got.len(),
        data.len()
    );

    // A stop kills the exec with the container; its exit is reported.
    let (_tx, mut resp) = open(&agent, spec(&c.id, &["sleep", "1000"])).await;
    resp.message().await.unwrap().unwrap();
    agent
        .containers()
        .kill(pb::KillContainerRequest {
            id: c.id.clone(),
            signal: "KILL".into(),
        })
        .await
        .expect("kill");
    let x = exit_of(&mut resp).await;
    assert_eq!((x.signal, x.exit_code), (9, 137));
    agent.wait(&c.id).await;

    // After a kill -9 of berthd, the re-adopted container takes execs.
    let c = sleeper(&agent).await;
    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    agent.spawn().await;
    let (code, out, _) = run(&agent, spec(&c.id, &["echo", "after restart"])).await;
    assert_eq!((code, out.as_str()), (0, "after restart\n"));

    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

/// The effective capabilities of an exec, as /proc/self/status shows them.
async fn cap_eff(agent: &Agent, s: pb::ExecSpec) -> String {
    let (_, out, _) = run(agent, s).await;
    out.lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[tokio::test]
async fn privileged_exec_gets_every_capability_where_allowed() {
    let agent = agent_with(&["--allow-privileged"]).await;
    let c = sleeper(&agent).await;
    let status = ["cat", "/proc/self/status"];
    let default = cap_eff(&agent, spec(&c.id, &status)).await;
    let init = std::fs::read_to_string(format!("/proc/{}/status", c.pid)).unwrap();
    let init_caps = init
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    // The container's capabilities, as its init has them.
    assert_eq!(default, init_caps);
    let mut s = spec(&c.id, &status);
    s.privileged = true;
    let all = cap_eff(&agent, s).await;
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let host = own
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    assert_eq!(all, host, "a privileged exec has what berthd has");
    assert_ne!(all, default);
    // Another user holds none.
    let mut s = spec(&c.id, &status);
    s.user = "1000".into();
    assert_eq!(cap_eff(&agent, s).await, "0000000000000000");
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn exec_joins_the_user_namespace_of_a_userns_container() {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    if (v.next().unwrap_or(0), v.next().unwrap_or(0)) < (6, 15) {
        eprintln!("kernel {release}: no --userns auto (tests/userns.rs proves the refusal)");
        return;
    }
    let agent = agent_with(&[]).await;
    let mut spec_c = common::sh("sleep 1000");
    spec_c.security = Some(pb::SecurityOptions {
        userns: "auto".into(),
        ..Default::default()
    });
    let c = agent.run(spec_c).await;
    let host_ns = std::fs::read_link(format!("/proc/{}/ns/user", c.pid)).unwrap();
    let (code, out, err) = run(
        &agent,
        spec(
            &c.id,
            &[
                "sh",
                "-c",
                "readlink /proc/self/ns/user; id -u; cat /proc/self/uid_map",
            ],
        ),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], host_ns.to_string_lossy());
    assert_eq!(lines[1], "0");
    let map: Vec<u64> = lines[2]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let m = c.userns.expect("a mapping");
    assert_eq!(map, vec![0, u64::from(m.host_uid), u64::from(m.size)]);
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

/// A tmux server of the test's own (its own socket), killed when dropped.
struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux (Debian's tmux package)")
    }

    fn pane(&self) -> String {
        cli::stdout(&self.cmd(&["capture-pane", "-p", "-t", "x"]))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// `berthctl exec -it` in a real terminal (tmux): a prompt, isatty, the
/// window's size and its change (SIGWINCH), the exit code, and the local
/// terminal restored after.
#[tokio::test]
async fn berthctl_exec_it_drives_a_real_terminal() {
    let agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    let tmux = Tmux {
        socket: agent.dir.join("tmux.sock"),
    };
    let status = agent.dir.join("status");
    let after = agent.dir.join("stty-after");
    let script = format!(
        "{} -H {} exec -it {} sh; echo $? > {}; stty -a > {}; sleep 1000",
        common::bin("berthctl").display(),
        agent.socket.display(),
        c.id,
        status.display(),
        after.display()
    );
    let o = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "x",
        "-x",
        "100",
        "-y",
        "30",
        "sh",
        "-c",
        &script,
    ]);
    assert!(o.status.success(), "{}", cli::stderr(&o));
    let shows =
        async |needle: &str| common::eventually(30, async || tmux.pane().contains(needle)).await;
    assert!(shows("/tmp #").await, "no prompt: {}", tmux.pane());
    tmux.cmd(&[
        "send-keys",
        "-t",
        "x",
        "test -t 0 && echo IS-A-TTY; stty size",
        "Enter",
    ]);
    assert!(shows("30 100").await, "{}", tmux.pane());
    assert!(shows("IS-A-TTY").await, "{}", tmux.pane());
    tmux.cmd(&["resize-window", "-t", "x", "-x", "120", "-y", "40"]);
    tmux.cmd(&["send-keys", "-t", "x", "stty size", "Enter"]);
    assert!(shows("40 120").await, "{}", tmux.pane());
    tmux.cmd(&["send-keys", "-t", "x", "exit 3", "Enter"]);
    assert!(
        common::eventually(30, async || std::fs::read_to_string(&after)
            .is_ok_and(|s| !s.is_empty()))
        .await,
        "berthctl did not end: {}",
        tmux.pane()
    );
    assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "3");
    let stty = std::fs::read_to_string(&after).unwrap();
    assert!(
        stty.contains(" icanon") && stty.contains(" echo "),
        "terminal not restored: {stty}"
    );
    drop(tmux);
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

/// Latency of an exec of /bin/true through the API (ExecSync) and through
/// berthctl: the median of 50 each.
/// `cargo test -p berth --test exec -- --ignored --nocapture latency`
#[tokio::test]
#[ignore]
async fn latency() {
    let agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let mut api = Vec::new();
    for _ in 0..50 {
        let t = std::time::Instant::now();
        let (code, _, _) = run(&agent, spec(&c.id, &["/bin/true"])).await;
        api.push(t.elapsed());
        assert_eq!(code, 0);
    }
    let mut ctl = Vec::new();
    for _ in 0..50 {
        let t = std::time::Instant::now();
        let o = agent.ctl(&["exec", &c.id, "/bin/true"]);
        ctl.push(t.elapsed());
        assert_eq!(cli::code(&o), 0);
    }
    println!(
        "exec /bin/true, median of 50: API ExecSync {:?}, berthctl exec {:?}",
        median(api),
        median(ctl)
    );
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}
