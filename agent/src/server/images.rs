//! The Images service.

use std::pin::Pin;
use std::sync::Arc;

use berth::v1 as pb;
use berth::v1::images_server::Images;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::convert::image_to_proto;
use super::image_push::{push, PushStream};
use super::image_save::{check_name, save, SaveStream};
use super::image_status::image_status;
use crate::container::Manager;
use crate::error::Error;
use crate::events::EventBus;
use crate::image::pull::{Credentials, LayerState, PullProgress};
use crate::image::{HistoryEntry, ImageRecord, ImageStore};

/// Re-exported for the services that take it.
pub use crate::image::service::Pulling;

/// Serves `berth.v1.Images`.
pub struct ImagesService {
    store: Arc<ImageStore>,
    mgr: Arc<Manager>,
    bus: Arc<EventBus>,
    tmp: std::path::PathBuf,
    pulling: Arc<Pulling>,
    /// Saves streaming now (see [`super::image_save::MAX_SAVES`]).
    saves: Arc<tokio::sync::Semaphore>,
}

/// The names of the containers, running or not, that use image `id`.
pub(crate) fn image_users(mgr: &Manager, id: &str) -> Vec<String> {
    mgr.list()
        .into_iter()
        .filter(|c| c.image_id == id)
        .map(|c| c.name)
        .collect()
}

/// After the store removed image `id` (`untagged`: the names it had): the
/// layers nothing uses any more go, on the blocking pool, and REMOVED is
/// announced under its first name. Images.Remove and CRI's RemoveImage.
pub(crate) async fn collect_removed(
    store: Arc<ImageStore>,
    mgr: Arc<Manager>,
    bus: &EventBus,
    id: &str,
    untagged: &[String],
) {
    match tokio::task::spawn_blocking(move || store.gc(&mgr.layers_in_use())).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("image gc: {e}"),
        Err(e) => tracing::warn!("image gc task: {e}"),
    }
    bus.publish(pb::Event {
        r#type: pb::ObjectType::Image as i32,
        action: pb::EventAction::Removed as i32,
        id: id.to_string(),
        name: untagged.first().cloned().unwrap_or_default(),
        ..Default::default()
    });
}

/// Progress snapshot to API message.
fn progress_to_proto(p: &PullProgress) -> pb::PullImageProgress {
    pb::PullImageProgress {
        reference: p.reference.clone(),
        manifest_digest: p.manifest_digest.clone(),
        index_digest: p.index_digest.clone(),
        layers: p.layers.iter().map(layer_to_proto).collect(),
        image: None,
    }
}

/// History step to API message.
fn history_to_proto(e: HistoryEntry) -> pb::ImageHistoryEntry {
    pb::ImageHistoryEntry {
        created_at: e
            .created
            .as_deref()
            .and_then(|c| humantime::parse_rfc3339_weak(c).ok())
            .map(prost_types::Timestamp::from),
        created_by: e.created_by,
        comment: e.comment,
        empty_layer: e.empty_layer,
        layer: e.layer.unwrap_or_default(),
        size_bytes: i64::try_from(e.size_bytes).unwrap_or(i64::MAX),
        author: e.author,
    }
}

/// One layer's progress (of a pull or a push) to its API message.
pub(super) fn layer_to_proto(l: &crate::image::pull::LayerProgress) -> pb::LayerProgress {
    let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    pb::LayerProgress {
        digest: l.digest.clone(),
        media_type: l.media_type.clone(),
        state: match l.state {
            LayerState::Waiting => pb::LayerState::Waiting,
            LayerState::Downloading => pb::LayerState::Downloading,
            LayerState::Verifying => pb::LayerState::Verifying,
            LayerState::Extracting => pb::LayerState::Extracting,
            LayerState::Done => pb::LayerState::Done,
            LayerState::AlreadyPresent => pb::LayerState::AlreadyPresent,
            LayerState::Uploading => pb::LayerState::Uploading,
        } as i32,
        done_bytes: to_i64(l.done),
        total_bytes: to_i64(l.total),
        resumed_from_bytes: to_i64(l.resumed_from),
    }
}

/// Credentials from the API; none when no user name is given.
pub(super) fn creds_from_proto(c: Option<pb::RegistryCredentials>) -> Option<Credentials> {
    c.filter(|c| !c.username.is_empty()).map(|c| Credentials {
        username: c.username,
        password: c.password,
    })
}

type PullStream = Pin<Box<dyn Stream<Item = Result<pb::PullImageProgress, Status>> + Send>>;

impl ImagesService {
    /// `tmp` holds uploads in progress; what is in it at start are uploads
    /// a crash of berthd cut short (their imports ended with it), and goes.
    pub fn new(
        store: Arc<ImageStore>,
        mgr: Arc<Manager>,
        bus: Arc<EventBus>,
        tmp: std::path::PathBuf,
        pulling: Arc<Pulling>,
    ) -> Self {
        match std::fs::remove_dir_all(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("removing old uploads in {}: {e}", tmp.display()),
        }
        ImagesService {
            saves: Arc::new(tokio::sync::Semaphore::new(super::image_save::MAX_SAVES)),
            store,
            mgr,
            bus,
            tmp,
            pulling,
        }
    }

    fn publish(&self, action: pb::EventAction, id: &str, name: &str) {
        self.bus.publish(pb::Event {
            r#type: pb::ObjectType::Image as i32,
            action: action as i32,
            id: id.to_string(),
            name: name.to_string(),
            ..Default::default()
        });
    }

    /// API image with its disk usage (unique vs shared with other images).
    fn to_proto(&self, img: &ImageRecord) -> pb::Image {
        let mut p = image_to_proto(img);
        let (unique, shared) = self.store.usage(img);
        p.unique_size_bytes = i64::try_from(unique).unwrap_or(i64::MAX);
        p.shared_size_bytes = i64::try_from(shared).unwrap_or(i64::MAX);
        p
    }
}

/// Deletes the upload file however the import ends.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tonic::async_trait]
impl Images for ImagesService {
    async fn import(
        &self,
        req: Request<Streaming<pb::ImportImageRequest>>,
    ) -> Result<Response<pb::ImportImageResponse>, Status> {
        let mut stream = req.into_inner();
        let mut dir = tokio::fs::DirBuilder::new();
        dir.recursive(true).mode(crate::state_dir::DIR_MODE);
        dir.create(&self.tmp)
            .await
            .map_err(|e| Error::internal("creating the upload dir", e))?;
        let tmp = TempFile(
            self.tmp
                .join(format!("upload-{}", crate::container::spec::new_id())),
        );
        let mut file = tokio::fs::File::create(&tmp.0)
            .await
            .map_err(|e| Error::internal("creating the upload file", e))?;
        let mut reference = None;
        let mut first = true;
        let mut bytes = 0u64;
        while let Some(msg) = stream.next().await {
            match msg?.payload {
                Some(pb::import_image_request::Payload::Options(o)) if first => {
                    reference = Some(o.reference).filter(|r| !r.is_empty());
                }
                Some(pb::import_image_request::Payload::Options(_)) => {
                    return Err(Status::invalid_argument(
                        "import options are only allowed in the first message",
                    ))
                }
                Some(pb::import_image_request::Payload::Chunk(c)) => {
                    bytes += c.len() as u64;
                    file.write_all(&c)
                        .await
                        .map_err(|e| Error::internal("writing the upload", e))?;
                }
                None => {}
            }
            first = false;
        }
        if bytes == 0 {
            return Err(Status::invalid_argument("the uploaded archive is empty"));
        }
        file.flush()
            .await
            .map_err(|e| Error::internal("writing the upload", e))?;
        drop(file);
        let store = self.store.clone();
        let path = tmp.0.clone();
        let images = tokio::task::spawn_blocking(move || store.import(&path, reference.as_deref()))
            .await
            .map_err(|e| Error::internal("import task", e))?
            .map_err(image_status)?;
        for img in &images {
            self.publish(
                pb::EventAction::Imported,
                &img.id,
                img.references.first().map(String::as_str).unwrap_or(""),
            );
        }
        Ok(Response::new(pb::ImportImageResponse {
            images: images.iter().map(|i| self.to_proto(i)).collect(),
        }))
    }

    async fn list(
        &self,
        _req: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        Ok(Response::new(pb::ListImagesResponse {
            // Build steps' results are cache, not images a user made.
            images: self
                .store
                .list()
                .iter()
                .filter(|i| i.listed())
                .map(|i| self.to_proto(i))
                .collect(),
        }))
    }

    async fn inspect(
        &self,
        req: Request<pb::InspectImageRequest>,
    ) -> Result<Response<pb::InspectImageResponse>, Status> {
        let img = self
            .store
            .resolve(&req.into_inner().image)
            .map_err(image_status)?;
        Ok(Response::new(pb::InspectImageResponse {
            image: Some(self.to_proto(&img)),
        }))
    }

    async fn tag(
        &self,
        req: Request<pb::TagImageRequest>,
    ) -> Result<Response<pb::TagImageResponse>, Status> {
        let req = req.into_inner();
        let img = self
            .store
            .tag(&req.source, &req.target)
            .map_err(image_status)?;
        Ok(Response::new(pb::TagImageResponse {
            image: Some(self.to_proto(&img)),
        }))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveImageRequest>,
    ) -> Result<Response<pb::RemoveImageResponse>, Status> {
        let req = req.into_inner();
        let img = self.store.resolve(&req.image).map_err(image_status)?;
        let users = image_users(&self.mgr, &img.id);
        // Removing one of several names never affects containers.
        let by_reference = crate::image::reference::normalize(&req.image)
            .is_ok_and(|r| img.references.contains(&r));
        let removes_image = !by_reference || img.references.len() <= 1;
        if removes_image && !users.is_empty() && !req.force {
            return Err(Error::ImageInUse {
                image: req.image,
                users,
            }
            .into());
        }
        let (untagged, deleted) = self.store.remove(&req.image).map_err(image_status)?;
        if let Some(id) = &deleted {
            collect_removed(
                self.store.clone(),
                self.mgr.clone(),
                &self.bus,
                id,
                &untagged,
            )
            .await;
        }
        Ok(Response::new(pb::RemoveImageResponse {
            untagged,
            deleted: deleted.unwrap_or_default(),
        }))
    }

    async fn prune(
        &self,
        req: Request<pb::PruneImagesRequest>,
    ) -> Result<Response<pb::PruneImagesResponse>, Status> {
        let req = req.into_inner();
        super::volumes::check_filters(&req.labels)?;
        // Every container, stopped ones too, keeps its image.
        let used: std::collections::HashSet<String> =
            self.mgr.list().into_iter().map(|c| c.image_id).collect();
        let images = self.store.list();
        let mut out = pb::PruneImagesResponse::default();
        for img in crate::image::prune::prunable(&images, &used, req.all, &req.labels) {
            // An image a running build stands on is kept.
            match self
                .store
                .remove_unpinned(&img.id)
                .map(|r| r.unwrap_or_default())
            {
                Ok((untagged, Some(id))) => {
                    self.publish(
                        pb::EventAction::Removed,
                        &id,
                        untagged.first().map(String::as_str).unwrap_or(""),
                    );
                    out.deleted.push(id);
                    out.untagged.extend(untagged);
                }
                // Removed meanwhile by another call: not this prune's.
                Ok((_, None)) => {}
                Err(e) if e.kind() == crate::image::ErrorKind::NotFound => {}
                Err(e) => return Err(image_status(e)),
            }
        }
        // The layers are deleted once no image and no container needs them
        // (a container keeps its image's layers even with the image gone).
        let (store, mgr) = (self.store.clone(), self.mgr.clone());
        out.reclaimed_bytes = tokio::task::spawn_blocking(move || store.gc(&mgr.layers_in_use()))
            .await
            .map_err(|e| Error::internal("image gc", e))?
            .map_err(image_status)?;
        Ok(Response::new(out))
    }

    type PullStream = PullStream;

    async fn pull(
        &self,
        req: Request<pb::PullImageRequest>,
    ) -> Result<Response<Self::PullStream>, Status> {
        let req = req.into_inner();
        // Refuse a bad reference before starting a stream.
        crate::image::reference::normalize(&req.reference).map_err(image_status)?;
        let creds = creds_from_proto(req.credentials);
        let (tx, mut rx) = watch::channel(PullProgress::default());
        let (out_tx, out_rx) = tokio::sync::mpsc::channel(16);
        let pulling = self.pulling.clone();
        let store = self.store.clone();
        // The pull runs on its own task: a client that disconnects does not
        // abort it (its layers are shared with other pulls and kept for later).
        let work = tokio::spawn(async move { pulling.pull(&req.reference, creds, &tx).await });
        tokio::spawn(async move {
            // The watch channel coalesces: a slow client gets the latest
            // snapshot, never a backlog.
            while rx.changed().await.is_ok() {
                let msg = progress_to_proto(&rx.borrow_and_update());
                if out_tx.send(Ok(msg)).await.is_err() {
                    break;
                }
            }
            let last = match work.await {
                Ok(Ok(pulled)) => {
                    let mut msg = progress_to_proto(&rx.borrow());
                    let mut img = image_to_proto(&pulled.image);
                    let (unique, shared) = store.usage(&pulled.image);
                    img.unique_size_bytes = i64::try_from(unique).unwrap_or(i64::MAX);
                    img.shared_size_bytes = i64::try_from(shared).unwrap_or(i64::MAX);
                    msg.image = Some(img);
                    Ok(msg)
                }
                Ok(Err(e)) => Err(image_status(e)),
                Err(e) => Err(Status::internal(format!("pull task: {e}"))),
            };
            let _ = out_tx.send(last).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out_rx),
        )))
    }

    async fn login(
        &self,
        req: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let req = req.into_inner();
        let creds = creds_from_proto(req.credentials)
            .ok_or_else(|| Status::invalid_argument("credentials with a user name are required"))?;
        let username = creds.username.clone();
        let registry = self
            .pulling
            .puller()
            .login(&req.registry, creds)
            .await
            .map_err(image_status)?;
        tracing::info!(%registry, %username, "registry credentials stored");
        Ok(Response::new(pb::LoginResponse { registry, username }))
    }

    async fn history(
        &self,
        req: Request<pb::ImageHistoryRequest>,
    ) -> Result<Response<pb::ImageHistoryResponse>, Status> {
        let image = req.into_inner().image;
        check_name(&image)?;
        let store = self.store.clone();
        // Reading the config and measuring layers touches the disk.
        let (img, entries) = tokio::task::spawn_blocking(move || store.history(&image))
            .await
            .map_err(|e| Error::internal("history task", e))?
            .map_err(image_status)?;
        Ok(Response::new(pb::ImageHistoryResponse {
            id: img.id,
            entries: entries.into_iter().map(history_to_proto).collect(),
        }))
    }

    type PushStream = PushStream;

    async fn push(
        &self,
        req: Request<pb::PushImageRequest>,
    ) -> Result<Response<Self::PushStream>, Status> {
        Ok(Response::new(push(self.pulling.clone(), req.into_inner())?))
    }

    type SaveStream = SaveStream;

    async fn save(
        &self,
        req: Request<pb::SaveImagesRequest>,
    ) -> Result<Response<Self::SaveStream>, Status> {
        Ok(Response::new(
            save(self.store.clone(), self.saves.clone(), req.into_inner()).await?,
        ))
    }

    async fn logout(
        &self,
        req: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let registry = self
            .pulling
            .puller()
            .logout(&req.into_inner().registry)
            .map_err(image_status)?;
        Ok(Response::new(pb::LogoutResponse { registry }))
    }
}
