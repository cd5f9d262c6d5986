//! `exec`: a command in a running container, as `docker exec`: its output
//! as it comes, stdin with `-i`, a terminal with `-t`, and its exit code as
//! berthctl's exit status (126 when it cannot be executed, 127 when it is
//! not found).

use berth::v1::exec_client::ExecClient;
use berth::v1::exec_request::Request as In;
use berth::v1::exec_response::Response as Out;
use berth::v1::{ExecRequest, ExecSpec, TerminalSize};
use tokio::sync::mpsc;
use tonic::Code;
use tonic_types::StatusExt;

use super::stream_io::{forward_resizes, forward_stdin, local_size, raw_mode, Output, Wire};
use crate::cli::ExecArgs;
use crate::error::{Error, Result, EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND};
use crate::fleet::Member;

/// The spec `args` asks for; a bare `-e KEY` takes KEY's value from
/// `lookup` (and is left out when unset, as Docker does).
pub fn exec_spec(
    args: &ExecArgs,
    lookup: impl Fn(&str) -> Option<String>,
    size: Option<TerminalSize>,
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
        terminal_size: size,
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

/// How an exec's requests carry stdin, its end and resizes.
const WIRE: Wire<ExecRequest> = Wire {
    stdin: |b| req(In::Stdin(b)),
    close_stdin: || req(In::CloseStdin(true)),
    resize: |s| req(In::Resize(s)),
};

/// `exec` on one host.
pub async fn exec(m: &Member, args: ExecArgs) -> Result<()> {
    let size = if args.tty { local_size() } else { None };
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
    let _raw = raw_mode(args.tty)?;
    if args.interactive {
        forward_stdin(tx.clone(), WIRE, None);
    }
    if args.tty {
        forward_resizes(tx.clone(), WIRE);
    }
    // Without -i nothing more is sent; the request stream stays open until
    // the exit (closing it only closes stdin).
    let mut out = Output::new();
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
        match msg.response {
            Some(Out::Stdout(b)) => out.stdout(&b)?,
            Some(Out::Stderr(b)) => out.stderr(&b)?,
            Some(Out::Exit(x)) => {
                drop(tx);
                return match x.exit_code {
                    0 => Ok(()),
                    code => Err(Error::Exit(code)),
                };
            }
            Some(Out::Started(_)) | None => {}
        }
    }
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
        let size = TerminalSize {
            rows: 30,
            cols: 100,
        };
        let s = exec_spec(&a, lookup, Some(size));
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
