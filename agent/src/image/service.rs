//! Pulling as the API's verbs use it: a pull announced by a `pulled` event,
//! and the auto-pull policy (pull a missing image on create/run when berthd
//! runs with `--auto-pull`). Front ends (gRPC today, CRI later) call this
//! rather than the [`Puller`] directly.

use std::sync::Arc;

use tokio::sync::watch;

use super::pull::{Credentials, PullProgress, Pulled, Puller};
use super::{reference, ImageError, ImageStore};
use crate::events::domain::{Action, Event, EventSink, Object};

/// Pulls images and announces them: shared by Images.Pull and by
/// Containers.Create/Run when they pull a missing image.
pub struct Pulling {
    puller: Arc<Puller>,
    store: Arc<ImageStore>,
    events: Arc<dyn EventSink>,
    auto_pull: bool,
}

impl Pulling {
    /// `auto_pull`: whether [`ensure`](Self::ensure) pulls missing images.
    pub fn new(
        puller: Arc<Puller>,
        store: Arc<ImageStore>,
        events: Arc<dyn EventSink>,
        auto_pull: bool,
    ) -> Arc<Self> {
        Arc::new(Pulling {
            puller,
            store,
            events,
            auto_pull,
        })
    }

    /// The puller, for `login` and `logout`.
    pub fn puller(&self) -> &Puller {
        &self.puller
    }

    /// Pulls and publishes the `pulled` event.
    pub async fn pull(
        &self,
        reference: &str,
        creds: Option<Credentials>,
        progress: &watch::Sender<PullProgress>,
    ) -> Result<Pulled, ImageError> {
        let pulled = self.puller.pull(reference, creds, progress).await?;
        tracing::info!(reference = %pulled.reference, digest = %pulled.canonical, "image pulled");
        self.events.publish(Event {
            name: pulled.reference.clone(),
            image: pulled.canonical.clone(),
            ..Event::new(Object::Image, Action::Pulled, pulled.image.id.clone())
        });
        Ok(pulled)
    }

    /// Makes sure `image` is stored: when it is not, and berthd runs with
    /// `--auto-pull`, and it is a reference (not an id), pulls it with the
    /// stored credentials. Other lookup errors are left for the caller.
    ///
    /// # Errors
    /// [`ImageError::AutoPull`], of the kind of the pull's error.
    pub async fn ensure(&self, image: &str) -> Result<(), ImageError> {
        if !self.auto_pull || !matches!(self.store.resolve(image), Err(ImageError::NotFound(_))) {
            return Ok(());
        }
        if image.starts_with("sha256:") || reference::normalize(image).is_err() {
            return Ok(());
        }
        let (tx, _rx) = watch::channel(PullProgress::default());
        self.pull(image, None, &tx)
            .await
            .map(drop)
            .map_err(|e| ImageError::AutoPull {
                image: image.to_string(),
                source: Box::new(e),
            })
    }
}
