//! `volume create|ls|inspect|rm|prune`: the agent's volumes (one host at a
//! time).

use berth::v1::volumes_client::VolumesClient;
use berth::v1::{
    CreateVolumeRequest, InspectVolumeRequest, ListVolumesRequest, PruneVolumesRequest,
    RemoveVolumeRequest,
};
use clap::{Args, Subcommand};
use tonic::transport::Channel;

use crate::error::{Error, Result};
use crate::fleet::Member;
use crate::output::{self, print_json_line};
use crate::parse;

/// `volume ...`.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum VolumeCommand {
    /// Create a volume (a generated name when none is given).
    Create(VolumeCreateArgs),
    /// List volumes.
    #[command(visible_alias = "list")]
    Ls(VolumeLsArgs),
    /// Show volumes in detail, as a JSON array.
    Inspect(VolumeNamesArgs),
    /// Remove volumes (refused while a container uses one).
    #[command(visible_alias = "remove")]
    Rm(VolumeNamesArgs),
    /// Remove every volume no container uses.
    Prune(VolumePruneArgs),
}

// `volume create`.
#[derive(Debug, Args)]
pub struct VolumeCreateArgs {
    /// Driver: local (the only one).
    #[arg(short = 'd', long)]
    pub driver: Option<String>,
    /// Label key=value (repeatable).
    #[arg(short = 'l', long = "label", value_name = "KEY[=VALUE]", value_parser = parse::label)]
    pub labels: Vec<(String, String)>,
    /// Driver option (none is supported yet).
    #[arg(long = "opt", value_name = "KEY=VALUE", value_parser = parse::label)]
    pub opts: Vec<(String, String)>,
    /// The name: [a-zA-Z0-9][a-zA-Z0-9_.-]+, at most 64 characters.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
}

// `volume ls`.
#[derive(Debug, Args)]
pub struct VolumeLsArgs {
    /// Filter: label=KEY[=VALUE], dangling=true|false.
    #[arg(short = 'f', long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Print only volume names.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

// `volume inspect` and `volume rm`.
#[derive(Debug, Args)]
pub struct VolumeNamesArgs {
    /// Volume names.
    #[arg(required = true, value_name = "VOLUME")]
    pub names: Vec<String>,
}

// `volume prune`.
#[derive(Debug, Args)]
pub struct VolumePruneArgs {
    /// Do not ask (berthctl never asks; accepted for Docker's habit).
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Filter: label=KEY[=VALUE].
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
}

fn client(ch: Channel) -> VolumesClient<Channel> {
    VolumesClient::new(ch)
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
}

/// Splits `ls`/`prune` filters into label filters and `dangling`.
fn filters(given: &[String], dangling_ok: bool) -> Result<(Vec<String>, Option<bool>)> {
    let mut labels = Vec::new();
    let mut dangling = None;
    for f in given {
        match f.split_once('=') {
            Some(("label", l)) => labels.push(l.to_string()),
            Some(("dangling", v)) if dangling_ok => {
                dangling = Some(match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(Error::Message(format!("dangling={v:?}: true or false"))),
                })
            }
            _ => {
                return Err(Error::Message(format!(
                    "unknown filter {:?}: label=KEY[=VALUE]{}",
                    f.chars().take(64).collect::<String>(),
                    if dangling_ok { " or dangling=BOOL" } else { "" }
                )))
            }
        }
    }
    Ok((labels, dangling))
}

/// Runs a `volume` subcommand on host `m`.
pub async fn volume(m: &Member, json: bool, cmd: VolumeCommand) -> Result<()> {
    let mut c = client(m.channel().await?);
    match cmd {
        VolumeCommand::Create(a) => {
            let v = c
                .create(CreateVolumeRequest {
                    name: a.name.unwrap_or_default(),
                    driver: a.driver.unwrap_or_default(),
                    labels: parse::labels(&a.labels),
                    driver_opts: parse::labels(&a.opts),
                })
                .await?
                .into_inner()
                .volume
                .ok_or_else(|| crate::ctx::missing("volume"))?;
            if json {
                print_json_line(&output::message_json(&v)?);
            } else {
                println!("{}", v.name);
            }
        }
        VolumeCommand::Ls(a) => {
            let (labels, dangling) = filters(&a.filters, true)?;
            let vols = c
                .list(ListVolumesRequest { labels, dangling })
                .await?
                .into_inner()
                .volumes;
            if a.quiet {
                for v in &vols {
                    println!("{}", v.name);
                }
            } else if json {
                for v in &vols {
                    print_json_line(&output::message_json(v)?);
                }
            } else {
                let rows: Vec<Vec<String>> = vols
                    .iter()
                    .map(|v| {
                        vec![
                            v.driver.clone(),
                            v.name.clone(),
                            v.used_by.len().to_string(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    output::table(&["DRIVER", "VOLUME NAME", "CONTAINERS"], &rows)
                );
            }
        }
        VolumeCommand::Inspect(a) => {
            let mut found = Vec::new();
            let mut failed = None;
            for name in a.names {
                match c.inspect(InspectVolumeRequest { name }).await {
                    Ok(r) => {
                        if let Some(v) = r.into_inner().volume {
                            found.push(output::message_json(&v)?);
                        }
                    }
                    Err(s) => failed = Some(Error::from(s)),
                }
            }
            if json {
                found.iter().for_each(print_json_line);
            } else {
                let text = serde_json::to_string_pretty(&serde_json::Value::Array(found))
                    .map_err(|e| Error::Message(e.to_string()))?;
                println!("{text}");
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        VolumeCommand::Rm(a) => {
            let mut failed = None;
            for name in a.names {
                match c.remove(RemoveVolumeRequest { name }).await {
                    Ok(r) => println!("{}", r.into_inner().name),
                    Err(s) => {
                        eprintln!("Error: {}", s.message());
                        failed = Some(Error::from(s));
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        VolumeCommand::Prune(a) => {
            let (labels, _) = filters(&a.filters, false)?;
            let r = c.prune(PruneVolumesRequest { labels }).await?.into_inner();
            if json {
                print_json_line(&output::message_json(&r)?);
            } else {
                if !r.removed.is_empty() {
                    println!("Deleted Volumes:");
                    for n in &r.removed {
                        println!("{n}");
                    }
                    println!();
                }
                println!(
                    "Total reclaimed space: {}",
                    output::human_size(i64::try_from(r.reclaimed_bytes).unwrap_or(i64::MAX))
                );
            }
        }
    }
    Ok(())
}
