//! Signals berthctl gets while attached to a container (`run`, `attach`,
//! `start -a`), and what it does with them.
//!
//! Without a terminal, Ctrl-C and SIGTERM are sent on to the container, as
//! Docker's `--sig-proxy` does. A container's PID 1 ignores a signal it has
//! no handler for (a plain `sleep` does), so Docker's Ctrl-C often does
//! nothing; an attached `run`, which started the container, goes further
//! on a repeated Ctrl-C: the second stops it (its stop signal, then SIGKILL
//! after its timeout), the third kills it. Each step is said once on stderr.

use berth::v1::{containers_client::ContainersClient, KillContainerRequest, StopContainerRequest};
use tonic::transport::Channel;
use tonic::Code;

use crate::ctx::report;
use crate::error::Error;

/// What berthctl does with signals while attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `--sig-proxy` without a tty: Ctrl-C and SIGTERM sent on to the
    /// container as Kill, each said once on stderr.
    Proxy,
    /// In raw mode: SIGTERM, SIGHUP and SIGINT (from elsewhere: typed,
    /// Ctrl-C is a byte for the container) end berthctl as they would,
    /// but with the terminal restored; the container runs on.
    Restore,
    /// The default actions: a signal ends berthctl, the container runs on.
    Off,
}

/// What one signal led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Sent on to the container.
    Forward(&'static str),
    /// The container stopped (stop signal, then SIGKILL after its timeout).
    Stop,
    /// The container killed.
    Kill,
}

/// The step of a signal: forwarded, or with `escalate` a repeated SIGINT
/// (`interrupts` counts this one) stops, then kills.
fn step(name: &'static str, escalate: bool, interrupts: u32) -> Step {
    match (escalate && name == "SIGINT", interrupts) {
        (true, 2) => Step::Stop,
        (true, 3..) => Step::Kill,
        _ => Step::Forward(name),
    }
}

/// The signals of one attached container, by [`Mode`].
pub struct Signals {
    mode: Mode,
    escalate: bool,
    handlers: Vec<(tokio::signal::unix::Signal, &'static str, i32)>,
    said: Vec<Step>,
    interrupts: u32,
    client: ContainersClient<Channel>,
    id: String,
}

impl Signals {
    /// Takes the signals `mode` handles; with `escalate` (a `run` that
    /// started the container), repeated Ctrl-Cs stop and then kill it.
    pub fn new(mode: Mode, escalate: bool, client: ContainersClient<Channel>, id: &str) -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        let wanted: &[(SignalKind, &'static str, i32)] = match mode {
            Mode::Proxy => &[
                (SignalKind::interrupt(), "SIGINT", libc::SIGINT),
                (SignalKind::terminate(), "SIGTERM", libc::SIGTERM),
            ],
            Mode::Restore => &[
                (SignalKind::interrupt(), "SIGINT", libc::SIGINT),
                (SignalKind::terminate(), "SIGTERM", libc::SIGTERM),
                (SignalKind::hangup(), "SIGHUP", libc::SIGHUP),
            ],
            Mode::Off => &[],
        };
        Signals {
            mode,
            escalate,
            // Without a handler a signal keeps its default action.
            handlers: wanted
                .iter()
                .filter_map(|&(kind, name, number)| Some((signal(kind).ok()?, name, number)))
                .collect(),
            said: Vec::new(),
            interrupts: 0,
            client,
            id: id.to_string(),
        }
    }

    /// How signals are handled.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The next signal (name, number); never without handlers.
    pub async fn next(&mut self) -> Option<(&'static str, i32)> {
        if self.handlers.is_empty() {
            return std::future::pending().await;
        }
        let recvs = self.handlers.iter_mut().map(|(s, name, number)| {
            let (name, number) = (*name, *number);
            Box::pin(async move { s.recv().await.map(|()| (name, number)) })
        });
        futures_util::future::select_all(recvs).await.0
    }

    /// Acts on signal `name` in [`Mode::Proxy`]: sends it on, or stops or
    /// kills the container; says so the first time.
    pub fn send(&mut self, name: &'static str) {
        if name == "SIGINT" {
            self.interrupts += 1;
        }
        let step = step(name, self.escalate, self.interrupts);
        if !self.said.contains(&step) {
            self.said.push(step);
            let short = self.id.get(..12).unwrap_or(&self.id);
            match step {
                Step::Forward(name) if self.escalate && name == "SIGINT" => {
                    eprintln!("berthctl: sent SIGINT to {short} (Ctrl-C again stops it)")
                }
                Step::Forward(name) => eprintln!("berthctl: sent {name} to {short}"),
                Step::Stop => eprintln!("berthctl: stopping {short} (Ctrl-C again kills it)"),
                Step::Kill => eprintln!("berthctl: killing {short}"),
            }
        }
        let mut client = self.client.clone();
        let id = self.id.clone();
        tokio::spawn(async move {
            let r = match step {
                Step::Stop => client
                    .stop(StopContainerRequest {
                        id,
                        timeout_seconds: None,
                    })
                    .await
                    .map(|_| ()),
                Step::Forward(name) => client
                    .kill(KillContainerRequest {
                        id,
                        signal: name.into(),
                    })
                    .await
                    .map(|_| ()),
                Step::Kill => client
                    .kill(KillContainerRequest {
                        id,
                        signal: "SIGKILL".into(),
                    })
                    .await
                    .map(|_| ()),
            };
            // The container may have exited meanwhile: its exit comes next.
            if let Err(s) = r {
                if s.code() != Code::FailedPrecondition && s.code() != Code::NotFound {
                    report(&Error::Status(s));
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_escalates_repeated_interrupts_and_attach_does_not() {
        assert_eq!(step("SIGINT", true, 1), Step::Forward("SIGINT"));
        assert_eq!(step("SIGINT", true, 2), Step::Stop);
        assert_eq!(step("SIGINT", true, 3), Step::Kill);
        assert_eq!(step("SIGINT", true, 9), Step::Kill);
        assert_eq!(step("SIGTERM", true, 2), Step::Forward("SIGTERM"));
        for n in 1..5 {
            assert_eq!(step("SIGINT", false, n), Step::Forward("SIGINT"));
        }
    }
}
