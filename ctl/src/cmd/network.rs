//! `network create|ls|inspect|rm|connect|disconnect`: user-defined networks
//! on one agent.

use std::time::SystemTime;

use berth::v1::networks_client::NetworksClient;
use berth::v1::{
    ConnectContainerRequest, CreateNetworkRequest, DisconnectContainerRequest,
    InspectNetworkRequest, ListNetworksRequest, RemoveNetworkRequest,
};
use tonic::transport::Channel;

use crate::cli::NetworkCommand;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::output::{self, print_json_line};

/// Headers of the `network ls` table.
const HEADERS: [&str; 6] = [
    "NETWORK ID",
    "NAME",
    "DRIVER",
    "SUBNET",
    "INTERNAL",
    "CREATED",
];

async fn client(f: &Fleet) -> Result<NetworksClient<Channel>> {
    if !f.is_single() {
        return Err(Error::Message(
            "network commands target one host: give one with -H".into(),
        ));
    }
    let ch = f.first()?.channel().await?;
    Ok(NetworksClient::new(ch)
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES))
}

/// Largest conflist file read (berthd refuses more than 64 KiB; one byte
/// beyond is read so that it can say so).
const MAX_CONFLIST: u64 = 64 * 1024 + 1;

/// The bytes of a conflist file, bounded.
fn read_conflist(path: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CONFLIST).read_to_end(&mut buf))
        .map_err(|e| Error::Message(format!("reading {}: {e}", path.display())))?;
    Ok(buf)
}

/// Repeated `--subnet`s or `--gateway`s sorted by family: [IPv4, IPv6]
/// (an IPv6 address has a colon, an IPv4 one none), at most one of each.
fn by_family(flag: &str, values: Vec<String>) -> Result<[String; 2]> {
    let mut out = [String::new(), String::new()];
    for v in values {
        let slot = usize::from(v.contains(':'));
        if !out[slot].is_empty() {
            let family = ["IPv4", "IPv6"][slot];
            return Err(Error::Message(format!(
                "{flag}: at most one {family} value"
            )));
        }
        out[slot] = v;
    }
    Ok(out)
}

/// Runs one `network` subcommand.
pub async fn network(f: &Fleet, cmd: NetworkCommand) -> Result<()> {
    let mut c = client(f).await?;
    match cmd {
        NetworkCommand::Create(a) => {
            let cni_conflist = match &a.cni_conflist {
                Some(path) => read_conflist(path)?,
                None => Vec::new(),
            };
            let [subnet, subnet6] = by_family("--subnet", a.subnets)?;
            let [gateway, gateway6] = by_family("--gateway", a.gateways)?;
            let net = c
                .create_network(CreateNetworkRequest {
                    name: a.name,
                    subnet,
                    gateway,
                    internal: a.internal,
                    labels: a.labels.into_iter().collect(),
                    driver: a.driver.unwrap_or_default(),
                    enable_ipv6: a.ipv6,
                    cni_conflist,
                    ipv6_subnet: subnet6,
                    ipv6_gateway: gateway6,
                })
                .await?
                .into_inner()
                .network
                .unwrap_or_default();
            if f.json() {
                print_json_line(&output::message_json(&net)?);
            } else {
                println!("{}", net.id);
            }
        }
        NetworkCommand::Ls(a) => {
            let nets = c
                .list_networks(ListNetworksRequest {})
                .await?
                .into_inner()
                .networks;
            if a.quiet {
                for n in &nets {
                    println!("{}", output::short_id(&n.id));
                }
            } else if f.json() {
                for n in &nets {
                    print_json_line(&output::message_json(n)?);
                }
            } else {
                let now = SystemTime::now();
                let rows: Vec<Vec<String>> = nets
                    .iter()
                    .map(|n| {
                        vec![
                            output::short_id(&n.id).to_string(),
                            n.name.clone(),
                            n.driver.clone(),
                            [n.subnet.as_str(), n.ipv6_subnet.as_str()]
                                .iter()
                                .filter(|s| !s.is_empty())
                                .copied()
                                .collect::<Vec<_>>()
                                .join(","),
                            n.internal.to_string(),
                            output::ago(&n.created_at, now),
                        ]
                    })
                    .collect();
                print!("{}", output::table(&HEADERS, &rows));
            }
        }
        NetworkCommand::Inspect(a) => {
            let mut found = Vec::new();
            for network in a.networks {
                let r = c
                    .inspect_network(InspectNetworkRequest { network })
                    .await?
                    .into_inner();
                found.push(output::message_json(&r)?);
            }
            output::print_inspected(found, f.json());
        }
        NetworkCommand::Rm(a) => {
            for network in a.networks {
                let r = c
                    .remove_network(RemoveNetworkRequest {
                        network: network.clone(),
                    })
                    .await?
                    .into_inner();
                if f.json() {
                    print_json_line(&output::message_json(&r)?);
                } else {
                    println!("{network}");
                }
            }
        }
        NetworkCommand::Connect(a) => {
            let r = c
                .connect_container(ConnectContainerRequest {
                    network: a.network,
                    container: a.container,
                    aliases: a.aliases,
                    ipv4_address: a.ip.unwrap_or_default(),
                })
                .await?
                .into_inner();
            let ep = r.endpoint.unwrap_or_default();
            if f.json() {
                print_json_line(&output::message_json(&ep)?);
            } else {
                println!(
                    "{} {}/{} {}",
                    ep.interface, ep.ip_address, ep.prefix_length, ep.container_name
                );
            }
        }
        NetworkCommand::Disconnect(a) => {
            c.disconnect_container(DisconnectContainerRequest {
                network: a.network,
                container: a.container.clone(),
                force: a.force,
            })
            .await?;
            if !f.json() {
                println!("{}", a.container);
            }
        }
    }
    Ok(())
}
