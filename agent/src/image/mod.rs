//! The image store: imports OCI image layouts and `docker save` archives,
//! pulls them from registries ([`pull`]; [`service`] adds the `pulled` event and the
//! auto-pull policy), verifies every blob, unpacks each layer once (in overlayfs form, refusing
//! anything that would write outside the layer) and keeps an index of images.
//!
//! On-disk layout under the store root:
//!
//! ```text
//! blobs/sha256/<hex>   manifests, configs and layer blobs (as the manifest
//!                      describes them, kept so images can be saved and pushed)
//! layers/<diffid-hex>/ unpacked layers, shared by all images that have them
//! images.json          the index, replaced atomically
//! staging/             in-progress imports and garbage being deleted
//! downloads/           partial layer blobs of pulls (kept so pulls resume; collected
//!                      at start when untouched for a day)
//! ```
mod archive;
pub(crate) mod digest;
mod error;
pub(crate) mod extract;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod history;
pub(crate) mod layout;
pub mod prune;
pub mod pull;
mod record;
pub mod reference;
pub mod save;
pub mod service;
pub(crate) mod store;

pub use error::{Detail, ErrorKind, ImageError};
pub use history::HistoryEntry;
pub use record::{ImageConfig, ImageRecord};
pub use store::ImageStore;
