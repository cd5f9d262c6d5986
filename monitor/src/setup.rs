//! Executes the container's setup plan (`berth_runtime::plan`): one system
//! call sequence per step, nothing decided here.
//!
//! What is mounted where, with which flags and in which order is the plan's;
//! this file only knows how to carry out each kind of step, and how to say
//! which one failed.

use alloc::ffi::CString;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::CStr;

use berth_runtime::plan::{self, Namespace, Step};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::thread::UnshareFlags;

use crate::init::{Failure, Outcome};
use crate::io;
use crate::sys;

/// Carries out the plan's steps in order; the first that fails ends the
/// setup. `go` becomes readable once the monitor has placed this process in
/// its cgroup ([`Step::AwaitCgroup`]); the container's root comes on
/// `handoff` ([`Step::AwaitUserns`]). `root` (the overlay's host path) only
/// shortens the paths in messages.
pub fn execute(steps: &[Step], root: &str, go: OwnedFd, handoff: Option<OwnedFd>) -> Outcome {
    let mut held = Held {
        go: Some(go),
        handoff,
        root: None,
        shared: Vec::new(),
    };
    for step in steps {
        run(step, &mut held).map_err(|Failure(code, message)| {
            Failure(code, format!("{}: {message}", describe(step, root)))
        })?;
    }
    Ok(())
}

/// What steps wait on or pass to later ones.
struct Held {
    go: Option<OwnedFd>,
    handoff: Option<OwnedFd>,
    /// The root the monitor mounted, until it is attached.
    root: Option<OwnedFd>,
    /// Shared binds' sources opened early, by target, until mounted.
    shared: Vec<(String, crate::mounts::Detached)>,
}

/// The step, for a message: paths shown as the container will see them.
fn describe(step: &Step, root: &str) -> String {
    let shown = |p: &str| -> String {
        // After Step::AttachRoot paths are relative to the root.
        let p = match p.strip_prefix('.') {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                return format!("/{}", rest.trim_start_matches('/'))
            }
            _ => p,
        };
        match p.strip_prefix(root) {
            Some("") => "/".into(),
            Some(rest) if rest.starts_with('/') => rest.into(),
            _ => p.into(),
        }
    };
    match step {
        Step::EnterNamespace { kind, path } => {
            format!("entering the {} namespace {path}", namespace_name(*kind))
        }
        Step::Unshare(_) => "creating namespaces".into(),
        Step::MakeMountsPrivate => "making mounts private".into(),
        Step::MakeMountsSlave => "making mounts slaves".into(),
        Step::Mount(m) if m.fstype == "overlay" => {
            format!("mounting the overlay root at {}", m.target)
        }
        Step::Mount(m) => format!("mounting {} on {}", m.fstype, shown(&m.target)),
        Step::Bind { source, target } => {
            format!("binding the host's {source} on {}", shown(target))
        }
        Step::Remount { target, .. } => format!("remounting {}", shown(target)),
        Step::EnsureDir { path } => format!("mount point {}", shown(path)),
        Step::MakeDir { path } | Step::CreateFile { path, .. } => {
            format!("creating {}", shown(path))
        }
        Step::Symlink { path, .. } => format!("creating {}", shown(path)),
        Step::WriteFiles { dir, .. } => format!("writing files in {}", shown(dir)),
        Step::AwaitCgroup => "joining the cgroup".into(),
        Step::PivotRoot { .. } => "entering the root filesystem".into(),
        Step::MaskFile { path } | Step::MaskDir { path } | Step::ReadonlyPath { path } => {
            format!("masking {path}")
        }
        Step::DeviceNode(node) => format!("device {}", shown(&node.path)),
        Step::SetHostname(_) => "setting the hostname".into(),
        Step::LoopbackUp => "bringing up lo".into(),
        Step::Sysctl { path, .. } => format!("setting {path}"),
        Step::AwaitUserns => "setting up the user namespace".into(),
        Step::AttachRoot { .. } => "attaching the idmapped root".into(),
        Step::BecomeRoot => "becoming the user namespace's root".into(),
        Step::UserMount { mount, .. } => format!("mount on {}", mount.target),
        Step::OpenSharedBind { mount } => format!("opening the shared bind for {}", mount.target),
    }
}

fn flags(f: plan::MountFlags) -> MountFlags {
    MountFlags::from_bits_retain(f.bits() as _)
}

fn c_string(s: &str) -> Result<CString, Failure> {
    CString::new(s.as_bytes()).map_err(|_| Failure(125, format!("NUL in {s:?}")))
}

fn errno(e: Errno) -> Failure {
    Failure(125, io::describe(e).into())
}

fn run(step: &Step, held: &mut Held) -> Outcome {
    match step {
        Step::EnterNamespace { kind, path } => enter_namespace(*kind, path).map_err(errno),
        Step::Unshare(namespaces) => {
            let flags = namespaces.iter().fold(UnshareFlags::empty(), |f, ns| {
                f | match ns {
                    Namespace::Mount => UnshareFlags::NEWNS,
                    Namespace::Uts => UnshareFlags::NEWUTS,
                    Namespace::Ipc => UnshareFlags::NEWIPC,
                    Namespace::Net => UnshareFlags::NEWNET,
                    Namespace::Cgroup => UnshareFlags::NEWCGROUP,
                }
            });
            // SAFETY: no namespace of the plan unshares the file table or
            // the filesystem context (CLONE_FILES, CLONE_FS), which could
            // invalidate what this process holds.
            unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(errno)
        }
        Step::MakeMountsPrivate => rustix::mount::mount_change(
            "/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )
        .map_err(errno),
        Step::MakeMountsSlave => rustix::mount::mount_change(
            "/",
            MountPropagationFlags::REC | MountPropagationFlags::DOWNSTREAM,
        )
        .map_err(errno),
        Step::Mount(m) => {
            let data = m.data.as_deref().map(c_string).transpose()?;
            rustix::mount::mount(
                m.source.as_str(),
                m.target.as_str(),
                m.fstype.as_str(),
                flags(m.flags),
                data.as_deref(),
            )
            .map_err(errno)
        }
        Step::Bind { source, target } => {
            rustix::mount::mount_bind(source.as_str(), target.as_str()).map_err(errno)
        }
        Step::Remount { target, flags: f } => {
            rustix::mount::mount_remount(target.as_str(), flags(*f), "").map_err(errno)
        }
        Step::EnsureDir { path } => ensure_dir(path),
        Step::MakeDir { path } => {
            rustix::fs::mkdir(path.as_str(), Mode::from_raw_mode(0o755)).map_err(errno)
        }
        Step::CreateFile { path, mode } => rustix::fs::open(
            path.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(*mode),
        )
        .map(drop)
        .map_err(errno),
        Step::Symlink { path, to } => {
            rustix::fs::symlink(to.as_str(), path.as_str()).map_err(errno)
        }
        Step::WriteFiles { dir, files } => write_files(dir, files).map_err(errno),
        Step::AwaitCgroup => {
            let mut byte = [0u8; 1];
            match held.go.take() {
                Some(go) if matches!(rustix::io::read(&go, &mut byte), Ok(1)) => Ok(()),
                _ => Err(Failure(
                    125,
                    "the monitor could not place the container in its cgroup".into(),
                )),
            }
        }
        Step::PivotRoot { root } => pivot_root(root).map_err(errno),
        Step::MaskFile { path } | Step::MaskDir { path } => mask(path),
        Step::ReadonlyPath { path } => {
            if kind(path)?.is_none() {
                return Ok(());
            }
            rustix::mount::mount_bind_recursive(path.as_str(), path.as_str()).map_err(errno)?;
            // MS_REC, which rustix keeps among the propagation flags.
            let rec = MountFlags::from_bits_retain(plan::MountFlags::REC.bits() as _);
            rustix::mount::mount_remount(
                path.as_str(),
                MountFlags::BIND | MountFlags::RDONLY | rec,
                "",
            )
            .map_err(errno)
        }
        Step::DeviceNode(node) => device_node(node).map_err(errno),
        Step::SetHostname(name) => rustix::system::sethostname(name.as_bytes()).map_err(errno),
        Step::LoopbackUp => sys::loopback_up().map_err(errno),
        Step::Sysctl { path, value } => {
            io::write_file_existing(path, value.as_bytes()).map_err(errno)
        }
        Step::AwaitUserns => {
            let received = held
                .handoff
                .take()
                .map(|sock| crate::userns::receive_root(&sock));
            match received {
                Some(Ok(root)) => {
                    held.root = Some(root);
                    Ok(())
                }
                // The monitor failed; its own message says why.
                _ => Err(Failure(
                    125,
                    "the monitor could not set up the user namespace".into(),
                )),
            }
        }
        Step::AttachRoot { target } => {
            let Some(root) = held.root.take() else {
                return Err(Failure(125, "no root was handed over".into()));
            };
            rustix::mount::move_mount(
                &root,
                "",
                rustix::fs::CWD,
                target.as_str(),
                rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
            )
            .map_err(errno)?;
            // Reached now, while this process is still the host's uid 0
            // (unmapped here): the state directory is root's alone.
            rustix::process::chdir(target.as_str()).map_err(errno)
        }
        Step::OpenSharedBind { mount } => {
            let detached = crate::mounts::detach(mount)?;
            held.shared.push((mount.target.clone(), detached));
            Ok(())
        }
        Step::UserMount { root, mount } => {
            let early = held
                .shared
                .iter()
                .position(|(t, _)| *t == mount.target)
                .map(|i| held.shared.swap_remove(i).1);
            crate::mounts::make(root, mount, early)
        }
        Step::BecomeRoot => {
            let (uid, gid) = (
                rustix::process::Uid::from_raw(0),
                rustix::process::Gid::from_raw(0),
            );
            rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(errno)?;
            rustix::thread::set_thread_groups(&[]).map_err(errno)?;
            rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(errno)
        }
    }
}

/// What is at `path`, following symlinks: `None` for a kernel interface
/// this kernel lacks. Any other failure fails the step: a mask that is
/// silently skipped would leave the interface open.
fn kind(path: &str) -> Outcome<Option<FileType>> {
    match rustix::fs::stat(path) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
        Err(e) => Err(errno(e)),
    }
}

/// Hides `path` as runc does: a directory under an empty read-only tmpfs,
/// anything else under /dev/null. What a kernel calls a file or a directory
/// is its business (the plan's split is the usual kind), so whichever is
/// found is covered.
fn mask(path: &str) -> Outcome {
    match kind(path)? {
        None => Ok(()),
        Some(FileType::Directory) => rustix::mount::mount(
            "tmpfs",
            path,
            "tmpfs",
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            None::<&CStr>,
        )
        .map_err(errno),
        Some(_) => rustix::mount::mount_bind("/dev/null", path).map_err(errno),
    }
}

/// Makes `node` (with its parent directories) with the host device's
/// numbers, owner and mode: a node of the container's own, so a `chmod` in
/// the container never changes the host's. /dev is `nodev`, so the node is
/// bound on itself with flags of its own, without `nodev`; the device
/// cgroup decides which access it gets.
fn device_node(node: &berth_runtime::launch::DeviceNode) -> Result<(), Errno> {
    let path = node.path.as_str();
    if let Some((parent, _)) = path.rsplit_once('/') {
        create_dir_all(parent)?;
    }
    let kind = if node.block {
        FileType::BlockDevice
    } else {
        FileType::CharacterDevice
    };
    let mode = Mode::from_raw_mode(node.mode & 0o7777);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        kind,
        mode,
        rustix::fs::makedev(node.major, node.minor),
    )?;
    // mknod's mode went through the umask.
    rustix::fs::chmod(path, mode)?;
    rustix::fs::chown(
        path,
        Some(rustix::process::Uid::from_raw(node.uid)),
        Some(rustix::process::Gid::from_raw(node.gid)),
    )?;
    rustix::mount::mount_bind(path, path)?;
    rustix::mount::mount_remount(
        path,
        MountFlags::BIND | MountFlags::NOSUID | MountFlags::NOEXEC,
        "",
    )
}

/// Moves this process into the namespace at `path` (a spare network
/// namespace reached through `/proc/<pid>/fd/<n>` of berthd, or a pod's
/// pinned nsfs file). Naming the kind makes setns(2) refuse a file of
/// another, so a wrong path fails the start instead of joining something
/// else.
fn enter_namespace(kind: Namespace, path: &str) -> Result<(), Errno> {
    use rustix::thread::LinkNameSpaceType as Type;
    let ns = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let kind = match kind {
        Namespace::Mount => Type::Mount,
        Namespace::Uts => Type::HostNameAndNISDomainName,
        Namespace::Ipc => Type::InterProcessCommunication,
        Namespace::Net => Type::Network,
        Namespace::Cgroup => Type::ControlGroup,
    };
    rustix::thread::move_into_link_name_space(ns.as_fd(), Some(kind))
}

/// The namespace's name, for a message.
fn namespace_name(kind: Namespace) -> &'static str {
    match kind {
        Namespace::Mount => "mount",
        Namespace::Uts => "UTS",
        Namespace::Ipc => "IPC",
        Namespace::Net => "network",
        Namespace::Cgroup => "cgroup",
    }
}

/// Makes `root` the root; the old root, stacked under the new one, is
/// detached so no host file stays reachable.
fn pivot_root(root: &str) -> Result<(), Errno> {
    rustix::process::chdir(root)?;
    rustix::process::pivot_root(".", ".")?;
    rustix::mount::unmount(".", UnmountFlags::DETACH)?;
    rustix::process::chdir("/")
}

/// A directory of the image to mount on, created when missing. The root is
/// an overlay with a private upper dir, so this never touches the image;
/// anything but a directory there (a symlink into the host included) fails.
fn ensure_dir(path: &str) -> Outcome {
    match rustix::fs::lstat(path) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => Ok(()),
        Ok(_) => Err(Failure(125, "not a directory in the image".into())),
        Err(_) => create_dir_all(path).map_err(errno),
    }
}

/// `mkdir -p`: creates `path` and its missing parents (mode 0755).
pub fn create_dir_all(path: &str) -> Result<(), Errno> {
    let mut end = 0;
    while end < path.len() {
        end = path[end + 1..]
            .find('/')
            .map_or(path.len(), |i| end + 1 + i);
        match rustix::fs::mkdir(&path[..end], Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e),
        }
    }
    if rustix::fs::stat(path)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
    {
        Ok(())
    } else {
        Err(Errno::NOTDIR)
    }
}

/// Writes `files` into `dir` (the container's /etc, in its upper layer).
/// This runs before `pivot_root`, where an absolute symlink from the image
/// would point into the host: an image's symlink at one of the names is
/// replaced, never followed, and `dir` itself must be a real directory.
fn write_files(dir: &str, files: &[(String, String)]) -> Result<(), Errno> {
    let dir = match rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        // No such directory (or a symlink in its place): nothing to give.
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(()),
        Err(e) => return Err(e),
    };
    for (name, content) in files {
        match rustix::fs::unlinkat(&dir, name.as_str(), rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
        let file = rustix::fs::openat(
            &dir,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        io::write_all(&file, content.as_bytes())?;
    }
    Ok(())
}
