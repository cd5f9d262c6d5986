//! Containers.Attach through the API: a container's terminal and stdin,
//! held by its monitor across berthd restarts.

use std::time::Duration;

use berth::v1 as pb;
use berth::v1::attach_request::Request as In;
use berth::v1::attach_response::Response as Out;
use tokio::sync::mpsc;
use tonic::Code;

use super::{agent_with, reason};
use crate::common::Agent;

/// One Attach call: its request sender and responses.
struct Call {
    /// `None` once the requests have ended.
    tx: Option<mpsc::Sender<pb::AttachRequest>>,
    resp: tonic::Streaming<pb::AttachResponse>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// How far `read_until` has matched in `stdout`.
    seen: usize,
}

fn open(id: &str, stdin: bool, start: bool, size: Option<(u32, u32)>) -> pb::AttachOpen {
    pb::AttachOpen {
        id: id.into(),
        stdin,
        start,
        terminal_size: size.map(|(rows, cols)| pb::TerminalSize { rows, cols }),
    }
}

async fn try_attach(agent: &Agent, first: In) -> Result<Call, tonic::Status> {
    let (tx, rx) = mpsc::channel(16);
    tx.send(pb::AttachRequest {
        request: Some(first),
    })
    .await
    .expect("queue");
    let resp = agent
        .containers()
        .attach(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok(Call {
        tx: Some(tx),
        resp,
        stdout: Vec::new(),
        stderr: Vec::new(),
        seen: 0,
    })
}

/// Attaches and checks the first response is `attached`.
async fn attach(agent: &Agent, o: pb::AttachOpen) -> Call {
    let mut call = match try_attach(agent, In::Open(o)).await {
        Ok(c) => c,
        Err(e) => panic!("attach: {e:?}"),
    };
    match call.next().await {
        Some(Out::Attached(c)) => assert_eq!(c.state, pb::ContainerState::Running as i32),
        other => panic!("first response {other:?}"),
    }
    call
}

impl Call {
    async fn next(&mut self) -> Option<Out> {
        let msg = tokio::time::timeout(Duration::from_secs(60), self.resp.message())
            .await
            .expect("a response within a minute");
        msg.expect("stream")
            .map(|m| m.response.expect("a response"))
    }

    async fn send(&self, r: In) {
        self.tx
            .as_ref()
            .expect("requests not ended")
            .send(pb::AttachRequest { request: Some(r) })
            .await
            .expect("send");
    }

    /// Ends the request stream (a half-close): the call goes on.
    fn end_requests(&mut self) {
        self.tx = None;
    }

    async fn type_line(&self, line: &str) {
        self.send(In::Stdin(format!("{line}\n").into_bytes())).await;
    }

    /// Reads until stdout holds `needle` past the previous match.
    async fn read_until(&mut self, needle: &str) {
        loop {
            let rest = &self.stdout[self.seen..];
            let found = rest
                .windows(needle.len())
                .position(|w| w == needle.as_bytes());
            if let Some(at) = found {
                self.seen += at + needle.len();
                return;
            }
            let next = tokio::time::timeout(Duration::from_secs(60), self.resp.message()).await;
            let Ok(next) = next else {
                panic!(
                    "no {needle:?} within a minute; stdout: {}",
                    String::from_utf8_lossy(&self.stdout)
                )
            };
            match next.expect("stream").and_then(|m| m.response) {
                Some(Out::Stdout(b)) => self.stdout.extend_from_slice(&b),
                Some(Out::Stderr(b)) => self.stderr.extend_from_slice(&b),
                other => panic!(
                    "{other:?} before {needle:?}; stdout: {}",
                    String::from_utf8_lossy(&self.stdout)
                ),
            }
        }
    }

    /// Reads the rest: the exit, after all output.
    async fn exit(&mut self) -> pb::ExitStatus {
        loop {
            match self.next().await {
                Some(Out::Stdout(b)) => self.stdout.extend_from_slice(&b),
                Some(Out::Stderr(b)) => self.stderr.extend_from_slice(&b),
                Some(Out::Exit(x)) => {
                    assert!(self.next().await.is_none(), "the exit is the last message");
                    return x;
                }
                other => panic!("{other:?} before the exit"),
            }
        }
    }
}

fn interactive(command: &[&str], tty: bool) -> pb::ContainerSpec {
    pb::ContainerSpec {
        image: "busybox".into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        open_stdin: true,
        tty,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_terminal_takes_input_resizes_and_ends_with_the_shells_code() {
    let agent = agent_with(&[]).await;
    let c = agent.create(interactive(&["sh"], true)).await;
    let mut call = attach(&agent, open(&c.id, true, true, Some((30, 100)))).await;
    call.read_until("# ").await;
    call.type_line("stty size; tty").await;
    call.read_until("30 100").await;
    call.read_until("/dev/pts/").await;
    call.send(In::Resize(pb::TerminalSize {
        rows: 41,
        cols: 123,
    }))
    .await;
    call.type_line("stty size").await;
    call.read_until("41 123").await;
    // The terminal is /dev/console too.
    call.type_line("ls -l /dev/console; echo via-$((40+2)) > /dev/console")
        .await;
    call.read_until("\ncrw").await;
    call.read_until("via-42").await;
    // The terminal echoes, and converts newlines as a terminal does.
    call.type_line("echo $((6*7))").await;
    call.read_until("42\r\n").await;
    call.type_line("exit 3").await;
    let exit = call.exit().await;
    assert_eq!(exit.exit_code, 3);
    assert!(call.stderr.is_empty(), "a terminal has no stderr");
    // All of it is in the log too, as stdout.
    let (out, err) = agent.logs(&c.id).await;
    assert!(out.contains("30 100") && out.contains("41 123"), "{out}");
    assert!(err.is_empty(), "{err}");
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn stdin_is_a_binary_safe_pipe_until_closed() {
    let agent = agent_with(&[]).await;
    let c = agent.create(interactive(&["cat"], false)).await;
    let mut call = attach(&agent, open(&c.id, true, true, None)).await;
    // 4 MiB of every byte value, in messages of up to 1 MiB.
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let sender = call.tx.clone().expect("requests");
    // The requests end with the feeder's: a client that has sent all its
    // input still gets the output.
    call.end_requests();
    let sent = data.clone();
    let feeding = tokio::spawn(async move {
        for chunk in sent.chunks(1 << 20) {
            let r = In::Stdin(chunk.to_vec());
            if sender
                .send(pb::AttachRequest { request: Some(r) })
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = sender
            .send(pb::AttachRequest {
                request: Some(In::CloseStdin(true)),
            })
            .await;
    });
    let exit = call.exit().await;
    feeding.await.expect("feeder");
    assert_eq!(exit.exit_code, 0);
    assert_eq!(call.stdout.len(), data.len());
    assert!(call.stdout == data, "cat returned other bytes");
    agent.force_remove(&c.id).await;
}

#[tokio::test]
async fn a_detached_terminal_survives_a_berthd_kill_and_takes_a_new_client() {
    let mut agent = agent_with(&[]).await;
    let c = agent.create(interactive(&["sh"], true)).await;
    let mut call = attach(&agent, open(&c.id, true, true, None)).await;
    call.read_until("# ").await;
    call.type_line("echo first$((1+1))").await;
    call.read_until("first2").await;
    // Ending the call detaches.
    drop(call);
    agent.stop_agent(nix::sys::signal::Signal::SIGKILL);
    agent.spawn().await;
    assert_eq!(
        agent.inspect(&c.id).await.state,
        pb::ContainerState::Running as i32
    );
    let mut call = attach(&agent, open(&c.id, true, false, None)).await;
    // Default size: 24 rows, 80 columns.
    call.type_line("stty size; echo back$((2+3))").await;
    call.read_until("24 80").await;
    call.read_until("back5").await;
    // A second client sees the same output.
    let mut watcher = attach(&agent, open(&c.id, false, false, None)).await;
    call.type_line("echo both$((3+4))").await;
    call.read_until("both7").await;
    watcher.read_until("both7").await;
    call.type_line("exit 5").await;
    assert_eq!(call.exit().await.exit_code, 5);
    assert_eq!(watcher.exit().await.exit_code, 5);
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn a_terminal_all_of_whose_ends_were_closed_still_carries_later_output() {
    let agent = agent_with(&[]).await;
    // Every process of the container closes the terminal for a while
    // (as a daemon does), then opens /dev/console again.
    let script = "echo first; exec 0<&- 1>&- 2>&-; sleep 1; exec >/dev/console; echo second";
    let c = agent
        .create(pb::ContainerSpec {
            image: "busybox".into(),
            command: ["sh", "-c", script].map(String::from).to_vec(),
            tty: true,
            ..Default::default()
        })
        .await;
    let mut watcher = attach(&agent, open(&c.id, false, true, None)).await;
    watcher.end_requests();
    assert_eq!(watcher.exit().await.exit_code, 0);
    let out = String::from_utf8_lossy(&watcher.stdout).into_owned();
    assert!(out.contains("first") && out.contains("second"), "{out:?}");
    let (log, _) = agent.logs(&c.id).await;
    assert!(log.contains("second"), "{log:?}");
    agent.force_remove(&c.id).await;
}

#[tokio::test]
async fn sixteen_clients_at_most() {
    let agent = agent_with(&[]).await;
    let c = agent.run(interactive(&["sh"], true)).await;
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(attach(&agent, open(&c.id, false, false, None)).await);
    }
    let s = match try_attach(&agent, In::Open(open(&c.id, false, false, None))).await {
        Ok(_) => panic!("a 17th client was taken"),
        Err(s) => s,
    };
    assert_eq!(
        (s.code(), reason(&s)),
        (Code::ResourceExhausted, "ATTACH_CLIENTS_EXHAUSTED".into())
    );
    // One leaves: another comes.
    clients.pop();
    assert!(
        crate::common::eventually(30, async || {
            try_attach(&agent, In::Open(open(&c.id, false, false, None)))
                .await
                .is_ok()
        })
        .await,
        "a place freed by a detached client is taken again"
    );
    agent.force_remove(&c.id).await;
}

#[tokio::test]
async fn a_container_without_stdin_is_attached_to_its_output() {
    let agent = agent_with(&[]).await;
    let c = agent
        .create(pb::ContainerSpec {
            image: "busybox".into(),
            command: ["sh", "-c", "echo one; echo two >&2; exit 4"]
                .map(String::from)
                .to_vec(),
            ..Default::default()
        })
        .await;
    let mut call = attach(&agent, open(&c.id, false, true, None)).await;
    assert_eq!(call.exit().await.exit_code, 4);
    assert_eq!(String::from_utf8_lossy(&call.stdout), "one\n");
    assert_eq!(String::from_utf8_lossy(&call.stderr), "two\n");
    agent.force_remove(&c.id).await;
}

#[tokio::test]
async fn attach_refuses_what_it_cannot_do_and_changes_nothing() {
    let agent = agent_with(&[]).await;
    let plain = agent
        .create(pb::ContainerSpec {
            image: "busybox".into(),
            command: vec!["true".into()],
            ..Default::default()
        })
        .await;
    let code_and_reason = |r: Result<Call, tonic::Status>| match r {
        Ok(_) => panic!("attach was accepted"),
        Err(s) => (s.code(), reason(&s)),
    };
    // Stdin on a container created without it.
    let r = try_attach(&agent, In::Open(open(&plain.id, true, true, None))).await;
    assert_eq!(
        code_and_reason(r),
        (Code::FailedPrecondition, "CONTAINER_STDIN_CLOSED".into())
    );
    // Not running, and no start asked for.
    let r = try_attach(&agent, In::Open(open(&plain.id, false, false, None))).await;
    assert_eq!(
        code_and_reason(r),
        (Code::FailedPrecondition, "CONTAINER_NOT_RUNNING".into())
    );
    // Nothing started: it is still created.
    assert_eq!(
        agent.inspect(&plain.id).await.state,
        pb::ContainerState::Created as i32
    );
    let r = try_attach(&agent, In::Stdin(b"x".to_vec())).await;
    assert_eq!(code_and_reason(r).0, Code::InvalidArgument);
    let r = try_attach(
        &agent,
        In::Open(open("no-such-container", false, false, None)),
    )
    .await;
    assert_eq!(code_and_reason(r).0, Code::NotFound);
    let r = try_attach(&agent, In::Open(open(&"x".repeat(300), false, false, None))).await;
    assert_eq!(code_and_reason(r).0, Code::InvalidArgument);
    // Stdin without open.stdin ends the call.
    let c = agent.create(interactive(&["cat"], false)).await;
    let mut call = attach(&agent, open(&c.id, false, true, None)).await;
    call.send(In::Stdin(b"x".to_vec())).await;
    let err = loop {
        match call.resp.message().await {
            Err(s) => break s,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the call ended without an error"),
        }
    };
    assert_eq!(err.code(), Code::InvalidArgument);
    agent.force_remove(&c.id).await;
    agent.force_remove(&plain.id).await;
}

/// Output throughput of 100 MB (median of 3, printed) through a terminal
/// (Attach, `-t`), through the stdout pipe (Attach, `-i`) and through the
/// log (RunAttached, neither): not a test, a measurement;
/// `cargo test -p berth --test exec -- --ignored --nocapture throughput`.
#[tokio::test]
#[ignore]
async fn throughput() {
    const BYTES: usize = 100_000_000;
    let agent = agent_with(&[]).await;
    let script = format!("head -c {BYTES} /dev/zero");
    let mut report = Vec::new();
    for (name, tty) in [
        ("terminal (Attach, -t)", true),
        ("pipe (Attach, -i)", false),
    ] {
        let mut times = Vec::new();
        for _ in 0..3 {
            let c = agent.create(interactive(&["sh", "-c", &script], tty)).await;
            let began = std::time::Instant::now();
            let mut call = attach(&agent, open(&c.id, true, true, None)).await;
            let mut got = 0;
            loop {
                match call.next().await {
                    Some(Out::Stdout(b)) | Some(Out::Stderr(b)) => got += b.len(),
                    Some(Out::Exit(_)) => break,
                    other => panic!("{other:?}"),
                }
            }
            times.push(began.elapsed());
            assert_eq!(got, BYTES);
            agent.force_remove(&c.id).await;
        }
        times.sort();
        report.push((name, times[1]));
    }
    // Through the log: a follower slower than the log's rotation is told
    // so (DATA_LOSS), which is the finding here, not a failure.
    let began = std::time::Instant::now();
    let mut s = agent
        .containers()
        .run_attached(pb::RunAttachedRequest {
            spec: Some(pb::ContainerSpec {
                image: "busybox".into(),
                command: ["sh", "-c", &script].map(String::from).to_vec(),
                auto_remove: true,
                ..Default::default()
            }),
        })
        .await
        .expect("run attached")
        .into_inner();
    let mut got = 0;
    loop {
        match s.message().await {
            Ok(Some(m)) => {
                if let Some(pb::run_attached_response::Event::Output(e)) = m.event {
                    got += e.data.len();
                }
            }
            Ok(None) => break,
            Err(e) => {
                println!("log (RunAttached): {:?} after {got} bytes", e.code());
                break;
            }
        }
    }
    if got == BYTES {
        report.push(("log (RunAttached)", began.elapsed()));
    }
    for (name, t) in report {
        println!(
            "{name}: {:.2} s, {:.0} MB/s",
            t.as_secs_f64(),
            BYTES as f64 / 1e6 / t.as_secs_f64()
        );
    }
}
