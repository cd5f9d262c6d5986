//! Importing image archives (OCI layouts, `docker save`): plan, unpack and
//! verify layers without the lock, commit under it.

use std::collections::HashMap;
use std::fs::{self, DirBuilder};
use std::io::{self, Cursor, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::blobs::{copy_layer_blob, manifest_layers};
use super::fsops::{
    disk_usage, ensure_dir, now_nanos, read_up_to, rename_noreplace, sync_dir, StagingDir,
};
use super::{hex_of, remove_any, ImageStore, Pins, State};
use crate::fsutil::{write_atomic, WriteOptions};
use crate::image::archive::OuterArchive;
use crate::image::digest::{sha256_hex, HashingReader};
use crate::image::error::IoContext;
use crate::image::layout::{self, PlannedImage, PlannedLayer};
use crate::image::reference;
use crate::image::{extract, ImageConfig, ImageError, ImageRecord};

impl ImageStore {
    /// Imports the images in the archive file `archive` (blocking).
    ///
    /// With `reference`, the archive must hold a single image, which gets
    /// exactly that name (names in the archive are ignored). Without it, names
    /// come from the archive (`io.containerd.image.name` or
    /// `org.opencontainers.image.ref.name` annotations, or `RepoTags`); an
    /// image without a name is an error asking for a reference. Re-importing
    /// an existing image adds references; a reference held by another image
    /// moves to this one (like `docker tag`).
    ///
    /// On any error nothing is left in the store: not in `layers/`, `blobs/`,
    /// nor `images.json`.
    pub fn import(
        &self,
        archive: &Path,
        reference: Option<&str>,
    ) -> Result<Vec<ImageRecord>, ImageError> {
        let reference = reference.map(reference::normalize).transpose()?;
        let staging = StagingDir::create(&self.staging_dir(), "import-")?;
        let ar = OuterArchive::open(archive, &staging.path)?;
        let plans = merge_by_id(layout::plan(&ar)?);
        let names = assign_names(&plans, reference)?;

        // Unique layers in order, so extraction order is deterministic.
        let mut layer_order: Vec<&PlannedLayer> = Vec::new();
        for p in &plans {
            for l in &p.layers {
                if !layer_order.iter().any(|x| x.diff_id == l.diff_id) {
                    layer_order.push(l);
                }
            }
        }

        // Pin what we rely on and decide what to unpack, atomically with
        // respect to gc and other imports' commits.
        let mut pins = Pins {
            store: self,
            layers: Vec::new(),
            blobs: Vec::new(),
        };
        let mut needed = Vec::new();
        {
            let mut st = self.lock();
            for l in &layer_order {
                let hex = hex_of(&l.diff_id).to_string();
                *st.pinned_layers.entry(hex.clone()).or_default() += 1;
                if fs::symlink_metadata(self.layers_dir().join(&hex)).is_err() {
                    needed.push(*l);
                }
                pins.layers.push(hex);
            }
            for p in &plans {
                for d in [&p.config_digest, &p.manifest_digest] {
                    let hex = hex_of(d).to_string();
                    *st.pinned_blobs.entry(hex.clone()).or_default() += 1;
                    pins.blobs.push(hex);
                }
            }
        }

        // The slow part, without the lock: unpack and verify new layers.
        let mut sizes: HashMap<String, u64> = HashMap::new();
        let layer_stage = staging.path.join("layers");
        ensure_dir(&layer_stage)?;
        for l in &needed {
            let hex = hex_of(&l.diff_id);
            let dest = layer_stage.join(hex);
            DirBuilder::new()
                .mode(0o755)
                .create(&dest)
                .ctx(|| format!("creating {}", dest.display()))?;
            let size = unpack_layer(&ar, l, &dest)?;
            sizes.insert(l.diff_id.clone(), size);
        }
        for l in &layer_order {
            if !sizes.contains_key(&l.diff_id) {
                let size = disk_usage(&self.layers_dir().join(hex_of(&l.diff_id)))?;
                sizes.insert(l.diff_id.clone(), size);
            }
        }
        let blob_stage = staging.path.join("blobs");
        ensure_dir(&blob_stage)?;
        let mut blobs: Vec<String> = Vec::new();
        for p in &plans {
            for (digest, data) in [
                (&p.config_digest, &p.config_bytes),
                (&p.manifest_digest, &p.manifest_bytes),
            ] {
                let hex = sha256_hex(digest, "blob")?.to_string();
                if !blobs.contains(&hex) {
                    let path = blob_stage.join(&hex);
                    write_atomic(&path, data, WriteOptions::synced())
                        .ctx(|| format!("writing {}", path.display()))?;
                    blobs.push(hex);
                }
            }
            // Layer blobs too, as the manifest describes them, so the image
            // can be saved and pushed with its own digests (blobs.rs).
            let descs = manifest_layers(&p.manifest_bytes);
            if descs.len() == p.layers.len() {
                for (l, d) in p.layers.iter().zip(&descs) {
                    let hex = copy_layer_blob(&ar, &l.member, &d.digest, &blob_stage)?;
                    if !blobs.contains(&hex) {
                        blobs.push(hex);
                    }
                }
            }
        }

        // Commit under the lock: move layers and blobs in, then the index.
        let mut st = self.lock();
        let mut added: Vec<PathBuf> = Vec::new();
        let result = self.commit(
            &mut st,
            &plans,
            &names,
            &sizes,
            &needed,
            &blobs,
            &staging.path,
            &mut added,
        );
        if result.is_err() {
            // Undo what we moved in; nobody else can rely on it yet because
            // the lock has been held since the move.
            for p in added {
                let _ = remove_any(&p);
            }
        }
        drop(st);
        drop(pins);
        result
    }

    /// The locked tail of [`ImageStore::import`]. Paths moved into the store
    /// are pushed to `added` so the caller can undo them on error.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn commit(
        &self,
        st: &mut State,
        plans: &[PlannedImage],
        names: &[Vec<String>],
        sizes: &HashMap<String, u64>,
        needed: &[&PlannedLayer],
        blobs: &[String],
        staging: &Path,
        added: &mut Vec<PathBuf>,
    ) -> Result<Vec<ImageRecord>, ImageError> {
        let layers_dir = self.layers_dir();
        for l in needed {
            let hex = hex_of(&l.diff_id);
            let to = layers_dir.join(hex);
            if rename_noreplace(&staging.join("layers").join(hex), &to)? {
                added.push(to);
            }
        }
        #[cfg(test)]
        if self.seam.moved_in() {
            return Err(ImageError::io(
                "committing (failed by a test)",
                io::Error::other("injected"),
            ));
        }
        for p in plans {
            for l in &p.layers {
                let path = layers_dir.join(hex_of(&l.diff_id));
                if fs::symlink_metadata(&path).is_err() {
                    return Err(ImageError::io(
                        format!("layer {} vanished during import", l.diff_id),
                        io::Error::from(io::ErrorKind::NotFound),
                    ));
                }
            }
        }
        let blobs_dir = self.blobs_dir();
        for hex in blobs {
            let to = blobs_dir.join(hex);
            if rename_noreplace(&staging.join("blobs").join(hex), &to)? {
                added.push(to);
            }
        }
        sync_dir(&layers_dir)?;
        sync_dir(&blobs_dir)?;
        crate::crash::point(|| "image:import:layers-stored".into());

        let now = now_nanos();
        let mut images = st.images.clone();
        let mut out_ids = Vec::new();
        for (p, names) in plans.iter().zip(names) {
            // A name moves to this image, like `docker tag`.
            for r in images.iter_mut().filter(|r| r.id != p.config_digest) {
                r.references.retain(|x| !names.contains(x));
            }
            let layers: Vec<String> = p.layers.iter().map(|l| l.diff_id.clone()).collect();
            let size_bytes = layers
                .iter()
                .map(|d| sizes.get(d).copied().unwrap_or(0))
                .sum();
            match images.iter_mut().find(|r| r.id == p.config_digest) {
                Some(r) => {
                    for n in names {
                        if !r.references.contains(n) {
                            r.references.push(n.clone());
                        }
                    }
                    r.imported_at_unix_nanos = now;
                    // The same digest is the same config; re-read, so what
                    // an older berth did not record (ExposedPorts,
                    // Volumes) is there after a pull or import again.
                    r.config = ImageConfig::from_oci(&p.config);
                }
                None => images.push(ImageRecord {
                    id: p.config_digest.clone(),
                    references: names.clone(),
                    manifest_digest: p.manifest_digest.clone(),
                    size_bytes,
                    created: p.config.created().clone(),
                    imported_at_unix_nanos: now,
                    os: p.config.os().to_string(),
                    architecture: p.config.architecture().to_string(),
                    config: ImageConfig::from_oci(&p.config),
                    layers,
                    build_cache: p.build_cache,
                }),
            }
            out_ids.push(p.config_digest.clone());
        }
        self.write_index(&images)?;
        crate::crash::point(|| "image:import:tagged".into());
        st.images = images;
        for (d, size) in sizes {
            st.layer_sizes.insert(hex_of(d).to_string(), *size);
        }
        Ok(out_ids
            .iter()
            .filter_map(|id| st.images.iter().find(|r| &r.id == id).cloned())
            .collect())
    }
}

/// Merges plans describing the same image (same config) listed twice.
fn merge_by_id(plans: Vec<PlannedImage>) -> Vec<PlannedImage> {
    let mut out: Vec<PlannedImage> = Vec::new();
    for p in plans {
        match out.iter_mut().find(|o| o.config_digest == p.config_digest) {
            Some(o) => {
                o.raw_names.extend(p.raw_names);
                o.tag_only = o.tag_only.take().or(p.tag_only);
            }
            None => out.push(p),
        }
    }
    out
}

/// Decides the normalised names of each planned image (see [`ImageStore::import`]).
fn assign_names(
    plans: &[PlannedImage],
    reference: Option<String>,
) -> Result<Vec<Vec<String>>, ImageError> {
    if let Some(r) = reference {
        if plans.len() != 1 {
            return Err(ImageError::InvalidReference(format!(
                "the archive contains {} images; a reference can name only one (import without one \
                 to use the names in the archive)",
                plans.len()
            )));
        }
        return Ok(vec![vec![r]]);
    }
    let mut all = Vec::new();
    for p in plans {
        let mut names: Vec<String> = Vec::new();
        for raw in &p.raw_names {
            let n = reference::normalize(raw).map_err(|e| {
                ImageError::archive_caused(format!("the archive names an image {raw:?}"), e)
            })?;
            if !names.contains(&n) {
                names.push(n);
            }
        }
        if names.is_empty() {
            return Err(ImageError::InvalidReference(match &p.tag_only {
                Some(tag) => format!(
                    "the archive names image {} only by tag {tag:?}; pass a reference \
                     (--reference NAME:{tag})",
                    p.config_digest
                ),
                None => format!(
                    "image {} in the archive has no name; pass a reference (--reference NAME[:TAG])",
                    p.config_digest
                ),
            }));
        }
        all.push(names);
    }
    Ok(all)
}

/// Streams one layer blob from the archive into `dest`: detects compression
/// by magic bytes, hashes the compressed and uncompressed streams while
/// unpacking, and checks both against the manifest and config. Returns the
/// unpacked size.
fn unpack_layer(ar: &OuterArchive, layer: &PlannedLayer, dest: &Path) -> Result<u64, ImageError> {
    let (member, _) = ar.reader(&layer.member)?;
    let read_err = |e: io::Error| ImageError::archive_caused(format!("layer {}", layer.member), e);
    let mut blob = HashingReader::new(member);
    let mut head = [0u8; 6];
    let n = read_up_to(&mut blob, &mut head).map_err(read_err)?;
    let head = &head[..n];
    let size = {
        let joined = Cursor::new(head.to_vec()).chain(&mut blob);
        let decoded = decoder(head, joined, &layer.diff_id)?;
        let mut diff = HashingReader::new(decoded);
        let size = extract::unpack(&mut diff, dest, &layer.diff_id)?;
        // Trailing padding after the tar end marker is part of the diff id.
        diff.drain().map_err(read_err)?;
        if diff.digest() != layer.diff_id {
            return Err(ImageError::archive(format!(
                "layer {}: uncompressed content hashes to {}, not to its diff_id {}",
                layer.member,
                diff.digest(),
                layer.diff_id
            )));
        }
        size
    };
    blob.drain().map_err(read_err)?;
    if let Some(want) = &layer.blob_digest {
        if &blob.digest() != want {
            return Err(ImageError::archive(format!(
                "layer blob {want}: digest mismatch (content hashes to {})",
                blob.digest()
            )));
        }
    }
    if let Some(want) = layer.blob_size {
        if blob.count() != want {
            return Err(ImageError::archive(format!(
                "layer blob {}: size mismatch (descriptor says {want}, blob has {})",
                layer.member,
                blob.count()
            )));
        }
    }
    Ok(size)
}

/// Wraps a layer blob stream in the decompressor its first bytes call for
/// (gzip, zstd, or none). `joined` must still yield `head`. Magic bytes
/// rather than media types decide, because media types lie in the wild
/// (Docker's "tar.gzip" type on uncompressed layers, and the reverse).
pub(crate) fn decoder<'a>(
    head: &[u8],
    joined: impl Read + 'a,
    diff_id: &str,
) -> Result<Box<dyn Read + 'a>, ImageError> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(joined)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let d = zstd::stream::read::Decoder::new(joined)
            .ctx(|| format!("layer {diff_id}: starting the zstd decoder"))?;
        Ok(Box::new(Named("zstd", d)))
    } else if head.starts_with(b"BZh") || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Err(ImageError::archive(format!(
            "layer {diff_id}: bzip2/xz compression is not supported"
        )))
    } else {
        Ok(Box::new(joined))
    }
}

/// A reader whose errors say which decoder failed ("zstd: incomplete frame").
struct Named<R>(&'static str, R);

impl<R: Read> Read for Named<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.1
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.0)))
    }
}
