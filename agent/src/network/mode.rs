//! A container's network mode, as Docker's `--network`.

use serde::{Deserialize, Serialize};

use super::NetworkError;
use crate::error::capped;

/// Longest `network` value accepted.
pub const MAX_LEN: usize = 256;

/// The network of a container whose spec names none (berthd's
/// `--default-network`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DefaultNetwork {
    /// berth's bridge, as Docker's default: an address, a route out,
    /// published ports.
    #[default]
    Bridge,
    /// A namespace with only `lo`: nothing to set up, the fastest start.
    None,
}

/// What a client asked for, before `container:<x>` is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// A network namespace of its own with only `lo` (the default).
    None,
    /// The agent's own network namespace.
    Host,
    /// berth's bridge.
    Bridge,
    /// Another container's namespace: its name, id or id prefix as given.
    Container(String),
    /// A user-defined network: its name, id or id prefix as given.
    Network(String),
}

/// A container's network, resolved at Create and stored in its record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Mode {
    /// A namespace of its own with only `lo`; records from before
    /// networking had this.
    #[default]
    None,
    /// The agent's own network namespace.
    Host,
    /// A namespace of its own, on berth's bridge.
    Bridge,
    /// The namespace of the container with this id, at each start.
    Container(String),
    /// A namespace of its own, on the user-defined network with this id.
    Network(String),
    /// The network namespace pinned for the CRI pod with this id (the
    /// container's record says where).
    Pod(String),
}

impl Requested {
    /// Parses a client's `network` value; "" (or "default", as Docker's
    /// daemon default) is `default`, except that a
    /// container in a user namespace of its own (`userns`) gets `none`
    /// there: its network namespace must be its user namespace's, which
    /// the bridge does not support yet.
    pub fn parse_or(
        s: &str,
        default: DefaultNetwork,
        userns: bool,
    ) -> Result<Requested, NetworkError> {
        match (s, default) {
            ("" | "default", DefaultNetwork::Bridge) if !userns => Ok(Requested::Bridge),
            ("" | "default", _) => Ok(Requested::None),
            _ => Requested::parse(s),
        }
    }

    /// Parses a client's `network` value ("" is `none`; see [`Requested::parse_or`]).
    pub fn parse(s: &str) -> Result<Requested, NetworkError> {
        if s.len() > MAX_LEN {
            return Err(NetworkError::Invalid(format!(
                "network {:?} is longer than {MAX_LEN} bytes",
                capped(s)
            )));
        }
        match s {
            "" | "none" => return Ok(Requested::None),
            "host" => return Ok(Requested::Host),
            "bridge" | "default" => return Ok(Requested::Bridge),
            _ => {}
        }
        if let Some(peer) = s.strip_prefix("container:") {
            if peer.is_empty() {
                return Err(NetworkError::Invalid(
                    "network \"container:\" names no container".into(),
                ));
            }
            return Ok(Requested::Container(peer.to_string()));
        }
        if is_network_name(s) {
            return Ok(Requested::Network(s.to_string()));
        }
        Err(NetworkError::Invalid(format!(
            "network {:?} is none of \"none\", \"host\", \"bridge\", \
             \"container:<name|id>\" or a network name",
            capped(s)
        )))
    }
}

/// Docker's rule for network names, as for container names.
fn is_network_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Mode {
    /// Whether the container stays in the agent's network namespace.
    pub fn is_host(&self) -> bool {
        matches!(self, Mode::Host)
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::None => f.write_str("none"),
            Mode::Host => f.write_str("host"),
            Mode::Bridge => f.write_str("bridge"),
            Mode::Container(id) => write!(f, "container:{id}"),
            Mode::Network(id) => write!(f, "network:{id}"),
            Mode::Pod(id) => write!(f, "pod:{id}"),
        }
    }
}

impl From<Mode> for String {
    fn from(m: Mode) -> String {
        m.to_string()
    }
}

impl TryFrom<String> for Mode {
    type Error = String;

    /// A stored mode: what [`Mode`]'s `Display` wrote.
    fn try_from(s: String) -> Result<Mode, String> {
        match s.as_str() {
            "none" => Ok(Mode::None),
            "host" => Ok(Mode::Host),
            "bridge" => Ok(Mode::Bridge),
            _ => {
                let is_id = |id: &str| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
                match (s.strip_prefix("container:"), s.strip_prefix("network:")) {
                    (Some(id), _) if is_id(id) => Ok(Mode::Container(id.to_string())),
                    (_, Some(id)) if is_id(id) => Ok(Mode::Network(id.to_string())),
                    _ if s.strip_prefix("pod:").is_some_and(is_id) => {
                        Ok(Mode::Pod(s["pod:".len()..].to_string()))
                    }
                    _ => Err(format!("unknown stored network mode {:?}", capped(&s))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Requested, String> {
        Requested::parse(s).map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_network_is_the_default_but_never_a_bridge_in_a_user_namespace() {
        use DefaultNetwork as D;
        let p = |s, d, userns| Requested::parse_or(s, d, userns).map_err(|e| e.to_string());
        assert_eq!(p("", D::Bridge, false), Ok(Requested::Bridge));
        assert_eq!(p("", D::None, false), Ok(Requested::None));
        assert_eq!(p("", D::Bridge, true), Ok(Requested::None));
        // A network named is that network, whatever the default.
        assert_eq!(p("none", D::Bridge, false), Ok(Requested::None));
        assert_eq!(p("bridge", D::None, false), Ok(Requested::Bridge));
        assert_eq!(p("bridge", D::None, true), Ok(Requested::Bridge));
        assert_eq!(p("host", D::Bridge, false), Ok(Requested::Host));
        assert_eq!(p("default", D::None, false), Ok(Requested::None));
        assert_eq!(p("default", D::Bridge, false), Ok(Requested::Bridge));
    }

    #[test]
    fn the_modes_parse() {
        assert_eq!(parse(""), Ok(Requested::None));
        assert_eq!(parse("none"), Ok(Requested::None));
        assert_eq!(parse("host"), Ok(Requested::Host));
        assert_eq!(parse("bridge"), Ok(Requested::Bridge));
        assert_eq!(parse("default"), Ok(Requested::Bridge));
        assert_eq!(
            parse("container:web"),
            Ok(Requested::Container("web".into()))
        );
    }

    #[test]
    fn other_names_are_user_networks() {
        for s in ["mynet", "my-net.1"] {
            assert_eq!(parse(s), Ok(Requested::Network(s.into())));
        }
    }

    #[test]
    fn bad_modes_are_refused_without_echoing_them_whole() {
        for s in ["container:", "-x", "a b", "host:1"] {
            assert!(
                matches!(Requested::parse(s), Err(NetworkError::Invalid(_))),
                "{s}"
            );
        }
        let long = "a".repeat(100_000);
        let e = Requested::parse(&long).unwrap_err().to_string();
        assert!(e.len() < 1000, "{} bytes", e.len());
    }

    #[test]
    fn stored_modes_round_trip() {
        let id = "ab".repeat(32);
        for m in [
            Mode::None,
            Mode::Host,
            Mode::Bridge,
            Mode::Container(id.clone()),
            Mode::Network(id.clone()),
            Mode::Pod(id),
        ] {
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<Mode>(&json).unwrap(), m);
        }
        assert!(serde_json::from_str::<Mode>("\"container:web\"").is_err());
    }
}
