//! `berth-monitor __monitor [<container dir>]`: one container's monitor.
//! `berth-monitor __exec`: one exec into a running container ([`exec`]).
//!
//! berthd never forks its multi-threaded runtime. For every container it
//! starts this small, single-threaded process, with the launch spec on
//! stdin (see `berth_runtime::launch`). The monitor leaves berthd's session,
//! creates the container's init in new namespaces ([`monitor`], then
//! [`init`] in the forked child), copies the init's output into the log,
//! reaps it, records how it ended and reports on its stdout. The container
//! is the monitor's child, not berthd's, so it survives a restart of berthd.
//!
//! One monitor runs per container, for as long as the container runs, and
//! every container start pays for one monitor start. So it is built without
//! `std` and without libc: it starts in its own `_start` ([`rt`]), makes its
//! system calls through rustix and [`sys`], and is about 160 KB.

#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod attach;
mod caps;
mod confine;
mod copyup;
mod exec;
mod exec_wait;
mod fdpass;
mod init;
mod io;
mod log;
mod monitor;
mod mounts;
mod pty;
mod pump;
mod rt;
mod setup;
mod sys;
mod userns;

use berth_runtime::exec::EXEC_ARG;
use berth_runtime::launch::MONITOR_ARG;

/// Called by [`rt`] with the command line.
fn main(args: &[&[u8]]) -> ! {
    let monitor_mode = |mode: &[u8]| mode == MONITOR_ARG.as_bytes();
    match args.get(1..).unwrap_or_default() {
        // With the directory: started for one container. Without: started
        // ahead of time, the directory comes with the launch spec.
        [mode] if monitor_mode(mode) => monitor::main(true),
        // An exec into a running container: the spec comes on stdin.
        [mode] if *mode == EXEC_ARG.as_bytes() => exec::main(),
        [mode, dir] if monitor_mode(mode) => {
            match core::str::from_utf8(dir).map(io::open_dir) {
                Ok(Ok(d)) => sys::set_log_dir(d),
                _ => io::eprintln!("berth-monitor: cannot open the container directory"),
            }
            monitor::main(false)
        }
        _ => {
            io::eprintln!(
                "berth-monitor: started by berthd as `berth-monitor {MONITOR_ARG} [<container dir>]`, with the launch spec on stdin"
            );
            sys::exit(2)
        }
    }
}
