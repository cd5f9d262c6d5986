//! `build`'s context: the directory as a tar stream, less what
//! `.dockerignore` excludes (Docker's rules: one pattern per line, `#`
//! comments, `!` re-includes, `*`/`?`/`[..]` within a component, `**` across
//! them; a pattern matching a directory excludes what is under it). The
//! Dockerfile and `.dockerignore` are always sent: the agent needs the one,
//! and Docker sends the other too.

use std::io::Write;
use std::path::{Path, PathBuf};

use glob::{MatchOptions, Pattern};

use crate::error::{Error, Result};

/// One `.dockerignore` rule.
#[derive(Debug)]
struct Rule {
    pattern: Pattern,
    /// A `!` line: re-includes what earlier rules excluded.
    include: bool,
}

/// The parsed `.dockerignore` of a context (empty when it has none).
#[derive(Debug, Default)]
pub struct Ignore {
    rules: Vec<Rule>,
}

const OPTS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

impl Ignore {
    /// Parses `.dockerignore` text.
    pub fn parse(text: &str) -> Result<Ignore> {
        let mut rules = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (include, pat) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            // Paths are relative to the context root, however written.
            let clean = clean(pat);
            if clean.is_empty() {
                continue;
            }
            let pattern = Pattern::new(&clean)
                .map_err(|e| Error::Message(format!(".dockerignore line {}: {e}", n + 1)))?;
            rules.push(Rule { pattern, include });
        }
        Ok(Ignore { rules })
    }

    /// Whether `rel` (context-relative, '/'-separated) is excluded: the last
    /// rule matching it or one of its parent directories decides.
    pub fn excluded(&self, rel: &str) -> bool {
        let mut out = false;
        for r in &self.rules {
            if matches_or_parent(&r.pattern, rel) {
                out = !r.include;
            }
        }
        out
    }

    /// Whether a directory may hold something a `!` rule brings back (so
    /// an excluded directory must still be walked).
    fn may_reinclude(&self) -> bool {
        self.rules.iter().any(|r| r.include)
    }
}

fn matches_or_parent(p: &Pattern, rel: &str) -> bool {
    if p.matches_with(rel, OPTS) {
        return true;
    }
    let mut at = rel;
    while let Some((parent, _)) = at.rsplit_once('/') {
        if p.matches_with(parent, OPTS) {
            return true;
        }
        at = parent;
    }
    false
}

/// `p` without leading `/` or `./`, `.` components and a trailing `/`.
fn clean(p: &str) -> String {
    p.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// The context's files in tar order (sorted, parents first), less the
/// excluded ones; `keep` are always included (the Dockerfile).
pub fn files(root: &Path, ignore: &Ignore, keep: &[String]) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    walk(root, "", ignore, keep, &mut out)?;
    Ok(out)
}

fn walk(
    dir: &Path,
    rel: &str,
    ignore: &Ignore,
    keep: &[String],
    out: &mut Vec<(String, PathBuf)>,
) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::Message(format!("cannot read {}: {e}", dir.display())))?
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::Message(format!("cannot read {}: {e}", dir.display())))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let path = e.path();
        let kept = keep.contains(&child) || child == ".dockerignore";
        let excluded = !kept && ignore.excluded(&child);
        let ty = e
            .file_type()
            .map_err(|err| Error::Message(format!("cannot stat {}: {err}", path.display())))?;
        let is_dir = ty.is_dir();
        let plain = is_dir || ty.is_file() || ty.is_symlink();
        if !excluded && !plain {
            return Err(Error::Message(format!(
                "the build context holds {child}, a fifo, socket or device: only files, \
                 directories and links are sent (exclude it in .dockerignore)"
            )));
        }
        if !excluded {
            out.push((child.clone(), path.clone()));
        }
        if is_dir && (!excluded || ignore.may_reinclude()) {
            walk(&path, &child, ignore, keep, out)?;
        }
    }
    Ok(())
}

/// Writes the files as a tar to `w` (links stay links; nothing outside the
/// context is read).
pub fn write_tar(files: &[(String, PathBuf)], w: impl Write) -> Result<()> {
    let mut tar = tar::Builder::new(w);
    tar.follow_symlinks(false);
    for (rel, path) in files {
        tar.append_path_with_name(path, rel).map_err(|e| {
            Error::Message(format!("cannot add {} to the context: {e}", path.display()))
        })?;
    }
    tar.finish()
        .map_err(|e| Error::Message(format!("cannot write the context: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_follows_dockers_rules() {
        let ig = Ignore::parse(
            "# comment\n\n*.log\n/build\n**/*.tmp\nsecret*\n!secret-ok\ndocs/*/draft\n",
        )
        .unwrap();
        assert!(ig.excluded("a.log"));
        assert!(!ig.excluded("sub/a.log"), "* stays within a component");
        assert!(ig.excluded("build"));
        assert!(ig.excluded("build/out/x"), "under an excluded directory");
        assert!(ig.excluded("x.tmp") && ig.excluded("a/b/c.tmp"));
        assert!(ig.excluded("secret-key"));
        assert!(!ig.excluded("secret-ok"), "! re-includes");
        assert!(ig.excluded("docs/v1/draft") && !ig.excluded("docs/draft"));
        assert!(!ig.excluded("src/main.rs"));
    }

    #[test]
    fn the_dockerfile_and_dockerignore_are_always_sent_and_order_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(root.join(".dockerignore"), "*\n!b\n").unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::write(root.join("b/c/d.txt"), "d").unwrap();
        let ig = Ignore::parse("*\n!b\n").unwrap();
        let names: Vec<String> = files(root, &ig, &["Dockerfile".into()])
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [".dockerignore", "Dockerfile", "b", "b/c", "b/c/d.txt"]
        );
    }
}
