//! berthd, the berth node agent, as a library.
//!
//! The runtime (containers, images, events, cgroups, the launch of
//! container monitors) knows nothing of the wire: a front end drives it
//! through [`container::Manager`], [`image::ImageStore`] and
//! [`events::EventBus`]. [`server`] is the gRPC front end (`berth.v1`), the
//! only module that speaks the API's types and status codes; the `berthd`
//! binary parses its flags and calls [`run`].
//!
//! Containers run under `berth-monitor` processes, which berthd carries and
//! installs (see [`monitor`]).
//!
//! # Map
//!
//! | module | what |
//! |---|---|
//! | [`container`] | the lifecycle: one file per verb around one transition function (`Manager::commit`, the only writer of a container's state), the state table ([`container::state`]), records, recovery at start |
//! | [`events`] | the runtime's events ([`events::domain`]) and the durable, ordered bus that stores them in their wire form ([`events::wire`] converts) |
//! | [`image`] | the image store, imports and pulls |
//! | [`network`] | a container's network mode, the network namespace its init enters, the default bridge and user-defined networks |
//! | [`cgroup`], [`monitor`] | cgroup operations and the launch of container monitors, behind the [`cgroup::Cgroups`] and [`monitor::Launcher`] traits the container manager is given |
//! | [`exec`] | exec processes: the `berth-monitor __exec` helper, their pipes or terminal, signals and exit (what may run is `container/exec.rs`'s) |
//! | [`procinfo`] | what `top` shows of a process, from /proc (usage counters are in [`cgroup::stats`]) |
//! | [`error`] | the agent's error, gathering each module's typed error |
//! | [`server`] | the gRPC front end: `berth.v1` conversions, and the one mapping of errors to statuses ([`server::status`]) |
//!
//! A new verb is a file in `container/` (its transitions added to the
//! table in `container/state.rs`, its changes made through
//! `Manager::commit`); a new RPC is a method in `server/`, converting at
//! that boundary; a new error is a variant of its module's error, mapped
//! once in `server/status.rs`.

pub mod build;
pub mod cgroup;
pub mod chunk_writer;
pub mod config;
pub mod container;
pub mod copy;
pub mod crash;
pub mod cri;
pub mod error;
pub mod events;
pub mod exec;
pub mod fsutil;
pub mod image;
pub mod janitor;
pub mod monitor;
pub mod netns_pool;
pub mod network;
pub mod procinfo;
pub mod seccomp;
pub mod server;
pub mod signal;
pub mod state_dir;
pub mod sys;
pub mod volume;

pub use config::Config;

/// Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): what
/// they drive is private to its module, so each module exposes a narrow
/// `fuzzing` submodule of its own, gathered here.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::events::fuzzing as events;
    pub use crate::image::fuzzing as image;
    pub use crate::seccomp::fuzzing as seccomp;
}

/// Serves the agent as `cfg` says until SIGTERM or SIGINT. Needs a
/// multi-threaded tokio runtime (see [`server::BLOCKING_KEEP_ALIVE`] for
/// the keep-alive of its blocking threads).
pub async fn run(cfg: Config) -> Result<(), Box<dyn std::error::Error>> {
    server::run(cfg).await
}

#[cfg(test)]
mod boundary {
    //! The runtime core must not speak the wire: only `server/`, `cri/` (and
    //! the event bus's storage adapter) know `berth.v1`, CRI, tonic and prost.

    use std::path::{Path, PathBuf};

    /// Modules of the runtime core, relative to `src/`.
    const CORE: &[&str] = &[
        "container",
        "cgroup",
        "procinfo.rs",
        "monitor.rs",
        "netns_pool.rs",
        "network",
        "janitor.rs",
        "signal.rs",
        "error.rs",
        "config.rs",
        "sys",
        "events/domain.rs",
        "image",
        "fsutil.rs",
        "state_dir.rs",
        "seccomp",
        "build",
    ];
    const WIRE: &[&str] = &["berth::v1", "cri::api_file", "tonic", "prost"];

    fn files(p: &Path, out: &mut Vec<PathBuf>) {
        if p.is_dir() {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                files(&e.path(), out);
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p.to_path_buf());
        }
    }

    #[test]
    fn the_core_imports_no_wire_types() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        for m in CORE {
            files(&src.join(m), &mut all);
        }
        assert!(all.len() > 10, "found only {all:?}");
        let mut offenders = Vec::new();
        for f in &all {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if WIRE.iter().any(|w| code.contains(w)) {
                    offenders.push(format!("{}:{}: {line}", f.display(), n + 1));
                }
            }
        }
        assert!(offenders.is_empty(), "{}", offenders.join("\n"));
    }
}
