//! Container networking: which network a container is in, and the network
//! namespace its init enters.
//!
//! `mode` is the container's choice (Docker's `--network`), parsed and
//! checked at Create; `namespace` is what a start hands to the init: a
//! spare namespace of its own, the host's, or another container's, held
//! open until the init has entered it. `bridge` puts the container on
//! berth's bridge ([`bridge`]: addresses from [`ipam`], links through
//! [`link`], published [`ports`] through [`nft`]); a user-defined network
//! ([`user`]) is another such bridge, with a subnet and table of its own,
//! or (driver `cni`) a CNI conflist run by [`cni`].

pub mod attach;
pub mod bridge;
pub mod cni;
pub mod counters;
pub mod dual;
pub mod ipam;
pub mod ipam6;
pub mod link;
pub mod mode;
pub mod namespace;
pub mod nft;
pub mod ports;
pub mod resolv;
pub mod user;
pub mod user6;
mod user_request;

pub use mode::{DefaultNetwork, Mode, Requested};
pub use namespace::Netns;

/// What choosing or joining a network can fail with.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The mode is not one berthd knows.
    #[error("{0}")]
    Invalid(String),
    /// The mode is a known one that this version does not implement.
    #[error("not supported yet: {0}")]
    Unsupported(&'static str),
    /// `container:<x>` names a container that is not running.
    #[error("cannot join the network of container {name}: it is not running")]
    PeerNotRunning {
        /// The other container's name.
        name: String,
    },
    /// Published ports the spec asks for are not valid.
    #[error("{0}")]
    InvalidPorts(String),
    /// The bridge's subnet has no free address left.
    #[error("no free address left on the bridge's subnet {0}")]
    Exhausted(String),
    /// The bridge's subnet overlaps a route of the host.
    #[error(
        "the bridge subnet {subnet} overlaps the host's route(s) {routes}: \
         choose another with berthd's --bridge-subnet (or run containers with \
         --network none, or berthd with --default-network none)"
    )]
    SubnetInUse {
        /// The bridge's subnet.
        subnet: String,
        /// The routes it overlaps.
        routes: String,
    },
    /// Another container publishes that host port.
    #[error("host port {port} is already published by {by}")]
    PortTaken {
        /// `[ip:]port/proto`.
        port: String,
        /// Who has it.
        by: String,
    },
    /// A process of the host holds that port (or it cannot be bound).
    #[error("host port {port} cannot be bound: {source}")]
    PortBusy {
        /// `[ip:]port/proto`.
        port: String,
        /// Cause (address in use, typically).
        #[source]
        source: std::io::Error,
    },
    /// A netlink request failed.
    #[error("setting up the container's network: {0}")]
    Netlink(String),
    /// nftables refused berth's rules.
    #[error("{0}")]
    Nft(#[from] nft::NftError),
    /// A host setting could not be changed.
    #[error("{what}: {source}")]
    Host {
        /// What was being done.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// No user-defined network has that name, id or id prefix.
    #[error("no such network: {key}")]
    NotFound {
        /// The key as given (capped).
        key: String,
    },
    /// An id prefix that matches more than one network.
    #[error("network id prefix {key} is ambiguous")]
    Ambiguous {
        /// The key as given (capped).
        key: String,
    },
    /// A network of that name exists.
    #[error("a network named {name} already exists")]
    NameInUse {
        /// The name.
        name: String,
    },
    /// The subnet overlaps another network's.
    #[error("subnet {subnet} overlaps {other}")]
    Overlap {
        /// The subnet asked for.
        subnet: String,
        /// Which other subnet, of which network.
        other: String,
    },
    /// The pool of automatic subnets has no free /24.
    #[error("no free /24 left in the pool {pool}: give a subnet", pool = user::POOL)]
    PoolExhausted,
    /// Containers are on the network.
    #[error("network {name} is in use by containers: remove them first")]
    InUse {
        /// The network's name.
        name: String,
    },
    /// `bridge`, `host`, `none` or `default`: not a user-defined network.
    #[error("{name} is a predefined network, not a user-defined one")]
    Predefined {
        /// The name.
        name: String,
    },
    /// A request field is not valid.
    #[error("{msg}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// Why (input quoted capped).
        msg: String,
    },
    /// ConnectContainer: the container is on that network already.
    #[error("container {container} is already connected to network {network}")]
    AlreadyConnected {
        /// The container's name.
        container: String,
        /// The network's name.
        network: String,
    },
    /// DisconnectContainer: the container is not on that network.
    #[error("container {container} is not connected to network {network}")]
    NotConnected {
        /// The container's name.
        container: String,
        /// The network's name.
        network: String,
    },
    /// ConnectContainer: the container's network mode has no networks to
    /// join (host, none, container:<x>).
    #[error("container {container} is in network mode {mode}: only containers on a bridge network can be connected to another")]
    NotBridged {
        /// The container's name.
        container: String,
        /// Its mode ("host", "none", "container").
        mode: &'static str,
    },
    /// ConnectContainer: the container is on as many networks as it can be.
    #[error("container {container} is on {max} networks beyond its first already")]
    TooManyNetworks {
        /// The container's name.
        container: String,
        /// The limit.
        max: usize,
    },
    /// A static address that another container has.
    #[error("address {ip} is in use on the network")]
    AddressInUse {
        /// The address.
        ip: String,
    },
    /// A CNI network's list or plugins failed.
    #[error("{0}")]
    Cni(#[from] cni::CniError),
    /// An IPv6 network on a host without IPv6 (or with it disabled).
    #[error("{0}: IPv6 networks need it")]
    NoIpv6(String),
    /// Opening the other container's namespace failed.
    #[error("opening the network namespace of container {name}: {source}")]
    Join {
        /// The other container's name.
        name: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}
