//! Pins: what in-flight imports and pulls rely on, kept by gc.

use std::sync::Arc;

use super::{hex_of, ImageStore};

/// Unpins an import's (or pull's) layers and blobs when it ends, however it ends.
pub(crate) struct Pins<'a> {
    pub(super) store: &'a ImageStore,
    /// Pinned layer hexes.
    pub(super) layers: Vec<String>,
    /// Pinned blob hexes.
    pub(super) blobs: Vec<String>,
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

impl ImageStore {
    /// Pins layers (diff ids) and blobs (`sha256:<hex>` digests) so gc
    /// keeps them until the guard drops. A pull pins its manifest's layer
    /// blobs: its jobs keep them in blobs/ before the image record that
    /// lists them is written, and gc must not take them in between.
    pub(crate) fn pin(&self, diff_ids: &[String], blob_digests: &[String]) -> Pins<'_> {
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
        for d in blob_digests {
            let hex = hex_of(d).to_string();
            *st.pinned_blobs.entry(hex.clone()).or_default() += 1;
            pins.blobs.push(hex);
        }
        pins
    }
}

/// Keeps an image from being pruned while it lives: a build holds one for
/// each step image it stands on or will copy from, so an `image prune`
/// meanwhile cannot take them (they are untagged build cache).
pub struct ImagePin {
    store: Arc<ImageStore>,
    id: String,
}

impl ImageStore {
    /// Pins image `id` until the guard drops.
    pub fn pin_image(self: &Arc<Self>, id: &str) -> ImagePin {
        *self.lock().pinned_images.entry(id.to_string()).or_default() += 1;
        ImagePin {
            store: self.clone(),
            id: id.to_string(),
        }
    }
}

impl Drop for ImagePin {
    fn drop(&mut self) {
        let st = &mut *self.store.lock();
        if let Some(n) = st.pinned_images.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                st.pinned_images.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// A layer blob a pull keeps before its image is recorded survives gc
    /// while the pull runs, and goes once the pull lets go of it unrecorded.
    #[test]
    fn pinned_blobs_survive_gc_until_unpinned() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&dir.path().join("store")).unwrap();
        let digest = format!("sha256:{}", "a".repeat(64));
        let pins = store.pin(&[], std::slice::from_ref(&digest));
        let download = dir.path().join("download");
        std::fs::write(&download, b"layer").unwrap();
        store.keep_layer_blob(&digest, &download);
        let kept = store.blob_path(&digest).expect("blob kept");
        store.gc(&HashSet::new()).unwrap();
        assert!(kept.exists(), "gc deleted a pinned blob");
        drop(pins);
        store.gc(&HashSet::new()).unwrap();
        assert!(!kept.exists(), "an unpinned, unlisted blob was kept");
    }
}
