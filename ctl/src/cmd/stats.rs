//! `stats`: live resource usage of containers, like `docker stats`.
//!
//! One Stats stream per host (per host and name, when a host knows only
//! some of the names asked for). A table is printed once every open stream
//! has sent its next sample: on a terminal it replaces the previous one in
//! place; otherwise one table follows another. `--no-stream` prints one.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use berth::v1::{stats_client::StatsClient, ContainerStats, StatsRequest, StatsResponse};
use futures_util::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

use crate::cli::StatsArgs;
use crate::error::{Error, Result};
use crate::fleet::{host_table, with_host, Failures, Fleet};
use crate::output::{self, print_json_line};

/// Headers of the stats table.
pub const STATS_HEADERS: [&str; 8] = [
    "CONTAINER ID",
    "NAME",
    "CPU %",
    "MEM USAGE / LIMIT",
    "MEM %",
    "NET I/O",
    "BLOCK I/O",
    "PIDS",
];

/// The Stats request of `stats` flags.
pub fn stats_request(args: &StatsArgs) -> StatsRequest {
    StatsRequest {
        containers: args.ids.clone(),
        all: args.all_containers,
        stream: !args.no_stream,
        interval_ms: 0,
    }
}

/// One row of the table: docker's columns. MEM USAGE is the working set
/// (usage minus inactive file cache), as docker shows it; a container with
/// no cgroup (not running) shows zeros, as `docker stats -a` does. NET I/O
/// is received / sent, "--" for a host-network container (as Docker).
pub fn stats_row(c: &ContainerStats) -> Vec<String> {
    let net = match (&c.network, &c.cpu) {
        (Some(n), _) => format!("{} / {}", size(n.rx_bytes), size(n.tx_bytes)),
        (None, Some(_)) => "--".into(),
        (None, None) => "0B / 0B".into(),
    };
    let (cpu, mem, mem_pct, io, pids) = match (&c.cpu, &c.memory) {
        (Some(cpu), Some(m)) => {
            let pct = if m.limit_bytes > 0 {
                m.working_set_bytes as f64 / m.limit_bytes as f64 * 100.0
            } else {
                0.0
            };
            let io = c.block_io.unwrap_or_default();
            (
                format!("{:.2}%", cpu.percent),
                format!(
                    "{} / {}",
                    output::binary_size(m.working_set_bytes),
                    output::binary_size(m.limit_bytes)
                ),
                format!("{pct:.2}%"),
                format!("{} / {}", size(io.read_bytes), size(io.write_bytes)),
                c.pids.map_or(0, |p| p.current).to_string(),
            )
        }
        _ => (
            "0.00%".into(),
            "0B / 0B".into(),
            "0.00%".into(),
            "0B / 0B".into(),
            "0".into(),
        ),
    };
    vec![
        output::short_id(&c.id).to_string(),
        c.name.clone(),
        cpu,
        mem,
        mem_pct,
        net,
        io,
        pids,
    ]
}

fn size(bytes: u64) -> String {
    output::human_size(i64::try_from(bytes).unwrap_or(i64::MAX))
}

/// Samples of one stream, then `None` when it ends.
type Samples = futures_util::stream::LocalBoxStream<'static, Option<Result<StatsResponse>>>;

/// Opens one stream.
async fn open(ch: Channel, req: StatsRequest) -> Result<Samples> {
    let s = StatsClient::new(ch)
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
        .stats(req)
        .await?
        .into_inner();
    Ok(s.map(|r| Some(r.map_err(Error::from)))
        .chain(futures_util::stream::once(async { None }))
        .boxed_local())
}

/// Opens the streams of one host: one for all names, or, on a fleet where a
/// host knows only some of them (NOT_FOUND), one for each name it knows.
async fn open_host(ch: Channel, req: StatsRequest, split: bool) -> Result<Vec<Samples>> {
    match open(ch.clone(), req.clone()).await {
        Ok(s) => Ok(vec![s]),
        Err(Error::Status(st))
            if split && st.code() == Code::NotFound && req.containers.len() > 1 =>
        {
            let mut out = Vec::new();
            for n in &req.containers {
                let one = StatsRequest {
                    containers: vec![n.clone()],
                    ..req.clone()
                };
                match open(ch.clone(), one).await {
                    Ok(s) => out.push(s),
                    Err(Error::Status(s)) if s.code() == Code::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            if out.is_empty() {
                return Err(Error::Status(st));
            }
            Ok(out)
        }
        Err(e) => Err(e),
    }
}

/// `stats`.
pub async fn stats(f: &Fleet, args: StatsArgs) -> Result<()> {
    let req = stats_request(&args);
    let single = f.is_single();
    let opened = f
        .each_untimed(|_, ch| open_host(ch, req.clone(), !single))
        .await;
    // The host of each stream, by index.
    let mut hosts: Vec<String> = Vec::new();
    let mut streams = Vec::new();
    let mut failures = Failures::default();
    for (m, r) in opened {
        match r {
            Ok(ss) => {
                for s in ss {
                    let i = hosts.len();
                    hosts.push(m.name.clone());
                    streams.push(s.map(move |item| (i, item)).boxed_local());
                }
            }
            Err(e) if single => return Err(e),
            // On many hosts, a host without the container is skipped.
            Err(Error::Status(s)) if s.code() == Code::NotFound => {}
            Err(e) => failures.push(&m.name, e),
        }
    }
    if streams.is_empty() && failures.errors.is_empty() {
        return Err(Error::Message(format!(
            "no such container on any targeted host: {}",
            args.ids.join(", ")
        )));
    }
    let live = std::io::stdout().is_terminal() && !f.json();
    let mut merged = futures_util::stream::select_all(streams);
    let mut latest: BTreeMap<usize, StatsResponse> = BTreeMap::new();
    let mut fresh = vec![false; hosts.len()];
    let mut ended = vec![false; hosts.len()];
    while let Some((i, item)) = merged.next().await {
        match item {
            Some(Ok(sample)) => {
                if f.json() {
                    print_json(&sample, (!single).then(|| hosts[i].as_str()))?;
                    continue;
                }
                latest.insert(i, sample);
                fresh[i] = true;
            }
            Some(Err(e)) if single => return Err(e),
            Some(Err(e)) => failures.push(&hosts[i], e),
            None => {
                ended[i] = true;
                // A live stream that ended (its containers removed) shows
                // no more; a --no-stream one ends after its sample.
                if req.stream {
                    latest.remove(&i);
                }
            }
        }
        let round = fresh.contains(&true) && (0..hosts.len()).all(|j| ended[j] || fresh[j]);
        if round && !latest.is_empty() {
            print_table(&latest, &hosts, single, live);
            fresh.iter_mut().for_each(|x| *x = false);
        }
    }
    failures.finish()
}

fn print_json(sample: &StatsResponse, host: Option<&str>) -> Result<()> {
    for c in &sample.containers {
        let mut v = output::message_json(c)?;
        if let (serde_json::Value::Object(map), Some(t)) = (&mut v, &sample.read_at) {
            map.insert(
                "readAt".into(),
                serde_json::Value::String(output::rfc3339_fixed(t)),
            );
        }
        print_json_line(&match host {
            Some(h) => with_host(h, v),
            None => v,
        });
    }
    Ok(())
}

fn print_table(
    latest: &BTreeMap<usize, StatsResponse>,
    hosts: &[String],
    single: bool,
    live: bool,
) {
    let text = if single {
        let rows: Vec<Vec<String>> = latest
            .values()
            .flat_map(|s| s.containers.iter().map(stats_row))
            .collect();
        output::table(&STATS_HEADERS, &rows)
    } else {
        let rows = latest
            .iter()
            .flat_map(|(i, s)| {
                s.containers
                    .iter()
                    .map(|c| (hosts[*i].clone(), stats_row(c)))
            })
            .collect();
        host_table(&STATS_HEADERS, rows)
    };
    let mut out = std::io::stdout().lock();
    // On a terminal: home the cursor and clear the screen, as docker stats
    // does, so the table refreshes in place.
    let _ = if live {
        write!(out, "\x1b[H\x1b[2J{text}")
    } else {
        write!(out, "{text}")
    };
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth::v1::{BlockIoStats, ContainerState, CpuStats, MemoryStats, PidsStats};

    #[test]
    fn requests_from_flags() {
        use crate::cli::Command;
        let Command::Stats(a) =
            crate::cmd::parse_command(&["stats", "-a", "--no-stream", "x", "y"])
        else {
            panic!()
        };
        let r = stats_request(&a);
        assert_eq!(r.containers, ["x", "y"]);
        assert!(r.all && !r.stream);
        assert_eq!(r.interval_ms, 0, "the agent's default, 1 s");
        let Command::Stats(a) = crate::cmd::parse_command(&["stats"]) else {
            panic!()
        };
        let r = stats_request(&a);
        assert!(r.containers.is_empty() && !r.all && r.stream);
    }

    #[test]
    fn rows_like_docker() {
        let c = ContainerStats {
            id: "0123456789abcdef".repeat(4),
            name: "web".into(),
            state: ContainerState::Running as i32,
            cpu: Some(CpuStats {
                percent: 12.345,
                ..Default::default()
            }),
            memory: Some(MemoryStats {
                working_set_bytes: 32 << 20,
                limit_bytes: 128 << 20,
                limited: true,
                ..Default::default()
            }),
            pids: Some(PidsStats {
                current: 3,
                limit: 0,
            }),
            block_io: Some(BlockIoStats {
                read_bytes: 1_500_000,
                write_bytes: 0,
            }),
            network: Some(berth::v1::NetworkStats {
                rx_bytes: 2_000,
                tx_bytes: 1_000_000,
                interfaces: Vec::new(),
            }),
        };
        assert_eq!(
            stats_row(&c),
            [
                "0123456789ab",
                "web",
                "12.35%",
                "32MiB / 128MiB",
                "25.00%",
                "2kB / 1MB",
                "1.5MB / 0B",
                "3"
            ]
        );
        let host = ContainerStats {
            network: None,
            ..c.clone()
        };
        assert_eq!(stats_row(&host)[5], "--");
        let stopped = ContainerStats {
            state: ContainerState::Exited as i32,
            cpu: None,
            memory: None,
            network: None,
            ..c
        };
        assert_eq!(
            stats_row(&stopped)[2..],
            ["0.00%", "0B / 0B", "0.00%", "0B / 0B", "0B / 0B", "0"]
        );
    }
}
