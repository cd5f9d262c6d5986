//! The HTTP side: HTTP/1.1 on the streaming listener, each request one of
//! `/exec/<token>`, `/attach/<token>` or `/portforward/<token>`, upgraded
//! to a WebSocket speaking a subprotocol of [`protocol::Proto`]. SPDY (the
//! default of crictl and of client-go's executors, and what client-go
//! tunnels over WebSocket for port-forward) is answered 501 with a message
//! that says so.
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

use super::protocol::{self, Negotiated, Proto};
use super::{tokens, Grant, Streaming};

/// Connections still in their HTTP request (before an upgrade).
const CONNECTIONS_MAX: usize = 128;
/// How long a client has to send its request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes of a request head buffered.
const HEAD_MAX: usize = 64 * 1024;

/// The message of every SPDY refusal.
pub const SPDY_REFUSED: &str = "berth CRI: not supported yet: SPDY streaming; \
     use a WebSocket client (crictl --transport websocket)";
/// The message for SPDY tunnelled over WebSocket (crictl port-forward
/// `--transport websocket`, client-go's port-forward).
pub const SPDY_TUNNEL_REFUSED: &str = "berth CRI: not supported yet: SPDY streaming \
     (SPDY/3.1+portforward.k8s.io tunnelled over WebSocket, as client-go's port-forward sends it); \
     berth serves port-forward over WebSocket channels (v4.channel.k8s.io, ?port=N)";

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

/// Answers one request; a good one is upgraded, its session spawned.
fn handle(streaming: &Arc<Streaming>, mut req: Request<Incoming>) -> Response<Body> {
    let Some((kind, token)) = route(req.uri().path()) else {
        return reply(StatusCode::NOT_FOUND, "not found");
    };
    let headers = req.headers();
    if header_has(headers, UPGRADE, "spdy/") {
        return reply(StatusCode::NOT_IMPLEMENTED, SPDY_REFUSED);
    }
    let websocket = req.method() == Method::GET
        && header_has(headers, UPGRADE, "websocket")
        && header_has(headers, CONNECTION, "upgrade")
        && headers
            .get(SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13");
    let key = headers.get(SEC_WEBSOCKET_KEY).map(|k| k.as_bytes());
    let (true, Some(key)) = (websocket, key) else {
        return reply(
            StatusCode::BAD_REQUEST,
            "berth CRI streaming: a WebSocket upgrade is required \
             (GET, Upgrade: websocket, Sec-WebSocket-Version: 13)",
        );
    };
    let asked = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let (proto, answer) = match protocol::negotiate(asked) {
        Negotiated::Proto { proto, answer } => (proto, answer),
        Negotiated::SpdyTunnel => {
            return reply(StatusCode::NOT_IMPLEMENTED, SPDY_TUNNEL_REFUSED);
        }
        Negotiated::Unsupported => {
            let names: Vec<&str> = Proto::ALL.iter().map(|p| p.name()).collect();
            return reply(
                StatusCode::BAD_REQUEST,
                &format!(
                    "berth CRI streaming: none of the requested subprotocols is supported; \
                     supported: {}",
                    names.join(", ")
                ),
            );
        }
    };
    let ports = match kind {
        Kind::PortForward => match protocol::ports(req.uri().query()) {
            Ok(p) => p,
            Err(why) => return reply(StatusCode::BAD_REQUEST, &why),
        },
        Kind::Exec | Kind::Attach => Vec::new(),
    };
    let accept = derive_accept_key(key);
    let Ok(accept) = HeaderValue::from_str(&accept) else {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, "deriving the accept key");
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
        let ws = super::conn::accept(io).await;
        run_session(&streaming, ws, proto, grant, ports, session).await;
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(SEC_WEBSOCKET_ACCEPT, accept);
    if answer {
        h.insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(proto.name()),
        );
    }
    r
}

/// Runs the session a grant is for; the permit counts it while it runs.
async fn run_session(
    streaming: &Streaming,
    ws: super::conn::Ws,
    proto: Proto,
    grant: Grant,
    ports: Vec<u16>,
    _session: OwnedSemaphorePermit,
) {
    let mgr = streaming.mgr.clone();
    match grant {
        Grant::Exec(g) => {
            tracing::debug!(container = %g.container_id, proto = proto.name(), "CRI exec session");
            super::exec::serve(ws, proto, g, mgr, streaming.stopping.clone()).await;
        }
        Grant::Attach(g) => {
            tracing::debug!(container = %g.container_id, proto = proto.name(), "CRI attach session");
            super::attach::serve(ws, proto, g, mgr).await;
        }
        Grant::PortForward(g) => {
            tracing::debug!(pod = %g.pod_id, ?ports, proto = proto.name(), "CRI port-forward session");
            super::portforward::serve(ws, proto, g, ports).await;
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
        assert!(header_has(&h, UPGRADE, "spdy/"));
        assert!(!header_has(&h, UPGRADE, "websocket"));
    }
}
