//! The image store proper: the index (lookup, listing, removal), garbage
//! collection and disk usage; imports and pulls add to it ([`import`],
//! [`pulled`]).

mod blobs;
mod fsops;
mod import;
mod pins;
mod pulled;
#[cfg(test)]
mod seam;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use self::fsops::{disk_usage, ensure_dir, StagingDir};
use super::error::IoContext;
use super::reference::{self, is_lower_hex};
use super::{ImageError, ImageRecord};
use crate::fsutil::{temp_path, write_atomic, WriteOptions};

pub(crate) use self::blobs::{manifest_layers, Descriptor};
pub(crate) use self::fsops::{hex_of, remove_any};
pub use self::pins::ImagePin;
pub(crate) use self::pins::Pins;
pub(crate) use self::pulled::Parts;

/// Name of the index file under the root.
const INDEX_FILE: &str = "images.json";
/// Partial downloads not written to for this long are of pulls nobody
/// retried; they are deleted at start.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Version of the index file format.
const INDEX_VERSION: u32 = 1;

/// The on-disk index format.
#[derive(Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    images: Vec<ImageRecord>,
}

/// In-memory state behind the mutex.
#[derive(Default)]
struct State {
    /// The index, as last written to disk.
    images: Vec<ImageRecord>,
    /// Layer hexes that in-flight imports rely on: gc must keep them.
    pinned_layers: HashMap<String, usize>,
    /// Blob hexes that in-flight imports will commit: gc must keep them.
    pinned_blobs: HashMap<String, usize>,
    /// Image ids a running build stands on: prune must keep them.
    pinned_images: HashMap<String, usize>,
    /// Unpacked size of layers (by hex), filled as layers are unpacked or
    /// first measured, so List/Inspect can report disk usage cheaply.
    layer_sizes: HashMap<String, u64>,
}

/// The image store. One instance per root directory (it assumes it is the
/// only writer: `open` deletes leftover staging data).
pub struct ImageStore {
    root: PathBuf,
    state: Mutex<State>,
    #[cfg(test)]
    seam: seam::Seam,
}

/// How a lookup matched.
enum Found {
    /// By this (normalised) reference.
    Reference(usize, String),
    /// By id, full or prefix.
    Id(usize),
}

/// What a removal removed: the references and, when the record went, its id.
pub type Removed = (Vec<String>, Option<String>);

impl ImageStore {
    /// Opens (creating if needed) the store at `root`, loads the index and
    /// removes leftovers of imports interrupted by a crash.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        // downloads/ is not swept: it holds partial blobs that an
        // interrupted pull resumes from. Only those nobody resumed for a
        // while go.
        for sub in ["blobs/sha256", "layers", "staging", "downloads"] {
            ensure_dir(&root.join(sub))?;
        }
        pulled::collect_abandoned_downloads(&root.join("downloads"), ABANDONED_AFTER);
        let staging = root.join("staging");
        for entry in fs::read_dir(&staging).ctx(|| format!("reading {}", staging.display()))? {
            let entry = entry.ctx(|| format!("reading {}", staging.display()))?;
            remove_any(&entry.path())
                .ctx(|| format!("removing stale {}", entry.path().display()))?;
        }
        // Temporaries of an index write a crash cut short (the second name
        // is the one versions before the shared helper used).
        if let Ok(tmp) = temp_path(&root.join(INDEX_FILE)) {
            let _ = fs::remove_file(tmp);
        }
        let _ = fs::remove_file(root.join(format!("{INDEX_FILE}.tmp")));
        let index_path = root.join(INDEX_FILE);
        let images = match fs::read(&index_path) {
            Ok(data) => {
                let index: IndexFile = serde_json::from_slice(&data)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
                    .ctx(|| format!("parsing {}", index_path.display()))?;
                if index.version != INDEX_VERSION {
                    return Err(ImageError::io(
                        format!("parsing {}", index_path.display()),
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("unsupported index version {}", index.version),
                        ),
                    ));
                }
                index.images
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(ImageError::io(
                    format!("reading {}", index_path.display()),
                    e,
                ))
            }
        };
        Ok(Self {
            root: root.to_path_buf(),
            state: Mutex::new(State {
                images,
                ..State::default()
            }),
            #[cfg(test)]
            seam: seam::Seam::default(),
        })
    }

    /// Locks the state. A panic while holding the lock cannot leave it half
    /// updated (changes are built on a copy and swapped in), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        #[cfg(test)]
        self.seam.about_to_lock();
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn staging_dir(&self) -> PathBuf {
        self.root.join("staging")
    }

    /// Atomically and durably replaces images.json.
    fn write_index(&self, images: &[ImageRecord]) -> Result<(), ImageError> {
        let index = IndexFile {
            version: INDEX_VERSION,
            images: images.to_vec(),
        };
        let data = serde_json::to_vec_pretty(&index)
            .map_err(|e| ImageError::io("serialising the image index", e.into()))?;
        let dest = self.root.join(INDEX_FILE);
        write_atomic(&dest, &data, WriteOptions::synced())
            .ctx(|| format!("replacing {}", dest.display()))
    }

    /// All images, most recently imported first.
    pub fn list(&self) -> Vec<ImageRecord> {
        let mut images = self.lock().images.clone();
        images.sort_by(|a, b| {
            b.imported_at_unix_nanos
                .cmp(&a.imported_at_unix_nanos)
                .then_with(|| a.id.cmp(&b.id))
        });
        images
    }

    /// Finds an image by reference (normalised), `sha256:<hex>`, full hex id
    /// or unique hex id prefix. A reference wins over an id prefix that
    /// happens to look the same (as in Docker).
    ///
    /// # Errors
    /// `NotFound`, `Ambiguous` (prefix matches several images), or
    /// `InvalidReference` for input that is neither a valid name nor an id.
    pub fn resolve(&self, name_or_id: &str) -> Result<ImageRecord, ImageError> {
        let st = self.lock();
        let idx = match lookup(&st.images, name_or_id) {
            Ok(Found::Reference(i, _)) | Ok(Found::Id(i)) => i,
            Err(ImageError::NotFound(msg)) => {
                // `name@sha256:<manifest digest>` names the image by content
                // even if that exact string was never used as a reference.
                match reference::normalize(name_or_id) {
                    Ok(norm) => match by_manifest_digest(&st.images, &norm) {
                        Some(i) => i,
                        None => return Err(ImageError::NotFound(msg)),
                    },
                    Err(_) => return Err(ImageError::NotFound(msg)),
                }
            }
            Err(e) => return Err(e),
        };
        Ok(st.images[idx].clone())
    }

    /// Removes the image `id` for a prune, unless a running build stands on
    /// it ([`ImagePin`]): checked under the lock, so a build's pin and a
    /// prune's removal cannot interleave. None when pinned.
    pub fn remove_unpinned(&self, id: &str) -> Result<Option<Removed>, ImageError> {
        let mut st = self.lock();
        if st.pinned_images.contains_key(id) {
            return Ok(None);
        }
        self.remove_locked(&mut st, id).map(Some)
    }

    /// Removes a reference, or an image. A reference removes only itself (the
    /// image record goes when its last reference does); an id removes the
    /// image and all its references. Layers and blobs stay until [`gc`](Self::gc).
    ///
    /// Returns the references removed and, if the record was deleted, its id.
    pub fn remove(&self, name_or_id: &str) -> Result<(Vec<String>, Option<String>), ImageError> {
        let mut st = self.lock();
        self.remove_locked(&mut st, name_or_id)
    }

    fn remove_locked(
        &self,
        st: &mut State,
        name_or_id: &str,
    ) -> Result<(Vec<String>, Option<String>), ImageError> {
        let mut images = st.images.clone();
        let result = match lookup(&images, name_or_id)? {
            Found::Reference(i, r) => {
                images[i].references.retain(|x| x != &r);
                if images[i].references.is_empty() {
                    let rec = images.remove(i);
                    (vec![r], Some(rec.id))
                } else {
                    (vec![r], None)
                }
            }
            Found::Id(i) => {
                let rec = images.remove(i);
                (rec.references, Some(rec.id))
            }
        };
        self.write_index(&images)?;
        st.images = images;
        Ok(result)
    }

    /// Gives the image `source` (reference, id or unique id prefix) the
    /// reference `target`, as `docker tag`: a tag another image had moves to
    /// this one (which keeps its other names, or stays without any). A
    /// target with a digest is refused: digests name content, not a choice.
    ///
    /// Returns the image as now stored.
    ///
    /// # Errors
    /// Those of [`resolve`](Self::resolve) for `source`;
    /// `InvalidReference` for a bad or digest `target`; the index write.
    pub fn tag(&self, source: &str, target: &str) -> Result<ImageRecord, ImageError> {
        let norm = reference::normalize(target)?;
        if norm.contains('@') {
            return Err(ImageError::InvalidReference(format!(
                "{:?}: a tag cannot hold a digest",
                crate::error::capped(target)
            )));
        }
        let id = self.resolve(source)?.id;
        let mut st = self.lock();
        let mut images = st.images.clone();
        for img in images.iter_mut() {
            img.references.retain(|r| r != &norm);
        }
        let i = images
            .iter()
            .position(|r| r.id == id)
            .ok_or_else(|| ImageError::NotFound(format!("image {id} was removed meanwhile")))?;
        images[i].references.push(norm);
        let rec = images[i].clone();
        self.write_index(&images)?;
        st.images = images;
        Ok(rec)
    }

    /// Directories of the image's unpacked layers, base layer first (overlayfs
    /// wants the reverse order in `lowerdir`).
    pub fn layer_dirs(&self, image: &ImageRecord) -> Vec<PathBuf> {
        let dir = self.layers_dir();
        image.layers.iter().map(|d| dir.join(hex_of(d))).collect()
    }

    /// Deletes unpacked layers and blobs that no image references, except
    /// layers whose diff id (`sha256:<hex>` or bare hex) is in `in_use` and
    /// anything an import in progress relies on.
    ///
    /// Returns the bytes of the layers deleted (apparent sizes of their
    /// regular files, hard links once).
    pub fn gc(&self, in_use: &HashSet<String>) -> Result<u64, ImageError> {
        let trash = StagingDir::create(&self.staging_dir(), "gc-")?;
        {
            let st = self.lock();
            // Which layer blobs live images need is only known if every
            // live manifest can be read: otherwise this run deletes no blob
            // at all rather than an image's only copy of its layers.
            let layer_blobs: Result<Vec<Vec<String>>, String> = st
                .images
                .iter()
                .map(|r| blobs::layer_blob_hexes(self, &r.manifest_digest))
                .collect();
            let layer_blobs = match layer_blobs {
                Ok(l) => Some(l.into_iter().flatten().collect::<Vec<String>>()),
                Err(e) => {
                    tracing::warn!("gc keeps all blobs this time: {e}");
                    None
                }
            };
            let mut keep_layers: HashSet<&str> = in_use.iter().map(|d| hex_of(d)).collect();
            let mut keep_blobs: HashSet<&str> = HashSet::new();
            for r in &st.images {
                keep_layers.extend(r.layers.iter().map(|d| hex_of(d)));
                keep_blobs.insert(hex_of(&r.id));
                keep_blobs.insert(hex_of(&r.manifest_digest));
            }
            keep_blobs.extend(layer_blobs.iter().flatten().map(String::as_str));
            keep_layers.extend(st.pinned_layers.keys().map(String::as_str));
            keep_blobs.extend(st.pinned_blobs.keys().map(String::as_str));

            // Layers are moved out of layers/ under the lock (cheap renames);
            // the slow deletion happens after releasing it.
            let layers_dir = self.layers_dir();
            for entry in
                fs::read_dir(&layers_dir).ctx(|| format!("reading {}", layers_dir.display()))?
            {
                let entry = entry.ctx(|| format!("reading {}", layers_dir.display()))?;
                let name = entry.file_name();
                if keep_layers.contains(name.to_string_lossy().as_ref()) {
                    continue;
                }
                let to = trash.path.join(&name);
                fs::rename(entry.path(), &to)
                    .ctx(|| format!("moving {} to the trash", entry.path().display()))?;
            }
            let blobs_dir = self.blobs_dir();
            // Without every live manifest's layer list, keep all blobs
            // (see above); layers are decided by the records alone.
            let entries = match layer_blobs {
                Some(_) => Some(
                    fs::read_dir(&blobs_dir).ctx(|| format!("reading {}", blobs_dir.display()))?,
                ),
                None => None,
            };
            for entry in entries.into_iter().flatten() {
                let entry = entry.ctx(|| format!("reading {}", blobs_dir.display()))?;
                let name = entry.file_name();
                if !keep_blobs.contains(name.to_string_lossy().as_ref()) {
                    remove_any(&entry.path())
                        .ctx(|| format!("removing {}", entry.path().display()))?;
                }
            }
        }
        finish_gc(trash)
    }
}

/// Deletes gc's trash (the layers it moved out), failing if any remains.
/// Deletes what gc moved to the trash; returns the bytes freed, measured
/// in the trash, outside the lock (nothing uses them now).
fn finish_gc(trash: StagingDir) -> Result<u64, ImageError> {
    let freed = fs::read_dir(&trash.path)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| disk_usage(&e.path()).ok())
        .fold(0u64, u64::saturating_add);
    let path = trash.path.clone();
    drop(trash);
    if path.exists() {
        return Err(ImageError::io(
            format!("removing {}", path.display()),
            io::Error::other("could not delete garbage"),
        ));
    }
    Ok(freed)
}

impl ImageStore {
    /// Unpacked size of one layer (by diff id), measured once and cached; 0
    /// when it cannot be measured (a report, not a reason to fail).
    pub(crate) fn layer_size(&self, diff_id: &str) -> u64 {
        let hex = hex_of(diff_id).to_string();
        if let Some(size) = self.lock().layer_sizes.get(&hex) {
            return *size;
        }
        // Measured without the lock: walking a layer can take a while.
        match disk_usage(&self.layers_dir().join(&hex)) {
            Ok(size) => {
                self.lock().layer_sizes.insert(hex, size);
                size
            }
            Err(_) => 0,
        }
    }

    /// Disk usage of an image's unpacked layers as (unique, shared) bytes:
    /// shared layers are also used by another image. Layer sizes are
    /// measured once and cached.
    pub fn usage(&self, image: &ImageRecord) -> (u64, u64) {
        let missing: Vec<String> = {
            let st = self.lock();
            image
                .layers
                .iter()
                .map(|d| hex_of(d).to_string())
                .filter(|h| !st.layer_sizes.contains_key(h))
                .collect()
        };
        for hex in missing {
            // Measured without the lock: walking a layer can take a while.
            if let Ok(size) = disk_usage(&self.layers_dir().join(&hex)) {
                self.lock().layer_sizes.insert(hex, size);
            }
        }
        let st = self.lock();
        let (mut unique, mut shared) = (0, 0);
        let mut seen = HashSet::new();
        for d in &image.layers {
            if !seen.insert(d) {
                continue;
            }
            let size = st.layer_sizes.get(hex_of(d)).copied().unwrap_or(0);
            if st
                .images
                .iter()
                .any(|o| o.id != image.id && o.layers.contains(d))
            {
                shared += size;
            } else {
                unique += size;
            }
        }
        (unique, shared)
    }
}

/// Finds an image by exact reference, then by id / id prefix.
fn lookup(images: &[ImageRecord], s: &str) -> Result<Found, ImageError> {
    if s.is_empty() {
        return Err(ImageError::NotFound("empty image name".into()));
    }
    let explicit_id = s.strip_prefix("sha256:");
    let mut ref_err = None;
    if explicit_id.is_none() {
        match reference::normalize(s) {
            Ok(norm) => {
                if let Some(i) = images.iter().position(|r| r.references.contains(&norm)) {
                    return Ok(Found::Reference(i, norm));
                }
            }
            Err(e) => ref_err = Some(e),
        }
    }
    let prefix = explicit_id.unwrap_or(s);
    if prefix.len() <= 64 && is_lower_hex(prefix) {
        let matches: Vec<usize> = images
            .iter()
            .enumerate()
            .filter(|(_, r)| hex_of(&r.id).starts_with(prefix))
            .map(|(i, _)| i)
            .collect();
        match matches.as_slice() {
            [i] => return Ok(Found::Id(*i)),
            [] => {}
            many => {
                return Err(ImageError::Ambiguous(format!(
                    "{s:?} matches {} images; use more characters of the id",
                    many.len()
                )))
            }
        }
    } else if let Some(e) = ref_err {
        // Neither a valid name nor an id: say what is wrong with it as a name.
        return Err(e);
    }
    Err(ImageError::NotFound(s.to_string()))
}

/// For `name@sha256:<d>`: the image whose manifest digest is `d` and which
/// has some reference in the same repository.
fn by_manifest_digest(images: &[ImageRecord], norm: &str) -> Option<usize> {
    let (_, digest) = norm.split_once('@')?;
    let repo = reference::repository(norm);
    images.iter().position(|r| {
        r.manifest_digest == digest
            && r.references
                .iter()
                .any(|x| reference::repository(x) == repo)
    })
}
