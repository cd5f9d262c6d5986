//! The small JSON documents of an archive: Docker's manifest.json, OCI's
//! oci-layout and index.json.

use serde_json::{json, Value};

use super::{blob_member, SaveImage};
use crate::image::reference;

/// OCI image layout version marker (the `oci-layout` file).
pub(super) const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// containerd's annotation holding the full image name.
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation holding the name a layout's user picks an image by
/// (the tag, as containerd and Docker write it).
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What Docker's manifest.json says of one image.
pub(super) struct DockerEntry<'a> {
    /// `sha256:<hex>` of the config.
    pub config: &'a str,
    /// References ("RepoTags").
    pub references: &'a [String],
    /// Layer blob digests, base first.
    pub layers: Vec<&'a str>,
}

/// `manifest.json` of a Docker archive.
pub(super) fn docker_manifest(entries: &[DockerEntry<'_>]) -> Vec<u8> {
    let list: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "Config": blob_member(e.config),
                "RepoTags": repo_tags(e.references),
                "Layers": e.layers.iter().map(|l| blob_member(l)).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::to_vec(&list).unwrap_or_default()
}

/// The references `docker load` accepts as RepoTags: tagged ones only. It
/// refuses a whole archive over a digest reference (`name@sha256:...`),
/// which an image pulled by digest has; OCI's index.json keeps those.
fn repo_tags(references: &[String]) -> Vec<&str> {
    references
        .iter()
        .filter(|r| !r.contains('@'))
        .map(String::as_str)
        .collect()
}

/// `index.json` of an OCI layout: one descriptor per reference of each
/// image (annotated with its name and tag), one without a name for an image
/// that has none.
pub(super) fn oci_index(images: &[SaveImage]) -> Vec<u8> {
    let mut manifests = Vec::new();
    for i in images {
        let desc = json!({
            "mediaType": i.manifest_media_type,
            "digest": i.record.manifest_digest,
            "size": i.manifest.len(),
        });
        if i.references.is_empty() {
            manifests.push(desc.clone());
        }
        for r in &i.references {
            let mut d = desc.clone();
            let mut notes = json!({ ANNOTATION_CONTAINERD_NAME: r });
            if let Some(tag) = reference::tag_of(r) {
                notes[ANNOTATION_REF_NAME] = tag.into();
            }
            d["annotations"] = notes;
            manifests.push(d);
        }
    }
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_manifest_names_blobs_by_path() {
        let refs = vec!["docker.io/library/app:v1".to_string()];
        let m = docker_manifest(&[DockerEntry {
            config: "sha256:cc",
            references: &refs,
            layers: vec!["sha256:aa", "sha256:bb"],
        }]);
        let v: Value = serde_json::from_slice(&m).expect("json");
        assert_eq!(
            v,
            json!([{
                "Config": "blobs/sha256/cc",
                "RepoTags": ["docker.io/library/app:v1"],
                "Layers": ["blobs/sha256/aa", "blobs/sha256/bb"],
            }])
        );
    }

    #[test]
    fn docker_repo_tags_hold_no_digest_references() {
        let refs = vec![
            format!("docker.io/library/app@sha256:{}", "a".repeat(64)),
            "docker.io/library/app:v1".to_string(),
            format!("docker.io/library/app:v2@sha256:{}", "b".repeat(64)),
        ];
        let m = docker_manifest(&[DockerEntry {
            config: "sha256:cc",
            references: &refs,
            layers: Vec::new(),
        }]);
        let v: Value = serde_json::from_slice(&m).expect("json");
        assert_eq!(v[0]["RepoTags"], json!(["docker.io/library/app:v1"]));
    }

    fn image(references: &[&str]) -> SaveImage {
        SaveImage {
            record: crate::image::ImageRecord {
                id: "sha256:cc".into(),
                references: Vec::new(),
                manifest_digest: "sha256:mm".into(),
                size_bytes: 0,
                created: None,
                imported_at_unix_nanos: 0,
                os: "linux".into(),
                architecture: "amd64".into(),
                config: Default::default(),
                layers: Vec::new(),
                build_cache: false,
            },
            references: references.iter().map(|s| s.to_string()).collect(),
            manifest: b"{}".to_vec(),
            manifest_media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
            config: Vec::new(),
            layers: Vec::new(),
        }
    }

    #[test]
    fn oci_index_has_one_entry_per_reference_annotated_with_name_and_tag() {
        let v: Value = serde_json::from_slice(&oci_index(&[
            image(&["docker.io/library/app:v1", "localhost:5000/app:v2"]),
            image(&[]),
        ]))
        .expect("json");
        let desc = |notes: Option<Value>| {
            let mut d = json!({
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "digest": "sha256:mm",
                "size": 2,
            });
            if let Some(n) = notes {
                d["annotations"] = n;
            }
            d
        };
        assert_eq!(
            v,
            json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [
                    desc(Some(json!({
                        "io.containerd.image.name": "docker.io/library/app:v1",
                        "org.opencontainers.image.ref.name": "v1",
                    }))),
                    desc(Some(json!({
                        "io.containerd.image.name": "localhost:5000/app:v2",
                        "org.opencontainers.image.ref.name": "v2",
                    }))),
                    desc(None),
                ],
            })
        );
        assert_eq!(OCI_LAYOUT, br#"{"imageLayoutVersion":"1.0.0"}"#);
    }
}
