//! Terminals of the container's own devpts (handed over with
//! [`crate::fdpass`]: the exec helper's master to berthd, the container
//! init's to its monitor).

use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};

use crate::io::{Context, Error, Result};

/// A new pty of the container's devpts (opened inside its mount
/// namespace, as runc does: the host's devpts is never used), unlocked and
/// sized: (master, slave).
pub fn open((rows, cols): (u16, u16)) -> Result<(OwnedFd, OwnedFd)> {
    // The container's root may have put anything there: no symlink is
    // followed at the end, and only devpts' own ptmx (5:2) is used.
    let master = rustix::fs::open(
        "/dev/pts/ptmx",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .ctx("opening the container's /dev/pts/ptmx")?;
    let st = rustix::fs::fstat(&master).ctx("the container's /dev/pts/ptmx")?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::CharacterDevice
        || st.st_rdev != rustix::fs::makedev(5, 2)
    {
        return Err(Error(
            "the container's /dev/pts/ptmx is not a pseudo-terminal multiplexer".into(),
        ));
    }
    // Back to blocking: berthd sets its own end's mode.
    rustix::fs::fcntl_setfl(&master, OFlags::RDWR).ctx("the terminal's flags")?;
    rustix::pty::unlockpt(&master).ctx("unlockpt")?;
    // By the master, never by a path the container could replace.
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY,
    )
    .ctx("opening the terminal")?;
    let size = rustix::termios::Winsize {
        ws_row: if rows == 0 { 24 } else { rows },
        ws_col: if cols == 0 { 80 } else { cols },
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(&master, size).ctx("sizing the terminal")?;
    Ok((master, slave))
}
