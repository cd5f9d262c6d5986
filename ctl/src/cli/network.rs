//! `network ...`: user-defined networks.

use clap::{Args, Subcommand};

use crate::parse;

/// `network ...`.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum NetworkCommand {
    /// Create a user-defined bridge network; prints its id.
    Create(NetworkCreateArgs),
    /// List user-defined networks.
    #[command(visible_alias = "list")]
    Ls(NetworkLsArgs),
    /// Show networks in detail (with their containers), as a JSON array.
    Inspect(NetworkNamesArgs),
    /// Remove networks no container is on.
    #[command(visible_alias = "remove")]
    Rm(NetworkNamesArgs),
    /// Connect a container to one more network, a user-defined one or
    /// "bridge" (a running one gets eth1, eth2, ... at once, or eth0 when it
    /// has no first network left; others at their next start).
    Connect(NetworkConnectArgs),
    /// Disconnect a container from a network it is on, the one it was
    /// created on too (its other networks stay; with none left, only lo).
    Disconnect(NetworkDisconnectArgs),
}

/// `network create`.
#[derive(Debug, Args)]
pub struct NetworkCreateArgs {
    /// Subnet, e.g. 10.90.0.0/24 (default: a free /24 of 10.89.0.0/16);
    /// give it twice, once IPv4 and once IPv6 (e.g. fd00:90::/64, with
    /// --ipv6), for a dual-stack network.
    #[arg(long = "subnet", value_name = "CIDR")]
    pub subnets: Vec<String>,
    /// The bridge's address in the subnet of its family (default: the
    /// subnet's first address); at most one IPv4 and one IPv6.
    #[arg(long = "gateway", value_name = "IP")]
    pub gateways: Vec<String>,
    /// No outbound access: no masquerade, nothing forwarded in or out.
    #[arg(long)]
    pub internal: bool,
    /// Driver: "bridge" (the default) or "cni" (with --cni-conflist).
    #[arg(short = 'd', long, value_name = "DRIVER")]
    pub driver: Option<String>,
    /// With --driver cni: the CNI network configuration list (JSON, at most
    /// 64 KiB) the network runs; its plugins are looked up in berthd's
    /// --cni-bin-dir.
    #[arg(long, value_name = "FILE")]
    pub cni_conflist: Option<std::path::PathBuf>,
    /// Dual-stack: containers get an IPv6 address too (from the IPv6
    /// --subnet, or a free /64 of fd62:6572:7468::/48).
    #[arg(long)]
    pub ipv6: bool,
    /// Label key=value (repeatable).
    #[arg(long = "label", value_name = "KEY[=VALUE]", value_parser = parse::label)]
    pub labels: Vec<(String, String)>,
    /// The network's name.
    pub name: String,
}

/// `network ls`.
#[derive(Debug, Args)]
pub struct NetworkLsArgs {
    /// Print only network ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `network inspect` and `network rm`.
#[derive(Debug, Args)]
pub struct NetworkNamesArgs {
    /// Network names, ids or id prefixes.
    #[arg(required = true, value_name = "NETWORK")]
    pub networks: Vec<String>,
}

/// `network connect`.
#[derive(Debug, Args)]
pub struct NetworkConnectArgs {
    /// An alias of the container on the network (repeatable).
    #[arg(long = "alias", value_name = "ALIAS")]
    pub aliases: Vec<String>,
    /// A static IPv4 address in the network's subnet.
    #[arg(long = "ip", value_name = "IP")]
    pub ip: Option<String>,
    /// The network.
    pub network: String,
    /// The container.
    pub container: String,
}

/// `network disconnect`.
#[derive(Debug, Args)]
pub struct NetworkDisconnectArgs {
    /// Disconnect a running container even if its interface cannot be
    /// deleted.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// The network.
    pub network: String,
    /// The container.
    pub container: String,
}
