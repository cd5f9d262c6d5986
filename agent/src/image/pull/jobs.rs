//! Shared work: one job per layer blob and diff_id, one fetch per config
//! blob, however many pulls need them, and a global limit on downloads.

use std::sync::Arc;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use oci_client::{Client, Reference};
use tokio::sync::watch;

use super::capped::Capped;
use super::errors::oci_err;
use super::{locked, LayerProgress, LayerState, Puller};
use crate::image::archive::MAX_JSON_BYTES;
use crate::image::digest::sha256_of;
use crate::image::store::remove_any;
use crate::image::{ErrorKind, ImageError};

/// State of one shared layer job, watched by every pull that needs the layer.
#[derive(Clone, Default)]
pub(super) struct Job {
    /// Where the layer is.
    pub(super) state: LayerState,
    /// Blob bytes downloaded so far.
    pub(super) done: u64,
    /// Bytes an earlier attempt had downloaded.
    pub(super) resumed_from: u64,
    /// Set once, when the job ends.
    pub(super) outcome: Option<Result<(), Arc<ImageError>>>,
}

/// One blob's job lock, removed from the puller's map when the last job of
/// the blob lets go of it.
struct BlobLock<'a> {
    puller: &'a Puller,
    digest: String,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl std::ops::Deref for BlobLock<'_> {
    type Target = tokio::sync::Mutex<()>;

    fn deref(&self) -> &Self::Target {
        &self.lock
    }
}

impl Drop for BlobLock<'_> {
    fn drop(&mut self) {
        let mut locks = locked(&self.puller.blob_locks);
        // Ours and the map's: nobody else waits for it.
        if Arc::strong_count(&self.lock) == 2 {
            locks.remove(&self.digest);
        }
    }
}

/// A shared fetch of a small blob (an image config).
pub(super) type SmallFetch = Shared<BoxFuture<'static, Result<Arc<Vec<u8>>, Arc<ImageError>>>>;

impl Puller {
    /// The config blob: from the store if an earlier pull kept it, else
    /// fetched (once, however many pulls ask at the same time) and verified.
    pub(super) async fn fetch_config(
        &self,
        client: &Client,
        repo: &Reference,
        digest: &str,
    ) -> Result<Arc<Vec<u8>>, ImageError> {
        if let Some(data) = self.store.read_blob(digest) {
            return Ok(Arc::new(data));
        }
        let fut = {
            let mut configs = locked(&self.configs);
            configs
                .entry(digest.to_string())
                .or_insert_with(|| {
                    let (client, repo, digest) = (client.clone(), repo.clone(), digest.to_string());
                    async move {
                        // Whatever the manifest said, a registry may send more.
                        let mut data = Capped::new(MAX_JSON_BYTES);
                        let fetched = client.pull_blob(&repo, digest.as_str(), &mut data).await;
                        if data.overflowed() {
                            // More than the manifest said (it is checked
                            // against the cap before): not this content.
                            return Err(Arc::new(ImageError::corrupt(format!(
                                "config {digest}: the registry sent more than {MAX_JSON_BYTES} bytes"
                            ))));
                        }
                        fetched.map_err(|e| {
                            Arc::new(oci_err(&format!("fetching config {digest}"), e))
                        })?;
                        let data = data.into_inner();
                        // pull_blob verifies too; this keeps the guarantee ours.
                        if sha256_of(&data) != digest {
                            return Err(Arc::new(ImageError::corrupt(format!(
                                "config {digest}: content hashes to {}",
                                sha256_of(&data)
                            ))));
                        }
                        Ok(Arc::new(data))
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        let result = fut.await;
        locked(&self.configs).remove(digest);
        result.map_err(ImageError::Shared)
    }

    /// The job fetching and unpacking one layer: joins the running one for
    /// this blob and diff_id, or starts one. Keyed by both: a config may
    /// claim another diff_id for a blob, and such a pull must check the
    /// blob against its own claim, not take another pull's layer for it.
    pub(super) fn layer_job(
        self: &Arc<Self>,
        client: &Client,
        repo: &Reference,
        layer: &LayerProgress,
        diff_id: &str,
    ) -> watch::Receiver<Job> {
        let key = (layer.digest.clone(), diff_id.to_string());
        let mut jobs = locked(&self.jobs);
        if let Some(rx) = jobs.get(&key) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(Job::default());
        jobs.insert(key.clone(), rx.clone());
        let this = self.clone();
        let (client, repo, layer, diff_id) = (
            client.clone(),
            repo.clone(),
            layer.clone(),
            diff_id.to_string(),
        );
        // Detached: a client that goes away does not cancel work that other
        // pulls may share, and finished work is kept for the next pull.
        tokio::spawn(async move {
            let result = this.run_layer(&client, &repo, &layer, &diff_id, &tx).await;
            if let Err(e) = &result {
                tracing::warn!(layer = %layer.digest, "layer pull failed: {e}");
            }
            locked(&this.jobs).remove(&key);
            tx.send_modify(|j| j.outcome = Some(result.map_err(Arc::new)));
        });
        rx
    }

    /// The lock of the jobs of one blob; forgotten when no job holds it.
    fn blob_lock(&self, digest: &str) -> BlobLock<'_> {
        let lock = locked(&self.blob_locks)
            .entry(digest.to_string())
            .or_default()
            .clone();
        BlobLock {
            puller: self,
            digest: digest.to_string(),
            lock,
        }
    }

    /// Downloads (resuming), verifies and installs one layer.
    async fn run_layer(
        &self,
        client: &Client,
        repo: &Reference,
        layer: &LayerProgress,
        diff_id: &str,
        tx: &watch::Sender<Job>,
    ) -> Result<(), ImageError> {
        // Jobs of one blob (for different diff_ids) share its partial
        // download file: one at a time.
        let blob = self.blob_lock(&layer.digest);
        let _blob = blob.lock().await;
        let permit = self
            .slots
            .acquire()
            .await
            .map_err(|e| ImageError::io("download slots", std::io::Error::other(e)))?;
        // Another pull may have installed it while we queued.
        if self.store.has_layer(diff_id) {
            return Ok(());
        }
        let path = self.download(client, repo, layer, tx).await?;
        drop(permit);
        tx.send_modify(|j| j.state = LayerState::Extracting);
        let store = self.store.clone();
        let (diff_id, p) = (diff_id.to_string(), path.clone());
        let result = tokio::task::spawn_blocking(move || store.install_layer(&diff_id, &p))
            .await
            .map_err(|e| ImageError::io("unpack task", std::io::Error::other(e)))?;
        // Installed, the verified blob is kept for save and push; refused, it
        // has served its purpose. On a local failure (disk full...) it stays
        // in downloads/ so a retry need not download it.
        match &result {
            Ok(_) => {
                let store = self.store.clone();
                let digest = layer.digest.clone();
                let _ = tokio::task::spawn_blocking(move || store.keep_layer_blob(&digest, &path))
                    .await;
            }
            Err(e) if e.kind() == ErrorKind::Internal => {}
            Err(_) => {
                let _ = remove_any(&path);
            }
        }
        result.map(drop)
    }
}

/// Waits for the next change of a job (or takes its current state when
/// `first`), returning the layer index, the receiver and the state.
pub(super) async fn watch_next(
    i: usize,
    mut rx: watch::Receiver<Job>,
    first: bool,
) -> (usize, watch::Receiver<Job>, Job) {
    if !first && rx.changed().await.is_err() {
        // The job's sender is gone without an outcome: only a panic does that.
        let mut job = rx.borrow().clone();
        if job.outcome.is_none() {
            job.outcome = Some(Err(Arc::new(ImageError::io(
                "layer job",
                std::io::Error::other("the download task ended unexpectedly"),
            ))));
        }
        return (i, rx, job);
    }
    let job = rx.borrow_and_update().clone();
    (i, rx, job)
}
