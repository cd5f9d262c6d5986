//! Interactive Exec: stdin, a terminal, signals, clients and containers
//! that go away, a restarted berthd.

use super::*;

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

#[tokio::test]
async fn a_stream_that_breaks_the_protocol_is_refused_and_its_exec_killed() {
    let agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    // Stdin without ExecSpec.stdin.
    let (tx, mut resp) = open(&agent, spec(&c.id, &["sleep", "1000"])).await;
    resp.message().await.unwrap().unwrap();
    tx.send(req(In::Stdin(b"x".to_vec()))).await.unwrap();
    let e = loop {
        match resp.message().await {
            Err(e) => break e,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("ended without an error"),
        }
    };
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // A second start.
    let (tx, mut resp) = open(&agent, spec(&c.id, &["sleep", "1000"])).await;
    resp.message().await.unwrap().unwrap();
    tx.send(req(In::Start(spec(&c.id, &["true"]))))
        .await
        .unwrap();
    let e = loop {
        match resp.message().await {
            Err(e) => break e,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("ended without an error"),
        }
    };
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // A first message that is not a start.
    let (tx, rx) = mpsc::channel(1);
    tx.send(req(In::CloseStdin(true))).await.unwrap();
    let e = ExecClient::new(agent.channel.clone())
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // Both refused execs were killed: only the container's init is left.
    assert!(
        common::eventually(30, async || {
            let (_, out, _) = run(
                &agent,
                spec(&c.id, &["sh", "-c", "ls /proc | grep -c '^[0-9]'"]),
            )
            .await;
            // The init, sh, ls and grep.
            out.trim() == "4"
        })
        .await,
        "refused execs still run"
    );
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

/// The exit is the last message of an `Exec` stream, and the stream then
/// ends with OK even though the client never half-closes its side (gRPC
/// clients that read to the end of the stream waited for good).
#[tokio::test]
async fn the_stream_ends_after_the_exit_while_the_client_still_sends() {
    let agent = agent_with(&[]).await;
    let c = sleeper(&agent).await;
    let (tx, mut resp) = open(&agent, spec(&c.id, &["sh", "-c", "exit 3"])).await;
    let mut exit = None;
    let ended = tokio::time::timeout(
        Duration::from_secs(60 * common::slow_factor() as u64),
        async {
            loop {
                match resp.message().await {
                    Ok(Some(m)) => {
                        if let Some(Out::Exit(x)) = m.response {
                            exit = Some(x.exit_code);
                        }
                    }
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        },
    )
    .await;
    assert!(
        matches!(ended, Ok(Ok(()))),
        "the stream did not end: {ended:?}"
    );
    assert_eq!(exit, Some(3));
    drop(tx);
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}
