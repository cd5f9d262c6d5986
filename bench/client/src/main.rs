//! berth-bench: a resident gRPC client of berthd for the benchmark numbers
//! that a command line cannot give (no process start per sample).
//!
//! `bench/run.sh` drives it; every subcommand prints JSON on stdout.
//!
//! - `lifecycle`: stays resident; for each line read on stdin runs one
//!   Create + Start + Wait + Remove of a `/bin/true` container and prints one
//!   JSON line with the total and per-RPC nanoseconds. The driver interleaves
//!   these samples with the other tools' samples.
//! - `concurrent`: N containers, K in flight, through the API.
//! - `stop`: Stop of a TERM-ignoring container with timeout T, actual time.
//! - `events`: E lifecycle events (Kill with a harmless signal) delivered to
//!   S subscribers: throughput and delivery latency.
//! - `replay`: E lifecycle events published, then read back by one
//!   subscriber from the first of them (`from_seq`): replay throughput, most
//!   of it from the event log on disk.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth::client::{connect, Address};
use berth::v1::containers_client::ContainersClient;
use berth::v1::events_client::EventsClient;
use berth::v1::{
    ContainerSpec, CreateContainerRequest, EventAction, KillContainerRequest,
    RemoveContainerRequest, Resources, RunContainerRequest, StartContainerRequest,
    StopContainerRequest, SubscribeRequest, WaitContainerRequest,
};
use clap::{Parser, Subcommand};
use serde_json::json;
use tonic::transport::Channel;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Parser)]
struct Cli {
    /// berthd's socket.
    #[arg(long, short = 'H')]
    host: String,
    /// Image reference.
    #[arg(long, default_value = "busybox")]
    image: String,
    /// Run containers without a seccomp filter (to measure the filter's
    /// cost against the default profile).
    #[arg(long)]
    unconfined: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// One lifecycle per stdin line; one JSON line each.
    Lifecycle {
        /// Memory limit in bytes (0: none).
        #[arg(long, default_value_t = 0)]
        memory: i64,
    },
    /// `total` containers, `inflight` at a time.
    Concurrent {
        #[arg(long, default_value_t = 50)]
        total: usize,
        #[arg(long, default_value_t = 10)]
        inflight: usize,
    },
    /// Stop of a TERM-ignoring container.
    Stop {
        #[arg(long, default_value_t = 1)]
        timeout: u32,
        #[arg(long, default_value_t = 5)]
        samples: usize,
    },
    /// Event fan-out.
    Events {
        #[arg(long, default_value_t = 10_000)]
        events: usize,
        #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
        subscribers: Vec<usize>,
        /// Concurrent RPC callers producing events.
        #[arg(long, default_value_t = 4)]
        producers: usize,
    },
    /// Replay of stored events.
    Replay {
        #[arg(long, default_value_t = 50_000)]
        events: usize,
        /// Replays of the same events, each timed.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
}

/// Set once from `--unconfined` before any container is made.
static UNCONFINED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn spec(image: &str, cmd: &[&str], memory: i64) -> ContainerSpec {
    let unconfined = UNCONFINED.load(std::sync::atomic::Ordering::Relaxed);
    ContainerSpec {
        security: unconfined.then(|| berth::v1::SecurityOptions {
            seccomp: Some(berth::v1::SeccompProfile {
                kind: berth::v1::seccomp_profile::Kind::Unconfined as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        image: image.to_string(),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        resources: (memory > 0).then(|| Resources {
            memory_bytes: memory,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

/// Create + Start + Wait + Remove; per-phase nanoseconds.
async fn lifecycle_once(
    c: &mut ContainersClient<Channel>,
    image: &str,
    memory: i64,
) -> Res<serde_json::Value> {
    let t0 = Instant::now();
    let created = c
        .create(CreateContainerRequest {
            spec: Some(spec(image, &["/bin/true"], memory)),
        })
        .await?
        .into_inner()
        .container
        .ok_or("no container")?;
    let id = created.id;
    let t1 = Instant::now();
    c.start(StartContainerRequest { id: id.clone() }).await?;
    let t2 = Instant::now();
    let w = c
        .wait(WaitContainerRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let t3 = Instant::now();
    c.remove(RemoveContainerRequest {
        id: id.clone(),
        force: false,
        ..Default::default()
    })
    .await?;
    let t4 = Instant::now();
    let code = w.exit.map(|x| x.exit_code).unwrap_or(-1);
    if code != 0 {
        return Err(format!("container exited {code}").into());
    }
    Ok(json!({
        "total_ns": ns(t4 - t0),
        "create_ns": ns(t1 - t0),
        "start_ns": ns(t2 - t1),
        "wait_ns": ns(t3 - t2),
        "remove_ns": ns(t4 - t3),
    }))
}

async fn channel(host: &str) -> Res<Channel> {
    Ok(connect(&Address::parse(host)?).await?)
}

async fn lifecycle(host: &str, image: &str, memory: i64) -> Res<()> {
    let mut c = ContainersClient::new(channel(host).await?);
    // stdin through a plain thread: tokio's io-std feature is not among the
    // workspace's, and adding it would rebuild tokio for every crate.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            if line.is_err() || tx.send(()).is_err() {
                break;
            }
        }
    });
    println!("{}", json!({"ready": true}));
    while rx.recv().await.is_some() {
        let out = match lifecycle_once(&mut c, image, memory).await {
            Ok(v) => v,
            Err(e) => json!({"error": e.to_string()}),
        };
        println!("{out}");
    }
    Ok(())
}

async fn concurrent(host: &str, image: &str, total: usize, inflight: usize) -> Res<()> {
    let ch = channel(host).await?;
    let sem = Arc::new(tokio::sync::Semaphore::new(inflight));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..total {
        let permit = sem.clone().acquire_owned().await?;
        let mut c = ContainersClient::new(ch.clone());
        let image = image.to_string();
        tasks.push(tokio::spawn(async move {
            let r = lifecycle_once(&mut c, &image, 0).await;
            drop(permit);
            r.map_err(|e| e.to_string())
        }));
    }
    let mut errors = 0;
    for t in tasks {
        if t.await?.is_err() {
            errors += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"total": total, "inflight": inflight, "seconds": secs,
               "per_second": total as f64 / secs, "errors": errors})
    );
    Ok(())
}

async fn stop(host: &str, image: &str, timeout: u32, samples: usize) -> Res<()> {
    let mut c = ContainersClient::new(channel(host).await?);
    let mut out = Vec::new();
    for _ in 0..samples {
        let ctr = c
            .run(RunContainerRequest {
                spec: Some(spec(
                    image,
                    &["sh", "-c", "trap '' TERM; while :; do sleep 1; done"],
                    0,
                )),
            })
            .await?
            .into_inner()
            .container
            .ok_or("no container")?;
        // Let the shell install its trap.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t0 = Instant::now();
        let r = c
            .stop(StopContainerRequest {
                id: ctr.id.clone(),
                timeout_seconds: Some(timeout),
            })
            .await?
            .into_inner();
        let took = t0.elapsed();
        c.remove(RemoveContainerRequest {
            id: ctr.id,
            force: true,
            ..Default::default()
        })
        .await?;
        out.push(json!({"ns": ns(took), "killed": r.killed}));
    }
    println!("{}", json!({"timeout_s": timeout, "samples": out}));
    Ok(())
}

fn now_unix_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn events_round(
    host: &str,
    target: &str,
    n_events: usize,
    n_subs: usize,
    producers: usize,
) -> Res<serde_json::Value> {
    // Each subscriber has its own connection, like independent clients.
    let mut streams = Vec::new();
    for _ in 0..n_subs {
        let mut ec = EventsClient::new(channel(host).await?);
        let s = ec
            .subscribe(SubscribeRequest {
                containers: vec![target.to_string()],
                actions: vec![EventAction::Killed as i32],
                ..Default::default()
            })
            .await?
            .into_inner();
        streams.push(s);
    }
    // Subscribers are registered once Subscribe has answered; give the
    // server a moment anyway.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for mut s in streams {
        let done_tx = done_tx.clone();
        tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n_events);
            let mut first = None;
            let mut last = None;
            let mut error = None;
            while lat.len() < n_events {
                match tokio::time::timeout(Duration::from_secs(30), s.message()).await {
                    Ok(Ok(Some(ev))) => {
                        let now = now_unix_ns();
                        let t = ev
                            .time
                            .map(|t| t.seconds as i128 * 1_000_000_000 + t.nanos as i128)
                            .unwrap_or(now);
                        lat.push((now - t).max(0) as u64);
                        let i = Instant::now();
                        first.get_or_insert(i);
                        last = Some(i);
                    }
                    Ok(Ok(None)) => {
                        error = Some("stream ended".to_string());
                        break;
                    }
                    Ok(Err(st)) => {
                        error = Some(format!("{:?}: {}", st.code(), st.message()));
                        break;
                    }
                    Err(_) => {
                        error = Some("timed out".to_string());
                        break;
                    }
                }
            }
            let _ = done_tx.send((lat, first, last, error));
        });
    }
    drop(done_tx);
    let ch = channel(host).await?;
    let t0 = Instant::now();
    produce_kills(&ch, target, n_events, producers).await?;
    let produce_s = t0.elapsed().as_secs_f64();
    let mut all = Vec::new();
    let mut errors = Vec::new();
    let mut delivered = 0usize;
    let mut complete = 0usize;
    let mut end = t0;
    while let Some((lat, _first, last, err)) = done_rx.recv().await {
        delivered += lat.len();
        if lat.len() == n_events {
            complete += 1;
        }
        if let Some(l) = last {
            end = end.max(l);
        }
        if let Some(e) = err {
            errors.push(e);
        }
        all.extend(lat);
    }
    all.sort_unstable();
    let deliver_s = (end - t0).as_secs_f64();
    errors.sort();
    errors.dedup();
    Ok(json!({
        "subscribers": n_subs,
        "events": n_events,
        "producers": producers,
        "produce_seconds": produce_s,
        "deliver_seconds": deliver_s,
        "events_per_second": n_events as f64 / deliver_s,
        "deliveries_per_second": delivered as f64 / deliver_s,
        "delivered": delivered,
        "complete_subscribers": complete,
        "latency_p50_ns": pct(&all, 0.50),
        "latency_p90_ns": pct(&all, 0.90),
        "latency_p99_ns": pct(&all, 0.99),
        "latency_max_ns": all.last().copied().unwrap_or(0),
        "errors": errors,
    }))
}

async fn events(
    host: &str,
    image: &str,
    n_events: usize,
    subs: &[usize],
    producers: usize,
) -> Res<()> {
    let ch = channel(host).await?;
    let target = run_sleeper(&ch, image).await?;
    let mut rounds = Vec::new();
    let mut failure = None;
    for &s in subs {
        match events_round(host, &target, n_events, s, producers).await {
            Ok(v) => rounds.push(v),
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    ContainersClient::new(ch)
        .remove(RemoveContainerRequest {
            id: target,
            force: true,
            ..Default::default()
        })
        .await?;
    println!("{}", json!({"rounds": rounds, "error": failure}));
    Ok(())
}

/// `n` Kill calls on `target` from `producers` concurrent callers: `n`
/// `killed` events.
async fn produce_kills(ch: &Channel, target: &str, n: usize, producers: usize) -> Res<()> {
    let per = n / producers;
    let mut tasks = Vec::new();
    for p in 0..producers {
        let mut c = ContainersClient::new(ch.clone());
        let target = target.to_string();
        let count = if p == producers - 1 {
            n - per * (producers - 1)
        } else {
            per
        };
        tasks.push(tokio::spawn(async move {
            for _ in 0..count {
                c.kill(KillContainerRequest {
                    id: target.clone(),
                    signal: "SIGWINCH".into(),
                })
                .await
                .map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        t.await?.map_err(|e| format!("producer: {e}"))?;
    }
    Ok(())
}

/// Runs a container that sleeps until it is removed (the target of the
/// event benchmarks); returns its id.
async fn run_sleeper(ch: &Channel, image: &str) -> Res<String> {
    Ok(ContainersClient::new(ch.clone())
        .run(RunContainerRequest {
            spec: Some(spec(image, &["sh", "-c", "while :; do sleep 1; done"], 0)),
        })
        .await?
        .into_inner()
        .container
        .ok_or("no container")?
        .id)
}

/// Publishes `n` events, then replays them `rounds` times from the first,
/// one subscriber filtering on the container (as a client catching up on
/// one container does).
async fn replay(host: &str, image: &str, n: usize, rounds: usize) -> Res<()> {
    let ch = channel(host).await?;
    let target = run_sleeper(&ch, image).await?;
    let filter = SubscribeRequest {
        containers: vec![target.clone()],
        actions: vec![EventAction::Killed as i32],
        ..Default::default()
    };
    // The first produced event's seq, from a live subscription.
    let mut live = EventsClient::new(ch.clone())
        .subscribe(filter.clone())
        .await?
        .into_inner();
    let t0 = Instant::now();
    let produced = produce_kills(&ch, &target, n, 4).await;
    let produce_s = t0.elapsed().as_secs_f64();
    let result = match produced {
        Ok(()) => match live.message().await {
            Ok(Some(first)) => {
                drop(live);
                replay_rounds(&ch, filter, first.seq, n, rounds).await
            }
            Ok(None) => Err("live stream ended".into()),
            Err(s) => Err(s.into()),
        },
        Err(e) => Err(e),
    };
    ContainersClient::new(ch)
        .remove(RemoveContainerRequest {
            id: target,
            force: true,
            ..Default::default()
        })
        .await?;
    let secs = result?;
    let per_s: Vec<f64> = secs.iter().map(|s| n as f64 / s).collect();
    println!(
        "{}",
        json!({"events": n, "produce_seconds": produce_s, "replay_seconds": secs,
               "events_per_second": per_s})
    );
    Ok(())
}

async fn replay_rounds(
    ch: &Channel,
    filter: SubscribeRequest,
    from: u64,
    n: usize,
    rounds: usize,
) -> Res<Vec<f64>> {
    let mut out = Vec::new();
    for _ in 0..rounds {
        let t0 = Instant::now();
        let mut s = EventsClient::new(ch.clone())
            .subscribe(SubscribeRequest {
                from_seq: from,
                ..filter.clone()
            })
            .await?
            .into_inner();
        let mut got = 0;
        let mut last = 0;
        while got < n {
            let ev = s.message().await?.ok_or("stream ended")?;
            if ev.seq <= last {
                return Err(format!("seq {} after {last}", ev.seq).into());
            }
            last = ev.seq;
            got += 1;
        }
        out.push(t0.elapsed().as_secs_f64());
    }
    Ok(out)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    UNCONFINED.store(cli.unconfined, std::sync::atomic::Ordering::Relaxed);
    let r = match cli.cmd {
        Cmd::Lifecycle { memory } => lifecycle(&cli.host, &cli.image, memory).await,
        Cmd::Concurrent { total, inflight } => {
            concurrent(&cli.host, &cli.image, total, inflight).await
        }
        Cmd::Stop { timeout, samples } => stop(&cli.host, &cli.image, timeout, samples).await,
        Cmd::Events {
            events: n,
            subscribers,
            producers,
        } => events(&cli.host, &cli.image, n, &subscribers, producers).await,
        Cmd::Replay { events: n, rounds } => replay(&cli.host, &cli.image, n, rounds).await,
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
