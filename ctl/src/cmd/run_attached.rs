//! Attached `run` on one host: the container's output as it comes (the
//! streams `-a` names), then its exit code; Ctrl-C is sent on to the
//! container, a second stops it, a third kills it (`signals`). With `-i`
//! or `-t`, Create then an attach session (stdin, a terminal), as
//! `docker run -it`.

use berth::v1::run_attached_response::Event;
use berth::v1::{
    containers_client::ContainersClient, AttachOpen, ContainerSpec, CreateContainerRequest,
    InspectContainerRequest, LogEntry, LogStream, LogsRequest, RemoveContainerRequest,
    RunAttachedRequest, RunAttachedResponse, StartContainerRequest, WaitCondition,
    WaitContainerRequest,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::attach::{session, Ended, Failure, Session};
use super::logs::Sink;
use super::run::{run_error, start_failure_code};
use super::signals::{Mode, Signals};
use super::stream_io::{local_size, stdin_is_terminal, Shown};
use crate::ctx::missing;
use crate::detach_keys::DetachKeys;
use crate::error::{Error, Result, EXIT_BERTHCTL};

/// How an attached `run` relays: `--sig-proxy` and `-a`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relay {
    /// Signals sent on to the container (else they end berthctl only).
    pub sig_proxy: bool,
    /// The output streams shown.
    pub shown: Shown,
    /// With `-i`: stdin sent to the container.
    pub stdin: bool,
}

impl Relay {
    /// The signals of the run of `id`.
    fn signals(&self, client: &ContainersClient<Channel>, id: &str) -> Signals {
        let mode = if self.sig_proxy {
            Mode::Proxy
        } else {
            Mode::Off
        };
        Signals::new(mode, true, client.clone(), id)
    }

    /// Writes `entry` if its stream is shown.
    fn write(&self, sink: &Sink, entry: &LogEntry) -> Result<()> {
        let shown = if entry.stream == LogStream::Stderr as i32 {
            self.shown.stderr
        } else {
            self.shown.stdout
        };
        if shown {
            sink.write(entry)?;
        }
        Ok(())
    }
}

/// Attached `run` in one call (RunAttached); an agent that predates it
/// gets the same done in steps.
pub async fn run_attached(
    sink: &Sink,
    mut client: ContainersClient<Channel>,
    spec: ContainerSpec,
    relay: Relay,
) -> Result<i32> {
    let request = RunAttachedRequest {
        spec: Some(spec.clone()),
    };
    let mut stream = match client.run_attached(request).await {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == Code::Unimplemented => {
            return run_in_steps(sink, client, spec, relay).await
        }
        // A container whose start failed is gone again: the message is
        // all there is to go by.
        Err(s) => return Err(run_error(start_failure_code(&s, None), s)),
    };
    let id = match stream.message().await {
        Ok(Some(RunAttachedResponse {
            event: Some(Event::Started(c)),
        })) => c.id,
        Ok(_) => return Err(run_error(EXIT_BERTHCTL, missing("started container"))),
        Err(s) => return Err(run_error(EXIT_BERTHCTL, s)),
    };
    let mut signals = relay.signals(&client, &id);
    loop {
        tokio::select! {
            msg = stream.message() => match msg {
                Ok(Some(RunAttachedResponse { event: Some(Event::Output(entry)) })) => {
                    relay.write(sink, &entry)?
                }
                Ok(Some(RunAttachedResponse { event: Some(Event::Exit(exit)) })) => {
                    return Ok(exit.exit_code)
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err(run_error(EXIT_BERTHCTL, missing("exit status"))),
                Err(s) => return Err(run_error(EXIT_BERTHCTL, s)),
            },
            Some((name, _)) = signals.next() => signals.send(name),
        }
    }
}

/// Attached `run` in steps: Create, Logs, Start, Wait.
async fn run_in_steps(
    sink: &Sink,
    mut client: ContainersClient<Channel>,
    spec: ContainerSpec,
    relay: Relay,
) -> Result<i32> {
    let auto_remove = spec.auto_remove;
    let c = client
        .create(CreateContainerRequest { spec: Some(spec) })
        .await
        .map_err(|s| run_error(EXIT_BERTHCTL, s))?
        .into_inner()
        .container
        .ok_or_else(|| run_error(EXIT_BERTHCTL, missing("container")))?;
    let id = c.id;

    // Open the log stream before starting, and wait for the agent to answer
    // (it opens the log first), so not a byte of output is missed, even of a
    // container removed as soon as it exits.
    let logs = match client.logs(follow_request(&id)).await {
        Ok(r) => r.into_inner(),
        Err(s) => {
            if auto_remove {
                remove_quietly(&mut client, &id).await;
            }
            return Err(run_error(EXIT_BERTHCTL, s));
        }
    };
    if let Err(s) = client.start(StartContainerRequest { id: id.clone() }).await {
        return Err(failed_start(&mut client, &id, auto_remove, s).await);
    }

    // With --rm, wait until the agent has removed the container (as
    // `docker run --rm` does), so its name is free again when run returns.
    // The wait is asked for now, so its answer comes as soon as the agent
    // knows, not one round trip after the output ends.
    let condition = if auto_remove {
        WaitCondition::Removed
    } else {
        WaitCondition::NotRunning
    };
    let waiting = {
        let mut client = client.clone();
        let req = WaitContainerRequest {
            id: id.clone(),
            condition: condition as i32,
        };
        tokio::spawn(async move { client.wait(req).await })
    };
    if let Err(e) = copy_until_exit(sink, &client, &id, logs, relay).await {
        waiting.abort();
        return Err(e);
    }
    let exit = waiting
        .await
        .map_err(|e| {
            run_error(
                EXIT_BERTHCTL,
                Error::Message(format!("waiting for the container: {e}")),
            )
        })?
        .map_err(|s| run_error(EXIT_BERTHCTL, s))?
        .into_inner()
        .exit
        .ok_or_else(|| run_error(EXIT_BERTHCTL, missing("exit status")))?;
    Ok(exit.exit_code)
}

/// `run -i`/`-t` attached: Create, then Attach with `start` (so not a byte
/// of output is missed) relaying stdin, the terminal and signals; the
/// container's exit code, or 0 after the detach keys (it runs on). With
/// `--rm`, returns once the container is gone.
pub async fn run_interactive(
    mut client: ContainersClient<Channel>,
    spec: ContainerSpec,
    detach_keys: DetachKeys,
    relay: Relay,
) -> Result<i32> {
    let auto_remove = spec.auto_remove;
    let tty = spec.tty;
    let stdin = spec.open_stdin && relay.stdin;
    let id = client
        .create(CreateContainerRequest { spec: Some(spec) })
        .await
        .map_err(|s| run_error(EXIT_BERTHCTL, s))?
        .into_inner()
        .container
        .ok_or_else(|| run_error(EXIT_BERTHCTL, missing("container")))?
        .id;
    let s = Session {
        open: AttachOpen {
            id: id.clone(),
            stdin,
            start: true,
            terminal_size: local_size().filter(|_| tty && stdin_is_terminal()),
        },
        detach_keys,
        sig_proxy: relay.sig_proxy,
        escalate: true,
        shown: relay.shown,
    };
    match session(client.clone(), s).await {
        Ok(Ended::Exit(code)) => {
            if auto_remove {
                wait_removed(&mut client, &id).await?;
            }
            Ok(code)
        }
        Ok(Ended::Detached) => {
            eprintln!("read escape sequence");
            Ok(0)
        }
        // An agent without Attach: the container never ran, so it goes.
        Err(Failure::Open(s)) if s.code() == Code::Unimplemented => {
            remove_quietly(&mut client, &id).await;
            Err(run_error(EXIT_BERTHCTL, s))
        }
        Err(Failure::Open(s)) => Err(failed_start(&mut client, &id, auto_remove, s).await),
        Err(Failure::Later(e)) => Err(run_error(EXIT_BERTHCTL, e)),
    }
}

/// The error of a `run` whose start failed (`s`), with Docker's exit status
/// (126/127 by the container's exit code after the failure); with `--rm`
/// the container is removed.
async fn failed_start(
    client: &mut ContainersClient<Channel>,
    id: &str,
    auto_remove: bool,
    s: Status,
) -> Error {
    let exit_code = client
        .inspect(InspectContainerRequest { id: id.to_string() })
        .await
        .ok()
        .and_then(|r| r.into_inner().container)
        .and_then(|c| c.exit)
        .map(|x| x.exit_code);
    if auto_remove {
        remove_quietly(client, id).await;
    }
    run_error(start_failure_code(&s, exit_code), s)
}

/// Waits until the agent has removed an `--rm` container, so its name is
/// free again when `run` returns (gone already is as good).
async fn wait_removed(client: &mut ContainersClient<Channel>, id: &str) -> Result<()> {
    let req = WaitContainerRequest {
        id: id.to_string(),
        condition: WaitCondition::Removed as i32,
    };
    match client.wait(req).await {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::NotFound => Ok(()),
        Err(s) => Err(run_error(EXIT_BERTHCTL, s)),
    }
}

/// The Logs request `run` uses: everything, following.
pub fn follow_request(id: &str) -> LogsRequest {
    LogsRequest {
        id: id.to_string(),
        follow: true,
        ..Default::default()
    }
}

/// Removes a container `run` created but could not start, so that `--rm`
/// leaves nothing behind. Its failure is not worth a second error message.
async fn remove_quietly(client: &mut ContainersClient<Channel>, id: &str) {
    let _ = client
        .remove(RemoveContainerRequest {
            id: id.to_string(),
            force: true,
            ..Default::default()
        })
        .await;
}

/// Copies the followed output to stdout/stderr until the container exits,
/// relaying signals meanwhile; output keeps flowing after a Ctrl-C, so what
/// the container prints on its way out is not lost.
async fn copy_until_exit(
    sink: &Sink,
    client: &ContainersClient<Channel>,
    id: &str,
    mut logs: tonic::Streaming<LogEntry>,
    relay: Relay,
) -> Result<()> {
    let mut signals = relay.signals(client, id);
    loop {
        tokio::select! {
            entry = logs.message() => match entry {
                Ok(Some(entry)) => relay.write(sink, &entry)?,
                Ok(None) => return Ok(()),
                Err(s) => return Err(run_error(EXIT_BERTHCTL, s)),
            },
            Some((name, _)) = signals.next() => signals.send(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_everything() {
        assert_eq!(
            follow_request("abc"),
            LogsRequest {
                id: "abc".into(),
                follow: true,
                ..Default::default()
            }
        );
    }
}
