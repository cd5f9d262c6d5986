//! The Images service.

use std::sync::Arc;

use berth::v1 as pb;
use berth::v1::images_server::Images;
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::convert::image_to_proto;
use crate::container::Manager;
use crate::error::Error;
use crate::events::EventBus;
use crate::image::ImageStore;

/// Serves `berth.v1.Images`.
pub struct ImagesService {
    store: Arc<ImageStore>,
    mgr: Arc<Manager>,
    bus: Arc<EventBus>,
    tmp: std::path::PathBuf,
}

impl ImagesService {
    /// `tmp` holds uploads in progress.
    pub fn new(
        store: Arc<ImageStore>,
        mgr: Arc<Manager>,
        bus: Arc<EventBus>,
        tmp: std::path::PathBuf,
    ) -> Self {
        ImagesService {
            store,
            mgr,
            bus,
            tmp,
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
        tokio::fs::create_dir_all(&self.tmp)
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
            .map_err(Error::from)?;
        for img in &images {
            self.publish(
                pb::EventAction::Imported,
                &img.id,
                img.references.first().map(String::as_str).unwrap_or(""),
            );
        }
        Ok(Response::new(pb::ImportImageResponse {
            images: images.iter().map(image_to_proto).collect(),
        }))
    }

    async fn list(
        &self,
        _req: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        Ok(Response::new(pb::ListImagesResponse {
            images: self.store.list().iter().map(image_to_proto).collect(),
        }))
    }

    async fn inspect(
        &self,
        req: Request<pb::InspectImageRequest>,
    ) -> Result<Response<pb::InspectImageResponse>, Status> {
        let img = self
            .store
            .resolve(&req.into_inner().image)
            .map_err(Error::from)?;
        Ok(Response::new(pb::InspectImageResponse {
            image: Some(image_to_proto(&img)),
        }))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveImageRequest>,
    ) -> Result<Response<pb::RemoveImageResponse>, Status> {
        let req = req.into_inner();
        let img = self.store.resolve(&req.image).map_err(Error::from)?;
        let users: Vec<String> = self
            .mgr
            .list()
            .into_iter()
            .filter(|c| c.image_id == img.id)
            .map(|c| c.name)
            .collect();
        // Removing one of several names never affects containers.
        let by_reference = crate::image::reference::normalize(&req.image)
            .is_ok_and(|r| img.references.contains(&r));
        let removes_image = !by_reference || img.references.len() <= 1;
        if removes_image && !users.is_empty() && !req.force {
            return Err(Error::FailedPrecondition(format!(
                "image {} is in use by container(s) {}; remove them first or force",
                req.image,
                users.join(", ")
            ))
            .into());
        }
        let (untagged, deleted) = self.store.remove(&req.image).map_err(Error::from)?;
        if let Some(id) = &deleted {
            if let Err(e) = self.store.gc(&self.mgr.layers_in_use()) {
                tracing::warn!("image gc: {e}");
            }
            self.publish(
                pb::EventAction::Removed,
                id,
                untagged.first().map(String::as_str).unwrap_or(""),
            );
        }
        Ok(Response::new(pb::RemoveImageResponse {
            untagged,
            deleted: deleted.unwrap_or_default(),
        }))
    }
}
