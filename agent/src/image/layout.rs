//! Understanding what is in an archive: OCI image layout or `docker save`.
//!
//! Produces a plan per image (verified manifest and config bytes, and where
//! each layer is in the archive); nothing is written to disk here.

use std::io::Read;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, Os};
use serde::Deserialize;

use super::archive::{clean_name, verify_bytes, OuterArchive};
use super::digest::{sha256_hex, sha256_of};
use super::reference::is_tag;
use super::ImageError;

/// OCI image index media type.
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker manifest list media type (the Docker equivalent of an OCI index).
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest media type.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker schema 2 manifest media type.
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config media type (used in manifests synthesised for `docker save`).
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker uncompressed layer media type.
const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker gzip layer media type.
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// containerd's annotation holding the full image name.
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// How deep nested indexes may go before we call the archive hostile.
const MAX_INDEX_DEPTH: usize = 4;

/// One image to import, with everything verified except the layer contents.
#[derive(Debug)]
pub(crate) struct PlannedImage {
    /// Names found in the archive, not yet normalised (the caller may override them).
    pub raw_names: Vec<String>,
    /// An `org.opencontainers.image.ref.name` that was only a tag.
    pub tag_only: Option<String>,
    /// `sha256:<hex>` of the manifest.
    pub manifest_digest: String,
    /// The manifest as stored (synthesised for `docker save`).
    pub manifest_bytes: Vec<u8>,
    /// `sha256:<hex>` of the config: the image id.
    pub config_digest: String,
    /// The config bytes.
    pub config_bytes: Vec<u8>,
    /// The parsed config.
    pub config: ImageConfiguration,
    /// Layers, base first.
    pub layers: Vec<PlannedLayer>,
    /// A build step's result, kept as build cache while it has no name.
    pub build_cache: bool,
}

/// Where to find one layer and what it must hash to.
#[derive(Debug, Clone)]
pub(crate) struct PlannedLayer {
    /// Archive member holding the (possibly compressed) layer blob.
    pub member: String,
    /// Expected digest of the blob as stored, when the format says it.
    pub blob_digest: Option<String>,
    /// Expected blob size, when the format says it.
    pub blob_size: Option<u64>,
    /// Expected digest of the uncompressed tar (`rootfs.diff_ids`).
    pub diff_id: String,
}

/// The GOARCH name of the machine we run on, as used in image platforms.
pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Reads the archive's metadata and returns one plan per image.
pub(crate) fn plan(ar: &OuterArchive) -> Result<Vec<PlannedImage>, ImageError> {
    let images = if ar.contains("index.json") {
        plan_oci(ar)?
    } else if ar.contains("manifest.json") {
        plan_docker(ar)?
    } else {
        return Err(ImageError::archive(
            "neither an OCI image layout (index.json) nor a docker save archive (manifest.json)",
        ));
    };
    if images.is_empty() {
        return Err(ImageError::archive("archive contains no images"));
    }
    // Every layer is looked up now, not when the import reaches it: an
    // archive that lacks one (a layout exported without its foreign layers,
    // a blob under the wrong algorithm's directory) is refused before any
    // layer is unpacked, and with a message that says which.
    for image in &images {
        let n = image.layers.len();
        for (i, layer) in image.layers.iter().enumerate() {
            if !ar.has_file(&layer.member) {
                let name = layer.blob_digest.as_deref().unwrap_or(&layer.member);
                return Err(ImageError::archive(format!(
                    "layer {} of {n} ({name}) is not in the archive",
                    i + 1
                )));
            }
        }
    }
    Ok(images)
}

/// Parses JSON with a message naming the document.
fn parse_json<T: for<'de> Deserialize<'de>>(data: &[u8], what: &str) -> Result<T, ImageError> {
    serde_json::from_slice(data)
        .map_err(|e| ImageError::archive_caused(format!("{what}: bad JSON"), e))
}

/// OCI image layout: `index.json` -> (nested indexes) -> manifests.
fn plan_oci(ar: &OuterArchive) -> Result<Vec<PlannedImage>, ImageError> {
    let index: ImageIndex = parse_json(&ar.read_small("index.json")?, "index.json")?;
    let mut out: Vec<PlannedImage> = Vec::new();
    let mut skipped = Vec::new();
    for desc in index.manifests() {
        let Some((digest, bytes, manifest)) = select_manifest(ar, desc, 0, &mut skipped)? else {
            continue;
        };
        let (raw_names, tag_only) = names_from_annotations(desc);
        // The same image may be listed once per name.
        if let Some(existing) = out.iter_mut().find(|p| p.manifest_digest == digest) {
            existing.raw_names.extend(raw_names);
            existing.tag_only = existing.tag_only.take().or(tag_only);
            continue;
        }
        let (config_digest, config_bytes, config) = read_config(ar, manifest.config())?;
        let layers = oci_layers(&manifest, &config)?;
        out.push(PlannedImage {
            raw_names,
            tag_only,
            manifest_digest: digest,
            manifest_bytes: bytes,
            config_digest,
            config_bytes,
            config,
            layers,
            build_cache: false,
        });
    }
    if out.is_empty() && !skipped.is_empty() {
        return Err(ImageError::archive(format!(
            "archive has no linux/{} image (found: {})",
            host_arch(),
            skipped.join(", ")
        )));
    }
    Ok(out)
}

/// Follows a descriptor to an image manifest, descending through indexes
/// and picking the linux/<host arch> entry. Returns None for entries that are
/// not images for this platform (attestations, other platforms), recording why.
fn select_manifest(
    ar: &OuterArchive,
    desc: &Descriptor,
    depth: usize,
    skipped: &mut Vec<String>,
) -> Result<Option<(String, Vec<u8>, ImageManifest)>, ImageError> {
    let media = desc.media_type().to_string();
    let digest = desc.digest().to_string();
    if let Some(p) = desc.platform() {
        if p.os() != &Os::Linux || p.architecture().to_string() != host_arch() {
            skipped.push(format!("{}/{}", p.os(), p.architecture()));
            return Ok(None);
        }
    }
    match media.as_str() {
        OCI_INDEX | DOCKER_MANIFEST_LIST => {
            if depth >= MAX_INDEX_DEPTH {
                return Err(ImageError::archive(format!(
                    "image indexes nested deeper than {MAX_INDEX_DEPTH} levels"
                )));
            }
            let bytes = ar.read_blob(&digest, Some(desc.size()), "image index")?;
            let index: ImageIndex = parse_json(&bytes, &format!("image index {digest}"))?;
            let mut inner_skipped = Vec::new();
            for child in index.manifests() {
                if let Some(found) = select_manifest(ar, child, depth + 1, &mut inner_skipped)? {
                    return Ok(Some(found));
                }
            }
            Err(ImageError::archive(format!(
                "image index {digest} has no linux/{} image (found: {})",
                host_arch(),
                inner_skipped.join(", ")
            )))
        }
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let bytes = ar.read_blob(&digest, Some(desc.size()), "manifest")?;
            let manifest: ImageManifest = parse_json(&bytes, &format!("manifest {digest}"))?;
            Ok(Some((digest, bytes, manifest)))
        }
        other => {
            skipped.push(format!("{other} (not an image)"));
            Ok(None)
        }
    }
}

/// Image names from index.json annotations: the containerd full name wins;
/// `org.opencontainers.image.ref.name` is either a full reference or, per the
/// OCI spec, often just a tag.
fn names_from_annotations(desc: &Descriptor) -> (Vec<String>, Option<String>) {
    let Some(ann) = desc.annotations() else {
        return (Vec::new(), None);
    };
    if let Some(name) = ann.get(ANNOTATION_CONTAINERD_NAME) {
        return (vec![name.clone()], None);
    }
    match ann.get(oci_spec::image::ANNOTATION_REF_NAME) {
        Some(r) if is_tag(r) => (Vec::new(), Some(r.clone())),
        Some(r) => (vec![r.clone()], None),
        None => (Vec::new(), None),
    }
}

/// Reads, verifies and parses the config blob; refuses non-linux images.
fn read_config(
    ar: &OuterArchive,
    desc: &Descriptor,
) -> Result<(String, Vec<u8>, ImageConfiguration), ImageError> {
    let digest = desc.digest().to_string();
    let bytes = ar.read_blob(&digest, Some(desc.size()), "config")?;
    let config = parse_config(&bytes, &digest)?;
    Ok((digest, bytes, config))
}

/// Parses a config and checks the things every import needs from it.
pub(crate) fn parse_config(bytes: &[u8], digest: &str) -> Result<ImageConfiguration, ImageError> {
    let config: ImageConfiguration = parse_json(bytes, &format!("config {digest}"))?;
    if config.os() != &Os::Linux {
        return Err(ImageError::archive(format!(
            "image {digest} is for {}/{}; only linux images are supported",
            config.os(),
            config.architecture()
        )));
    }
    for d in config.rootfs().diff_ids() {
        sha256_hex(d, "config rootfs.diff_ids")?;
    }
    Ok(config)
}

/// Maps manifest layer descriptors to plans, paired with the config's diff ids.
fn oci_layers(
    manifest: &ImageManifest,
    config: &ImageConfiguration,
) -> Result<Vec<PlannedLayer>, ImageError> {
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(ImageError::archive(format!(
            "manifest lists {} layers but the config has {} diff_ids",
            manifest.layers().len(),
            diff_ids.len()
        )));
    }
    manifest
        .layers()
        .iter()
        .zip(diff_ids)
        .map(|(l, diff_id)| {
            let digest = l.digest().to_string();
            let media = l.media_type().to_string();
            if media.contains("encrypted") {
                return Err(ImageError::archive(format!(
                    "layer {digest}: encrypted layers are not supported"
                )));
            }
            let hex = sha256_hex(&digest, "layer")?;
            Ok(PlannedLayer {
                member: format!("blobs/sha256/{hex}"),
                blob_digest: Some(digest),
                blob_size: Some(l.size()),
                diff_id: diff_id.clone(),
            })
        })
        .collect()
}

/// One image entry of a `docker save` manifest.json.
#[derive(Deserialize)]
struct DockerSaveEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// If `path` names its content by digest (`blobs/sha256/<hex>` or
/// `<hex>.json`), returns that digest so it can be verified.
fn digest_from_path(path: &str) -> Option<String> {
    let hex = path
        .strip_prefix("blobs/sha256/")
        .or_else(|| path.strip_suffix(".json"))?;
    (hex.len() == 64 && super::reference::is_lower_hex(hex)).then(|| format!("sha256:{hex}"))
}

/// `docker save`: manifest.json lists config and layer paths per image. There
/// is no manifest blob in the legacy format, so one is synthesised (Docker
/// schema 2) to have a manifest digest to record.
fn plan_docker(ar: &OuterArchive) -> Result<Vec<PlannedImage>, ImageError> {
    let entries: Vec<DockerSaveEntry> =
        parse_json(&ar.read_small("manifest.json")?, "manifest.json")?;
    let mut out: Vec<PlannedImage> = Vec::new();
    for e in entries {
        let config_path = clean_name(&e.config).map_err(|why| {
            ImageError::archive(format!("manifest.json: config path {:?} {why}", e.config))
        })?;
        let config_bytes = ar.read_small(&config_path)?;
        let config_digest = sha256_of(&config_bytes);
        if let Some(named) = digest_from_path(&config_path) {
            verify_bytes(&config_bytes, &named, None, "config")?;
        }
        let config = parse_config(&config_bytes, &config_digest)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != e.layers.len() {
            return Err(ImageError::archive(format!(
                "manifest.json lists {} layers but config {config_digest} has {} diff_ids",
                e.layers.len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        let mut descs = Vec::new();
        for (path, diff_id) in e.layers.iter().zip(diff_ids) {
            let member = clean_name(path).map_err(|why| {
                ImageError::archive(format!("manifest.json: layer path {path:?} {why}"))
            })?;
            let blob_digest = digest_from_path(&member);
            let (mut r, size) = ar.reader(&member)?;
            let mut magic = [0u8; 2];
            let n = r
                .read(&mut magic)
                .map_err(|e| ImageError::archive_caused(format!("reading layer {member}"), e))?;
            let gzip = n == 2 && magic == [0x1f, 0x8b];
            // An uncompressed layer's blob digest is its diff id (checked while
            // unpacking); a compressed one must be hashed to be described.
            let desc_digest = match (&blob_digest, gzip) {
                (Some(d), _) => d.clone(),
                (None, false) => diff_id.clone(),
                (None, true) => {
                    let (r, _) = ar.reader(&member)?;
                    let mut h = super::digest::HashingReader::new(r);
                    h.drain().map_err(|e| {
                        ImageError::archive_caused(format!("reading layer {member}"), e)
                    })?;
                    h.digest()
                }
            };
            descs.push(serde_json::json!({
                "mediaType": if gzip { DOCKER_LAYER_GZIP } else { DOCKER_LAYER_TAR },
                "size": size,
                "digest": desc_digest,
            }));
            layers.push(PlannedLayer {
                member,
                blob_digest,
                blob_size: None,
                diff_id: diff_id.clone(),
            });
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": DOCKER_CONFIG,
                "size": config_bytes.len(),
                "digest": config_digest,
            },
            "layers": descs,
        });
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| ImageError::archive_caused("building manifest", e))?;
        let manifest_digest = sha256_of(&manifest_bytes);
        let raw_names = e.repo_tags.unwrap_or_default();
        if let Some(existing) = out.iter_mut().find(|p| p.config_digest == config_digest) {
            existing.raw_names.extend(raw_names);
            continue;
        }
        out.push(PlannedImage {
            raw_names,
            tag_only: None,
            manifest_digest,
            manifest_bytes,
            config_digest,
            config_bytes,
            config,
            layers,
            build_cache: false,
        });
    }
    Ok(out)
}
