//! Size limits on every field of a container spec, checked before any
//! work is done on it.
//!
//! Why limits at all: a spec is stored, kept in memory, and sent back in
//! every Inspect, List and snapshot, twice for env and args (as given and
//! as merged with the image). Unbounded fields let one client make a
//! container no client can list ("decoded message length too large") and
//! stall the agent on a single request. The limits are chosen so that the
//! largest container accepted still fits, as one `Container` message (and
//! one snapshot `Event`), well inside gRPC's default 4 MiB message size,
//! and so that what passes can also be executed: the kernel refuses a
//! single argument or environment string over 128 KiB
//! (`MAX_ARG_STRLEN`) and argv plus envp over a quarter of the stack
//! limit (2 MiB with the usual 8 MiB), so larger values could never start.
//! Every limit is documented on its field in `proto/berth/v1/containers.proto`.

use super::error::{ContainerError, Result};
use super::record::SpecRecord;
use crate::error::capped;

/// Most bytes of an image reference (Docker's name limit is 255, plus tag
/// and digest).
pub const IMAGE_MAX: usize = 1024;
/// Most bytes of a container name.
pub const NAME_MAX: usize = 128;
/// Most entries in `command`, and in `entrypoint`.
pub const ARGS_MAX: usize = 4096;
/// Most entries in `env`.
pub const ENV_MAX: usize = 4096;
/// Most bytes of one argument or environment entry (the kernel's
/// `MAX_ARG_STRLEN`, 128 KiB with its NUL).
pub const ARG_BYTES_MAX: usize = 128 * 1024 - 1;
/// Most bytes of command, entrypoint and env together, and of the
/// effective argv plus environment after merging with the image, each
/// entry counted with its NUL (half the kernel's usual `ARG_MAX`).
pub const EXEC_BYTES_MAX: usize = 1024 * 1024;
/// Most labels.
pub const LABELS_MAX: usize = 1024;
/// Most bytes of a label key.
pub const LABEL_KEY_MAX: usize = 256;
/// Most bytes of a label value.
pub const LABEL_VALUE_MAX: usize = 4096;
/// Most bytes of all label keys and values together.
pub const LABELS_BYTES_MAX: usize = 256 * 1024;
/// Most bytes of `working_dir` (`PATH_MAX` with its NUL).
pub const WORKING_DIR_MAX: usize = 4095;
/// Most bytes of `user` (`LOGIN_NAME_MAX` for the name and the group).
pub const USER_MAX: usize = 256;
/// Most bytes of `stop_signal`.
pub const SIGNAL_MAX: usize = 32;
/// Most bytes of `resources.cpuset_cpus` and `resources.cpuset_mems`.
pub const CPUSET_MAX: usize = 1024;
/// Most bytes of a container key (id, id prefix or name) in a request:
/// longer ones cannot match anything.
pub const KEY_MAX: usize = NAME_MAX;

fn too_long(field: &'static str, what: &str, len: usize, max: usize) -> ContainerError {
    ContainerError::invalid(
        field,
        format!("{what} is {len} bytes long: at most {max} are accepted"),
    )
}

/// `s` as a field of at most `max` bytes.
pub fn check_len(field: &'static str, what: &str, s: &str, max: usize) -> Result<()> {
    if s.len() > max {
        return Err(too_long(field, what, s.len(), max));
    }
    Ok(())
}

/// `s` without NUL bytes: they cannot be passed to the kernel (argv, env,
/// paths and names are C strings), so they would only fail at Start.
pub fn check_no_nul(field: &'static str, what: &str, s: &str) -> Result<()> {
    if s.as_bytes().contains(&0) {
        return Err(ContainerError::invalid(
            field,
            format!(
                "{what} {:?} contains a NUL byte, which cannot be passed to a process",
                capped(s)
            ),
        ));
    }
    Ok(())
}

/// A list of strings for `execve` (argv or envp): entry count, entry
/// size and NUL bytes. Returns the bytes it takes, each entry with its NUL.
pub fn check_exec_list(
    field: &'static str,
    what: &str,
    list: &[String],
    max: usize,
) -> Result<usize> {
    if list.len() > max {
        return Err(ContainerError::invalid(
            field,
            format!("{} {what} entries: at most {max} are accepted", list.len()),
        ));
    }
    let mut total = 0;
    for s in list {
        check_len(field, &format!("a {what} entry"), s, ARG_BYTES_MAX)?;
        check_no_nul(field, &format!("{what} entry"), s)?;
        total += s.len() + 1;
    }
    Ok(total)
}

/// The bytes `args` and `env` take in `execve`, refused over
/// [`EXEC_BYTES_MAX`] (after merging with the image).
pub fn check_exec_total(field: &'static str, args: &[String], env: &[String]) -> Result<()> {
    let total: usize = args.iter().chain(env).map(|s| s.len() + 1).sum();
    if total > EXEC_BYTES_MAX {
        return Err(ContainerError::invalid(
            field,
            format!(
                "the command and environment take {total} bytes: at most {EXEC_BYTES_MAX} are accepted"
            ),
        ));
    }
    Ok(())
}

/// Checks every field of `spec` against its limit (cheap: one pass over
/// each field, before anything else looks at the spec).
pub fn check_spec(spec: &SpecRecord) -> Result<()> {
    check_len("image", "the image reference", &spec.image, IMAGE_MAX)?;
    check_len("name", "the name", &spec.name, NAME_MAX)?;
    let mut exec = check_exec_list("command", "command", &spec.command, ARGS_MAX)?;
    if let Some(ep) = &spec.entrypoint {
        exec += check_exec_list("entrypoint", "entrypoint", ep, ARGS_MAX)?;
    }
    exec += check_exec_list("env", "env", &spec.env, ENV_MAX)?;
    if exec > EXEC_BYTES_MAX {
        return Err(ContainerError::invalid(
            "env",
            format!(
                "command, entrypoint and env take {exec} bytes: at most {EXEC_BYTES_MAX} are accepted"
            ),
        ));
    }
    check_len(
        "working_dir",
        "the working directory",
        &spec.working_dir,
        WORKING_DIR_MAX,
    )?;
    check_no_nul("working_dir", "working directory", &spec.working_dir)?;
    check_len("user", "the user", &spec.user, USER_MAX)?;
    check_no_nul("user", "user", &spec.user)?;
    check_len(
        "stop_signal",
        "the stop signal",
        &spec.stop_signal,
        SIGNAL_MAX,
    )?;
    check_labels(spec)?;
    check_cpusets(&spec.limits)?;
    Ok(())
}

/// Cpuset strings are parsed and compared with the host's CPUs: bounded
/// first. Also used by Update.
pub fn check_cpusets(l: &super::record::LimitsRecord) -> Result<()> {
    check_len(
        "resources.cpuset_cpus",
        "cpuset cpus",
        &l.cpuset_cpus,
        CPUSET_MAX,
    )?;
    check_len(
        "resources.cpuset_mems",
        "cpuset mems",
        &l.cpuset_mems,
        CPUSET_MAX,
    )
}

fn check_labels(spec: &SpecRecord) -> Result<()> {
    let labels = &spec.labels;
    if labels.len() > LABELS_MAX {
        return Err(ContainerError::invalid(
            "labels",
            format!("{} labels: at most {LABELS_MAX} are accepted", labels.len()),
        ));
    }
    let mut total = 0;
    for (k, v) in labels {
        check_len("labels", "a label key", k, LABEL_KEY_MAX)?;
        if k.is_empty() {
            return Err(ContainerError::invalid("labels", "a label key is empty"));
        }
        if v.len() > LABEL_VALUE_MAX {
            return Err(ContainerError::invalid(
                "labels",
                format!(
                    "the value of label {:?} is {} bytes long: at most {LABEL_VALUE_MAX} are accepted",
                    capped(k),
                    v.len()
                ),
            ));
        }
        total += k.len() + v.len();
    }
    if total > LABELS_BYTES_MAX {
        return Err(ContainerError::invalid(
            "labels",
            format!("the labels take {total} bytes: at most {LABELS_BYTES_MAX} are accepted"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(r: Result<()>) -> &'static str {
        match r {
            Err(ContainerError::InvalidSpec { field, reason }) => {
                assert!(reason.len() < 200, "{reason}");
                field
            }
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn every_field_is_bounded_and_errors_stay_short() {
        let big = "x".repeat(1 << 20);
        let spec = |f: &dyn Fn(&mut SpecRecord)| {
            let mut s = SpecRecord {
                image: "busybox".into(),
                ..Default::default()
            };
            f(&mut s);
            check_spec(&s)
        };
        assert_eq!(field(spec(&|s| s.image = big.clone())), "image");
        assert_eq!(field(spec(&|s| s.name = big.clone())), "name");
        assert_eq!(field(spec(&|s| s.command = vec![big.clone()])), "command");
        assert_eq!(
            field(spec(&|s| s.command = vec![String::new(); ARGS_MAX + 1])),
            "command"
        );
        assert_eq!(
            field(spec(&|s| s.entrypoint = Some(vec![big.clone()]))),
            "entrypoint"
        );
        assert_eq!(
            field(spec(
                &|s| s.env = (0..100_000).map(|i| format!("K{i}=v")).collect()
            )),
            "env"
        );
        // Under the entry limits, over the total.
        let chunk = "x".repeat(ARG_BYTES_MAX);
        assert_eq!(field(spec(&|s| s.env = vec![chunk.clone(); 9])), "env");
        assert_eq!(field(spec(&|s| s.working_dir = big.clone())), "working_dir");
        assert_eq!(field(spec(&|s| s.user = big.clone())), "user");
        assert_eq!(field(spec(&|s| s.stop_signal = big.clone())), "stop_signal");
        assert_eq!(
            field(spec(&|s| {
                s.labels.insert(big.clone(), "v".into());
            })),
            "labels"
        );
        assert_eq!(
            field(spec(&|s| {
                s.labels.insert("k".into(), big.clone());
            })),
            "labels"
        );
        assert_eq!(
            field(spec(&|s| s.labels = (0..LABELS_MAX + 1)
                .map(|i| (i.to_string(), String::new()))
                .collect())),
            "labels"
        );
        assert_eq!(
            field(spec(&|s| s.limits.cpuset_cpus = big.clone())),
            "resources.cpuset_cpus"
        );
    }

    #[test]
    fn nul_bytes_are_refused_where_the_kernel_cannot_take_them() {
        let spec = |f: &dyn Fn(&mut SpecRecord)| {
            let mut s = SpecRecord::default();
            f(&mut s);
            check_spec(&s)
        };
        assert_eq!(field(spec(&|s| s.command = vec!["a\0b".into()])), "command");
        assert_eq!(
            field(spec(&|s| s.entrypoint = Some(vec!["\0".into()]))),
            "entrypoint"
        );
        assert_eq!(field(spec(&|s| s.env = vec!["A=\0".into()])), "env");
        assert_eq!(field(spec(&|s| s.user = "ro\0ot".into())), "user");
        assert_eq!(
            field(spec(&|s| s.working_dir = "/a\0".into())),
            "working_dir"
        );
    }

    #[test]
    fn the_largest_spec_passes() {
        let per = EXEC_BYTES_MAX / ENV_MAX - 1;
        let s = SpecRecord {
            env: (0..ENV_MAX)
                .map(|i| {
                    let k = format!("K{i}=");
                    format!("{k}{}", "v".repeat(per - k.len()))
                })
                .collect(),
            labels: (0..LABELS_MAX)
                .map(|i| {
                    (
                        format!("{i:0>255}"),
                        "v".repeat(LABELS_BYTES_MAX / LABELS_MAX - 255),
                    )
                })
                .collect(),
            working_dir: "/".repeat(WORKING_DIR_MAX),
            ..Default::default()
        };
        check_spec(&s).unwrap();
    }
}
