//! The state directory is private to root, as `/var/lib/docker` is.
//!
//! A container's writable layer, its record (with its environment, where
//! secrets often are) and its logs live under the state directory. Were any
//! of it reachable by other host users, a container could hand them
//! anything: a setuid-root copy of a shell in its layer is a root shell for
//! every host user who can reach the file. So the state directory itself is
//! `0711` (entered, never listed, by others) and everything in it is `0700`
//! (directories) or `0600` (files), for new state and, at every start, for
//! state an older berthd left with laxer modes.

use std::fs::{DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Mode of the state directory itself: others may pass through it (to a
/// path that is theirs, as user namespaces will need) but not list it.
pub const ROOT_MODE: u32 = 0o711;
/// Mode of every directory berthd makes under the state directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file berthd or a monitor writes under the state directory.
pub const FILE_MODE: u32 = 0o600;

/// The top-level entries of the state directory (README, "State directory").
const SUBDIRS: [&str; 10] = [
    "networks",
    "containers",
    "images",
    "events",
    "tmp",
    "trash",
    "bin",
    "seccomp",
    "build",
    "cri",
];

/// Files of a container's directory that berthd, an older berthd or its
/// monitor may have written with laxer modes.
const CONTAINER_FILES: [&str; 5] = [
    "container.json",
    "container.log",
    "container.log.1",
    "exit.json",
    "running.json",
];

/// Creates `state_dir` and its top-level directories if missing, and makes
/// them private whatever modes they had; tightens the record and log files
/// of existing containers too. Done before anything else touches the state.
pub fn make_private(state_dir: &Path) -> io::Result<()> {
    create_with_mode(state_dir, ROOT_MODE)?;
    for sub in SUBDIRS {
        create_with_mode(&state_dir.join(sub), DIR_MODE)?;
    }
    let containers = state_dir.join("containers");
    for entry in std::fs::read_dir(&containers)?.flatten() {
        let dir = entry.path();
        // Only real directories: a symlink here was not made by berthd and
        // must not redirect a chmod elsewhere.
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        // One container's odd file (immutable, on a read-only bind) must
        // not keep berthd, and with it every other container, from
        // starting: its parents are private whatever happens here.
        let tighten = |path: &Path, mode: u32| {
            if let Err(e) = set_mode(path, mode) {
                tracing::warn!("making the state directory private: {e}");
            }
        };
        tighten(&dir, DIR_MODE);
        for name in CONTAINER_FILES {
            let file = dir.join(name);
            if std::fs::symlink_metadata(&file).is_ok_and(|m| m.is_file()) {
                tighten(&file, FILE_MODE);
            }
        }
    }
    Ok(())
}

/// `mkdir -p` with `mode` for the last component, and `mode` enforced when
/// it already exists (an existing directory keeps whatever mode it had
/// otherwise, and `create_dir_all` would apply the umask).
fn create_with_mode(dir: &Path, mode: u32) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(mode).create(dir)?;
    set_mode(dir, mode)
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // Nothing to do (and no chmod to fail, on an immutable file).
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.mode() & 0o7777 == mode) {
        return Ok(());
    }
    std::fs::set_permissions(path, Permissions::from_mode(mode))
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Creates a directory for berthd's own use under the state directory.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().mode(DIR_MODE).create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn new_state_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        make_private(&state).unwrap();
        assert_eq!(mode(&state), 0o711);
        for sub in SUBDIRS {
            assert_eq!(mode(&state.join(sub)), 0o700, "{sub}");
        }
    }

    #[test]
    fn state_left_open_is_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let c = state.join("containers/abc");
        std::fs::create_dir_all(c.join("upper")).unwrap();
        std::fs::write(c.join("container.json"), "{}").unwrap();
        std::fs::write(c.join("container.log"), "").unwrap();
        for p in [&state, &state.join("containers"), &c] {
            std::fs::set_permissions(p, Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(c.join("container.json"), Permissions::from_mode(0o644)).unwrap();
        make_private(&state).unwrap();
        assert_eq!(mode(&state), 0o711);
        assert_eq!(mode(&state.join("containers")), 0o700);
        assert_eq!(mode(&c), 0o700);
        assert_eq!(mode(&c.join("container.json")), 0o600);
        assert_eq!(mode(&c.join("container.log")), 0o600);
    }

    #[test]
    fn a_symlink_among_containers_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::set_permissions(&outside, Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(state.join("containers")).unwrap();
        std::os::unix::fs::symlink(&outside, state.join("containers/evil")).unwrap();
        make_private(&state).unwrap();
        assert_eq!(mode(&outside), 0o755);
    }
}
