//! What confines a container besides its mounts, as plan steps and
//! checks: the masked and read-only kernel interfaces, its sysctls, and
//! what a user namespace of its own rules out.

use alloc::string::ToString;
use alloc::vec::Vec;

use super::{PlanError, Step, MASKED_DIRS, MASKED_FILES, READONLY_PATHS};
use crate::launch::LaunchSpec;
use crate::sysctl;

/// Whether `path` is absolute, not `/`, at most 4096 bytes, without a
/// trailing `/` and without empty, `.` or `..`
/// components (what a masked or read-only path of the spec must be; see
/// [`super::mounts::check_plain`]).
pub fn is_plain_absolute(path: &str) -> bool {
    !path.ends_with('/') && super::mounts::check_plain(path).is_ok()
}

/// Kernel interfaces a container has no business with, hidden as Docker
/// does, then those the spec adds (a CRI container's), never fewer.
/// Container paths: these run after [`Step::PivotRoot`].
pub(super) fn masks(spec: &LaunchSpec, steps: &mut Vec<Step>) {
    let owned = |p: &str| p.to_string();
    steps.extend(MASKED_FILES.map(|p| Step::MaskFile { path: owned(p) }));
    steps.extend(MASKED_DIRS.map(|p| Step::MaskDir { path: owned(p) }));
    // A file or a directory: Step::MaskFile covers either as it finds it.
    steps.extend(
        spec.masked_paths
            .iter()
            .map(|p| Step::MaskFile { path: p.clone() }),
    );
    steps.extend(READONLY_PATHS.map(|p| Step::ReadonlyPath { path: owned(p) }));
    steps.extend(
        spec.readonly_paths
            .iter()
            .map(|p| Step::ReadonlyPath { path: p.clone() }),
    );
}

/// The container's sysctls, each of a namespace of its own (the network's
/// only if it has one; its IPC and UTS namespaces are always its own or its
/// pod's).
pub(super) fn sysctls(spec: &LaunchSpec, steps: &mut Vec<Step>) -> Result<(), PlanError> {
    let on_host = sysctl::HostNamespaces {
        network: spec.host_network,
        ipc: spec.host_ipc,
    };
    sysctl::check_all(
        spec.sysctls.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        on_host,
    )
    .map_err(|e| PlanError::Sysctl(e.to_string()))?;
    steps.extend(spec.sysctls.iter().map(|(key, value)| Step::Sysctl {
        path: sysctl::proc_path(key),
        value: value.clone(),
    }));
    Ok(())
}

/// What a container in a user namespace of its own cannot have: every
/// namespace it has must be owned by its user namespace (a network
/// namespace of the host's or made ahead of time by berthd is not, nor a
/// pod's IPC or UTS namespace: setns(2) needs CAP_SYS_ADMIN in the owner of
/// the namespace joined, the host's user namespace), and only host root
/// makes device nodes.
pub(super) fn check_userns(spec: &LaunchSpec) -> Result<(), PlanError> {
    if spec.netns.is_some() {
        return Err(PlanError::Userns("a network namespace made ahead of time"));
    }
    if spec.ipcns.is_some() {
        return Err(PlanError::Userns("an IPC namespace to join"));
    }
    if spec.utsns.is_some() {
        return Err(PlanError::Userns("a UTS namespace to join"));
    }
    if spec.pidns.is_some() {
        return Err(PlanError::Userns("a PID namespace to join"));
    }
    if spec.host_network {
        return Err(PlanError::Userns("the host's network"));
    }
    if spec.host_ipc || spec.host_pid {
        return Err(PlanError::Userns("the host's IPC or PID namespace"));
    }
    if spec.privileged {
        return Err(PlanError::Userns("a privileged container"));
    }
    if !spec.devices.is_empty() {
        return Err(PlanError::Userns("host devices"));
    }
    if !spec.mounts.is_empty() {
        return Err(PlanError::Userns("mounts (not supported yet)"));
    }
    Ok(())
}
