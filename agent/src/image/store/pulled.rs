//! What pulling needs from the store: layers installed one at a time (so an
//! interrupted pull keeps the layers it finished), blobs read back, and
//! images committed from registry metadata.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, File};
use std::io::{self, Cursor, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::fsops::{disk_usage, ensure_dir, read_up_to, rename_noreplace, sync_dir, StagingDir};
use super::import::decoder;
use super::{hex_of, remove_any, ImageStore};
use crate::fsutil::{write_atomic, WriteOptions};
use crate::image::digest::{sha256_hex, HashingReader};
use crate::image::error::IoContext;
use crate::image::layout::{self, PlannedImage, PlannedLayer};
use crate::image::{extract, Detail, ImageError, ImageRecord};

impl ImageStore {
    /// Where partial downloads live (kept across restarts so pulls resume).
    pub(crate) fn downloads_dir(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// True if the layer with this diff id is unpacked in the store.
    /// Under the lock: an import moves its layers in and, if its commit
    /// then fails, out again while holding it, and a layer seen in between
    /// would be skipped by the pull and missing at its commit.
    pub(crate) fn has_layer(&self, diff_id: &str) -> bool {
        let _st = self.lock();
        fs::symlink_metadata(self.layers_dir().join(hex_of(diff_id))).is_ok()
    }

    /// A manifest or config stored under blobs/, if present and intact.
    pub(crate) fn read_blob(&self, digest: &str) -> Option<Vec<u8>> {
        let hex = sha256_hex(digest, "blob").ok()?;
        let data = fs::read(self.blobs_dir().join(hex)).ok()?;
        (crate::image::digest::sha256_of(&data) == digest).then_some(data)
    }

    /// Unpacks the verified layer blob at `blob` into the store as layer
    /// `diff_id` (blocking). The layer appears in layers/ only once it is
    /// complete and its content matches `diff_id`; a mismatch is
    /// [`ImageError::Corrupt`]. Returns the unpacked size.
    pub(crate) fn install_layer(&self, diff_id: &str, blob: &Path) -> Result<u64, ImageError> {
        let hex = sha256_hex(diff_id, "config rootfs.diff_ids")?.to_string();
        let staging = StagingDir::create(&self.staging_dir(), "pull-")?;
        let dest = staging.path.join(&hex);
        DirBuilder::new()
            .mode(0o755)
            .create(&dest)
            .ctx(|| format!("creating {}", dest.display()))?;
        let mut f = File::open(blob).ctx(|| format!("opening {}", blob.display()))?;
        let mut head = [0u8; 6];
        let n = read_up_to(&mut f, &mut head).ctx(|| format!("reading {}", blob.display()))?;
        let joined = Cursor::new(head[..n].to_vec()).chain(io::BufReader::new(f));
        let decoded = decoder(&head[..n], joined, diff_id).map_err(|e| match e {
            ImageError::InvalidArchive(m) => ImageError::Unsupported(m.to_string()),
            e => e,
        })?;
        let mut diff = HashingReader::new(decoded);
        let size = extract::unpack(&mut diff, &dest, diff_id).map_err(|e| match e {
            // The blob's digest was verified: a broken stream means the
            // registry served a (correctly hashed) broken layer.
            ImageError::InvalidArchive(m) => ImageError::Corrupt(m),
            e => e,
        })?;
        diff.drain()
            .map_err(|e| ImageError::Corrupt(Detail::caused(format!("layer {diff_id}"), e)))?;
        if diff.digest() != diff_id {
            return Err(ImageError::corrupt(format!(
                "layer content hashes to {}, not to its diff_id {diff_id} from the image config",
                diff.digest()
            )));
        }
        let mut st = self.lock();
        let to = self.layers_dir().join(&hex);
        rename_noreplace(&dest, &to)?;
        sync_dir(&self.layers_dir())?;
        crate::crash::point(|| "image:pull:layer-installed".into());
        st.layer_sizes.insert(hex, size);
        Ok(size)
    }

    /// Deletes layers a failed pull installed, unless an image references
    /// them or someone else pinned them (a concurrent pull or import).
    pub(crate) fn discard_layers(&self, diff_ids: &[String]) {
        let st = self.lock();
        for d in diff_ids {
            let hex = hex_of(d);
            let used = st.images.iter().any(|r| r.layers.iter().any(|l| l == d))
                || st.pinned_layers.contains_key(hex);
            if !used {
                let _ = remove_any(&self.layers_dir().join(hex));
            }
        }
    }

    /// Records a pulled image under `reference` (blocking): stores its
    /// manifest and config blobs and adds it to the index. Every layer must
    /// already be installed (and pinned by the caller).
    pub(crate) fn commit_pull(
        &self,
        reference: &str,
        manifest_digest: &str,
        manifest_bytes: Vec<u8>,
        config_digest: &str,
        config_bytes: Vec<u8>,
        layers: Vec<PlannedLayer>,
    ) -> Result<ImageRecord, ImageError> {
        let parts = Parts {
            manifest_digest,
            manifest_bytes,
            config_digest,
            config_bytes,
            layers,
        };
        self.commit_parts(&[reference.to_string()], false, parts)
    }

    /// Records an image made of `parts` (blocking) under `names` (none for
    /// a build step's result, then kept as build cache when `build_cache`).
    /// Every layer must already be installed and pinned by the caller.
    pub(crate) fn commit_parts(
        &self,
        names: &[String],
        build_cache: bool,
        parts: Parts<'_>,
    ) -> Result<ImageRecord, ImageError> {
        let Parts {
            manifest_digest,
            manifest_bytes,
            config_digest,
            config_bytes,
            layers,
        } = parts;
        let config = layout::parse_config(&config_bytes, config_digest)?;
        let mut sizes = HashMap::new();
        for l in &layers {
            let hex = hex_of(&l.diff_id).to_string();
            let known = self.lock().layer_sizes.get(&hex).copied();
            let size = match known {
                Some(s) => s,
                None => disk_usage(&self.layers_dir().join(&hex))?,
            };
            sizes.insert(l.diff_id.clone(), size);
        }
        let plan = PlannedImage {
            raw_names: Vec::new(),
            tag_only: None,
            manifest_digest: manifest_digest.to_string(),
            manifest_bytes,
            config_digest: config_digest.to_string(),
            config_bytes,
            config,
            layers,
            build_cache,
        };
        let staging = StagingDir::create(&self.staging_dir(), "pull-")?;
        let blob_stage = staging.path.join("blobs");
        ensure_dir(&blob_stage)?;
        let mut blobs = Vec::new();
        for (digest, data) in [
            (&plan.config_digest, &plan.config_bytes),
            (&plan.manifest_digest, &plan.manifest_bytes),
        ] {
            let hex = sha256_hex(digest, "blob")?.to_string();
            if !blobs.contains(&hex) {
                let path = blob_stage.join(&hex);
                write_atomic(&path, data, WriteOptions::synced())
                    .ctx(|| format!("writing {}", path.display()))?;
                blobs.push(hex);
            }
        }
        let mut st = self.lock();
        let mut added = Vec::new();
        let plans = [plan];
        let result = self.commit(
            &mut st,
            &plans,
            &[names.to_vec()],
            &sizes,
            &[],
            &blobs,
            &staging.path,
            &mut added,
        );
        if result.is_err() {
            for p in added {
                let _ = remove_any(&p);
            }
        }
        drop(st);
        result?
            .into_iter()
            .next()
            .ok_or_else(|| ImageError::io("committing the image", io::Error::other("lost")))
    }
}

/// What an image is made of: its manifest and config documents and its
/// layers (every one already installed in the store).
pub(crate) struct Parts<'a> {
    /// `sha256:<hex>` of `manifest_bytes`.
    pub manifest_digest: &'a str,
    /// The manifest as it is to be stored.
    pub manifest_bytes: Vec<u8>,
    /// `sha256:<hex>` of `config_bytes`: the image id.
    pub config_digest: &'a str,
    /// The config as it is to be stored.
    pub config_bytes: Vec<u8>,
    /// The layers, base first.
    pub layers: Vec<PlannedLayer>,
}

/// Deletes `*.partial` files in `downloads` last written more than `age`
/// ago: an interrupted pull that was retried since appended to its file.
/// Best effort: what cannot be read or removed is left (and logged).
pub(super) fn collect_abandoned_downloads(downloads: &Path, age: std::time::Duration) {
    let entries = match fs::read_dir(downloads) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!("reading {}: {e}", downloads.display());
            return;
        }
    };
    let now = std::time::SystemTime::now();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "partial") {
            continue;
        }
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).is_ok_and(|d| d > age));
        if stale {
            match fs::remove_file(&path) {
                Ok(()) => tracing::info!("removed abandoned download {}", path.display()),
                Err(e) => tracing::warn!("removing {}: {e}", path.display()),
            }
        }
    }
}
