//! The container's own mounts (`Step::UserMount`): binds, volumes, tmpfs.
//!
//! The source becomes a detached mount first (`open_tree(OPEN_TREE_CLONE)`
//! of a host path, or `fsmount` of a new tmpfs) and gets its flags while
//! nothing can see it; the target is then opened from the container's root
//! with `openat2(RESOLVE_IN_ROOT)`, component by component, creating what
//! is missing, and the mount is moved onto that file descriptor. No host
//! path of the target is ever used, so a symlink in the image, or one a
//! second container sharing a volume swaps in meanwhile, resolves inside
//! the root (runc's CVE-2021-30465 class).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use berth_runtime::launch::{UserMount, UserMountKind};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags};

use crate::init::{Failure, Outcome};
use crate::io;
use crate::sys;

/// Resolution inside the root: `..` and absolute symlinks stop at it, and
/// /proc's magic links (which point anywhere) are refused.
const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// A host path opened by name with no symlink followed at all.
const NO_LINKS: ResolveFlags = ResolveFlags::NO_SYMLINKS.union(ResolveFlags::NO_MAGICLINKS);

fn errno(what: &str, e: Errno) -> Failure {
    Failure(125, format!("{what}: {}", io::describe(e)))
}

/// A mount's source made a detached mount with its flags set, and whether
/// it is a directory: what [`Step::OpenSharedBind`] holds until the
/// mount's [`make`].
///
/// [`Step::OpenSharedBind`]: berth_runtime::plan::Step::OpenSharedBind
pub struct Detached {
    tree: OwnedFd,
    dir: bool,
}

/// Makes the detached mount of `mount`'s source. A bind's clone
/// (`open_tree(OPEN_TREE_CLONE)`) keeps the propagation of what it clones:
/// a peer of the source's group when the source is shared at that moment
/// (a shared bind, opened before the namespace's mounts become slaves), a
/// slave of its master when it is a slave (a slave bind).
pub fn detach(mount: &UserMount) -> Outcome<Detached> {
    let attrs = MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NODEV
        | if mount.read_only {
            MountAttrFlags::MOUNT_ATTR_RDONLY
        } else {
            MountAttrFlags::empty()
        };
    match &mount.kind {
        UserMountKind::Bind {
            source,
            recursive,
            slave,
            shared,
            ..
        } => {
            let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
            if *recursive {
                flags |= OpenTreeFlags::AT_RECURSIVE;
            }
            // The source was canonicalized when the container was created;
            // opened again by name with no symlink followed, so a component
            // swapped for a symlink since (by whoever can write the host
            // directories on the way) fails the start instead of binding
            // what the link names.
            let src = open_source(source)?;
            let tree = rustix::mount::open_tree(&src, "", flags | OpenTreeFlags::AT_EMPTY_PATH)
                .map_err(|e| errno("opening the source", e))?;
            let propagation = if *shared {
                sys::Propagation::Shared
            } else if *slave {
                sys::Propagation::Slave
            } else {
                sys::Propagation::Private
            };
            if mount.read_only && mount.read_only_top_only && *recursive {
                // nosuid and nodev for the whole tree, read-only for its top.
                let rest = attrs.difference(MountAttrFlags::MOUNT_ATTR_RDONLY);
                sys::set_mount_attr(tree.as_fd(), rest.bits(), true, propagation)
                    .map_err(|e| errno("setting the mount's flags", e))?;
                sys::set_mount_attr(tree.as_fd(), attrs.bits(), false, propagation)
                    .map_err(|e| errno("making the mount read-only", e))?;
            } else {
                // Recursive: a read-only bind must not leave a writable
                // mount under it.
                sys::set_mount_attr(tree.as_fd(), attrs.bits(), *recursive, propagation)
                    .map_err(|e| errno("setting the mount's flags", e))?;
            }
            let st = rustix::fs::fstat(&tree).map_err(|e| errno("the source", e))?;
            let dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            Ok(Detached { tree, dir })
        }
        UserMountKind::Tmpfs { size, mode } => Ok(Detached {
            tree: tmpfs(*size, *mode, attrs)?,
            dir: true,
        }),
    }
}

/// Makes `mount` under `root` (a host path, before `pivot_root`), from
/// `detached` when its source was opened earlier (a shared bind).
pub fn make(root: &str, mount: &UserMount, detached: Option<Detached>) -> Outcome {
    let root_path = root;
    let Detached { tree, dir } = match detached {
        Some(d) => d,
        None => detach(mount)?,
    };
    let root = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| errno("opening the root", e))?;
    let target = open_target(&root, &mount.target, dir)?;
    check_target_fs(root_path, &root, &target, &mount.target)?;
    if let UserMountKind::Bind {
        source,
        copy_up: true,
        ..
    } = &mount.kind
    {
        seed(source, &target)?;
    }
    rustix::mount::move_mount(
        &tree,
        "",
        &target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(|e| errno("mounting", e))
}

/// Copies the image's content at the target into the volume `source`
/// while the volume is empty (Docker's copy-up).
fn seed(source: &str, target: &OwnedFd) -> Outcome {
    let volume = rustix::fs::openat2(
        rustix::fs::CWD,
        source,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        NO_LINKS,
    )
    .map_err(|e| errno("opening the volume", e))?;
    if crate::copyup::is_empty(&volume).map_err(|e| errno("reading the volume", e))? {
        crate::copyup::copy(target, &volume)
            .map_err(|e| errno("copying the image's content into the volume", e))?;
    }
    Ok(())
}

/// Opens a bind source (an absolute host path) as an `O_PATH` file
/// descriptor, following no symlink on the way.
fn open_source(source: &str) -> Outcome<OwnedFd> {
    rustix::fs::openat2(
        rustix::fs::CWD,
        source,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        NO_LINKS,
    )
    .map_err(|e| match e {
        Errno::LOOP | Errno::XDEV => Failure(
            125,
            format!(
                "bind source {source}: the path now holds a symlink \
                 (it was resolved when the container was created); recreate the container"
            ),
        ),
        e => errno(&format!("opening the source {source}"), e),
    })
}

/// File systems a mount target must not resolve into: the kernel's
/// interfaces (the container's /proc, /sys and cgroupfs are mounted
/// before the user's mounts, and their masks only after them).
const KERNEL_FS: [(i64, &str); 9] = [
    (0x9fa0, "procfs"),
    (0x6265_6572, "sysfs"),
    (0x0027_e0eb, "cgroupfs"),
    (0x6367_7270, "cgroup2"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0xcafe_4a11, "bpffs"),
    (0x6e73_6673, "nsfs"),
];

/// Refuses a target that resolved into a kernel interface (through an
/// image symlink such as `/data -> /sys/firmware`) or onto the root
/// itself: the mount would cover it, and copy-up would copy host kernel
/// files into the volume.
fn check_target_fs(root_path: &str, root: &OwnedFd, target: &OwnedFd, path: &str) -> Outcome {
    let fs = rustix::fs::fstatfs(target).map_err(|e| errno("the target", e))?;
    #[allow(clippy::unnecessary_cast)]
    let kind = fs.f_type as i64;
    let kernel = KERNEL_FS.iter().find(|(m, _)| *m == kind).map(|(_, n)| *n);
    // Where it landed, by the host path of the file descriptor: under the
    // container's /proc or /sys whatever the file system there (cgroup v1
    // has a tmpfs at /sys/fs/cgroup). Best effort: the file system type
    // above is the check that cannot be missed.
    let under = rustix::fs::readlinkat(
        rustix::fs::CWD,
        format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(target)).as_str(),
        Vec::new(),
    )
    .ok()
    .and_then(|link| {
        let link = link.to_bytes();
        let base = root_path.trim_end_matches('/').as_bytes();
        let rest = link.strip_prefix(base)?;
        ["/proc", "/sys"].into_iter().find(|d| {
            rest.strip_prefix(d.as_bytes())
                .is_some_and(|r| r.is_empty() || r[0] == b'/')
        })
    });
    if let Some(name) = kernel.or(under) {
        return Err(Failure(
            125,
            format!(
                "mount target {path} resolves into /proc or /sys ({name}): \
                 refused (a symlink in the image?)"
            ),
        ));
    }
    let (t, r) = (
        rustix::fs::fstat(target).map_err(|e| errno("the target", e))?,
        rustix::fs::fstat(root).map_err(|e| errno("the root", e))?,
    );
    if t.st_dev == r.st_dev && t.st_ino == r.st_ino {
        return Err(Failure(
            125,
            format!("mount target {path} resolves to the container's root: refused"),
        ));
    }
    Ok(())
}

/// A new tmpfs as a detached mount with `attrs`.
fn tmpfs(size: u64, mode: u32, attrs: MountAttrFlags) -> Outcome<OwnedFd> {
    let fs = rustix::mount::fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| errno("creating a tmpfs", e))?;
    if size > 0 {
        rustix::mount::fsconfig_set_string(&fs, "size", format!("{size}").as_str())
            .map_err(|e| errno("tmpfs size", e))?;
    }
    rustix::mount::fsconfig_set_string(&fs, "mode", format!("{:o}", mode & 0o7777).as_str())
        .map_err(|e| errno("tmpfs mode", e))?;
    rustix::mount::fsconfig_create(&fs).map_err(|e| errno("creating a tmpfs", e))?;
    rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
        .map_err(|e| errno("mounting a tmpfs", e))
}

/// Opens `target` (a container path) inside `root` as an `O_PATH` file
/// descriptor, creating missing components: directories, and for a
/// non-directory source an empty file last. Every step resolves from the
/// root with `RESOLVE_IN_ROOT`, so whatever the image has on the way, the
/// result is inside the root; what is found last must be of the source's
/// kind (a directory for a directory).
fn open_target(root: &OwnedFd, target: &str, dir: bool) -> Outcome<OwnedFd> {
    let mut path: String = target.trim_matches('/').into();
    // Dangling symlinks followed so far (as the kernel's 40).
    let mut hops = 0;
    'restart: loop {
        let mut end = 0;
        // The directory that holds the component being opened.
        let mut parent: Option<OwnedFd> = None;
        loop {
            let next = path[end..].find('/').map_or(path.len(), |i| end + i);
            let last = next == path.len();
            let prefix = &path[..next];
            let name = &path[end..next];
            let want_dir = !last || dir;
            let mut flags = OFlags::PATH | OFlags::CLOEXEC;
            if want_dir {
                flags |= OFlags::DIRECTORY;
            }
            let open = || rustix::fs::openat2(root, prefix, flags, Mode::empty(), IN_ROOT);
            let fd = match open() {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    let at = parent.as_ref().map_or(root.as_fd(), |p| p.as_fd());
                    let made = if want_dir {
                        rustix::fs::mkdirat(at, name, Mode::from_raw_mode(0o755))
                    } else {
                        rustix::fs::openat(
                            at,
                            name,
                            OFlags::CREATE
                                | OFlags::EXCL
                                | OFlags::NOFOLLOW
                                | OFlags::WRONLY
                                | OFlags::CLOEXEC,
                            Mode::from_raw_mode(0o644),
                        )
                        .map(drop)
                    };
                    match made {
                        Ok(()) => {}
                        // A dangling symlink: what it names is made instead,
                        // resolved inside the root like everything else
                        // (an absolute link from the root, `..` stopping at
                        // it), as runc's MkdirAllInRoot does.
                        Err(Errno::EXIST) => {
                            if let Ok(link) = rustix::fs::readlinkat(at, name, Vec::new()) {
                                hops += 1;
                                if hops > 40 {
                                    return Err(errno(&format!("opening /{prefix}"), Errno::LOOP));
                                }
                                let link = String::from_utf8_lossy(link.as_bytes()).into_owned();
                                let base = if link.starts_with('/') {
                                    String::new()
                                } else {
                                    path[..end].into()
                                };
                                let rest = if last { "" } else { &path[next..] };
                                let new: String =
                                    format!("{base}{}{rest}", link.trim_start_matches('/'))
                                        .trim_matches('/')
                                        .into();
                                if new.is_empty() {
                                    return Err(Failure(
                                        125,
                                        format!("/{prefix} leads to the root"),
                                    ));
                                }
                                path = new;
                                continue 'restart;
                            }
                        }
                        Err(e) => return Err(errno(&format!("creating /{prefix}"), e)),
                    }
                    open().map_err(|e| errno(&format!("opening /{prefix}"), e))?
                }
                Err(Errno::NOTDIR) if last => {
                    return Err(Failure(
                        125,
                        format!("/{prefix} is not a directory, and the source is one"),
                    ))
                }
                Err(e) => return Err(errno(&format!("opening /{prefix}"), e)),
            };
            if last {
                if !dir {
                    let st = rustix::fs::fstat(&fd).map_err(|e| errno("the target", e))?;
                    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                        return Err(Failure(
                            125,
                            format!("/{prefix} is a directory, and the source is not"),
                        ));
                    }
                }
                return Ok(fd);
            }
            parent = Some(fd);
            end = next + 1;
        }
    }
}
