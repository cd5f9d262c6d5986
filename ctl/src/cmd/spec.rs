//! The container spec of `run` and `create`, from their flags.

use berth::v1::{ContainerSpec, Resources, StringList};

use crate::cli::SpecArgs;
use crate::error::Result;
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
        security: security(a)?,
        devices: a.devices.clone(),
        network: a.network.clone().unwrap_or_default(),
        ports: a
            .publish
            .iter()
            .map(|p| parse::ports(p))
            .collect::<std::result::Result<Vec<_>, String>>()?
            .into_iter()
            .flatten()
            .collect(),
        dns: a.dns.clone(),
        extra_hosts: a.add_host.clone(),
        network_aliases: a.network_aliases.clone(),
        mounts: mounts(a)?,
        open_stdin: a.interactive,
        tty: a.tty,
        publish_all: a.publish_all,
        storage_size_bytes: storage_size(&a.storage_opt)?,
        oom_score_adj: a.oom_score_adj,
        sysctls: a.sysctls.iter().cloned().collect(),
        group_add: a.group_add.clone(),
    })
}

/// `--storage-opt size=SIZE` (Docker's syntax; the last one given counts);
/// any other option is refused.
fn storage_size(opts: &[String]) -> Result<u64> {
    let mut size = 0;
    for o in opts {
        let bad = |why: String| crate::error::Error::Message(format!("--storage-opt: {why}"));
        let (key, value) = o
            .split_once('=')
            .ok_or_else(|| bad("expected size=SIZE".into()))?;
        if !key.trim().eq_ignore_ascii_case("size") {
            let key: String = key.chars().take(32).collect();
            return Err(bad(format!("unknown option {key:?} (only size=SIZE)")));
        }
        size = crate::parse::size(value).map_err(bad)? as u64;
    }
    Ok(size)
}

/// `-v`, `--mount` and `--tmpfs`, in that order.
fn mounts(a: &SpecArgs) -> Result<Vec<berth::v1::Mount>> {
    Ok(a.volumes
        .iter()
        .chain(&a.mounts)
        .chain(&a.tmpfs)
        .cloned()
        .collect())
}

/// `--security-opt`, `--cap-add`, `--cap-drop`, `--read-only` and
/// `--privileged`, `--userns`; unset when none is given.
fn security(a: &SpecArgs) -> Result<Option<berth::v1::SecurityOptions>> {
    let mut s =
        crate::security::security_opts(&a.security_opt, |p| std::fs::read(p))?.unwrap_or_default();
    s.cap_add = a.cap_add.clone();
    s.cap_drop = a.cap_drop.clone();
    s.read_only_rootfs = a.read_only;
    s.privileged = a.privileged;
    // "host" is the default: sent as nothing, so an agent that predates
    // user namespaces is not asked for anything.
    s.userns = a.userns.clone().filter(|m| m != "host").unwrap_or_default();
    Ok((s != berth::v1::SecurityOptions::default()).then_some(s))
}

pub(crate) fn env_lookup(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;
    use crate::cmd::parse_command as cli;

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
    fn storage_opt_size_in_dockers_syntax() {
        let s = run_spec(&["run", "--storage-opt", "size=8m", "busybox"]);
        assert_eq!(s.storage_size_bytes, 8 << 20);
        let s = run_spec(&["create", "--storage-opt", "Size=1G", "busybox"]);
        assert_eq!(s.storage_size_bytes, 1 << 30);
        for bad in ["driver=x", "size", "size=lots"] {
            let (spec, rm) = match cli(&["run", "--storage-opt", bad, "busybox"]) {
                Command::Run(r) => (r.spec, r.rm),
                other => panic!("{other:?}"),
            };
            assert!(spec_from_args(&spec, rm, |_| None).is_err(), "{bad}");
        }
    }

    #[test]
    fn interactive_and_tty() {
        for args in [
            &["run", "-it", "busybox", "sh"][..],
            &["run", "-d", "--interactive", "--tty", "busybox"],
            &["create", "-t", "-i", "busybox"],
        ] {
            let s = run_spec(args);
            assert!(s.open_stdin && s.tty, "{args:?}");
        }
        let s = run_spec(&["run", "-i", "busybox", "cat", "-t"]);
        assert!(s.open_stdin && !s.tty);
        assert_eq!(s.command, ["cat", "-t"]);
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
            "--network",
            "host",
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
        assert_eq!(s.network, "host");
    }

    #[test]
    fn empty_entrypoint_clears_it() {
        let s = run_spec(&["create", "--entrypoint", "", "busybox", "ls"]);
        assert_eq!(s.entrypoint, Some(StringList { values: vec![] }));
        assert_eq!(s.command, ["ls"]);
        assert!(!s.auto_remove);
        assert!(run_spec(&["create", "--rm", "busybox"]).auto_remove);
    }
}
