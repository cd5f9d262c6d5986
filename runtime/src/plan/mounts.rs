//! The container's own mounts (`-v`, `--mount`, `--tmpfs`) as plan steps,
//! and the rules their targets follow.
//!
//! The init makes each one with [`Step::UserMount`]: the target is
//! resolved inside the root (`openat2` with `RESOLVE_IN_ROOT`), never by a
//! host path, so a symlink in the image (or one another container swapped
//! into a shared volume) cannot move the mount out of the root.

use alloc::vec::Vec;

use super::Step;
use crate::launch::{LaunchSpec, UserMountKind};

/// Why a mount target is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// Not an absolute path.
    Relative,
    /// Longer than [`MAX_TARGET`] bytes.
    TooLong,
    /// A `.` or `..` component, an empty one (`//`), or a NUL byte.
    BadComponent,
    /// The root itself.
    Root,
    /// /proc or /sys, or under them: kernel interfaces the masks protect.
    KernelInterface,
}

impl TargetError {
    /// What is wrong, for a message.
    pub fn reason(self) -> &'static str {
        match self {
            TargetError::Relative => "is not an absolute path",
            TargetError::TooLong => "is longer than 4096 bytes",
            TargetError::BadComponent => "has an empty, \".\" or \"..\" component or a NUL byte",
            TargetError::Root => "is the container's root",
            TargetError::KernelInterface => "is /proc or /sys or under them",
        }
    }
}

/// The longest target accepted (PATH_MAX).
pub const MAX_TARGET: usize = 4096;

/// Checks a mount target: absolute, at most [`MAX_TARGET`] bytes, no empty,
/// `.` or `..` component (a trailing `/` is allowed), not `/`, not /proc
/// or /sys or under them. This checks the text only: an image symlink on
/// the way is resolved by the monitor, which refuses a target that lands
/// in a kernel file system or under /proc or /sys (monitor/src/mounts.rs).
pub fn check_target(target: &str) -> Result<(), TargetError> {
    let parts = check_plain(target)?;
    if matches!(parts.first(), Some(&"proc") | Some(&"sys")) {
        return Err(TargetError::KernelInterface);
    }
    Ok(())
}

/// What every container path of a spec must be (a mount target, a masked
/// or read-only path): [`check_target`] without its /proc and /sys rule.
/// Its components, for the caller's further rules.
pub fn check_plain(target: &str) -> Result<Vec<&str>, TargetError> {
    if !target.starts_with('/') {
        return Err(TargetError::Relative);
    }
    if target.len() > MAX_TARGET {
        return Err(TargetError::TooLong);
    }
    if target.contains('\0') {
        return Err(TargetError::BadComponent);
    }
    let trimmed = target.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(TargetError::Root);
    }
    let parts: Vec<&str> = trimmed[1..].split('/').collect();
    if parts
        .iter()
        .any(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return Err(TargetError::BadComponent);
    }
    Ok(parts)
}

/// The depth of a target: how many components it has.
fn depth(target: &str) -> usize {
    target.split('/').filter(|c| !c.is_empty()).count()
}

/// What follows [`Step::Unshare`]: the sources of shared binds opened
/// while the namespace's mounts are still the host's peers, then every
/// mount made a slave when a bind receives the host's mounts (slave or
/// shared), else private. Either way nothing mounted in the container
/// propagates to the host, except under a shared bind (runc makes the
/// root `rslave` for the same reason).
pub(super) fn propagation(spec: &LaunchSpec, steps: &mut Vec<Step>) {
    let mut receives = false;
    for m in &spec.mounts {
        if let UserMountKind::Bind { slave, shared, .. } = m.kind {
            receives |= slave || shared;
            if shared {
                steps.push(Step::OpenSharedBind { mount: m.clone() });
            }
        }
    }
    steps.push(if receives {
        Step::MakeMountsSlave
    } else {
        Step::MakeMountsPrivate
    });
}

/// One [`Step::UserMount`] per mount of `spec`, shallowest target first
/// (stable), so a mount under another one's target is made on top of it.
pub(super) fn user_mounts(spec: &LaunchSpec, root: &str, steps: &mut Vec<Step>) {
    let mut mounts: Vec<_> = spec.mounts.iter().collect();
    mounts.sort_by_key(|m| depth(&m.target));
    for m in mounts {
        steps.push(Step::UserMount {
            root: root.into(),
            mount: m.clone(),
        });
    }
}

#[cfg(test)]
mod tests;
