//! What berth builds, checked before any step runs: the platform, and the
//! Dockerfile features that are not built yet (each refused with its line).

use super::dockerfile::{BuildFile, Op};
use super::error::{BuildError, Result};
use crate::error::capped;

/// Only the agent's own platform is built.
pub fn check_platform(platform: &str) -> Result<()> {
    let own = format!("linux/{}", crate::image::layout::host_arch());
    if platform.is_empty() || platform == own {
        return Ok(());
    }
    Err(BuildError::Unsupported(format!(
        "building for platform {:?} (this agent builds for {own})",
        capped(platform)
    )))
}

/// Refuses, before anything runs, what berth does not build yet.
pub fn check_supported(file: &BuildFile) -> Result<()> {
    let at = |line: usize, what: &str| {
        Err(BuildError::Unsupported(format!(
            "{what} (Dockerfile line {line})"
        )))
    };
    for stage in &file.stages {
        if let Some(p) = &stage.platform {
            if !p.contains('$') {
                check_platform(p)?;
            }
        }
        for step in &stage.steps {
            match &step.op {
                Op::Add(c) if c.sources.iter().any(|s| is_remote(s)) => {
                    return at(
                        step.line,
                        "ADD from a URL or a git repository (the build has no network to fetch \
                         from; ADD a file of the context)",
                    )
                }
                Op::Run {
                    mounts,
                    security,
                    network,
                    ..
                } => {
                    // What is not built yet is refused before any step
                    // runs; other mistakes when the step's variables are
                    // known.
                    for raw in mounts {
                        if let Err(BuildError::Unsupported(what)) =
                            super::run_mounts::parse(raw, "/")
                        {
                            return at(step.line, &what);
                        }
                    }
                    if security.is_some() {
                        return at(step.line, "RUN --security");
                    }
                    if network.is_some() {
                        return at(step.line, "RUN --network; use the build's network option");
                    }
                }
                Op::Copy(c) | Op::Add(c)
                    if !c.heredocs.is_empty() && (c.from.is_some() || !c.sources.is_empty()) =>
                {
                    return at(
                        step.line,
                        "COPY or ADD mixing here-documents with other sources or --from",
                    )
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// An ADD source Docker would fetch: a URL, or a git address.
pub(super) fn is_remote(source: &str) -> bool {
    source.contains("://") || source.starts_with("git@")
}
