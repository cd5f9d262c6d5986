//! The monitor's loop while its container runs: the container's output
//! into the log (and to attached clients), their input to its stdin, until
//! the init has exited and its output is drained.

use alloc::vec::Vec;

use berth_runtime::attach as proto;
use berth_runtime::cri_log::Stream;
use rustix::buffer::spare_capacity;
use rustix::event::{PollFd, PollFlags};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::{Pid, WaitOptions, WaitStatus};
use rustix::time::Timespec;

use crate::attach::{Attach, Source};
use crate::io::{Context, Result};
use crate::log::LogWriter;

/// What one polled descriptor stands for.
#[derive(Clone, Copy)]
enum Polled {
    /// The init's pidfd: it exited.
    Exit,
    /// One of the container's output streams.
    Output(usize),
    /// The attach socket or one of its clients.
    Attach(Source),
}

/// Copies output into the log (and to `attach`'s clients) until the
/// container's init has exited and its output is drained; returns its
/// wait status. `out` and `err` are the pipes; with a terminal, its master
/// is a third output, logged as stdout.
pub fn pump(
    child: Pid,
    pidfd: &OwnedFd,
    out: &OwnedFd,
    err: &OwnedFd,
    log: &mut LogWriter,
    mut attach: Option<&mut Attach>,
) -> Result<WaitStatus> {
    let terminal = attach
        .as_ref()
        .and_then(|a| a.terminal())
        .map(|t| t.try_clone_to_owned())
        .transpose()
        .ctx("the terminal")?;
    let mut streams: Vec<(Stream, BorrowedFd<'_>)> =
        alloc::vec![(Stream::Stdout, out.as_fd()), (Stream::Stderr, err.as_fd())];
    if let Some(t) = &terminal {
        streams.push((Stream::Stdout, t.as_fd()));
    }
    let mut open: Vec<bool> = alloc::vec![true; streams.len()];
    let mut status = None;
    // The pidfd turns readable when the init is a zombie, but a tracer
    // (strace from the host) gets to reap-wait first: then wait a little
    // before looking again instead of spinning.
    let mut held_by_tracer = false;
    let retry_wait = Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    // Never initialised: the pages of a buffer that is only read into are
    // touched, and so take memory, only as far as output fills them.
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    // Once init is gone every process of its PID namespace is gone, so the
    // pipes close promptly; the timeout only guards against the impossible.
    let after_exit = Timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    let mut ready: Vec<(Polled, PollFlags)> = Vec::with_capacity(4);
    loop {
        if status.is_some() && open.iter().all(|o| !o) {
            break;
        }
        // Once the init is gone the rest of the output is read whatever
        // the clients: the log must have all of it.
        let congested = status.is_none() && attach.as_ref().is_some_and(|a| a.congested());
        let timeout = if status.is_some() {
            Some(&after_exit)
        } else if held_by_tracer {
            Some(&retry_wait)
        } else {
            None
        };
        ready.clear();
        {
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(4);
            let mut what: Vec<Polled> = Vec::with_capacity(4);
            if status.is_none() && !held_by_tracer {
                fds.push(PollFd::new(pidfd, PollFlags::IN));
                what.push(Polled::Exit);
            }
            for (i, (_, fd)) in streams.iter().enumerate() {
                // A client too far behind holds the output back.
                if open[i] && !congested {
                    fds.push(PollFd::new(fd, PollFlags::IN));
                    what.push(Polled::Output(i));
                }
            }
            let mut interest = Vec::new();
            if let Some(a) = attach.as_deref() {
                a.interest(&mut interest);
            }
            for (fd, flags, source) in &interest {
                fds.push(PollFd::new(fd, *flags));
                what.push(Polled::Attach(*source));
            }
            let n = match rustix::event::poll(&mut fds, timeout) {
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e).ctx("poll"),
            };
            if n == 0 && status.is_some() {
                // Output the monitor could not drain in time is left.
                break;
            }
            for (fd, w) in fds.iter().zip(&what) {
                if !fd.revents().is_empty() {
                    ready.push((*w, fd.revents()));
                }
            }
        }
        if ready.is_empty() && held_by_tracer {
            status = reap(child)?;
            held_by_tracer = status.is_none();
            if status.is_some() {
                if let Some(a) = attach.as_deref_mut() {
                    a.init_exited();
                }
            }
            continue;
        }
        for &(polled, events) in &ready {
            match polled {
                Polled::Exit => {
                    status = reap(child)?;
                    held_by_tracer = status.is_none();
                    if status.is_some() {
                        if let Some(a) = attach.as_deref_mut() {
                            a.init_exited();
                        }
                    }
                }
                Polled::Output(i) => {
                    match rustix::io::read(streams[i].1, spare_capacity(&mut buf)) {
                        // EIO: a terminal whose every slave is closed.
                        Ok(0) | Err(Errno::IO) => open[i] = false,
                        Ok(_) => {
                            log.write(streams[i].0, &buf);
                            if let Some(a) = attach.as_deref_mut() {
                                let kind = match streams[i].0 {
                                    Stream::Stdout => proto::OUT_STDOUT,
                                    Stream::Stderr => proto::OUT_STDERR,
                                };
                                a.output(kind, &buf);
                            }
                            buf.clear();
                        }
                        Err(Errno::INTR | Errno::AGAIN) => {}
                        Err(e) => return Err(e).ctx("reading the container's output"),
                    }
                }
                Polled::Attach(source) => {
                    if let Some(a) = attach.as_deref_mut() {
                        a.ready(source, events);
                    }
                }
            }
        }
        if let Some(a) = attach.as_deref_mut() {
            a.sweep();
        }
    }
    status.ok_or_else(|| crate::io::Error("the container's output outlived it".into()))
}

/// Reaps `child` if it has exited.
fn reap(child: Pid) -> Result<Option<WaitStatus>> {
    Ok(rustix::process::waitpid(Some(child), WaitOptions::NOHANG)
        .ctx("waitpid")?
        .map(|(_, st)| st))
}

/// The monotonic time `after` from now.
pub fn deadline(after: Timespec) -> Timespec {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let nanos = now.tv_nsec + after.tv_nsec;
    Timespec {
        tv_sec: now.tv_sec + after.tv_sec + nanos / 1_000_000_000,
        tv_nsec: nanos % 1_000_000_000,
    }
}

/// What is left until `deadline`; `None` once it has passed.
pub fn remaining(deadline: &Timespec) -> Option<Timespec> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let left = (deadline.tv_sec - now.tv_sec) * 1_000_000_000 + (deadline.tv_nsec - now.tv_nsec);
    (left > 0).then_some(Timespec {
        tv_sec: left / 1_000_000_000,
        tv_nsec: left % 1_000_000_000,
    })
}
