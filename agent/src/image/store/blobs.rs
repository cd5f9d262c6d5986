//! Layer blobs, kept as the manifest describes them (compressed or not) so
//! that an image can be saved to an archive or pushed to a registry with
//! the very digests it was imported or pulled with: an unpacked layer
//! cannot be turned back into the same bytes.
//!
//! Images imported or pulled before berth kept blobs have none; saving or
//! pushing them fails with [`ImageError::ContentNotKept`] (remove them,
//! then pull or import them again). A pull that found a layer already
//! unpacked keeps no blob for it unless another image brought the same
//! blob.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{hex_of, ImageStore};
use crate::image::archive::{copy_classified, space_budget, OuterArchive};
use crate::image::digest::{sha256_hex, HashingReader};
use crate::image::error::IoContext;
use crate::image::ImageError;

/// The part of a manifest (OCI or Docker schema 2) that lists layer blobs.
#[derive(Deserialize)]
struct LayerList {
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// A content descriptor, as manifests hold them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    /// Media type (tells the compression).
    #[serde(default)]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

/// The layer descriptors of a manifest, base first; none when it cannot be
/// parsed (the manifest was verified when stored, so that is an image
/// without layers).
pub(crate) fn manifest_layers(manifest: &[u8]) -> Vec<Descriptor> {
    serde_json::from_slice::<LayerList>(manifest)
        .map(|l| l.layers)
        .unwrap_or_default()
}

impl ImageStore {
    /// Path of a stored blob, if it is there.
    pub(crate) fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        let hex = sha256_hex(digest, "blob").ok()?;
        let path = self.blobs_dir().join(hex);
        fs::symlink_metadata(&path).is_ok().then_some(path)
    }

    /// Keeps the verified layer blob at `path` (a finished download) as
    /// blob `digest`, moving it; when the blob is already kept, `path` is
    /// removed. Best effort: a blob not kept only makes saving and pushing
    /// the image fail later, with an error that says so.
    pub(crate) fn keep_layer_blob(&self, digest: &str, path: &Path) {
        let Ok(hex) = sha256_hex(digest, "blob") else {
            let _ = fs::remove_file(path);
            return;
        };
        let to = self.blobs_dir().join(hex);
        let _st = self.lock();
        let kept = super::fsops::rename_noreplace(path, &to)
            .and_then(|moved| super::fsops::sync_dir(&self.blobs_dir()).map(|()| moved));
        match kept {
            Ok(true) => {}
            Ok(false) => {
                let _ = fs::remove_file(path);
            }
            Err(e) => {
                tracing::warn!("keeping layer blob {digest}: {e}");
                let _ = fs::remove_file(path);
            }
        }
    }
}

/// Copies the archive member `member` into `dir`, named by its sha256, and
/// checks it is the blob `want` the manifest describes. Returns the hex.
///
/// The copy counts against the same space budget as unpacking layers
/// ([`space_budget`]): a kept blob must not eat the disk reserve either.
///
/// # Errors
/// `InvalidArchive` when the member does not hash to `want` (the archive's
/// manifest describes other bytes than it holds); `NoSpace` when the blob
/// would not fit the budget; I/O errors.
pub(super) fn copy_layer_blob(
    ar: &OuterArchive,
    member: &str,
    want: &str,
    dir: &Path,
) -> Result<String, ImageError> {
    let budget = space_budget(dir)?;
    copy_layer_blob_within(ar, member, want, dir, budget)
}

/// [`copy_layer_blob`] with at most `budget` bytes to write. A failed copy
/// leaves no file.
fn copy_layer_blob_within(
    ar: &OuterArchive,
    member: &str,
    want: &str,
    dir: &Path,
    budget: u64,
) -> Result<String, ImageError> {
    let hex = sha256_hex(want, "layer blob")?.to_string();
    let dest = dir.join(&hex);
    if fs::symlink_metadata(&dest).is_ok() {
        return Ok(hex);
    }
    let (r, size) = ar.reader(member)?;
    let what = format!("copying layer {member}");
    // The member's size is known: refuse before writing anything.
    if size > budget {
        return Err(ImageError::NoSpace(format!(
            "{what}: {} needs {size} bytes, more than the {budget} bytes free",
            dest.display()
        )));
    }
    let mut r = HashingReader::new(r);
    let mut f = File::create(&dest).ctx(|| format!("creating {}", dest.display()))?;
    let copied = copy_classified(&mut r, &mut f, &what, &dest, budget)
        .and_then(|_| f.sync_all().ctx(|| format!("syncing {}", dest.display())));
    if let Err(e) = copied {
        let _ = fs::remove_file(&dest);
        return Err(e);
    }
    if r.digest() != want {
        let _ = fs::remove_file(&dest);
        return Err(ImageError::archive(format!(
            "layer {member}: the manifest describes blob {want}, the archive holds {}",
            r.digest()
        )));
    }
    Ok(hex)
}

/// Hexes of the layer blobs the stored manifest `digest` lists, for gc.
///
/// A manifest blob that is absent lists nothing (an image stored before
/// manifests were kept). One that is present but cannot be read or parsed
/// is an error: gc must then keep every blob rather than guess that the
/// image has no layer blobs and delete them.
///
/// # Errors
/// A message saying why the manifest could not be read or parsed.
pub(super) fn layer_blob_hexes(
    store: &ImageStore,
    manifest_digest: &str,
) -> Result<Vec<String>, String> {
    let Some(path) = store.blob_path(manifest_digest) else {
        return Ok(Vec::new());
    };
    // Manifests are small (verified at import, under 4 MiB).
    let m = fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let list: LayerList = serde_json::from_slice(&m)
        .map_err(|e| format!("parsing manifest {manifest_digest}: {e}"))?;
    Ok(list
        .layers
        .iter()
        .map(|d| hex_of(&d.digest).to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_of_oci_and_docker_manifests() {
        let m = br#"{"schemaVersion":2,"config":{"digest":"sha256:c","size":1},
            "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:a","size":3},
                      {"mediaType":"application/vnd.docker.image.rootfs.diff.tar","digest":"sha256:b","size":4}]}"#;
        let l = manifest_layers(m);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].digest, "sha256:a");
        assert_eq!(l[1].size, 4);
        assert!(manifest_layers(b"not json").is_empty());
    }

    /// An archive holding `data` as member "blob".
    fn archive_with(dir: &Path, data: &[u8]) -> OuterArchive {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "blob", data).unwrap();
        let path = dir.join("in.tar");
        fs::write(&path, b.into_inner().unwrap()).unwrap();
        OuterArchive::open(&path, dir).unwrap()
    }

    /// A kept layer blob is held to the space budget, like unpacking:
    /// over it, nothing is written.
    #[test]
    fn layer_blob_copies_keep_to_the_space_budget() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 1000];
        let ar = archive_with(dir.path(), &data);
        let want = crate::image::digest::sha256_of(&data);
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let err = copy_layer_blob_within(&ar, "blob", &want, &out, 999).unwrap_err();
        assert!(matches!(err, ImageError::NoSpace(_)), "{err:?}");
        assert_eq!(
            fs::read_dir(&out).unwrap().count(),
            0,
            "a partial blob was left"
        );
        let hex = copy_layer_blob_within(&ar, "blob", &want, &out, 1000).unwrap();
        assert_eq!(fs::read(out.join(hex)).unwrap(), data);
    }
}
