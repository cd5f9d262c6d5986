//! Entry points for the fuzz targets (feature `fuzzing`, see `fuzz/`):
//! archive planning, layer extraction and references, with what their
//! checks need of the private types.

use std::io::Read;
use std::path::Path;

use super::archive::{clean_name, OuterArchive};
use super::digest::sha256_of;
use super::layout;
use super::ImageError;

/// One image as [`plan`] planned it.
#[derive(Debug)]
pub struct Planned {
    /// `sha256:<hex>` of the manifest.
    pub manifest_digest: String,
    /// The manifest as stored.
    pub manifest_bytes: Vec<u8>,
    /// `sha256:<hex>` of the config.
    pub config_digest: String,
    /// The config bytes.
    pub config_bytes: Vec<u8>,
    /// Whether the parsed config says linux.
    pub config_is_linux: bool,
    /// The config's `rootfs.diff_ids`.
    pub config_diff_ids: Vec<String>,
    /// Per layer: the archive member, and whether it opens.
    pub layers: Vec<(String, bool)>,
    /// Per layer: its diff id.
    pub diff_ids: Vec<String>,
}

/// Indexes the archive at `path` and plans its images, as an import does
/// before it unpacks anything.
pub fn plan(path: &Path, scratch: &Path) -> Result<Vec<Planned>, ImageError> {
    let ar = OuterArchive::open(path, scratch)?;
    let planned = layout::plan(&ar)?;
    Ok(planned
        .into_iter()
        .map(|p| Planned {
            config_is_linux: p.config.os() == &oci_spec::image::Os::Linux,
            config_diff_ids: p.config.rootfs().diff_ids().clone(),
            layers: p
                .layers
                .iter()
                .map(|l| (l.member.clone(), ar.reader(&l.member).is_ok()))
                .collect(),
            diff_ids: p.layers.iter().map(|l| l.diff_id.clone()).collect(),
            manifest_digest: p.manifest_digest,
            manifest_bytes: p.manifest_bytes,
            config_digest: p.config_digest,
            config_bytes: p.config_bytes,
        })
        .collect())
}

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    sha256_of(data)
}

/// The archive member name `name` cleans to (as the planner looks it up).
pub fn clean(name: &str) -> Result<String, String> {
    clean_name(name)
}

/// Unpacks one layer tar into the empty directory `dest`.
pub fn unpack(reader: &mut dyn Read, dest: &Path) -> Result<u64, ImageError> {
    super::extract::unpack(reader, dest, "fuzz")
}

/// The repository part of a normalised reference.
pub fn repository(normalized: &str) -> &str {
    super::reference::repository(normalized)
}
