//! A stopped container's root as a *detached* overlay mount (the new
//! mount API: `fsopen`, `fsconfig`, `fsmount`): a mount that is attached
//! nowhere, in no mount namespace, reachable only through the descriptor
//! this returns, and gone once that descriptor and every file opened
//! beneath it are closed. `cp` of a created or exited container works on
//! it as on a running one's `/proc/<pid>/root`.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, FsMountFlags,
    FsOpenFlags, MountAttrFlags,
};

/// What the overlay is made of.
pub enum Layers<'a> {
    /// Read-only: the container's upper dir on top of the image's layers,
    /// all as lower layers. No work dir is taken, so a start of the
    /// container meanwhile is not in its way.
    ReadOnly {
        /// The upper dir.
        upper: &'a Path,
        /// The image's layers, top first.
        layers: &'a [&'a Path],
    },
    /// Writable: the image's layers under the container's upper and work
    /// dirs, as its own root while it runs (the caller keeps it from
    /// starting meanwhile).
    Writable {
        /// The upper dir.
        upper: &'a Path,
        /// The work dir.
        work: &'a Path,
        /// The image's layers, top first.
        layers: &'a [&'a Path],
        /// Mounted read-only even so (a `--read-only` container).
        read_only: bool,
    },
}

/// Mounts `layers` as a detached overlay (`nodev`, `nosuid`) and returns
/// its root. Needs Linux 6.8 (`lowerdir+`): older kernels get
/// `Unsupported`.
pub fn detached_overlay(layers: Layers<'_>) -> io::Result<OwnedFd> {
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    let mut attrs = MountAttrFlags::MOUNT_ATTR_NODEV | MountAttrFlags::MOUNT_ATTR_NOSUID;
    let lower_plus = |dir: &Path| {
        fsconfig_set_string(&fs, "lowerdir+", dir).map_err(|e| match e {
            rustix::io::Errno::INVAL => io::Error::new(
                io::ErrorKind::Unsupported,
                "this kernel's overlay has no lowerdir+ (Linux 6.8)",
            ),
            e => io::Error::from(e),
        })
    };
    match layers {
        Layers::ReadOnly { upper, layers } => {
            lower_plus(upper)?;
            for l in layers {
                lower_plus(l)?;
            }
            attrs |= MountAttrFlags::MOUNT_ATTR_RDONLY;
        }
        Layers::Writable {
            upper,
            work,
            layers,
            read_only,
        } => {
            for l in layers {
                lower_plus(l)?;
            }
            fsconfig_set_string(&fs, "upperdir", upper)?;
            fsconfig_set_string(&fs, "workdir", work)?;
            if read_only {
                fsconfig_set_flag(&fs, "ro")?;
                attrs |= MountAttrFlags::MOUNT_ATTR_RDONLY;
            }
        }
    }
    fsconfig_create(&fs)?;
    Ok(fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)?)
}
