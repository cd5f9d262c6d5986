//! Container commands: run, create, start, stop, kill, rm, wait, pause,
//! unpause, update, inspect, ps and logs.
//!
//! Each command is split into a pure part that builds the request from the
//! parsed arguments (unit-tested) and the part that talks to the agent.

use std::io::Write;
use std::time::SystemTime;

use berth::v1::run_attached_response::Event;
use berth::v1::{
    containers_client::ContainersClient, Container, ContainerSpec, ContainerState,
    CreateContainerRequest, InspectContainerRequest, KillContainerRequest, ListContainersRequest,
    LogEntry, LogStream, LogsRequest, PauseContainerRequest, RemoveContainerRequest, Resources,
    ResumeContainerRequest, RunAttachedRequest, RunAttachedResponse, RunContainerRequest,
    StartContainerRequest, StopContainerRequest, StringList, UpdateContainerRequest, WaitCondition,
    WaitContainerRequest,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::cli::{
    CreateArgs, IdsArgs, KillArgs, LogsArgs, PsArgs, RmArgs, RunArgs, SpecArgs, StopArgs,
    UpdateArgs,
};
use crate::ctx::{for_each, missing, report, Ctx};
use crate::error::{Error, Result, EXIT_BERTHCTL, EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND};
use crate::output::{self, print_json_line};
use crate::parse;

/// Builds the container spec from `run`/`create` flags. `lookup` reads
/// berthctl's environment, for `-e KEY` without a value.
pub fn spec_from_args(
    a: &SpecArgs,
    auto_remove: bool,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<ContainerSpec> {
    let resources = Resources {
        memory_bytes: a.memory.unwrap_or(0),
        memory_swap_bytes: a.memory_swap.unwrap_or(0),
        nano_cpus: a.cpus.unwrap_or(0),
        cpu_shares: a.cpu_shares.unwrap_or(0),
        pids_limit: a.pids_limit.unwrap_or(0),
        cpuset_cpus: a.cpuset_cpus.clone().unwrap_or_default(),
        cpuset_mems: a.cpuset_mems.clone().unwrap_or_default(),
    };
    Ok(ContainerSpec {
        image: a.image().to_string(),
        name: a.name.clone().unwrap_or_default(),
        command: a.command().to_vec(),
        // `--entrypoint ""` is a request to clear the image's entrypoint,
        // which the API expresses as a present but empty list.
        entrypoint: a.entrypoint.as_ref().map(|e| StringList {
            values: if e.is_empty() {
                vec![]
            } else {
                vec![e.clone()]
            },
        }),
        env: parse::env(&a.env, lookup)?,
        working_dir: a.workdir.clone().unwrap_or_default(),
        user: a.user.clone().unwrap_or_default(),
        hostname: a.hostname.clone().unwrap_or_default(),
        labels: parse::labels(&a.labels),
        resources: (resources != Resources::default()).then_some(resources),
        auto_remove,
        stop_signal: a.stop_signal.clone().unwrap_or_default(),
        stop_timeout_seconds: a.stop_timeout,
        restart_policy: a.restart,
    })
}

pub(crate) fn env_lookup(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// Prints a created or started container: its full id, or its JSON.
fn print_container(ctx: &Ctx, c: &Container) -> Result<()> {
    if ctx.json() {
        print_json_line(&output::message_json(c)?);
    } else {
        println!("{}", c.id);
    }
    Ok(())
}

/// `create`: prints the new container's id.
pub async fn create(ctx: &Ctx, args: CreateArgs) -> Result<()> {
    let spec = spec_from_args(&args.spec, args.rm, env_lookup)?;
    let mut client = ctx.containers().await?;
    let c = client
        .create(CreateContainerRequest { spec: Some(spec) })
        .await?
        .into_inner()
        .container
        .ok_or_else(|| missing("container"))?;
    print_container(ctx, &c)
}

/// The exit status of `run` when the container could not be started, as
/// `docker run` has it: 127 when the command was not found, 126 when it
/// could not be executed, 125 when the failure was not the command's.
/// `exit_code` is the container's exit code after the failed start, if the
/// agent still has the container.
pub fn start_failure_code(status: &Status, exit_code: Option<i32>) -> i32 {
    if status.code() != Code::FailedPrecondition {
        return EXIT_BERTHCTL;
    }
    if let Some(code @ (EXIT_CANNOT_EXECUTE | EXIT_NOT_FOUND)) = exit_code {
        return code;
    }
    // The container is gone (auto_remove, or Run's clean-up): go by what
    // the agent said.
    let msg = status.message().to_lowercase();
    if msg.contains("not found") || msg.contains("no such file") {
        EXIT_NOT_FOUND
    } else if msg.contains("permission denied")
        || msg.contains("exec format")
        || msg.contains("not executable")
    {
        EXIT_CANNOT_EXECUTE
    } else {
        EXIT_BERTHCTL
    }
}

fn run_error(code: i32, e: impl Into<Error>) -> Error {
    match e.into() {
        // Already an exit status of its own (connection failures are 125).
        e @ (Error::WithCode(..) | Error::Connect { .. } | Error::Exit(_)) => e,
        e => Error::WithCode(code, Box::new(e)),
    }
}

/// `run`: create, start and, unless detached, stream the output and exit
/// with the container's exit code.
pub async fn run(ctx: &Ctx, args: RunArgs) -> Result<()> {
    let spec = spec_from_args(&args.spec, args.rm, env_lookup)?;
    let mut client = ctx.containers().await?;
    if args.detach {
        let c = match client.run(RunContainerRequest { spec: Some(spec) }).await {
            Ok(r) => r
                .into_inner()
                .container
                .ok_or_else(|| missing("container"))?,
            // The agent removes a container whose Run failed, so the
            // message is all there is to go by.
            Err(s) => return Err(run_error(start_failure_code(&s, None), s)),
        };
        return print_container(ctx, &c);
    }
    run_attached(ctx, client, spec).await
}

/// Attached `run` in one call (RunAttached); an agent that predates it
/// gets the same done in steps.
async fn run_attached(
    ctx: &Ctx,
    mut client: ContainersClient<Channel>,
    spec: ContainerSpec,
) -> Result<()> {
    let request = RunAttachedRequest {
        spec: Some(spec.clone()),
    };
    let mut stream = match client.run_attached(request).await {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == Code::Unimplemented => return run_in_steps(ctx, client, spec).await,
        // A container whose start failed is gone again: the message is
        // all there is to go by.
        Err(s) => return Err(run_error(start_failure_code(&s, None), s)),
    };
    let id = match stream.message().await {
        Ok(Some(RunAttachedResponse {
            event: Some(Event::Started(c)),
        })) => c.id,
        Ok(_) => return Err(run_error(EXIT_BERTHCTL, missing("started container"))),
        Err(s) => return Err(run_error(EXIT_BERTHCTL, s)),
    };
    let mut interrupts = Interrupts::new();
    loop {
        tokio::select! {
            msg = stream.message() => match msg {
                Ok(Some(RunAttachedResponse { event: Some(Event::Output(entry)) })) => {
                    write_entry(ctx, &entry, false)?
                }
                Ok(Some(RunAttachedResponse { event: Some(Event::Exit(exit)) })) => {
                    return match exit.exit_code {
                        0 => Ok(()),
                        code => Err(Error::Exit(code)),
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err(run_error(EXIT_BERTHCTL, missing("exit status"))),
                Err(s) => return Err(run_error(EXIT_BERTHCTL, s)),
            },
            Some(()) = interrupts.next() => interrupts.stop(&client, &id),
        }
    }
}

/// Attached `run` in steps: Create, Logs, Start, Wait.
async fn run_in_steps(
    ctx: &Ctx,
    mut client: ContainersClient<Channel>,
    spec: ContainerSpec,
) -> Result<()> {
    let auto_remove = spec.auto_remove;
    let c = client
        .create(CreateContainerRequest { spec: Some(spec) })
        .await
        .map_err(|s| run_error(EXIT_BERTHCTL, s))?
        .into_inner()
        .container
        .ok_or_else(|| run_error(EXIT_BERTHCTL, missing("container")))?;
    let id = c.id;

    // Open the log stream before starting, and wait for the agent to answer
    // (it opens the log first), so not a byte of output is missed, even of a
    // container removed as soon as it exits.
    let logs = match client.logs(follow_request(&id)).await {
        Ok(r) => r.into_inner(),
        Err(s) => {
            if auto_remove {
                remove_quietly(&mut client, &id).await;
            }
            return Err(run_error(EXIT_BERTHCTL, s));
        }
    };
    if let Err(s) = client.start(StartContainerRequest { id: id.clone() }).await {
        let exit_code = client
            .inspect(InspectContainerRequest { id: id.clone() })
            .await
            .ok()
            .and_then(|r| r.into_inner().container)
            .and_then(|c| c.exit)
            .map(|x| x.exit_code);
        if auto_remove {
            remove_quietly(&mut client, &id).await;
        }
        return Err(run_error(start_failure_code(&s, exit_code), s));
    }

    // With --rm, wait until the agent has removed the container (as
    // `docker run --rm` does), so its name is free again when run returns.
    // The wait is asked for now, so its answer comes as soon as the agent
    // knows, not one round trip after the output ends.
    let condition = if auto_remove {
        WaitCondition::Removed
    } else {
        WaitCondition::NotRunning
    };
    let waiting = {
        let mut client = client.clone();
        let req = WaitContainerRequest {
            id: id.clone(),
            condition: condition as i32,
        };
        tokio::spawn(async move { client.wait(req).await })
    };
    if let Err(e) = copy_until_exit(ctx, &client, &id, logs).await {
        waiting.abort();
        return Err(e);
    }
    let exit = waiting
        .await
        .map_err(|e| {
            run_error(
                EXIT_BERTHCTL,
                Error::Message(format!("waiting for the container: {e}")),
            )
        })?
        .map_err(|s| run_error(EXIT_BERTHCTL, s))?
        .into_inner()
        .exit
        .ok_or_else(|| run_error(EXIT_BERTHCTL, missing("exit status")))?;
    match exit.exit_code {
        0 => Ok(()),
        code => Err(Error::Exit(code)),
    }
}

/// The Logs request `run` uses: everything, following.
pub fn follow_request(id: &str) -> LogsRequest {
    LogsRequest {
        id: id.to_string(),
        follow: true,
        ..Default::default()
    }
}

/// Removes a container `run` created but could not start, so that `--rm`
/// leaves nothing behind. Its failure is not worth a second error message.
async fn remove_quietly(client: &mut ContainersClient<Channel>, id: &str) {
    let _ = client
        .remove(RemoveContainerRequest {
            id: id.to_string(),
            force: true,
        })
        .await;
}

/// Copies the followed output to stdout/stderr until the container exits.
/// Ctrl-C stops the container (the agent's Stop: stop signal, then SIGKILL
/// after the timeout) and a second Ctrl-C kills it, while output keeps
/// flowing, so what the container prints on its way out is not lost.
async fn copy_until_exit(
    ctx: &Ctx,
    client: &ContainersClient<Channel>,
    id: &str,
    mut logs: tonic::Streaming<LogEntry>,
) -> Result<()> {
    let mut interrupts = Interrupts::new();
    loop {
        tokio::select! {
            entry = logs.message() => match entry {
                Ok(Some(entry)) => write_entry(ctx, &entry, false)?,
                Ok(None) => return Ok(()),
                Err(s) => return Err(run_error(EXIT_BERTHCTL, s)),
            },
            Some(()) = interrupts.next() => interrupts.stop(client, id),
        }
    }
}

/// Ctrl-C during an attached `run`: the first stops the container (its stop
/// signal, then SIGKILL after its timeout), the next kills it. Without a
/// handler Ctrl-C just ends berthctl and the container runs on; that is
/// acceptable if the handler cannot be installed.
struct Interrupts {
    sigint: Option<tokio::signal::unix::Signal>,
    seen: u32,
}

impl Interrupts {
    fn new() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Interrupts {
            sigint: signal(SignalKind::interrupt()).ok(),
            seen: 0,
        }
    }

    /// The next Ctrl-C; never, without a handler.
    async fn next(&mut self) -> Option<()> {
        match self.sigint.as_mut() {
            Some(s) => s.recv().await,
            None => std::future::pending().await,
        }
    }

    fn stop(&mut self, client: &ContainersClient<Channel>, id: &str) {
        self.seen += 1;
        let mut client = client.clone();
        let id = id.to_string();
        let first = self.seen == 1;
        tokio::spawn(async move {
            let result = if first {
                client
                    .stop(StopContainerRequest {
                        id,
                        timeout_seconds: None,
                    })
                    .await
                    .map(|_| ())
            } else {
                client
                    .kill(KillContainerRequest {
                        id,
                        signal: "SIGKILL".into(),
                    })
                    .await
                    .map(|_| ())
            };
            // The container may have exited meanwhile; that is the goal anyway.
            if let Err(s) = result {
                if s.code() != Code::FailedPrecondition && s.code() != Code::NotFound {
                    report(&Error::Status(s));
                }
            }
        });
    }
}

/// Writes one log entry: its bytes to stdout or stderr as the container
/// wrote them (flushed, so interleaving with the other stream is kept), or
/// as a JSON line.
fn write_entry(ctx: &Ctx, entry: &LogEntry, timestamps: bool) -> Result<()> {
    if ctx.json() {
        print_json_line(&output::log_entry_json(entry)?);
        return Ok(());
    }
    let prefix = match (&entry.time, timestamps) {
        (Some(t), true) => format!("{} ", output::rfc3339_fixed(t)),
        _ => String::new(),
    };
    // A closed stdout or stderr (piped into head) is not an error to report.
    if entry.stream == LogStream::Stderr as i32 {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(prefix.as_bytes());
        let _ = err.write_all(&entry.data);
        let _ = err.flush();
    } else {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(prefix.as_bytes());
        let _ = out.write_all(&entry.data);
        let _ = out.flush();
    }
    Ok(())
}

/// Runs `call` on each container, printing its id (or its JSON with `-o
/// json`) when it succeeds; failures are reported and the others go on.
async fn each_printing<F, Fut>(ctx: &Ctx, ids: &[String], call: F) -> Result<()>
where
    F: Fn(ContainersClient<Channel>, String) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<Option<Container>, Status>>,
{
    let client = ctx.containers().await?;
    for_each(ids, |id| {
        let fut = call(client.clone(), id.clone());
        async move {
            let c = fut.await?;
            print_id_or_json(ctx, &id, c.as_ref())
        }
    })
    .await?
    .into_result()
    .map(drop)
}

/// `start`: starts each container; prints its id.
pub async fn start(ctx: &Ctx, args: IdsArgs) -> Result<()> {
    each_printing(ctx, &args.ids, |mut c, id| async move {
        Ok(c.start(StartContainerRequest { id })
            .await?
            .into_inner()
            .container)
    })
    .await
}

/// `pause`: freezes each container; prints its id.
pub async fn pause(ctx: &Ctx, args: IdsArgs) -> Result<()> {
    each_printing(ctx, &args.ids, |mut c, id| async move {
        Ok(c.pause(PauseContainerRequest { id })
            .await?
            .into_inner()
            .container)
    })
    .await
}

/// `unpause`: thaws each container; prints its id.
pub async fn unpause(ctx: &Ctx, args: IdsArgs) -> Result<()> {
    each_printing(ctx, &args.ids, |mut c, id| async move {
        Ok(c.resume(ResumeContainerRequest { id })
            .await?
            .into_inner()
            .container)
    })
    .await
}

/// `update`: changes limits and/or the restart policy; prints each id.
pub async fn update(ctx: &Ctx, args: UpdateArgs) -> Result<()> {
    let resources = Resources {
        memory_bytes: args.memory.unwrap_or(0),
        memory_swap_bytes: args.memory_swap.unwrap_or(0),
        nano_cpus: args.cpus.unwrap_or(0),
        cpu_shares: args.cpu_shares.unwrap_or(0),
        pids_limit: args.pids_limit.unwrap_or(0),
        cpuset_cpus: args.cpuset_cpus.clone().unwrap_or_default(),
        cpuset_mems: args.cpuset_mems.clone().unwrap_or_default(),
    };
    let resources = (resources != Resources::default()).then_some(resources);
    if resources.is_none() && args.restart.is_none() {
        return Err(Error::Message(
            "nothing to update: give a limit (--memory, --cpus, ...) or --restart".into(),
        ));
    }
    let restart_policy = args.restart;
    each_printing(ctx, &args.ids, |mut c, id| {
        let resources = resources.clone();
        async move {
            let req = UpdateContainerRequest {
                id,
                resources,
                restart_policy,
            };
            Ok(c.update(req).await?.into_inner().container)
        }
    })
    .await
}

fn print_id_or_json(ctx: &Ctx, id: &str, c: Option<&Container>) -> Result<()> {
    match c {
        Some(c) if ctx.json() => print_json_line(&output::message_json(c)?),
        _ => println!("{id}"),
    }
    Ok(())
}

/// The Stop request for one container.
pub fn stop_request(id: &str, time: Option<u32>) -> StopContainerRequest {
    StopContainerRequest {
        id: id.to_string(),
        timeout_seconds: time,
    }
}

/// `stop`: prints each id as given; JSON says whether SIGKILL was needed.
pub async fn stop(ctx: &Ctx, args: StopArgs) -> Result<()> {
    let client = ctx.containers().await?;
    for_each(&args.ids, |id| {
        let mut client = client.clone();
        async move {
            let r = client
                .stop(stop_request(&id, args.time))
                .await?
                .into_inner();
            if ctx.json() {
                print_json_line(&output::message_json(&r)?);
            } else {
                println!("{id}");
            }
            Ok(())
        }
    })
    .await?
    .into_result()
    .map(drop)
}

/// The Kill request for one container; `signal` is already validated.
pub fn kill_request(id: &str, signal: &str) -> KillContainerRequest {
    KillContainerRequest {
        id: id.to_string(),
        signal: signal.to_string(),
    }
}

/// `kill`: prints each id as given.
pub async fn kill(ctx: &Ctx, args: KillArgs) -> Result<()> {
    let client = ctx.containers().await?;
    let signal = &args.signal;
    for_each(&args.ids, |id| {
        let mut client = client.clone();
        async move {
            client.kill(kill_request(&id, signal)).await?;
            if ctx.json() {
                print_json_line(&output::message_json(&kill_request(&id, signal))?);
            } else {
                println!("{id}");
            }
            Ok(())
        }
    })
    .await?
    .into_result()
    .map(drop)
}

/// `rm`: prints each id as given.
pub async fn rm(ctx: &Ctx, args: RmArgs) -> Result<()> {
    let client = ctx.containers().await?;
    let force = args.force;
    for_each(&args.ids, |id| {
        let mut client = client.clone();
        async move {
            let r = client
                .remove(RemoveContainerRequest {
                    id: id.clone(),
                    force,
                })
                .await?
                .into_inner();
            if ctx.json() {
                print_json_line(&output::message_json(&r)?);
            } else {
                println!("{id}");
            }
            Ok(())
        }
    })
    .await?
    .into_result()
    .map(drop)
}

/// `wait`: prints each exit code and exits with the last one.
pub async fn wait(ctx: &Ctx, args: IdsArgs) -> Result<()> {
    let client = ctx.containers().await?;
    let codes = for_each(&args.ids, |id| {
        let mut client = client.clone();
        async move {
            let r = client
                .wait(WaitContainerRequest {
                    id,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let exit = r.exit.ok_or_else(|| missing("exit status"))?;
            if ctx.json() {
                print_json_line(&output::message_json(&r)?);
            } else {
                println!("{}", exit.exit_code);
            }
            Ok(exit.exit_code)
        }
    })
    .await?
    .into_result()?;
    match codes.last() {
        Some(0) | None => Ok(()),
        Some(&code) => Err(Error::Exit(code)),
    }
}

/// `inspect`: the containers found as a pretty JSON array, as `docker
/// inspect` (one object per line with `-o json`); exit status 1 if any was
/// not found.
pub async fn inspect(ctx: &Ctx, args: IdsArgs) -> Result<()> {
    let client = ctx.containers().await?;
    let each = for_each(&args.ids, |id| {
        let mut client = client.clone();
        async move {
            client
                .inspect(InspectContainerRequest { id })
                .await?
                .into_inner()
                .container
                .ok_or_else(|| missing("container"))
        }
    })
    .await?;
    let list = each
        .values
        .iter()
        .map(output::message_json)
        .collect::<Result<Vec<_>>>()?;
    output::print_inspected(list, ctx.json());
    each.into_result().map(drop)
}

/// Builds the List request of `ps` from its flags and `--filter`s.
pub fn list_request(args: &PsArgs) -> Result<ListContainersRequest> {
    let mut req = ListContainersRequest::default();
    for f in &args.filters {
        let (key, value) = f
            .split_once('=')
            .ok_or_else(|| Error::Message(format!("invalid filter {f:?} (expected key=value)")))?;
        match key {
            "label" => {
                let (k, v) = parse::label(value)?;
                req.labels.insert(k, v);
            }
            "name" => {
                if !req.name.is_empty() && req.name != value {
                    return Err(Error::Message("only one name filter is supported".into()));
                }
                req.name = value.to_string();
            }
            "status" => {
                let state = match value {
                    "created" => ContainerState::Created,
                    "running" => ContainerState::Running,
                    "exited" => ContainerState::Exited,
                    "paused" => ContainerState::Paused,
                    "restarting" => ContainerState::Restarting,
                    _ => {
                        return Err(Error::Message(format!(
                            "invalid status filter {value:?} (expected created, running, paused, restarting or exited)"
                        )))
                    }
                };
                req.states.push(state as i32);
            }
            _ => {
                return Err(Error::Message(format!(
                    "invalid filter {key:?} (expected label, name or status)"
                )))
            }
        }
    }
    // Like docker ps: only running containers, unless -a or a status filter
    // says otherwise.
    if !args.all_containers && req.states.is_empty() {
        req.states.extend([
            ContainerState::Running as i32,
            ContainerState::Paused as i32,
            ContainerState::Restarting as i32,
        ]);
    }
    Ok(req)
}

/// The rows of the `ps` table.
pub fn ps_rows(containers: &[Container], now: SystemTime, no_trunc: bool) -> Vec<Vec<String>> {
    containers
        .iter()
        .map(|c| {
            vec![
                if no_trunc {
                    c.id.clone()
                } else {
                    output::short_id(&c.id).to_string()
                },
                c.image.clone(),
                output::command_column(c, no_trunc),
                output::ago(&c.created_at, now),
                output::status_text(c, now),
                c.name.clone(),
            ]
        })
        .collect()
}

/// Headers of the `ps` table.
pub const PS_HEADERS: [&str; 6] = [
    "CONTAINER ID",
    "IMAGE",
    "COMMAND",
    "CREATED",
    "STATUS",
    "NAMES",
];

/// `ps`.
pub async fn ps(ctx: &Ctx, args: PsArgs) -> Result<()> {
    let req = list_request(&args)?;
    let mut client = ctx.containers().await?;
    let containers = client.list(req).await?.into_inner().containers;
    if args.quiet {
        for c in &containers {
            println!(
                "{}",
                if args.no_trunc {
                    &c.id
                } else {
                    output::short_id(&c.id)
                }
            );
        }
    } else if ctx.json() {
        for c in &containers {
            print_json_line(&output::message_json(c)?);
        }
    } else {
        let rows = ps_rows(&containers, SystemTime::now(), args.no_trunc);
        print!("{}", output::table(&PS_HEADERS, &rows));
    }
    Ok(())
}

/// Builds the Logs request from `logs` flags; `now` anchors `--since 10m`.
pub fn logs_request(args: &LogsArgs, now: SystemTime) -> Result<LogsRequest> {
    let tail = match args.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(n.parse::<u32>().map_err(|_| {
            Error::Message(format!(
                "invalid --tail {n:?} (expected a number or \"all\")"
            ))
        })?),
    };
    let since = args
        .since
        .as_deref()
        .map(|s| parse::since(s, now))
        .transpose()?;
    Ok(LogsRequest {
        id: args.id.clone(),
        follow: args.follow,
        tail,
        since,
        streams: vec![],
    })
}

/// `logs`: the container's stdout to stdout and stderr to stderr.
pub async fn logs(ctx: &Ctx, args: LogsArgs) -> Result<()> {
    let req = logs_request(&args, SystemTime::now())?;
    let mut client = ctx.containers().await?;
    let mut stream = client.logs(req).await?.into_inner();
    while let Some(entry) = stream.message().await? {
        write_entry(ctx, &entry, args.timestamps)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use std::time::{Duration, UNIX_EPOCH};

    fn cli(args: &[&str]) -> Command {
        match Cli::try_parse_from(std::iter::once("berthctl").chain(args.iter().copied())) {
            Ok(c) => c.command.0,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    fn run_spec(args: &[&str]) -> ContainerSpec {
        let (spec, rm) = match cli(args) {
            Command::Run(r) => (r.spec, r.rm),
            Command::Create(c) => (c.spec, c.rm),
            other => panic!("{other:?}"),
        };
        let lookup = |k: &str| (k == "FROM_HOST").then(|| "yes".to_string());
        match spec_from_args(&spec, rm, lookup) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn minimal_spec_leaves_everything_to_the_image() {
        let s = run_spec(&["run", "busybox"]);
        assert_eq!(
            s,
            ContainerSpec {
                image: "busybox".into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn full_spec() {
        let s = run_spec(&[
            "run",
            "--rm",
            "--name",
            "web",
            "-e",
            "A=1",
            "-e",
            "FROM_HOST",
            "-e",
            "NOT_SET",
            "-w",
            "/srv",
            "-u",
            "1000:1000",
            "--hostname",
            "h",
            "-l",
            "app=web",
            "-l",
            "tier",
            "--entrypoint",
            "/bin/sh",
            "--memory",
            "64m",
            "--memory-swap",
            "128m",
            "--cpus",
            "1.5",
            "--cpu-shares",
            "512",
            "--pids-limit",
            "100",
            "--cpuset-cpus",
            "0-1",
            "--cpuset-mems",
            "0",
            "--stop-signal",
            "INT",
            "--stop-timeout",
            "3",
            "busybox",
            "-c",
            "echo hi",
        ]);
        assert_eq!(s.image, "busybox");
        assert_eq!(s.name, "web");
        assert_eq!(s.command, ["-c", "echo hi"]);
        assert_eq!(
            s.entrypoint,
            Some(StringList {
                values: vec!["/bin/sh".into()]
            })
        );
        assert_eq!(s.env, ["A=1", "FROM_HOST=yes"]);
        assert_eq!(
            (s.working_dir.as_str(), s.user.as_str(), s.hostname.as_str()),
            ("/srv", "1000:1000", "h")
        );
        assert_eq!(s.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(s.labels.get("tier").map(String::as_str), Some(""));
        assert_eq!(
            s.resources,
            Some(Resources {
                memory_bytes: 64 << 20,
                memory_swap_bytes: 128 << 20,
                nano_cpus: 1_500_000_000,
                cpu_shares: 512,
                pids_limit: 100,
                cpuset_cpus: "0-1".into(),
                cpuset_mems: "0".into(),
            })
        );
        assert!(s.auto_remove);
        assert_eq!(s.stop_signal, "SIGINT");
        assert_eq!(s.stop_timeout_seconds, Some(3));
    }

    #[test]
    fn empty_entrypoint_clears_it() {
        let s = run_spec(&["create", "--entrypoint", "", "busybox", "ls"]);
        assert_eq!(s.entrypoint, Some(StringList { values: vec![] }));
        assert_eq!(s.command, ["ls"]);
        assert!(!s.auto_remove);
        assert!(run_spec(&["create", "--rm", "busybox"]).auto_remove);
    }

    #[test]
    fn start_failures() {
        let fp = |m: &str| Status::failed_precondition(m);
        assert_eq!(start_failure_code(&fp("exec failed"), Some(127)), 127);
        assert_eq!(start_failure_code(&fp("exec failed"), Some(126)), 126);
        assert_eq!(
            start_failure_code(
                &fp("exec: \"nope\": executable file not found in $PATH"),
                None
            ),
            127
        );
        assert_eq!(
            start_failure_code(&fp("exec /etc/passwd: permission denied"), None),
            126
        );
        assert_eq!(
            start_failure_code(&fp("container is already running"), None),
            125
        );
        assert_eq!(
            start_failure_code(&Status::internal("cgroup: not found"), Some(127)),
            125
        );
        assert_eq!(
            start_failure_code(&Status::not_found("no such image"), None),
            125
        );
    }

    #[test]
    fn run_errors_keep_their_own_codes() {
        let e = run_error(125, Status::internal("boom"));
        assert_eq!(
            (e.exit_code(), e.to_string()),
            (125, "internal error: boom".to_string())
        );
        let e = run_error(
            125,
            Error::Connect {
                addr: "a".into(),
                reason: "b".into(),
            },
        );
        assert!(matches!(e, Error::Connect { .. }));
        assert_eq!(
            run_error(127, Status::failed_precondition("x not found")).exit_code(),
            127
        );
    }

    #[test]
    fn simple_requests() {
        assert_eq!(
            follow_request("abc"),
            LogsRequest {
                id: "abc".into(),
                follow: true,
                ..Default::default()
            }
        );
        let Command::Stop(s) = cli(&["stop", "-t", "0", "web"]) else {
            panic!()
        };
        assert_eq!(
            stop_request(&s.ids[0], s.time),
            StopContainerRequest {
                id: "web".into(),
                timeout_seconds: Some(0)
            }
        );
        let Command::Stop(s) = cli(&["stop", "web"]) else {
            panic!()
        };
        assert_eq!(stop_request(&s.ids[0], s.time).timeout_seconds, None);
        let Command::Kill(k) = cli(&["kill", "-s", "15", "web"]) else {
            panic!()
        };
        assert_eq!(
            kill_request(&k.ids[0], &k.signal),
            KillContainerRequest {
                id: "web".into(),
                signal: "15".into()
            }
        );
    }

    fn ps_request(args: &[&str]) -> Result<ListContainersRequest> {
        let Command::Ps(p) = cli(args) else { panic!() };
        list_request(&p)
    }

    #[test]
    fn ps_requests() {
        let running = vec![
            ContainerState::Running as i32,
            ContainerState::Paused as i32,
            ContainerState::Restarting as i32,
        ];
        let r = ps_request(&["ps"]).map_err(|e| e.to_string());
        assert_eq!(r.map(|r| r.states), Ok(running.clone()));
        let r = ps_request(&["ps", "-a"]).map_err(|e| e.to_string());
        assert_eq!(r.map(|r| r.states), Ok(vec![]));
        let r = ps_request(&["ps", "--filter", "status=exited", "-f", "status=created"])
            .map_err(|e| e.to_string());
        assert_eq!(
            r.map(|r| r.states),
            Ok(vec![
                ContainerState::Exited as i32,
                ContainerState::Created as i32
            ])
        );
        let Ok(r) = ps_request(&[
            "ps",
            "-a",
            "-f",
            "label=app=web",
            "-f",
            "label=tier",
            "-f",
            "name=we",
        ]) else {
            panic!()
        };
        assert_eq!(r.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(r.labels.get("tier").map(String::as_str), Some(""));
        assert_eq!(r.name, "we");
        assert!(r.states.is_empty());
        assert!(ps_request(&["ps", "-f", "status=bogus"]).is_err());
        assert!(ps_request(&["ps", "-f", "color=red"]).is_err());
        assert!(ps_request(&["ps", "-f", "name"]).is_err());
        assert!(ps_request(&["ps", "-f", "name=a", "-f", "name=b"]).is_err());
    }

    #[test]
    fn ps_table() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let c = Container {
            id: "0123456789abcdef".repeat(4),
            name: "web".into(),
            image: "busybox".into(),
            state: ContainerState::Running as i32,
            args: vec!["sleep".into(), "100".into()],
            created_at: Some(prost_types::Timestamp {
                seconds: 990,
                nanos: 0,
            }),
            started_at: Some(prost_types::Timestamp {
                seconds: 997,
                nanos: 0,
            }),
            ..Default::default()
        };
        let out = output::table(&PS_HEADERS, &ps_rows(&[c], now, false));
        assert_eq!(
            out,
            "CONTAINER ID   IMAGE     COMMAND       CREATED          STATUS         NAMES\n\
             0123456789ab   busybox   \"sleep 100\"   10 seconds ago   Up 3 seconds   web\n"
        );
    }

    #[test]
    fn logs_requests() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        let req = |args: &[&str]| {
            let Command::Logs(l) = cli(args) else {
                panic!()
            };
            logs_request(&l, now).map_err(|e| e.to_string())
        };
        assert_eq!(
            req(&["logs", "web"]),
            Ok(LogsRequest {
                id: "web".into(),
                ..Default::default()
            })
        );
        let Ok(r) = req(&["logs", "-f", "--tail", "5", "--since", "10m", "web"]) else {
            panic!()
        };
        assert!(r.follow);
        assert_eq!(r.tail, Some(5));
        assert_eq!(
            r.since,
            Some(prost_types::Timestamp {
                seconds: 9_400,
                nanos: 0
            })
        );
        assert_eq!(
            req(&["logs", "--tail", "all", "web"]).map(|r| r.tail),
            Ok(None)
        );
        assert!(req(&["logs", "--tail", "x3", "web"]).is_err());
        assert!(req(&["logs", "--since", "soon", "web"]).is_err());
    }
}

/// `run` and friends against the scripted fake agent in `fake.rs`.
#[cfg(test)]
mod agent_tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::fake::{Fake, ID};
    use clap::Parser;

    fn command(args: &[&str]) -> Command {
        match Cli::try_parse_from(std::iter::once("berthctl").chain(args.iter().copied())) {
            Ok(c) => c.command.0,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    async fn run_with(fake: &Fake, args: &[&str]) -> Result<()> {
        let ctx = fake.serve().await;
        let Command::Run(a) = command(args) else {
            panic!("not run")
        };
        run(&ctx, a).await
    }

    #[tokio::test]
    async fn attached_run_follows_logs_before_starting_and_exits_with_the_code() {
        let fake = Fake::default();
        fake.0.lock().map(|mut s| s.exit_code = 3).ok();
        let r = run_with(&fake, &["run", "--rm", "busybox", "true"]).await;
        assert!(matches!(r, Err(Error::Exit(3))), "{r:?}");
        assert_eq!(
            fake.calls(),
            [
                "create busybox".to_string(),
                format!("logs {ID} follow=true"),
                format!("start {ID}"),
                // --rm: run returns once the container is gone.
                format!("wait {ID} until=removed"),
            ]
        );
    }

    #[tokio::test]
    async fn attached_run_exit_zero_is_success() {
        let fake = Fake::default();
        assert!(run_with(&fake, &["run", "busybox"]).await.is_ok());
        // Without --rm there is no removal to wait for.
        assert_eq!(
            fake.calls().last(),
            Some(&format!("wait {ID} until=exited"))
        );
    }

    #[tokio::test]
    async fn command_not_found_exits_127_and_rm_cleans_up() {
        let fake = Fake::default();
        fake.0
            .lock()
            .map(|mut s| {
                s.start_error = Some(Status::failed_precondition("exec failed"));
                s.start_exit = Some(127);
            })
            .ok();
        let r = run_with(&fake, &["run", "--rm", "busybox", "nope"]).await;
        assert_eq!(r.as_ref().map_err(Error::exit_code), Err(127), "{r:?}");
        let calls = fake.calls();
        assert_eq!(
            calls[3..],
            [format!("inspect {ID}"), format!("remove {ID} force=true")]
        );
    }

    #[tokio::test]
    async fn failed_create_is_125() {
        let fake = Fake::default();
        fake.0
            .lock()
            .map(|mut s| s.create_error = Some(Status::not_found("no such image: nope")))
            .ok();
        let r = run_with(&fake, &["run", "nope"]).await;
        let Err(e) = r else { panic!("should fail") };
        assert_eq!(
            (e.exit_code(), e.to_string()),
            (125, "no such image: nope".to_string())
        );
        assert_eq!(fake.calls(), ["create nope"]);
    }

    #[tokio::test]
    async fn detached_run_uses_run() {
        let fake = Fake::default();
        assert!(run_with(&fake, &["run", "-d", "busybox"]).await.is_ok());
        assert_eq!(fake.calls(), ["run busybox"]);
        fake.0
            .lock()
            .map(|mut s| {
                s.start_error = Some(Status::failed_precondition("exec: \"x\": not found"))
            })
            .ok();
        let r = run_with(&fake, &["run", "-d", "busybox", "x"]).await;
        assert_eq!(r.map_err(|e| e.exit_code()), Err(127));
    }

    #[tokio::test]
    async fn multi_id_commands_go_on_after_a_failure() {
        let fake = Fake::default();
        let ctx = fake.serve().await;
        let Command::Stop(a) = command(&["stop", "-t", "1", "missing", "fake"]) else {
            panic!()
        };
        let r = stop(&ctx, a).await;
        assert!(matches!(r, Err(Error::Exit(1))), "{r:?}");
        assert_eq!(fake.calls(), ["stop missing", "stop fake"]);
    }

    #[tokio::test]
    async fn unreachable_agent_is_125() {
        let ctx = Ctx {
            host: "/nonexistent/berthd.sock".into(),
            tls: None,
            output: crate::cli::OutputFormat::Table,
        };
        let Command::Ps(a) = command(&["ps"]) else {
            panic!()
        };
        let Err(e) = ps(&ctx, a).await else {
            panic!("should fail")
        };
        assert_eq!(e.exit_code(), 125);
        assert!(e
            .to_string()
            .starts_with("cannot connect to berthd at unix:///nonexistent/berthd.sock: "));
        assert!(e.to_string().ends_with("(is berthd running?)"));
    }
}
