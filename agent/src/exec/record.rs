//! The durable record of an exec, under its container's directory:
//!
//! ```text
//! containers/<id>/execs/<exec id>.json       berthd's: what runs, its helper, announced
//! containers/<id>/execs/<exec id>.exit.json  the helper's: how it ended
//! ```
//!
//! Two files with one writer each, as container.json (berthd) and
//! exit.json (the monitor): the helper records the exit whether or not
//! berthd is there, and berthd never rewrites what the helper wrote. Both
//! are replaced atomically and private (0600). The directory goes with the
//! container's.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use berth_runtime::exec::{ExecExit, EXIT_SUFFIX};
use serde::{Deserialize, Serialize};

use crate::monitor::ExitRecord;

/// The directory of a container's exec records, under its directory.
pub const EXECS_DIR: &str = "execs";
/// Finished exec records kept per container; older ones are dropped as
/// newer ones finish (Docker keeps none past the container's life either).
pub const MAX_FINISHED: usize = 64;
/// Length of an exec id (hex).
pub const ID_LEN: usize = 64;

/// What berthd records of an exec (`<exec id>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRecord {
    /// The exec's id.
    pub exec_id: String,
    /// Its container's id.
    pub container_id: String,
    /// Its command, cut as in its events (16 entries of 256 bytes).
    pub command: Vec<String>,
    /// The command was cut.
    pub truncated: bool,
    /// It has a terminal.
    pub tty: bool,
    /// Host pid of the process.
    pub pid: i32,
    /// Host pid of its helper (`berth-monitor __exec`), its parent, which
    /// records its exit.
    pub helper_pid: i32,
    /// The helper's start time (clock ticks after boot, /proc/PID/stat
    /// field 22): with the pid, the helper's identity across a restart of
    /// berthd (a pid alone may have been reused).
    pub helper_start: u64,
    /// Unix nanos of the start.
    pub started_at_unix_nanos: i64,
    /// How it ended, once berthd knows (else see the helper's file).
    #[serde(default)]
    pub exit: Option<ExitRecord>,
    /// EXEC_EXITED was published for it.
    #[serde(default)]
    pub announced: bool,
}

/// Whether `id` can be an exec id (64 lowercase hex): anything else is
/// never a file name under `execs/`.
pub fn valid_id(id: &str) -> bool {
    id.len() == ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The exec records' directory of the container in `container_dir`.
pub fn dir(container_dir: &Path) -> PathBuf {
    container_dir.join(EXECS_DIR)
}

fn record_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

fn exit_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}{EXIT_SUFFIX}"))
}

/// Makes the directory (0700, as every directory of the state) if it is
/// not there. Its container's directory must be: a removed container's is
/// never made again.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .mode(crate::state_dir::DIR_MODE)
        .create(dir)
    {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        r => r,
    }
}

/// Writes `rec` (atomically, 0600). Not fsynced: like running.json, it
/// describes a process, which a power loss ends anyway.
pub fn write(dir: &Path, rec: &ExecRecord) -> std::io::Result<()> {
    let json = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
    crate::fsutil::replace(&record_path(dir, &rec.exec_id), &json)
}

/// The record of exec `id`, if there is a readable one.
pub fn read(dir: &Path, id: &str) -> Option<ExecRecord> {
    let bytes = std::fs::read(record_path(dir, id)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The exit the helper recorded for exec `id`.
pub fn read_exit(dir: &Path, id: &str) -> Option<ExitRecord> {
    let bytes = std::fs::read(exit_path(dir, id)).ok()?;
    let x: ExecExit = serde_json::from_slice(&bytes).ok()?;
    Some(ExitRecord {
        exit_code: x.exit_code,
        signal: x.signal,
        oom_killed: false,
        finished_at_unix_nanos: x.finished_at_unix_nanos,
    })
}

/// The record of exec `id` with its exit filled in from the helper's file
/// when berthd has not recorded it yet.
pub fn read_full(dir: &Path, id: &str) -> Option<ExecRecord> {
    let mut rec = read(dir, id)?;
    if rec.exit.is_none() {
        rec.exit = read_exit(dir, id);
    }
    Some(rec)
}

/// Every exec id with a record in `dir`, and the exit files without one (a
/// crash of berthd between the start of a helper and the record of it).
pub fn list(dir: &Path) -> (Vec<String>, Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (Vec::new(), Vec::new());
    };
    let (mut records, mut exits) = (HashSet::new(), Vec::new());
    for de in rd.flatten() {
        let name = de.file_name().to_string_lossy().into_owned();
        if let Some(id) = name.strip_suffix(EXIT_SUFFIX) {
            exits.push(id.to_string());
        } else if let Some(id) = name.strip_suffix(".json") {
            records.insert(id.to_string());
        } else if name.starts_with('.') && name.ends_with(".tmp") {
            // A write a crash cut short.
            let _ = std::fs::remove_file(de.path());
        }
    }
    let orphans = exits
        .into_iter()
        .filter(|id| !records.contains(id) && valid_id(id))
        .collect();
    let mut records: Vec<String> = records.into_iter().filter(|id| valid_id(id)).collect();
    records.sort();
    (records, orphans)
}

/// Removes both files of exec `id`.
pub fn remove(dir: &Path, id: &str) {
    let _ = std::fs::remove_file(record_path(dir, id));
    let _ = std::fs::remove_file(exit_path(dir, id));
}

/// Keeps at most [`MAX_FINISHED`] finished and announced records in `dir`,
/// dropping the oldest finished. Cheap while under the bound: it counts
/// exit files before it reads any record.
pub fn prune(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let exits = rd
        .flatten()
        .filter(|de| de.file_name().to_string_lossy().ends_with(EXIT_SUFFIX))
        .count();
    if exits <= MAX_FINISHED {
        return;
    }
    let mut done: Vec<(i64, String)> = list(dir)
        .0
        .into_iter()
        .filter_map(|id| read_full(dir, &id))
        .filter(|r| r.announced)
        .filter_map(|r| r.exit.map(|x| (x.finished_at_unix_nanos, r.exec_id)))
        .collect();
    if done.len() <= MAX_FINISHED {
        return;
    }
    done.sort();
    for (_, id) in &done[..done.len() - MAX_FINISHED] {
        remove(dir, id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, finished: Option<i64>) -> ExecRecord {
        ExecRecord {
            exec_id: id.into(),
            container_id: "c".into(),
            command: vec!["true".into()],
            truncated: false,
            tty: false,
            pid: 1,
            helper_pid: 2,
            helper_start: 3,
            started_at_unix_nanos: 4,
            exit: finished.map(|f| ExitRecord {
                exit_code: 0,
                signal: 0,
                oom_killed: false,
                finished_at_unix_nanos: f,
            }),
            announced: finished.is_some(),
        }
    }

    fn id(n: usize) -> String {
        format!("{n:064x}")
    }

    #[test]
    fn ids_are_64_hex_only() {
        assert!(valid_id(&id(7)));
        assert!(!valid_id("abc"));
        assert!(!valid_id(&format!("{}/", &id(1)[..63])));
        assert!(!valid_id(&id(1).to_uppercase().replace('0', "A")));
    }

    #[test]
    fn records_are_private_and_the_oldest_finished_are_pruned() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(tmp.path());
        ensure_dir(&d).unwrap();
        ensure_dir(&d).unwrap();
        // One running, MAX_FINISHED + 3 finished (with the helper's file).
        write(&d, &rec(&id(1000), None)).unwrap();
        for n in 0..MAX_FINISHED + 3 {
            write(&d, &rec(&id(n), Some(n as i64))).unwrap();
            std::fs::write(exit_path(&d, &id(n)), b"{}").unwrap();
        }
        let mode = std::fs::metadata(record_path(&d, &id(1)))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        prune(&d);
        let (ids, orphans) = list(&d);
        assert!(orphans.is_empty());
        assert_eq!(ids.len(), MAX_FINISHED + 1);
        for n in 0..3 {
            assert!(read(&d, &id(n)).is_none(), "{n} was kept");
        }
        assert!(read(&d, &id(3)).is_some());
        assert_eq!(read(&d, &id(1000)).unwrap().exit, None);
    }

    #[test]
    fn the_helpers_exit_fills_in_a_record_without_one() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(tmp.path());
        ensure_dir(&d).unwrap();
        write(&d, &rec(&id(1), None)).unwrap();
        let x = ExecExit {
            exit_code: 7,
            signal: 0,
            finished_at_unix_nanos: 9,
        };
        std::fs::write(exit_path(&d, &id(1)), serde_json::to_vec(&x).unwrap()).unwrap();
        std::fs::write(exit_path(&d, &id(2)), serde_json::to_vec(&x).unwrap()).unwrap();
        assert_eq!(read_full(&d, &id(1)).unwrap().exit.unwrap().exit_code, 7);
        assert_eq!(list(&d), (vec![id(1)], vec![id(2)]));
    }
}
