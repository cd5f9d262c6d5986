//! Pure path rules of `cp`: what a request path is and asks for, and which
//! tar entry names are extracted. No file system access here.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::{CopyError, PATH_MAX};

/// Checks a request path: absolute, at most [`PATH_MAX`] bytes, no NUL.
pub fn check(path: &str) -> Result<(), CopyError> {
    if path.is_empty() {
        return Err(CopyError::InvalidPath("a path is required".into()));
    }
    if path.len() > PATH_MAX {
        return Err(CopyError::InvalidPath(format!(
            "a path of {} bytes: at most {PATH_MAX}",
            path.len()
        )));
    }
    if path.contains('\0') {
        return Err(CopyError::InvalidPath("the path holds a NUL byte".into()));
    }
    if !path.starts_with('/') {
        return Err(CopyError::InvalidPath(
            "the path must be absolute (start with /)".into(),
        ));
    }
    Ok(())
}

/// What a request path asks for, after lexical cleaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The parent directory (absolute, cleaned), resolved in the root.
    pub parent: PathBuf,
    /// The last component; `None` for the root itself.
    pub name: Option<Vec<u8>>,
    /// A directory was asked for (a trailing `/` or `/.`): the last
    /// component is followed (inside the root) and must be a directory.
    pub dir: bool,
    /// Its contents were asked for (`/.`, or the root): the archive's
    /// top entry is `.`.
    pub contents: bool,
}

impl Wanted {
    /// The whole cleaned path (absolute).
    pub fn full(&self) -> PathBuf {
        match &self.name {
            Some(n) => self.parent.join(OsStr::from_bytes(n)),
            None => self.parent.clone(),
        }
    }

    /// The archive's top entry name: `.` for contents, else the last
    /// component.
    pub fn top_name(&self) -> Vec<u8> {
        match (&self.name, self.contents) {
            (Some(n), false) => n.clone(),
            _ => b".".to_vec(),
        }
    }
}

/// Cleans `path` (checked with [`check`]) lexically as Docker's
/// `filepath.Join("/", path)` does (`.` and empty components dropped, `..`
/// taking one off, never above `/`), keeping what a trailing `/` or `/.`
/// says.
pub fn wanted(path: &str) -> Wanted {
    let bytes = path.as_bytes();
    let contents = bytes.ends_with(b"/.") || path == "/";
    let dir = contents || bytes.ends_with(b"/");
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in bytes.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let name = parts.pop().map(<[u8]>::to_vec);
    let mut parent = PathBuf::from("/");
    for p in parts {
        parent.push(OsStr::from_bytes(p));
    }
    Wanted {
        parent,
        contents: contents || name.is_none(),
        dir: dir || name.is_none(),
        name,
    }
}

/// The components of a tar entry's name, to be created beneath the
/// extraction directory: `.` and empty components dropped; an absolute
/// name, a `..` component or a name over [`PATH_MAX`] bytes refused (the
/// reason). An empty result is the directory itself (a `.` or `./` entry).
pub fn entry_components(name: &[u8]) -> Result<Vec<&OsStr>, &'static str> {
    if name.len() > PATH_MAX {
        return Err("the name is longer than 4096 bytes");
    }
    if name.starts_with(b"/") {
        return Err("an absolute name");
    }
    let mut out = Vec::new();
    for c in name.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("a name with a `..` component"),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

/// The components as one relative path.
pub fn join(components: &[&OsStr]) -> PathBuf {
    components.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_are_checked() {
        assert!(check("/etc/hosts").is_ok());
        assert!(check("/").is_ok());
        for bad in ["", "etc/hosts", "./x", "/a\0b"] {
            assert!(
                matches!(check(bad), Err(CopyError::InvalidPath(_))),
                "{bad:?}"
            );
        }
        let long = format!("/{}", "a".repeat(PATH_MAX));
        let e = check(&long).unwrap_err().to_string();
        assert!(e.len() < 100, "{e}");
        assert!(check(&format!("/{}", "a".repeat(PATH_MAX - 1))).is_ok());
    }

    #[test]
    fn a_plain_path_is_its_last_component_unfollowed() {
        let w = wanted("/etc/hosts");
        assert_eq!(w.parent, PathBuf::from("/etc"));
        assert_eq!(w.name.as_deref(), Some(&b"hosts"[..]));
        assert!(!w.dir && !w.contents);
        assert_eq!(w.top_name(), b"hosts");
        assert_eq!(w.full(), PathBuf::from("/etc/hosts"));
    }

    #[test]
    fn trailing_slash_asks_for_a_directory_and_slash_dot_for_its_contents() {
        let w = wanted("/var/log/");
        assert_eq!(w.parent, PathBuf::from("/var"));
        assert_eq!(w.name.as_deref(), Some(&b"log"[..]));
        assert!(w.dir && !w.contents);
        assert_eq!(w.top_name(), b"log");
        let w = wanted("/var/log/.");
        assert!(w.dir && w.contents);
        assert_eq!(w.name.as_deref(), Some(&b"log"[..]));
        assert_eq!(w.top_name(), b".");
    }

    #[test]
    fn paths_are_cleaned_and_never_climb_above_the_root() {
        let w = wanted("//a/./b/../c");
        assert_eq!(w.full(), PathBuf::from("/a/c"));
        let w = wanted("/../../etc/passwd");
        assert_eq!(w.full(), PathBuf::from("/etc/passwd"));
        for root in ["/", "/..", "/.", "/a/.."] {
            let w = wanted(root);
            assert_eq!(w.name, None, "{root}");
            assert!(w.dir && w.contents, "{root}");
            assert_eq!(w.full(), PathBuf::from("/"));
            assert_eq!(w.top_name(), b".");
        }
    }

    #[test]
    fn entry_names_stay_beneath_the_directory() {
        fn ok(n: &[u8]) -> Vec<&OsStr> {
            entry_components(n).unwrap()
        }
        assert_eq!(ok(b"a/b/c"), ["a", "b", "c"]);
        assert_eq!(ok(b"./a//b/"), ["a", "b"]);
        assert!(ok(b".").is_empty());
        assert!(ok(b"./").is_empty());
        assert_eq!(ok(b"...").len(), 1);
        assert_eq!(ok(b"a..b/..c"), ["a..b", "..c"]);
        assert_eq!(
            entry_components(b"../x"),
            Err("a name with a `..` component")
        );
        assert_eq!(
            entry_components(b"a/../../x"),
            Err("a name with a `..` component")
        );
        assert_eq!(entry_components(b"/etc/passwd"), Err("an absolute name"));
        assert!(entry_components(&vec![b'a'; PATH_MAX + 1]).is_err());
        assert_eq!(join(&ok(b"a/b")), PathBuf::from("a/b"));
    }
}
