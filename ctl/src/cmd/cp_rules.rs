//! `cp`'s pure rules, as Docker's CLI has them (`cli/command/container/cp.go`
//! and moby's `pkg/archive/copy.go`): which side is the container, Go's
//! path cleaning, and where an archive goes and under which name.

/// One side of `cp SRC DST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    /// A local path, or `-` (a tar on stdin or stdout).
    Local(String),
    /// `CONTAINER:PATH` (the path made absolute: relative to `/`).
    Container {
        /// Id, id prefix or name.
        container: String,
        /// Absolute path in the container.
        path: String,
    },
}

/// Docker's `splitCpArg`: an absolute path is local; `X:Y` is a container
/// unless `X` starts with `.` (`./file:name` is a local file).
pub fn split_arg(arg: &str) -> Side {
    if arg.starts_with('/') {
        return Side::Local(arg.into());
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() && !c.starts_with('.') => Side::Container {
            container: c.into(),
            path: if p.starts_with('/') {
                p.into()
            } else {
                format!("/{p}")
            },
        },
        _ => Side::Local(arg.into()),
    }
}

/// Go's `filepath.Clean` (Unix).
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Go's `filepath.Base`.
pub fn base(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".into();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).into()
}

/// Go's `filepath.Dir`.
pub fn dir(path: &str) -> String {
    match path.rfind('/') {
        Some(i) => clean(&path[..=i]),
        None => ".".into(),
    }
}

/// Whether `path` ends in a separator.
pub fn has_trailing_separator(path: &str) -> bool {
    path.ends_with('/')
}

/// Whether `path`'s last component is `.`.
pub fn specifies_current_dir(path: &str) -> bool {
    base(path) == "."
}

/// Whether `path` says it is a directory (`dir/` or `dir/.`).
pub fn asserts_directory(path: &str) -> bool {
    has_trailing_separator(path) || specifies_current_dir(path)
}

/// moby's `SplitPathDirEntry`: the parent and the last component, `.`
/// kept for `dir/.`.
pub fn split_dir_entry(path: &str) -> (String, String) {
    let mut cleaned = clean(path);
    if specifies_current_dir(path) {
        cleaned.push_str("/.");
    }
    (dir(&cleaned), base(&cleaned))
}

/// A symlink's target as a path: absolute as is, else beside the link.
pub fn link_target_path(link: &str, target: &str) -> String {
    if target.starts_with('/') {
        return target.into();
    }
    let (parent, _) = split_dir_entry(link);
    clean(&format!("{parent}/{target}"))
}

/// moby's `GetRebaseName`: the resolved path with `path`'s trailing `/`
/// or `/.`, and the name entries must take when following the link
/// changed the last component.
pub fn rebase_name(path: &str, resolved: &str) -> (String, Option<String>) {
    let mut resolved = resolved.to_string();
    if specifies_current_dir(path) && !specifies_current_dir(&resolved) {
        resolved.push_str("/.");
    }
    if has_trailing_separator(path) && !has_trailing_separator(&resolved) {
        resolved.push('/');
    }
    let rebase = (base(path) != base(&resolved)).then(|| base(path));
    (resolved, rebase)
}

/// What is known of one end of a copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info {
    /// Its path.
    pub path: String,
    /// It exists.
    pub exists: bool,
    /// It is a directory.
    pub is_dir: bool,
    /// The name the source's entries must take (after following a link).
    pub rebase_name: Option<String>,
}

/// Where an archive of `src` goes: extracted into `dir`, its top entry
/// renamed from `rebase.0` to `rebase.1` if set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The directory extracted into.
    pub dir: String,
    /// (from, to): the top entry's rename.
    pub rebase: Option<(String, String)>,
}

/// moby's `PrepareArchiveCopy`: Docker's rules for destinations.
pub fn prepare(src: &Info, dst: &Info) -> Result<Plan, &'static str> {
    // The archive's top entry is the source's last component (`.` for
    // its contents); a followed link's entries take the link's name.
    let (_, src_base) = split_dir_entry(&src.path);
    let (dst_dir, dst_base) = split_dir_entry(&dst.path);
    if dst.exists && dst.is_dir {
        // Extracted into it, as it is.
        return Ok(Plan {
            dir: dst.path.clone(),
            rebase: src.rebase_name.clone().map(|r| (src_base, r)),
        });
    }
    let renamed = Plan {
        dir: dst_dir,
        rebase: Some((src_base, dst_base)),
    };
    if dst.exists && src.is_dir {
        return Err("cannot copy a directory to a file");
    }
    if dst.exists || src.is_dir {
        // A file over a file, or a directory made under the destination's name.
        return Ok(renamed);
    }
    if asserts_directory(&dst.path) {
        return Err("the destination directory does not exist (a file cannot make one)");
    }
    Ok(renamed)
}

/// An archive entry's name after the top entry's rename `from` -> `to`
/// (moby's `RebaseArchiveEntries`; `from` `.` prefixes every name).
pub fn rebase_entry(name: &str, from: &str, to: &str) -> String {
    let name = name.trim_start_matches("./");
    if from == "." {
        return if name.is_empty() || name == "." {
            to.into()
        } else {
            format!("{to}/{name}")
        };
    }
    if name == from || name.trim_end_matches('/') == from {
        return to.into();
    }
    match name.strip_prefix(from).filter(|r| r.starts_with('/')) {
        Some(rest) => format!("{to}{rest}"),
        None => name.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(path: &str, exists: bool, is_dir: bool) -> Info {
        Info {
            path: path.into(),
            exists,
            is_dir,
            rebase_name: None,
        }
    }

    #[test]
    fn which_side_is_the_container() {
        let c = |c: &str, p: &str| Side::Container {
            container: c.into(),
            path: p.into(),
        };
        assert_eq!(split_arg("web:/etc/hosts"), c("web", "/etc/hosts"));
        assert_eq!(split_arg("web:etc/hosts"), c("web", "/etc/hosts"));
        assert_eq!(split_arg("web:"), c("web", "/"));
        assert_eq!(split_arg("/abs:x"), Side::Local("/abs:x".into()));
        assert_eq!(split_arg("./a:b"), Side::Local("./a:b".into()));
        assert_eq!(split_arg("file"), Side::Local("file".into()));
        assert_eq!(split_arg("-"), Side::Local("-".into()));
        assert_eq!(split_arg(":x"), Side::Local(":x".into()));
    }

    #[test]
    fn go_path_functions() {
        assert_eq!(clean("a//b/./c/.."), "a/b");
        assert_eq!(clean("/../a"), "/a");
        assert_eq!(clean("../a/.."), "..");
        assert_eq!(clean(""), ".");
        assert_eq!(clean("/"), "/");
        assert_eq!(base("/a/b/"), "b");
        assert_eq!(base("/"), "/");
        assert_eq!(base("a/."), ".");
        assert_eq!(dir("/a/b"), "/a");
        assert_eq!(dir("a"), ".");
        assert_eq!(dir("/a"), "/");
        assert_eq!(split_dir_entry("/a/b/."), ("/a/b".into(), ".".into()));
        assert_eq!(split_dir_entry("/a/b/"), ("/a".into(), "b".into()));
        assert_eq!(split_dir_entry("b"), (".".into(), "b".into()));
        assert!(asserts_directory("x/") && asserts_directory("x/.") && !asserts_directory("x"));
    }

    #[test]
    fn links_and_rebase_names() {
        assert_eq!(link_target_path("/a/link", "../b"), "/b");
        assert_eq!(link_target_path("/a/link", "/etc"), "/etc");
        assert_eq!(
            rebase_name("/a/link", "/b/target"),
            ("/b/target".into(), Some("link".into()))
        );
        assert_eq!(rebase_name("/a/link/.", "/b/t"), ("/b/t/.".into(), None));
        assert_eq!(rebase_name("/a/same", "/b/same"), ("/b/same".into(), None));
    }

    #[test]
    fn docker_destination_rules() {
        // Into an existing directory, as is.
        let p = prepare(&info("/src/f", true, false), &info("/dst", true, true)).unwrap();
        assert_eq!(
            p,
            Plan {
                dir: "/dst".into(),
                rebase: None
            }
        );
        // A directory's contents into an existing directory.
        let p = prepare(&info("/src/d/.", true, true), &info("/dst", true, true)).unwrap();
        assert_eq!(p.rebase, None);
        // A directory to a new name: made in the parent, renamed.
        let p = prepare(&info("/src/d", true, true), &info("/dst/new", false, false)).unwrap();
        assert_eq!(
            p,
            Plan {
                dir: "/dst".into(),
                rebase: Some(("d".into(), "new".into()))
            }
        );
        // A directory's contents to a new name: the same.
        let p = prepare(
            &info("/src/d/.", true, true),
            &info("/dst/new", false, false),
        )
        .unwrap();
        assert_eq!(p.rebase, Some((".".into(), "new".into())));
        // A file over a file, or to a new name.
        let p = prepare(&info("/src/f", true, false), &info("/dst/g", true, false)).unwrap();
        assert_eq!(
            p,
            Plan {
                dir: "/dst".into(),
                rebase: Some(("f".into(), "g".into()))
            }
        );
        let p = prepare(&info("f", true, false), &info("new", false, false)).unwrap();
        assert_eq!(
            p,
            Plan {
                dir: ".".into(),
                rebase: Some(("f".into(), "new".into()))
            }
        );
        // A directory over a file; a file into a directory that is not there.
        assert!(prepare(&info("/d", true, true), &info("/f", true, false)).is_err());
        assert!(prepare(&info("/f", true, false), &info("/nodir/", false, false)).is_err());
        // A followed link keeps the name asked for.
        let mut src = info("/b/target", true, false);
        src.rebase_name = Some("link".into());
        let p = prepare(&src, &info("/dst", true, true)).unwrap();
        assert_eq!(p.rebase, Some(("target".into(), "link".into())));
    }

    #[test]
    fn entries_are_rebased_by_their_first_component() {
        assert_eq!(rebase_entry("d", "d", "new"), "new");
        assert_eq!(rebase_entry("d/", "d", "new"), "new");
        assert_eq!(rebase_entry("d/x/y", "d", "new"), "new/x/y");
        assert_eq!(rebase_entry("dx/y", "d", "new"), "dx/y");
        assert_eq!(rebase_entry("./", ".", "new"), "new");
        assert_eq!(rebase_entry("./a/b", ".", "new"), "new/a/b");
        assert_eq!(rebase_entry("a", ".", "new"), "new/a");
    }
}
