//! `cp`: files and directories into and out of a container, as tar
//! streams (the `Containers.StatPath`, `CopyFrom` and `CopyTo` RPCs).
//!
//! Everything here works on a file descriptor of the container's root
//! (`container/copy.rs` finds it: the init's `/proc/<pid>/root`, checked
//! against its pidfd) and resolves every path from it with `openat2`
//! (`crate::sys::resolve`): never as a host path, never following a
//! symlink or `..` out of the root. One concern per module:
//!
//! - `path`: pure rules: request paths, what a path asks for (an entry,
//!   a directory, a directory's contents), tar entry names;
//! - `ids`: the container's ids and the host's (`--userns auto`);
//! - `stat`: describing a path (StatPath, the first message of CopyFrom);
//! - `archive`: writing a tar of a path (CopyFrom);
//! - `extract`: extracting a tar beneath a directory (CopyTo);
//! - `chunks`: the bounded channels between the blocking file work and
//!   the RPC streams (no archive is ever held whole in memory).

mod archive;
mod chunks;
mod extract;
pub mod ids;
pub mod path;
mod stat;

use std::os::fd::OwnedFd;

pub use archive::stream_archive;
pub use chunks::{ChunkReader, CHUNKS_AHEAD};
pub use extract::{extract, ExtractOptions, Extracted};
pub use ids::IdMap;
pub use stat::{resolve_dir, resolve_source, PathStat, Resolved, Source};

use crate::error::capped;

/// Longest path a request may name, in bytes (Linux's PATH_MAX).
pub const PATH_MAX: usize = 4096;
/// Largest chunk of an archive in one message, either way.
pub const CHUNK_MAX: usize = 1 << 20;

/// The root of a container as `cp` reaches it.
pub struct ContainerRoot {
    /// The container's full id.
    pub id: String,
    /// Its `/` (an `O_PATH` directory descriptor).
    pub root: OwnedFd,
    /// How its ids map to the host's.
    pub ids: IdMap,
    /// What must live as long as the copy into a stopped container: its
    /// lifecycle lock, so it cannot start on the same upper dir meanwhile.
    pub hold: Option<Box<dyn std::any::Any + Send + Sync>>,
}

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A request path that is not one (empty, relative, too long, NUL).
    #[error("invalid path: {0}")]
    InvalidPath(String),
    /// The path does not exist in the container.
    #[error("no such file or directory in the container: {}", capped(path))]
    PathNotFound {
        /// As the client sent it.
        path: String,
    },
    /// A directory was asked for (trailing `/`, `/.`, CopyTo's path).
    #[error("not a directory in the container: {}", capped(path))]
    NotADirectory {
        /// As the client sent it.
        path: String,
    },
    /// The container is not running or paused, and cannot be copied to or
    /// from while stopped (`why`).
    #[error("not supported yet: cp of a stopped container {why} ({id} is {state})")]
    NotRunning {
        /// The container.
        id: String,
        /// Its state.
        state: &'static str,
        /// What is not supported.
        why: &'static str,
    },
    /// A stopped container's path at or under one of its mounts: what is
    /// mounted there exists only while it runs.
    #[error(
        "not supported yet: cp of a stopped container at or under its mount {}: start it, or copy elsewhere",
        capped(target)
    )]
    UnderMount {
        /// The mount's target.
        target: String,
    },
    /// An archive entry berth does not extract, or not a tar at all.
    #[error("invalid archive: entry {}: {reason}", capped(entry))]
    InvalidArchive {
        /// The entry's name (lossy UTF-8).
        entry: String,
        /// Why.
        reason: String,
    },
    /// An entry would replace a directory with a file or the reverse.
    #[error("cannot extract {}: {reason}", capped(entry))]
    Conflict {
        /// The entry's name (lossy UTF-8).
        entry: String,
        /// What is in the way.
        reason: &'static str,
    },
    /// The destination is on a read-only file system or mount.
    #[error("read-only file system in the container at {}", capped(path))]
    ReadOnly {
        /// The destination, or the entry.
        path: String,
    },
    /// The client went away or broke off the upload.
    #[error("the upload ended: {0}")]
    Aborted(String),
    /// A file or system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

impl CopyError {
    /// An I/O error with context; a read-only file system is [`ReadOnly`].
    ///
    /// [`ReadOnly`]: CopyError::ReadOnly
    pub fn io(context: impl std::fmt::Display, path: &str, source: std::io::Error) -> Self {
        if source.raw_os_error() == Some(libc::EROFS) {
            return CopyError::ReadOnly { path: path.into() };
        }
        CopyError::Io {
            context: format!("{context} {}", capped(path)),
            source,
        }
    }
}
