//! Images.Save on the wire: requests checked and turned into a plan, the
//! archive's chunks into messages.

use std::pin::Pin;
use std::sync::Arc;

use berth::v1 as pb;
use tokio::sync::Semaphore;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use super::cut_short::or_cut_short;
use super::image_status::image_status;
use crate::error::Error;
use crate::image::save::{stream_archive, SaveFormat};
use crate::image::ImageStore;

/// Most images one Save may name.
pub const MAX_SAVE_IMAGES: usize = 64;
/// Longest image name a request may carry (a reference stops at 255
/// characters of name plus a tag or digest).
pub const MAX_IMAGE_NAME: usize = 512;

/// The stream Images.Save answers with.
pub type SaveStream = Pin<Box<dyn Stream<Item = Result<pb::SaveImagesResponse, Status>> + Send>>;

/// Refuses an image name over [`MAX_IMAGE_NAME`] bytes.
pub fn check_name(name: &str) -> Result<(), Status> {
    if name.len() > MAX_IMAGE_NAME {
        return Err(Status::invalid_argument(format!(
            "image name of {} bytes: at most {MAX_IMAGE_NAME}",
            name.len()
        )));
    }
    Ok(())
}

/// Saves that may stream at once: each holds a blocking-pool thread and
/// its images' open blobs until its client has read the archive (or took
/// nothing for the stall timeout).
pub const MAX_SAVES: usize = 16;

/// Plans the save (failing before any chunk) and streams the archive;
/// RESOURCE_EXHAUSTED while [`MAX_SAVES`] saves are streaming.
pub async fn save(
    store: Arc<ImageStore>,
    saves: Arc<Semaphore>,
    req: pb::SaveImagesRequest,
) -> Result<SaveStream, Status> {
    if req.images.is_empty() {
        return Err(Status::invalid_argument("name at least one image to save"));
    }
    if req.images.len() > MAX_SAVE_IMAGES {
        return Err(Status::invalid_argument(format!(
            "{} images named: at most {MAX_SAVE_IMAGES} per save",
            req.images.len()
        )));
    }
    for name in &req.images {
        check_name(name)?;
    }
    let format = match pb::SaveFormat::try_from(req.format) {
        Ok(pb::SaveFormat::Unspecified | pb::SaveFormat::DockerArchive) => {
            SaveFormat::DockerArchive
        }
        Ok(pb::SaveFormat::OciArchive) => SaveFormat::OciArchive,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "unknown archive format {}",
                req.format
            )))
        }
    };
    let permit = saves.try_acquire_owned().map_err(|_| {
        Status::resource_exhausted(format!(
            "{MAX_SAVES} image saves are streaming: try again once one ends"
        ))
    })?;
    let images = req.images;
    // Resolving and opening blobs touches the disk.
    let plan = tokio::task::spawn_blocking(move || store.plan_save(&images, format))
        .await
        .map_err(|e| Error::internal("save task", e))?
        .map_err(image_status)?;
    let (chunks, done) = stream_archive(plan);
    let chunks = tokio_stream::wrappers::ReceiverStream::new(chunks).map(move |c| {
        // The permit goes with the stream: a save counts until its client
        // has the whole archive or goes.
        let _running = &permit;
        c.map(|chunk| pb::SaveImagesResponse { chunk })
            .map_err(image_status)
    });
    Ok(Box::pin(or_cut_short(chunks, done)))
}
