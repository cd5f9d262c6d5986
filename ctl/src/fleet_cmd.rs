//! The commands across a fleet: each one fans out to every targeted host
//! (see [`crate::fleet`]) and merges what comes back, tagged by host.
//!
//! Containers and images are addressed by id, prefix or name on every host:
//! `stop web` stops each container called web on the targeted hosts. A host
//! that does not have it is not an error; no host having it is.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io::Write;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use berth::v1::{
    agent_client::AgentClient, containers_client::ContainersClient, images_client::ImagesClient,
    import_image_request::Payload, CreateContainerRequest, ImportImageRequest, InfoRequest,
    InfoResponse, InspectContainerRequest, InspectImageRequest, ListImagesRequest, LogEntry,
    LogStream, RemoveContainerRequest, RemoveImageRequest, RunContainerRequest,
    StartContainerRequest, WaitContainerRequest,
};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tonic::transport::Channel;
use tonic::Code;

use crate::cli::{
    CreateArgs, IdsArgs, ImageIdsArgs, ImageRmArgs, ImportArgs, KillArgs, LogsArgs, Placement,
    PsArgs, RmArgs, RunArgs, StopArgs,
};
use crate::container::{
    env_lookup, follow_request, kill_request, list_request, logs_request, ps_rows, spec_from_args,
    stop_request, PS_HEADERS,
};
use crate::ctx::missing;
use crate::error::{Error, Result};
use crate::fleet::{host_table, split, with_host, Failures, Fleet, Member};
use crate::image::{image_rows, import_options, CHUNK_SIZE, IMAGE_HEADERS};
use crate::output::{self, print_json_line};
use crate::place::{self, Capacity, Request};

/// `ps` on every host: one table with a HOST column, or JSON lines with a
/// `host` field.
pub async fn ps(f: &Fleet, args: PsArgs) -> Result<()> {
    let req = list_request(&args)?;
    let results = f
        .each(|_, ch| {
            let req = req.clone();
            async move {
                Ok(ContainersClient::new(ch)
                    .list(req)
                    .await?
                    .into_inner()
                    .containers)
            }
        })
        .await;
    let (ok, fails) = split(results);
    let now = SystemTime::now();
    if args.quiet {
        for (_, cs) in &ok {
            for c in cs {
                let id = if args.no_trunc {
                    &c.id
                } else {
                    output::short_id(&c.id)
                };
                println!("{id}");
            }
        }
    } else if f.json() {
        for (m, cs) in &ok {
            for c in cs {
                print_json_line(&with_host(&m.name, output::message_json(c)?));
            }
        }
    } else {
        let mut rows = Vec::new();
        for (m, cs) in &ok {
            for r in ps_rows(cs, now, args.no_trunc) {
                rows.push((m.name.clone(), r));
            }
        }
        print!("{}", host_table(&PS_HEADERS, rows));
    }
    fails.finish()
}

/// What one id did on one host.
struct Done<T> {
    host: String,
    id: String,
    value: T,
}

/// Applies `op` to each id on every host. An id a host does not know
/// (NOT_FOUND) is skipped there; an id no host knows is an error.
async fn fan_ids<T, F, Fut>(
    f: &Fleet,
    ids: &[String],
    what: &str,
    op: F,
) -> (Vec<Done<T>>, Failures)
where
    F: Fn(Channel, String) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let op = &op;
    let results = f
        .each(|_, ch| async move {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.push((id.clone(), op(ch.clone(), id.clone()).await));
            }
            Ok(out)
        })
        .await;
    let (ok, mut fails) = split(results);
    let mut done = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut answered = false;
    for (m, outs) in ok {
        answered = true;
        for (id, r) in outs {
            match r {
                Ok(value) => {
                    seen.insert(id.clone());
                    done.push(Done {
                        host: m.name.clone(),
                        id,
                        value,
                    });
                }
                Err(Error::Status(s)) if s.code() == Code::NotFound => {}
                Err(e) => {
                    seen.insert(id.clone());
                    fails.push(&m.name, Error::Message(format!("{id}: {e}")));
                }
            }
        }
    }
    if answered {
        // Hosts that did not answer may have it: say so rather than "any".
        let scope = if fails.errors.is_empty() {
            "any targeted host"
        } else {
            "any host that answered"
        };
        for id in ids {
            if !seen.contains(id) {
                fails.push_general(Error::Message(format!("no such {what} on {scope}: {id}")));
            }
        }
    }
    (done, fails)
}

/// Prints `HOST  CONTAINER` lines (or JSON) for ids acted on.
fn print_done(f: &Fleet, done: &[Done<Value>], header: &str) {
    if f.json() {
        for d in done {
            print_json_line(&with_host(&d.host, d.value.clone()));
        }
    } else {
        let rows = done
            .iter()
            .map(|d| (d.host.clone(), vec![d.id.clone()]))
            .collect();
        print!("{}", host_table(&[header], rows));
    }
}

/// `start` on every host.
pub async fn start(f: &Fleet, args: IdsArgs) -> Result<()> {
    let (done, fails) = fan_ids(f, &args.ids, "container", |ch, id| async move {
        ContainersClient::new(ch)
            .start(StartContainerRequest { id: id.clone() })
            .await?;
        Ok(json!({ "id": id }))
    })
    .await;
    print_done(f, &done, "CONTAINER");
    fails.finish()
}

/// `stop` on every host.
pub async fn stop(f: &Fleet, args: StopArgs) -> Result<()> {
    let time = args.time;
    let (done, fails) = fan_ids(f, &args.ids, "container", |ch, id| async move {
        let r = ContainersClient::new(ch)
            .stop(stop_request(&id, time))
            .await?
            .into_inner();
        Ok(output::message_json(&r)?)
    })
    .await;
    print_done(f, &done, "CONTAINER");
    fails.finish()
}

/// `kill` on every host.
pub async fn kill(f: &Fleet, args: KillArgs) -> Result<()> {
    let signal = args.signal.as_str();
    let (done, fails) = fan_ids(f, &args.ids, "container", |ch, id| async move {
        let req = kill_request(&id, signal);
        ContainersClient::new(ch).kill(req.clone()).await?;
        Ok(output::message_json(&req)?)
    })
    .await;
    print_done(f, &done, "CONTAINER");
    fails.finish()
}

/// `rm` on every host.
pub async fn rm(f: &Fleet, args: RmArgs) -> Result<()> {
    let force = args.force;
    let (done, fails) = fan_ids(f, &args.ids, "container", |ch, id| async move {
        let r = ContainersClient::new(ch)
            .remove(RemoveContainerRequest { id, force })
            .await?
            .into_inner();
        Ok(output::message_json(&r)?)
    })
    .await;
    print_done(f, &done, "CONTAINER");
    fails.finish()
}

/// `wait` on every host: each container's exit code.
pub async fn wait(f: &Fleet, args: IdsArgs) -> Result<()> {
    let (done, fails) = fan_ids(f, &args.ids, "container", |ch, id| async move {
        let r = ContainersClient::new(ch)
            .wait(WaitContainerRequest {
                id,
                ..Default::default()
            })
            .await?
            .into_inner();
        let code = r.exit.ok_or_else(|| missing("exit status"))?.exit_code;
        Ok((code, output::message_json(&r)?))
    })
    .await;
    if f.json() {
        for d in &done {
            print_json_line(&with_host(&d.host, d.value.1.clone()));
        }
    } else {
        let rows = done
            .iter()
            .map(|d| (d.host.clone(), vec![d.id.clone(), d.value.0.to_string()]))
            .collect();
        print!("{}", host_table(&["CONTAINER", "EXIT CODE"], rows));
    }
    fails.finish()
}

/// Prints inspected objects from many hosts, each object with its `host`.
fn print_inspected(f: &Fleet, done: Vec<Done<Value>>) {
    let list = done
        .into_iter()
        .map(|d| with_host(&d.host, d.value))
        .collect();
    output::print_inspected(list, f.json());
}

/// `inspect` on every host: one pretty JSON array, each object with `host`.
pub async fn inspect(f: &Fleet, args: IdsArgs) -> Result<()> {
    let (done, fails) = fan_ids(f, &args.ids, "container", |ch, id| async move {
        let c = ContainersClient::new(ch)
            .inspect(InspectContainerRequest { id })
            .await?
            .into_inner()
            .container
            .ok_or_else(|| missing("container"))?;
        Ok(output::message_json(&c)?)
    })
    .await;
    print_inspected(f, done);
    fails.finish()
}

/// Writes log data with every line prefixed by its host, so output from
/// many hosts never runs together.
fn write_prefixed(prefix: &str, entry: &LogEntry, timestamps: bool) {
    let ts = match (&entry.time, timestamps) {
        (Some(t), true) => format!("{} ", output::rfc3339_fixed(t)),
        _ => String::new(),
    };
    let mut text = Vec::new();
    for line in entry.data.split_inclusive(|b| *b == b'\n') {
        text.extend_from_slice(prefix.as_bytes());
        text.extend_from_slice(ts.as_bytes());
        text.extend_from_slice(line);
        if line.last() != Some(&b'\n') {
            text.push(b'\n');
        }
    }
    // A closed stdout or stderr (piped into head) is not an error to report.
    if entry.stream == LogStream::Stderr as i32 {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(&text);
        let _ = err.flush();
    } else {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&text);
        let _ = out.flush();
    }
}

fn prefix_width(f: &Fleet) -> usize {
    f.members
        .iter()
        .map(|m| m.name.chars().count())
        .max()
        .unwrap_or(0)
}

fn write_log_entry(
    f: &Fleet,
    host: &str,
    width: usize,
    entry: &LogEntry,
    timestamps: bool,
) -> Result<()> {
    if f.json() {
        print_json_line(&with_host(host, output::log_entry_json(entry)?));
    } else {
        write_prefixed(&format!("{host:<width$} | "), entry, timestamps);
    }
    Ok(())
}

/// `logs` on every host that has the container: lines prefixed with the
/// host. Without -f each host's output is printed whole, in host order;
/// with -f lines are printed as they come.
pub async fn logs(f: &Fleet, args: LogsArgs) -> Result<()> {
    let req = logs_request(&args, SystemTime::now())?;
    let width = prefix_width(f);
    let follow = args.follow;
    let timestamps = args.timestamps;
    let call = |m: Rc<Member>, ch: Channel| {
        let req = req.clone();
        async move {
            let mut stream = ContainersClient::new(ch).logs(req).await?.into_inner();
            let mut kept = Vec::new();
            while let Some(entry) = stream.message().await? {
                if follow {
                    write_log_entry(f, &m.name, width, &entry, timestamps)?;
                } else {
                    kept.push(entry);
                }
            }
            Ok(kept)
        }
    };
    let results = if follow {
        f.each_untimed(call).await
    } else {
        f.each(call).await
    };
    let mut fails = Failures {
        total: results.len(),
        ..Default::default()
    };
    let mut found = false;
    for (m, r) in results {
        match r {
            Ok(entries) => {
                found = true;
                for e in &entries {
                    write_log_entry(f, &m.name, width, e, timestamps)?;
                }
            }
            Err(Error::Status(s)) if s.code() == Code::NotFound => {}
            Err(e) => {
                found = true;
                fails.push(&m.name, e)
            }
        }
    }
    if !found {
        fails.push_general(Error::Message(format!(
            "no such container on any targeted host: {}",
            args.id
        )));
    }
    fails.finish()
}

/// `create` on every host.
pub async fn create(f: &Fleet, args: CreateArgs) -> Result<()> {
    let spec = spec_from_args(&args.spec, args.rm, env_lookup)?;
    let results = f
        .each(|_, ch| {
            let spec = spec.clone();
            async move {
                ContainersClient::new(ch)
                    .create(CreateContainerRequest { spec: Some(spec) })
                    .await?
                    .into_inner()
                    .container
                    .ok_or_else(|| missing("container"))
            }
        })
        .await;
    let (ok, fails) = split(results);
    print_containers(f, &ok)?;
    fails.finish()
}

fn print_containers(f: &Fleet, ok: &[(Rc<Member>, berth::v1::Container)]) -> Result<()> {
    if f.json() {
        for (m, c) in ok {
            print_json_line(&with_host(&m.name, output::message_json(c)?));
        }
    } else {
        let rows = ok
            .iter()
            .map(|(m, c)| (m.name.clone(), vec![c.id.clone(), c.name.clone()]))
            .collect();
        print!("{}", host_table(&["CONTAINER ID", "NAME"], rows));
    }
    Ok(())
}

/// `run` on every host (or, with --place, on the hosts placement chooses).
/// Detached: prints where each container runs. Attached: output from every
/// host, prefixed, then the exit status (the containers' common exit code,
/// or 1 when they differ or a host failed).
pub async fn run(f: &Fleet, args: RunArgs) -> Result<()> {
    if let Some(strategy) = args.place {
        return run_placed(f, args, strategy).await;
    }
    let spec = spec_from_args(&args.spec, args.rm, env_lookup)?;
    if args.detach {
        let results = f
            .each(|_, ch| {
                let spec = spec.clone();
                async move {
                    ContainersClient::new(ch)
                        .run(RunContainerRequest { spec: Some(spec) })
                        .await?
                        .into_inner()
                        .container
                        .ok_or_else(|| missing("container"))
                }
            })
            .await;
        let (ok, fails) = split(results);
        print_containers(f, &ok)?;
        return fails.finish();
    }
    let width = prefix_width(f);
    let results = f
        .each_untimed(|m, ch| {
            let spec = spec.clone();
            async move {
                let mut c = ContainersClient::new(ch);
                let id = c
                    .create(CreateContainerRequest { spec: Some(spec) })
                    .await?
                    .into_inner()
                    .container
                    .ok_or_else(|| missing("container"))?
                    .id;
                // Follow before starting so no output is missed.
                let mut logs = c.logs(follow_request(&id)).await?.into_inner();
                c.start(StartContainerRequest { id: id.clone() }).await?;
                while let Some(entry) = logs.message().await? {
                    write_log_entry(f, &m.name, width, &entry, false)?;
                }
                let exit = c
                    .wait(WaitContainerRequest {
                        id,
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .exit
                    .ok_or_else(|| missing("exit status"))?;
                Ok(exit.exit_code)
            }
        })
        .await;
    let (ok, fails) = split(results);
    let codes: HashSet<i32> = ok.iter().map(|(_, c)| *c).collect();
    for (m, code) in &ok {
        if *code != 0 {
            eprintln!("berthctl: {}: container exited with {code}", m.name);
        }
    }
    fails.finish()?;
    match codes.into_iter().collect::<Vec<_>>().as_slice() {
        [] | [0] => Ok(()),
        [code] => Err(Error::Exit(*code)),
        _ => Err(Error::Exit(1)),
    }
}

/// `run --place`: asks every targeted agent for its capacity, plans all
/// replicas first (so a refusal starts nothing), then starts them detached
/// and says where each went.
async fn run_placed(f: &Fleet, args: RunArgs, strategy: Placement) -> Result<()> {
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
                let mut c = ContainersClient::new(ch);
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

/// Reads the archive once, whatever the number of hosts.
async fn read_archive(file: &str) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    let r = if file == "-" {
        tokio::io::stdin().read_to_end(&mut data).await
    } else {
        match tokio::fs::File::open(file).await {
            Ok(mut f) => f.read_to_end(&mut data).await,
            Err(e) => return Err(Error::Message(format!("cannot open {file}: {e}"))),
        }
    };
    r.map_err(|e| Error::Message(format!("cannot read {file}: {e}")))?;
    Ok(data)
}

/// `image import` to every host, concurrently, from one read of the file.
pub async fn image_import(f: &Fleet, args: ImportArgs) -> Result<()> {
    let data = Arc::new(read_archive(&args.file).await?);
    let reference = args.reference.clone();
    let results = f
        .each(|_, ch| {
            let data = data.clone();
            let first = import_options(reference.as_deref());
            async move {
                let chunks = data.len().div_ceil(CHUNK_SIZE);
                let body = (0..chunks).map(move |i| {
                    let end = ((i + 1) * CHUNK_SIZE).min(data.len());
                    ImportImageRequest {
                        payload: Some(Payload::Chunk(data[i * CHUNK_SIZE..end].to_vec())),
                    }
                });
                let msgs = tokio_stream::iter(std::iter::once(first).chain(body));
                Ok(ImagesClient::new(ch)
                    .import(msgs)
                    .await?
                    .into_inner()
                    .images)
            }
        })
        .await;
    let (ok, fails) = split(results);
    if f.json() {
        for (m, images) in &ok {
            for i in images {
                print_json_line(&with_host(&m.name, output::message_json(i)?));
            }
        }
    } else {
        let mut rows = Vec::new();
        for (m, images) in &ok {
            for i in images {
                let refs = if i.references.is_empty() {
                    "<none>".to_string()
                } else {
                    i.references.join(", ")
                };
                rows.push((
                    m.name.clone(),
                    vec![output::short_image_id(&i.id).to_string(), refs],
                ));
            }
        }
        print!("{}", host_table(&["IMAGE ID", "IMPORTED"], rows));
    }
    fails.finish()
}

/// `image ls` on every host.
pub async fn image_ls(f: &Fleet) -> Result<()> {
    let results = f
        .each(|_, ch| async move {
            Ok(ImagesClient::new(ch)
                .list(ListImagesRequest {})
                .await?
                .into_inner()
                .images)
        })
        .await;
    let (ok, fails) = split(results);
    let now = SystemTime::now();
    if f.json() {
        for (m, images) in &ok {
            for i in images {
                print_json_line(&with_host(&m.name, output::message_json(i)?));
            }
        }
    } else {
        let mut rows = Vec::new();
        for (m, images) in &ok {
            for r in image_rows(images, now) {
                rows.push((m.name.clone(), r));
            }
        }
        print!("{}", host_table(&IMAGE_HEADERS, rows));
    }
    fails.finish()
}

/// `image rm` on every host.
pub async fn image_rm(f: &Fleet, args: ImageRmArgs) -> Result<()> {
    let force = args.force;
    let (done, fails) = fan_ids(f, &args.images, "image", |ch, image| async move {
        let r = ImagesClient::new(ch)
            .remove(RemoveImageRequest { image, force })
            .await?
            .into_inner();
        Ok(output::message_json(&r)?)
    })
    .await;
    print_done(f, &done, "IMAGE");
    fails.finish()
}

/// `image inspect` on every host: one pretty JSON array with `host` fields.
pub async fn image_inspect(f: &Fleet, args: ImageIdsArgs) -> Result<()> {
    let (done, fails) = fan_ids(f, &args.images, "image", |ch, image| async move {
        let i = ImagesClient::new(ch)
            .inspect(InspectImageRequest { image })
            .await?
            .into_inner()
            .image
            .ok_or_else(|| missing("image"))?;
        Ok(output::message_json(&i)?)
    })
    .await;
    print_inspected(f, done);
    fails.finish()
}

/// What `info`/`top-hosts` learn of a host.
#[derive(Debug, Clone)]
pub struct HostInfo {
    /// The health service's answer ("serving", "not serving", ...).
    pub health: String,
    /// Round trip of the health check on the open connection.
    pub latency: std::time::Duration,
    /// The agent's Info.
    pub info: InfoResponse,
}

async fn host_info(ch: Channel) -> Result<HostInfo> {
    use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient};
    let mut health = HealthClient::new(ch.clone());
    let t0 = Instant::now();
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner()
        .status;
    let latency = t0.elapsed();
    let health = match ServingStatus::try_from(status) {
        Ok(ServingStatus::Serving) => "serving",
        Ok(ServingStatus::NotServing) => "not serving",
        _ => "unknown",
    }
    .to_string();
    let info = AgentClient::new(ch)
        .info(InfoRequest {})
        .await?
        .into_inner();
    Ok(HostInfo {
        health,
        latency,
        info,
    })
}

/// The `info`/`top-hosts` table headers.
pub const HOSTS_HEADERS: [&str; 10] = [
    "HOST", "HEALTH", "VERSION", "LATENCY", "CGROUP", "CPUS", "MEMORY", "RUNNING", "LOAD",
    "RESERVED",
];

/// One row of the hosts table.
pub fn host_row(host: &str, h: &HostInfo) -> Vec<String> {
    let i = &h.info;
    let cap = Capacity::from_info(host, i);
    vec![
        host.to_string(),
        h.health.clone(),
        i.version.clone(),
        format!("{:.1}ms", h.latency.as_secs_f64() * 1000.0),
        format!("v{}", i.cgroup_version),
        format!(
            "{} ({} reserved)",
            i.cpus,
            trim_float(i.nano_cpus_requested as f64 / 1e9)
        ),
        format!(
            "{} free of {} ({} reserved)",
            output::binary_size(cap.memory_free()),
            output::binary_size(i.memory_total_bytes),
            output::binary_size(i.memory_requested_bytes)
        ),
        i.containers_running.to_string(),
        format!("{:.2}", i.load_average_1m),
        format!("{:.0}%", cap.reserved() * 100.0),
    ]
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `info` across hosts (sorted by host), or `top-hosts` (least loaded
/// first, as `run --place least-loaded` would choose them).
pub async fn hosts(f: &Fleet, by_load: bool) -> Result<()> {
    let results = f.each(|_, ch| host_info(ch)).await;
    let (mut ok, fails) = split(results);
    if by_load {
        let mut caps: Vec<Capacity> = ok
            .iter()
            .map(|(m, h)| Capacity::from_info(&m.name, &h.info))
            .collect();
        place::least_loaded_order(&mut caps);
        let rank: HashMap<String, usize> = caps
            .into_iter()
            .enumerate()
            .map(|(i, c)| (c.host, i))
            .collect();
        ok.sort_by_key(|(m, _)| rank.get(&m.name).copied().unwrap_or(usize::MAX));
    }
    if f.json() {
        for (m, h) in &ok {
            let mut v = with_host(&m.name, output::message_json(&h.info)?);
            v["health"] = json!(h.health);
            v["latencyMs"] = json!(h.latency.as_secs_f64() * 1000.0);
            print_json_line(&v);
        }
    } else {
        let rows: Vec<Vec<String>> = ok.iter().map(|(m, h)| host_row(&m.name, h)).collect();
        print!("{}", output::table(&HOSTS_HEADERS, &rows));
    }
    fails.finish()
}

/// `version` across hosts.
pub async fn version(f: &Fleet) -> Result<()> {
    let results = f
        .each(|_, ch| async move {
            Ok(AgentClient::new(ch)
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
                "client": {"version": crate::info::CLIENT_VERSION, "apiVersion": berth::API_VERSION},
                "server": {"version": i.version, "apiVersion": i.api_version, "os": i.os, "architecture": i.architecture},
            }));
        }
    } else {
        println!(
            "Client: {} (API {})",
            crate::info::CLIENT_VERSION,
            berth::API_VERSION
        );
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
