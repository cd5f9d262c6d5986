//! Which stages a build needs, and what each stage starts from.

use std::collections::BTreeMap;

use super::dockerfile::{BuildFile, Op};
use super::error::{BuildError, Result};
use crate::error::capped;

/// The index of the stage `target` names (its AS name or its index), or the
/// last stage when it is empty.
pub fn target_index(file: &BuildFile, target: &str) -> Result<usize> {
    if target.is_empty() {
        return file
            .stages
            .len()
            .checked_sub(1)
            .ok_or_else(|| BuildError::invalid("the Dockerfile has no stage"));
    }
    let lower = target.to_ascii_lowercase();
    if let Some(s) = file
        .stages
        .iter()
        .find(|s| s.name.as_deref() == Some(&lower))
    {
        return Ok(s.index);
    }
    match target.parse::<usize>() {
        Ok(i) if i < file.stages.len() => Ok(i),
        _ => Err(BuildError::invalid(format!(
            "target stage {:?} is not in the Dockerfile",
            capped(target)
        ))),
    }
}

/// The stage a FROM base or a `COPY --from` names, if it names an earlier
/// stage (by name, or by index for `--from`).
pub fn stage_named(file: &BuildFile, name: &str, before: usize, by_index: bool) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    if let Some(s) = file.stages[..before]
        .iter()
        .find(|s| s.name.as_deref() == Some(&lower))
    {
        return Some(s.index);
    }
    if by_index {
        if let Ok(i) = name.parse::<usize>() {
            if i < before {
                return Some(i);
            }
        }
    }
    None
}

/// The stages `target` needs, in order: itself and, transitively, the
/// stages its FROM and `COPY --from` name. (A `--from` that holds a
/// variable is taken as needing nothing: it names an image then, or fails
/// when it runs.)
pub fn needed(file: &BuildFile, target: usize) -> Vec<usize> {
    let mut need = vec![false; file.stages.len()];
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if need[i] {
            continue;
        }
        need[i] = true;
        let stage = &file.stages[i];
        if let Some(j) = stage_named(file, &stage.base, i, false) {
            todo.push(j);
        }
        for step in &stage.steps {
            if let Op::Copy(c) = &step.op {
                if let Some(from) = &c.from {
                    if let Some(j) = stage_named(file, from, i, true) {
                        todo.push(j);
                    }
                }
            }
        }
    }
    (0..file.stages.len()).filter(|&i| need[i]).collect()
}

/// The values of the global ARGs (declared before the first FROM): the
/// build argument if given, else the default.
pub fn global_args(
    file: &BuildFile,
    build_args: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for a in &file.global_args {
        let value = match (build_args.get(&a.name), &a.default) {
            (Some(v), _) => Some(v.clone()),
            // A default may use the global ARGs before it.
            (None, Some(d)) => Some(
                super::expand::expand(d, file.escape, &|k| out.get(k).cloned())
                    .unwrap_or_else(|_| d.clone()),
            ),
            (None, None) => None,
        };
        if let Some(v) = value {
            out.insert(a.name.clone(), v);
        }
    }
    out
}

/// Build arguments no ARG of the needed stages (or the global ones)
/// declares: Docker warns about them and ignores them.
pub fn unused_args(
    file: &BuildFile,
    stages: &[usize],
    build_args: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut declared: Vec<&str> = file.global_args.iter().map(|a| a.name.as_str()).collect();
    for &i in stages {
        for step in &file.stages[i].steps {
            if let Op::Arg(decls) = &step.op {
                declared.extend(decls.iter().map(|a| a.name.as_str()));
            }
        }
    }
    build_args
        .keys()
        .filter(|k| !declared.contains(&k.as_str()) && !PREDEFINED.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// Docker's predefined build arguments: usable without an ARG.
pub const PREDEFINED: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
    "SOURCE_DATE_EPOCH",
];
