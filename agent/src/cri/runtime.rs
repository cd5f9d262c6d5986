//! The CRI RuntimeService: Version, Status and RuntimeConfig
//! (`runtime_info.rs`), pod sandboxes (`pods/`) and their containers
//! (`containers/`), ExecSync; every other call answers UNIMPLEMENTED naming
//! itself (`unsupported.rs`).

use std::pin::Pin;
use std::sync::Arc;

use super::api_file::v1 as cri;
use super::api_file::v1::runtime_service_server::RuntimeService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::events::ContainerEvents;
use super::pods::{sandbox, Pods};
use super::stats;
use super::streaming::Streaming;
use super::unsupported::not_supported;
use super::{containers, runtime_info};

/// Serves `runtime.v1.RuntimeService`.
pub struct CriRuntime {
    /// The image store's directory, for Status's verbose info.
    image_store: String,
    /// The pods and their containers.
    pods: Arc<Pods>,
    /// GetContainerEvents' subscriptions.
    events: ContainerEvents,
    /// The stats calls' last CPU readings (for usage_nano_cores).
    stats: stats::CriStats,
    /// The streaming server of Exec, Attach and PortForward.
    streaming: Arc<Streaming>,
}

impl CriRuntime {
    /// A runtime service on `pods`, reporting `image_store` in verbose
    /// Status; `events` serves GetContainerEvents.
    pub fn new(
        image_store: String,
        pods: Arc<Pods>,
        events: ContainerEvents,
        streaming: Arc<Streaming>,
    ) -> Self {
        CriRuntime {
            image_store,
            pods,
            events,
            stats: stats::CriStats::default(),
            streaming,
        }
    }
}

/// The stream type of the cri-api v1.37 Stream* listings (none is served
/// yet; kubelet falls back to the unary List* calls on UNIMPLEMENTED).
pub(super) type Listing<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

type EventStream = Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RuntimeService for CriRuntime {
    async fn version(
        &self,
        _req: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        Ok(Response::new(runtime_info::version()))
    }

    async fn status(
        &self,
        req: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        let network = self.pods.network_config().map(|(_, list)| list.name);
        Ok(Response::new(runtime_info::status(
            req.into_inner().verbose,
            &self.image_store,
            network,
        )))
    }

    async fn runtime_config(
        &self,
        _req: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        Ok(Response::new(runtime_info::runtime_config()))
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        _req: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Ok(Response::new(self.events.subscribe()))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let req = req.into_inner();
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("config is required"))?;
        let (rec, ports) = sandbox::record_of(config, req.runtime_handler)?;
        // In a task of its own: a client that gives up (its deadline, a
        // cancel) drops this future, which must not stop a run half way.
        let pods = self.pods.clone();
        let pod_sandbox_id = tokio::spawn(async move { pods.run(rec, ports).await })
            .await
            .map_err(|e| Status::internal(format!("RunPodSandbox: {e}")))??;
        Ok(Response::new(cri::RunPodSandboxResponse { pod_sandbox_id }))
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        let (pods, id) = (self.pods.clone(), req.into_inner().pod_sandbox_id);
        tokio::spawn(async move { pods.stop(&id).await })
            .await
            .map_err(|e| Status::internal(format!("StopPodSandbox: {e}")))??;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        let (pods, id) = (self.pods.clone(), req.into_inner().pod_sandbox_id);
        tokio::spawn(async move { pods.remove(&id).await })
            .await
            .map_err(|e| Status::internal(format!("RemovePodSandbox: {e}")))??;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        let req = req.into_inner();
        let pod = self.pods.get(&req.pod_sandbox_id)?;
        // Always, not only when verbose: kubelet's evented PLEG takes the
        // pod's containers from here.
        let containers_statuses = self
            .pods
            .containers_of(&pod.id)
            .iter()
            .filter_map(|e| containers::view::to_cri_status(&e.snapshot()))
            .collect();
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(sandbox::to_cri_status(&pod)),
            info: Default::default(),
            containers_statuses,
            timestamp: crate::container::now_nanos(),
        }))
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        let filter = req.into_inner().filter.unwrap_or_default();
        let items = self
            .pods
            .list()
            .iter()
            .filter(|p| sandbox::matches(p, &filter))
            .map(sandbox::to_cri_pod)
            .collect();
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        req: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        let req = req.into_inner();
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("config is required"))?;
        let container_id = self
            .pods
            .create_container(&req.pod_sandbox_id, config)
            .await?;
        Ok(Response::new(cri::CreateContainerResponse { container_id }))
    }

    async fn start_container(
        &self,
        req: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        self.pods
            .start_container(&req.into_inner().container_id)
            .await?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        req: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        let req = req.into_inner();
        self.pods
            .stop_container(&req.container_id, req.timeout)
            .await?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        req: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        self.pods
            .remove_container(&req.into_inner().container_id)
            .await?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        req: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        let filter = req.into_inner().filter.unwrap_or_default();
        let containers = self
            .pods
            .mgr
            .list()
            .iter()
            .filter(|r| containers::view::matches(r, &filter))
            .filter_map(containers::view::to_cri_container)
            .collect();
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        req: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        let entry = containers::get(&self.pods.mgr, &req.into_inner().container_id)?;
        Ok(Response::new(cri::ContainerStatusResponse {
            status: containers::view::to_cri_status(&entry.snapshot()),
            info: Default::default(),
        }))
    }

    async fn update_container_resources(
        &self,
        req: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        let req = req.into_inner();
        if req.windows.is_some() {
            return Err(not_supported("Windows resources"));
        }
        self.pods
            .update_resources(&req.container_id, req.linux)
            .await?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        req: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        self.pods.reopen_log(&req.into_inner().container_id)?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        req: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        Ok(Response::new(self.pods.exec_sync(req.into_inner()).await?))
    }

    async fn exec(
        &self,
        req: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        Ok(Response::new(self.streaming.exec(req.into_inner())?))
    }

    async fn attach(
        &self,
        req: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        Ok(Response::new(self.streaming.attach(req.into_inner())?))
    }

    async fn port_forward(
        &self,
        req: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        let mut req = req.into_inner();
        let pod = self.pods.get(&req.pod_sandbox_id)?;
        if !pod.ready {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {} is not ready",
                pod.id
            )));
        }
        // The pod's own network namespace; none for a pod on the host's.
        let netns = (!pod.host_network).then(|| self.pods.ns_dir(&pod.id).join("net"));
        req.pod_sandbox_id = pod.id;
        Ok(Response::new(self.streaming.port_forward(req, netns)?))
    }

    async fn container_stats(
        &self,
        req: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        let entry = containers::get(&self.pods.mgr, &req.into_inner().container_id)?;
        let stats = self
            .stats
            .of_containers(&self.pods.mgr, vec![entry])
            .await?
            .pop();
        Ok(Response::new(cri::ContainerStatsResponse { stats }))
    }

    async fn list_container_stats(
        &self,
        req: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        let filter = req.into_inner().filter.unwrap_or_default();
        let entries = self
            .pods
            .mgr
            .entries()
            .into_iter()
            .filter(|e| stats::container_listed(&e.lock_record(), &filter))
            .collect();
        let stats = self.stats.of_containers(&self.pods.mgr, entries).await?;
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        req: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        let pod = self.pods.get(&req.into_inner().pod_sandbox_id)?;
        let entries = self.pods.containers_of(&pod.id);
        let stats = self
            .stats
            .of_pods(&self.pods.mgr, vec![(pod, entries)])
            .await?
            .pop();
        Ok(Response::new(cri::PodSandboxStatsResponse { stats }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        let filter = req.into_inner().filter.unwrap_or_default();
        let pods = self
            .pods
            .list()
            .into_iter()
            .filter(|p| stats::pod_listed(p, &filter))
            .map(|p| {
                let entries = self.pods.containers_of(&p.id);
                (p, entries)
            })
            .collect();
        let stats = self.stats.of_pods(&self.pods.mgr, pods).await?;
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    async fn update_runtime_config(
        &self,
        req: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        // kubelet hands over the node's pod CIDR. As containerd without a
        // CNI template, berth has nothing to apply it to: the CNI
        // configuration (its IPAM) decides the pods' addresses.
        let cidr = req
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        if cidr.len() > 256 {
            return Err(Status::invalid_argument(
                "pod_cidr is longer than 256 bytes",
            ));
        }
        tracing::info!(pod_cidr = %cidr, "kubelet's pod CIDR (the CNI configuration's IPAM decides addresses)");
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn checkpoint_container(
        &self,
        _req: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        Err(not_supported("CheckpointContainer"))
    }

    async fn list_metric_descriptors(
        &self,
        _req: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        Err(not_supported("ListMetricDescriptors"))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _req: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        Err(not_supported("ListPodSandboxMetrics"))
    }

    type StreamPodSandboxesStream = Listing<cri::StreamPodSandboxesResponse>;

    async fn stream_pod_sandboxes(
        &self,
        _req: Request<cri::StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        Err(not_supported("StreamPodSandboxes"))
    }

    type StreamContainersStream = Listing<cri::StreamContainersResponse>;

    async fn stream_containers(
        &self,
        _req: Request<cri::StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        Err(not_supported("StreamContainers"))
    }

    type StreamContainerStatsStream = Listing<cri::StreamContainerStatsResponse>;

    async fn stream_container_stats(
        &self,
        _req: Request<cri::StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        Err(not_supported("StreamContainerStats"))
    }

    type StreamPodSandboxStatsStream = Listing<cri::StreamPodSandboxStatsResponse>;

    async fn stream_pod_sandbox_stats(
        &self,
        _req: Request<cri::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        Err(not_supported("StreamPodSandboxStats"))
    }

    type StreamPodSandboxMetricsStream = Listing<cri::StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandbox_metrics(
        &self,
        _req: Request<cri::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        Err(not_supported("StreamPodSandboxMetrics"))
    }

    async fn checkpoint_pod(
        &self,
        _req: Request<cri::CheckpointPodRequest>,
    ) -> Result<Response<cri::CheckpointPodResponse>, Status> {
        Err(not_supported("CheckpointPod"))
    }

    async fn restore_pod(
        &self,
        _req: Request<cri::RestorePodRequest>,
    ) -> Result<Response<cri::RestorePodResponse>, Status> {
        Err(not_supported("RestorePod"))
    }

    async fn update_pod_sandbox_resources(
        &self,
        _req: Request<cri::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<cri::UpdatePodSandboxResourcesResponse>, Status> {
        Err(not_supported("UpdatePodSandboxResources"))
    }
}
