//! berthd: the berth node agent.
//!
//! `berthd [flags]` serves the berth.v1 API. This binary only parses its
//! flags, sets up logging and the async runtime, and runs the library
//! (the `berthd` crate's `run`).

use berthd::{config, server, sys};
use clap::Parser;

/// berthd's own `oom_score_adj`: protected, though not immune.
const OOM_SCORE_ADJ: i32 = -500;

fn main() -> std::process::ExitCode {
    // A pod's PID holder (the CRI): before anything starts a thread.
    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new(sys::pin::POD_PAUSE_ARG))
    {
        return sys::pin::pod_pause_main();
    }
    // Two worker threads do berthd's work; more arenas only hold memory.
    sys::limit_malloc_arenas(2);
    let mut cfg = config::Config::parse();
    // Every path berthd hands to a monitor must mean the same in a process
    // with another working directory.
    match std::path::absolute(&cfg.state_dir) {
        Ok(p) => cfg.state_dir = p,
        Err(e) => {
            eprintln!("berthd: --state-dir {}: {e}", cfg.state_dir.display());
            return std::process::ExitCode::from(1);
        }
    }
    // A plain target filter rather than EnvFilter: EnvFilter compiles its
    // directives with the regex engine, which keeps a few hundred KiB of
    // code and heap resident for the life of the daemon.
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colours for a person at a terminal, plain text for journald
                // and log files.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(cfg.log.clone())
        .init();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("berthd: must run as root (it creates namespaces, mounts and cgroups)");
        return std::process::ExitCode::from(1);
    }
    // Under memory pressure the kernel should pick a container's process
    // before the agent that records its exit (dockerd does the same with
    // -500). Monitors inherit it; each container's init sets its own to 0.
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", OOM_SCORE_ADJ.to_string()) {
        tracing::warn!("cannot set berthd's oom_score_adj to {OOM_SCORE_ADJ}: {e}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(server::BLOCKING_KEEP_ALIVE)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berthd: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match rt.block_on(berthd::run(cfg)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("berthd: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
