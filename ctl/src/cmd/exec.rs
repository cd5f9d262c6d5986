//! `exec`: a command in a running container, as `docker exec`: its output
//! as it comes, stdin with `-i`, a terminal with `-t`, and its exit code as
//! berthctl's exit status (126 when it cannot be executed, 127 when it is
//! not found).

use std::io::Write;
use std::os::fd::AsFd;

use berth::v1::exec_client::ExecClient;
use berth::v1::exec_request::Request as In;
use berth::v1::exec_response::Response as Out;
use berth::v1::{ExecRequest, ExecSpec, TerminalSize};
use tokio::sync::mpsc;
use tonic::Code;
use tonic_types::StatusExt;

use crate::cli::ExecArgs;
use crate::error::{Error, Result, EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND};
use crate::fleet::Member;

/// Bytes of stdin per message.
const STDIN_CHUNK: usize = 32 * 1024;

/// The spec `args` asks for; a bare `-e KEY` takes KEY's value from
/// `lookup` (and is left out when unset, as Docker does).
pub fn exec_spec(
    args: &ExecArgs,
    lookup: impl Fn(&str) -> Option<String>,
    size: Option<(u16, u16)>,
) -> ExecSpec {
    ExecSpec {
        container: args.id.clone(),
        argv: args.command.clone(),
        env: args
            .env
            .iter()
            .filter_map(|e| {
                if e.contains('=') {
                    Some(e.clone())
                } else {
                    lookup(e).map(|v| format!("{e}={v}"))
                }
            })
            .collect(),
        user: args.user.clone().unwrap_or_default(),
        working_dir: args.workdir.clone().unwrap_or_default(),
        tty: args.tty,
        stdin: args.interactive,
        terminal_size: size.map(|(rows, cols)| TerminalSize {
            rows: rows.into(),
            cols: cols.into(),
        }),
        privileged: args.privileged,
    }
}

/// The exit status for an exec the agent refused: 126/127 for a command
/// that cannot be executed or was not found (the agent's `exit_code`), 1
/// otherwise (125 when the agent cannot be reached).
fn refused(s: tonic::Status) -> Error {
    let info = s.get_details_error_info();
    let code = info
        .as_ref()
        .filter(|i| s.code() == Code::FailedPrecondition && i.reason == "CANNOT_EXECUTE")
        .map(|i| match i.metadata.get("exit_code").map(String::as_str) {
            Some("127") => EXIT_NOT_FOUND,
            _ => EXIT_CANNOT_EXECUTE,
        });
    match code {
        Some(code) => Error::WithCode(code, Box::new(Error::Status(s))),
        None => Error::Status(s),
    }
}

fn req(r: In) -> ExecRequest {
    ExecRequest { request: Some(r) }
}

/// `exec` on one host.
pub async fn exec(m: &Member, args: ExecArgs) -> Result<()> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let size = if args.tty {
        crate::term::size(stdout.as_fd())
    } else {
        None
    };
    let spec = exec_spec(&args, |k| std::env::var(k).ok(), size);
    let (tx, rx) = mpsc::channel(16);
    let _ = tx.try_send(req(In::Start(spec)));
    let mut resp = ExecClient::new(m.channel().await?)
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(refused)?
        .into_inner();
    match resp.message().await.map_err(refused)? {
        Some(berth::v1::ExecResponse {
            response: Some(Out::Started(_)),
        }) => {}
        _ => return Err(Error::Message("the agent did not start the exec".into())),
    }
    // Raw only once it runs, so an error above prints on a sane terminal;
    // restored when this returns, whichever way.
    let _raw = if args.tty && crate::term::is_terminal(stdin.as_fd()) {
        Some(
            crate::term::RawMode::enter(stdin.as_fd())
                .map_err(|e| Error::Message(format!("terminal raw mode: {e}")))?,
        )
    } else {
        None
    };
    if args.interactive {
        forward_stdin(tx.clone());
    }
    if args.tty {
        forward_resizes(tx.clone());
    }
    // Without -i nothing more is sent; the request stream stays open until
    // the exit (closing it only closes stdin).
    let mut out = stdout.lock();
    let mut err = std::io::stderr().lock();
    loop {
        let msg = match resp.message().await {
            Ok(Some(m)) => m,
            Ok(None) => {
                return Err(Error::Message(
                    "the exec ended without an exit status".into(),
                ))
            }
            Err(s) => return Err(Error::Status(s)),
        };
        let written = match msg.response {
            Some(Out::Stdout(b)) => out.write_all(&b).and_then(|()| out.flush()),
            Some(Out::Stderr(b)) => err.write_all(&b).and_then(|()| err.flush()),
            Some(Out::Exit(x)) => {
                drop(tx);
                return match x.exit_code {
                    0 => Ok(()),
                    code => Err(Error::Exit(code)),
                };
            }
            Some(Out::Started(_)) | None => Ok(()),
        };
        // A closed pipe (`| head`): stop, as the process's own output would.
        if let Err(e) = written {
            return Err(Error::Message(format!("writing the output: {e}")));
        }
    }
}

/// Sends berthctl's stdin as it comes, then close_stdin at end of file. A
/// thread of its own: a read of an interactive stdin blocks, and must not
/// hold up the exit (the runtime waits for its blocking tasks).
fn forward_stdin(tx: mpsc::Sender<ExecRequest>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; STDIN_CHUNK];
        let mut stdin = std::io::stdin().lock();
        loop {
            match std::io::Read::read(&mut stdin, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(req(In::Stdin(buf[..n].to_vec()))).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.blocking_send(req(In::CloseStdin(true)));
    });
}

/// Sends the window's new size at each SIGWINCH.
fn forward_resizes(tx: mpsc::Sender<ExecRequest>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut winch) = signal(SignalKind::window_change()) else {
        return;
    };
    tokio::spawn(async move {
        while winch.recv().await.is_some() {
            if let Some((rows, cols)) = crate::term::size(std::io::stdout().as_fd()) {
                let size = TerminalSize {
                    rows: rows.into(),
                    cols: cols.into(),
                };
                if tx.send(req(In::Resize(size))).await.is_err() {
                    return;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;
    use crate::cmd::parse_command as cli;

    #[test]
    fn exec_command_lines() {
        let Command::Exec(a) = cli(&[
            "exec",
            "-it",
            "-e",
            "A=1",
            "-e",
            "HOME",
            "-e",
            "UNSET",
            "-u",
            "1000",
            "-w",
            "/tmp",
            "web",
            "sh",
            "-c",
            "echo -n hi",
        ]) else {
            panic!()
        };
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        let s = exec_spec(&a, lookup, Some((30, 100)));
        assert_eq!(s.container, "web");
        assert_eq!(s.argv, ["sh", "-c", "echo -n hi"]);
        assert_eq!(s.env, ["A=1", "HOME=/root"]);
        assert_eq!((s.user.as_str(), s.working_dir.as_str()), ("1000", "/tmp"));
        assert!(s.tty && s.stdin && !s.privileged);
        assert_eq!(
            s.terminal_size,
            Some(TerminalSize {
                rows: 30,
                cols: 100
            })
        );
        let Command::Exec(a) = cli(&["exec", "--privileged", "web", "true"]) else {
            panic!()
        };
        let s = exec_spec(&a, |_| None, None);
        assert!(!s.tty && !s.stdin && s.privileged && s.terminal_size.is_none());
    }

    #[test]
    fn refusals_map_to_docker_exit_statuses() {
        use std::collections::HashMap;
        use tonic_types::ErrorDetails;
        let status = |code: &str| {
            let meta = HashMap::from([("exit_code".to_string(), code.to_string())]);
            let d = ErrorDetails::with_error_info("CANNOT_EXECUTE", "berth.dev", meta);
            tonic::Status::with_error_details(Code::FailedPrecondition, "x", d)
        };
        assert_eq!(refused(status("127")).exit_code(), EXIT_NOT_FOUND);
        assert_eq!(refused(status("126")).exit_code(), EXIT_CANNOT_EXECUTE);
        assert_eq!(
            refused(tonic::Status::not_found("no such container")).exit_code(),
            1
        );
    }
}
