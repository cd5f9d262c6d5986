//! The exec helper once its process runs: passing on berthd's signals,
//! keeping the process's output flowing once berthd is gone, and recording
//! the exit where a later berthd finds it (`berth_runtime::exec`'s
//! protocol, steps 4 and 5).

use alloc::format;
use alloc::vec::Vec;

use berth_runtime::exec::{self as proto, ExecExit};
use rustix::event::{PollFd, PollFlags};
use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::process::{Pid, WaitOptions};

use crate::io::{self, Context, Error, Result};
use crate::sys;

/// Waits for the child to end, passing on the signals berthd sends.
/// `outputs` are the read ends of the process's output (its stdout and
/// stderr pipes, or its terminal's master): berthd reads them while it is
/// there; once it is gone (end of file on `sock`) the helper reads and
/// drops what comes, so the process neither gets SIGPIPE nor blocks on a
/// full pipe. Returns (exit code, signal).
pub fn supervise(
    child: Pid,
    pidfd: &OwnedFd,
    sock: BorrowedFd<'_>,
    mut outputs: Vec<OwnedFd>,
) -> Result<(i32, i32)> {
    let mut berthd_open = true;
    let mut sink = [0u8; 16 * 1024];
    loop {
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(2 + outputs.len());
        fds.push(PollFd::new(pidfd, PollFlags::IN));
        if berthd_open {
            fds.push(PollFd::new(&sock, PollFlags::IN));
        } else {
            fds.extend(outputs.iter().map(|o| PollFd::new(o, PollFlags::IN)));
        }
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e).ctx("poll"),
        }
        let exited = !fds[0].revents().is_empty();
        let control = berthd_open && !fds[1].revents().is_empty();
        // Outputs that ended (end of file, or EIO from a terminal whose
        // other side is closed), by index.
        let mut ended = Vec::new();
        if !berthd_open {
            for (i, fd) in fds[1..].iter().enumerate() {
                if fd.revents().is_empty() {
                    continue;
                }
                match rustix::io::read(&outputs[i], &mut sink) {
                    Ok(0) => ended.push(i),
                    Ok(_) | Err(Errno::INTR | Errno::AGAIN) => {}
                    Err(_) => ended.push(i),
                }
            }
        }
        drop(fds);
        for i in ended.into_iter().rev() {
            outputs.remove(i);
        }
        if control {
            let mut bytes = [0u8; 64];
            match rustix::io::read(sock, &mut bytes) {
                // berthd is gone (restarting, crashed): the process runs
                // on, as a container does, and the next berthd collects
                // its exit from the file `record_exit` writes.
                Ok(0) | Err(Errno::CONNRESET) => berthd_open = false,
                Ok(n) => {
                    for &b in &bytes[..n] {
                        if let Some(sig) = proto::byte_signal(b) {
                            // A signal this kernel lacks is refused here.
                            let _ = sys::pidfd_signal(pidfd, sig);
                        }
                    }
                }
                Err(Errno::INTR | Errno::AGAIN) => {}
                Err(e) => return Err(e).ctx("reading from berthd"),
            }
        }
        if exited {
            let Some((_, status)) =
                rustix::process::waitpid(Some(child), WaitOptions::NOHANG).ctx("waitpid")?
            else {
                // Readable but not reapable: a tracer holds it; look again.
                continue;
            };
            return match (status.exit_status(), status.terminating_signal()) {
                (Some(code), _) => Ok((code, 0)),
                (None, Some(sig)) => Ok((128 + sig, sig)),
                _ => Err(Error(format!("unexpected wait status {status:?}"))),
            };
        }
    }
}

/// Opens the directory the exit is recorded in (a host path: before the
/// container's mount namespace is entered). `O_PATH` is enough for the
/// `*at` calls of [`record_exit`].
pub fn open_record_dir(path: &str) -> Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx(format!("opening {path}"))
}

/// Writes the exit to `<exec_id>.exit.json` in `dir`, atomically (a
/// temporary file renamed over it, so a reader never sees a torn one) and
/// private (0600: it is in root's state directory like the container's
/// exit.json). Not fsynced, as the monitor's exit.json: a power loss ends
/// the process and berthd's record of it alike.
pub fn record_exit(dir: BorrowedFd<'_>, exec_id: &str, exit: &ExecExit) -> Result<()> {
    // The id comes from berthd (64 hex); a '/' or ".." would leave `dir`.
    if exec_id.is_empty() || !exec_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error(format!("bad exec id {exec_id:?}")));
    }
    let json = serde_json::to_vec(exit).map_err(|e| Error(format!("encoding the exit: {e}")))?;
    let name = format!("{exec_id}{}", proto::EXIT_SUFFIX);
    let tmp = format!(".{name}.tmp");
    let fd = rustix::fs::openat(
        dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )
    .ctx(format!("creating {tmp}"))?;
    io::write_all(&fd, &json).ctx(format!("writing {tmp}"))?;
    drop(fd);
    rustix::fs::renameat(dir, tmp.as_str(), dir, name.as_str()).ctx(format!("renaming {tmp}"))
}
