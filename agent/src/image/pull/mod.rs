//! Pulling images from OCI distribution (v2) registries into the store.
//!
//! The protocol (auth challenges, manifests, ranged blob requests) is
//! `oci-client`'s; this module decides what to fetch and keeps the store
//! consistent:
//!
//! - every blob is hashed while it streams in; a mismatch deletes it and
//!   fails the pull with [`ImageError::Corrupt`], and the pull's other new
//!   layers are discarded too, so a corrupt image leaves nothing;
//! - a layer blob is written to `downloads/<hex>.partial` and unpacked from
//!   there once verified; each layer enters `layers/` as soon as it is
//!   complete, so a pull that breaks off keeps its finished layers, and the
//!   unfinished blob resumes with a range request;
//! - one download job per blob digest and diff_id, shared by every pull
//!   that needs it (concurrent pulls of one image fetch each blob once);
//! - a global limit on concurrent downloads.

mod capped;
mod client;
mod credentials;
mod download;
mod errors;
mod jobs;
mod login;
mod progress;
mod push;
mod resolve;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::stream::{FuturesUnordered, StreamExt};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::sync::{watch, Semaphore};

use self::client::Clients;
use self::credentials::CredentialStore;
use self::errors::oci_err;
use self::jobs::{watch_next, Job, SmallFetch};
use self::resolve::{resolve, Resolved};
use super::archive::MAX_JSON_BYTES;
use super::digest::sha256_hex;
use super::layout::PlannedLayer;
use super::reference;
use super::{ErrorKind, ImageError, ImageStore};

pub use self::credentials::Credentials;
pub use self::progress::{LayerProgress, LayerState, PullProgress, Pulled};
pub use self::push::PushProgress;

/// Layer downloads running at once, across all pulls.
const MAX_CONCURRENT_DOWNLOADS: usize = 4;

/// Pulls images; one per agent, shared by all requests.
pub struct Puller {
    store: Arc<ImageStore>,
    clients: Clients,
    credentials: CredentialStore,
    /// Layer jobs in progress, by blob digest and diff_id.
    jobs: Mutex<HashMap<(String, String), watch::Receiver<Job>>>,
    /// Serialises the jobs of one blob digest (see `jobs::BlobLock`).
    blob_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Config fetches in progress, by digest.
    configs: Mutex<HashMap<String, SmallFetch>>,
    slots: Arc<Semaphore>,
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A registry client authenticated for one pull.
struct Session {
    /// The normalised reference.
    norm: String,
    reference: Reference,
    client: Client,
    auth: RegistryAuth,
}

/// The image config of a resolved manifest.
struct Config {
    digest: String,
    bytes: Arc<Vec<u8>>,
    diff_ids: Vec<String>,
}

/// One layer of the pull: its progress and its diff id.
type Layer = (LayerProgress, String);

impl Puller {
    /// A puller for `store`. `insecure` lists registries (host[:port]) that
    /// are reached over plain HTTP; `auth_path` is where `login` stores
    /// credentials.
    pub fn new(store: Arc<ImageStore>, insecure: Vec<String>, auth_path: PathBuf) -> Arc<Self> {
        Arc::new(Puller {
            store,
            clients: Clients::new(insecure),
            credentials: CredentialStore::new(auth_path),
            jobs: Mutex::new(HashMap::new()),
            blob_locks: Mutex::new(HashMap::new()),
            configs: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_DOWNLOADS)),
        })
    }

    /// Pulls `reference`, publishing snapshots to `progress`.
    ///
    /// `creds` are used for this pull only; without them, stored credentials
    /// for the registry are used, else none.
    pub async fn pull(
        self: &Arc<Self>,
        reference: &str,
        creds: Option<Credentials>,
        progress: &watch::Sender<PullProgress>,
    ) -> Result<Pulled, ImageError> {
        let session = self.connect(reference, creds).await?;
        progress.send_modify(|p| p.reference = session.norm.clone());

        let resolved = resolve(&session.client, &session.reference, &session.auth).await?;
        progress.send_modify(|p| {
            p.manifest_digest = resolved.digest.clone();
            p.index_digest = resolved.index_digest.clone().unwrap_or_default();
        });
        let registry = session.reference.registry().to_string();
        let repository = session.reference.repository().to_string();
        let repo = Reference::with_digest(
            registry.clone(),
            repository.clone(),
            resolved.digest.clone(),
        );

        let config = self.config(&session.client, &repo, &resolved).await?;
        let mut layers = plan_layers(&resolved, &config)?;
        // The layer blobs too: jobs keep them before commit lists them.
        let blob_digests: Vec<String> = layers.iter().map(|(l, _)| l.digest.clone()).collect();
        let pins = self.store.pin(&config.diff_ids, &blob_digests);
        if let Err((e, installed)) = self
            .fetch_layers(&session.client, &repo, &mut layers, progress)
            .await
        {
            // Unpinned first, or discarding would keep them for ourselves.
            drop(pins);
            if e.kind() == ErrorKind::Corrupt {
                // Corrupt content poisons the image: keep nothing of it.
                self.store.discard_layers(&installed);
            }
            return Err(e);
        }
        let image = self
            .commit(session.norm.clone(), &resolved, config, &layers)
            .await?;
        drop(pins);
        Ok(Pulled {
            image,
            reference: session.norm,
            canonical: format!("{registry}/{repository}@{}", resolved.digest),
        })
    }

    /// Parses the reference, picks the credentials and authenticates.
    async fn connect(
        &self,
        reference: &str,
        creds: Option<Credentials>,
    ) -> Result<Session, ImageError> {
        let norm = reference::normalize(reference)?;
        let r: Reference = norm
            .parse()
            .map_err(|e| ImageError::InvalidReference(format!("{norm:?}: {e}")))?;
        let registry = r.registry().to_string();
        let creds = creds.or_else(|| self.credentials.get(&registry));
        let auth = match &creds {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        let client = self.clients.client(&registry)?;
        // Bearer-token registries need the token exchange first; for others
        // this only records the credentials in the client.
        client
            .auth(&r, &auth, oci_client::RegistryOperation::Pull)
            .await
            .map_err(|e| oci_err(&format!("authenticating to {registry}"), e))?;
        Ok(Session {
            norm,
            reference: r,
            client,
            auth,
        })
    }

    /// Fetches (or finds stored) and parses the manifest's image config.
    async fn config(
        &self,
        client: &Client,
        repo: &Reference,
        resolved: &Resolved,
    ) -> Result<Config, ImageError> {
        let desc = resolved.manifest.config();
        let digest = desc.digest().to_string();
        sha256_hex(&digest, "config")
            .map_err(|e| ImageError::bad_response(format!("manifest {}", resolved.digest), e))?;
        if desc.size() > MAX_JSON_BYTES {
            return Err(ImageError::Unsupported(format!(
                "config {digest} is {} bytes; metadata larger than {MAX_JSON_BYTES} bytes is not supported",
                desc.size()
            )));
        }
        let bytes = self.fetch_config(client, repo, &digest).await?;
        let config = super::layout::parse_config(&bytes, &digest)
            .map_err(|e| ImageError::bad_response(format!("config {digest}"), e))?;
        let diff_ids = config.rootfs().diff_ids().clone();
        Ok(Config {
            digest,
            bytes,
            diff_ids,
        })
    }

    /// Runs (or joins) a job for every layer not stored yet and follows them
    /// all to their end, publishing progress. On failure, returns the first
    /// error and the layers this pull's jobs installed.
    async fn fetch_layers(
        self: &Arc<Self>,
        client: &Client,
        repo: &Reference,
        layers: &mut [Layer],
        progress: &watch::Sender<PullProgress>,
    ) -> Result<(), (ImageError, Vec<String>)> {
        let mut pending = FuturesUnordered::new();
        for (i, (lp, diff_id)) in layers.iter_mut().enumerate() {
            if self.store.has_layer(diff_id) {
                lp.state = LayerState::AlreadyPresent;
                lp.done = 0;
                continue;
            }
            let rx = self.layer_job(client, repo, lp, diff_id);
            pending.push(watch_next(i, rx, true));
        }
        let snapshot = |layers: &[Layer]| {
            progress.send_modify(|p| p.layers = layers.iter().map(|(l, _)| l.clone()).collect());
        };
        snapshot(layers);

        // Follow every job to its end, even after one failed: a failed pull
        // must not race its own jobs when it cleans up.
        let mut first_err: Option<ImageError> = None;
        let mut installed = Vec::new();
        while let Some((i, rx, job)) = pending.next().await {
            let (lp, diff_id) = &mut layers[i];
            lp.state = job.state;
            lp.done = job.done;
            lp.resumed_from = job.resumed_from;
            match &job.outcome {
                Some(Ok(())) => {
                    lp.state = LayerState::Done;
                    lp.done = lp.total;
                    installed.push(diff_id.clone());
                }
                Some(Err(e)) => {
                    if first_err.is_none() {
                        first_err = Some(ImageError::Shared(e.clone()));
                    }
                }
                None => pending.push(watch_next(i, rx, false)),
            }
            snapshot(layers);
        }
        match first_err {
            Some(e) => Err((e, installed)),
            None => Ok(()),
        }
    }

    /// Records the image in the store under `norm`; every layer is installed.
    async fn commit(
        &self,
        norm: String,
        resolved: &Resolved,
        config: Config,
        layers: &[Layer],
    ) -> Result<super::ImageRecord, ImageError> {
        let store = self.store.clone();
        let plan: Vec<PlannedLayer> = layers
            .iter()
            .map(|(l, diff_id)| PlannedLayer {
                member: String::new(),
                blob_digest: Some(l.digest.clone()),
                blob_size: Some(l.total),
                diff_id: diff_id.clone(),
            })
            .collect();
        let (digest, manifest_bytes) = (resolved.digest.clone(), resolved.bytes.clone());
        let config_bytes = config.bytes.to_vec();
        tokio::task::spawn_blocking(move || {
            store.commit_pull(
                &norm,
                &digest,
                manifest_bytes,
                &config.digest,
                config_bytes,
                plan,
            )
        })
        .await
        .map_err(|e| ImageError::io("commit task", std::io::Error::other(e)))?
    }
}

/// The layers of the manifest with their diff ids from the config, checked
/// for what berth can pull.
fn plan_layers(resolved: &Resolved, config: &Config) -> Result<Vec<Layer>, ImageError> {
    let descs = resolved.manifest.layers();
    if config.diff_ids.len() != descs.len() {
        return Err(ImageError::bad_response_msg(format!(
            "manifest {} lists {} layers but its config has {} diff_ids",
            resolved.digest,
            descs.len(),
            config.diff_ids.len()
        )));
    }
    let mut layers = Vec::new();
    for (d, diff_id) in descs.iter().zip(&config.diff_ids) {
        let media = d.media_type().to_string();
        if media.contains("encrypted") {
            return Err(ImageError::Unsupported(format!(
                "layer {} is encrypted ({media})",
                d.digest()
            )));
        }
        let digest = d.digest().to_string();
        sha256_hex(&digest, "layer")
            .map_err(|e| ImageError::bad_response(format!("manifest {}", resolved.digest), e))?;
        layers.push((
            LayerProgress {
                digest,
                media_type: media,
                total: d.size(),
                ..Default::default()
            },
            diff_id.clone(),
        ));
    }
    Ok(layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    /// A manifest with layers of the given media types, and a config with
    /// `diff_ids` diff ids.
    fn parts(media: &[&str], diff_ids: usize) -> (Resolved, Config) {
        let layers: Vec<serde_json::Value> = media
            .iter()
            .map(|m| serde_json::json!({"mediaType": m, "digest": D, "size": 3}))
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D, "size": 2},
            "layers": layers,
        });
        let resolved = Resolved {
            digest: D.into(),
            bytes: Vec::new(),
            manifest: serde_json::from_value(manifest).unwrap(),
            index_digest: None,
        };
        let config = Config {
            digest: D.into(),
            bytes: Arc::new(Vec::new()),
            diff_ids: vec![D.to_string(); diff_ids],
        };
        (resolved, config)
    }

    #[test]
    fn layers_are_planned_with_their_diff_ids() {
        let gz = "application/vnd.oci.image.layer.v1.tar+gzip";
        let (r, c) = parts(&[gz, gz], 2);
        let layers = plan_layers(&r, &c).unwrap();
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[0].0.total, 3);
        assert_eq!(layers[0].0.state, LayerState::Waiting);
        assert_eq!(layers[1].1, D);
    }

    #[test]
    fn unusable_layer_lists_are_refused_with_their_kind() {
        let gz = "application/vnd.oci.image.layer.v1.tar+gzip";
        let (r, c) = parts(&[gz, gz], 1);
        assert_eq!(
            plan_layers(&r, &c).unwrap_err().kind(),
            ErrorKind::BadResponse
        );
        let (r, c) = parts(
            &["application/vnd.oci.image.layer.v1.tar+gzip+encrypted"],
            1,
        );
        assert_eq!(
            plan_layers(&r, &c).unwrap_err().kind(),
            ErrorKind::Unsupported
        );
    }
}
