//! The Containers service.

use std::pin::Pin;
use std::sync::Arc;

use berth::v1 as pb;
use berth::v1::containers_server::Containers;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::convert::{container_to_proto, spec_from_proto, state_to_proto};
use crate::container::{Life, Manager};
use crate::error::Error;

/// Serves `berth.v1.Containers`.
pub struct ContainersService {
    mgr: Arc<Manager>,
    pulling: Option<Arc<super::images::Pulling>>,
}

impl ContainersService {
    /// Wraps the manager.
    pub fn new(mgr: Arc<Manager>) -> Self {
        ContainersService { mgr, pulling: None }
    }

    /// Lets Create/Run pull a missing image first (see `Pulling::ensure`).
    pub fn with_pulling(mut self, pulling: Arc<super::images::Pulling>) -> Self {
        self.pulling = Some(pulling);
        self
    }

    /// Starts a container that Run or RunAttached just created; if that
    /// fails, removes it again, so a failed run leaves nothing behind
    /// (auto_remove may have removed it already).
    async fn start_or_remove(
        &self,
        entry: &Arc<crate::container::Entry>,
    ) -> Result<crate::container::record::Record, Status> {
        match self.mgr.start(entry).await {
            Ok(rec) => Ok(rec),
            Err(e) => {
                // With its anonymous volumes: nothing of a failed run stays.
                let _ = self.mgr.remove_with_volumes(entry, true, true).await;
                Err(e.into())
            }
        }
    }

    fn to_proto(&self, r: &crate::container::record::Record) -> pb::Container {
        container_to_proto(r, self.mgr.cgroups().parent())
    }

    async fn create(
        &self,
        spec: Option<pb::ContainerSpec>,
    ) -> Result<crate::container::record::Record, Status> {
        let spec = spec.ok_or(Error::InvalidRequest {
            field: "spec",
            reason: "spec is required",
        })?;
        let spec = spec_from_proto(spec)?;
        // Bounded before anything (a pull included) looks at it.
        crate::container::bounds::check_spec(&spec)?;
        if spec.labels.contains_key(crate::build::BUILD_LABEL) {
            // berthd removes containers so labelled when it starts: they
            // are its own builds' steps.
            return Err(Status::invalid_argument(format!(
                "the label {} is berthd's own (it marks a build's step containers)",
                crate::build::BUILD_LABEL
            )));
        }
        if let Some(p) = &self.pulling {
            p.ensure(&spec.image).await?;
        }
        // A large spec (up to a few MB once merged and encoded to its
        // record) is created on the blocking pool, so it does not hold an
        // async worker; a usual one inline, without the thread hand-offs.
        if spec_bytes(&spec) > INLINE_SPEC_BYTES {
            let mgr = self.mgr.clone();
            return tokio::task::spawn_blocking(move || mgr.create(spec))
                .await
                .map_err(|e| Error::internal("creating the container", e))?
                .map_err(Status::from);
        }
        Ok(self.mgr.create(spec)?)
    }
}

/// Refuses label filters (List's, Prune's) over their documented limits.
fn check_label_filters(labels: &std::collections::HashMap<String, String>) -> Result<(), Status> {
    use crate::container::bounds::{LABELS_MAX, LABEL_KEY_MAX, LABEL_VALUE_MAX};
    if labels.len() > LABELS_MAX
        || labels
            .iter()
            .any(|(k, v)| k.len() > LABEL_KEY_MAX || v.len() > LABEL_VALUE_MAX)
    {
        return Err(Error::InvalidRequest {
            field: "labels",
            reason: "at most 1024 label filters, keys at most 256 bytes, values at most 4096",
        }
        .into());
    }
    Ok(())
}

/// Prune's `until` as unix nanos; a timestamp out of the documented range
/// is refused rather than wrapped.
fn until_nanos(ts: Option<prost_types::Timestamp>) -> Result<Option<i64>, Status> {
    let Some(ts) = ts else { return Ok(None) };
    // 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, as protobuf defines.
    const MIN: i64 = -62_135_596_800;
    const MAX: i64 = 253_402_300_799;
    if !(MIN..=MAX).contains(&ts.seconds) || !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(Error::InvalidRequest {
            field: "until",
            reason: "a timestamp between 0001-01-01 and 9999-12-31, nanos in [0, 1e9)",
        }
        .into());
    }
    // Beyond i64 nanos (after 2262, before 1677), every container is
    // before it, or none is.
    Ok(Some(
        ts.seconds
            .checked_mul(1_000_000_000)
            .and_then(|n| n.checked_add(i64::from(ts.nanos)))
            .unwrap_or(if ts.seconds > 0 { i64::MAX } else { i64::MIN }),
    ))
}

/// Specs up to this size (env, args and labels) are created inline.
const INLINE_SPEC_BYTES: usize = 64 * 1024;

/// About how many bytes a spec's lists take (bounded, so cheap to count).
fn spec_bytes(s: &crate::container::record::SpecRecord) -> usize {
    let list = |l: &[String]| l.iter().map(|x| x.len() + 1).sum::<usize>();
    list(&s.command)
        + s.entrypoint.as_deref().map_or(0, list)
        + list(&s.env)
        + s.labels
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

type LogStream = Pin<Box<dyn Stream<Item = Result<pb::LogEntry, Status>> + Send>>;
type RunAttachedStream =
    Pin<Box<dyn Stream<Item = Result<pb::RunAttachedResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Containers for ContainersService {
    async fn create(
        &self,
        req: Request<pb::CreateContainerRequest>,
    ) -> Result<Response<pb::CreateContainerResponse>, Status> {
        let rec = self.create(req.into_inner().spec).await?;
        Ok(Response::new(pb::CreateContainerResponse {
            container: Some(self.to_proto(&rec)),
        }))
    }

    async fn start(
        &self,
        req: Request<pb::StartContainerRequest>,
    ) -> Result<Response<pb::StartContainerResponse>, Status> {
        let entry = self.mgr.get(&req.into_inner().id)?;
        let rec = self.mgr.start(&entry).await?;
        Ok(Response::new(pb::StartContainerResponse {
            container: Some(self.to_proto(&rec)),
        }))
    }

    async fn run(
        &self,
        req: Request<pb::RunContainerRequest>,
    ) -> Result<Response<pb::RunContainerResponse>, Status> {
        let rec = self.create(req.into_inner().spec).await?;
        let entry = self.mgr.get(&rec.id)?;
        let rec = self.start_or_remove(&entry).await?;
        Ok(Response::new(pb::RunContainerResponse {
            container: Some(self.to_proto(&rec)),
        }))
    }

    async fn stop(
        &self,
        req: Request<pb::StopContainerRequest>,
    ) -> Result<Response<pb::StopContainerResponse>, Status> {
        let req = req.into_inner();
        let entry = self.mgr.get(&req.id)?;
        let (rec, killed) = self.mgr.stop(entry, req.timeout_seconds).await?;
        Ok(Response::new(pb::StopContainerResponse {
            container: Some(self.to_proto(&rec)),
            killed,
        }))
    }

    async fn kill(
        &self,
        req: Request<pb::KillContainerRequest>,
    ) -> Result<Response<pb::KillContainerResponse>, Status> {
        let req = req.into_inner();
        let sig = if req.signal.is_empty() {
            nix::sys::signal::Signal::SIGKILL
        } else {
            crate::signal::parse(&req.signal).map_err(Error::from)?
        };
        let entry = self.mgr.get(&req.id)?;
        self.mgr.kill(&entry, sig)?;
        Ok(Response::new(pb::KillContainerResponse {}))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveContainerRequest>,
    ) -> Result<Response<pb::RemoveContainerResponse>, Status> {
        let req = req.into_inner();
        let entry = self.mgr.get(&req.id)?;
        let rec = entry.snapshot();
        if let Some(pod) = rec.spec.pod {
            return Err(crate::container::ContainerError::OwnedByPod {
                name: rec.name,
                pod: pod.id,
            }
            .into());
        }
        self.mgr
            .remove_with_volumes(&entry, req.force, req.remove_volumes)
            .await?;
        Ok(Response::new(pb::RemoveContainerResponse {
            id: entry.id.clone(),
        }))
    }

    async fn inspect(
        &self,
        req: Request<pb::InspectContainerRequest>,
    ) -> Result<Response<pb::InspectContainerResponse>, Status> {
        let entry = self.mgr.get(&req.into_inner().id)?;
        Ok(Response::new(pb::InspectContainerResponse {
            container: Some(self.to_proto(&entry.snapshot())),
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListContainersRequest>,
    ) -> Result<Response<pb::ListContainersResponse>, Status> {
        let f = req.into_inner();
        if f.name.len() > crate::container::bounds::KEY_MAX {
            return Err(Error::InvalidRequest {
                field: "name",
                reason: "a name filter is at most 128 bytes",
            }
            .into());
        }
        check_label_filters(&f.labels)?;
        let containers = self
            .mgr
            .list()
            .iter()
            .filter(|r| {
                let st = state_to_proto(r.state) as i32;
                (f.states.is_empty() || f.states.contains(&st))
                    && (f.name.is_empty() || r.name.contains(&f.name))
                    && f.labels.iter().all(|(k, v)| {
                        r.spec
                            .labels
                            .get(k)
                            .is_some_and(|have| v.is_empty() || have == v)
                    })
            })
            .map(|r| self.to_proto(r))
            .collect();
        Ok(Response::new(pb::ListContainersResponse { containers }))
    }

    async fn wait(
        &self,
        req: Request<pb::WaitContainerRequest>,
    ) -> Result<Response<pb::WaitContainerResponse>, Status> {
        let req = req.into_inner();
        let entry = self.mgr.get_or_removed(&req.id)?;
        let removed = req.condition == pb::WaitCondition::Removed as i32;
        let (rec, exit) = self.mgr.wait(&entry, removed).await?;
        Ok(Response::new(pb::WaitContainerResponse {
            id: rec.id.clone(),
            exit: Some(crate::events::wire::exit_to_proto(&exit)),
            started_at: (rec.started_at > 0)
                .then(|| crate::events::wire::nanos_to_ts(rec.started_at)),
        }))
    }

    async fn pause(
        &self,
        req: Request<pb::PauseContainerRequest>,
    ) -> Result<Response<pb::PauseContainerResponse>, Status> {
        let entry = self.mgr.get(&req.into_inner().id)?;
        let rec = self.mgr.pause(&entry).await?;
        Ok(Response::new(pb::PauseContainerResponse {
            container: Some(self.to_proto(&rec)),
        }))
    }

    async fn resume(
        &self,
        req: Request<pb::ResumeContainerRequest>,
    ) -> Result<Response<pb::ResumeContainerResponse>, Status> {
        let entry = self.mgr.get(&req.into_inner().id)?;
        let rec = self.mgr.resume(&entry).await?;
        Ok(Response::new(pb::ResumeContainerResponse {
            container: Some(self.to_proto(&rec)),
        }))
    }

    async fn update(
        &self,
        req: Request<pb::UpdateContainerRequest>,
    ) -> Result<Response<pb::UpdateContainerResponse>, Status> {
        let req = req.into_inner();
        let policy = req
            .restart_policy
            .map(super::convert::policy_from_proto)
            .transpose()?;
        let entry = self.mgr.get(&req.id)?;
        let rec = self
            .mgr
            .update(
                &entry,
                req.resources.map(super::convert::limits_from_proto),
                policy,
            )
            .await?;
        Ok(Response::new(pb::UpdateContainerResponse {
            container: Some(self.to_proto(&rec)),
        }))
    }

    async fn rename(
        &self,
        req: Request<pb::RenameContainerRequest>,
    ) -> Result<Response<pb::RenameContainerResponse>, Status> {
        let req = req.into_inner();
        let entry = self.mgr.get(&req.id)?;
        let rec = self.mgr.rename(&entry, &req.new_name).await?;
        Ok(Response::new(pb::RenameContainerResponse {
            container: Some(self.to_proto(&rec)),
        }))
    }

    async fn prune(
        &self,
        req: Request<pb::PruneContainersRequest>,
    ) -> Result<Response<pb::PruneContainersResponse>, Status> {
        let req = req.into_inner();
        check_label_filters(&req.labels)?;
        let filter = crate::container::PruneFilter {
            labels: req.labels,
            until: until_nanos(req.until)?,
        };
        let pruned = self.mgr.prune(&filter).await?;
        Ok(Response::new(pb::PruneContainersResponse {
            removed: pruned.removed,
            reclaimed_bytes: pruned.reclaimed_bytes,
        }))
    }

    type RunAttachedStream = RunAttachedStream;
    type AttachStream = super::attach::AttachStream;
    type CopyFromStream = super::copy::CopyFromStream;

    async fn stat_path(
        &self,
        req: Request<pb::StatPathRequest>,
    ) -> Result<Response<pb::StatPathResponse>, Status> {
        super::copy::stat_path(&self.mgr, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn copy_from(
        &self,
        req: Request<pb::CopyFromRequest>,
    ) -> Result<Response<Self::CopyFromStream>, Status> {
        super::copy::copy_from(&self.mgr, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn copy_to(
        &self,
        req: Request<tonic::Streaming<pb::CopyToRequest>>,
    ) -> Result<Response<pb::CopyToResponse>, Status> {
        super::copy::copy_to(self.mgr.clone(), req.into_inner())
            .await
            .map(Response::new)
    }

    async fn attach(
        &self,
        req: Request<tonic::Streaming<pb::AttachRequest>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        super::attach::attach(self.mgr.clone(), req.into_inner()).await
    }

    async fn run_attached(
        &self,
        req: Request<pb::RunAttachedRequest>,
    ) -> Result<Response<RunAttachedStream>, Status> {
        let rec = self.create(req.into_inner().spec).await?;
        let entry = self.mgr.get(&rec.id)?;
        // The log is opened before the start, so no output is missed, even
        // of a container removed as soon as it exits.
        let follow = pb::LogsRequest {
            id: rec.id.clone(),
            follow: true,
            ..Default::default()
        };
        let mut output = match super::logs::open(&entry, follow).await {
            Ok(s) => s,
            Err(e) => {
                let _ = self.mgr.remove(&entry, true).await;
                return Err(e);
            }
        };
        let started = self.start_or_remove(&entry).await?;
        let container = self.to_proto(&started);
        let mgr = self.mgr.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            use pb::run_attached_response::Event;
            let send = |event| {
                let tx = tx.clone();
                async move {
                    tx.send(Ok(pb::RunAttachedResponse { event: Some(event) }))
                        .await
                        .is_ok()
                }
            };
            if !send(Event::Started(container)).await {
                return;
            }
            while let Some(item) = output.next().await {
                match item {
                    Ok(entry) => {
                        if !send(Event::Output(entry)).await {
                            return;
                        }
                    }
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                }
            }
            // With auto_remove the stream ends once the container is gone,
            // so its name is free again when the caller is told it ended.
            match mgr.wait(&entry, started.spec.auto_remove).await {
                Ok((_, exit)) => {
                    send(Event::Exit(crate::events::wire::exit_to_proto(&exit))).await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type LogsStream = LogStream;

    async fn logs(&self, req: Request<pb::LogsRequest>) -> Result<Response<LogStream>, Status> {
        let req = req.into_inner();
        let entry = self.mgr.get(&req.id)?;
        let stream = super::logs::open(&entry, req).await?;
        Ok(Response::new(stream))
    }
}

/// Whether a container's current run is over (nothing more will be logged).
pub fn finished(l: &Life) -> bool {
    !matches!(l, Life::Pending)
}
