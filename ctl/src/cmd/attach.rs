//! `attach`: berthctl's stdin, stdout and stderr (or its terminal) joined
//! to a running container's, as `docker attach`; and the attach session
//! that `run -i/-t` and `start -a/-i` share (Containers.Attach).
//!
//! Ending the call detaches: the container runs on. So the request stream
//! stays open until the container's exit, the detach keys, or berthctl's
//! own end.

use berth::v1::attach_request::Request as In;
use berth::v1::attach_response::Response as Out;
use berth::v1::{
    containers_client::ContainersClient, AttachOpen, AttachRequest, Container, ContainerState,
    InspectContainerRequest,
};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::Status;

use super::signals::{Mode, Signals};
use super::stream_io::{
    forward_resizes, forward_stdin, local_size, raw_mode, stdin_is_terminal, Detached, Output,
    Shown, Wire,
};
use crate::cli::AttachArgs;
use crate::ctx::missing;
use crate::detach_keys::{DetachKeys, Matcher};
use crate::error::{Error, Result};
use crate::fleet::Member;

/// How an attach's requests carry stdin, its end and resizes.
const WIRE: Wire<AttachRequest> = Wire {
    stdin: |b| req(In::Stdin(b)),
    close_stdin: || req(In::CloseStdin(true)),
    resize: |s| req(In::Resize(s)),
};

fn req(r: In) -> AttachRequest {
    AttachRequest { request: Some(r) }
}

/// What to attach to, and how.
pub struct Session {
    /// The first request.
    pub open: AttachOpen,
    /// Typed on a terminal (with a tty and stdin), they detach.
    pub detach_keys: DetachKeys,
    /// Without a tty: Ctrl-C and SIGTERM are sent to the container.
    pub sig_proxy: bool,
    /// With `sig_proxy`: a second Ctrl-C stops the container, a third kills
    /// it (a `run`, which started it).
    pub escalate: bool,
    /// The output streams shown.
    pub shown: Shown,
}

/// How an attach session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The container exited with this code.
    Exit(i32),
    /// The detach keys were typed; the container runs on.
    Detached,
}

/// Why an attach session failed.
#[derive(Debug)]
pub enum Failure {
    /// The agent refused the attach (with `start`: the start failed).
    Open(Status),
    /// Anything after the attach.
    Later(Error),
}

/// Attaches as `s` says and relays stdin, resizes, signals and output
/// until the container exits or the detach keys are typed. The local
/// terminal, in raw mode meanwhile with a tty, is restored on return.
pub async fn session(
    mut client: ContainersClient<Channel>,
    s: Session,
) -> std::result::Result<Ended, Failure> {
    let start = s.open.start;
    let stdin = s.open.stdin;
    let (tx, rx) = mpsc::channel(16);
    let _ = tx.try_send(req(In::Open(s.open)));
    let mut resp = client
        .attach(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(Failure::Open)?
        .into_inner();
    let c = match resp.message().await {
        Ok(Some(berth::v1::AttachResponse {
            response: Some(Out::Attached(c)),
        })) => c,
        Ok(_) => return Err(Failure::Later(missing("attached container"))),
        Err(s) => return Err(Failure::Open(s)),
    };
    let tty = c.spec.as_ref().is_some_and(|s| s.tty);
    // Raw only when what is typed goes to the container (as Docker): else
    // Ctrl-C is berthctl's, to detach.
    let raw = raw_mode(tty && stdin).map_err(Failure::Later)?;
    let mut detached = if stdin {
        // Detach keys only on a terminal, as Docker has them.
        let keys = (tty && stdin_is_terminal()).then(|| Matcher::new(s.detach_keys.0.clone()));
        forward_stdin(tx.clone(), WIRE, keys)
    } else {
        Detached::never()
    };
    let mut resizes = None;
    if tty {
        resizes = forward_resizes(tx.clone(), WIRE);
        // A running terminal takes this one's size (a start had it in open).
        if let Some(size) = local_size().filter(|_| !start) {
            let _ = tx.send(req(In::Resize(size))).await;
        }
    }
    let mode = if s.sig_proxy && !tty {
        Mode::Proxy
    } else if raw.is_some() {
        Mode::Restore
    } else {
        Mode::Off
    };
    let mut signals = Signals::new(mode, s.escalate, client, &c.id);
    let shown = s.shown;
    let mut out = Output::new();
    loop {
        tokio::select! {
            msg = resp.message() => match msg {
                Ok(Some(m)) => match m.response {
                    Some(Out::Stdout(b)) if shown.stdout => out.stdout(&b).map_err(Failure::Later)?,
                    Some(Out::Stderr(b)) if shown.stderr => out.stderr(&b).map_err(Failure::Later)?,
                    Some(Out::Stdout(_) | Out::Stderr(_)) => {}
                    Some(Out::Exit(x)) => return Ok(Ended::Exit(x.exit_code)),
                    Some(Out::Attached(_)) | None => {}
                },
                Ok(None) => {
                    return Err(Failure::Later(Error::Message(
                        "the attach ended without an exit status".into(),
                    )))
                }
                Err(s) => return Err(Failure::Later(Error::Status(s))),
            },
            () = detached.wait() => {
                if let Some(r) = resizes {
                    r.abort();
                }
                // After what was typed before the keys (the same queue).
                // A container that reads no stdin can leave the queue full:
                // then the call is just left, as before `detach` existed.
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(1),
                    tx.send(req(In::Detach(true))),
                )
                .await;
                drop(tx);
                end_requests(resp).await;
                return Ok(Ended::Detached);
            }
            Some((name, number)) = signals.next() => {
                if signals.mode() == Mode::Restore {
                    // Ended as by the signal, with the terminal restored.
                    return Err(Failure::Later(Error::Exit(128 + number)));
                }
                signals.send(name)
            }
        }
    }
}

/// After the detach keys: the agent ends the call once what was typed
/// before them (sent first, in order) is with the container. Output
/// meanwhile is dropped. An agent older than `AttachRequest.detach` keeps
/// the call open: it is left after a second (ending the call detaches
/// there too).
async fn end_requests(mut resp: tonic::Streaming<berth::v1::AttachResponse>) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        while let Ok(Some(_)) = resp.message().await {}
    })
    .await;
}

/// A client of `m` for attaching.
pub async fn client(m: &Member) -> Result<ContainersClient<Channel>> {
    Ok(ContainersClient::new(m.channel().await?)
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES))
}

/// The container `id` names, from Inspect.
pub async fn inspect(client: &mut ContainersClient<Channel>, id: &str) -> Result<Container> {
    client
        .inspect(InspectContainerRequest { id: id.to_string() })
        .await?
        .into_inner()
        .container
        .ok_or_else(|| missing("container"))
}

/// Whether to send stdin to `c`: when asked and it has `open_stdin` (as
/// `docker attach`, which attaches no stdin to a container without it).
pub fn stdin_for(c: &Container, wanted: bool) -> bool {
    wanted && c.spec.as_ref().is_some_and(|s| s.open_stdin)
}

/// A session of `attach` or `start -a`, and berthctl's exit: the
/// container's exit code, or 0 after a detach (said as Docker says it).
pub async fn attached(client: ContainersClient<Channel>, s: Session) -> Result<()> {
    match session(client, s).await {
        Ok(Ended::Exit(0)) => Ok(()),
        Ok(Ended::Exit(code)) => Err(Error::Exit(code)),
        Ok(Ended::Detached) => {
            eprintln!("read escape sequence");
            Ok(())
        }
        Err(Failure::Open(s)) => Err(Error::Status(s)),
        Err(Failure::Later(e)) => Err(e),
    }
}

/// `attach` on one host.
pub async fn attach(m: &Member, args: AttachArgs) -> Result<()> {
    let mut client = client(m).await?;
    let c = inspect(&mut client, &args.id).await?;
    let state = ContainerState::try_from(c.state).unwrap_or_default();
    if !matches!(state, ContainerState::Running | ContainerState::Paused) {
        return Err(Error::Message(format!(
            "cannot attach to {}: it is not running (start it with `berthctl start -a`)",
            args.id
        )));
    }
    let s = Session {
        open: AttachOpen {
            id: c.id.clone(),
            stdin: stdin_for(&c, !args.no_stdin),
            start: false,
            terminal_size: None,
        },
        detach_keys: args.detach_keys,
        sig_proxy: args.sig_proxy,
        escalate: false,
        shown: Shown::ALL,
    };
    attached(client, s).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;
    use crate::cmd::parse_command as command;
    use crate::fake::Fake;

    #[test]
    fn attach_command_lines() {
        let Command::Attach(a) = command(&["attach", "web"]) else {
            panic!()
        };
        assert!(!a.no_stdin && a.sig_proxy);
        assert_eq!(a.detach_keys.0, [0x10, 0x11]);
        let Command::Attach(a) = command(&[
            "attach",
            "--no-stdin",
            "--sig-proxy=false",
            "--detach-keys=ctrl-a,x",
            "web",
        ]) else {
            panic!()
        };
        assert!(a.no_stdin && !a.sig_proxy);
        assert_eq!((a.detach_keys.0, a.id.as_str()), (vec![1, b'x'], "web"));
        // A bare --sig-proxy is true, and does not take the container.
        let Command::Attach(a) = command(&["attach", "--sig-proxy", "web"]) else {
            panic!()
        };
        assert!(a.sig_proxy && a.id == "web");
    }

    #[test]
    fn stdin_only_to_a_container_that_keeps_it_open() {
        let mut c = Container::default();
        assert!(!stdin_for(&c, true));
        c.spec = Some(berth::v1::ContainerSpec {
            open_stdin: true,
            ..Default::default()
        });
        assert!(stdin_for(&c, true) && !stdin_for(&c, false));
    }

    #[tokio::test]
    async fn attach_without_stdin_relays_until_the_exit() {
        let fake = Fake::default();
        fake.0.lock().map(|mut s| s.exit_code = 4).ok();
        let f = fake.serve().await;
        let Command::Attach(a) = command(&["attach", "fake"]) else {
            panic!()
        };
        // The fake's container is exited: refused before attaching.
        let r = attach(f.first().unwrap_or_else(|e| panic!("{e}")), a).await;
        assert!(
            matches!(r, Err(Error::Message(ref m)) if m.contains("not running")),
            "{r:?}"
        );
        // A session as `attach` opens it for a running container.
        let m = f.first().unwrap_or_else(|e| panic!("{e}"));
        let s = Session {
            open: AttachOpen {
                id: "fake".into(),
                ..Default::default()
            },
            detach_keys: DetachKeys(vec![]),
            sig_proxy: false,
            escalate: false,
            shown: Shown::ALL,
        };
        let ended = session(client(m).await.unwrap_or_else(|e| panic!("{e}")), s).await;
        assert!(matches!(ended, Ok(Ended::Exit(4))), "{ended:?}");
        assert_eq!(
            fake.calls(),
            [
                "inspect fake".to_string(),
                "attach fake stdin=false start=false".to_string()
            ]
        );
    }
}
