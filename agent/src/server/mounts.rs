//! Mounts between their API form (`berth.v1.Mount`, `MountPoint`) and the
//! agent's records.

use berth::v1 as pb;

use crate::container::{MountKind, MountSpec, ResolvedMount};
use crate::error::Error;

/// API mounts to the spec's; an unknown or missing type is refused.
pub fn from_proto(mounts: Vec<pb::Mount>) -> Result<Vec<MountSpec>, Error> {
    mounts
        .into_iter()
        .map(|m| {
            let kind = match pb::mount::Type::try_from(m.r#type) {
                Ok(pb::mount::Type::Bind) => MountKind::Bind,
                Ok(pb::mount::Type::Volume) => MountKind::Volume,
                Ok(pb::mount::Type::Tmpfs) => MountKind::Tmpfs,
                _ => {
                    return Err(Error::InvalidRequest {
                        field: "spec.mounts.type",
                        reason: "a mount's type must be TYPE_BIND, TYPE_VOLUME or TYPE_TMPFS",
                    })
                }
            };
            Ok(MountSpec {
                kind,
                source: m.source,
                target: m.target,
                read_only: m.read_only,
                propagation: m.propagation,
                recursive: m.recursive,
                tmpfs_size: m.tmpfs_size_bytes,
                tmpfs_mode: m.tmpfs_mode,
                no_copy: m.no_copy,
                // Only berthd's own builds bind what is under its state.
                build: false,
                read_only_top_only: false,
                pod_shm: false,
            })
        })
        .collect()
}

fn kind_to_proto(k: MountKind) -> pb::mount::Type {
    match k {
        MountKind::Bind => pb::mount::Type::Bind,
        MountKind::Volume => pb::mount::Type::Volume,
        MountKind::Tmpfs => pb::mount::Type::Tmpfs,
    }
}

/// The spec's mounts as given.
pub fn to_proto(mounts: &[MountSpec]) -> Vec<pb::Mount> {
    mounts
        .iter()
        .map(|m| pb::Mount {
            r#type: kind_to_proto(m.kind) as i32,
            source: m.source.clone(),
            target: m.target.clone(),
            read_only: m.read_only,
            propagation: m.propagation.clone(),
            recursive: m.recursive,
            tmpfs_size_bytes: m.tmpfs_size,
            tmpfs_mode: m.tmpfs_mode,
            no_copy: m.no_copy,
        })
        .collect()
}

/// The resolved mounts, as inspect shows them.
pub fn points_to_proto(mounts: &[ResolvedMount]) -> Vec<pb::MountPoint> {
    mounts
        .iter()
        .map(|m| pb::MountPoint {
            r#type: kind_to_proto(m.kind) as i32,
            source: m.source.clone(),
            target: m.target.clone(),
            volume_name: m.volume.clone(),
            read_only: m.read_only,
            anonymous: m.anonymous,
            propagation: if m.kind == MountKind::Bind {
                if m.propagation.is_empty() {
                    "private".into()
                } else {
                    m.propagation.clone()
                }
            } else {
                String::new()
            },
            tmpfs_size_bytes: m.tmpfs_size,
            tmpfs_mode: if m.kind == MountKind::Tmpfs {
                m.tmpfs_mode
            } else {
                0
            },
        })
        .collect()
}
