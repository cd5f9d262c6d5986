//! SPDY's `portforward.k8s.io`: the client opens a data and an error
//! stream per connection, paired by their `requestID` header (kubelet's
//! rule when it is missing: the error stream's id, the data stream's id
//! less 2) and naming the `port`; each complete pair is one connection to
//! the pod ([`super::Forward`]). kubectl opens a pair per local connection,
//! so the session lasts until the client closes it.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::super::conn;
use super::super::spdy;
use super::{Forward, PortForwardGrant, Sink};

/// How long the second stream of a pair may take (kubelet's stream
/// creation timeout).
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);
/// The most connections forwarded (or waiting for their second stream) at
/// once on one session.
const PAIRS_MAX: usize = 256;

/// Serves one SPDY port-forward session: every complete pair of streams
/// the client opens is a connection to its port (one the grant names,
/// when it names any), until the client closes the connection.
pub async fn serve_spdy(conn: spdy::Conn, grant: PortForwardGrant) {
    let spdy::Conn {
        writer,
        mut events,
        writing,
        reading,
    } = conn;
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    // Each forward by its data stream.
    let mut to_pod: HashMap<u32, Link> = HashMap::new();
    let mut forwards: JoinSet<u32> = JoinSet::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            event = events.recv() => match event {
                None => break,
                Some(spdy::Event::Open { id, headers }) => {
                    let busy = pairs.len() + forwards.len() >= PAIRS_MAX;
                    let paired = match open_stream(id, &headers, &grant, busy) {
                        Some(opened) => pair_up(&mut pairs, opened),
                        None => Paired::Refused,
                    };
                    let answer = match paired {
                        Paired::Refused => writer.reset(id, spdy::REFUSED_STREAM).await,
                        _ => writer.reply(id).await,
                    };
                    if answer.is_err() {
                        break;
                    }
                    let Paired::Complete { data, error, port, early } = paired else {
                        continue;
                    };
                    let (tx, rx) = mpsc::channel(8);
                    if !early.is_empty() {
                        // The channel is new: room for one.
                        let _ = tx.try_send(early);
                    }
                    let forward = Forward {
                        pod_id: grant.pod_id.clone(),
                        netns: grant.netns.clone(),
                        port,
                    };
                    let sink = Sink::Streams { writer: writer.clone(), data, error };
                    let abort = forwards.spawn(async move {
                        forward.run(sink, rx).await;
                        data
                    });
                    to_pod.insert(data, Link { tx: Some(tx), abort, error });
                }
                Some(spdy::Event::Data { id, data }) => {
                    if let Some(link) = to_pod.get_mut(&id) {
                        // Waits while the pod's side is slow to take it.
                        if let Some(tx) = &link.tx {
                            if tx.send(data).await.is_err() {
                                link.tx = None;
                            }
                        }
                    } else if let Some(refused) = keep_early(&mut pairs, id, data) {
                        let _ = writer.reset(refused, spdy::CANCEL).await;
                    }
                }
                // The client's end of a data stream: the pod's connection
                // is shut down for writing (its answer still comes back).
                Some(spdy::Event::Fin { id }) => {
                    if let Some(link) = to_pod.get_mut(&id) {
                        link.tx = None;
                    }
                }
                // The client abandoned it: so is the pod's connection. Its
                // error stream still ends (client-go reads it to the end
                // after the reset); a FIN already sent is not sent twice.
                Some(spdy::Event::Reset { id }) => {
                    if let Some(link) = to_pod.remove(&id) {
                        link.abort.abort();
                        if writer.fin(link.error).await.is_err() {
                            break;
                        }
                    }
                }
            },
            Some(done) = forwards.join_next(), if !forwards.is_empty() => {
                if let Ok(data) = done {
                    to_pod.remove(&data);
                }
            }
            _ = sweep.tick() => {
                for (error, data) in stale_pairs(&mut pairs) {
                    if let Some(id) = error {
                        let _ = writer.send(id, b"timed out waiting for the data and error streams").await;
                        let _ = writer.fin(id).await;
                    }
                    if let Some(id) = data {
                        let _ = writer.reset(id, spdy::CANCEL).await;
                    }
                }
            }
        }
    }
    // The client is gone: every connection goes with it.
    forwards.shutdown().await;
    drop((writer, reading));
    conn::finish(writing, None).await;
}

/// A running SPDY forward: the way to its pod connection, and the task.
struct Link {
    /// `None` once the client has ended its side.
    tx: Option<mpsc::Sender<Vec<u8>>>,
    abort: tokio::task::AbortHandle,
    /// Its error stream, ended when the forward is aborted.
    error: u32,
}

/// The most bytes kept for a data stream whose error stream has not come
/// yet (client-go opens the error stream first, and sends nothing before).
const EARLY_MAX: usize = 64 * 1024;

/// Keeps `data` for the waiting pair whose data stream is `id`; the stream
/// to reset (its pair dropped) when that is more than [`EARLY_MAX`].
fn keep_early(pairs: &mut HashMap<String, Pair>, id: u32, data: Vec<u8>) -> Option<u32> {
    let (request, pair) = pairs.iter_mut().find(|(_, p)| p.data == Some(id))?;
    if pair.early.len() + data.len() > EARLY_MAX {
        let request = request.clone();
        pairs.remove(&request);
        return Some(id);
    }
    pair.early.extend_from_slice(&data);
    None
}

/// A stream of a SPDY port-forward pair.
struct Opened {
    id: u32,
    request: String,
    port: u16,
    data: bool,
}

/// The stream's place in a pair, from its headers (kubelet's rules); `None`
/// refuses it: a bad or missing port or type, a port the grant does not
/// name, or too many pairs already.
fn open_stream(
    id: u32,
    headers: &spdy::Headers,
    grant: &PortForwardGrant,
    busy: bool,
) -> Option<Opened> {
    let port = headers
        .get("port")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|&p| p > 0);
    let data = match headers.get("streamtype") {
        Some("data") => true,
        Some("error") => false,
        _ => {
            tracing::debug!("CRI port-forward: a stream of no known type: refused");
            return None;
        }
    };
    let Some(port) = port else {
        tracing::debug!("CRI port-forward: a stream without a good port header: refused");
        return None;
    };
    if busy || (!grant.ports.is_empty() && !grant.ports.contains(&port)) {
        tracing::debug!(port, busy, "CRI port-forward: a stream refused");
        return None;
    }
    // Without a request id the pair is the error stream and the data
    // stream after it, as kubelet pairs them.
    let request = match headers.get("requestid") {
        Some(r) => crate::error::capped(r).into_owned(),
        None if data => id.saturating_sub(2).to_string(),
        None => id.to_string(),
    };
    Some(Opened {
        id,
        request,
        port,
        data,
    })
}

/// Half of a SPDY port-forward pair, waiting for the other.
struct Pair {
    port: u16,
    data: Option<u32>,
    error: Option<u32>,
    since: Instant,
    /// Data that came on the data stream before the error stream.
    early: Vec<u8>,
}

/// What came of a stream filed with its pair.
#[derive(Debug, PartialEq, Eq)]
enum Paired {
    /// A repeated stream, or one naming another port than its pair's.
    Refused,
    /// Half a pair.
    Waiting,
    /// The pair is complete; `early` is what came on its data stream
    /// before.
    Complete {
        data: u32,
        error: u32,
        port: u16,
        early: Vec<u8>,
    },
}

/// Files `s` with its pair.
fn pair_up(pairs: &mut HashMap<String, Pair>, s: Opened) -> Paired {
    let pair = pairs.entry(s.request.clone()).or_insert(Pair {
        port: s.port,
        data: None,
        error: None,
        since: Instant::now(),
        early: Vec::new(),
    });
    let slot = if s.data {
        &mut pair.data
    } else {
        &mut pair.error
    };
    if slot.is_some() || pair.port != s.port {
        return Paired::Refused;
    }
    *slot = Some(s.id);
    let (Some(data), Some(error)) = (pair.data, pair.error) else {
        return Paired::Waiting;
    };
    let port = pair.port;
    let early = std::mem::take(&mut pair.early);
    pairs.remove(&s.request);
    Paired::Complete {
        data,
        error,
        port,
        early,
    }
}

/// The pairs whose second stream has not come in [`PAIR_TIMEOUT`], taken
/// out: (error stream, data stream).
fn stale_pairs(pairs: &mut HashMap<String, Pair>) -> Vec<(Option<u32>, Option<u32>)> {
    let now = Instant::now();
    let mut stale = Vec::new();
    pairs.retain(|_, p| {
        let keep = now.duration_since(p.since) < PAIR_TIMEOUT;
        if !keep {
            stale.push((p.error, p.data));
        }
        keep
    });
    stale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(ports: &[u16]) -> PortForwardGrant {
        PortForwardGrant {
            pod_id: "p".into(),
            ports: ports.to_vec(),
            netns: None,
        }
    }

    fn stream(id: u32, kind: &str, port: &str, request: Option<&str>) -> Option<Opened> {
        let mut h = vec![("streamType", kind), ("port", port)];
        if let Some(r) = request {
            h.push(("requestID", r));
        }
        open_stream(id, &spdy::Headers::from_pairs(&h), &grant(&[]), false)
    }

    #[test]
    fn streams_are_taken_as_kubelet_takes_them() {
        let h = |pairs: &[(&str, &str)]| spdy::Headers::from_pairs(pairs);
        let ok = h(&[("streamtype", "data"), ("port", "80")]);
        assert!(open_stream(1, &ok, &grant(&[]), false).is_some());
        assert!(open_stream(1, &ok, &grant(&[80, 81]), false).is_some());
        // A port the call did not name, too many pairs, a bad header.
        assert!(open_stream(1, &ok, &grant(&[81]), false).is_none());
        assert!(open_stream(1, &ok, &grant(&[]), true).is_none());
        for bad in [
            h(&[("streamtype", "data"), ("port", "0")]),
            h(&[("streamtype", "data"), ("port", "65536")]),
            h(&[("streamtype", "data")]),
            h(&[("streamtype", "stdin"), ("port", "80")]),
            h(&[("port", "80")]),
        ] {
            assert!(
                open_stream(1, &bad, &grant(&[]), false).is_none(),
                "{bad:?}"
            );
        }
        // Without a request id: the error stream's id, the data's less 2.
        assert_eq!(stream(5, "error", "80", None).unwrap().request, "5");
        assert_eq!(stream(7, "data", "80", None).unwrap().request, "5");
    }

    #[test]
    fn pairs_complete_once_each_and_keep_early_data_within_bounds() {
        let mut pairs = HashMap::new();
        let s = |id, kind, port| stream(id, kind, port, Some("r1")).unwrap();
        assert_eq!(pair_up(&mut pairs, s(1, "data", "80")), Paired::Waiting);
        // The same kind again, or another port: refused.
        assert_eq!(pair_up(&mut pairs, s(3, "data", "80")), Paired::Refused);
        assert_eq!(pair_up(&mut pairs, s(5, "error", "81")), Paired::Refused);
        assert_eq!(keep_early(&mut pairs, 1, b"GET".to_vec()), None);
        assert_eq!(keep_early(&mut pairs, 9, b"lost".to_vec()), None);
        assert_eq!(
            pair_up(&mut pairs, s(7, "error", "80")),
            Paired::Complete {
                data: 1,
                error: 7,
                port: 80,
                early: b"GET".to_vec()
            }
        );
        assert!(pairs.is_empty());
        // Too much before the error stream: the pair goes.
        assert_eq!(pair_up(&mut pairs, s(9, "data", "80")), Paired::Waiting);
        assert_eq!(keep_early(&mut pairs, 9, vec![0; EARLY_MAX]), None);
        assert_eq!(keep_early(&mut pairs, 9, vec![0]), Some(9));
        assert!(pairs.is_empty());
    }

    #[test]
    fn stale_pairs_are_taken_out() {
        let mut pairs = HashMap::new();
        let opened = stream(1, "error", "80", Some("r")).unwrap();
        assert_eq!(pair_up(&mut pairs, opened), Paired::Waiting);
        assert!(stale_pairs(&mut pairs).is_empty());
        if let Some(p) = pairs.get_mut("r") {
            p.since -= PAIR_TIMEOUT;
        }
        assert_eq!(stale_pairs(&mut pairs), vec![(Some(1), None)]);
        assert!(pairs.is_empty());
    }
}
