//! Resolving a reference to an image manifest: fetch the manifest or index,
//! check its digest, and descend through indexes to this platform's image.

use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_spec::image::{ImageIndex, ImageManifest};

use super::errors::oci_err;
use crate::image::digest::sha256_of;
use crate::image::layout::host_arch;
use crate::image::ImageError;

/// Manifest media types we ask for, in order of preference.
const ACCEPT: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Nested indexes deeper than this are refused as hostile.
const MAX_INDEX_DEPTH: usize = 4;

/// A resolved image manifest.
pub(super) struct Resolved {
    /// Digest of the image manifest.
    pub(super) digest: String,
    /// The manifest as received (stored as is).
    pub(super) bytes: Vec<u8>,
    /// The manifest, parsed.
    pub(super) manifest: ImageManifest,
    /// Digest of the index the reference named, if it named one.
    pub(super) index_digest: Option<String>,
}

/// Fetches the manifest `r` names, descending through indexes to this
/// platform's image.
pub(super) async fn resolve(
    client: &Client,
    r: &Reference,
    auth: &RegistryAuth,
) -> Result<Resolved, ImageError> {
    let mut current = r.clone();
    let mut index_digest = None;
    for _ in 0..=MAX_INDEX_DEPTH {
        let (bytes, _) = client
            .pull_manifest_raw(&current, auth, ACCEPT)
            .await
            .map_err(|e| oci_err(&format!("fetching manifest {}", current.whole()), e))?;
        let bytes = bytes.to_vec();
        let digest = sha256_of(&bytes);
        if let Some(want) = current.digest() {
            if want != digest {
                return Err(ImageError::corrupt(format!(
                    "manifest {want}: the content received hashes to {digest}"
                )));
            }
        }
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::bad_response(format!("manifest {digest}: bad JSON"), e))?;
        if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1) {
            return Err(ImageError::Unsupported(format!(
                "{}: Docker schema 1 manifests are not supported",
                current.whole()
            )));
        }
        let media = v.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
        let is_index = media == OCI_INDEX
            || media == DOCKER_LIST
            || (media.is_empty() && v.get("manifests").is_some());
        if is_index {
            let index: ImageIndex = serde_json::from_slice(&bytes)
                .map_err(|e| ImageError::bad_response(format!("index {digest}"), e))?;
            let child = pick_platform(&index).ok_or_else(|| {
                let found: Vec<String> = index
                    .manifests()
                    .iter()
                    .filter_map(|m| m.platform().as_ref())
                    .map(|p| format!("{}/{}", p.os(), p.architecture()))
                    .collect();
                ImageError::NotFound(format!(
                    "{}: no image for linux/{} in the index (it has: {})",
                    r.whole(),
                    host_arch(),
                    found.join(", ")
                ))
            })?;
            // The outermost index is the one the reference named.
            index_digest.get_or_insert(digest);
            current =
                Reference::with_digest(r.registry().to_string(), r.repository().to_string(), child);
            continue;
        }
        if !(media.is_empty() || media == OCI_MANIFEST || media == DOCKER_MANIFEST) {
            return Err(ImageError::Unsupported(format!(
                "{}: manifest type {media:?} is not an image",
                current.whole()
            )));
        }
        let manifest: ImageManifest = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::bad_response(format!("manifest {digest}"), e))?;
        return Ok(Resolved {
            digest,
            bytes,
            manifest,
            index_digest,
        });
    }
    Err(ImageError::bad_response_msg(format!(
        "{}: image indexes nested deeper than {MAX_INDEX_DEPTH} levels",
        r.whole()
    )))
}

/// The variant this machine runs, as image platforms spell it.
fn host_variant() -> Option<&'static str> {
    match host_arch() {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        _ => None,
    }
}

/// The digest of the index entry for linux/<host arch>: an exact variant
/// match first, then an entry without a variant, then any variant.
fn pick_platform(index: &ImageIndex) -> Option<String> {
    let candidates: Vec<_> = index
        .manifests()
        .iter()
        .filter(|m| {
            m.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == "linux" && p.architecture().to_string() == host_arch()
            })
        })
        .collect();
    let variant = |m: &&oci_spec::image::Descriptor| {
        m.platform()
            .as_ref()
            .and_then(|p| p.variant().clone())
            .filter(|v| !v.is_empty())
    };
    candidates
        .iter()
        .find(|m| host_variant().is_some() && variant(m).as_deref() == host_variant())
        .or_else(|| candidates.iter().find(|m| variant(m).is_none()))
        .or_else(|| candidates.first())
        .map(|m| m.digest().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index of (os, architecture, variant) entries; digests name them.
    fn index(entries: &[(&str, &str, Option<&str>)]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .enumerate()
            .map(|(i, (os, arch, variant))| {
                let mut platform = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    platform["variant"] = serde_json::json!(v);
                }
                serde_json::json!({
                    "mediaType": OCI_MANIFEST,
                    "digest": format!("sha256:{}", format!("{i}").repeat(64)),
                    "size": 1,
                    "platform": platform,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        }))
        .unwrap()
    }

    fn digest(i: usize) -> Option<String> {
        Some(format!("sha256:{}", format!("{i}").repeat(64)))
    }

    #[test]
    fn the_host_platform_is_picked_from_an_index() {
        let arch = host_arch();
        let other = if arch == "amd64" { "arm64" } else { "amd64" };
        let idx = index(&[
            ("windows", arch, None),
            ("linux", other, None),
            ("linux", arch, None),
        ]);
        assert_eq!(pick_platform(&idx), digest(2));
        assert_eq!(pick_platform(&index(&[("linux", other, None)])), None);
    }

    #[test]
    fn variants_the_host_does_not_name_lose_to_an_entry_without_one() {
        let arch = host_arch();
        let idx = index(&[("linux", arch, Some("v9")), ("linux", arch, None)]);
        // The host's own variant (if it has one) is not listed: no variant
        // beats a foreign one.
        assert_eq!(pick_platform(&idx), digest(1));
        // Only variants: any of them rather than nothing.
        let idx = index(&[("linux", arch, Some("v9"))]);
        assert_eq!(pick_platform(&idx), digest(0));
        if let Some(v) = host_variant() {
            let idx = index(&[("linux", arch, None), ("linux", arch, Some(v))]);
            assert_eq!(pick_platform(&idx), digest(1), "the exact variant first");
        }
    }
}
