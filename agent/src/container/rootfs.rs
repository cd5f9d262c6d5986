//! A container's root filesystem: an overlay of the image's layers (shared,
//! read-only) under the container's own writable upper dir.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

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

    /// Mounts the overlay; `layers` base first.
    pub fn mount(&self, layers: &[PathBuf]) -> io::Result<()> {
        if layers.is_empty() {
            return Err(io::Error::other("image has no layers"));
        }
        let lower: Vec<String> = layers
            .iter()
            .rev()
            .map(|p| p.to_string_lossy().replace(':', "\\:"))
            .collect();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            self.upper.display(),
            self.work.display()
        );
        mount(
            Some("overlay"),
            &self.merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(opts.as_str()),
        )
        .map_err(|e| {
            io::Error::other(format!(
                "mounting overlay at {}: {e}",
                self.merged.display()
            ))
        })
    }

    /// Unmounts if mounted.
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
