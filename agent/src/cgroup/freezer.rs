//! Freezing, thawing and killing a container's cgroup, whatever the
//! container did to it.
//!
//! Two things make this more than a write of one file. A v1 freeze is not
//! done when the write returns: the cgroup goes FREEZING, then FROZEN once
//! every task has stopped (a task in an uninterruptible sleep can hold it
//! back), so [`freeze`] waits for FROZEN, as runc does, and thaws again if
//! it does not come. And a container with the means to mount cgroupfs can
//! freeze its own cgroup, or make cgroups below it and freeze those, behind
//! berth's back: frozen processes do not die of SIGKILL on v1, so
//! [`thaw_tree`] thaws every cgroup of the container before a kill, and
//! [`kill_tree`] kills the processes of every one of them.

use std::path::Path;
use std::time::{Duration, Instant};

/// How long a freeze may take before it is given up (and undone).
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

/// Freezes the cgroup `dir` (its `freezer` directory on v1, its cgroup on
/// v2) and waits until every task in it is frozen. On timeout the cgroup is
/// thawed again, so a failed pause leaves the container running.
pub(super) fn freeze(dir: &Path, v2: bool) -> std::io::Result<()> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(50);
    write_state(dir, v2, true)?;
    loop {
        if is_frozen(dir, v2)? {
            return Ok(());
        }
        if start.elapsed() > FREEZE_TIMEOUT {
            let _ = write_state(dir, v2, false);
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the cgroup did not freeze within {} s (a task in uninterruptible sleep?); thawed it again",
                    FREEZE_TIMEOUT.as_secs()
                ),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
        if !v2 {
            // Rewriting FROZEN nudges tasks the first pass missed (runc
            // does the same); v2 keeps trying by itself.
            write_state(dir, v2, true)?;
        }
    }
}

/// Thaws the cgroup `dir` and every cgroup below it.
pub(super) fn thaw_tree(dir: &Path, v2: bool) -> std::io::Result<()> {
    match write_state(dir, v2, false) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    }
    for child in subdirs(dir) {
        thaw_tree(&child, v2)?;
    }
    Ok(())
}

/// SIGKILLs every process in the cgroup `dir` and below: through
/// `cgroup.kill` where the kernel has it (v2 since Linux 5.14, which kills
/// the whole subtree at once and races no fork), else one pid at a time.
/// Returns the number of processes signalled one by one.
pub(super) fn kill_tree(dir: &Path, v2: bool) -> usize {
    if v2 && std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return 0;
    }
    let mut n = 0;
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        if pid > 0
            && nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
        {
            n += 1;
        }
    }
    for child in subdirs(dir) {
        n += kill_tree(&child, v2);
    }
    n
}

fn subdirs(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

fn write_state(dir: &Path, v2: bool, frozen: bool) -> std::io::Result<()> {
    if v2 {
        std::fs::write(dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })
    } else {
        std::fs::write(
            dir.join("freezer.state"),
            if frozen { "FROZEN" } else { "THAWED" },
        )
    }
}

fn is_frozen(dir: &Path, v2: bool) -> std::io::Result<bool> {
    if v2 {
        let events = std::fs::read_to_string(dir.join("cgroup.events"))?;
        Ok(events.lines().any(|l| l.trim() == "frozen 1"))
    } else {
        Ok(std::fs::read_to_string(dir.join("freezer.state"))?.trim() == "FROZEN")
    }
}
