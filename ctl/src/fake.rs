//! A scripted in-process Containers service, so the order of berthctl's
//! calls (which matters for `run`) and its exit statuses can be tested
//! without a real agent.

use std::sync::{Arc, Mutex};

use berth::v1::containers_server::{Containers, ContainersServer};
use berth::v1::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status};

use crate::cli::OutputFormat;
use crate::ctx::Ctx;
use crate::fleet::Fleet;

/// The id every created container gets.
pub const ID: &str = "c0ffee0000000000000000000000000000000000000000000000000000000000";

/// What the fake does, and what it saw.
#[derive(Default)]
pub struct State {
    /// Names of the RPCs called, in order, with their id argument.
    pub calls: Vec<String>,
    /// Create fails with this.
    pub create_error: Option<Status>,
    /// Start fails with this, leaving the container exited with `start_exit`.
    pub start_error: Option<Status>,
    /// The exit code after a failed start (Inspect), if any.
    pub start_exit: Option<i32>,
    /// The exit code Wait reports.
    pub exit_code: i32,
    /// Whether the created container has `auto_remove`.
    pub auto_remove: bool,
    /// Whether the container is gone: an `auto_remove` container is
    /// removed once Wait has reported its exit (Inspect: NOT_FOUND).
    pub removed: bool,
    /// The created container's `open_stdin` and `tty` (Inspect, Attach).
    pub open_stdin: bool,
    /// See `open_stdin`.
    pub tty: bool,
    /// The open log stream, fed and closed by Start.
    logs: Option<mpsc::Sender<Result<LogEntry, Status>>>,
}

/// The fake service.
#[derive(Clone, Default)]
pub struct Fake(pub Arc<Mutex<State>>);

impl Fake {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, call: &str, id: &str) {
        self.state().calls.push(format!("{call} {id}"));
    }

    /// The calls seen so far.
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    /// Serves on a random local port; returns a fleet of one pointing at it.
    pub async fn serve(&self) -> Fleet {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let svc = ContainersServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let ctx = Ctx {
            host: format!("http://127.0.0.1:{port}"),
            tls: None,
            output: OutputFormat::Table,
        };
        match Fleet::of_one(&ctx, 1) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        }
    }
}

fn container(state: ContainerState) -> Container {
    Container {
        id: ID.into(),
        name: "fake".into(),
        state: state as i32,
        ..Default::default()
    }
}

fn resp(r: attach_response::Response) -> AttachResponse {
    AttachResponse { response: Some(r) }
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!("no such container: {id}"))
}

#[tonic::async_trait]
impl Containers for Fake {
    async fn create(
        &self,
        r: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        let spec = r.into_inner().spec.unwrap_or_default();
        self.record("create", &spec.image);
        if let Some(e) = self.state().create_error.clone() {
            return Err(e);
        }
        {
            let mut s = self.state();
            s.auto_remove = spec.auto_remove;
            s.open_stdin = spec.open_stdin;
            s.tty = spec.tty;
        }
        Ok(Response::new(CreateContainerResponse {
            container: Some(container(ContainerState::Created)),
        }))
    }

    async fn start(
        &self,
        r: Request<StartContainerRequest>,
    ) -> Result<Response<StartContainerResponse>, Status> {
        let id = r.into_inner().id;
        self.record("start", &id);
        let (error, logs) = {
            let mut s = self.state();
            (s.start_error.clone(), s.logs.take())
        };
        if let Some(e) = error {
            return Err(e);
        }
        // The "container" prints one line on each stream and exits at once.
        if let Some(tx) = logs {
            for (stream, data) in [(LogStream::Stdout, "out\n"), (LogStream::Stderr, "err\n")] {
                let entry = LogEntry {
                    time: None,
                    stream: stream as i32,
                    data: data.into(),
                };
                let _ = tx.send(Ok(entry)).await;
            }
        }
        Ok(Response::new(StartContainerResponse {
            container: Some(container(ContainerState::Running)),
        }))
    }

    async fn run(
        &self,
        r: Request<RunContainerRequest>,
    ) -> Result<Response<RunContainerResponse>, Status> {
        let spec = r.into_inner().spec.unwrap_or_default();
        self.record("run", &spec.image);
        if let Some(e) = self.state().start_error.clone() {
            return Err(e);
        }
        Ok(Response::new(RunContainerResponse {
            container: Some(container(ContainerState::Running)),
        }))
    }

    async fn stop(
        &self,
        r: Request<StopContainerRequest>,
    ) -> Result<Response<StopContainerResponse>, Status> {
        let id = r.into_inner().id;
        self.record("stop", &id);
        if id != "fake" {
            return Err(not_found(&id));
        }
        Ok(Response::new(StopContainerResponse {
            container: Some(container(ContainerState::Exited)),
            killed: true,
        }))
    }

    async fn kill(
        &self,
        r: Request<KillContainerRequest>,
    ) -> Result<Response<KillContainerResponse>, Status> {
        let r = r.into_inner();
        self.record("kill", &format!("{} {}", r.id, r.signal));
        Ok(Response::new(KillContainerResponse {}))
    }

    async fn remove(
        &self,
        r: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        let r = r.into_inner();
        self.record("remove", &format!("{} force={}", r.id, r.force));
        Ok(Response::new(RemoveContainerResponse { id: ID.into() }))
    }

    async fn inspect(
        &self,
        r: Request<InspectContainerRequest>,
    ) -> Result<Response<InspectContainerResponse>, Status> {
        let id = r.into_inner().id;
        self.record("inspect", &id);
        if self.state().removed {
            return Err(not_found(&id));
        }
        let (exit, open_stdin, tty) = {
            let s = self.state();
            (s.start_exit, s.open_stdin, s.tty)
        };
        let mut c = container(ContainerState::Exited);
        c.spec = Some(ContainerSpec {
            open_stdin,
            tty,
            ..Default::default()
        });
        c.exit = exit.map(|exit_code| ExitStatus {
            exit_code,
            ..Default::default()
        });
        Ok(Response::new(InspectContainerResponse {
            container: Some(c),
        }))
    }

    async fn list(
        &self,
        _: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        self.record("list", "");
        Ok(Response::new(ListContainersResponse::default()))
    }

    async fn wait(
        &self,
        r: Request<WaitContainerRequest>,
    ) -> Result<Response<WaitContainerResponse>, Status> {
        let r = r.into_inner();
        let id = r.id;
        let until = if r.condition == WaitCondition::Removed as i32 {
            "removed"
        } else {
            "exited"
        };
        self.record("wait", &format!("{id} until={until}"));
        let exit_code = {
            let mut s = self.state();
            s.removed = s.auto_remove;
            s.exit_code
        };
        Ok(Response::new(WaitContainerResponse {
            id,
            exit: Some(ExitStatus {
                exit_code,
                ..Default::default()
            }),
            started_at: None,
        }))
    }

    async fn pause(
        &self,
        _: Request<PauseContainerRequest>,
    ) -> Result<Response<PauseContainerResponse>, Status> {
        Err(Status::unimplemented("the fake agent does not pause"))
    }

    async fn resume(
        &self,
        _: Request<ResumeContainerRequest>,
    ) -> Result<Response<ResumeContainerResponse>, Status> {
        Err(Status::unimplemented("the fake agent does not resume"))
    }

    async fn update(
        &self,
        _: Request<UpdateContainerRequest>,
    ) -> Result<Response<UpdateContainerResponse>, Status> {
        Err(Status::unimplemented("the fake agent does not update"))
    }

    async fn rename(
        &self,
        _: Request<RenameContainerRequest>,
    ) -> Result<Response<RenameContainerResponse>, Status> {
        Err(Status::unimplemented("the fake agent does not rename"))
    }

    async fn prune(
        &self,
        _: Request<PruneContainersRequest>,
    ) -> Result<Response<PruneContainersResponse>, Status> {
        Err(Status::unimplemented("the fake agent does not prune"))
    }

    type RunAttachedStream = ReceiverStream<Result<berth::v1::RunAttachedResponse, Status>>;

    async fn run_attached(
        &self,
        _: Request<berth::v1::RunAttachedRequest>,
    ) -> Result<Response<Self::RunAttachedStream>, Status> {
        // As an agent from before RunAttached: berthctl falls back to
        // Create, Logs, Start and Wait, which these tests follow.
        Err(Status::unimplemented("the fake agent predates RunAttached"))
    }

    type AttachStream = ReceiverStream<Result<AttachResponse, Status>>;
    type CopyFromStream = ReceiverStream<Result<CopyFromResponse, Status>>;

    async fn stat_path(
        &self,
        _: Request<StatPathRequest>,
    ) -> Result<Response<StatPathResponse>, Status> {
        Err(Status::unimplemented("the fake agent has no cp"))
    }

    async fn copy_from(
        &self,
        _: Request<CopyFromRequest>,
    ) -> Result<Response<Self::CopyFromStream>, Status> {
        Err(Status::unimplemented("the fake agent has no cp"))
    }

    async fn copy_to(
        &self,
        _: Request<tonic::Streaming<CopyToRequest>>,
    ) -> Result<Response<CopyToResponse>, Status> {
        Err(Status::unimplemented("the fake agent has no cp"))
    }

    /// An attach: the container (as created), then with `start` one line
    /// on each stream (both on stdout with a tty), stdin echoed back on
    /// stdout, and the exit (`exit_code`) at close_stdin, or at once
    /// without `stdin`. Resizes and a detach are recorded as calls.
    async fn attach(
        &self,
        r: Request<tonic::Streaming<AttachRequest>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        use attach_request::Request as In;
        use attach_response::Response as Out;
        let mut requests = r.into_inner();
        let open = match requests.message().await? {
            Some(AttachRequest {
                request: Some(In::Open(open)),
            }) => open,
            _ => return Err(Status::invalid_argument("the first request must be open")),
        };
        let size = open
            .terminal_size
            .map(|t| format!(" size={}x{}", t.rows, t.cols))
            .unwrap_or_default();
        self.record(
            "attach",
            &format!(
                "{} stdin={} start={}{size}",
                open.id, open.stdin, open.start
            ),
        );
        let (error, exit_code, open_stdin, tty) = {
            let s = self.state();
            (s.start_error.clone(), s.exit_code, s.open_stdin, s.tty)
        };
        if open.start {
            if let Some(e) = error {
                return Err(e);
            }
        }
        if open.stdin && !open_stdin {
            return Err(Status::failed_precondition("stdin is not open"));
        }
        let (tx, rx) = mpsc::channel(16);
        let mut c = container(ContainerState::Running);
        c.spec = Some(ContainerSpec {
            open_stdin,
            tty,
            ..Default::default()
        });
        let _ = tx.send(Ok(resp(Out::Attached(c)))).await;
        if open.start {
            let _ = tx.send(Ok(resp(Out::Stdout(b"out\n".to_vec())))).await;
            let err = b"err\n".to_vec();
            let err = if tty {
                Out::Stdout(err)
            } else {
                Out::Stderr(err)
            };
            let _ = tx.send(Ok(resp(err))).await;
        }
        let exit = move || {
            resp(Out::Exit(ExitStatus {
                exit_code,
                ..Default::default()
            }))
        };
        let fake = self.clone();
        tokio::spawn(async move {
            if !open.stdin {
                let _ = tx.send(Ok(exit())).await;
                return;
            }
            loop {
                match requests.message().await {
                    Ok(Some(AttachRequest {
                        request: Some(In::Stdin(b)),
                    })) => {
                        let _ = tx.send(Ok(resp(Out::Stdout(b)))).await;
                    }
                    Ok(Some(AttachRequest {
                        request: Some(In::Resize(t)),
                    })) => fake.record("resize", &format!("{}x{}", t.rows, t.cols)),
                    Ok(Some(AttachRequest {
                        request: Some(In::CloseStdin(_)),
                    })) => {
                        let _ = tx.send(Ok(exit())).await;
                        return;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        fake.record("detach", "");
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type LogsStream = ReceiverStream<Result<LogEntry, Status>>;

    async fn logs(&self, r: Request<LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        let r = r.into_inner();
        self.record("logs", &format!("{} follow={}", r.id, r.follow));
        let (tx, rx) = mpsc::channel(8);
        self.state().logs = Some(tx);
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
