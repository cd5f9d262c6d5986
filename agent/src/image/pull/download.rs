//! Resumable, verified layer blob downloads into `downloads/<hex>.partial`.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use futures_util::stream::StreamExt;
use oci_client::client::BlobResponse;
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;

use super::errors::oci_err;
use super::jobs::Job;
use super::{LayerProgress, LayerState, Puller};
use crate::image::digest::sha256_hex;
use crate::image::store::remove_any;
use crate::image::ImageError;

/// Progress is republished after this many new bytes (state changes always are).
const PROGRESS_STEP: u64 = 256 * 1024;

impl Puller {
    /// Streams a layer blob into `downloads/<hex>.partial`, continuing a
    /// previous partial download with a range request, hashing everything.
    /// Returns the verified file.
    pub(super) async fn download(
        &self,
        client: &Client,
        repo: &Reference,
        layer: &LayerProgress,
        tx: &watch::Sender<Job>,
    ) -> Result<PathBuf, ImageError> {
        let digest = &layer.digest;
        let hex =
            sha256_hex(digest, "layer").map_err(|e| ImageError::bad_response("the manifest", e))?;
        let path = self.store.downloads_dir().join(format!("{hex}.partial"));
        let total = layer.total;
        let p = path.clone();
        let (mut hasher, mut have) = tokio::task::spawn_blocking(move || hash_prefix(&p, total))
            .await
            .map_err(|e| ImageError::io("hash task", std::io::Error::other(e)))??;
        let mut resumed_from = have;
        tx.send_modify(|j| {
            j.state = LayerState::Downloading;
            j.done = have;
            j.resumed_from = resumed_from;
        });
        if have < total {
            let what = format!("downloading layer {digest}");
            let resp = client
                .pull_blob_stream_partial(repo, digest.as_str(), have, None)
                .await
                .map_err(|e| oci_err(&what, e))?;
            let mut stream = match resp {
                BlobResponse::Partial(s) => s.stream,
                BlobResponse::Full(s) => {
                    // The registry ignored the range: start over.
                    hasher = Sha256::new();
                    have = 0;
                    resumed_from = 0;
                    std::fs::File::create(&path)
                        .map_err(|e| ImageError::io(format!("truncating {}", path.display()), e))?;
                    s.stream
                }
            };
            let file = tokio::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .await
                .map_err(|e| ImageError::io(format!("opening {}", path.display()), e))?;
            let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
            let mut reported = have;
            let mut broke = None;
            while let Some(chunk) = stream.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        broke = Some(e);
                        break;
                    }
                };
                if have + chunk.len() as u64 > total {
                    drop(out);
                    let _ = remove_any(&path);
                    return Err(ImageError::corrupt(format!(
                        "layer {digest}: the registry sent more than the {total} bytes the manifest says"
                    )));
                }
                tokio::io::AsyncWriteExt::write_all(&mut out, &chunk)
                    .await
                    .map_err(|e| ImageError::io(format!("writing {}", path.display()), e))?;
                hasher.update(&chunk);
                have += chunk.len() as u64;
                if have - reported >= PROGRESS_STEP || have == total {
                    reported = have;
                    tx.send_modify(|j| {
                        j.done = have;
                        j.resumed_from = resumed_from;
                    });
                }
            }
            // Whatever arrived is kept (flushed) for the next attempt.
            tokio::io::AsyncWriteExt::flush(&mut out)
                .await
                .map_err(|e| ImageError::io(format!("writing {}", path.display()), e))?;
            out.into_inner()
                .sync_data()
                .await
                .map_err(|e| ImageError::io(format!("syncing {}", path.display()), e))?;
            // A stream error after the last byte is oci-client's own digest
            // check failing: ours below reports it precisely.
            if have < total {
                let how = if broke.is_some() {
                    "broke off"
                } else {
                    "ended"
                };
                return Err(ImageError::Unavailable {
                    context: format!("{what}: transfer {how} after {have} of {total} bytes"),
                    source: broke,
                });
            }
        }
        tx.send_modify(|j| {
            j.state = LayerState::Verifying;
            j.done = have;
        });
        let got = format!("sha256:{}", hex::encode(hasher.finalize()));
        if &got != digest {
            let _ = remove_any(&path);
            return Err(ImageError::corrupt(format!(
                "layer blob {digest} from {}: the content received hashes to {got}; refused",
                repo.registry()
            )));
        }
        Ok(path)
    }
}

/// Hashes what a previous attempt left in `path` (creating it if missing).
/// A file longer than the blob can only be garbage and is emptied.
fn hash_prefix(path: &Path, total: u64) -> Result<(Sha256, u64), ImageError> {
    let ctx = |e| ImageError::io(format!("reading {}", path.display()), e);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(ctx)?;
    let len = f.metadata().map_err(ctx)?.len();
    let mut hasher = Sha256::new();
    if len > total {
        f.set_len(0).map_err(ctx)?;
        return Ok((hasher, 0));
    }
    f.rewind().map_err(ctx)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n_total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(ctx)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        n_total += n as u64;
    }
    Ok((hasher, n_total))
}
