//! A container's bounded writable layer (`--storage-opt size=`), made with
//! project quotas on the state file system.
//!
//! Each such container gets a project id of its own, set (inherited) on its
//! overlay upper and work directories, with a block hard limit of its size:
//! writes past it fail in the container (EDQUOT on ext4, ENOSPC on xfs) and
//! the rest of the state file system is untouched. Ids come from a counter
//! kept in `containers/.project-ids` (never reused, so a removed container's
//! files still being deleted in the background never count against a new
//! one); the id lives on the directories and the limit in the file system's
//! quota file, so a restarted berthd finds both as they were. Remove clears
//! the limit.

use std::path::Path;
use std::sync::Mutex;

use super::error::{ContainerError, Result};
use super::rootfs::Rootfs;
use crate::sys::quota;

/// The smallest size accepted: below it a container could not even get its
/// /etc/hosts.
pub const MIN_SIZE: u64 = 1 << 20;
/// The largest size accepted (1 EiB).
pub const MAX_SIZE: u64 = 1 << 60;
/// The first project id berth hands out; lower ones are left to the host.
const FIRST_ID: u32 = 1_000_000;
/// The counter's file, in the containers directory (a dot file: never taken
/// for a container).
const COUNTER_FILE: &str = ".project-ids";

/// Held while an id is taken, so two Creates never get the same one.
static ALLOCATING: Mutex<()> = Mutex::new(());

/// Checks `size` and that the file system of `containers_dir` enforces
/// project quotas; nothing is changed. `flag` names what asked for the
/// size, for the message (`--storage-opt size`, `--default-storage-size`).
pub fn check(containers_dir: &Path, size: u64, flag: &str) -> Result<()> {
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        return Err(ContainerError::invalid(
            "storage_size_bytes",
            format!("storage size {size} is out of range (1 MiB to 1 EiB)"),
        ));
    }
    let dir = std::fs::File::open(containers_dir)
        .map_err(|e| ContainerError::io(containers_dir.display(), e))?;
    quota::check_project_quotas(&dir).map_err(|e| {
        ContainerError::StorageUnsupported(format!(
            "project quotas are not enforced on the file system of {} ({e}); \
             {flag} needs ext4 (-O quota,project) or xfs mounted with prjquota",
            containers_dir.display()
        ))
    })
}

/// Gives the container whose directories are `rootfs` a new project id
/// limited to `size` bytes. Called on the freshly made, empty directories.
pub fn apply(containers_dir: &Path, rootfs: &Rootfs, size: u64) -> std::io::Result<u32> {
    let id = next_id(containers_dir)?;
    let upper = std::fs::File::open(&rootfs.upper)?;
    // The limit first: from the moment the id is on the directories, what
    // is written there is bounded.
    quota::set_project_limit(&upper, id, size)?;
    quota::set_project(&upper, id)?;
    // overlayfs copies up through the work dir and renames into upper; a
    // rename between different projects with PROJINHERIT fails (EXDEV).
    quota::set_project(&std::fs::File::open(&rootfs.work)?, id)?;
    Ok(id)
}

/// Clears the limit of the container whose directories are `rootfs` (at
/// Remove). Its files go with the directory.
pub fn release(rootfs: &Rootfs) -> std::io::Result<()> {
    let upper = std::fs::File::open(&rootfs.upper)?;
    let id = quota::project_of(&upper)?;
    if id < FIRST_ID {
        return Ok(());
    }
    quota::set_project_limit(&upper, id, 0)
}

/// Takes the next id from the counter, durably (a crash never hands the
/// same id out twice).
fn next_id(containers_dir: &Path) -> std::io::Result<u32> {
    let _held = ALLOCATING.lock().unwrap_or_else(|p| p.into_inner());
    let path = containers_dir.join(COUNTER_FILE);
    let id = match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse::<u32>().map_err(|_| {
            std::io::Error::other(format!("{} holds no project id", path.display()))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FIRST_ID,
        Err(e) => return Err(e),
    };
    let next = id
        .checked_add(1)
        .ok_or_else(|| std::io::Error::other("project ids exhausted"))?;
    crate::fsutil::write_atomic(
        &path,
        next.to_string().as_bytes(),
        crate::fsutil::WriteOptions::synced(),
    )?;
    Ok(id.max(FIRST_ID))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_count_up_from_the_first_and_persist() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(next_id(d.path()).unwrap(), FIRST_ID);
        assert_eq!(next_id(d.path()).unwrap(), FIRST_ID + 1);
        let stored = std::fs::read_to_string(d.path().join(COUNTER_FILE)).unwrap();
        assert_eq!(stored, (FIRST_ID + 2).to_string());
    }

    #[test]
    fn sizes_out_of_range_are_invalid() {
        let d = tempfile::tempdir().unwrap();
        for size in [1, MIN_SIZE - 1, MAX_SIZE + 1] {
            let e = check(d.path(), size, "--storage-opt size").unwrap_err();
            assert!(matches!(e, ContainerError::InvalidSpec { .. }), "{e:?}");
        }
    }
}
