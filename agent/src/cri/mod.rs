//! The Kubernetes CRI v1 front end (`berthd --cri-socket PATH`): a second
//! gRPC server, on its own unix socket, serving `runtime.v1` from the same
//! image store, containers, puller and event log as berth's own API.
//!
//! This landing serves the whole ImageService and the runtime's Version,
//! Status and RuntimeConfig; every other RuntimeService call answers
//! UNIMPLEMENTED ("berth CRI: not supported yet: <Rpc>"). The CRI types and
//! service traits are the `k8s-cri` crate's (generated from cri-api's
//! api.proto, on the same tonic and prost as berth).

mod fs_usage;
mod image_map;
mod images;
mod runtime;
mod runtime_info;
mod unsupported;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use tokio::sync::watch;
use tonic::transport::Server;

use crate::container::Manager;
use crate::events::EventBus;
use crate::image::service::Pulling;
use crate::image::ImageStore;
use crate::server::listen;
use crate::server::oversize::{MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};

use unsupported::NamedUnimplemented;
pub use unsupported::NOT_SUPPORTED;

/// What the CRI services share with the rest of berthd.
pub struct Deps {
    /// The image store.
    pub images: Arc<ImageStore>,
    /// Its directory (ImageFsInfo measures it).
    pub image_dir: PathBuf,
    /// Containers (an image a container uses is not removed).
    pub mgr: Arc<Manager>,
    /// Pulls, announced on the event log.
    pub pulling: Arc<Pulling>,
    /// The event log (image removals).
    pub bus: Arc<EventBus>,
}

/// Binds `socket` (root only, as berth's own) and serves CRI on it until
/// `stopping` turns true; the socket file is removed then.
///
/// # Errors
/// The socket cannot be bound (another berthd serves it, a bad path).
pub fn serve(
    socket: &Path,
    deps: Deps,
    mut stopping: watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = crate::server::bind_unix(socket)?;
    let runtime = runtime::CriRuntime::new(deps.image_dir.display().to_string());
    let images = images::CriImages::new(&deps);
    let router = Server::builder()
        .add_service(NamedUnimplemented::new(
            RuntimeServiceServer::new(runtime)
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
        ))
        .add_service(NamedUnimplemented::new(
            ImageServiceServer::new(images)
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
        ));
    // The same accept loop as berth's socket: it lets any client's
    // `:authority` through (grpc-go's crictl and kubelet send "localhost").
    let (tx, rx): (_, listen::Incoming) = tokio::sync::mpsc::channel(64);
    listen::serve_unix(listener, tx);
    let socket = socket.to_path_buf();
    tracing::info!(socket = %socket.display(), "serving CRI v1");
    Ok(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopping.wait_for(|s| *s).await;
        };
        let incoming = tokio_stream::wrappers::ReceiverStream::new(rx);
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            tracing::error!(socket = %socket.display(), "CRI server: {e}");
        }
        let _ = std::fs::remove_file(&socket);
    }))
}
