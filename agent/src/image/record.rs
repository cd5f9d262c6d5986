//! The per-image record kept in the index.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One imported image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `sha256:<hex>` digest of the config blob; the image id.
    pub id: String,
    /// Normalised references naming this image (may be empty: a dangling
    /// image whose names moved to newer imports).
    pub references: Vec<String>,
    /// `sha256:<hex>` of the manifest (synthesised for `docker save` archives
    /// of the legacy format, which carry none).
    pub manifest_digest: String,
    /// Sum of the sizes of the regular files in the unpacked layers.
    pub size_bytes: u64,
    /// Creation time from the config (RFC 3339), if it has one.
    pub created: Option<String>,
    /// When the image was last imported, in nanoseconds since the Unix epoch
    /// (u64 lasts until the year 2554). Re-importing refreshes it.
    pub imported_at_unix_nanos: u64,
    /// Operating system from the config (always "linux").
    pub os: String,
    /// CPU architecture from the config (GOARCH names: "amd64", "arm64", ...).
    pub architecture: String,
    /// The runtime defaults from the config.
    pub config: ImageConfig,
    /// Diff ids (`sha256:<hex>`) of the layers, base first.
    pub layers: Vec<String>,
    /// Made by a build step: while it has no name it is build cache,
    /// hidden from listings (see [`ImageRecord::listed`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub build_cache: bool,
}

impl ImageRecord {
    /// Whether listings show the image: not while it is an unnamed build
    /// step's result (build cache). A built image whose tag moved to a
    /// rebuild goes back to being cache rather than a dangling `<none>`.
    pub fn listed(&self) -> bool {
        !(self.build_cache && self.references.is_empty())
    }
}

/// Runtime defaults from the image config; empty when the image sets none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, as `KEY=value` strings.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: String,
    /// `User` (`name`, `uid`, `uid:gid`, ...).
    pub user: String,
    /// `StopSignal` (e.g. "SIGTERM").
    pub stop_signal: String,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
    /// `ExposedPorts` keys ("80/tcp"), sorted, at most [`EXPOSED_MAX`].
    /// Images imported before berth kept them have none.
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    /// `Volumes` keys (container paths), sorted, at most [`VOLUMES_MAX`].
    #[serde(default)]
    pub volumes: Vec<String>,
}

/// The most exposed ports kept of an image's config.
pub const EXPOSED_MAX: usize = 4096;
/// The most volumes kept of an image's config (a container has at most 64
/// mounts in all).
pub const VOLUMES_MAX: usize = 64;

/// At most `max` of `items`, sorted and without repeats; an image's config
/// is the image author's, so what berth keeps of it is bounded.
fn bounded(items: Option<&Vec<String>>, max: usize) -> Vec<String> {
    let mut v: Vec<String> = items
        .into_iter()
        .flatten()
        .filter(|s| s.len() <= 4096)
        .cloned()
        .collect();
    v.sort();
    v.dedup();
    v.truncate(max);
    v
}

impl ImageConfig {
    /// Extracts the runtime defaults from a parsed OCI image configuration.
    pub(crate) fn from_oci(c: &oci_spec::image::ImageConfiguration) -> Self {
        let Some(c) = c.config() else {
            return Self::default();
        };
        Self {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone().unwrap_or_default(),
            user: c.user().clone().unwrap_or_default(),
            stop_signal: c.stop_signal().clone().unwrap_or_default(),
            labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
            exposed_ports: bounded(c.exposed_ports().as_ref(), EXPOSED_MAX),
            volumes: bounded(c.volumes().as_ref(), VOLUMES_MAX),
        }
    }
}
