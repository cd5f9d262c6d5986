//! Saving images to an archive (`docker save`): a Docker archive
//! (manifest.json) or an OCI image layout as a tar, streamed from the
//! store's blobs in bounded memory ([`stream`]).
//!
//! Everything an archive needs is gathered, and every blob opened, before
//! the first byte is produced ([`ImageStore::plan_save`]): an unknown image
//! or a missing blob fails the save before anything is written, and a blob
//! that gc deletes meanwhile stays readable through its open file.

mod documents;
mod stream;

use std::fs::File;

use super::store::{hex_of, manifest_layers, Descriptor};
use super::{reference, ImageError, ImageRecord, ImageStore};
use crate::image::error::IoContext;

pub use stream::{stream_archive, CHUNK_BYTES};

/// The archive formats Save writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// `docker save`'s format: manifest.json naming configs and layers.
    DockerArchive,
    /// An OCI image layout (oci-layout, index.json, blobs/) as a tar.
    OciArchive,
}

/// One image to save, with its blobs open.
pub struct SaveImage {
    /// The image.
    pub record: ImageRecord,
    /// The references to record for it in the archive.
    pub references: Vec<String>,
    /// The stored manifest, byte for byte.
    pub(crate) manifest: Vec<u8>,
    /// Its media type (from the manifest; OCI when it names none).
    pub(crate) manifest_media_type: String,
    /// The config, byte for byte.
    pub(crate) config: Vec<u8>,
    /// Layer blobs, base first, as the manifest describes them.
    pub(crate) layers: Vec<(Descriptor, File)>,
}

/// Everything one Save writes.
pub struct SavePlan {
    /// The format.
    pub format: SaveFormat,
    /// The images, in the order first named, each once.
    pub images: Vec<SaveImage>,
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

impl ImageStore {
    /// Gathers the images `names` (references, ids or id prefixes) for a
    /// save, opening every blob. An image named by reference is recorded
    /// under that reference; one named by id under all its references. An
    /// image named twice is saved once.
    ///
    /// # Errors
    /// Those of [`resolve`](Self::resolve); `ContentNotKept` when a layer
    /// blob is not stored; `Internal` when a manifest or config is missing.
    pub fn plan_save(&self, names: &[String], format: SaveFormat) -> Result<SavePlan, ImageError> {
        let mut images: Vec<SaveImage> = Vec::new();
        for name in names {
            let record = self.resolve(name)?;
            let named = reference::normalize(name)
                .ok()
                .filter(|r| record.references.contains(r));
            let refs = match named {
                Some(r) => vec![r],
                None => record.references.clone(),
            };
            if let Some(i) = images.iter_mut().find(|i| i.record.id == record.id) {
                for r in refs {
                    if !i.references.contains(&r) {
                        i.references.push(r);
                    }
                }
                continue;
            }
            images.push(self.open_content(record, refs)?);
        }
        Ok(SavePlan { format, images })
    }

    /// The stored content of `record` (manifest, config, open layer
    /// blobs), for saving or pushing it under `references`.
    pub(crate) fn open_content(
        &self,
        record: ImageRecord,
        references: Vec<String>,
    ) -> Result<SaveImage, ImageError> {
        let missing = |what: &str, digest: &str| {
            ImageError::io(
                format!("reading the {what} {digest} of image {}", record.id),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        };
        let manifest = self
            .read_blob(&record.manifest_digest)
            .ok_or_else(|| missing("manifest", &record.manifest_digest))?;
        let config = self
            .read_blob(&record.id)
            .ok_or_else(|| missing("config", &record.id))?;
        let manifest_media_type = serde_json::from_slice::<serde_json::Value>(&manifest)
            .ok()
            .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        let descs = manifest_layers(&manifest);
        let mut layers = Vec::with_capacity(descs.len());
        for d in descs {
            let path = self
                .blob_path(&d.digest)
                .ok_or_else(|| ImageError::ContentNotKept(format!("image {}", record.id)))?;
            let file = File::open(&path).ctx(|| format!("opening {}", path.display()))?;
            let len = file
                .metadata()
                .ctx(|| format!("reading {}", path.display()))?
                .len();
            if len != d.size {
                return Err(ImageError::corrupt(format!(
                    "stored layer blob {} has {len} bytes, its manifest says {}",
                    d.digest, d.size
                )));
            }
            layers.push((d, file));
        }
        Ok(SaveImage {
            record,
            references,
            manifest,
            manifest_media_type,
            config,
            layers,
        })
    }
}

/// The archive member path of a blob: `blobs/sha256/<hex>`, in both
/// formats (Docker's own saves have used it since Docker 25).
fn blob_member(digest: &str) -> String {
    format!("blobs/sha256/{}", hex_of(digest))
}
