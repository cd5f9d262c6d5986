//! What a pull reports while it runs, and what it returns.

use crate::image::ImageRecord;

/// Where one layer of a pull is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LayerState {
    /// Queued behind other downloads.
    #[default]
    Waiting,
    /// Bytes are arriving.
    Downloading,
    /// All bytes in; checking the digest.
    Verifying,
    /// Unpacking into the store.
    Extracting,
    /// Stored by this pull.
    Done,
    /// Was already stored (or, pushing, the registry had it); nothing
    /// transferred.
    AlreadyPresent,
    /// Pushing: bytes are leaving for the registry.
    Uploading,
}

/// Progress of one layer.
#[derive(Clone, Debug, Default)]
pub struct LayerProgress {
    /// Blob digest.
    pub digest: String,
    /// Blob media type.
    pub media_type: String,
    /// Where it is.
    pub state: LayerState,
    /// Blob bytes downloaded so far (including resumed ones).
    pub done: u64,
    /// Blob size from the manifest.
    pub total: u64,
    /// Bytes an earlier interrupted download had and that were not fetched again.
    pub resumed_from: u64,
}

/// A snapshot of a pull.
#[derive(Clone, Debug, Default)]
pub struct PullProgress {
    /// Normalised reference.
    pub reference: String,
    /// Resolved image manifest digest, once known.
    pub manifest_digest: String,
    /// Digest of the index the reference named, if any.
    pub index_digest: String,
    /// Layers, base first, once the manifest is known.
    pub layers: Vec<LayerProgress>,
}

/// A finished pull.
#[derive(Debug)]
pub struct Pulled {
    /// The stored image.
    pub image: ImageRecord,
    /// The normalised reference it is stored under.
    pub reference: String,
    /// `repository@manifest-digest`: exactly what was pulled.
    pub canonical: String,
}
