//! `RUN --mount`: what a step mounts while it runs, never part of its
//! layer. `type=cache` (a directory kept under `<state>/build/caches`
//! across builds, per `id`), `type=tmpfs` and `type=bind` (read-only, from
//! the build context) are built; `secret`, `ssh` and `from=` are refused as
//! not supported yet.
//!
//! The options are BuildKit's: `type`, `target` (`dst`, `destination`),
//! `source` (`src`), `id`, `sharing` (`shared`, `locked`, `private`),
//! `mode`, `uid`, `gid`, `ro`/`readonly`, `rw`/`readwrite`, `size`.

use std::collections::HashMap;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::context::Context;
use super::copy::clean_abs;
use super::error::{BuildError, Result};
use crate::container::{MountKind, MountSpec};
use crate::error::capped;

/// Most `--mount` flags one RUN may have.
pub const MAX_MOUNTS: usize = 16;
/// Longest cache `id`.
const MAX_ID: usize = 256;

/// Who may use a cache at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Every step at once (BuildKit's default).
    Shared,
    /// One step at a time; `private` waits too (BuildKit would give a
    /// second writer a fresh directory; waiting is as safe).
    Locked,
}

/// One `--mount`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMount {
    /// A directory that outlives the build.
    Cache {
        target: String,
        id: String,
        sharing: Sharing,
        mode: u32,
        uid: u32,
        gid: u32,
        read_only: bool,
    },
    /// A fresh tmpfs.
    Tmpfs { target: String, size: u64 },
    /// A context file or directory, read-only.
    Bind { target: String, source: String },
}

impl RunMount {
    /// The path in the container.
    pub fn target(&self) -> &str {
        match self {
            RunMount::Cache { target, .. }
            | RunMount::Tmpfs { target, .. }
            | RunMount::Bind { target, .. } => target,
        }
    }
}

fn invalid(flag: &str, why: impl std::fmt::Display) -> BuildError {
    BuildError::invalid(format!("RUN --mount={}: {why}", capped(flag)))
}

fn unsupported(what: String) -> BuildError {
    BuildError::Unsupported(format!("RUN --mount {what}"))
}

/// Parses one `--mount` value (already expanded); a relative target is
/// relative to `workdir`.
pub fn parse(flag: &str, workdir: &str) -> Result<RunMount> {
    let mut kind = "bind".to_string();
    let mut opts: HashMap<&str, String> = HashMap::new();
    for field in flag.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().to_string())),
            None => (field.trim(), None),
        };
        let k = match k {
            "dst" | "destination" => "target",
            "src" => "source",
            "readonly" => "ro",
            "readwrite" => "rw",
            k => k,
        };
        match (k, v) {
            ("type", Some(v)) => kind = v,
            ("ro" | "rw", None) => {
                opts.insert(k, "true".into());
            }
            (
                "target" | "source" | "id" | "sharing" | "mode" | "uid" | "gid" | "size" | "ro"
                | "rw" | "from",
                Some(v),
            ) => {
                opts.insert(k, v);
            }
            (k, _) => return Err(invalid(flag, format!("unknown option {:?}", capped(k)))),
        }
    }
    let flag_bool = |k: &str| -> Result<bool> {
        match opts.get(k).map(String::as_str) {
            None => Ok(false),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(v) => Err(invalid(
                flag,
                format!("{k}={:?} is not a boolean", capped(v)),
            )),
        }
    };
    let number = |k: &str, radix: u32, default: u64| -> Result<u64> {
        match opts.get(k) {
            None => Ok(default),
            Some(v) => u64::from_str_radix(v, radix)
                .map_err(|_| invalid(flag, format!("{k}={:?} is not a number", capped(v)))),
        }
    };
    if kind == "secret" || kind == "ssh" {
        return Err(unsupported(format!("type={kind}")));
    }
    let target = opts
        .get("target")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid(flag, "a target is required"))?;
    let target = if target.starts_with('/') {
        clean_abs(target)
    } else {
        clean_abs(&format!("{}/{target}", workdir.trim_end_matches('/')))
    };
    if target == "/" {
        return Err(invalid(flag, "the target cannot be /"));
    }
    if opts.contains_key("from") {
        return Err(unsupported("from= (a stage's or an image's files)".into()));
    }
    let (ro, rw) = (flag_bool("ro")?, flag_bool("rw")?);
    let id_u32 = |k: &str| -> Result<u32> {
        u32::try_from(number(k, 10, 0)?).map_err(|_| invalid(flag, format!("{k} is too large")))
    };
    match kind.as_str() {
        "cache" => {
            let id = opts.get("id").cloned().unwrap_or_else(|| target.clone());
            if id.is_empty() || id.len() > MAX_ID {
                return Err(invalid(flag, format!("an id has 1 to {MAX_ID} bytes")));
            }
            let sharing = match opts.get("sharing").map(String::as_str) {
                None | Some("shared") => Sharing::Shared,
                Some("locked" | "private") => Sharing::Locked,
                Some(v) => return Err(invalid(flag, format!("unknown sharing {:?}", capped(v)))),
            };
            let mode = number("mode", 8, 0o755)?;
            if mode > 0o7777 {
                return Err(invalid(flag, "mode is not a file mode"));
            }
            Ok(RunMount::Cache {
                target,
                id,
                sharing,
                mode: mode as u32,
                uid: id_u32("uid")?,
                gid: id_u32("gid")?,
                read_only: ro && !rw,
            })
        }
        "tmpfs" => Ok(RunMount::Tmpfs {
            target,
            size: number("size", 10, 0)?,
        }),
        "bind" => {
            if rw {
                return Err(unsupported(
                    "type=bind,rw (writes a step throws away)".into(),
                ));
            }
            Ok(RunMount::Bind {
                target,
                source: opts.get("source").cloned().unwrap_or_else(|| ".".into()),
            })
        }
        other => Err(invalid(flag, format!("unknown type {:?}", capped(other)))),
    }
}

/// The caches of `RUN --mount=type=cache`, and the locks of the locked ones.
pub struct Caches {
    dir: PathBuf,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// What a step's mounts hold while it runs: the locks of its locked caches.
pub type Held = Vec<tokio::sync::OwnedMutexGuard<()>>;

impl Caches {
    /// The caches kept in `dir` (`<state>/build/caches`).
    pub fn new(dir: PathBuf) -> Caches {
        Caches {
            dir,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The container mounts of `mounts`, their caches made (owned and
    /// moded as the first use asks) and the locked ones held. `ctx` is the
    /// build context bind mounts read from.
    pub async fn prepare(
        &self,
        mounts: &[RunMount],
        ctx: &Context,
    ) -> Result<(Vec<MountSpec>, Held)> {
        let mut specs = Vec::new();
        // Locked caches are taken in one order (by key), each once: two
        // mounts of one id in a RUN, or two builds naming ids in opposite
        // orders, cannot deadlock.
        let mut keys: Vec<String> = mounts
            .iter()
            .filter_map(|m| match m {
                RunMount::Cache {
                    id,
                    sharing: Sharing::Locked,
                    ..
                } => Some(cache_key(id)),
                _ => None,
            })
            .collect();
        keys.sort();
        keys.dedup();
        let mut held = Vec::new();
        for key in keys {
            let lock = {
                let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
                locks.entry(key).or_default().clone()
            };
            held.push(lock.lock_owned().await);
        }
        for m in mounts {
            let spec = |kind, source: String, read_only| MountSpec {
                kind,
                source,
                target: m.target().to_string(),
                read_only,
                propagation: String::new(),
                recursive: Some(false),
                tmpfs_size: 0,
                tmpfs_mode: 0,
                no_copy: false,
                build: true,
                read_only_top_only: false,
                pod_shm: false,
            };
            match m {
                RunMount::Cache {
                    id,
                    mode,
                    uid,
                    gid,
                    read_only,
                    ..
                } => {
                    let dir = self.dir.join(cache_key(id));
                    make_cache(&self.dir, &dir, *mode, *uid, *gid)?;
                    specs.push(spec(
                        MountKind::Bind,
                        dir.to_string_lossy().into_owned(),
                        *read_only,
                    ));
                }
                RunMount::Tmpfs { size, .. } => {
                    let mut s = spec(MountKind::Tmpfs, String::new(), false);
                    s.tmpfs_size = *size;
                    s.recursive = None;
                    s.build = false;
                    specs.push(s);
                }
                RunMount::Bind { source, .. } => {
                    let path = ctx.source_path(source)?;
                    specs.push(spec(
                        MountKind::Bind,
                        path.to_string_lossy().into_owned(),
                        true,
                    ));
                }
            }
        }
        Ok((specs, held))
    }
}

/// The directory name of cache `id`.
fn cache_key(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// Makes the cache directory `dir` in `root` on its first use: made
/// aside, owned and moded, then renamed in, so no step ever sees it half
/// made (and a failed chown leaves nothing behind to be reused).
fn make_cache(root: &Path, dir: &Path, mode: u32, uid: u32, gid: u32) -> Result<()> {
    let io = |e| BuildError::io("making the RUN --mount cache", e);
    match crate::state_dir::create_private_dir(root) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        other => other.map_err(io)?,
    }
    if dir.is_dir() {
        return Ok(());
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let aside = root.join(format!(".new-{name}-{}", crate::container::spec::new_id()));
    std::fs::create_dir(&aside).map_err(io)?;
    let made = chown(&aside, Some(uid), Some(gid))
        .and_then(|()| std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(mode)))
        .and_then(|()| {
            // Never over a directory another step made meanwhile.
            use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
            renameat2(
                AT_FDCWD,
                &aside,
                AT_FDCWD,
                dir,
                RenameFlags::RENAME_NOREPLACE,
            )
            .map_err(std::io::Error::from)
        });
    match made {
        Ok(()) => Ok(()),
        // Another step made it meanwhile: theirs is used.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir(&aside);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir(&aside);
            Err(io(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_as_buildkit_names_them() {
        let m = parse(
            "type=cache,target=/root/.cache,sharing=locked,mode=0700,uid=5",
            "/",
        )
        .unwrap();
        assert_eq!(
            m,
            RunMount::Cache {
                target: "/root/.cache".into(),
                id: "/root/.cache".into(),
                sharing: Sharing::Locked,
                mode: 0o700,
                uid: 5,
                gid: 0,
                read_only: false,
            }
        );
        let m = parse("type=cache,dst=cache,id=go,ro", "/src").unwrap();
        assert!(
            matches!(m, RunMount::Cache { ref target, ref id, read_only: true, .. }
            if target == "/src/cache" && id == "go")
        );
        assert_eq!(
            parse("target=/src", "/").unwrap(),
            RunMount::Bind {
                target: "/src".into(),
                source: ".".into()
            }
        );
        assert_eq!(
            parse("type=tmpfs,target=/t,size=1024", "/").unwrap(),
            RunMount::Tmpfs {
                target: "/t".into(),
                size: 1024
            }
        );
    }

    #[test]
    fn bad_and_unbuilt_mounts_are_refused() {
        for (flag, want) in [
            ("type=cache", "a target is required"),
            ("type=cache,target=/", "cannot be /"),
            ("type=cache,target=/c,sharing=all", "unknown sharing"),
            ("type=cache,target=/c,mode=99", "not a number"),
            ("type=cache,target=/c,mode=17777", "not a file mode"),
            ("type=cache,target=/c,uid=x", "not a number"),
            ("type=cache,target=/c,bogus=1", "unknown option"),
            ("type=volume,target=/c", "unknown type"),
            ("type=bind,target=/c,ro=maybe", "not a boolean"),
        ] {
            let e = parse(flag, "/").unwrap_err();
            assert!(matches!(e, BuildError::Invalid(_)), "{flag}: {e}");
            assert!(e.to_string().contains(want), "{flag}: {e}");
        }
        for flag in [
            "type=secret,id=token",
            "type=ssh",
            "type=bind,target=/c,rw",
            "type=cache,target=/c,from=builder",
        ] {
            let e = parse(flag, "/").unwrap_err();
            assert!(matches!(e, BuildError::Unsupported(_)), "{flag}: {e}");
        }
    }
}
