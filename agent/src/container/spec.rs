//! Turning a client's spec plus the image config into what actually runs,
//! and refusing bad specs before anything is created.

use rand::Rng;

use super::error::{ContainerError, Result};
use super::record::{LimitsRecord, SpecRecord};
use crate::cgroup::cpulist::{host_online, CpuList};
use crate::error::capped;
use crate::image::ImageConfig;

/// Smallest memory limit accepted (Docker's).
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// What the container will run, after merging with the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// argv.
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<String>,
    /// Working dir.
    pub cwd: String,
    /// User.
    pub user: String,
    /// Stop signal number.
    pub stop_signal: i32,
    /// Stop timeout seconds.
    pub stop_timeout: u32,
}

/// Merges `spec` over the image's defaults, the way Docker does: an
/// entrypoint override drops the image's Cmd too; env entries override by key.
pub fn merge(spec: &SpecRecord, image: &ImageConfig) -> Result<Effective> {
    let entrypoint = spec
        .entrypoint
        .clone()
        .unwrap_or_else(|| image.entrypoint.clone());
    let cmd = if !spec.command.is_empty() {
        spec.command.clone()
    } else if spec.entrypoint.is_some() {
        Vec::new()
    } else {
        image.cmd.clone()
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(ContainerError::invalid(
            "command",
            "no command: the image has no Entrypoint or Cmd, so give one",
        ));
    }
    let env = merge_env(&image.env, &spec.env)?;
    super::bounds::check_exec_total("env", &args, &env)?;
    let cwd = if !spec.working_dir.is_empty() {
        spec.working_dir.clone()
    } else if !image.working_dir.is_empty() {
        image.working_dir.clone()
    } else {
        "/".into()
    };
    if !cwd.starts_with('/') {
        return Err(ContainerError::invalid(
            "working_dir",
            format!(
                "working directory {:?} is not an absolute path",
                capped(&cwd)
            ),
        ));
    }
    let sig = if !spec.stop_signal.is_empty() {
        &spec.stop_signal
    } else if !image.stop_signal.is_empty() {
        &image.stop_signal
    } else {
        "SIGTERM"
    };
    let stop_signal = crate::signal::parse(sig)
        .map_err(|e| ContainerError::invalid("stop_signal", format!("stop signal: {e}")))?
        as i32;
    Ok(Effective {
        args,
        env,
        cwd,
        user: if spec.user.is_empty() {
            image.user.clone()
        } else {
            spec.user.clone()
        },
        stop_signal,
        stop_timeout: spec.stop_timeout_seconds.unwrap_or(10),
    })
}

/// The image's env with the spec's over it: an entry replaces the one
/// with its key, and each key sits where its last entry came. Linear (an
/// index of each key's last entry): a large env must not cost the square
/// of its size on an async worker.
fn merge_env(image: &[String], spec: &[String]) -> Result<Vec<String>> {
    let all = || image.iter().chain(spec.iter());
    let mut last: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(image.len() + spec.len());
    for (i, e) in all().enumerate() {
        let key = e.split('=').next().unwrap_or_default();
        if key.is_empty() {
            return Err(ContainerError::invalid(
                "env",
                format!("bad environment entry {:?}", capped(e)),
            ));
        }
        last.insert(key, i);
    }
    Ok(all()
        .enumerate()
        .filter(|(i, e)| last.get(e.split('=').next().unwrap_or_default()) == Some(i))
        .map(|(_, e)| e.clone())
        .collect())
}

/// Checks limits for sense before anything is created.
pub fn validate_limits(l: &LimitsRecord) -> Result<()> {
    let bad = |field, m: String| Err(ContainerError::invalid(field, m));
    if l.memory < 0 {
        return bad(
            "resources.memory_bytes",
            format!("memory limit {} is negative", l.memory),
        );
    }
    if l.memory > 0 && l.memory < MIN_MEMORY {
        return bad(
            "resources.memory_bytes",
            format!(
                "memory limit {} bytes is too small: the minimum is 6 MiB",
                l.memory
            ),
        );
    }
    if l.memory_swap != 0 {
        if l.memory == 0 {
            return bad(
                "resources.memory_swap_bytes",
                "a swap limit needs a memory limit too".into(),
            );
        }
        if l.memory_swap != -1 && l.memory_swap < l.memory {
            return bad(
                "resources.memory_swap_bytes",
                format!(
                    "memory+swap limit {} is smaller than the memory limit {}",
                    l.memory_swap, l.memory
                ),
            );
        }
    }
    if l.nano_cpus < 0 {
        return bad("resources.nano_cpus", "cpus must not be negative".into());
    }
    let online = || {
        std::thread::available_parallelism()
            .map(|n| n.get() as i64)
            .unwrap_or(1)
    };
    if l.nano_cpus > 0 && l.nano_cpus > online() * 1_000_000_000 {
        return bad(
            "resources.nano_cpus",
            format!(
                "cpus {:.2} is more than the {} CPUs of this host",
                l.nano_cpus as f64 / 1e9,
                online()
            ),
        );
    }
    if l.nano_cpus > 0 && l.nano_cpus < 10_000_000 {
        return bad("resources.nano_cpus", "cpus must be at least 0.01".into());
    }
    if l.cpu_shares == 1 || l.cpu_shares > 262_144 {
        return bad(
            "resources.cpu_shares",
            format!("cpu shares {} out of range 2..262144", l.cpu_shares),
        );
    }
    if l.pids < -1 {
        return bad(
            "resources.pids_limit",
            format!("pids limit {} is invalid", l.pids),
        );
    }
    super::bounds::check_cpusets(l)?;
    for (field, what, v, nodes) in [
        (
            "resources.cpuset_cpus",
            "cpuset cpus",
            &l.cpuset_cpus,
            false,
        ),
        ("resources.cpuset_mems", "cpuset mems", &l.cpuset_mems, true),
    ] {
        if v.is_empty() {
            continue;
        }
        let Some(want) = CpuList::parse(v) else {
            return bad(
                field,
                format!("{what} {:?} is not a list like \"0-2,4\"", capped(v)),
            );
        };
        // The kernel would refuse the write, and cgroups-rs drop the
        // error: say so now instead of running on the parent's set.
        if let Some(host) = host_online(nodes) {
            if !want.is_subset_of(&host) {
                return bad(
                    field,
                    format!(
                        "{what} {:?} are not all online on this host (online: {host})",
                        capped(v)
                    ),
                );
            }
        }
    }
    Ok(())
}

/// Checks a user-chosen container name (Docker's rule).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok && name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        // It would read as an id, of this or another container.
        return Err(ContainerError::invalid(
            "name",
            "a name of 64 hex digits would read as a container id: choose another",
        ));
    }
    if ok {
        Ok(())
    } else {
        Err(ContainerError::invalid(
            "name",
            format!(
                "invalid container name {:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128 characters",
                capped(name)
            ),
        ))
    }
}

/// A fresh 64-hex-character id.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

/// A readable generated name like "brisk_heron".
pub fn generate_name() -> String {
    const ADJ: [&str; 16] = [
        "brisk", "calm", "clever", "eager", "fond", "gentle", "happy", "keen", "lucid", "merry",
        "nimble", "proud", "quiet", "steady", "swift", "vivid",
    ];
    const NOUN: [&str; 16] = [
        "albatross",
        "beacon",
        "bollard",
        "cove",
        "ferry",
        "gull",
        "harbor",
        "heron",
        "jetty",
        "keel",
        "lighthouse",
        "mooring",
        "pier",
        "quay",
        "skiff",
        "tide",
    ];
    let mut rng = rand::rng();
    format!(
        "{}_{}_{}",
        ADJ[rng.random_range(0..ADJ.len())],
        NOUN[rng.random_range(0..NOUN.len())],
        rng.random_range(0..10_000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["default".into()],
            env: vec!["PATH=/bin".into(), "A=1".into()],
            working_dir: "/srv".into(),
            user: "www".into(),
            stop_signal: "SIGQUIT".into(),
            ..Default::default()
        }
    }

    #[test]
    fn image_defaults_apply() {
        let e = merge(&SpecRecord::default(), &image()).unwrap();
        assert_eq!(e.args, vec!["/entry", "default"]);
        assert_eq!(e.cwd, "/srv");
        assert_eq!(e.user, "www");
        assert_eq!(e.stop_signal, libc::SIGQUIT);
        assert_eq!(e.stop_timeout, 10);
    }

    #[test]
    fn overrides_win() {
        let spec = SpecRecord {
            command: vec!["x".into()],
            env: vec!["A=2".into(), "B=3".into()],
            working_dir: "/w".into(),
            user: "0".into(),
            stop_signal: "9".into(),
            ..Default::default()
        };
        let e = merge(&spec, &image()).unwrap();
        assert_eq!(e.args, vec!["/entry", "x"]);
        assert_eq!(e.env, vec!["PATH=/bin", "A=2", "B=3"]);
        assert_eq!(
            (e.cwd.as_str(), e.user.as_str(), e.stop_signal),
            ("/w", "0", 9)
        );
        let spec = SpecRecord {
            entrypoint: Some(vec!["/bin/sh".into()]),
            ..Default::default()
        };
        assert_eq!(merge(&spec, &image()).unwrap().args, vec!["/bin/sh"]);
    }

    #[test]
    fn bad_specs_are_refused() {
        let empty = ImageConfig::default();
        assert!(merge(&SpecRecord::default(), &empty).is_err());
        let rel = SpecRecord {
            command: vec!["x".into()],
            working_dir: "rel".into(),
            ..Default::default()
        };
        assert!(merge(&rel, &empty).is_err());
        let sig = SpecRecord {
            command: vec!["x".into()],
            stop_signal: "SIGBOGUS".into(),
            ..Default::default()
        };
        assert!(merge(&sig, &empty).is_err());
    }

    #[test]
    fn limits_are_checked() {
        let ok = LimitsRecord {
            memory: 64 << 20,
            nano_cpus: 500_000_000,
            pids: 32,
            cpuset_cpus: "0".into(),
            ..Default::default()
        };
        assert!(validate_limits(&ok).is_ok());
        let past = host_online(false)
            .map(|h| h.to_string())
            .unwrap_or_default();
        let last: u32 = past
            .rsplit(['-', ','])
            .next()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        for bad in [
            LimitsRecord {
                memory: 1024,
                ..Default::default()
            },
            LimitsRecord {
                memory: -5,
                ..Default::default()
            },
            LimitsRecord {
                memory_swap: 1 << 30,
                ..Default::default()
            },
            LimitsRecord {
                memory: 64 << 20,
                memory_swap: 1 << 20,
                ..Default::default()
            },
            LimitsRecord {
                nano_cpus: 1_000_000_000_000,
                ..Default::default()
            },
            LimitsRecord {
                cpu_shares: 1,
                ..Default::default()
            },
            LimitsRecord {
                pids: -7,
                ..Default::default()
            },
            LimitsRecord {
                cpuset_cpus: "a-b".into(),
                ..Default::default()
            },
            LimitsRecord {
                cpuset_cpus: (last + 1).to_string(),
                ..Default::default()
            },
            LimitsRecord {
                cpuset_cpus: "0-9999".into(),
                ..Default::default()
            },
            LimitsRecord {
                cpuset_mems: "0-64".into(),
                ..Default::default()
            },
        ] {
            assert!(validate_limits(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn env_merge_keeps_docker_order_and_is_linear() {
        let e = merge_env(
            &["A=1".into(), "PATH=/bin".into(), "B=1".into()],
            &["A=2".into(), "C=3".into(), "B=2".into()],
        )
        .unwrap();
        assert_eq!(e, vec!["PATH=/bin", "A=2", "C=3", "B=2"]);
        // Far beyond the accepted env (4096 entries), where a quadratic
        // merge (it took a minute for 100,000) could not finish: 400,000
        // entries overriding 400,000 would be 10^11 comparisons.
        const N: usize = 400_000;
        let image: Vec<String> = (0..N).map(|i| format!("K{i}=image")).collect();
        let spec: Vec<String> = (0..N).map(|i| format!("K{i}=spec")).collect();
        let e = merge_env(&image, &spec).unwrap();
        assert_eq!(e.len(), N);
        assert!(e.iter().all(|x| x.ends_with("=spec")));
        assert!(merge_env(&[], &["=x".into()]).is_err());
    }

    #[test]
    fn names() {
        assert!(validate_name("web-1.a_b").is_ok());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name(&new_id()).is_err());
        assert!(validate_name(&new_id()[..63]).is_ok());
        assert!(validate_name(&generate_name()).is_ok());
        assert_eq!(new_id().len(), 64);
    }
}
