//! The stream protocols spoken over SPDY, named in the handshake's
//! `X-Stream-Protocol-Version` headers: kubelet's exec and attach versions
//! (v5 is WebSocket only: over SPDY a client that asks for it gets v4, as
//! from kubelet) and port-forward's one.

use super::super::protocol::{self, Proto};

/// A protocol spoken over SPDY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamProto {
    /// `v4.channel.k8s.io`: the exit status as JSON, terminal resizing.
    V4,
    /// `v3.channel.k8s.io`: terminal resizing, failures as text.
    V3,
    /// `v2.channel.k8s.io`: failures as text.
    V2,
    /// `channel.k8s.io`: as v2.
    V1,
    /// `portforward.k8s.io`: a data and an error stream per connection.
    PortForward,
}

/// What exec and attach speak over SPDY, kubelet's list.
pub const EXEC: [StreamProto; 4] = [
    StreamProto::V4,
    StreamProto::V3,
    StreamProto::V2,
    StreamProto::V1,
];
/// What port-forward speaks over SPDY.
pub const PORT_FORWARD: [StreamProto; 1] = [StreamProto::PortForward];

impl StreamProto {
    /// Its name in `X-Stream-Protocol-Version`.
    pub fn name(self) -> &'static str {
        match self {
            StreamProto::V4 => "v4.channel.k8s.io",
            StreamProto::V3 => "v3.channel.k8s.io",
            StreamProto::V2 => "v2.channel.k8s.io",
            StreamProto::V1 => "channel.k8s.io",
            StreamProto::PortForward => "portforward.k8s.io",
        }
    }

    /// The WebSocket protocol whose status documents it writes.
    pub fn status(self) -> Proto {
        match self {
            StreamProto::V4 => Proto::V4,
            _ => Proto::V1,
        }
    }

    /// The client opens a resize stream with a terminal.
    pub fn resize(self) -> bool {
        matches!(self, StreamProto::V4 | StreamProto::V3)
    }
}

/// The first of the client's protocols (in its order, as kubelet picks)
/// that is `served`.
pub fn negotiate<'a>(
    values: impl IntoIterator<Item = &'a str>,
    served: &[StreamProto],
) -> Option<StreamProto> {
    protocol::listed(values)
        .into_iter()
        .find_map(|asked| served.iter().copied().find(|p| p.name() == asked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_order_picks_as_kubelets_handshake() {
        let client_go = [
            "v5.channel.k8s.io",
            "v4.channel.k8s.io",
            "v3.channel.k8s.io",
            "v2.channel.k8s.io",
        ];
        assert_eq!(negotiate(client_go, &EXEC), Some(StreamProto::V4));
        assert_eq!(
            negotiate(["v2.channel.k8s.io, v4.channel.k8s.io"], &EXEC),
            Some(StreamProto::V2)
        );
        assert_eq!(negotiate(["channel.k8s.io"], &EXEC), Some(StreamProto::V1));
        assert_eq!(negotiate(["v5.channel.k8s.io"], &EXEC), None);
        assert_eq!(negotiate(["portforward.k8s.io"], &EXEC), None);
        assert_eq!(
            negotiate(["portforward.k8s.io"], &PORT_FORWARD),
            Some(StreamProto::PortForward)
        );
        let many = vec!["x"; 100].join(",") + ",v4.channel.k8s.io";
        assert_eq!(negotiate([many.as_str()], &EXEC), None);
        assert_eq!(StreamProto::V4.status(), Proto::V4);
        assert_eq!(StreamProto::V3.status(), Proto::V1);
        assert!(StreamProto::V3.resize() && !StreamProto::V2.resize());
    }
}
