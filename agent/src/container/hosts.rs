//! /etc/hosts of the containers of a user-defined network, kept current:
//! when a container joins or leaves a network (Create, Start, Remove), the
//! running containers on it get their file written again, so they find
//! each other by name and alias without a restart.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

use super::rootfs::Rootfs;
use super::Manager;
use crate::network::Mode;

impl Manager {
    /// Writes /etc/hosts again in every running container on `network`
    /// (a user-defined network; nothing for other modes). Failures are
    /// logged: a container whose file cannot be written keeps the one it
    /// has.
    pub(super) fn refresh_hosts(&self, network: &Mode) {
        if !matches!(network, Mode::Network(_)) {
            return;
        }
        for entry in self.entries() {
            let rec = entry.snapshot();
            if rec.network != *network || !rec.state.is_live() {
                continue;
            }
            let text = berth_runtime::plan::hosts_file(&rec.hostname, &self.hosts_lines(&rec));
            if let Err(e) = write_hosts(&Rootfs::under(&entry.dir), &text) {
                tracing::warn!(id = %rec.id, "updating /etc/hosts: {e}");
            }
        }
    }
}

/// Replaces the content of `etc/hosts` in the container's writable layer,
/// in place (the same inode, which the mounted overlay shows; a rename
/// would not be seen through it).
///
/// The container owns everything under its layer and may have made `etc`
/// or `hosts` a symlink (to a host path, as seen from here), a FIFO or a
/// device: nothing is followed and only a regular file is opened and
/// written. `etc`
/// is opened without following it, and `hosts` is opened beneath that very
/// directory (through its /proc/self/fd entry) without following it.
fn write_hosts(rootfs: &Rootfs, text: &str) -> std::io::Result<()> {
    let etc = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(rootfs.upper.join("etc"))?;
    let beneath = format!(
        "/proc/self/fd/{}/hosts",
        std::os::fd::AsRawFd::as_raw_fd(&etc)
    );
    // First only a handle (O_PATH opens nothing: a device node or FIFO the
    // container made is not opened for writing), checked to be a regular
    // file, then that very inode reopened for writing.
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(beneath)?;
    let ty = handle.metadata()?.file_type();
    if !ty.is_file() || ty.is_fifo() {
        return Err(std::io::Error::other("/etc/hosts is not a regular file"));
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&handle)
        ))?;
    file.set_len(0)?;
    file.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_is_written_in_place_and_symlinks_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = Rootfs::under(tmp.path());
        std::fs::create_dir_all(rootfs.upper.join("etc")).unwrap();
        let hosts = rootfs.upper.join("etc/hosts");
        std::fs::write(&hosts, "old old old old\n").unwrap();
        write_hosts(&rootfs, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&hosts).unwrap(), "new\n");

        // A symlink planted by the container: not followed, target intact.
        let target = tmp.path().join("host-file");
        std::fs::write(&target, "host\n").unwrap();
        std::fs::remove_file(&hosts).unwrap();
        std::os::unix::fs::symlink(&target, &hosts).unwrap();
        assert!(write_hosts(&rootfs, "evil\n").is_err());
        // A FIFO: refused, and not opened (which would block).
        std::fs::remove_file(&hosts).unwrap();
        nix::unistd::mkfifo(&hosts, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        assert!(write_hosts(&rootfs, "evil\n").is_err());
        // `etc` itself a symlink to a directory with a hosts file.
        std::fs::remove_file(&hosts).unwrap();
        std::fs::remove_dir(rootfs.upper.join("etc")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), rootfs.upper.join("etc")).unwrap();
        std::fs::write(tmp.path().join("hosts"), "host\n").unwrap();
        assert!(write_hosts(&rootfs, "evil\n").is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "host\n");
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("hosts")).unwrap(),
            "host\n"
        );
    }
}
