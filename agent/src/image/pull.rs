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
//! - one download job per blob digest, shared by every pull that needs it
//!   (concurrent pulls of one image fetch each blob once);
//! - a global limit on concurrent downloads.

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::stream::{FuturesUnordered, StreamExt};
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_spec::image::{ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::{watch, Semaphore};

use super::archive::MAX_JSON_BYTES;
use super::digest::{sha256_hex, sha256_of};
use super::layout::{host_arch, PlannedLayer};
use super::reference;
use super::store::remove_any;
use super::{ImageError, ImageRecord, ImageStore};

/// Manifest media types we ask for, in order of preference.
const ACCEPT: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Nested indexes deeper than this are refused as hostile.
const MAX_INDEX_DEPTH: usize = 4;
/// Layer downloads running at once, across all pulls.
const MAX_CONCURRENT_DOWNLOADS: usize = 4;
/// Progress is republished after this many new bytes (state changes always are).
const PROGRESS_STEP: u64 = 256 * 1024;
/// The registry used when a reference names none (and by `login` without one).
const DOCKER_HUB: &str = "docker.io";

/// Registry credentials. `Debug` never shows the password.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, <redacted>)", self.username)
    }
}

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
    /// Was already stored; nothing downloaded.
    AlreadyPresent,
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

/// State of one shared layer job, watched by every pull that needs the layer.
#[derive(Clone, Default)]
struct Job {
    state: LayerState,
    done: u64,
    resumed_from: u64,
    /// Set once, when the job ends.
    outcome: Option<Result<(), Arc<ImageError>>>,
}

/// A shared fetch of a small blob (an image config).
type SmallFetch = Shared<BoxFuture<'static, Result<Arc<Vec<u8>>, Arc<ImageError>>>>;

/// The stored-credentials file.
#[derive(Default, Serialize, Deserialize)]
struct AuthFile {
    /// Registry (host[:port]) -> credentials.
    registries: HashMap<String, Credentials>,
}

/// Pulls images; one per agent, shared by all requests.
pub struct Puller {
    store: Arc<ImageStore>,
    insecure: Vec<String>,
    auth_path: PathBuf,
    /// Serialises read-modify-write of the credentials file.
    auth_lock: Mutex<()>,
    /// Layer jobs in progress, by blob digest.
    jobs: Mutex<HashMap<String, watch::Receiver<Job>>>,
    /// Config fetches in progress, by digest.
    configs: Mutex<HashMap<String, SmallFetch>>,
    slots: Arc<Semaphore>,
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Rebuilds an error for another waiter of a shared job (io::Error is not Clone).
fn dup(e: &ImageError) -> ImageError {
    match e {
        ImageError::NotFound(m) => ImageError::NotFound(m.clone()),
        ImageError::Ambiguous(m) => ImageError::Ambiguous(m.clone()),
        ImageError::InvalidReference(m) => ImageError::InvalidReference(m.clone()),
        ImageError::InvalidArchive(m) => ImageError::InvalidArchive(m.clone()),
        ImageError::Unauthorized(m) => ImageError::Unauthorized(m.clone()),
        ImageError::Unavailable(m) => ImageError::Unavailable(m.clone()),
        ImageError::Registry(m) => ImageError::Registry(m.clone()),
        ImageError::Corrupt(m) => ImageError::Corrupt(m.clone()),
        ImageError::Unsupported(m) => ImageError::Unsupported(m.clone()),
        ImageError::NoSpace(m) => ImageError::NoSpace(m.clone()),
        ImageError::Io { context, source } => ImageError::io(
            context.clone(),
            std::io::Error::new(source.kind(), source.to_string()),
        ),
    }
}

/// Maps a registry client error to ours, naming what we were doing.
fn oci_err(what: &str, e: OciDistributionError) -> ImageError {
    let msg = format!("{what}: {e}");
    match &e {
        OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::UnauthorizedError { .. } => ImageError::Unauthorized(msg),
        OciDistributionError::ImageManifestNotFoundError(_) => ImageError::NotFound(msg),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|x| &x.code).collect();
            if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                ImageError::Unauthorized(msg)
            } else if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                )
            }) {
                ImageError::NotFound(msg)
            } else {
                ImageError::Registry(msg)
            }
        }
        OciDistributionError::ServerError { code, .. } => match code {
            401 | 403 => ImageError::Unauthorized(msg),
            404 => ImageError::NotFound(msg),
            500..=599 => ImageError::Unavailable(msg),
            _ => ImageError::Registry(msg),
        },
        OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => {
            ImageError::Unavailable(msg)
        }
        OciDistributionError::DigestError(_) => ImageError::Corrupt(msg),
        _ => ImageError::Registry(msg),
    }
}

/// True for registries on the loopback interface, which are reached over
/// plain HTTP without being listed (as Docker does for 127.0.0.0/8): traffic
/// that never leaves the host gains nothing from TLS.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => registry.split(':').next().unwrap_or(""),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The registry (host[:port]) a login names; empty and Docker Hub's aliases
/// mean Docker Hub.
fn login_registry(registry: &str) -> Result<String, ImageError> {
    let r = registry
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let r = match r {
        "" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        r => r,
    };
    // Validate it the way references are validated: as the domain of one.
    let probe = format!("{r}/x");
    let norm = reference::normalize(&probe)?;
    if !norm.starts_with(&format!("{r}/")) {
        return Err(ImageError::InvalidReference(format!(
            "{registry:?} is not a registry host[:port]"
        )));
    }
    Ok(r.to_string())
}

impl Puller {
    /// A puller for `store`. `insecure` lists registries (host[:port]) that
    /// are reached over plain HTTP; `auth_path` is where `login` stores
    /// credentials.
    pub fn new(store: Arc<ImageStore>, insecure: Vec<String>, auth_path: PathBuf) -> Arc<Self> {
        // reqwest is built without a default TLS provider (see Cargo.toml);
        // this fails only if one is installed already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Arc::new(Puller {
            store,
            insecure,
            auth_path,
            auth_lock: Mutex::new(()),
            jobs: Mutex::new(HashMap::new()),
            configs: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_DOWNLOADS)),
        })
    }

    /// True if `registry` is reached over plain HTTP.
    fn plain_http(&self, registry: &str) -> bool {
        is_loopback(registry) || self.insecure.iter().any(|i| i == registry)
    }

    /// A registry client for one registry and one set of credentials (the
    /// client caches auth per registry, so clients are never shared across
    /// credentials).
    fn client(&self, registry: &str) -> Result<Client, ImageError> {
        let config = ClientConfig {
            protocol: if self.plain_http(registry) {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(Duration::from_secs(30)),
            // A stalled transfer fails (and can be resumed) instead of hanging.
            read_timeout: Some(Duration::from_secs(120)),
            ..Default::default()
        };
        Client::try_from(config)
            .map_err(|e| ImageError::io("creating the registry client", std::io::Error::other(e)))
    }

    /// Credentials stored by [`login`](Self::login) for `registry`.
    fn stored(&self, registry: &str) -> Option<Credentials> {
        let _g = locked(&self.auth_lock);
        self.read_auth().ok()?.registries.remove(registry)
    }

    fn read_auth(&self) -> Result<AuthFile, ImageError> {
        match std::fs::read(&self.auth_path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| {
                ImageError::io(
                    format!("parsing {}", self.auth_path.display()),
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AuthFile::default()),
            Err(e) => Err(ImageError::io(
                format!("reading {}", self.auth_path.display()),
                e,
            )),
        }
    }

    /// Replaces the credentials file atomically; created 0600 from the start
    /// so the secrets are never readable by others, not even briefly.
    fn write_auth(&self, auth: &AuthFile) -> Result<(), ImageError> {
        use std::os::unix::fs::OpenOptionsExt;
        let ctx = |what: &str| format!("{what} {}", self.auth_path.display());
        let data = serde_json::to_vec_pretty(auth)
            .map_err(|e| ImageError::io(ctx("serialising"), e.into()))?;
        let tmp = self.auth_path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| ImageError::io(ctx("creating"), e))?;
        f.write_all(&data)
            .and_then(|()| f.sync_all())
            .map_err(|e| ImageError::io(ctx("writing"), e))?;
        std::fs::rename(&tmp, &self.auth_path).map_err(|e| ImageError::io(ctx("replacing"), e))
    }

    /// Checks `creds` against `registry` and stores them. Returns the
    /// normalised registry name.
    pub async fn login(&self, registry: &str, creds: Credentials) -> Result<String, ImageError> {
        let registry = login_registry(registry)?;
        if creds.username.is_empty() {
            return Err(ImageError::InvalidReference(
                "a user name is required".to_string(),
            ));
        }
        let client = self.client(&registry)?;
        // Any repository will do: a token server checks the credentials
        // before it looks at the scope.
        let probe = Reference::with_tag(
            registry.clone(),
            "library/berth-login-check".to_string(),
            "latest".to_string(),
        );
        let auth = RegistryAuth::Basic(creds.username.clone(), creds.password.clone());
        let token = client
            .auth(&probe, &auth, oci_client::RegistryOperation::Pull)
            .await
            .map_err(|e| oci_err(&format!("logging in to {registry}"), e))?;
        if token.is_none() {
            // Basic auth (or none): oci-client does not send the credentials
            // during auth(), so make one authenticated request. Only a 401
            // means "refused"; registries without a catalog answer otherwise.
            match client.catalog(&probe, &auth, Some(1), None).await {
                Ok(_) => {}
                Err(e @ OciDistributionError::UnauthorizedError { .. })
                | Err(e @ OciDistributionError::AuthenticationFailure(_)) => {
                    return Err(oci_err(&format!("logging in to {registry}"), e))
                }
                Err(e) => match oci_err("", e) {
                    ImageError::Unauthorized(m) => {
                        return Err(ImageError::Unauthorized(format!(
                            "logging in to {registry}{m}"
                        )))
                    }
                    ImageError::Unavailable(m) => {
                        return Err(ImageError::Unavailable(format!(
                            "logging in to {registry}{m}"
                        )))
                    }
                    _ => {}
                },
            }
        }
        let _g = locked(&self.auth_lock);
        let mut file = self.read_auth()?;
        file.registries.insert(registry.clone(), creds);
        self.write_auth(&file)?;
        Ok(registry)
    }

    /// Forgets the credentials of `registry`; NotFound if there are none.
    pub fn logout(&self, registry: &str) -> Result<String, ImageError> {
        let registry = login_registry(registry)?;
        let _g = locked(&self.auth_lock);
        let mut file = self.read_auth()?;
        if file.registries.remove(&registry).is_none() {
            return Err(ImageError::NotFound(format!(
                "no credentials stored for {registry}"
            )));
        }
        self.write_auth(&file)?;
        Ok(registry)
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
        let norm = reference::normalize(reference)?;
        let r: Reference = norm
            .parse()
            .map_err(|e| ImageError::InvalidReference(format!("{norm:?}: {e}")))?;
        let registry = r.registry().to_string();
        let creds = creds.or_else(|| self.stored(&registry));
        let auth = match &creds {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        let client = self.client(&registry)?;
        // Bearer-token registries need the token exchange first; for others
        // this only records the credentials in the client.
        client
            .auth(&r, &auth, oci_client::RegistryOperation::Pull)
            .await
            .map_err(|e| oci_err(&format!("authenticating to {registry}"), e))?;
        progress.send_modify(|p| p.reference = norm.clone());

        let resolved = resolve(&client, &r, &auth).await?;
        progress.send_modify(|p| {
            p.manifest_digest = resolved.digest.clone();
            p.index_digest = resolved.index_digest.clone().unwrap_or_default();
        });
        let repo = Reference::with_digest(
            registry.clone(),
            r.repository().to_string(),
            resolved.digest.clone(),
        );
        let config_desc = resolved.manifest.config();
        let config_digest = config_desc.digest().to_string();
        sha256_hex(&config_digest, "config").map_err(|e| ImageError::Registry(e.to_string()))?;
        if config_desc.size() > MAX_JSON_BYTES {
            return Err(ImageError::Unsupported(format!(
                "config {config_digest} is {} bytes; metadata larger than {MAX_JSON_BYTES} bytes is not supported",
                config_desc.size()
            )));
        }
        let config_bytes = self.fetch_config(&client, &repo, &config_digest).await?;
        let config = super::layout::parse_config(&config_bytes, &config_digest)
            .map_err(|e| ImageError::Registry(e.to_string()))?;
        let diff_ids = config.rootfs().diff_ids().clone();
        let descs = resolved.manifest.layers();
        if diff_ids.len() != descs.len() {
            return Err(ImageError::Registry(format!(
                "manifest {} lists {} layers but its config has {} diff_ids",
                resolved.digest,
                descs.len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (d, diff_id) in descs.iter().zip(&diff_ids) {
            let media = d.media_type().to_string();
            if media.contains("encrypted") {
                return Err(ImageError::Unsupported(format!(
                    "layer {} is encrypted ({media})",
                    d.digest()
                )));
            }
            let digest = d.digest().to_string();
            sha256_hex(&digest, "layer").map_err(|e| ImageError::Registry(e.to_string()))?;
            let size = d.size();
            layers.push((
                LayerProgress {
                    digest,
                    media_type: media,
                    total: size,
                    ..Default::default()
                },
                diff_id.clone(),
            ));
        }

        let pins = self.store.pin_layers(&diff_ids);
        let mut pending = FuturesUnordered::new();
        for (i, (lp, diff_id)) in layers.iter_mut().enumerate() {
            if self.store.has_layer(diff_id) {
                lp.state = LayerState::AlreadyPresent;
                lp.done = 0;
                continue;
            }
            let rx = self.layer_job(&client, &repo, lp, diff_id);
            pending.push(watch_next(i, rx, true));
        }
        let snapshot = |layers: &[(LayerProgress, String)]| {
            progress.send_modify(|p| p.layers = layers.iter().map(|(l, _)| l.clone()).collect());
        };
        snapshot(&layers);

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
                        first_err = Some(dup(e));
                    }
                }
                None => pending.push(watch_next(i, rx, false)),
            }
            snapshot(&layers);
        }
        if let Some(e) = first_err {
            drop(pins);
            if matches!(e, ImageError::Corrupt(_)) {
                // Corrupt content poisons the image: keep nothing of it.
                self.store.discard_layers(&installed);
            }
            return Err(e);
        }

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
        let (norm2, digest, manifest_bytes) = (
            norm.clone(),
            resolved.digest.clone(),
            resolved.bytes.clone(),
        );
        let config_bytes = config_bytes.to_vec();
        let image = tokio::task::spawn_blocking(move || {
            store.commit_pull(
                &norm2,
                &digest,
                manifest_bytes,
                &config_digest,
                config_bytes,
                plan,
            )
        })
        .await
        .map_err(|e| ImageError::io("commit task", std::io::Error::other(e)))??;
        drop(pins);
        Ok(Pulled {
            image,
            reference: norm,
            canonical: format!("{}/{}@{}", registry, r.repository(), resolved.digest),
        })
    }

    /// The config blob: from the store if an earlier pull kept it, else
    /// fetched (once, however many pulls ask at the same time) and verified.
    async fn fetch_config(
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
                        client
                            .pull_blob(&repo, digest.as_str(), &mut data)
                            .await
                            .map_err(|e| {
                                Arc::new(oci_err(&format!("fetching config {digest}"), e))
                            })?;
                        let data = data.into_inner();
                        // pull_blob verifies too; this keeps the guarantee ours.
                        if sha256_of(&data) != digest {
                            return Err(Arc::new(ImageError::Corrupt(format!(
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
        result.map_err(|e| dup(&e))
    }

    /// The job fetching and unpacking one layer: joins the running one for
    /// this blob, or starts one.
    fn layer_job(
        self: &Arc<Self>,
        client: &Client,
        repo: &Reference,
        layer: &LayerProgress,
        diff_id: &str,
    ) -> watch::Receiver<Job> {
        let mut jobs = locked(&self.jobs);
        if let Some(rx) = jobs.get(&layer.digest) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(Job::default());
        jobs.insert(layer.digest.clone(), rx.clone());
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
            locked(&this.jobs).remove(&layer.digest);
            tx.send_modify(|j| j.outcome = Some(result.map_err(Arc::new)));
        });
        rx
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
        // Installed or refused, the blob has served its purpose. On a local
        // failure (disk full...) it is kept so a retry need not download it.
        if !matches!(result, Err(ImageError::Io { .. })) {
            let _ = remove_any(&path);
        }
        result.map(drop)
    }

    /// Streams a layer blob into `downloads/<hex>.partial`, continuing a
    /// previous partial download with a range request, hashing everything.
    /// Returns the verified file.
    async fn download(
        &self,
        client: &Client,
        repo: &Reference,
        layer: &LayerProgress,
        tx: &watch::Sender<Job>,
    ) -> Result<PathBuf, ImageError> {
        let digest = &layer.digest;
        let hex = sha256_hex(digest, "layer").map_err(|e| ImageError::Registry(e.to_string()))?;
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
                    return Err(ImageError::Corrupt(format!(
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
                return Err(ImageError::Unavailable(match broke {
                    Some(e) => {
                        format!("{what}: transfer broke off after {have} of {total} bytes: {e}")
                    }
                    None => format!("{what}: transfer ended after {have} of {total} bytes"),
                }));
            }
        }
        tx.send_modify(|j| {
            j.state = LayerState::Verifying;
            j.done = have;
        });
        let got = format!("sha256:{}", hex::encode(hasher.finalize()));
        if &got != digest {
            let _ = remove_any(&path);
            return Err(ImageError::Corrupt(format!(
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

/// Waits for the next change of a job (or takes its current state when
/// `first`), returning the layer index, the receiver and the state.
async fn watch_next(
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

/// A resolved image manifest.
struct Resolved {
    digest: String,
    bytes: Vec<u8>,
    manifest: ImageManifest,
    index_digest: Option<String>,
}

/// Fetches the manifest `r` names, descending through indexes to this
/// platform's image.
async fn resolve(
    client: &Client,
    r: &Reference,
    auth: &RegistryAuth,
) -> Result<Resolved, ImageError> {
    let mut current = r.clone();
    let mut index_digest = None;
    for _ in 0..=MAX_INDEX_DEPTH {
        let (bytes, _) = client
            .pull_manifest_raw(&current, auth, ACCEPT)
            .await
            .map_err(|e| oci_err(&format!("fetching manifest {}", current.whole()), e))?;
        let bytes = bytes.to_vec();
        let digest = sha256_of(&bytes);
        if let Some(want) = current.digest() {
            if want != digest {
                return Err(ImageError::Corrupt(format!(
                    "manifest {want}: the content received hashes to {digest}"
                )));
            }
        }
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::Registry(format!("manifest {digest}: bad JSON: {e}")))?;
        if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1) {
            return Err(ImageError::Unsupported(format!(
                "{}: Docker schema 1 manifests are not supported",
                current.whole()
            )));
        }
        let media = v.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
        let is_index = media == OCI_INDEX
            || media == DOCKER_LIST
            || (media.is_empty() && v.get("manifests").is_some());
        if is_index {
            let index: ImageIndex = serde_json::from_slice(&bytes)
                .map_err(|e| ImageError::Registry(format!("index {digest}: {e}")))?;
            let child = pick_platform(&index).ok_or_else(|| {
                let found: Vec<String> = index
                    .manifests()
                    .iter()
                    .filter_map(|m| m.platform().as_ref())
                    .map(|p| format!("{}/{}", p.os(), p.architecture()))
                    .collect();
                ImageError::NotFound(format!(
                    "{}: no image for linux/{} in the index (it has: {})",
                    r.whole(),
                    host_arch(),
                    found.join(", ")
                ))
            })?;
            // The outermost index is the one the reference named.
            index_digest.get_or_insert(digest);
            current =
                Reference::with_digest(r.registry().to_string(), r.repository().to_string(), child);
            continue;
        }
        if !(media.is_empty() || media == OCI_MANIFEST || media == DOCKER_MANIFEST) {
            return Err(ImageError::Unsupported(format!(
                "{}: manifest type {media:?} is not an image",
                current.whole()
            )));
        }
        let manifest: ImageManifest = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::Registry(format!("manifest {digest}: {e}")))?;
        return Ok(Resolved {
            digest,
            bytes,
            manifest,
            index_digest,
        });
    }
    Err(ImageError::Registry(format!(
        "{}: image indexes nested deeper than {MAX_INDEX_DEPTH} levels",
        r.whole()
    )))
}

/// The variant this machine runs, as image platforms spell it.
fn host_variant() -> Option<&'static str> {
    match host_arch() {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        _ => None,
    }
}

/// The digest of the index entry for linux/<host arch>: an exact variant
/// match first, then an entry without a variant, then any variant.
fn pick_platform(index: &ImageIndex) -> Option<String> {
    let candidates: Vec<_> = index
        .manifests()
        .iter()
        .filter(|m| {
            m.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == "linux" && p.architecture().to_string() == host_arch()
            })
        })
        .collect();
    let variant = |m: &&oci_spec::image::Descriptor| {
        m.platform()
            .as_ref()
            .and_then(|p| p.variant().clone())
            .filter(|v| !v.is_empty())
    };
    candidates
        .iter()
        .find(|m| host_variant().is_some() && variant(m).as_deref() == host_variant())
        .or_else(|| candidates.iter().find(|m| variant(m).is_none()))
        .or_else(|| candidates.first())
        .map(|m| m.digest().to_string())
}

/// An in-memory sink that refuses to grow past `max` bytes.
struct Capped {
    buf: Vec<u8>,
    max: u64,
}

impl Capped {
    fn new(max: u64) -> Self {
        Capped {
            buf: Vec::new(),
            max,
        }
    }

    fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if (self.buf.len() + data.len()) as u64 > self.max {
            let max = self.max;
            return std::task::Poll::Ready(Err(std::io::Error::other(format!(
                "more than {max} bytes of metadata"
            ))));
        }
        self.buf.extend_from_slice(data);
        std::task::Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn metadata_is_refused_once_it_grows_past_the_cap() {
        use tokio::io::AsyncWriteExt;
        let mut c = Capped::new(10);
        c.write_all(b"0123456789").await.unwrap();
        assert!(c.write_all(b"x").await.is_err(), "an 11th byte");
        assert_eq!(c.into_inner(), b"0123456789");
    }

    #[test]
    fn loopback_registries_are_plain_http() {
        for r in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "docker.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[fe80::1]:5000",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }

    #[test]
    fn login_registry_names() {
        assert_eq!(login_registry("").unwrap(), "docker.io");
        assert_eq!(login_registry("index.docker.io").unwrap(), "docker.io");
        assert_eq!(
            login_registry("https://reg.example.com:5000/").unwrap(),
            "reg.example.com:5000"
        );
        assert_eq!(login_registry("127.0.0.1:5000").unwrap(), "127.0.0.1:5000");
        assert!(login_registry("bad host").is_err());
        assert!(login_registry("foo").is_err());
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
