//! The image store proper: import, lookup, removal, garbage collection.

use std::collections::{HashMap, HashSet};
use std::fs::{self, DirBuilder, File};
use std::io::{self, Cursor, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
use serde::{Deserialize, Serialize};

use super::archive::OuterArchive;
use super::digest::{sha256_hex, HashingReader};
use super::error::IoContext;
use super::layout::{self, PlannedImage, PlannedLayer};
use super::reference::{self, is_lower_hex};
use super::{extract, ImageConfig, ImageError, ImageRecord};

/// Name of the index file under the root.
const INDEX_FILE: &str = "images.json";
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
    /// Unpacked size of layers (by hex), filled as layers are unpacked or
    /// first measured, so List/Inspect can report disk usage cheaply.
    layer_sizes: HashMap<String, u64>,
}

/// The image store. One instance per root directory (it assumes it is the
/// only writer: `open` deletes leftover staging data).
pub struct ImageStore {
    root: PathBuf,
    state: Mutex<State>,
}

/// A private directory under `staging/`, deleted (with its contents) on drop,
/// so any failed import leaves nothing behind.
struct StagingDir {
    path: PathBuf,
}

impl StagingDir {
    /// Creates a uniquely named directory under `parent`.
    fn create(parent: &Path, prefix: &str) -> Result<Self, ImageError> {
        loop {
            let path = parent.join(format!("{prefix}{:016x}", rand::random::<u64>()));
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Self { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(ImageError::io(
                        format!("creating staging dir {}", path.display()),
                        e,
                    ))
                }
            }
        }
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        // Best effort; `open` sweeps staging/ anyway after a crash.
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Unpins an import's (or pull's) layers and blobs when it ends, however it ends.
pub(crate) struct Pins<'a> {
    store: &'a ImageStore,
    layers: Vec<String>,
    blobs: Vec<String>,
}

impl Drop for Pins<'_> {
    fn drop(&mut self) {
        let st = &mut *self.store.lock();
        for (set, keys) in [
            (&mut st.pinned_layers, &self.layers),
            (&mut st.pinned_blobs, &self.blobs),
        ] {
            for k in keys {
                if let Some(n) = set.get_mut(k) {
                    *n -= 1;
                    if *n == 0 {
                        set.remove(k);
                    }
                }
            }
        }
    }
}

/// The hex part of a `sha256:<hex>` string we produced or validated earlier.
pub(crate) fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Creates `dir` (and parents) if missing.
fn ensure_dir(dir: &Path) -> Result<(), ImageError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .ctx(|| format!("creating {}", dir.display()))
}

/// fsyncs a directory so renames into it survive a crash.
fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("syncing {}", dir.display()))
}

/// Renames without replacing an existing target. Returns false if the target
/// exists (another import got there first).
fn rename_noreplace(from: &Path, to: &Path) -> Result<bool, ImageError> {
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(true),
        Err(Errno::EEXIST) | Err(Errno::ENOTEMPTY) => Ok(false),
        // Filesystems without RENAME_NOREPLACE: we hold the store lock, so
        // check-then-rename is not racy against other imports.
        Err(Errno::EINVAL) if fs::symlink_metadata(to).is_ok() => Ok(false),
        Err(Errno::EINVAL) => fs::rename(from, to)
            .map(|()| true)
            .ctx(|| format!("moving {} to {}", from.display(), to.display())),
        Err(e) => Err(ImageError::io(
            format!("moving {} to {}", from.display(), to.display()),
            e.into(),
        )),
    }
}

/// Removes a file or directory tree, ignoring "already gone".
pub(crate) fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Bytes of regular files under `dir` (hard links counted once), without
/// following symlinks. Used for layers an earlier import already unpacked.
fn disk_usage(dir: &Path) -> Result<u64, ImageError> {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).ctx(|| format!("reading {}", d.display()))? {
            let entry = entry.ctx(|| format!("reading {}", d.display()))?;
            let m = entry
                .metadata()
                .ctx(|| format!("inspecting {}", entry.path().display()))?;
            if m.is_dir() {
                stack.push(entry.path());
            } else if m.is_file() && (m.nlink() == 1 || seen.insert((m.dev(), m.ino()))) {
                total += m.len();
            }
        }
    }
    Ok(total)
}

/// Now, in nanoseconds since the Unix epoch (0 if the clock is before it).
fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Reads until `buf` is full or EOF; returns how much was read.
fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Streams one layer blob from the archive into `dest`: detects compression
/// by magic bytes, hashes the compressed and uncompressed streams while
/// unpacking, and checks both against the manifest and config. Returns the
/// unpacked size.
fn unpack_layer(ar: &OuterArchive, layer: &PlannedLayer, dest: &Path) -> Result<u64, ImageError> {
    let (member, _) = ar.reader(&layer.member)?;
    let read_err = |e: io::Error| ImageError::archive(format!("layer {}: {e}", layer.member));
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

/// Writes `data` to a new file and fsyncs it.
pub(crate) fn write_synced(path: &Path, data: &[u8]) -> Result<(), ImageError> {
    let mut f = File::create(path).ctx(|| format!("creating {}", path.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .ctx(|| format!("writing {}", path.display()))
}

/// How a lookup matched.
enum Found {
    /// By this (normalised) reference.
    Reference(usize, String),
    /// By id, full or prefix.
    Id(usize),
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`, loads the index and
    /// removes leftovers of imports interrupted by a crash.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        // downloads/ is deliberately not swept: it holds partial blobs that
        // an interrupted pull resumes from.
        for sub in ["blobs/sha256", "layers", "staging", "downloads"] {
            ensure_dir(&root.join(sub))?;
        }
        let staging = root.join("staging");
        for entry in fs::read_dir(&staging).ctx(|| format!("reading {}", staging.display()))? {
            let entry = entry.ctx(|| format!("reading {}", staging.display()))?;
            remove_any(&entry.path())
                .ctx(|| format!("removing stale {}", entry.path().display()))?;
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
        })
    }

    /// Locks the state. A panic while holding the lock cannot leave it half
    /// updated (changes are built on a copy and swapped in), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
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

    /// Atomically replaces images.json: temp file, fsync, rename, fsync dir.
    fn write_index(&self, images: &[ImageRecord]) -> Result<(), ImageError> {
        let index = IndexFile {
            version: INDEX_VERSION,
            images: images.to_vec(),
        };
        let data = serde_json::to_vec_pretty(&index)
            .map_err(|e| ImageError::io("serialising the image index", e.into()))?;
        let tmp = self.root.join(format!("{INDEX_FILE}.tmp"));
        write_synced(&tmp, &data)?;
        let dest = self.root.join(INDEX_FILE);
        fs::rename(&tmp, &dest).ctx(|| format!("replacing {}", dest.display()))?;
        sync_dir(&self.root)
    }

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
                    write_synced(&blob_stage.join(&hex), data)?;
                    blobs.push(hex);
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
    fn commit(
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
                }),
            }
            out_ids.push(p.config_digest.clone());
        }
        self.write_index(&images)?;
        st.images = images;
        for (d, size) in sizes {
            st.layer_sizes.insert(hex_of(d).to_string(), *size);
        }
        Ok(out_ids
            .iter()
            .filter_map(|id| st.images.iter().find(|r| &r.id == id).cloned())
            .collect())
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

    /// Removes a reference, or an image. A reference removes only itself (the
    /// image record goes when its last reference does); an id removes the
    /// image and all its references. Layers and blobs stay until [`gc`](Self::gc).
    ///
    /// Returns the references removed and, if the record was deleted, its id.
    pub fn remove(&self, name_or_id: &str) -> Result<(Vec<String>, Option<String>), ImageError> {
        let mut st = self.lock();
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

    /// Directories of the image's unpacked layers, base layer first (overlayfs
    /// wants the reverse order in `lowerdir`).
    pub fn layer_dirs(&self, image: &ImageRecord) -> Vec<PathBuf> {
        let dir = self.layers_dir();
        image.layers.iter().map(|d| dir.join(hex_of(d))).collect()
    }

    /// Deletes unpacked layers and blobs that no image references, except
    /// layers whose diff id (`sha256:<hex>` or bare hex) is in `in_use` and
    /// anything an import in progress relies on.
    pub fn gc(&self, in_use: &HashSet<String>) -> Result<(), ImageError> {
        let trash = StagingDir::create(&self.staging_dir(), "gc-")?;
        {
            let st = self.lock();
            let mut keep_layers: HashSet<&str> = in_use.iter().map(|d| hex_of(d)).collect();
            let mut keep_blobs: HashSet<&str> = HashSet::new();
            for r in &st.images {
                keep_layers.extend(r.layers.iter().map(|d| hex_of(d)));
                keep_blobs.insert(hex_of(&r.id));
                keep_blobs.insert(hex_of(&r.manifest_digest));
            }
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
            for entry in
                fs::read_dir(&blobs_dir).ctx(|| format!("reading {}", blobs_dir.display()))?
            {
                let entry = entry.ctx(|| format!("reading {}", blobs_dir.display()))?;
                let name = entry.file_name();
                if !keep_blobs.contains(name.to_string_lossy().as_ref()) {
                    remove_any(&entry.path())
                        .ctx(|| format!("removing {}", entry.path().display()))?;
                }
            }
        }
        let path = trash.path.clone();
        drop(trash);
        if path.exists() {
            return Err(ImageError::io(
                format!("removing {}", path.display()),
                io::Error::other("could not delete garbage"),
            ));
        }
        Ok(())
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
                ImageError::archive(format!("the archive names an image {raw:?}: {e}"))
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

/// What pulling needs from the store: layers installed one at a time (so an
/// interrupted pull keeps the layers it finished), blobs read back, images
/// committed from registry metadata, and disk usage.
impl ImageStore {
    /// Where partial downloads live (kept across restarts so pulls resume).
    pub(crate) fn downloads_dir(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// Pins layers (diff ids) so gc keeps them until the guard drops.
    pub(crate) fn pin_layers(&self, diff_ids: &[String]) -> Pins<'_> {
        let mut st = self.lock();
        let mut pins = Pins {
            store: self,
            layers: Vec::new(),
            blobs: Vec::new(),
        };
        for d in diff_ids {
            let hex = hex_of(d).to_string();
            *st.pinned_layers.entry(hex.clone()).or_default() += 1;
            pins.layers.push(hex);
        }
        pins
    }

    /// True if the layer with this diff id is unpacked in the store.
    pub(crate) fn has_layer(&self, diff_id: &str) -> bool {
        fs::symlink_metadata(self.layers_dir().join(hex_of(diff_id))).is_ok()
    }

    /// A manifest or config stored under blobs/, if present and intact.
    pub(crate) fn read_blob(&self, digest: &str) -> Option<Vec<u8>> {
        let hex = sha256_hex(digest, "blob").ok()?;
        let data = fs::read(self.blobs_dir().join(hex)).ok()?;
        (super::digest::sha256_of(&data) == digest).then_some(data)
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
            ImageError::InvalidArchive(m) => ImageError::Unsupported(m),
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
            .map_err(|e| ImageError::Corrupt(format!("layer {diff_id}: {e}")))?;
        if diff.digest() != diff_id {
            return Err(ImageError::Corrupt(format!(
                "layer content hashes to {}, not to its diff_id {diff_id} from the image config",
                diff.digest()
            )));
        }
        let mut st = self.lock();
        let to = self.layers_dir().join(&hex);
        rename_noreplace(&dest, &to)?;
        sync_dir(&self.layers_dir())?;
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
                write_synced(&blob_stage.join(&hex), data)?;
                blobs.push(hex);
            }
        }
        let mut st = self.lock();
        let mut added = Vec::new();
        let plans = [plan];
        let result = self.commit(
            &mut st,
            &plans,
            &[vec![reference.to_string()]],
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
            .ok_or_else(|| ImageError::io("committing the pulled image", io::Error::other("lost")))
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
