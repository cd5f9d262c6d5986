//! `run --place`: replicas placed on the hosts with room for them.

use std::collections::HashMap;

use berth::v1::{
    agent_client::AgentClient, containers_client::ContainersClient, InfoRequest,
    RunContainerRequest,
};
use serde_json::json;

use super::spec::{env_lookup, spec_from_args};
use crate::cli::{Placement, RunArgs};
use crate::ctx::missing;
use crate::error::{Error, Result};
use crate::fleet::{split, with_host, Fleet};
use crate::output::{self, print_json_line};
use crate::place::{self, Capacity, Request};

/// `run --place`: asks every targeted agent for its capacity, plans all
/// replicas first (so a refusal starts nothing), then starts them detached
/// and says where each went.
pub async fn run_placed(f: &Fleet, args: RunArgs, strategy: Placement) -> Result<()> {
    if args.replicas == 0 {
        return Err(Error::Message("--replicas must be at least 1".into()));
    }
    let spec = spec_from_args(&args.spec, args.rm, env_lookup)?;
    let limits = spec.resources.clone().unwrap_or_default();
    let req = Request {
        memory: limits.memory_bytes.max(0) as u64,
        nano_cpus: limits.nano_cpus.max(0) as u64,
    };
    let infos = f
        .each(|_, ch| async move {
            Ok(AgentClient::new(ch)
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                .info(InfoRequest {})
                .await?
                .into_inner())
        })
        .await;
    let (ok, mut fails) = split(infos);
    let caps: Vec<Capacity> = ok
        .iter()
        .map(|(m, i)| Capacity::from_info(&m.name, i))
        .collect();
    let hosts = match place::plan(&caps, &req, args.replicas, strategy) {
        Ok(h) => h,
        Err(why) => {
            // Unreachable hosts may be why nothing fits: say so too.
            let _ = fails.finish();
            return Err(Error::Message(why));
        }
    };
    // Replica n's name: NAME-n, or NAME itself for a single replica.
    let name_of = |n: usize| match (spec.name.as_str(), args.replicas) {
        ("", _) => String::new(),
        (name, 1) => name.to_string(),
        (name, _) => format!("{name}-{n}"),
    };
    let mut plan: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, h) in hosts.iter().enumerate() {
        plan.entry(h.clone()).or_default().push(i + 1);
    }
    let plan = &plan;
    let results = f
        .each(|m, ch| {
            let spec = spec.clone();
            let name_of = &name_of;
            async move {
                let mut c = ContainersClient::new(ch)
                    .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                    .max_encoding_message_size(crate::MAX_REQUEST_BYTES);
                let mut started = Vec::new();
                for &n in plan.get(&m.name).map(Vec::as_slice).unwrap_or_default() {
                    let mut s = spec.clone();
                    s.name = name_of(n);
                    s.labels.insert("berth.replica".into(), n.to_string());
                    let r = c.run(RunContainerRequest { spec: Some(s) }).await;
                    match r {
                        Ok(r) => {
                            let cont = r
                                .into_inner()
                                .container
                                .ok_or_else(|| missing("container"))?;
                            started.push((n, cont));
                        }
                        Err(s) => {
                            return Err(Error::Message(format!(
                                "replica {n}: {}",
                                Error::Status(s)
                            )))
                        }
                    }
                }
                Ok(started)
            }
        })
        .await;
    let (ok, run_fails) = split(results);
    let mut rows: Vec<(usize, String, berth::v1::Container)> = ok
        .into_iter()
        .flat_map(|(m, started)| {
            started
                .into_iter()
                .map(move |(n, c)| (n, m.name.clone(), c))
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    if f.json() {
        for (n, host, c) in &rows {
            let mut v = with_host(host, output::message_json(c)?);
            v["replica"] = json!(n);
            print_json_line(&v);
        }
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|(n, host, c)| vec![n.to_string(), host.clone(), c.id.clone(), c.name.clone()])
            .collect();
        print!(
            "{}",
            output::table(&["REPLICA", "HOST", "CONTAINER ID", "NAME"], &table)
        );
    }
    for (h, e) in run_fails.errors {
        fails.push(&h, e);
    }
    fails.finish()
}
