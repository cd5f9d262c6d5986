//! `--userns auto`: a container in a user namespace of its own.
//!
//! The init is created with a new user namespace and a PID namespace owned
//! by it, so every namespace it creates after (mount, UTS, IPC, network,
//! cgroup) is owned by it too and its root's capabilities reach only those.
//! It has no ids until the monitor, host root in the parent namespace,
//! writes its maps. Only host root can make a mount idmapped (the layers'
//! filesystem belongs to the initial user namespace), so the monitor also
//! builds the container's root: each image layer as a detached, idmapped
//! clone (`open_tree` + `mount_setattr(MOUNT_ATTR_IDMAP)`), stacked by an
//! overlay it creates with the new mount API (`fsopen("overlay")`, the
//! layers, upper and work dirs given as fds: Linux 6.13's `lowerdir+`),
//! mounted `nodev`. Being host root's mount, the overlay reads the layers'
//! `trusted.overlay.*` markers (opaque directories), which a mount made
//! inside the namespace could not. The monitor hands it to the init over a
//! socket (`SCM_RIGHTS`); the init attaches it in its own mount namespace.
//! Nothing is copied or chowned but the (empty, at Create) upper dir's root,
//! which becomes the container root's.

use alloc::format;

use berth_runtime::launch::{IdMapping, Rootfs};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags, CWD};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, OpenTreeFlags};
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use rustix::process::Pid;

use crate::io::{self, Context, Error, Result};
use crate::sys;

/// The two ends of the socket the root goes over: the monitor's, the init's.
pub fn channel() -> Result<(OwnedFd, OwnedFd)> {
    rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .ctx("socketpair")
}

/// In the monitor, once `init` is created: writes its maps, makes the upper
/// dir's root the container root's, mounts the root and sends it.
pub fn prepare(init: Pid, map: &IdMapping, rootfs: &Rootfs, sock: &OwnedFd) -> Result<()> {
    let pid = init.as_raw_nonzero().get();
    write_map(pid, "uid_map", map.uid, map.size)?;
    write_map(pid, "gid_map", map.gid, map.size)?;
    let ns = format!("/proc/{pid}/ns/user");
    let userns = rustix::fs::open(ns.as_str(), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .ctx("opening the container's user namespace")?;
    rustix::fs::chown(
        rootfs.upper.as_str(),
        Some(rustix::process::Uid::from_raw(map.uid)),
        Some(rustix::process::Gid::from_raw(map.gid)),
    )
    .ctx(format!("chown {}", rootfs.upper))?;
    let root = overlay(rootfs, &userns)?;
    crate::fdpass::send_fd(sock.as_fd(), &root).ctx("handing the root to the init")
}

fn write_map(pid: i32, file: &str, host: u32, size: u32) -> Result<()> {
    let path = format!("/proc/{pid}/{file}");
    let fd = rustix::fs::open(
        path.as_str(),
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx(format!("opening {file}"))?;
    // One write, one line: the kernel takes a map in a single write only.
    io::write_all(&fd, format!("0 {host} {size}\n").as_bytes()).ctx(format!("writing {file}"))
}

/// The container's root: an overlay of the idmapped layers (top first, as
/// `lowerdir` wants them) under the container's upper dir, as a detached
/// mount.
fn overlay(rootfs: &Rootfs, userns: &OwnedFd) -> Result<OwnedFd> {
    // overlay takes a layer only from a mount of the mounter's namespace
    // (clone_private_mount), not a detached one: each idmapped clone is
    // attached over its own layer path, in a mount namespace of the
    // monitor's own (private, so nothing reaches the host's, and gone with
    // the monitor).
    // SAFETY: neither CLONE_FILES nor CLONE_FS is unshared, which could
    // invalidate what this process holds; the init is already created.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
        .ctx("a mount namespace for the monitor")?;
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::REC | rustix::mount::MountPropagationFlags::PRIVATE,
    )
    .ctx("making the monitor's mounts private")?;
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).ctx("fsopen overlay")?;
    for layer in rootfs.layers.iter().rev() {
        let tree = rustix::mount::open_tree(
            CWD,
            layer.as_str(),
            OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
        )
        .ctx(format!("open_tree {layer}"))?;
        sys::idmap_mount(tree.as_fd(), userns.as_fd()).map_err(|e| unsupported(layer, e))?;
        rustix::mount::move_mount(
            &tree,
            "",
            CWD,
            layer.as_str(),
            rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .ctx(format!("attaching the idmapped {layer}"))?;
        rustix::mount::fsconfig_set_fd(&fs, "lowerdir+", &tree)
            .map_err(|e| fs_error(&fs, e, "lowerdir+"))?;
    }
    for (key, dir) in [("upperdir", &rootfs.upper), ("workdir", &rootfs.work)] {
        let fd = rustix::fs::open(
            dir.as_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx(dir.as_str())?;
        rustix::mount::fsconfig_set_fd(&fs, key, &fd).map_err(|e| fs_error(&fs, e, key))?;
    }
    rustix::mount::fsconfig_create(&fs).map_err(|e| fs_error(&fs, e, "creating the overlay"))?;
    // nodev: a device node in the image must not open the host's device.
    rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NODEV,
    )
    .ctx("fsmount overlay")
}

/// A layer this kernel cannot idmap (its filesystem does not support
/// idmapped mounts, or the kernel has none): `--userns auto` is not
/// supported here.
fn unsupported(layer: &str, e: rustix::io::Errno) -> Error {
    let why = match e {
        rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS | rustix::io::Errno::OPNOTSUPP => {
            "not supported yet: --userns auto with image layers this kernel cannot idmap"
        }
        _ => "idmapping an image layer",
    };
    Error(format!(
        "{why} ({layer}: mount_setattr: {})",
        io::describe(e)
    ))
}

/// An overlay error, with what the filesystem logged about it (read from
/// its context fd) when it said something.
fn fs_error(fs: &OwnedFd, e: rustix::io::Errno, what: &str) -> Error {
    let mut buf = [0u8; 256];
    let said = match rustix::io::read(fs, &mut buf) {
        Ok(n) if n > 0 => format!(" ({})", alloc::string::String::from_utf8_lossy(&buf[..n])),
        _ => alloc::string::String::new(),
    };
    Error(format!("overlay {what}: {}{said}", io::describe(e)))
}

/// In the init: waits for the root the monitor sends. Nothing (the monitor
/// failed, and closed its end) is an error.
pub fn receive_root(sock: &OwnedFd) -> core::result::Result<OwnedFd, rustix::io::Errno> {
    crate::fdpass::recv_fd(sock.as_fd())?.ok_or(rustix::io::Errno::PIPE)
}
