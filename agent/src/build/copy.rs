//! COPY: what goes where (Docker's rules for files, directories and a
//! destination that is a directory), with whose ownership, and the view of
//! another stage or image that `--from` copies out of.

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::archive;
use super::context::Context;
use super::error::{BuildError, Result};
use super::layer::{CopyItem, CopyOpts};
use super::lower;
use crate::error::capped;

/// What a COPY step will write, and a digest of it for the cache key.
pub struct CopyPlan {
    /// The files, directories and links, and where each goes.
    pub items: Vec<CopyItem>,
    /// Ownership, mode, time clamp and the parent directories to make.
    pub opts: CopyOpts,
}

/// The options of one COPY, expanded.
pub struct CopyArgs<'a> {
    /// Sources, relative to the source root.
    pub sources: &'a [String],
    /// Destination (relative ones are relative to the working directory).
    pub dest: &'a str,
    /// `--chown` (user[:group], names looked up in the image).
    pub chown: Option<&'a str>,
    /// `--chmod` (octal).
    pub chmod: Option<&'a str>,
    /// ADD: where to unpack the sources that are tar archives (each into
    /// a directory of its own there); None for COPY.
    pub unpack_into: Option<&'a Path>,
}

/// Plans a COPY from `root` into the image made of `layers` whose working
/// directory is `workdir`.
pub fn plan(
    root: &Context,
    args: &CopyArgs<'_>,
    workdir: &str,
    layers: &[PathBuf],
    clamp_secs: u64,
) -> Result<CopyPlan> {
    let dest_text = if args.dest.starts_with('/') {
        args.dest.to_string()
    } else {
        format!("{}/{}", workdir.trim_end_matches('/'), args.dest)
    };
    // The image's own links are followed, with the image as `/`: `COPY x
    // /bin/` into a merged-/usr image writes /usr/bin/x.
    let dest = lower::resolve(layers, &clean_abs(&dest_text))?;
    let mut sources = Vec::new();
    for s in args.sources {
        sources.extend(root.named_sources(s)?);
    }
    // Into a directory: several sources, a destination ending in '/', or a
    // destination that is a directory in the image already.
    let into_dir = sources.len() > 1
        || args.dest.ends_with('/')
        || lower::stat(layers, &dest).is_some_and(|m| m.is_dir());
    let mut items = Vec::new();
    // Directories the layer writes first: every ancestor of what it copies
    // and every directory it copies into that the image has, with the
    // image's own mode and owner (a layer unpacker makes a directory the
    // layer does not list 0755, which would turn /tmp's 1777 into 0755);
    // the missing ones 0755, root's, as Docker makes them.
    let mut parents: Vec<(String, u32, u32, u32)> = Vec::new();
    for (i, (name, src)) in sources.into_iter().enumerate() {
        let meta = std::fs::symlink_metadata(&src)
            .map_err(|e| BuildError::io(format!("reading {}", src.display()), e))?;
        if let Some(dir) = args.unpack_into.filter(|_| meta.is_file()) {
            if let Some(c) = archive::sniff(&src)? {
                if lower::stat(layers, &dest).is_some_and(|m| !m.is_dir()) {
                    return Err(BuildError::invalid(format!(
                        "ADD {:?}: the destination {:?} is a file in the image, not a directory",
                        capped(&name),
                        capped(&dest)
                    )));
                }
                // An archive's contents go into the destination, a
                // directory (the image's own metadata, else 0755 root;
                // never the private unpack directory's).
                let out = dir.join(i.to_string());
                archive::unpack(&src, c, &out, &name)?;
                add_dirs(&mut parents, layers, &dest, true);
                items.push(CopyItem {
                    src: out,
                    dest: dest.clone(),
                    unpacked: true,
                });
                continue;
            }
        }
        let to = if meta.is_dir() {
            // A directory's contents go to the destination; one the image
            // has keeps its own mode and owner.
            if lower::stat(layers, &dest).is_some_and(|m| m.is_dir()) {
                add_dirs(&mut parents, layers, &dest, true);
            }
            dest.clone()
        } else if into_dir {
            // The name it was given (a link's own, not its target's).
            format!("{}/{name}", dest.trim_end_matches('/'))
        } else {
            dest.clone()
        };
        items.push(CopyItem {
            src,
            dest: to,
            unpacked: false,
        });
    }
    let (uid, gid) = match args.chown {
        Some(spec) => owner(spec, layers)?,
        None => (0, 0),
    };
    let chmod = args
        .chmod
        .map(|m| {
            u32::from_str_radix(m, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| {
                    BuildError::invalid(format!("--chmod {:?} is not an octal mode", capped(m)))
                })
        })
        .transpose()?;
    // The destination's missing ancestors, made as Docker does (0755,
    // root-owned); a directory item's own top is made by the copy itself.
    for item in &items {
        add_dirs(&mut parents, layers, &item.dest, false);
    }
    Ok(CopyPlan {
        items,
        opts: CopyOpts {
            uid,
            gid,
            chmod,
            chowned: args.chown.is_some(),
            clamp_secs,
            parents,
        },
    })
}

/// Adds to `dirs` the ancestors of `path` (resolved: no links in it), and
/// `path` itself with `with_self`: the image's metadata for those it has,
/// 0755 root for the rest.
pub fn add_dirs(
    dirs: &mut Vec<(String, u32, u32, u32)>,
    layers: &[PathBuf],
    path: &str,
    with_self: bool,
) {
    let mut chain = Vec::new();
    let mut at = if with_self {
        Some(Path::new(path))
    } else {
        Path::new(path).parent()
    };
    while let Some(p) = at {
        let text = p.to_string_lossy().into_owned();
        if text == "/" {
            break;
        }
        chain.push(text);
        at = p.parent();
    }
    for p in chain.into_iter().rev() {
        if dirs.iter().any(|(q, ..)| q == &p) {
            continue;
        }
        let entry = match lower::stat(layers, &p) {
            Some(m) if m.is_dir() => (p, m.mode() & 0o7777, m.uid(), m.gid()),
            _ => (p, 0o755, 0, 0),
        };
        dirs.push(entry);
    }
}

/// `--chown`'s user and group as ids: numbers as they are, names from the
/// image's /etc/passwd and /etc/group.
fn owner(spec: &str, layers: &[PathBuf]) -> Result<(u32, u32)> {
    const MAX: u64 = 4 << 20;
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = lower::read_small(layers, "etc/passwd", MAX);
    let groups = lower::read_small(layers, "etc/group", MAX);
    let ids = berth_runtime::user::resolve(spec, &passwd, &groups)
        .map_err(|e| BuildError::invalid(format!("--chown {:?}: {e}", capped(spec))))?;
    // Docker: a user alone gives its uid and, as the group, the same id
    // when the user is numeric, else the user's primary group.
    let gid = match group {
        None if user.parse::<u32>().is_ok() => ids.uid,
        _ => ids.gid,
    };
    Ok((ids.uid, gid))
}

/// `path` made absolute and clean (`.` dropped, `..` stops at `/`).
pub fn clean_abs(path: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// A read-only view of another stage's or image's file system, for
/// `COPY --from`: its layers stacked with overlayfs on a private directory
/// (unmounted when dropped), or the one layer itself.
pub struct FromView {
    /// The view's root, used like a context.
    pub context: Context,
    mounted: Option<PathBuf>,
}

impl FromView {
    /// Stacks `layers` (base first) at `at` (an empty directory made here).
    pub fn open(layers: &[PathBuf], at: &Path) -> Result<FromView> {
        crate::state_dir::create_private_dir(at)
            .map_err(|e| BuildError::io("making the COPY --from view", e))?;
        match layers {
            [] => Ok(FromView {
                context: Context::at(at)?,
                mounted: None,
            }),
            [one] => Ok(FromView {
                context: Context::at(one)?,
                mounted: None,
            }),
            _ => {
                // overlayfs wants the top layer first; no upper: read-only.
                let top_first: Vec<PathBuf> = layers.iter().rev().cloned().collect();
                crate::sys::overlay::mount_read_only(&top_first, at)
                    .map_err(|e| BuildError::io("mounting the COPY --from view", e))?;
                Ok(FromView {
                    context: Context::at(at)?,
                    mounted: Some(at.to_path_buf()),
                })
            }
        }
    }
}

impl Drop for FromView {
    fn drop(&mut self) {
        if let Some(at) = self.mounted.take() {
            if let Err(e) = nix::mount::umount2(&at, nix::mount::MntFlags::MNT_DETACH) {
                tracing::warn!("unmounting the COPY --from view {}: {e}", at.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_absolute_and_cannot_climb_above_the_root() {
        assert_eq!(clean_abs("/app/./x/../y"), "/app/y");
        assert_eq!(clean_abs("/../../etc"), "/etc");
        assert_eq!(clean_abs("/"), "/");
    }
}
