//! The gRPC server: berth.v1 services, health and reflection, on a unix
//! socket (and optionally plain TCP).

mod agent;
mod containers;
pub mod convert;
mod events;
pub mod images;
mod logs;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use berth::v1::{
    agent_server::AgentServer, containers_server::ContainersServer, events_server::EventsServer,
    images_server::ImagesServer,
};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;

use crate::cgroup::CgroupHost;
use crate::config::Config;
use crate::container::Manager;
use crate::events::EventBus;
use crate::image::ImageStore;

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(cfg: Config) -> Result<(), Box<dyn std::error::Error>> {
    let started_at = SystemTime::now();
    let instance_id = crate::container::spec::new_id()[..16].to_string();
    std::fs::create_dir_all(&cfg.state_dir)?;
    let cgroups = CgroupHost::detect(&cfg.cgroup_parent);
    tracing::info!(
        version = cgroups.version(),
        controllers = ?cgroups.controllers(),
        parent = %cgroups.parent(),
        "using cgroup v{}",
        cgroups.version()
    );
    let bus = Arc::new(EventBus::new(instance_id.clone()));
    let images = Arc::new(ImageStore::open(&cfg.state_dir.join("images"))?);
    let mgr = Manager::open(
        cfg.state_dir.join("containers"),
        images.clone(),
        cgroups,
        bus.clone(),
        cfg.log_max_bytes,
    )?;

    let puller = crate::image::pull::Puller::new(
        images.clone(),
        cfg.insecure_registries.clone(),
        cfg.state_dir.join("registry-auth.json"),
    );
    let pulling = images::Pulling::new(puller, images.clone(), bus.clone(), cfg.auto_pull);

    let (health, health_svc) = tonic_health::server::health_reporter();
    health
        .set_serving::<ContainersServer<containers::ContainersService>>()
        .await;
    health
        .set_serving::<ImagesServer<images::ImagesService>>()
        .await;
    health
        .set_serving::<EventsServer<events::EventsService>>()
        .await;
    health
        .set_serving::<AgentServer<agent::AgentService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(berth::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let router = Server::builder()
        .add_service(health_svc)
        .add_service(reflection)
        .add_service(ContainersServer::new(
            containers::ContainersService::new(mgr.clone()).with_pulling(pulling.clone()),
        ))
        .add_service(ImagesServer::new(images::ImagesService::new(
            images.clone(),
            mgr.clone(),
            bus.clone(),
            cfg.state_dir.join("tmp"),
            pulling,
        )))
        .add_service(EventsServer::new(events::EventsService::new(
            bus.clone(),
            mgr.clone(),
        )))
        .add_service(AgentServer::new(agent::AgentService::new(
            mgr.clone(),
            images.clone(),
            cfg.state_dir.display().to_string(),
            started_at,
            instance_id,
        )));

    let listener = bind_unix(&cfg.socket)?;
    tracing::info!(socket = %cfg.socket.display(), state_dir = %cfg.state_dir.display(), "berthd ready");
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down; containers keep running under their monitors");
    };
    match cfg.insecure_tcp {
        None => {
            router
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
                .await?
        }
        Some(addr) => {
            tracing::warn!(
                %addr,
                "LISTENING ON PLAIN TCP WITHOUT TLS OR AUTHENTICATION: anyone who can reach this address controls the host as root"
            );
            let tcp = tokio::net::TcpListener::bind(addr).await?;
            let unix = UnixListenerStream::new(listener);
            let tcp = tokio_stream::wrappers::TcpListenerStream::new(tcp);
            use tokio_stream::StreamExt;
            let both = unix
                .map(|r| r.map(Conn::Unix))
                .merge(tcp.map(|r| r.map(Conn::Tcp)));
            router.serve_with_incoming_shutdown(both, shutdown).await?
        }
    }
    let _ = std::fs::remove_file(&cfg.socket);
    Ok(())
}

fn bind_unix(path: &PathBuf) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("another berthd is listening on {}", path.display()),
        ));
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    // The API controls the host as root: only root may connect.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// A connection from either listener.
enum Conn {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl tokio::io::AsyncRead for Conn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Conn::Tcp(s) => std::pin::Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Unix(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Conn::Tcp(s) => std::pin::Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => std::pin::Pin::new(s).poll_flush(cx),
            Conn::Tcp(s) => std::pin::Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Unix(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Conn::Tcp(s) => std::pin::Pin::new(s).poll_shutdown(cx),
        }
    }
}
