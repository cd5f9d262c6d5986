//! `version`: berthctl's version and the agents'.

use berth::v1::{agent_client::AgentClient, InfoRequest};
use serde_json::json;

use super::info::CLIENT_VERSION;
use crate::ctx::report;
use crate::error::Result;
use crate::fleet::{host_table, split, Fleet, Member};
use crate::output::print_json_line;

/// `version`: on one agent, berthctl's version and the agent's; on many,
/// one line per host.
pub async fn version(f: &Fleet) -> Result<()> {
    if f.is_single() {
        return version_one(f.first()?, f.json()).await;
    }
    version_many(f).await
}

/// `version`: berthctl's version, and the agent's when it can be reached;
/// an unreachable agent is reported but is not a failure of `version`.
async fn version_one(m: &Member, json: bool) -> Result<()> {
    let agent = match m.channel().await {
        Ok(ch) => AgentClient::new(ch)
            .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
            .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
            .info(InfoRequest {})
            .await
            .map(|r| r.into_inner())
            .map_err(Into::into),
        Err(e) => Err(e),
    };
    if json {
        let server = agent
            .as_ref()
            .ok()
            .map(|i| json!({"version": i.version, "apiVersion": i.api_version, "os": i.os, "architecture": i.architecture}));
        print_json_line(&json!({
            "client": {"version": CLIENT_VERSION, "apiVersion": berth::API_VERSION},
            "server": server,
        }));
    } else {
        println!("Client:");
        println!(" Version:      {CLIENT_VERSION}");
        println!(" API version:  {}", berth::API_VERSION);
        if let Ok(i) = &agent {
            println!("Server:");
            println!(" Version:      {}", i.version);
            println!(" API version:  {}", i.api_version);
            println!(" OS/Arch:      {}/{}", i.os, i.architecture);
        }
    }
    if let Err(e) = &agent {
        report(e);
    }
    Ok(())
}

/// `version` across many hosts: a `HOST VERSION API OS/ARCH` table.
async fn version_many(f: &Fleet) -> Result<()> {
    let results = f
        .each(|_, ch| async move {
            Ok(AgentClient::new(ch)
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                .info(InfoRequest {})
                .await?
                .into_inner())
        })
        .await;
    let (ok, fails) = split(results);
    if f.json() {
        for (m, i) in &ok {
            print_json_line(&json!({
                "host": m.name,
                "client": {"version": CLIENT_VERSION, "apiVersion": berth::API_VERSION},
                "server": {"version": i.version, "apiVersion": i.api_version, "os": i.os, "architecture": i.architecture},
            }));
        }
    } else {
        println!("Client: {} (API {})", CLIENT_VERSION, berth::API_VERSION);
        let rows = ok
            .iter()
            .map(|(m, i)| {
                (
                    m.name.clone(),
                    vec![
                        i.version.clone(),
                        i.api_version.clone(),
                        format!("{}/{}", i.os, i.architecture),
                    ],
                )
            })
            .collect();
        print!("{}", host_table(&["VERSION", "API", "OS/ARCH"], rows));
    }
    fails.finish()
}
