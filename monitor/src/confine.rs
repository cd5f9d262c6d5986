//! What the container's process starts with and what confines it besides
//! its namespaces, mounts and capabilities: a session keyring of its own,
//! a neutral OOM score and default resource limits (never berthd's), and
//! its seccomp filters.
//!
//! A session keyring is inherited across fork and exec: without a new one
//! every container would share berthd's (and read, link or add keys in it).
//!
//! The filters come compiled, from a file berthd wrote (the format is
//! `berth_runtime::seccomp`'s). The init reads it while host paths still
//! resolve, before `pivot_root`, and installs it as its very last step
//! before exec, so none of its own setup system calls are filtered.

use alloc::format;
use alloc::vec::Vec;

use berth_runtime::process;
use berth_runtime::seccomp::{self, MAX_FILE_BYTES};
use linux_raw_sys::ptrace::sock_filter;
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::process::{Resource, Rlimit};

use crate::init::{Failure, Outcome};
use crate::io;

/// Sets this process's `oom_score_adj` to the container's (`adj`, or the
/// container default), in place of berthd's (which protects itself, as
/// dockerd does at -500). Raising it needs no privilege; with
/// `CAP_SYS_RESOURCE`, which the init still has, it is also the floor the
/// container cannot go below. `/proc` is the host's here (before
/// `pivot_root`).
pub fn oom_score_adj(adj: Option<i32>) -> Outcome {
    let value = format!("{}", adj.unwrap_or(process::OOM_SCORE_ADJ));
    match io::write_file_existing("/proc/self/oom_score_adj", value.as_bytes()) {
        // Lowering a score needs CAP_SYS_RESOURCE, which berthd lacks when
        // it is itself confined: the container then stays easier to kill
        // than the default, never protected.
        Ok(()) | Err(Errno::ACCESS) => Ok(()),
        Err(e) => Err(Failure(
            125,
            format!("setting oom_score_adj: {}", io::describe(e)),
        )),
    }
}

/// Resets every limit of [`process::DEFAULT_RLIMITS`]. Before capabilities
/// are dropped: raising a hard limit needs `CAP_SYS_RESOURCE`. Without it
/// (berthd itself confined, or a hard `NOFILE` past `fs.nr_open`), a limit
/// is kept within berthd's hard limit: lowered to the default, never
/// raised.
pub fn default_rlimits() -> Outcome {
    for l in process::DEFAULT_RLIMITS {
        let resource = match l.resource {
            process::Resource::Cpu => Resource::Cpu,
            process::Resource::FileSize => Resource::Fsize,
            process::Resource::Data => Resource::Data,
            process::Resource::Stack => Resource::Stack,
            process::Resource::Core => Resource::Core,
            process::Resource::NoFile => Resource::Nofile,
            process::Resource::AddressSpace => Resource::As,
            process::Resource::MemLock => Resource::Memlock,
            process::Resource::Locks => Resource::Locks,
            process::Resource::MsgQueue => Resource::Msgqueue,
            process::Resource::Nice => Resource::Nice,
            process::Resource::RtPrio => Resource::Rtprio,
            process::Resource::RtTime => Resource::Rttime,
        };
        let set = |l: process::Limit| {
            rustix::process::setrlimit(
                resource,
                Rlimit {
                    current: l.soft,
                    maximum: l.hard,
                },
            )
        };
        let result = match set(l) {
            Err(Errno::PERM) => set(l.within(rustix::process::getrlimit(resource).maximum)),
            other => other,
        };
        result.map_err(|e| {
            Failure(
                125,
                format!("setting {}: {}", l.resource.name(), io::describe(e)),
            )
        })?;
    }
    Ok(())
}

/// Replaces the session keyring inherited from berthd with a new, empty
/// one, as runc does. A kernel without keyrings has nothing to share.
pub fn fresh_session_keyring() -> Outcome {
    match crate::sys::join_new_session_keyring() {
        Ok(()) | Err(Errno::NOSYS) => Ok(()),
        Err(e) => Err(Failure(
            125,
            format!("creating a session keyring: {}", io::describe(e)),
        )),
    }
}

/// The seccomp programs of a container, in the order they are installed.
pub struct Seccomp(Vec<Vec<sock_filter>>);

fn failure(path: &str, why: impl core::fmt::Display) -> Failure {
    Failure(125, format!("seccomp profile {path}: {why}"))
}

/// Reads and checks the programs at `path` (a host path).
pub fn load(path: &str) -> Outcome<Seccomp> {
    let file = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| failure(path, io::describe(e)))?;
    let st = rustix::fs::fstat(&file).map_err(|e| failure(path, io::describe(e)))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(failure(path, "not a regular file"));
    }
    // Checked before reading, so a huge file costs nothing.
    if st.st_size as u64 > MAX_FILE_BYTES as u64 {
        return Err(failure(
            path,
            seccomp::SeccompFileError::TooLarge(st.st_size as usize),
        ));
    }
    let bytes = io::read_to_end(&file).map_err(|e| failure(path, io::describe(e)))?;
    let programs = seccomp::parse(&bytes).map_err(|e| failure(path, e))?;
    Ok(Seccomp(
        programs
            .into_iter()
            .map(|p| {
                p.into_iter()
                    .map(|i| sock_filter {
                        code: i.code,
                        jt: i.jt,
                        jf: i.jf,
                        k: i.k,
                    })
                    .collect()
            })
            .collect(),
    ))
}

/// Installs every program, in order. Call it last before exec: from here
/// on the process's own system calls are filtered too.
pub fn install(filters: &Seccomp) -> Outcome {
    for (i, program) in filters.0.iter().enumerate() {
        crate::sys::install_seccomp_filter(program).map_err(|e| {
            Failure(
                125,
                format!(
                    "installing seccomp program {i} of {}: {}",
                    filters.0.len(),
                    io::describe(e)
                ),
            )
        })?;
    }
    Ok(())
}
