//! Errors, diagnostics and whole-file I/O for a program without `std`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use berth_runtime::launch::MONITOR_LOG;

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// A failure, as the message berthd and the monitor log show.
#[derive(Debug)]
pub struct Error(pub String);

/// The monitor's results.
pub type Result<T> = core::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Errno> for Error {
    fn from(e: Errno) -> Self {
        Error(String::from(describe(e)))
    }
}

/// Adds what was being done to an error: "what: cause".
pub trait Context<T> {
    /// The error becomes "`what`: cause".
    fn ctx(self, what: impl fmt::Display) -> Result<T>;
}

impl<T> Context<T> for core::result::Result<T, Errno> {
    fn ctx(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error(format!("{what}: {}", describe(e))))
    }
}

impl<T> Context<T> for Result<T> {
    fn ctx(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error(format!("{what}: {e}")))
    }
}

/// What an errno means, worded as strerror(3) words it; rustix without
/// `std` only prints the number.
pub fn describe(e: Errno) -> &'static str {
    match e {
        Errno::PERM => "Operation not permitted",
        Errno::NOENT => "No such file or directory",
        Errno::SRCH => "No such process",
        Errno::INTR => "Interrupted system call",
        Errno::IO => "Input/output error",
        Errno::NXIO => "No such device or address",
        Errno::TOOBIG => "Argument list too long",
        Errno::NOEXEC => "Exec format error",
        Errno::BADF => "Bad file descriptor",
        Errno::CHILD => "No child processes",
        Errno::AGAIN => "Resource temporarily unavailable",
        Errno::NOMEM => "Cannot allocate memory",
        Errno::ACCESS => "Permission denied",
        Errno::FAULT => "Bad address",
        Errno::BUSY => "Device or resource busy",
        Errno::EXIST => "File exists",
        Errno::XDEV => "Invalid cross-device link",
        Errno::NODEV => "No such device",
        Errno::NOTDIR => "Not a directory",
        Errno::ISDIR => "Is a directory",
        Errno::INVAL => "Invalid argument",
        Errno::MFILE => "Too many open files",
        Errno::TXTBSY => "Text file busy",
        Errno::FBIG => "File too large",
        Errno::NOSPC => "No space left on device",
        Errno::ROFS => "Read-only file system",
        Errno::PIPE => "Broken pipe",
        Errno::NAMETOOLONG => "File name too long",
        Errno::NOSYS => "Function not implemented",
        Errno::LOOP => "Too many levels of symbolic links",
        Errno::OPNOTSUPP => "Operation not supported",
        Errno::DQUOT => "Disk quota exceeded",
        Errno::STALE => "Stale file handle",
        _ => "Unknown error",
    }
}

/// A formatting target on the stack, for when allocating is not an option;
/// what does not fit is cut off.
pub struct FixedBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> FixedBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        FixedBuf {
            buf: [0; N],
            len: 0,
        }
    }

    /// What was written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl<const N: usize> fmt::Write for FixedBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Whether stderr is the monitor log yet.
static LOG_OPEN: AtomicBool = AtomicBool::new(false);

/// Writes to stderr, ignoring failure: it is the diagnostics channel of
/// last resort (the container's monitor.log). The monitor creates that log
/// with its first line only: most runs never write one, and an empty
/// file costs an inode to create and another to delete.
pub fn write_stderr(bytes: &[u8]) {
    if !LOG_OPEN.load(Ordering::Relaxed) {
        if let Some(dir) = crate::sys::log_dir() {
            LOG_OPEN.store(true, Ordering::Relaxed);
            if let Ok(log) = rustix::fs::openat(
                dir,
                MONITOR_LOG,
                OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                let _ = rustix::stdio::dup2_stderr(&log);
            }
        }
    }
    let _ = write_all(crate::sys::stderr(), bytes);
}

/// `eprintln!` for the monitor: one line to stderr.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        let mut line = alloc::format!($($arg)*);
        line.push('\n');
        $crate::io::write_stderr(line.as_bytes());
    }};
}
pub(crate) use eprintln;

/// Writes all of `bytes`, retrying short writes and interruptions.
pub fn write_all(fd: impl AsFd, mut bytes: &[u8]) -> core::result::Result<(), Errno> {
    while !bytes.is_empty() {
        match rustix::io::write(&fd, bytes) {
            Ok(0) => return Err(Errno::IO),
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads until end of file.
pub fn read_to_end(fd: impl AsFd) -> core::result::Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match rustix::io::read(&fd, &mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads the whole file at `path`.
pub fn read_file(path: &str) -> core::result::Result<Vec<u8>, Errno> {
    read_to_end(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens `path` for appending, creating it with `mode` if needed. A
/// symlink there is refused (ELOOP): the monitor runs as root, and a log
/// path is never meant to lead elsewhere.
pub fn open_append(path: &str, mode: u32) -> core::result::Result<OwnedFd, Errno> {
    rustix::fs::open(
        path,
        OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
}

/// Opens the directory `path` (close-on-exec).
pub fn open_dir(path: &str) -> core::result::Result<OwnedFd, Errno> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Writes `data` to the existing file `path` (a kernel interface such as
/// `/proc/self/oom_score_adj`): never creates one.
pub fn write_file_existing(path: &str, data: &[u8]) -> core::result::Result<(), Errno> {
    let fd = rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    write_all(&fd, data)
}

/// Creates or truncates `path` (mode 0644) and writes `data` to it.
pub fn write_file(path: &str, data: &[u8]) -> core::result::Result<(), Errno> {
    let fd = rustix::fs::open(
        path,
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    write_all(&fd, data)
}

/// Writes `data` to `path` atomically but not durably: a reader sees the
/// old content or the new, never a torn file (a temporary file renamed
/// over it). No fsync: these files describe processes, which a power loss
/// ends anyway.
pub fn replace(path: &str, data: &[u8]) -> Result<()> {
    let (dir, name) = path
        .rsplit_once('/')
        .ok_or_else(|| Error(format!("{path} has no directory")))?;
    let tmp = format!("{dir}/.{name}.tmp");
    write_file(&tmp, data).ctx(&tmp)?;
    rustix::fs::rename(&tmp, path).ctx(path)
}
