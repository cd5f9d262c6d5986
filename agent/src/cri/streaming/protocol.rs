//! The wire format of Kubernetes' WebSocket streaming, without any I/O:
//! subprotocol negotiation, channel framing, the exec status document and
//! port-forward's `?port=` query (the resize channel's stream is
//! [`super::resize`]'s).
//!
//! As kubelet's `wsstream` speaks it: every message starts with one byte,
//! its channel (exec: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize;
//! port-forward: 2i data and 2i+1 error of the i-th port). The base64
//! variants send text messages, the channel as an ASCII digit ('0' + n)
//! and the payload base64-encoded. v5 adds one control message, `[255, n]`:
//! the client has closed its side of channel n (its stdin ended).

use base64::Engine;

use crate::error::capped;

/// Exec and attach channel: the process's stdin.
pub const STDIN: u8 = 0;
/// Exec and attach channel: stdout (and a terminal's only output).
pub const STDOUT: u8 = 1;
/// Exec and attach channel: stderr.
pub const STDERR: u8 = 2;
/// Exec and attach channel: the status document written at the end.
pub const ERROR: u8 = 3;
/// Exec and attach channel: terminal sizes, as a stream of JSON objects.
pub const RESIZE: u8 = 4;
/// v5's first byte of a "close channel" message.
const CLOSE_SIGNAL: u8 = 255;

/// The most subprotocols of a handshake looked at (clients send 1 to 5).
const PROTOCOLS_MAX: usize = 16;
/// The most ports one port-forward connection forwards; their channels
/// (up to 2 * 64 - 1) stay clear of v5's 255.
pub const PORTS_MAX: usize = 64;

/// A subprotocol this server speaks, in its order of preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// `v5.channel.k8s.io`: v4 and the close-channel message.
    V5,
    /// `v4.channel.k8s.io`: the exit status as JSON (metav1.Status).
    V4,
    /// `v4.base64.channel.k8s.io`: v4 in text messages.
    V4Base64,
    /// `channel.k8s.io` (also: no subprotocol asked for): failures as
    /// plain text, nothing on success.
    V1,
    /// `base64.channel.k8s.io`: v1 in text messages.
    V1Base64,
}

impl Proto {
    /// Every subprotocol served, most preferred first.
    pub const ALL: [Proto; 5] = [
        Proto::V5,
        Proto::V4,
        Proto::V4Base64,
        Proto::V1,
        Proto::V1Base64,
    ];

    /// Its name in `Sec-WebSocket-Protocol`.
    pub fn name(self) -> &'static str {
        match self {
            Proto::V5 => "v5.channel.k8s.io",
            Proto::V4 => "v4.channel.k8s.io",
            Proto::V4Base64 => "v4.base64.channel.k8s.io",
            Proto::V1 => "channel.k8s.io",
            Proto::V1Base64 => "base64.channel.k8s.io",
        }
    }

    /// Text messages with base64 payloads.
    pub fn base64(self) -> bool {
        matches!(self, Proto::V4Base64 | Proto::V1Base64)
    }

    /// The exit status is a JSON document (v4 and later).
    pub fn json_status(self) -> bool {
        matches!(self, Proto::V5 | Proto::V4 | Proto::V4Base64)
    }
}

/// What a handshake's `Sec-WebSocket-Protocol` values come to.
#[derive(Debug, PartialEq, Eq)]
pub enum Negotiated {
    /// Speak this one; `answer` says whether to name it in the response
    /// (not when the client asked for none).
    Proto {
        /// The subprotocol.
        proto: Proto,
        /// Name it in the 101 response.
        answer: bool,
    },
    /// Only SPDY tunnelled over WebSocket (`SPDY/3.1+portforward.k8s.io`,
    /// what client-go's port-forward sends for `--transport websocket`).
    SpdyTunnel,
    /// Nothing this server speaks.
    Unsupported,
}

/// Picks the subprotocol from the values of the `Sec-WebSocket-Protocol`
/// headers (each a comma-separated list), by this server's preference.
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a str>) -> Negotiated {
    let asked = listed(values);
    if asked.is_empty() {
        // kubelet's "" protocol: binary channels, v1 status.
        return Negotiated::Proto {
            proto: Proto::V1,
            answer: false,
        };
    }
    if let Some(proto) = Proto::ALL.into_iter().find(|p| asked.contains(&p.name())) {
        return Negotiated::Proto {
            proto,
            answer: true,
        };
    }
    if asked.contains(&SPDY_TUNNEL) {
        return Negotiated::SpdyTunnel;
    }
    Negotiated::Unsupported
}

/// The subprotocol of SPDY tunnelled in a WebSocket (client-go's
/// port-forward over WebSocket).
pub const SPDY_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

/// The protocols a handshake's header values name (each a comma-separated
/// list), in order, the first [`PROTOCOLS_MAX`] only: WebSocket's
/// `Sec-WebSocket-Protocol` and SPDY's `X-Stream-Protocol-Version` alike.
pub fn listed<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .take(PROTOCOLS_MAX)
        .collect()
}

/// A message to send, as the protocol frames it.
#[derive(Debug, PartialEq, Eq)]
pub enum Outbound {
    /// A binary message.
    Binary(Vec<u8>),
    /// A text message (the base64 protocols).
    Text(String),
}

/// Frames `data` for `channel`.
pub fn encode(proto: Proto, channel: u8, data: &[u8]) -> Outbound {
    if proto.base64() {
        let mut s = String::with_capacity(1 + data.len().div_ceil(3) * 4);
        s.push(char::from(b'0'.wrapping_add(channel)));
        base64::engine::general_purpose::STANDARD.encode_string(data, &mut s);
        Outbound::Text(s)
    } else {
        let mut v = Vec::with_capacity(1 + data.len());
        v.push(channel);
        v.extend_from_slice(data);
        Outbound::Binary(v)
    }
}

/// A message from the client, unframed.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// Bytes for `channel`.
    Data {
        /// The channel.
        channel: u8,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// v5: the client closed its side of `channel`.
    Close {
        /// The channel.
        channel: u8,
    },
    /// An empty message (kubelet skips them too).
    Empty,
}

/// Why a client message is not one.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A close message that is not `[255, channel]`: the peer is broken,
    /// and the connection ends (as kubelet's does).
    #[error("a close-channel message of {0} bytes (2 expected)")]
    BadClose(usize),
    /// A base64 message that does not decode: dropped.
    #[error("a message that is not base64")]
    BadBase64,
}

impl FrameError {
    /// Whether the connection must end.
    pub fn fatal(&self) -> bool {
        matches!(self, FrameError::BadClose(_))
    }
}

/// Unframes the payload of a client message (text or binary alike, as
/// kubelet's reader takes both).
pub fn decode(proto: Proto, msg: &[u8]) -> Result<Inbound, FrameError> {
    let Some((&first, rest)) = msg.split_first() else {
        return Ok(Inbound::Empty);
    };
    if proto == Proto::V5 && first == CLOSE_SIGNAL {
        return match rest {
            [channel] => Ok(Inbound::Close { channel: *channel }),
            _ => Err(FrameError::BadClose(msg.len())),
        };
    }
    if proto.base64() {
        let data = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| FrameError::BadBase64)?;
        return Ok(Inbound::Data {
            channel: first.wrapping_sub(b'0'),
            data,
        });
    }
    Ok(Inbound::Data {
        channel: first,
        data: rest.to_vec(),
    })
}

/// How an exec or attach ended, for the error channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code 0 (or the container's streams ended, for attach).
    Success,
    /// A non-zero exit code.
    Exit(i32),
    /// The command could not be run or followed.
    Internal(String),
}

/// The error channel's last message for `outcome`, or `None` (pre-v4
/// protocols say nothing on success). v4 and later: a metav1.Status, as
/// kubelet writes it and client-go's v4 decoder reads it.
pub fn status(proto: Proto, outcome: &Outcome) -> Option<Vec<u8>> {
    let doc = match outcome {
        Outcome::Success if !proto.json_status() => return None,
        Outcome::Success => serde_json::json!({"metadata": {}, "status": "Success"}),
        Outcome::Exit(code) => {
            // client-go parses the code as a uint8; a process's is one, so
            // the clamp only guards against a record that is not.
            let code = (*code).clamp(1, 255);
            let message = format!("command terminated with non-zero exit code: exit status {code}");
            if !proto.json_status() {
                return Some(message.into_bytes());
            }
            serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}
            })
        }
        Outcome::Internal(why) => {
            let message = format!("Internal error occurred: {}", capped(why));
            if !proto.json_status() {
                return Some(message.into_bytes());
            }
            serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": "InternalError",
                "code": 500
            })
        }
    };
    Some(doc.to_string().into_bytes())
}

/// The ports of a port-forward request's query (`?port=80&port=443`, or
/// `?port=80,443`), as kubelet's V4Options reads them.
pub fn ports(query: Option<&str>) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for pair in query.unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "port" {
            continue;
        }
        let value = percent_decode(value).ok_or("a port value is not percent-encoded text")?;
        if value.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        for p in value.split(',') {
            let port = match p.parse::<u16>() {
                Ok(0) => return Err(format!("port {:?} must be > 0", capped(p))),
                Ok(port) => port,
                Err(_) => return Err(format!("unable to parse {:?} as a port", capped(p))),
            };
            if ports.len() == PORTS_MAX {
                return Err(format!("at most {PORTS_MAX} ports are forwarded at once"));
            }
            ports.push(port);
        }
    }
    if ports.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    Ok(ports)
}

/// `%XX` and `+` decoded (a query's form encoding); `None` when that is
/// not UTF-8 or an escape is broken.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The first message of both channels of a forwarded port: the port, as
/// an unsigned 16-bit little-endian number.
pub fn port_prefix(port: u16) -> [u8; 2] {
    port.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_v5_and_knows_spdy_tunnels() {
        let p = |proto| Negotiated::Proto {
            proto,
            answer: true,
        };
        assert_eq!(negotiate(["v5.channel.k8s.io"]), p(Proto::V5));
        assert_eq!(
            negotiate(["v4.channel.k8s.io, v5.channel.k8s.io"]),
            p(Proto::V5)
        );
        assert_eq!(
            negotiate(["base64.channel.k8s.io", "v4.channel.k8s.io"]),
            p(Proto::V4)
        );
        assert_eq!(negotiate(["channel.k8s.io"]), p(Proto::V1));
        assert_eq!(
            negotiate(Vec::<&str>::new()),
            Negotiated::Proto {
                proto: Proto::V1,
                answer: false
            }
        );
        assert_eq!(
            negotiate(["SPDY/3.1+portforward.k8s.io"]),
            Negotiated::SpdyTunnel
        );
        assert_eq!(negotiate(["v6.channel.k8s.io"]), Negotiated::Unsupported);
        // Only the first few values are looked at.
        let many = vec!["x"; 100].join(",") + ",v5.channel.k8s.io";
        assert_eq!(negotiate([many.as_str()]), Negotiated::Unsupported);
    }

    #[test]
    fn frames_round_trip_binary_and_base64() {
        assert_eq!(
            encode(Proto::V5, STDOUT, b"hi"),
            Outbound::Binary(vec![1, b'h', b'i'])
        );
        assert_eq!(encode(Proto::V4, ERROR, b""), Outbound::Binary(vec![3]));
        assert_eq!(
            encode(Proto::V4Base64, STDERR, b"foo\n"),
            Outbound::Text("2Zm9vCg==".into())
        );
        assert_eq!(
            decode(Proto::V4, &[0, b'a']),
            Ok(Inbound::Data {
                channel: 0,
                data: b"a".to_vec()
            })
        );
        assert_eq!(
            decode(Proto::V1Base64, b"0Zm9vCgo="),
            Ok(Inbound::Data {
                channel: 0,
                data: b"foo\n\n".to_vec()
            })
        );
        assert_eq!(decode(Proto::V1Base64, b"0***"), Err(FrameError::BadBase64));
        assert!(!FrameError::BadBase64.fatal());
        assert_eq!(decode(Proto::V5, &[]), Ok(Inbound::Empty));
    }

    #[test]
    fn only_v5_closes_channels() {
        assert_eq!(
            decode(Proto::V5, &[255, 0]),
            Ok(Inbound::Close { channel: 0 })
        );
        assert_eq!(decode(Proto::V5, &[255]), Err(FrameError::BadClose(1)));
        assert!(decode(Proto::V5, &[255, 0, 1]).is_err_and(|e| e.fatal()));
        // In v4, 255 is a channel like any other (none exists: ignored).
        assert_eq!(
            decode(Proto::V4, &[255, 0]),
            Ok(Inbound::Data {
                channel: 255,
                data: vec![0]
            })
        );
    }

    #[test]
    fn statuses_are_what_client_go_decodes() {
        let json = |o| -> serde_json::Value {
            serde_json::from_slice(&status(Proto::V5, &o).expect("a status")).expect("json")
        };
        assert_eq!(
            json(Outcome::Success),
            serde_json::json!({"metadata": {}, "status": "Success"})
        );
        let failed = json(Outcome::Exit(3));
        assert_eq!(failed["status"], "Failure");
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(
            failed["details"]["causes"],
            serde_json::json!([{"reason": "ExitCode", "message": "3"}])
        );
        assert_eq!(
            json(Outcome::Exit(300))["details"]["causes"][0]["message"],
            "255"
        );
        let internal = json(Outcome::Internal("x".repeat(10_000)));
        assert_eq!(internal["reason"], "InternalError");
        assert!(internal["message"].as_str().is_some_and(|m| m.len() < 1000));
        // Before v4: nothing on success, the message as text on failure.
        assert_eq!(status(Proto::V1, &Outcome::Success), None);
        assert_eq!(
            status(Proto::V1, &Outcome::Exit(2)),
            Some(b"command terminated with non-zero exit code: exit status 2".to_vec())
        );
    }

    #[test]
    fn ports_are_read_as_kubelet_reads_them() {
        assert_eq!(ports(Some("port=8080")), Ok(vec![8080]));
        assert_eq!(
            ports(Some("port=80&x=1&port=443%2C8443")),
            Ok(vec![80, 443, 8443])
        );
        assert_eq!(ports(Some("port=1,2")), Ok(vec![1, 2]));
        assert!(ports(None).is_err());
        assert!(ports(Some("x=1")).is_err());
        assert!(ports(Some("port=")).is_err());
        assert!(ports(Some("port=0")).is_err());
        assert!(ports(Some("port=65536")).is_err());
        assert!(ports(Some("port=%zz")).is_err());
        let huge = format!("port={}", "9".repeat(10_000));
        assert!(ports(Some(&huge)).is_err_and(|e| e.len() < 1000));
        let many = vec!["port=1"; PORTS_MAX + 1].join("&");
        assert!(ports(Some(&many)).is_err());
        assert_eq!(port_prefix(8080), [0x90, 0x1f]);
    }
}
