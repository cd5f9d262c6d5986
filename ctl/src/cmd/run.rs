//! `run`: create and start a container (on every targeted host), and unless
//! detached, stream its output and exit with its exit code.

use std::collections::HashSet;

use berth::v1::{containers_client::ContainersClient, RunContainerRequest};
use tonic::{Code, Status};

use super::create::print_containers;
use super::fan::per_host;
use super::logs::Sink;
use super::run_attached::{run_attached, run_interactive, Relay};
use super::spec::{env_lookup, spec_from_args};
use super::stream_io::Shown;
use crate::cli::{RunArgs, StreamName};
use crate::ctx::missing;
use crate::error::{Error, Result, EXIT_BERTHCTL, EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND};
use crate::fleet::{split, Fleet};

/// The exit status of `run` when the container could not be started, as
/// `docker run` has it: 127 when the command was not found, 126 when it
/// could not be executed, 125 when the failure was not the command's.
/// `exit_code` is the container's exit code after the failed start, if the
/// agent still has the container.
pub fn start_failure_code(status: &Status, exit_code: Option<i32>) -> i32 {
    if status.code() != Code::FailedPrecondition {
        return EXIT_BERTHCTL;
    }
    if let Some(code @ (EXIT_CANNOT_EXECUTE | EXIT_NOT_FOUND)) = exit_code {
        return code;
    }
    // The container is gone (auto_remove, or Run's clean-up): go by what
    // the agent said.
    let msg = status.message().to_lowercase();
    if msg.contains("not found") || msg.contains("no such file") {
        EXIT_NOT_FOUND
    } else if msg.contains("permission denied")
        || msg.contains("exec format")
        || msg.contains("not executable")
    {
        EXIT_CANNOT_EXECUTE
    } else {
        EXIT_BERTHCTL
    }
}

/// An error of `run` with the exit status `code`, unless it has one.
pub fn run_error(code: i32, e: impl Into<Error>) -> Error {
    match e.into() {
        // Already an exit status of its own (connection failures are 125).
        e @ (Error::WithCode(..) | Error::Connect { .. } | Error::Exit(_)) => e,
        e => Error::WithCode(code, Box::new(e)),
    }
}

/// The error without `run`'s exit status, for one host among many, where
/// the exit status is the fleet's (125 only when no host was reachable).
fn plain(e: Error) -> Error {
    match e {
        Error::WithCode(_, inner) => *inner,
        e => e,
    }
}

/// How an attached run relays, from `-a` (`attach`), `--sig-proxy` and
/// `-i` (`open_stdin`): `-a stdin` needs `-i`, as stdin is open only then.
fn relay(attach: &[StreamName], sig_proxy: bool, open_stdin: bool) -> Result<Relay> {
    if attach.contains(&StreamName::Stdin) && !open_stdin {
        return Err(Error::Message(
            "-a stdin needs -i: the container's stdin is open only with -i".into(),
        ));
    }
    let all = attach.is_empty();
    Ok(Relay {
        sig_proxy,
        shown: Shown {
            stdout: all || attach.contains(&StreamName::Stdout),
            stderr: all || attach.contains(&StreamName::Stderr),
        },
        stdin: all || attach.contains(&StreamName::Stdin),
    })
}

/// `run`. Detached: prints where each container runs (its id on one
/// agent). Attached: the output of every host (prefixed on many), then
/// the exit status: the container's exit code on one agent; on many, their
/// common exit code, or 1 when they differ or a host failed. With
/// `--place`, see [`super::run_placed`].
pub async fn run(f: &Fleet, args: RunArgs) -> Result<()> {
    if let Some(strategy) = args.place {
        return super::run_placed::run_placed(f, args, strategy).await;
    }
    let spec = spec_from_args(&args.spec, args.rm, env_lookup)?;
    let relay = relay(&args.attach, args.sig_proxy, spec.open_stdin)?;
    if !args.detach && (spec.open_stdin || spec.tty) {
        if !f.is_single() {
            return Err(Error::Message(
                "run -i/-t works on one host at a time: use -H HOST (or -d)".into(),
            ));
        }
        let client = super::attach::client(f.first()?).await?;
        return match run_interactive(client, spec, args.detach_keys, relay).await? {
            0 => Ok(()),
            code => Err(Error::Exit(code)),
        };
    }
    if args.detach {
        let results = f
            .each(|_, ch| {
                let spec = spec.clone();
                async move {
                    match ContainersClient::new(ch)
                        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                        .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                        .run(RunContainerRequest { spec: Some(spec) })
                        .await
                    {
                        Ok(r) => r.into_inner().container.ok_or_else(|| missing("container")),
                        // The agent removes a container whose Run failed, so
                        // the message is all there is to go by.
                        Err(s) => Err(run_error(start_failure_code(&s, None), s)),
                    }
                }
            })
            .await;
        let results = if f.is_single() {
            results
        } else {
            results
                .into_iter()
                .map(|(m, r)| (m, r.map_err(plain)))
                .collect()
        };
        return per_host(f, results, |ok| print_containers(f, ok));
    }
    let results = f
        .each_untimed(|m, ch| {
            let spec = spec.clone();
            async move {
                let sink = Sink::new(f, &m.name, false);
                run_attached(
                    &sink,
                    ContainersClient::new(ch)
                        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                        .max_encoding_message_size(crate::MAX_REQUEST_BYTES),
                    spec,
                    relay,
                )
                .await
            }
        })
        .await;
    if f.is_single() {
        for (_, r) in results {
            match r? {
                0 => {}
                code => return Err(Error::Exit(code)),
            }
        }
        return Ok(());
    }
    let results = results
        .into_iter()
        .map(|(m, r)| (m, r.map_err(plain)))
        .collect();
    let (ok, fails) = split(results);
    let codes: HashSet<i32> = ok.iter().map(|(_, c)| *c).collect();
    for (m, code) in &ok {
        if *code != 0 {
            eprintln!("berthctl: {}: container exited with {code}", m.name);
        }
    }
    fails.finish()?;
    match codes.into_iter().collect::<Vec<_>>().as_slice() {
        [] | [0] => Ok(()),
        [code] => Err(Error::Exit(*code)),
        _ => Err(Error::Exit(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_failures() {
        let fp = |m: &str| Status::failed_precondition(m);
        assert_eq!(start_failure_code(&fp("exec failed"), Some(127)), 127);
        assert_eq!(start_failure_code(&fp("exec failed"), Some(126)), 126);
        assert_eq!(
            start_failure_code(
                &fp("exec: \"nope\": executable file not found in $PATH"),
                None
            ),
            127
        );
        assert_eq!(
            start_failure_code(&fp("exec /etc/passwd: permission denied"), None),
            126
        );
        assert_eq!(
            start_failure_code(&fp("container is already running"), None),
            125
        );
        assert_eq!(
            start_failure_code(&Status::internal("cgroup: not found"), Some(127)),
            125
        );
        assert_eq!(
            start_failure_code(&Status::not_found("no such image"), None),
            125
        );
    }

    #[test]
    fn run_errors_keep_their_own_codes() {
        let e = run_error(125, Status::internal("boom"));
        assert_eq!(
            (e.exit_code(), e.to_string()),
            (125, "internal error: boom".to_string())
        );
        let e = run_error(
            125,
            Error::Connect {
                addr: "a".into(),
                reason: "b".into(),
            },
        );
        assert!(matches!(e, Error::Connect { .. }));
        assert_eq!(
            run_error(127, Status::failed_precondition("x not found")).exit_code(),
            127
        );
    }
}

/// `run` and friends against the scripted fake agent in `fake.rs`.
#[cfg(test)]
mod agent_tests {
    use super::*;
    use crate::cli::Command;
    use crate::cmd::parse_command as command;
    use crate::fake::{Fake, ID};

    async fn run_with(fake: &Fake, args: &[&str]) -> Result<()> {
        let f = fake.serve().await;
        let Command::Run(a) = command(args) else {
            panic!("not run")
        };
        run(&f, a).await
    }

    #[tokio::test]
    async fn attached_run_follows_logs_before_starting_and_exits_with_the_code() {
        let fake = Fake::default();
        fake.0.lock().map(|mut s| s.exit_code = 3).ok();
        let r = run_with(&fake, &["run", "--rm", "busybox", "true"]).await;
        assert!(matches!(r, Err(Error::Exit(3))), "{r:?}");
        assert_eq!(
            fake.calls(),
            [
                "create busybox".to_string(),
                format!("logs {ID} follow=true"),
                format!("start {ID}"),
                // --rm: run returns once the container is gone.
                format!("wait {ID} until=removed"),
            ]
        );
    }

    #[test]
    fn dash_a_chooses_the_streams_and_stdin_needs_dash_i() {
        let relay_of = |args: &[&str]| {
            let Command::Run(a) = command(args) else {
                panic!("not run")
            };
            let spec = spec_from_args(&a.spec, a.rm, env_lookup).unwrap_or_else(|e| panic!("{e}"));
            relay(&a.attach, a.sig_proxy, spec.open_stdin)
        };
        let all = relay_of(&["run", "busybox"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (all.shown, all.stdin, all.sig_proxy),
            (Shown::ALL, true, true)
        );
        let out = relay_of(&["run", "-a", "stdout", "--sig-proxy=false", "busybox"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (out.shown.stdout, out.shown.stderr, out.stdin, out.sig_proxy),
            (true, false, false, false)
        );
        let both = relay_of(&["run", "-i", "-a", "STDIN", "--attach=stderr", "busybox"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (both.shown.stdout, both.shown.stderr, both.stdin),
            (false, true, true)
        );
        let r = relay_of(&["run", "-a", "stdin", "busybox"]);
        assert!(
            matches!(r, Err(Error::Message(ref m)) if m.contains("needs -i")),
            "{r:?}"
        );
        // -a and -d contradict each other, as in Docker.
        assert!(
            crate::cli::try_parse_from(["berthctl", "run", "-d", "-a", "stdout", "busybox"])
                .is_err()
        );
    }

    #[tokio::test]
    async fn attached_run_exit_zero_is_success() {
        let fake = Fake::default();
        assert!(run_with(&fake, &["run", "busybox"]).await.is_ok());
        // Without --rm there is no removal to wait for.
        assert_eq!(
            fake.calls().last(),
            Some(&format!("wait {ID} until=exited"))
        );
    }

    #[tokio::test]
    async fn command_not_found_exits_127_and_rm_cleans_up() {
        let fake = Fake::default();
        fake.0
            .lock()
            .map(|mut s| {
                s.start_error = Some(Status::failed_precondition("exec failed"));
                s.start_exit = Some(127);
            })
            .ok();
        let r = run_with(&fake, &["run", "--rm", "busybox", "nope"]).await;
        assert_eq!(r.as_ref().map_err(Error::exit_code), Err(127), "{r:?}");
        let calls = fake.calls();
        assert_eq!(
            calls[3..],
            [format!("inspect {ID}"), format!("remove {ID} force=true")]
        );
    }

    #[tokio::test]
    async fn failed_create_is_125() {
        let fake = Fake::default();
        fake.0
            .lock()
            .map(|mut s| s.create_error = Some(Status::not_found("no such image: nope")))
            .ok();
        let r = run_with(&fake, &["run", "nope"]).await;
        let Err(e) = r else { panic!("should fail") };
        assert_eq!(
            (e.exit_code(), e.to_string()),
            (125, "no such image: nope".to_string())
        );
        assert_eq!(fake.calls(), ["create nope"]);
    }

    #[tokio::test]
    async fn run_with_a_tty_creates_then_attaches_with_start() {
        let fake = Fake::default();
        fake.0.lock().map(|mut s| s.exit_code = 5).ok();
        let r = run_with(&fake, &["run", "-t", "--detach-keys=ctrl-x,q", "busybox"]).await;
        assert!(matches!(r, Err(Error::Exit(5))), "{r:?}");
        assert_eq!(
            fake.calls(),
            [
                "create busybox".to_string(),
                format!("attach {ID} stdin=false start=true"),
            ]
        );
        // A failed start is run's 127, and --rm removes what was created.
        let fake = Fake::default();
        fake.0
            .lock()
            .map(|mut s| {
                s.start_error = Some(Status::failed_precondition("exec failed"));
                s.start_exit = Some(127);
            })
            .ok();
        let r = run_with(&fake, &["run", "-t", "--rm", "busybox", "nope"]).await;
        assert_eq!(r.as_ref().map_err(Error::exit_code), Err(127), "{r:?}");
        assert_eq!(
            fake.calls()[2..],
            [format!("inspect {ID}"), format!("remove {ID} force=true")]
        );
    }

    #[tokio::test]
    async fn detached_run_with_a_tty_does_not_attach() {
        let fake = Fake::default();
        assert!(run_with(&fake, &["run", "-d", "-it", "busybox"])
            .await
            .is_ok());
        assert_eq!(fake.calls(), ["run busybox"]);
    }

    #[tokio::test]
    async fn detached_run_uses_run() {
        let fake = Fake::default();
        assert!(run_with(&fake, &["run", "-d", "busybox"]).await.is_ok());
        assert_eq!(fake.calls(), ["run busybox"]);
        fake.0
            .lock()
            .map(|mut s| {
                s.start_error = Some(Status::failed_precondition("exec: \"x\": not found"))
            })
            .ok();
        let r = run_with(&fake, &["run", "-d", "busybox", "x"]).await;
        assert_eq!(r.map_err(|e| e.exit_code()), Err(127));
    }
}
