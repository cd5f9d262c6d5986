//! /etc/hosts of the containers of user-defined networks, kept current:
//! when a container joins or leaves a network (Create, Start, Remove,
//! ConnectContainer, DisconnectContainer), the running containers on it
//! get their file written again, so they find each other by name and alias
//! without a restart.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

use super::entry::Entry;
use super::record::Record;
use super::rootfs::Rootfs;
use super::Manager;
use crate::network::attach::DEFAULT_BRIDGE;
use crate::network::bridge::Settings;
use crate::network::Mode;

/// Where a container is on user-defined networks: (network id, addresses,
/// aliases there), its first network first, then those connected later.
fn memberships(r: &Record) -> Vec<(&str, &Settings, &[String])> {
    let first = match (&r.network, &r.net) {
        (Mode::Network(id), Some(n)) => Some((id.as_str(), n, &r.spec.network_aliases[..])),
        _ => None,
    };
    first
        .into_iter()
        .chain(
            r.connected
                .iter()
                // The default bridge resolves no names (as Docker's).
                .filter(|a| a.network != DEFAULT_BRIDGE)
                .map(|a| (a.network.as_str(), &a.settings, &a.aliases[..])),
        )
        .collect()
}

/// `ip<TAB>hostname name aliases...` for one container on one network:
/// one line for its IPv4 address and, on a dual-stack network, one for
/// its IPv6 address.
fn lines(r: &Record, s: &Settings, aliases: &[String]) -> Vec<String> {
    let mut names = vec![r.hostname.as_str(), r.name.as_str()];
    names.extend(aliases.iter().map(String::as_str));
    names.dedup();
    let names = names.join(" ");
    let mut out = vec![format!("{}\t{names}", s.ip)];
    out.extend(s.ip6.map(|a| format!("{}\t{names}", a.ip)));
    out
}

impl Manager {
    /// The lines `rec`'s /etc/hosts gets beyond localhost: its own
    /// addresses (on the default bridge by hostname only; on a user-defined
    /// network with its name and aliases there), every other container on
    /// each of its user-defined networks by name and alias (as they are
    /// now), then its extra hosts (checked at Create).
    pub(super) fn hosts_lines(&self, rec: &Record) -> Vec<String> {
        let mine = memberships(rec);
        let mut lines = Vec::new();
        if let (Mode::Bridge, Some(n)) = (&rec.network, &rec.net) {
            lines.push(format!("{}\t{}", n.ip, rec.hostname));
        }
        lines.extend(
            mine.iter()
                .flat_map(|(_, s, aliases)| self::lines(rec, s, aliases)),
        );
        if !mine.is_empty() {
            let mut peers: Vec<Record> =
                self.list().into_iter().filter(|r| r.id != rec.id).collect();
            peers.sort_by(|a, b| a.name.cmp(&b.name));
            for (net, _, _) in &mine {
                for r in &peers {
                    for (theirs, s, aliases) in memberships(r) {
                        if theirs == *net {
                            lines.extend(self::lines(r, s, aliases));
                        }
                    }
                }
            }
        }
        lines.extend(
            rec.spec
                .extra_hosts
                .iter()
                .filter_map(|h| super::network::extra_host(h).ok()),
        );
        lines
    }

    /// Writes /etc/hosts again in every running container on `network`
    /// (a user-defined network, first or connected later; nothing for
    /// other modes). Failures are logged: a container whose file cannot be
    /// written keeps the one it has.
    pub(super) fn refresh_hosts(&self, network: &Mode) {
        let Mode::Network(id) = network else {
            return;
        };
        for entry in self.entries() {
            let on_it = memberships(&entry.snapshot())
                .iter()
                .any(|(n, _, _)| n == id);
            if on_it {
                self.refresh_hosts_of(&entry);
            }
        }
    }

    /// Writes `entry`'s /etc/hosts again if it runs.
    pub(super) fn refresh_hosts_of(&self, entry: &Entry) {
        let rec = entry.snapshot();
        if !rec.state.is_live() {
            return;
        }
        let text = berth_runtime::plan::hosts_file(&rec.hostname, &self.hosts_lines(&rec));
        if let Err(e) = write_hosts(&Rootfs::under(&entry.dir), &text) {
            tracing::warn!(id = %rec.id, "updating /etc/hosts: {e}");
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
