//! A stage's state between steps: the image config document and the layers
//! so far, and how a step's result becomes a (build-cache) image.
//!
//! The config is kept as JSON rather than oci-spec's typed struct: a
//! Dockerfile sets fields OCI does not define (Healthcheck, OnBuild, Shell),
//! and a base image's own extra fields must pass through untouched.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::error::{BuildError, Result};
use super::layer::LayerBlob;
use crate::image::digest::sha256_of;
use crate::image::layout::PlannedLayer;
use crate::image::store::{ImagePin, Parts};
use crate::image::{ImageError, ImageRecord, ImageStore};

/// OCI media types berth writes.
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Layers berth makes are stored uncompressed: their blob is their diff.
pub const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// One layer of the image being built, as its manifest describes it.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The blob's media type (tells its compression).
    pub media_type: String,
    /// `sha256:<hex>` of the blob.
    pub digest: String,
    /// The blob's size.
    pub size: u64,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
}

/// The state of a stage after a step.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The store image holding exactly this state; None only for `scratch`
    /// before its first step.
    pub image_id: Option<String>,
    /// The whole config document.
    pub config: Value,
    /// The layers, base first.
    pub layers: Vec<Layer>,
}

impl Snapshot {
    /// The empty state of `FROM scratch`.
    pub fn scratch(created: &str) -> Snapshot {
        Snapshot {
            image_id: None,
            config: json!({
                "created": created,
                "architecture": crate::image::layout::host_arch(),
                "os": "linux",
                "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            }),
            layers: Vec::new(),
        }
    }

    /// The state of a stored image (a FROM image, or a cached step).
    pub fn of_image(store: &ImageStore, image: &ImageRecord) -> Result<Snapshot> {
        let corrupt = |what: &str| {
            BuildError::Image(ImageError::corrupt(format!(
                "image {}: its {what} is missing or unreadable in the store",
                image.id
            )))
        };
        let config_bytes = store
            .read_blob(&image.id)
            .ok_or_else(|| corrupt("config"))?;
        let config: Value = serde_json::from_slice(&config_bytes).map_err(|_| corrupt("config"))?;
        let manifest = store
            .read_blob(&image.manifest_digest)
            .ok_or_else(|| corrupt("manifest"))?;
        let descs = crate::image::store::manifest_layers(&manifest);
        if descs.len() != image.layers.len() {
            return Err(corrupt("manifest's layer list"));
        }
        let layers = descs
            .into_iter()
            .zip(&image.layers)
            .map(|(d, diff_id)| Layer {
                media_type: d.media_type,
                digest: d.digest,
                size: d.size,
                diff_id: diff_id.clone(),
            })
            .collect();
        Ok(Snapshot {
            image_id: Some(image.id.clone()),
            config,
            layers,
        })
    }

    /// The `config` object of the config document (runtime defaults).
    pub fn runtime(&mut self) -> &mut Map<String, Value> {
        if !self.config.is_object() {
            self.config = json!({});
        }
        if !self.config.get("config").is_some_and(Value::is_object) {
            self.config["config"] = json!({});
        }
        match self.config.get_mut("config").and_then(Value::as_object_mut) {
            Some(map) => map,
            None => unreachable!("config.config was made an object just above"),
        }
    }

    /// A string field of the runtime config ("" when unset).
    pub fn field(&self, key: &str) -> String {
        self.config
            .get("config")
            .and_then(|c| c.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    /// A string-list field of the runtime config (empty when unset).
    pub fn list(&self, key: &str) -> Vec<String> {
        self.config
            .get("config")
            .and_then(|c| c.get(key))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The env as `KEY=value` strings.
    pub fn env(&self) -> Vec<String> {
        self.list("Env")
    }

    /// Sets `key=value` in the env, replacing an earlier value.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let mut env = self.env();
        let prefix = format!("{key}=");
        env.retain(|e| !e.starts_with(&prefix));
        env.push(format!("{key}={value}"));
        self.runtime().insert("Env".into(), json!(env));
    }

    /// Makes the step's result an image in the store (untagged build
    /// cache): a config with `history` appended and, with `layer`, the new
    /// layer installed. Sets `image_id`. The image is pinned from before it
    /// is listed, so no `image prune` can take it (see [`ImagePin`]).
    pub fn commit(
        &mut self,
        store: &Arc<ImageStore>,
        created: &str,
        created_by: &str,
        layer: Option<LayerBlob>,
    ) -> Result<(ImageRecord, ImagePin)> {
        let new = match &layer {
            Some(blob) if !blob.empty => Some(Layer {
                media_type: LAYER_TYPE.into(),
                digest: blob.digest.clone(),
                size: blob.size,
                diff_id: blob.digest.clone(),
            }),
            _ => None,
        };
        let mut history =
            json!({"created": created, "created_by": created_by, "comment": "berth build"});
        if new.is_none() {
            history["empty_layer"] = json!(true);
        }
        let mut next = self.clone();
        if let Some(l) = &new {
            next.layers.push(l.clone());
        }
        if let Some(o) = next.config.as_object_mut() {
            o.insert("created".into(), json!(created));
            let hist = o.entry("history").or_insert_with(|| json!([]));
            match hist.as_array_mut() {
                Some(a) => a.push(history),
                None => *hist = json!([history]),
            }
            let diff_ids: Vec<&str> = next.layers.iter().map(|l| l.diff_id.as_str()).collect();
            o.insert(
                "rootfs".into(),
                json!({"type": "layers", "diff_ids": diff_ids}),
            );
        }
        let config_bytes = serde_json::to_vec(&next.config)
            .map_err(|e| BuildError::io("encoding the image config", std::io::Error::other(e)))?;
        let config_digest = sha256_of(&config_bytes);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config_bytes.len()},
            "layers": next.layers.iter().map(|l| json!({
                "mediaType": l.media_type, "digest": l.digest, "size": l.size,
            })).collect::<Vec<_>>(),
        });
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| BuildError::io("encoding the manifest", std::io::Error::other(e)))?;
        let manifest_digest = sha256_of(&manifest_bytes);
        let pin = store.pin_image(&config_digest);

        let diff_ids: Vec<String> = next.layers.iter().map(|l| l.diff_id.clone()).collect();
        let blobs: Vec<String> = new.iter().map(|l| l.digest.clone()).collect();
        // Pinned until the image lists them, so gc cannot take them between.
        let _pins = store.pin(&diff_ids, &blobs);
        if let (Some(l), Some(blob)) = (&new, &layer) {
            install(store, &l.diff_id, &blob.path)?;
        }
        let planned = next
            .layers
            .iter()
            .map(|l| PlannedLayer {
                member: String::new(),
                blob_digest: Some(l.digest.clone()),
                blob_size: Some(l.size),
                diff_id: l.diff_id.clone(),
            })
            .collect();
        let rec = store.commit_parts(
            &[],
            true,
            Parts {
                manifest_digest: &manifest_digest,
                manifest_bytes,
                config_digest: &config_digest,
                config_bytes,
                layers: planned,
            },
        )?;
        next.image_id = Some(rec.id.clone());
        *self = next;
        Ok((rec, pin))
    }
}

/// Unpacks the layer into the store (unless it is there already) and keeps
/// its blob, so the image can be saved and pushed.
fn install(store: &ImageStore, diff_id: &str, blob: &Path) -> Result<()> {
    if !store.has_layer(diff_id) {
        store.install_layer(diff_id, blob)?;
    }
    if store.blob_path(diff_id).is_none() {
        store.keep_layer_blob(diff_id, blob);
    }
    Ok(())
}
