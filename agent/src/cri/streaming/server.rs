//! The HTTP side: HTTP/1.1 on the streaming listener, each request one of
//! `/exec/<token>`, `/attach/<token>` or `/portforward/<token>`, upgraded
//! either to SPDY/3.1 (crictl's and client-go's default, what kubelet
//! forwards for kubectl) speaking a [`spdy::StreamProto`], or to a
//! WebSocket speaking a subprotocol of [`protocol::Proto`], or (for
//! port-forward) SPDY tunnelled in a WebSocket, as client-go's WebSocket
//! port-forward sends it.
//!
//! A refused request does not use its token up: a client may try again
//! with another transport, as client-go's fallback executor does.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderValue, CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::conn::{self, Expected, Session};
use super::protocol::{self, Negotiated, Proto};
use super::spdy::{self, StreamProto};
use super::{tokens, Grant, Streaming};

/// Connections still in their HTTP request (before an upgrade).
const CONNECTIONS_MAX: usize = 128;
/// How long a client has to send its request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes of a request head buffered.
const HEAD_MAX: usize = 64 * 1024;

/// The header naming the stream protocol of a SPDY upgrade.
const STREAM_PROTOCOL: &str = "x-stream-protocol-version";
/// The header listing the protocols served, on a refused negotiation.
const ACCEPTED_PROTOCOLS: &str = "x-accepted-stream-protocol-versions";

type Body = Full<Bytes>;

/// Accepts connections on `listener` until `stopping` turns true. Sessions
/// under way then run on (as berth's own execs do across a shutdown).
pub async fn serve(
    listener: TcpListener,
    streaming: Arc<Streaming>,
    mut stopping: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let stop = async move {
        // The guard it returns is not `Send`: dropped here.
        let _ = stopping.wait_for(|s| *s).await;
    };
    tokio::pin!(stop);
    loop {
        let tcp = tokio::select! {
            () = &mut stop => break,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors or the like: a pause, not a busy loop.
                    tracing::warn!("CRI streaming: accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Too many half-made requests: this one is closed unanswered.
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            continue;
        };
        let streaming = streaming.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let streaming = streaming.clone();
                async move { Ok::<_, Infallible>(handle(&streaming, req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(HEAD_MAX)
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!("CRI streaming: a connection: {e}");
            }
            drop(permit);
        });
    }
    tracing::debug!("CRI streaming server stopped accepting");
}

/// A plain-text answer, after which the connection closes (a refused
/// client has nothing more to ask; hyper's keep-alive stays on for the
/// 101, whose `Connection: Upgrade` its keep-alive off would replace).
fn reply(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

/// What a path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exec,
    Attach,
    PortForward,
}

fn route(path: &str) -> Option<(Kind, &str)> {
    let (kind, token) = if let Some(t) = path.strip_prefix("/exec/") {
        (Kind::Exec, t)
    } else if let Some(t) = path.strip_prefix("/attach/") {
        (Kind::Attach, t)
    } else if let Some(t) = path.strip_prefix("/portforward/") {
        (Kind::PortForward, t)
    } else {
        return None;
    };
    tokens::well_formed(token).then_some((kind, token))
}

fn header_has(headers: &HeaderMap, name: http::header::HeaderName, word: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|part| part.trim().to_ascii_lowercase().contains(word))
        })
    })
}

/// The transport a request upgrades to.
enum Transport {
    WebSocket {
        proto: Proto,
        /// Name the subprotocol in the 101.
        answer: bool,
        accept: HeaderValue,
    },
    Spdy(StreamProto),
    /// SPDY in a WebSocket's binary messages (port-forward only).
    SpdyTunnel {
        accept: HeaderValue,
    },
}

impl Transport {
    /// The 101 that completes the upgrade.
    fn switching(&self) -> Response<Body> {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        match self {
            Transport::WebSocket {
                proto,
                answer,
                accept,
            } => {
                h.insert(UPGRADE, HeaderValue::from_static("websocket"));
                h.insert(SEC_WEBSOCKET_ACCEPT, accept.clone());
                if *answer {
                    h.insert(
                        SEC_WEBSOCKET_PROTOCOL,
                        HeaderValue::from_static(proto.name()),
                    );
                }
            }
            Transport::Spdy(version) => {
                h.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
                h.insert(STREAM_PROTOCOL, HeaderValue::from_static(version.name()));
            }
            Transport::SpdyTunnel { accept } => {
                h.insert(UPGRADE, HeaderValue::from_static("websocket"));
                h.insert(SEC_WEBSOCKET_ACCEPT, accept.clone());
                h.insert(
                    SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_static(protocol::SPDY_TUNNEL),
                );
            }
        }
        r
    }
}

/// The SPDY upgrade `headers` ask for, with the stream protocol of `kind`
/// (kubelet's handshake: the header is required, the client's order
/// picks).
/// A refused upgrade's answer (boxed: it is large).
type Refusal = Box<Response<Body>>;

fn refuse(status: StatusCode, text: &str) -> Refusal {
    Box::new(reply(status, text))
}

fn spdy_transport(headers: &HeaderMap, kind: Kind) -> Result<Transport, Refusal> {
    if !header_has(headers, CONNECTION, "upgrade") {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "berth CRI streaming: a SPDY upgrade needs Connection: Upgrade",
        ));
    }
    let served: &[StreamProto] = match kind {
        Kind::Exec | Kind::Attach => &spdy::EXEC,
        Kind::PortForward => &spdy::PORT_FORWARD,
    };
    let asked: Vec<&str> = headers
        .get_all(STREAM_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if asked.is_empty() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "berth CRI streaming: unable to upgrade: the X-Stream-Protocol-Version header is required",
        ));
    }
    spdy::negotiate(asked, served)
        .map(Transport::Spdy)
        .ok_or_else(|| {
            let names: Vec<&str> = served.iter().map(|p| p.name()).collect();
            let mut r = refuse(
                StatusCode::FORBIDDEN,
                &format!(
                    "berth CRI streaming: unable to upgrade: none of the requested stream \
                     protocols is served; served: {}",
                    names.join(", ")
                ),
            );
            for n in names {
                r.headers_mut()
                    .append(ACCEPTED_PROTOCOLS, HeaderValue::from_static(n));
            }
            r
        })
}

/// The WebSocket upgrade `req` asks for (for `kind`: only port-forward
/// tunnels SPDY).
fn websocket_transport(req: &Request<Incoming>, kind: Kind) -> Result<Transport, Refusal> {
    let headers = req.headers();
    let websocket = req.method() == Method::GET
        && header_has(headers, UPGRADE, "websocket")
        && header_has(headers, CONNECTION, "upgrade")
        && headers
            .get(SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13");
    let key = headers.get(SEC_WEBSOCKET_KEY).map(|k| k.as_bytes());
    let (true, Some(key)) = (websocket, key) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "berth CRI streaming: a SPDY/3.1 or WebSocket upgrade is required \
             (WebSocket: GET, Upgrade: websocket, Sec-WebSocket-Version: 13)",
        ));
    };
    let asked = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let accept = HeaderValue::from_str(&derive_accept_key(key))
        .map_err(|_| refuse(StatusCode::INTERNAL_SERVER_ERROR, "deriving the accept key"))?;
    let (proto, answer) = match protocol::negotiate(asked) {
        Negotiated::Proto { proto, answer } => (proto, answer),
        Negotiated::SpdyTunnel if kind == Kind::PortForward => {
            return Ok(Transport::SpdyTunnel { accept });
        }
        Negotiated::SpdyTunnel => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "berth CRI streaming: SPDY is tunnelled over WebSocket for port-forward only",
            ));
        }
        Negotiated::Unsupported => {
            let names: Vec<&str> = Proto::ALL.iter().map(|p| p.name()).collect();
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                &format!(
                    "berth CRI streaming: none of the requested subprotocols is supported; \
                     supported: {}",
                    names.join(", ")
                ),
            ));
        }
    };
    Ok(Transport::WebSocket {
        proto,
        answer,
        accept,
    })
}

/// Answers one request; a good one is upgraded, its session spawned.
fn handle(streaming: &Arc<Streaming>, mut req: Request<Incoming>) -> Response<Body> {
    let Some((kind, token)) = route(req.uri().path()) else {
        return reply(StatusCode::NOT_FOUND, "not found");
    };
    let transport = if header_has(req.headers(), UPGRADE, "spdy/3.1") {
        spdy_transport(req.headers(), kind)
    } else {
        websocket_transport(&req, kind)
    };
    let transport = match transport {
        Ok(t) => t,
        Err(refusal) => return *refusal,
    };
    // Over SPDY each stream names its port.
    let ports = match (kind, &transport) {
        (Kind::PortForward, Transport::WebSocket { .. }) => {
            match protocol::ports(req.uri().query()) {
                Ok(p) => p,
                Err(why) => return reply(StatusCode::BAD_REQUEST, &why),
            }
        }
        _ => Vec::new(),
    };
    let Ok(session) = streaming.sessions.clone().try_acquire_owned() else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "berth CRI streaming: too many sessions; try again later",
        );
    };
    // From here the token is used up, whatever comes of it.
    let Some(grant) = streaming.tokens.take(token) else {
        return reply(
            StatusCode::NOT_FOUND,
            "berth CRI streaming: unknown or expired token (tokens are single use and last a minute)",
        );
    };
    let grant = match (kind, grant) {
        (Kind::Exec, g @ Grant::Exec(_)) | (Kind::Attach, g @ Grant::Attach(_)) => g,
        (Kind::PortForward, Grant::PortForward(g)) => {
            if let Some(p) = ports
                .iter()
                .find(|p| !g.ports.is_empty() && !g.ports.contains(p))
            {
                return reply(
                    StatusCode::BAD_REQUEST,
                    &format!("port {p} was not in the PortForward request"),
                );
            }
            Grant::PortForward(g)
        }
        _ => {
            return reply(
                StatusCode::BAD_REQUEST,
                "berth CRI streaming: the token is for another kind of request",
            )
        }
    };
    let response = transport.switching();
    let upgrade = hyper::upgrade::on(&mut req);
    let streaming = streaming.clone();
    tokio::spawn(async move {
        let io = match upgrade.await {
            Ok(io) => TokioIo::new(io),
            Err(e) => {
                tracing::debug!("CRI streaming: the upgrade failed: {e}");
                return;
            }
        };
        run_session(&streaming, io, transport, grant, ports, session).await;
    });
    response
}

/// An upgraded connection, before its session.
enum Upgraded {
    Spdy(StreamProto, spdy::Conn),
    WebSocket(Session),
}

impl Upgraded {
    /// The session of an exec or attach (over SPDY: once the client has
    /// opened the streams it is expected to).
    async fn session(self, expected: Expected) -> Option<Session> {
        match self {
            Upgraded::Spdy(version, conn) => conn::spdy_session(conn, version, expected).await,
            Upgraded::WebSocket(s) => Some(s),
        }
    }
}

/// Runs the session a grant is for; the permit counts it while it runs.
async fn run_session(
    streaming: &Streaming,
    io: TokioIo<hyper::upgrade::Upgraded>,
    transport: Transport,
    grant: Grant,
    ports: Vec<u16>,
    _session: OwnedSemaphorePermit,
) {
    let mgr = streaming.mgr.clone();
    let (name, upgraded) = match transport {
        Transport::Spdy(version) => (version.name(), Upgraded::Spdy(version, spdy::start(io))),
        Transport::SpdyTunnel { .. } => {
            let ws = conn::accept(io).await;
            let version = StreamProto::PortForward;
            let conn = spdy::start(spdy::tunnel(ws));
            (protocol::SPDY_TUNNEL, Upgraded::Spdy(version, conn))
        }
        Transport::WebSocket { proto, .. } => {
            let ws = conn::accept(io).await;
            (
                proto.name(),
                Upgraded::WebSocket(conn::websocket(ws, proto)),
            )
        }
    };
    match grant {
        Grant::Exec(g) => {
            tracing::debug!(container = %g.container_id, proto = name, "CRI exec session");
            let expected = Expected::of(g.stdin, g.stdout, g.stderr, g.tty);
            if let Some(s) = upgraded.session(expected).await {
                super::exec::serve(s, g, mgr, streaming.stopping.clone()).await;
            }
        }
        Grant::Attach(g) => {
            tracing::debug!(container = %g.container_id, proto = name, "CRI attach session");
            let expected = Expected::of(g.stdin, g.stdout, g.stderr, g.tty);
            if let Some(s) = upgraded.session(expected).await {
                super::attach::serve(s, g, mgr).await;
            }
        }
        Grant::PortForward(g) => {
            tracing::debug!(pod = %g.pod_id, ?ports, proto = name, "CRI port-forward session");
            match upgraded {
                Upgraded::Spdy(_, c) => super::portforward::serve_spdy(c, g).await,
                Upgraded::WebSocket(s) => super::portforward::serve(s, g, ports).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_a_kind_and_a_well_formed_token() {
        let t = "0123456789abcdef0123456789abcdef";
        assert_eq!(route(&format!("/exec/{t}")), Some((Kind::Exec, t)));
        assert_eq!(route(&format!("/attach/{t}")), Some((Kind::Attach, t)));
        assert_eq!(
            route(&format!("/portforward/{t}")),
            Some((Kind::PortForward, t))
        );
        assert_eq!(route("/exec/short"), None);
        assert_eq!(route(&format!("/exec/{t}/more")), None);
        assert_eq!(route(&format!("/other/{t}")), None);
    }

    #[test]
    fn header_words_are_matched_in_lists_and_any_case() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(header_has(&h, CONNECTION, "upgrade"));
        assert!(header_has(&h, UPGRADE, "spdy/3.1"));
        assert!(header_has(&h, UPGRADE, "spdy/"));
        assert!(!header_has(&h, UPGRADE, "websocket"));
    }
}
