//! The gRPC server: berth.v1 services, health and reflection, on a unix
//! socket, and optionally on TCP with mutual TLS (or, explicitly, plain TCP).

mod agent;
pub mod attach;
mod authority;
mod build;
mod containers;
pub mod convert;
mod copy;
mod cut_short;
mod events;
mod exec;
mod image_push;
mod image_save;
pub(crate) mod image_status;
pub mod images;
pub(crate) mod listen;
mod logs;
mod mounts;
mod networks;
pub mod oversize;
pub mod stats;
pub mod status;
mod volumes;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::SystemTime;

use berth::v1::builds_server::BuildsServer;
use berth::v1::exec_server::ExecServer;
use berth::v1::networks_server::NetworksServer;
use berth::v1::stats_server::StatsServer;
use berth::v1::volumes_server::VolumesServer;
use berth::v1::{
    agent_server::AgentServer, containers_server::ContainersServer, images_server::ImagesServer,
};
use events::generated::events_server::EventsServer;
use tokio::net::UnixListener;
use tonic::transport::Server;

use crate::cgroup::CgroupHost;
use crate::config::Config;
use crate::container::{Deps, Manager};
use crate::events::EventBus;
use crate::fsutil::Flusher;
use crate::image::ImageStore;
use crate::janitor::Janitor;
use crate::monitor::Monitors;
use crate::netns_pool::NetnsPool;
use crate::seccomp::Seccomp;

/// How long a stopping berthd lets calls in flight finish.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(cfg: Config) -> Result<(), Box<dyn std::error::Error>> {
    if cfg.cri_socket.as_ref() == Some(&cfg.socket) {
        return Err(format!(
            "--cri-socket {} is berth's own --socket: the CRI needs a socket of its own",
            cfg.socket.display()
        )
        .into());
    }
    let started_at = SystemTime::now();
    let instance_id = crate::container::spec::new_id()[..16].to_string();
    crate::state_dir::make_private(&cfg.state_dir)
        .map_err(|e| format!("making the state directory private: {e}"))?;
    if let Some(size) = cfg.default_storage_size {
        // Before anything is made: a default limit that cannot be enforced
        // would leave every container unbounded without a word.
        let dir = cfg.state_dir.join("containers");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        crate::container::layer_quota::check(&dir, size, "--default-storage-size")?;
    }
    let cgroups = CgroupHost::detect(&cfg.cgroup_parent);
    tracing::info!(
        version = cgroups.version(),
        controllers = ?cgroups.controllers(),
        parent = %cgroups.parent(),
        "using cgroup v{}",
        cgroups.version()
    );
    let bus = Arc::new(EventBus::open(
        &cfg.state_dir.join("events"),
        cfg.events_retain,
        instance_id.clone(),
    )?);
    let flusher = Arc::new(Flusher::new());
    spawn_flusher(bus.clone(), flusher.clone());
    spawn_idle_trim(bus.clone());
    let monitors = Monitors::install(&cfg.state_dir, cfg.spare_monitors).map_err(|e| {
        format!(
            "installing the container monitor in {}: {e}",
            cfg.state_dir.join("bin").display()
        )
    })?;
    tracing::info!(monitor = %monitors.exe().display(), "container monitor installed");
    monitors.refill();
    let images = Arc::new(ImageStore::open(&cfg.state_dir.join("images"))?);
    let trash = cfg.state_dir.join("trash");
    let networks = Arc::new(
        crate::network::user::Networks::open(
            cfg.state_dir.join("networks"),
            Arc::new(crate::network::bridge::Bridge::new(
                crate::network::bridge::Config::new(&cfg.bridge_name, &cfg.bridge_subnet)?,
            )),
            bus.clone(),
        )?
        .with_cni_plugin_dirs(crate::network::cni::PluginDirs::parse(&cfg.cni_bin_dir)),
    );
    let mgr = Manager::open(
        cfg.state_dir.join("containers"),
        Deps {
            images: images.clone(),
            cgroups: Arc::new(cgroups),
            events: bus.clone(),
            launcher: Arc::new(monitors),
            netns: NetnsPool::start(cfg.spare_netns)?,
            networks: networks.clone(),
            flusher: flusher.clone(),
            janitor: Arc::new(
                Janitor::start(trash.clone()).map_err(|e| format!("{}: {e}", trash.display()))?,
            ),
            seccomp: Arc::new(Seccomp::open(&cfg.state_dir.join("seccomp"))?),
            allow_privileged: cfg.allow_privileged,
            default_network: cfg.default_network,
            default_storage_size: cfg.default_storage_size.unwrap_or(0),
            volumes: Arc::new(crate::volume::VolumeStore::open(
                &cfg.state_dir.join("volumes"),
            )?),
        },
        cfg.log_max_bytes,
    )?;
    // Layers and blobs a crash left behind (stored by an import or a pull
    // that died before tagging its image) are deleted now, once the
    // containers that may still use a removed image's layers are known:
    // otherwise nothing would, until the next image removal.
    if let Err(e) = images.gc(&mgr.layers_in_use()) {
        tracing::warn!("removing layers and blobs no image uses: {e}");
    }
    mgr.reconcile_network().await;

    let puller = crate::image::pull::Puller::new(
        images.clone(),
        cfg.insecure_registries.clone(),
        cfg.state_dir.join("registry-auth.json"),
    );
    let pulling = images::Pulling::new(puller, images.clone(), bus.clone(), cfg.auto_pull);

    let cri_pulling = pulling.clone();
    remove_build_leftovers(&mgr).await;
    let builder = crate::build::Builder::new(
        images.clone(),
        mgr.clone(),
        pulling.clone(),
        &cfg.state_dir.join("build"),
    )?;
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
    health
        .set_serving::<StatsServer<stats::StatsService>>()
        .await;
    health
        .set_serving::<NetworksServer<networks::NetworksService>>()
        .await;
    health
        .set_serving::<VolumesServer<volumes::VolumesService>>()
        .await;
    health.set_serving::<ExecServer<exec::ExecService>>().await;
    health
        .set_serving::<BuildsServer<build::BuildsService>>()
        .await;
    // Reflection in both versions: grpcurl and grpc-go speak v1, Python's
    // grpcio-reflection, Postman and older tools only v1alpha.
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(berth::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder().build_v1()?;
    let reflection_v1alpha = reflection_builder().build_v1alpha()?;

    use oversize::{MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let router = Server::builder()
        .layer(tower::util::MapResponseLayer::new(
            oversize::fix_status::<tonic::body::Body>,
        ))
        .add_service(health_svc)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(
            ContainersServer::new(
                containers::ContainersService::new(mgr.clone()).with_pulling(pulling.clone()),
            )
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_RESPONSE_BYTES),
        )
        .add_service(
            ImagesServer::new(images::ImagesService::new(
                images.clone(),
                mgr.clone(),
                bus.clone(),
                cfg.state_dir.join("tmp"),
                pulling,
            ))
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_RESPONSE_BYTES),
        )
        .add_service(
            EventsServer::new(events::EventsService::new(bus.clone(), mgr.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
        )
        .add_service(
            AgentServer::new(agent::AgentService::new(
                mgr.clone(),
                images.clone(),
                cfg.state_dir.display().to_string(),
                started_at,
                instance_id,
            ))
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_RESPONSE_BYTES),
        )
        .add_service(
            StatsServer::new(stats::StatsService::new(mgr.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
        )
        .add_service(
            NetworksServer::new(networks::NetworksService::new(mgr.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
        )
        .add_service(
            VolumesServer::new(volumes::VolumesService::new(mgr.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
        )
        .add_service(
            ExecServer::new(exec::ExecService::new(mgr.clone(), stopping.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
        )
        .add_service(
            BuildsServer::new(build::BuildsService::new(builder, bus.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
        );

    let listener = bind_unix(&cfg.socket)?;
    // The CRI front end (`--cri-socket`), on the same state; it stops with
    // berth's own server.
    let cri = match &cfg.cri_socket {
        Some(path) => Some(
            crate::cri::serve(
                path,
                crate::cri::Deps {
                    images: images.clone(),
                    image_dir: cfg.state_dir.join("images"),
                    mgr: mgr.clone(),
                    pulling: cri_pulling,
                    bus: bus.clone(),
                    pod_dir: cfg.state_dir.join("cri").join("pods"),
                    cni_conf_dir: cfg.cri_cni_conf_dir.clone(),
                    streaming_addr: cfg.cri_streaming_addr,
                },
                stopping.clone(),
            )
            .await
            .map_err(|e| format!("CRI socket {}: {e}", path.display()))?,
        ),
        None => None,
    };
    tracing::info!(socket = %cfg.socket.display(), state_dir = %cfg.state_dir.display(), "berthd ready");
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot watch SIGTERM: {e}");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down; containers keep running under their monitors");
        let _ = stopping_tx.send(true);
    });
    let mut stop_accepting = stopping.clone();
    let shutdown = async move {
        let _ = stop_accepting.wait_for(|s| *s).await;
    };
    // Streams (events, logs -f) never end by themselves: give calls in
    // flight a moment, then close whatever is still open. Clients resume
    // (Subscribe's from_seq) once berthd is back.
    let mut drain = stopping.clone();
    let deadline = async move {
        let _ = drain.wait_for(|s| *s).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    // Check the TLS set-up before serving anything, so a mistake in it
    // stops berthd at once instead of leaving it half reachable.
    let tls = cfg.listen_tls()?;
    let acceptor = tls
        .as_ref()
        .map(|(_, files)| listen::tls_acceptor(files))
        .transpose()?;
    let (tx, rx): (_, listen::Incoming) = tokio::sync::mpsc::channel(64);
    listen::serve_unix(listener, tx.clone());
    if let (Some((addr, files)), Some(acceptor)) = (&tls, acceptor) {
        let tcp = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(
            %addr,
            cert = %files.cert.display(),
            client_ca = %files.client_ca.display(),
            "serving on TCP with mutual TLS"
        );
        listen::serve_tls(tcp, acceptor, tx.clone());
    }
    if let Some(addr) = cfg.insecure_tcp {
        tracing::warn!(
            %addr,
            "LISTENING ON PLAIN TCP WITHOUT TLS OR AUTHENTICATION: anyone who can reach this address controls the host as root"
        );
        let tcp = tokio::net::TcpListener::bind(addr).await?;
        listen::serve_insecure_tcp(tcp, tx.clone());
    }
    drop(tx);
    let serve = router
        .serve_with_incoming_shutdown(tokio_stream::wrappers::ReceiverStream::new(rx), shutdown);
    tokio::select! {
        r = serve => r?,
        _ = deadline => tracing::info!("closing the streams still open"),
    }
    if let Some(cri) = cri {
        // Calls still in flight (a pull) get the same grace as berth's own.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, cri).await;
    }
    if let Some(path) = &cfg.cri_socket {
        let _ = std::fs::remove_file(path);
    }
    let _ = flush(&bus, &flusher);
    let _ = std::fs::remove_file(&cfg.socket);
    Ok(())
}

/// How long without any event before berthd counts as idle.
const IDLE_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// How long an idle thread of the blocking pool lives. Shorter than
/// `IDLE_AFTER`, so the threads of a burst of work are gone, and their
/// allocator caches given back, when the idle trim runs.
pub const BLOCKING_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(2);

/// Puts what changed on stable storage in the background, at most
/// [`crate::events::SYNC_INTERVAL`] after it changed. It sleeps while
/// nothing changes, so an idle berthd does not wake up at all.
fn spawn_flusher(bus: Arc<EventBus>, flusher: Arc<Flusher>) {
    tokio::spawn(async move {
        let mut published = bus.watch();
        loop {
            tokio::select! {
                r = published.changed() => if r.is_err() { return },
                () = flusher.queued() => {}
            }
            // What changes meanwhile goes into the same flush.
            tokio::time::sleep(crate::events::SYNC_INTERVAL).await;
            published.borrow_and_update();
            let (b, f) = (bus.clone(), flusher.clone());
            if !tokio::task::spawn_blocking(move || flush(&b, &f))
                .await
                .unwrap_or(false)
            {
                // Nothing else may come to wake the loop: try again after
                // another interval, as long as it fails.
                flusher.retry();
            }
        }
    });
}

/// Once berthd has been idle for [`IDLE_AFTER`] (no event published), gives
/// the memory freed since the last burst of work back to the kernel, once
/// per idle period. The start of berthd counts as a burst.
fn spawn_idle_trim(bus: Arc<EventBus>) {
    tokio::spawn(async move {
        let mut published = bus.watch();
        loop {
            loop {
                match tokio::time::timeout(IDLE_AFTER, published.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => break,
                }
            }
            let _ = tokio::task::spawn_blocking(crate::sys::release_free_memory).await;
            if published.changed().await.is_err() {
                return;
            }
        }
    });
}

/// Puts the event log and the state files changed since the last call on
/// stable storage.
/// Returns false when the event log could not be synced (it stays to be
/// synced; state files that failed are reported and not retried).
fn flush(bus: &EventBus, flusher: &Flusher) -> bool {
    let log_synced = bus.sync();
    if let Err(e) = flusher.flush() {
        tracing::error!("flushing state files: {e}");
    }
    log_synced
}

pub(crate) fn bind_unix(path: &std::path::Path) -> std::io::Result<UnixListener> {
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

/// Removes the RUN-step containers of builds a crash (of berthd or its
/// machine) cut short: no build survives a restart, so none is in use.
async fn remove_build_leftovers(mgr: &Arc<Manager>) {
    for rec in mgr.list() {
        if !rec.spec.labels.contains_key(crate::build::BUILD_LABEL) {
            continue;
        }
        let removed = match mgr.get(&rec.id) {
            Ok(entry) => mgr.remove(&entry, true).await,
            Err(e) => Err(e),
        };
        if let Err(e) = removed {
            tracing::warn!("removing build container {}: {e}", rec.id);
        }
    }
}
