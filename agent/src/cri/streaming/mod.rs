//! The CRI streaming server: where the URLs that Exec, Attach and
//! PortForward return lead (kubelet's "streaming server"; crictl and
//! client-go connect to it).
//!
//! Each call checks its request and hands out a URL with a random token
//! ([`tokens`]: single use, a minute to live, at most 1000 outstanding);
//! the work starts when the client connects there
//! (`http://127.0.0.1:PORT/{exec,attach,portforward}/<token>`) and
//! upgrades ([`server`]) either to SPDY/3.1 ([`spdy`]: crictl's and
//! client-go's default, and what kubelet passes on for `kubectl
//! exec/attach/port-forward`), one stream per channel, or to a WebSocket
//! speaking client-go's remotecommand subprotocols v5/v4 (and the older
//! ones kubelet still serves), the framing [`protocol`]'s. [`conn`] makes
//! either a session of channels for exec ([`exec`]) and attach
//! ([`attach`]); port-forward ([`portforward`]) pairs SPDY streams per
//! connection (SPDY also tunnelled in a WebSocket, as crictl's
//! `port-forward --transport websocket` sends it), or takes kubelet's
//! WebSocket channels per port.
//!
//! The server has no authentication of its own, as kubelet's and
//! containerd's: the token is the credential, so the listener belongs on
//! loopback (the default).

mod attach;
mod conn;
mod exec;
mod portforward;
mod protocol;
mod resize;
mod server;
mod spdy;
mod tokens;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{watch, Semaphore};
use tonic::Status;

use crate::container::bounds;
use crate::container::state::State;
use crate::container::Manager;
use crate::cri::api_file::v1 as cri;
use crate::cri::containers;
use crate::cri::unsupported::not_supported;
use crate::error::capped;
use attach::AttachGrant;
use exec::ExecGrant;
use portforward::PortForwardGrant;

/// Sessions (upgraded connections) served at once.
const SESSIONS_MAX: usize = 512;
/// The longest container or pod id taken (they are 64 hex; crictl sends
/// unique prefixes).
const ID_MAX: usize = 256;

/// What a token grants.
enum Grant {
    Exec(ExecGrant),
    Attach(AttachGrant),
    PortForward(PortForwardGrant),
}

/// The streaming server: its tokens and the listener's address.
pub struct Streaming {
    mgr: Arc<Manager>,
    /// `http://<listener's address>`, the start of every URL.
    base_url: String,
    tokens: tokens::Tokens<Grant>,
    sessions: Arc<Semaphore>,
    /// Set when berthd shuts down: a connection it ends is no client that
    /// went away, and its exec runs on.
    stopping: watch::Receiver<bool>,
}

impl Streaming {
    /// Binds `addr` (port 0: one the OS picks) and serves until `stopping`
    /// turns true.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn start(
        mgr: Arc<Manager>,
        addr: SocketAddr,
        stopping: watch::Receiver<bool>,
    ) -> std::io::Result<Arc<Streaming>> {
        Self::bind(mgr, addr, stopping)
    }

    /// [`Streaming::start`] for a caller that is not async (it must run
    /// inside the tokio runtime: the server is spawned on it).
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn bind(
        mgr: Arc<Manager>,
        addr: SocketAddr,
        stopping: watch::Receiver<bool>,
    ) -> std::io::Result<Arc<Streaming>> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            tracing::warn!(
                %addr,
                "the CRI streaming server listens beyond loopback: anyone who can reach it \
                 with a token runs commands in containers"
            );
        }
        let me = Arc::new(Streaming {
            mgr,
            base_url: format!("http://{}", url_addr(addr)),
            tokens: tokens::Tokens::default(),
            sessions: Arc::new(Semaphore::new(SESSIONS_MAX)),
            stopping: stopping.clone(),
        });
        tokio::spawn(server::serve(listener, me.clone(), stopping));
        tracing::info!(%addr, "serving CRI streaming (exec, attach, port-forward)");
        Ok(me)
    }

    fn url(&self, kind: &str, grant: Grant) -> Result<String, Status> {
        let token = self.tokens.insert(grant).map_err(|tokens::Full| {
            Status::resource_exhausted(format!(
                "{} streaming requests are waiting for their clients already; try again later",
                tokens::MAX
            ))
        })?;
        Ok(format!("{}/{kind}/{token}", self.base_url))
    }

    /// Exec: checks the request (a running pod container, a command within
    /// berth's bounds, streams that make sense) and returns the URL where
    /// the command will run once the client connects.
    pub fn exec(&self, req: cri::ExecRequest) -> Result<cri::ExecResponse, Status> {
        let id = running_container(&self.mgr, &req.container_id)?.0;
        check_cmd(&req.cmd)?;
        check_streams(req.stdin, req.stdout, req.stderr, req.tty)?;
        let grant = ExecGrant {
            container_id: id,
            cmd: req.cmd,
            tty: req.tty,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
        };
        Ok(cri::ExecResponse {
            url: self.url("exec", Grant::Exec(grant))?,
        })
    }

    /// Attach: checks the request (a running pod container with a stdin or
    /// a terminal, `tty` as the container's) and returns the URL where the
    /// client attaches. A container with neither has nothing to attach to
    /// through its monitor: its output is in its log.
    pub fn attach(&self, req: cri::AttachRequest) -> Result<cri::AttachResponse, Status> {
        let (id, rec) = running_container(&self.mgr, &req.container_id)?;
        if !rec.spec.open_stdin && !rec.spec.tty {
            return Err(not_supported(
                "Attach to a container created without stdin or tty (its output is in its log: crictl logs -f)",
            ));
        }
        if req.stdin && !rec.spec.open_stdin {
            return Err(Status::invalid_argument(
                "stdin: the container was created without stdin",
            ));
        }
        if req.tty != rec.spec.tty {
            return Err(Status::invalid_argument(format!(
                "tty must be the container's ({})",
                rec.spec.tty
            )));
        }
        check_streams(req.stdin, req.stdout, req.stderr, req.tty)?;
        let grant = AttachGrant {
            container_id: id,
            stdin_once: rec.spec.stdin_once && !rec.spec.tty,
            stdin: req.stdin,
            tty: req.tty,
            stdout: req.stdout,
            stderr: req.stderr,
        };
        Ok(cri::AttachResponse {
            url: self.url("attach", Grant::Attach(grant))?,
        })
    }

    /// PortForward for the pod `req.pod_sandbox_id` (which the caller has
    /// found), whose network namespace file is `netns` (`None`: the pod
    /// is on the host's network). The ports are the URL's (`?port=N`);
    /// when the request names some, only those.
    pub fn port_forward(
        &self,
        req: cri::PortForwardRequest,
        netns: Option<PathBuf>,
    ) -> Result<cri::PortForwardResponse, Status> {
        if req.pod_sandbox_id.is_empty() {
            return Err(Status::invalid_argument("pod_sandbox_id is required"));
        }
        if req.pod_sandbox_id.len() > ID_MAX {
            return Err(Status::invalid_argument(format!(
                "pod_sandbox_id is at most {ID_MAX} bytes"
            )));
        }
        if req.port.len() > protocol::PORTS_MAX {
            return Err(Status::invalid_argument(format!(
                "at most {} ports are forwarded at once",
                protocol::PORTS_MAX
            )));
        }
        let ports =
            req.port
                .iter()
                .map(|&p| {
                    u16::try_from(p).ok().filter(|&p| p > 0).ok_or_else(|| {
                        Status::invalid_argument(format!("port {p} is not 1 to 65535"))
                    })
                })
                .collect::<Result<Vec<u16>, Status>>()?;
        if let Some(ns) = &netns {
            if !ns.exists() {
                return Err(Status::failed_precondition(format!(
                    "pod {}'s network namespace is gone (the pod is stopped)",
                    capped(&req.pod_sandbox_id)
                )));
            }
        }
        let grant = PortForwardGrant {
            pod_id: req.pod_sandbox_id,
            ports,
            netns,
        };
        Ok(cri::PortForwardResponse {
            url: self.url("portforward", Grant::PortForward(grant))?,
        })
    }
}

/// A listening address as a URL's host: an unspecified one (`0.0.0.0`,
/// `[::]`) becomes its loopback, which this host's clients reach.
fn url_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// The running pod container `id`: its full id and record.
fn running_container(
    mgr: &Manager,
    id: &str,
) -> Result<(String, crate::container::record::Record), Status> {
    if id.len() > ID_MAX {
        return Err(Status::invalid_argument(format!(
            "container_id is at most {ID_MAX} bytes"
        )));
    }
    let rec = containers::get(mgr, id)?.snapshot();
    if rec.state != State::Running {
        return Err(Status::failed_precondition(format!(
            "container {} is not running (it is {})",
            rec.id,
            rec.state.as_str()
        )));
    }
    Ok((rec.id.clone(), rec))
}

/// A command within the bounds of berth's execs.
fn check_cmd(cmd: &[String]) -> Result<(), Status> {
    if cmd.first().is_none_or(String::is_empty) {
        return Err(Status::invalid_argument("cmd: a command is required"));
    }
    let bytes = bounds::check_exec_list("cmd", "command", cmd, bounds::ARGS_MAX)
        .map_err(|e| Status::from(crate::error::Error::from(e)))?;
    if bytes > bounds::EXEC_BYTES_MAX {
        return Err(Status::invalid_argument(format!(
            "cmd takes {bytes} bytes: at most {} are accepted",
            bounds::EXEC_BYTES_MAX
        )));
    }
    Ok(())
}

/// The streams of an exec or attach, as the CRI has them.
fn check_streams(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<(), Status> {
    if tty && stderr {
        return Err(Status::invalid_argument(
            "tty and stderr cannot both be set: a terminal has one output stream",
        ));
    }
    if !stdin && !stdout && !stderr {
        return Err(Status::invalid_argument(
            "at least one of stdin, stdout and stderr is required",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_follow_the_cri() {
        assert!(check_streams(false, true, true, false).is_ok());
        assert!(check_streams(true, false, false, false).is_ok());
        assert!(check_streams(true, true, false, true).is_ok());
        let e = check_streams(true, true, true, true).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(check_streams(false, false, false, false).is_err());
    }

    #[test]
    fn commands_are_bounded() {
        assert!(check_cmd(&["sh".into()]).is_ok());
        assert!(check_cmd(&[]).is_err());
        assert!(check_cmd(&[String::new()]).is_err());
        assert!(check_cmd(&["a\0b".into()]).is_err());
        assert!(check_cmd(&vec!["x".into(); bounds::ARGS_MAX + 1]).is_err());
        let big = "x".repeat(100_000);
        let e = check_cmd(&vec![big; 12]).unwrap_err();
        assert!(e.message().len() < 1000, "{}", e.message());
    }

    #[test]
    fn urls_name_a_reachable_host() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(url_addr(a("0.0.0.0:10")), a("127.0.0.1:10"));
        assert_eq!(url_addr(a("[::]:10")), a("[::1]:10"));
        assert_eq!(url_addr(a("127.0.0.1:10")), a("127.0.0.1:10"));
        assert_eq!(
            format!("http://{}", url_addr(a("[::1]:10"))),
            "http://[::1]:10"
        );
    }
}
