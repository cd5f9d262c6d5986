//! The build cache: which image a step made, by a key over everything the
//! step's result depends on.
//!
//! The key chains: it covers the parent image's id (which covers the parent's
//! config and layers), the step's instruction, the build arguments visible
//! to it, the RUN network and, for COPY, a digest of the content copied. The
//! images themselves are ordinary store images kept untagged as build cache
//! (so gc keeps their layers); an entry whose image is gone is a miss.
//! The index is one small JSON file, replaced atomically.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::fsutil::{write_atomic, WriteOptions};

/// The most entries kept; past it the oldest (by insertion) go.
const MAX_ENTRIES: usize = 10_000;

/// The key of a step's result.
pub fn key(
    parent: &str,
    instruction: &str,
    args: &BTreeMap<String, String>,
    extra: &str,
) -> String {
    let mut h = Sha256::new();
    // Length-prefixed, so no two different inputs hash the same bytes.
    for part in [parent, instruction, extra] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.update((args.len() as u64).to_le_bytes());
    for (k, v) in args {
        for part in [k, v] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
    }
    hex::encode(h.finalize())
}

/// The persistent map from step keys to image ids.
pub struct Cache {
    path: PathBuf,
    /// key -> (sequence, image id); the sequence orders eviction.
    entries: Mutex<BTreeMap<String, (u64, String)>>,
}

impl Cache {
    /// Opens the cache index at `path` (an unreadable or missing one is an
    /// empty cache: losing the cache only costs time).
    pub fn open(path: PathBuf) -> Cache {
        let entries = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Cache {
            path,
            entries: Mutex::new(entries),
        }
    }

    /// The image recorded for `key`, if any.
    pub fn get(&self, key: &str) -> Option<String> {
        self.lock().get(key).map(|(_, id)| id.clone())
    }

    /// Records that `key` made `image_id` (an entry whose image is gone is
    /// only a miss: [`Cache::get`]'s caller checks). Best effort: a cache
    /// not written is only slower next time. Blocks (writes the index).
    pub fn put(&self, key: &str, image_id: &str) {
        let mut entries = self.lock();
        let seq = entries.values().map(|(s, _)| *s).max().unwrap_or(0) + 1;
        entries.insert(key.to_string(), (seq, image_id.to_string()));
        while entries.len() > MAX_ENTRIES {
            let oldest = entries
                .iter()
                .min_by_key(|(_, (s, _))| *s)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => entries.remove(&k),
                None => break,
            };
        }
        let written = serde_json::to_vec(&*entries)
            .map_err(std::io::Error::other)
            .and_then(|b| write_atomic(&self.path, &b, WriteOptions::default()));
        if let Err(e) = written {
            tracing::warn!("writing the build cache index {}: {e}", self.path.display());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (u64, String)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_when_any_input_does_and_parts_cannot_run_together() {
        let args = BTreeMap::new();
        let base = key("p", "RUN a", &args, "");
        assert_eq!(base, key("p", "RUN a", &args, ""));
        assert_ne!(base, key("q", "RUN a", &args, ""));
        assert_ne!(base, key("p", "RUN b", &args, ""));
        assert_ne!(base, key("p", "RUN a", &args, "x"));
        assert_ne!(key("pR", "UN a", &args, ""), base);
        let mut with = BTreeMap::new();
        with.insert("V".to_string(), "1".to_string());
        assert_ne!(base, key("p", "RUN a", &with, ""));
    }

    #[test]
    fn entries_survive_reopening_and_a_key_gets_its_latest_image() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.json");
        let c = Cache::open(path.clone());
        c.put("k1", "sha256:a");
        c.put("k2", "sha256:b");
        let c = Cache::open(path.clone());
        assert_eq!(c.get("k1").as_deref(), Some("sha256:a"));
        c.put("k1", "sha256:c");
        let c = Cache::open(path);
        assert_eq!(c.get("k1").as_deref(), Some("sha256:c"));
        assert_eq!(c.get("k2").as_deref(), Some("sha256:b"));
    }
}
