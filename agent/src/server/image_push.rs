//! Images.Push on the wire: the request checked, progress snapshots turned
//! into messages as the push runs on its own task.

use std::pin::Pin;
use std::sync::Arc;

use berth::v1 as pb;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tokio_stream::Stream;
use tonic::Status;

use super::image_save::check_name;
use super::image_status::image_status;
use super::images::{creds_from_proto, layer_to_proto, Pulling};
use crate::image::pull::PushProgress;

/// The stream Images.Push answers with.
pub type PushStream = Pin<Box<dyn Stream<Item = Result<pb::PushImageProgress, Status>> + Send>>;

fn progress_to_proto(p: &PushProgress) -> pb::PushImageProgress {
    pb::PushImageProgress {
        reference: p.reference.clone(),
        manifest_digest: p.manifest_digest.clone(),
        layers: p.layers.iter().map(layer_to_proto).collect(),
        done: false,
    }
}

/// Starts the push and streams its progress; the last message has `done`.
pub fn push(pulling: Arc<Pulling>, req: pb::PushImageRequest) -> Result<PushStream, Status> {
    check_name(&req.image)?;
    check_name(&req.target)?;
    let creds = creds_from_proto(req.credentials);
    let (tx, mut rx) = watch::channel(PushProgress::default());
    let tx = Arc::new(tx);
    let (out_tx, out_rx) = mpsc::channel(16);
    let target = Some(req.target).filter(|t| !t.is_empty());
    let work = tokio::spawn(async move {
        pulling
            .puller()
            .push(&req.image, target.as_deref(), creds, tx)
            .await
    });
    let abort = work.abort_handle();
    tokio::spawn(async move {
        let forward = async {
            // The watch channel coalesces: a slow client gets the latest
            // snapshot, never a backlog.
            while rx.changed().await.is_ok() {
                let msg = progress_to_proto(&rx.borrow_and_update());
                if out_tx.send(Ok(msg)).await.is_err() {
                    break;
                }
            }
            let last = match work.await {
                Ok(Ok(digest)) => {
                    let mut msg = progress_to_proto(&rx.borrow());
                    msg.manifest_digest = digest;
                    msg.done = true;
                    Ok(msg)
                }
                Ok(Err(e)) => Err(image_status(e)),
                Err(e) => Err(Status::internal(format!("push task: {e}"))),
            };
            let _ = out_tx.send(last).await;
        };
        unless_client_gone(&out_tx, &abort, forward).await;
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
        out_rx,
    )))
}

/// Runs `forward` (which relays the work's progress to the client) unless
/// the client goes away first (its response stream is dropped: Ctrl-C on
/// berthctl, a cancelled call), in which case the work is aborted: nobody
/// is left to want it, and a push would otherwise upload to the end.
async fn unless_client_gone<T>(
    out_tx: &mpsc::Sender<T>,
    work: &AbortHandle,
    forward: impl std::future::Future<Output = ()>,
) {
    tokio::select! {
        () = forward => {}
        () = out_tx.closed() => {
            tracing::info!("push abandoned by its client: stopping it");
            work.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Dropping the response stream aborts the work (its future is dropped,
    /// which the oneshot sender it holds reports).
    #[tokio::test]
    async fn a_gone_client_aborts_the_work() {
        let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
        let work = tokio::spawn(async move {
            let _held = held_tx;
            std::future::pending::<()>().await;
        });
        let abort = work.abort_handle();
        let (out_tx, out_rx) = mpsc::channel::<u8>(1);
        drop(out_rx);
        let forward = async {
            let _ = work.await;
        };
        tokio::time::timeout(
            Duration::from_secs(5),
            unless_client_gone(&out_tx, &abort, forward),
        )
        .await
        .expect("the relay returned");
        let held = tokio::time::timeout(Duration::from_secs(5), held_rx)
            .await
            .expect("the work ended");
        assert!(held.is_err(), "the work was not aborted");
    }
}
