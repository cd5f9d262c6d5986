//! The Volumes service (`berth.v1.Volumes`): create, list, inspect, remove
//! and prune the agent's volumes (`crate::volume`), whose users the
//! container manager knows.

use std::sync::Arc;

use berth::v1 as pb;
use berth::v1::volumes_server::Volumes;
use tonic::{Request, Response, Status};

use crate::container::Manager;
use crate::events::wire::nanos_to_ts;
use crate::volume::{labels_match, VolumeError, VolumeRecord, DRIVER};

/// Most labels of a volume (as a container's).
const LABELS_MAX: usize = 1024;
/// Longest label key.
const LABEL_KEY_MAX: usize = 256;
/// Longest label value.
const LABEL_VALUE_MAX: usize = 4096;
/// Most bytes of all labels together.
const LABELS_TOTAL_MAX: usize = 262_144;
/// Most label filters.
const FILTERS_MAX: usize = 64;
/// Longest label filter.
const FILTER_MAX: usize = 4096;

/// Serves `berth.v1.Volumes`.
pub struct VolumesService {
    mgr: Arc<Manager>,
}

impl VolumesService {
    /// Wraps the manager.
    pub fn new(mgr: Arc<Manager>) -> Self {
        VolumesService { mgr }
    }

    fn to_proto(&self, v: &VolumeRecord) -> pb::Volume {
        pb::Volume {
            name: v.name.clone(),
            driver: v.driver.clone(),
            mountpoint: self.mgr.volumes().data_dir(&v.name).display().to_string(),
            labels: v.labels.clone().into_iter().collect(),
            created_at: Some(nanos_to_ts(v.created_at)),
            anonymous: v.anonymous,
            used_by: self.mgr.volume_users(&v.name),
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Status {
    VolumeError::Invalid {
        field,
        reason: reason.into(),
    }
    .into()
}

fn check_labels(labels: &std::collections::HashMap<String, String>) -> Result<(), Status> {
    if labels.len() > LABELS_MAX {
        return Err(invalid("labels", "at most 1024 labels are accepted"));
    }
    let mut total = 0usize;
    for (k, v) in labels {
        if k.is_empty() || k.len() > LABEL_KEY_MAX {
            return Err(invalid(
                "labels",
                "a label key is empty or longer than 256 bytes",
            ));
        }
        if v.len() > LABEL_VALUE_MAX {
            return Err(invalid("labels", "a label value is longer than 4096 bytes"));
        }
        total += k.len() + v.len();
    }
    if total > LABELS_TOTAL_MAX {
        return Err(invalid("labels", "labels take more than 262144 bytes"));
    }
    Ok(())
}

pub(super) fn check_filters(filters: &[String]) -> Result<(), Status> {
    if filters.len() > FILTERS_MAX || filters.iter().any(|f| f.len() > FILTER_MAX) {
        return Err(invalid(
            "labels",
            "at most 64 label filters of at most 4096 bytes",
        ));
    }
    Ok(())
}

/// Runs blocking volume work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VolumeError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("volume task: {e}")))?
        .map_err(Status::from)
}

#[tonic::async_trait]
impl Volumes for VolumesService {
    async fn create(
        &self,
        req: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::CreateVolumeResponse>, Status> {
        let req = req.into_inner();
        if !req.driver.is_empty() && req.driver != DRIVER {
            return Err(invalid("driver", "the only volume driver is \"local\""));
        }
        if !req.driver_opts.is_empty() {
            return Err(VolumeError::Unsupported("volume driver options".into()).into());
        }
        check_labels(&req.labels)?;
        let mgr = self.mgr.clone();
        let labels = req.labels.into_iter().collect();
        let rec = blocking(move || mgr.create_volume(&req.name, labels)).await?;
        Ok(Response::new(pb::CreateVolumeResponse {
            volume: Some(self.to_proto(&rec)),
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListVolumesRequest>,
    ) -> Result<Response<pb::ListVolumesResponse>, Status> {
        let req = req.into_inner();
        check_filters(&req.labels)?;
        let mgr = self.mgr.clone();
        let all = blocking(move || mgr.volumes().list()).await?;
        let volumes = all
            .iter()
            .filter(|v| labels_match(&v.labels, &req.labels))
            .map(|v| self.to_proto(v))
            .filter(|v| req.dangling.is_none_or(|d| d == v.used_by.is_empty()))
            .collect();
        Ok(Response::new(pb::ListVolumesResponse { volumes }))
    }

    async fn inspect(
        &self,
        req: Request<pb::InspectVolumeRequest>,
    ) -> Result<Response<pb::InspectVolumeResponse>, Status> {
        let name = req.into_inner().name;
        let rec = self.mgr.volumes().get(&name)?;
        Ok(Response::new(pb::InspectVolumeResponse {
            volume: Some(self.to_proto(&rec)),
        }))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveVolumeRequest>,
    ) -> Result<Response<pb::RemoveVolumeResponse>, Status> {
        let name = req.into_inner().name;
        let mgr = self.mgr.clone();
        let n = name.clone();
        blocking(move || mgr.remove_volume(&n)).await?;
        Ok(Response::new(pb::RemoveVolumeResponse { name }))
    }

    async fn prune(
        &self,
        req: Request<pb::PruneVolumesRequest>,
    ) -> Result<Response<pb::PruneVolumesResponse>, Status> {
        let req = req.into_inner();
        check_filters(&req.labels)?;
        let mgr = self.mgr.clone();
        let (removed, reclaimed_bytes) = blocking(move || {
            let mut removed = Vec::new();
            let mut bytes = 0u64;
            for v in mgr.volumes().list()? {
                if !labels_match(&v.labels, &req.labels) {
                    continue;
                }
                // In use now (or by a Create since the listing): kept.
                match mgr.remove_volume(&v.name) {
                    Ok(b) => {
                        bytes = bytes.saturating_add(b);
                        removed.push(v.name);
                    }
                    Err(VolumeError::InUse { .. } | VolumeError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok((removed, bytes))
        })
        .await?;
        Ok(Response::new(pb::PruneVolumesResponse {
            removed,
            reclaimed_bytes,
        }))
    }
}
