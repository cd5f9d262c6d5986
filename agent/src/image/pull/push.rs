//! Pushing a stored image to a registry: the stored manifest, config and
//! layer blobs, byte for byte, so the registry holds the image under the
//! digests berth has. Blobs the registry already has (a HEAD answers), or
//! can mount from another repository the image is known under there, are
//! not sent again. Layers go one at a time, each uploaded in one PUT of
//! known length (monolithic: see `client::Clients::push_client`) whose body
//! is streamed from its file in [`UPLOAD_CHUNK`]s (bounded memory whatever
//! the layer's size).

use std::sync::Arc;

use futures_util::stream;
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::errors::oci_err;
use super::{Credentials, LayerProgress, LayerState, Puller};
use crate::image::{reference, ImageError};

/// Bytes read from a layer file at a time while uploading.
const UPLOAD_CHUNK: usize = 4 << 20;

/// A snapshot of a push.
#[derive(Clone, Debug, Default)]
pub struct PushProgress {
    /// The normalised reference pushed to.
    pub reference: String,
    /// Digest of the manifest pushed (the stored one).
    pub manifest_digest: String,
    /// Layers, base first; `done` counts bytes uploaded.
    pub layers: Vec<LayerProgress>,
}

impl Puller {
    /// Pushes the stored image `source` (reference, id or id prefix) to
    /// `target` (a reference; by default `source` itself, which must then
    /// be one of the image's references), publishing snapshots to
    /// `progress`. Returns the manifest digest.
    ///
    /// `creds` are used for this push only; without them, stored
    /// credentials for the registry are used, else none.
    ///
    /// # Errors
    /// `NotFound` (no such image), `InvalidReference` (no reference to
    /// push to, or a target with a digest), `ContentNotKept`, and the
    /// registry's errors as for pulls (`Unauthenticated`,
    /// `PermissionDenied`, `Unavailable`, ...).
    pub async fn push(
        &self,
        source: &str,
        target: Option<&str>,
        creds: Option<Credentials>,
        progress: Arc<watch::Sender<PushProgress>>,
    ) -> Result<String, ImageError> {
        let record = self.store.resolve(source)?;
        let target = match target.filter(|t| !t.is_empty()) {
            Some(t) => reference::normalize(t)?,
            None => reference::normalize(source)
                .ok()
                .filter(|r| record.references.contains(r))
                .ok_or_else(|| {
                    ImageError::InvalidReference(format!(
                        "{:?} is not a reference of the image: name where to push it",
                        crate::error::capped(source)
                    ))
                })?,
        };
        if target.contains('@') {
            return Err(ImageError::InvalidReference(format!(
                "{:?}: push to a tag, not a digest",
                crate::error::capped(&target)
            )));
        }
        let store = self.store.clone();
        let content = tokio::task::spawn_blocking(move || store.open_content(record, Vec::new()))
            .await
            .map_err(|e| ImageError::io("push task", std::io::Error::other(e)))??;
        progress.send_modify(|p| {
            p.reference = target.clone();
            p.manifest_digest = content.record.manifest_digest.clone();
            p.layers = content
                .layers
                .iter()
                .map(|(d, _)| LayerProgress {
                    digest: d.digest.clone(),
                    media_type: d.media_type.clone(),
                    total: d.size,
                    ..LayerProgress::default()
                })
                .collect();
        });

        let r: Reference = target.parse().map_err(|e| {
            ImageError::InvalidReference(format!("{:?}: {e}", crate::error::capped(&target)))
        })?;
        let registry = r.registry().to_string();
        let creds = creds.or_else(|| self.credentials.get(&registry));
        let auth = match &creds {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        let client = self.clients.push_client(&registry)?;
        client
            .auth(&r, &auth, RegistryOperation::Push)
            .await
            .map_err(|e| oci_err(&format!("authenticating to {registry} for a push"), e))?;

        // Repositories of the same registry the image is known under: the
        // registry may hold its blobs there, and can link them into the
        // target without an upload (a cross-repository mount).
        let sources: Vec<Reference> = content
            .record
            .references
            .iter()
            .filter_map(|x| x.parse::<Reference>().ok())
            .filter(|x| x.registry() == r.registry() && x.repository() != r.repository())
            .collect();
        for (i, (desc, file)) in content.layers.into_iter().enumerate() {
            let present = client
                .blob_exists(&r, &desc.digest)
                .await
                .map_err(|e| oci_err(&format!("checking blob {}", desc.digest), e))?;
            if present || mount(&client, &r, &sources, &desc.digest).await {
                progress.send_modify(|p| p.layers[i].state = LayerState::AlreadyPresent);
                continue;
            }
            progress.send_modify(|p| p.layers[i].state = LayerState::Uploading);
            let file = tokio::fs::File::from_std(file);
            let body = upload_stream(file, desc.size, i, progress.clone());
            client
                .push_blob_stream(&r, body, &desc.digest, Some(desc.size))
                .await
                .map_err(|e| oci_err(&format!("uploading layer {}", desc.digest), e))?;
            progress.send_modify(|p| p.layers[i].state = LayerState::Done);
        }
        let config_digest = content.record.id.clone();
        if !client
            .blob_exists(&r, &config_digest)
            .await
            .map_err(|e| oci_err(&format!("checking config {config_digest}"), e))?
        {
            client
                .push_blob(&r, content.config, &config_digest)
                .await
                .map_err(|e| oci_err(&format!("uploading config {config_digest}"), e))?;
        }
        let media = http::HeaderValue::from_str(&content.manifest_media_type).map_err(|_| {
            ImageError::Unsupported(format!(
                "manifest media type {:?}",
                crate::error::capped(&content.manifest_media_type)
            ))
        })?;
        client
            .push_manifest_raw(&r, content.manifest, media)
            .await
            .map_err(|e| oci_err(&format!("pushing the manifest to {target}"), e))?;
        tracing::info!(reference = %target, digest = %content.record.manifest_digest, "image pushed");
        Ok(content.record.manifest_digest)
    }
}

/// Asks the registry to link blob `digest` into `target` from one of
/// `sources`; true once one did. A registry that cannot (the blob is not
/// there, or it does not mount) answers with an upload session instead,
/// which is left to expire: the caller uploads in a session of its own.
async fn mount(
    client: &oci_client::Client,
    target: &Reference,
    sources: &[Reference],
    digest: &str,
) -> bool {
    for source in sources {
        if client.mount_blob(target, source, digest).await.is_ok() {
            return true;
        }
    }
    false
}

/// The bytes of a layer file as a stream of [`UPLOAD_CHUNK`]s, exactly
/// `size` of them, counting each into layer `i` of `progress`.
fn upload_stream(
    file: tokio::fs::File,
    size: u64,
    i: usize,
    progress: Arc<watch::Sender<PushProgress>>,
) -> impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static {
    stream::unfold(
        (file.take(size), progress),
        move |(mut file, progress)| async move {
            let mut buf = vec![0u8; UPLOAD_CHUNK];
            let mut filled = 0;
            // Fill whole chunks: fewer, larger writes to the connection.
            while filled < buf.len() {
                match file.read(&mut buf[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => return Some((Err(e.into()), (file, progress))),
                }
            }
            if filled == 0 {
                return None;
            }
            buf.truncate(filled);
            progress.send_modify(|p| {
                if let Some(l) = p.layers.get_mut(i) {
                    l.done += filled as u64;
                }
            });
            Some((Ok(bytes::Bytes::from(buf)), (file, progress)))
        },
    )
}
