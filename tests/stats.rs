//! End to end: Stats and Top against real containers, on whichever cgroup
//! version the host runs (scripts/test-cgroup-v2.sh stats for v2).

mod common;

use berth::v1 as pb;
use berth::v1::stats_client::StatsClient;
use common::{eventually, sh, Agent};
use tonic::Code;

fn stats(agent: &Agent) -> StatsClient<tonic::transport::Channel> {
    StatsClient::new(agent.channel.clone())
}

/// One sample (`stream` false, the shortest interval) of container `id`.
async fn one(agent: &Agent, id: &str) -> pb::ContainerStats {
    let mut s = stats(agent)
        .stats(pb::StatsRequest {
            containers: vec![id.to_string()],
            stream: false,
            interval_ms: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let r = s.message().await.unwrap().expect("one sample");
    assert!(
        s.message().await.unwrap().is_none(),
        "--no-stream sends one"
    );
    assert_eq!(r.containers.len(), 1);
    r.containers.into_iter().next().unwrap()
}

fn with_resources(mut spec: pb::ContainerSpec, r: pb::Resources) -> pb::ContainerSpec {
    spec.resources = Some(r);
    spec
}

#[tokio::test]
async fn memory_usage_follows_what_the_container_uses_and_shows_its_limit() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    // 24 MiB in a tmpfs (shared memory is charged to the container and is
    // not inactive file cache: it counts in the working set).
    let c = agent
        .run(with_resources(
            sh(
                "dd if=/dev/zero of=/dev/shm/fill bs=1M count=24 2>/dev/null; echo filled; \
                exec sleep 1000",
            ),
            pb::Resources {
                memory_bytes: 96 << 20,
                ..Default::default()
            },
        ))
        .await;
    agent.wait_for_output(&c.id, "filled").await;
    let s = one(&agent, &c.id).await;
    let m = s.memory.expect("memory");
    assert_eq!((m.limit_bytes, m.limited), (96 << 20, true));
    assert!(
        m.working_set_bytes >= 24 << 20 && m.working_set_bytes < 40 << 20,
        "24 MiB used, working set {m:?}"
    );
    assert!(m.usage_bytes >= m.working_set_bytes);
    assert_eq!(m.oom_kills, 0);
    assert_eq!(s.state, pb::ContainerState::Running as i32);
    // Network "none": counters, of no interface (lo is left out).
    let net = s.network.expect("network counters");
    assert!(net.interfaces.is_empty(), "{net:?}");
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn a_busy_container_uses_cpu() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let busy = agent.run(sh("while :; do :; done")).await;
    let idle = agent.run(sh("exec sleep 1000")).await;
    let first = one(&agent, &busy.id).await.cpu.expect("cpu");
    assert!(first.online_cpus >= 1 && first.host_usage_nanos > 0);
    // The busy loop's usage grows from sample to sample, and its share of
    // the interval is above the idle container's (no fixed figure: on a
    // loaded machine the loop gets what the scheduler leaves it).
    let mut last = first.usage_nanos;
    assert!(
        eventually(30, async || {
            let b = one(&agent, &busy.id).await.cpu.unwrap();
            let grew = b.usage_nanos > last;
            last = b.usage_nanos;
            let i = one(&agent, &idle.id).await.cpu.unwrap();
            grew && b.percent > 0.0 && b.percent > i.percent
        })
        .await,
        "busy loop's CPU usage did not show"
    );
    assert!(last > first.usage_nanos);
    agent.force_remove(&busy.id).await;
    agent.force_remove(&idle.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn pids_and_top_list_the_containers_processes_paused_too() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let c = agent
        .run(with_resources(
            sh("sleep 1001 & sleep 1002 & sleep 1003 & echo started; wait"),
            pb::Resources {
                pids_limit: 20,
                ..Default::default()
            },
        ))
        .await;
    agent.wait_for_output(&c.id, "started").await;
    // sh and its three sleeps.
    assert!(
        eventually(10, async || one(&agent, &c.id).await.pids.unwrap().current
            == 4)
        .await,
        "pids: {:?}",
        one(&agent, &c.id).await.pids
    );
    assert_eq!(one(&agent, &c.id).await.pids.unwrap().limit, 20);
    for paused in [false, true] {
        if paused {
            agent
                .containers()
                .pause(pb::PauseContainerRequest { id: c.id.clone() })
                .await
                .unwrap();
        }
        let top = stats(&agent)
            .top(pb::TopRequest {
                container: c.name.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let mut cmds: Vec<&str> = top.processes.iter().map(|p| p.command.as_str()).collect();
        cmds.sort();
        assert_eq!(
            cmds,
            [
                "sh -c sleep 1001 & sleep 1002 & sleep 1003 & echo started; wait",
                "sleep 1001",
                "sleep 1002",
                "sleep 1003"
            ],
            "paused: {paused}"
        );
        let init = top
            .processes
            .iter()
            .find(|p| p.command.starts_with("sh"))
            .unwrap();
        assert_eq!(init.container_pid, 1, "pid in the container");
        assert_eq!(init.pid, agent.inspect(&c.id).await.pid as i32, "host pid");
        for p in &top.processes {
            assert_ne!(p.pid, agent.pid() as i32);
            assert_eq!(p.user, "root");
            assert!(p.rss_bytes > 0, "{p:?}");
            if paused {
                // Frozen tasks show as sleeping (S) or, on v1, D.
                assert_ne!(p.state, "R", "{p:?}");
            }
            if p.command.starts_with("sleep") {
                assert_eq!(p.ppid, init.pid);
                assert!(p.container_pid > 1);
            }
        }
        assert!(!top.truncated);
    }
    // berthctl top shows the same processes.
    let out = agent.ctl(&["top", &c.name]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.starts_with("USER"), "{text}");
    assert_eq!(text.lines().filter(|l| l.contains("sleep 100")).count(), 4);
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn oom_kills_are_counted() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    // `tail` keeps an endless line in memory; the OOM killer ends it (the
    // biggest process), and the shell goes on.
    let c = agent
        .run(with_resources(
            sh("tail /dev/zero; echo survived; exec sleep 1000"),
            pb::Resources {
                memory_bytes: 32 << 20,
                ..Default::default()
            },
        ))
        .await;
    agent.wait_for_output(&c.id, "survived").await;
    let m = one(&agent, &c.id).await.memory.unwrap();
    assert_eq!(m.oom_kills, 1, "{m:?}");
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn streams_end_with_their_containers_and_stopped_ones_show_no_usage() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let a = agent.run(sh("exec sleep 1000")).await;
    let stopped = agent.create(sh("true")).await;
    let mut s = stats(&agent)
        .stats(pb::StatsRequest {
            containers: vec![a.id.clone(), stopped.name.clone(), a.name.clone()],
            stream: true,
            interval_ms: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..2 {
        let r = s.message().await.unwrap().unwrap();
        let ids: Vec<&str> = r.containers.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, [a.id.as_str(), stopped.id.as_str()], "duplicates once");
        assert!(r.containers[0].cpu.is_some() && r.containers[0].memory.is_some());
        let st = &r.containers[1];
        assert_eq!(st.state, pb::ContainerState::Created as i32);
        assert!(st.cpu.is_none() && st.memory.is_none() && st.pids.is_none());
    }
    agent.force_remove(&a.id).await;
    agent.force_remove(&stopped.id).await;
    // The stream ends (OK) once both are gone.
    let end = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while s.message().await.unwrap().is_some() {}
    })
    .await;
    assert!(end.is_ok(), "the stream did not end");
    agent.assert_clean().await;
}

fn code<T>(r: Result<T, tonic::Status>) -> Option<Code> {
    r.err().map(|s| s.code())
}

#[tokio::test]
async fn bad_requests_are_refused() {
    let agent = Agent::start().await;
    let req = |containers: Vec<String>, interval_ms| pb::StatsRequest {
        containers,
        stream: true,
        interval_ms,
        ..Default::default()
    };
    let mut c = stats(&agent);
    assert_eq!(
        code(c.stats(req(vec!["nope".into()], 0)).await),
        Some(Code::NotFound)
    );
    for bad in [1, 99, 60_001] {
        assert_eq!(
            code(c.stats(req(vec![], bad)).await),
            Some(Code::InvalidArgument)
        );
    }
    assert_eq!(
        code(c.stats(req(vec![String::new()], 0)).await),
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        code(c.stats(req(vec!["x".repeat(300)], 0)).await),
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        code(c.stats(req(vec!["x".into(); 1001], 0)).await),
        Some(Code::InvalidArgument)
    );
    let top = |k: &str| pb::TopRequest {
        container: k.into(),
    };
    assert_eq!(code(c.top(top("nope")).await), Some(Code::NotFound));
    assert_eq!(code(c.top(top("")).await), Some(Code::InvalidArgument));
    // The message does not echo unbounded input.
    let e = c
        .stats(req(vec!["y".repeat(100_000)], 0))
        .await
        .unwrap_err();
    assert!(e.message().len() < 200, "{}", e.message());
    agent.assert_clean().await;
}

#[tokio::test]
async fn berthctl_stats_prints_a_table_or_json() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let c = agent
        .run(with_resources(
            sh("exec sleep 1000"),
            pb::Resources {
                memory_bytes: 64 << 20,
                ..Default::default()
            },
        ))
        .await;
    let out = agent.ctl(&["stats", "--no-stream"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("CONTAINER ID   NAME"), "{text}");
    assert!(
        lines[1].contains(&c.name) && lines[1].contains("/ 64MiB"),
        "{text}"
    );
    let out = agent.ctl(&["stats", "--no-stream", "-o", "json", &c.name]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["id"], c.id.as_str());
    assert_eq!(v["memory"]["limitBytes"], (64u64 << 20).to_string());
    assert!(v["readAt"].is_string());
    // A stream that is not a terminal prints one table per sample.
    let mut child = std::process::Command::new(common::bin("berthctl"))
        .args(["--host", agent.socket.to_str().unwrap(), "stats", &c.name])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut headers = 0;
    let mut line = String::new();
    while headers < 2 {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut reader, &mut line).unwrap() > 0);
        headers += usize::from(line.starts_with("CONTAINER ID"));
    }
    let _ = child.kill();
    let _ = child.wait();
    let out = agent.ctl(&["stats", "--no-stream", "nope"]);
    assert!(!out.status.success());
    agent.force_remove(&c.id).await;
    agent.assert_clean().await;
}

#[tokio::test]
async fn berthctl_stats_and_top_across_hosts() {
    let a = Agent::start().await;
    let b = Agent::start().await;
    a.import_busybox().await;
    b.import_busybox().await;
    let ca = a.run(sh("exec sleep 1000")).await;
    let cb = b.run(sh("exec sleep 1001")).await;
    let hosts = format!("{},{}", a.socket.display(), b.socket.display());
    let ctl = |args: &[&str]| {
        std::process::Command::new(common::bin("berthctl"))
            .args(["--host", &hosts])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    // Every running container of both hosts, with a HOST column.
    let out = ctl(&["stats", "--no-stream"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("HOST"), "{text}");
    assert!(text.contains(&ca.name) && text.contains(&cb.name), "{text}");
    // Names that each host knows only one of.
    let out = ctl(&["stats", "--no-stream", &ca.name, &cb.name]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text.lines().count(), 3, "{text}");
    let out = ctl(&["stats", "--no-stream", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such container"));
    // top finds the container on its host.
    let out = ctl(&["top", &cb.name]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.starts_with("HOST") && text.contains("sleep 1001"),
        "{text}"
    );
    assert!(!text.contains("sleep 1000"), "{text}");
    a.force_remove(&ca.id).await;
    b.force_remove(&cb.id).await;
    a.assert_clean().await;
    b.assert_clean().await;
}

/// The cost of sampling 50 containers: berthd's CPU time per sample and
/// the time a sample takes beyond its interval. A measurement, not a check:
/// `cargo test -p berth --test stats -- --ignored --nocapture cost`.
#[tokio::test]
#[ignore]
async fn cost_of_a_sample_of_50_containers() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids.push(agent.run(sh("exec sleep 1000")).await.id);
    }
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", agent.pid())).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<u64> = rest.split(' ').map(|v| v.parse().unwrap_or(0)).collect();
        // utime + stime (fields 14, 15), in 10 ms ticks.
        (f[11] + f[12]) * 10
    };
    const SAMPLES: u32 = 100;
    let mut s = stats(&agent)
        .stats(pb::StatsRequest {
            stream: true,
            interval_ms: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The first sample (the baseline read) is not counted.
    assert_eq!(s.message().await.unwrap().unwrap().containers.len(), 50);
    let (cpu0, t0) = (cpu(), std::time::Instant::now());
    for _ in 0..SAMPLES {
        assert_eq!(s.message().await.unwrap().unwrap().containers.len(), 50);
    }
    let (cpu1, elapsed) = (cpu(), t0.elapsed());
    drop(s);
    // One-shot calls: a baseline read, 100 ms, a sample; what is beyond
    // the 100 ms is the cost of the two reads and the call.
    let t1 = std::time::Instant::now();
    for _ in 0..10 {
        let mut s = stats(&agent)
            .stats(pb::StatsRequest {
                stream: false,
                interval_ms: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(s.message().await.unwrap().unwrap().containers.len(), 50);
    }
    let one_shot = t1.elapsed().as_secs_f64() * 100.0 - 100.0;
    println!(
        "50 containers, {SAMPLES} samples at 100 ms in {:.1} s: berthd CPU {:.2} ms per sample \
         ({:.3} ms per container); a --no-stream call takes {one_shot:.1} ms beyond its interval",
        elapsed.as_secs_f64(),
        (cpu1 - cpu0) as f64 / f64::from(SAMPLES),
        (cpu1 - cpu0) as f64 / f64::from(SAMPLES) / 50.0,
    );
    for id in &ids {
        agent.force_remove(id).await;
    }
    agent.assert_clean().await;
}
