//! A container's root filesystem: an overlay of the image's layers (shared,
//! read-only) under the container's own writable upper dir.
//!
//! berthd only makes the directories. The container's init mounts the
//! overlay inside the container's own mount namespace (see
//! `berth_runtime::launch::Rootfs`), so it is never mounted on the host and
//! goes away with the container.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};

/// The directories of one container's root filesystem.
pub struct Rootfs {
    /// Writable layer.
    pub upper: PathBuf,
    /// overlayfs scratch dir.
    pub work: PathBuf,
    /// Mount point.
    pub merged: PathBuf,
}

impl Rootfs {
    /// The layout under a container's directory.
    pub fn under(dir: &Path) -> Self {
        Rootfs {
            upper: dir.join("upper"),
            work: dir.join("work"),
            merged: dir.join("rootfs"),
        }
    }

    /// Creates the directories (at container creation).
    pub fn create_dirs(&self) -> io::Result<()> {
        for d in [&self.upper, &self.work, &self.merged] {
            std::fs::create_dir_all(d)?;
        }
        Ok(())
    }

    /// What the init mounts for a container of `layers` (base first).
    pub fn launch(&self, layers: &[PathBuf]) -> io::Result<berth_runtime::launch::Rootfs> {
        use crate::fsutil::utf8_path;
        Ok(berth_runtime::launch::Rootfs {
            layers: layers
                .iter()
                .map(|l| utf8_path(l))
                .collect::<io::Result<_>>()?,
            upper: utf8_path(&self.upper)?,
            work: utf8_path(&self.work)?,
            target: utf8_path(&self.merged)?,
        })
    }

    /// Unmounts the overlay from the host if it is mounted there: earlier
    /// berthd builds mounted it on the host, and a container one of them
    /// started may still be running when this berthd takes over.
    pub fn unmount(&self) -> io::Result<()> {
        match umount2(&self.merged, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(io::Error::other(format!(
                "unmounting {}: {e}",
                self.merged.display()
            ))),
        }
    }
}
