//! The CRI ImageService on berth's image store: ListImages, ImageStatus,
//! PullImage, RemoveImage and ImageFsInfo. The same store, puller and event
//! log as berth's own Images service, so an image pulled through either
//! front end is one image, listed by both.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::api_file::v1 as cri;
use super::api_file::v1::image_service_server::ImageService;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::image_map::{credentials, to_cri_image, AuthError, Filter};
use super::unsupported::not_supported;
use super::{fs_usage, Deps};
use crate::container::Manager;
use crate::error::{capped, Error};
use crate::events::EventBus;
use crate::image::pull::PullProgress;
use crate::image::service::Pulling;
use crate::image::{ErrorKind, ImageStore};
use crate::server::image_status::image_status;
use crate::server::images::{collect_removed, image_users};

/// Serves `runtime.v1.ImageService`.
pub struct CriImages {
    store: Arc<ImageStore>,
    store_dir: PathBuf,
    mgr: Arc<Manager>,
    pulling: Arc<Pulling>,
    bus: Arc<EventBus>,
}

impl CriImages {
    /// The image service on berthd's shared state.
    pub fn new(deps: &Deps) -> Self {
        CriImages {
            store: deps.images.clone(),
            store_dir: deps.image_dir.clone(),
            mgr: deps.mgr.clone(),
            pulling: deps.pulling.clone(),
            bus: deps.bus.clone(),
        }
    }
}

/// The `image` of a request's ImageSpec, which every call but ListImages
/// needs.
fn image_name(spec: Option<cri::ImageSpec>) -> Result<String, Status> {
    match spec {
        Some(s) if !s.image.is_empty() => Ok(s.image),
        _ => Err(Status::invalid_argument("image.image is required")),
    }
}

/// How many container names an "in use" message lists.
const USERS_SHOWN: usize = 5;

/// Why an image is not removed: the containers of berth's that use it
/// (CRI has no force; the containers go first, through berth's API).
fn in_use_message(image: &str, users: &[String]) -> String {
    let mut names = users[..users.len().min(USERS_SHOWN)].join(", ");
    if users.len() > USERS_SHOWN {
        names.push_str(&format!(" and {} more", users.len() - USERS_SHOWN));
    }
    format!(
        "image {:?} is in use by berth container(s) {names}: remove them first",
        capped(image)
    )
}

#[tonic::async_trait]
impl ImageService for CriImages {
    type StreamImagesStream = super::runtime::Listing<cri::StreamImagesResponse>;

    /// Not served yet: kubelet and crictl fall back to ListImages.
    async fn stream_images(
        &self,
        _req: Request<cri::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        Err(super::unsupported::not_supported("StreamImages"))
    }

    async fn list_images(
        &self,
        req: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        let image = req
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .unwrap_or_default();
        let filter = Filter::parse(&image).map_err(Status::invalid_argument)?;
        let images = self
            .store
            .list()
            .iter()
            .filter(|i| i.listed() && filter.matches(i))
            .map(to_cri_image)
            .collect();
        Ok(Response::new(cri::ListImagesResponse { images }))
    }

    /// An image that is not stored is not an error: the response has no
    /// image (kubelet asks this before every pull).
    async fn image_status(
        &self,
        req: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let req = req.into_inner();
        let name = image_name(req.image)?;
        let img = match self.store.resolve(&name) {
            Ok(img) => img,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(Response::new(cri::ImageStatusResponse::default()))
            }
            Err(e) => return Err(image_status(e)),
        };
        let mut info = HashMap::new();
        if req.verbose {
            // The whole record: references, digests, config, layers.
            let json = serde_json::to_string(&img)
                .map_err(|e| Error::internal("encoding the image record", e))?;
            info.insert("info".to_string(), json);
        }
        Ok(Response::new(cri::ImageStatusResponse {
            image: Some(to_cri_image(&img)),
            info,
        }))
    }

    async fn pull_image(
        &self,
        req: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let req = req.into_inner();
        if let Some(h) = req
            .image
            .as_ref()
            .map(|s| &s.runtime_handler)
            .filter(|h| !h.is_empty())
        {
            return Err(Status::invalid_argument(format!(
                "unknown runtime handler {:?}: berth has only the default one",
                capped(h)
            )));
        }
        let name = image_name(req.image)?;
        // Refuse a bad reference before anything else.
        crate::image::reference::normalize(&name).map_err(image_status)?;
        let creds = credentials(req.auth.as_ref()).map_err(|e| match e {
            AuthError::Invalid(m) => Status::invalid_argument(m),
            AuthError::Unsupported(field) => not_supported(field),
        })?;
        let pulling = self.pulling.clone();
        // On its own task: a client that gives up does not abort the pull
        // (its layers are shared with other pulls, and kept for the next).
        let pulled = tokio::spawn(async move {
            let (tx, _rx) = watch::channel(PullProgress::default());
            pulling.pull(&name, creds, &tx).await
        })
        .await
        .map_err(|e| Error::internal("pull task", e))?
        .map_err(image_status)?;
        Ok(Response::new(cri::PullImageResponse {
            image_ref: pulled.image.id,
        }))
    }

    /// Removes the image with all its names, as containerd does (kubelet
    /// removes by id). Removing an image that is not there succeeds (the
    /// call is idempotent). An image a berth container uses is refused
    /// (FAILED_PRECONDITION): the CRI front end never removes what berth's
    /// own API relies on.
    async fn remove_image(
        &self,
        req: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let name = image_name(req.into_inner().image)?;
        let img = match self.store.resolve(&name) {
            Ok(img) => img,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(Response::new(cri::RemoveImageResponse {}))
            }
            Err(e) => return Err(image_status(e)),
        };
        let users = image_users(&self.mgr, &img.id);
        if !users.is_empty() {
            return Err(Status::failed_precondition(in_use_message(&name, &users)));
        }
        let (untagged, deleted) = match self.store.remove(&img.id) {
            Ok(r) => r,
            // Removed meanwhile by another call.
            Err(e) if e.kind() == ErrorKind::NotFound => (Vec::new(), None),
            Err(e) => return Err(image_status(e)),
        };
        if let Some(id) = deleted {
            collect_removed(
                self.store.clone(),
                self.mgr.clone(),
                &self.bus,
                &id,
                &untagged,
            )
            .await;
        }
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    /// One image file system: the store's directory, with the space and
    /// inodes the store itself takes (not the whole file system's).
    async fn image_fs_info(
        &self,
        _req: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        let dir = self.store_dir.clone();
        let usage = tokio::task::spawn_blocking(move || fs_usage::measure(&dir))
            .await
            .map_err(|e| Error::internal("image fs usage task", e))?
            .map_err(|e| Error::internal("measuring the image store", e))?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(1);
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![cri::FilesystemUsage {
                timestamp,
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: self.store_dir.display().to_string(),
                }),
                used_bytes: Some(cri::UInt64Value {
                    value: usage.used_bytes,
                }),
                inodes_used: Some(cri::UInt64Value {
                    value: usage.inodes_used,
                }),
            }],
            container_filesystems: Vec::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_use_lists_a_bounded_number_of_containers() {
        let users: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
        let m = in_use_message(&"x".repeat(5000), &users);
        assert!(m.contains("c0, c1, c2, c3, c4 and 3 more"), "{m}");
        assert!(m.len() < 200, "{m}");
        assert_eq!(
            in_use_message("busybox", &users[..1]),
            "image \"busybox\" is in use by berth container(s) c0: remove them first"
        );
    }
}
