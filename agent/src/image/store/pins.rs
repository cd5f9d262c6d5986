//! Pins: what in-flight imports and pulls rely on, kept by gc.

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
}
