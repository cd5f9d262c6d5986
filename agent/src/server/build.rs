//! Builds.Build: the wire side of `crate::build` (options checked, the
//! context upload, progress and errors in their API form).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use berth::v1 as pb;
use berth::v1::builds_server::Builds;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status, Streaming};

use super::convert::image_to_proto;
use super::image_status::image_status;
use crate::build::{BuildError, Builder, Event, Options};
use crate::error::capped;
use crate::events::domain::{self, Action, EventSink, Object};

/// Most tags, build args and labels one build takes.
const MAX_TAGS: usize = 16;
const MAX_ARGS: usize = 256;
const MAX_KEY: usize = 256;
const MAX_ARG_VALUE: usize = 64 << 10;
const MAX_LABEL_VALUE: usize = 4096;
const MAX_PATH: usize = 4096;

/// The Builds service.
pub struct BuildsService {
    builder: Arc<Builder>,
    events: Arc<dyn EventSink>,
}

impl BuildsService {
    /// Serves builds with `builder`, announcing built images on `events`.
    pub fn new(builder: Arc<Builder>, events: Arc<dyn EventSink>) -> Self {
        BuildsService { builder, events }
    }
}

/// Longest the context upload may go without a message before the build
/// is refused (its slot freed).
const UPLOAD_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

type BuildStream = Pin<Box<dyn Stream<Item = Result<pb::BuildProgress, Status>> + Send>>;

#[tonic::async_trait]
impl Builds for BuildsService {
    type BuildStream = BuildStream;

    async fn build(
        &self,
        req: Request<Streaming<pb::BuildRequest>>,
    ) -> Result<Response<BuildStream>, Status> {
        let mut stream = req.into_inner();
        let opts = match stream.next().await {
            Some(Ok(pb::BuildRequest {
                payload: Some(pb::build_request::Payload::Options(o)),
            })) => check_options(o)?,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of a build must carry its options",
                ))
            }
        };
        let Some(slot) = self.builder.try_slot() else {
            return Err(Status::resource_exhausted(format!(
                "{} builds are running on this agent; try again when one ends",
                crate::build::MAX_BUILDS
            )));
        };
        let id = crate::container::spec::new_id();
        let upload = self.builder.upload_path(&id);
        let _remove = RemoveFile(upload.clone());
        let mut file = tokio::fs::File::create(&upload)
            .await
            .map_err(|e| Status::internal(format!("creating the context upload: {e}")))?;
        let mut bytes = 0u64;
        loop {
            // A stalled client must not hold one of the few build slots.
            let msg = match tokio::time::timeout(UPLOAD_IDLE, stream.next()).await {
                Ok(Some(msg)) => msg,
                Ok(None) => break,
                Err(_) => {
                    return Err(Status::deadline_exceeded(format!(
                        "the build context stalled: nothing came for {} s",
                        UPLOAD_IDLE.as_secs()
                    )))
                }
            };
            match msg?.payload {
                Some(pb::build_request::Payload::Context(c)) => {
                    bytes += c.len() as u64;
                    if bytes > crate::build::MAX_CONTEXT_BYTES {
                        return Err(Status::invalid_argument(
                            "the build context is larger than 4 GiB",
                        ));
                    }
                    file.write_all(&c).await.map_err(|e| {
                        Status::internal(format!("writing the context upload: {e}"))
                    })?;
                }
                Some(pb::build_request::Payload::Options(_)) => {
                    return Err(Status::invalid_argument(
                        "build options are only allowed in the first message",
                    ))
                }
                None => {}
            }
        }
        if bytes == 0 {
            return Err(Status::invalid_argument(
                "the build context is empty (send at least the Dockerfile)",
            ));
        }
        file.flush()
            .await
            .map_err(|e| Status::internal(format!("writing the context upload: {e}")))?;
        drop(file);

        let (tx, rx) = mpsc::channel::<Result<pb::BuildProgress, Status>>(64);
        let (etx, mut erx) = mpsc::channel::<Event>(64);
        let builder = self.builder.clone();
        let events = self.events.clone();
        let name = opts
            .tags
            .first()
            .and_then(|t| crate::image::reference::normalize(t).ok())
            .unwrap_or_default();
        tokio::spawn(async move {
            let _slot = slot;
            let _remove = _remove;
            let relay_tx = tx.clone();
            let relay = tokio::spawn(async move {
                while let Some(ev) = erx.recv().await {
                    if relay_tx.send(Ok(progress(ev))).await.is_err() {
                        return;
                    }
                }
            });
            // A client that goes away stops the build (its RUN container
            // is removed), even while a step prints nothing.
            let result = tokio::select! {
                r = builder.build(&id, opts, &upload, etx) => r,
                () = tx.closed() => Err(BuildError::Cancelled),
            };
            // Every progress message goes out before the result.
            let _ = relay.await;
            let last = match result {
                Ok(out) => {
                    events.publish(domain::Event {
                        name,
                        ..domain::Event::new(Object::Image, Action::Built, out.image.id.clone())
                    });
                    Ok(pb::BuildProgress {
                        event: Some(pb::build_progress::Event::Result(pb::BuildResult {
                            image: Some(image_to_proto(&out.image)),
                            cached_steps: out.cached_steps,
                            run_steps: out.run_steps,
                            duration_ms: out.duration_ms,
                        })),
                    })
                }
                Err(e) => Err(build_status(e)),
            };
            let _ = tx.send(last).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Checks and converts the options; every field has its limit.
fn check_options(o: pb::BuildOptions) -> Result<Options, Status> {
    let bad = |m: String| Err(Status::invalid_argument(m));
    if o.tags.len() > MAX_TAGS {
        return bad(format!("at most {MAX_TAGS} tags"));
    }
    for t in &o.tags {
        if let Err(e) = crate::image::reference::normalize(t) {
            return Err(image_status(e));
        }
    }
    if o.dockerfile.len() > MAX_PATH {
        return bad(format!(
            "the Dockerfile path is longer than {MAX_PATH} bytes"
        ));
    }
    if o.build_args.len() > MAX_ARGS || o.labels.len() > MAX_ARGS {
        return bad(format!(
            "at most {MAX_ARGS} build args and {MAX_ARGS} labels"
        ));
    }
    for (k, v) in &o.build_args {
        if k.is_empty() || k.len() > MAX_KEY || v.len() > MAX_ARG_VALUE || k.contains('=') {
            return bad(format!(
                "build arg {:?}: the name must be 1-{MAX_KEY} bytes without '=', the value at most {} KiB",
                capped(k),
                MAX_ARG_VALUE >> 10
            ));
        }
    }
    for (k, v) in &o.labels {
        if k.is_empty() || k.len() > MAX_KEY || v.len() > MAX_LABEL_VALUE {
            return bad(format!(
                "label {:?}: the key must be 1-{MAX_KEY} bytes, the value at most {MAX_LABEL_VALUE}",
                capped(k)
            ));
        }
    }
    if !matches!(o.network.as_str(), "" | "none" | "bridge" | "host") {
        return bad(format!(
            "network {:?}: a build's RUN steps use \"none\", \"bridge\" or \"host\"",
            capped(&o.network)
        ));
    }
    if o.target.len() > MAX_KEY || o.platform.len() > MAX_KEY {
        return bad(format!("target and platform are at most {MAX_KEY} bytes"));
    }
    let source_date_epoch = u64::try_from(o.source_date_epoch)
        .ok()
        .filter(|s| *s < 253_402_300_800)
        .ok_or_else(|| {
            Status::invalid_argument(
                "source_date_epoch must be 0 or more and before the year 10000",
            )
        })?;
    Ok(Options {
        tags: o.tags,
        dockerfile: o.dockerfile,
        build_args: o.build_args.into_iter().collect::<BTreeMap<_, _>>(),
        target: o.target,
        no_cache: o.no_cache,
        platform: o.platform,
        network: o.network,
        source_date_epoch,
        labels: o.labels.into_iter().collect(),
    })
}

fn progress(ev: Event) -> pb::BuildProgress {
    use pb::build_progress::Event as E;
    let event = match ev {
        Event::Step {
            number,
            total,
            stage,
            instruction,
            line,
            cached,
        } => E::Step(pb::BuildStep {
            number,
            total,
            stage,
            instruction,
            line,
            cached,
        }),
        Event::Output {
            number,
            data,
            stderr,
        } => E::Output(pb::BuildOutput {
            number,
            data,
            stderr,
        }),
        Event::Done {
            number,
            cached,
            duration_ms,
            image_id,
        } => E::Done(pb::BuildStepDone {
            number,
            cached,
            duration_ms,
            image_id,
        }),
        Event::Warning(w) => E::Warning(w),
    };
    pb::BuildProgress { event: Some(event) }
}

/// The status a build error ends the stream with.
fn build_status(e: BuildError) -> Status {
    match e {
        // The parser says what it does not take yet in its own words.
        BuildError::Syntax(m) if m.contains("not supported yet") => Status::unimplemented(m),
        BuildError::Invalid(m) | BuildError::Syntax(m) => Status::invalid_argument(m),
        BuildError::Unsupported(_) => Status::new(Code::Unimplemented, e.to_string()),
        // The user's command failed: not the agent's error, nothing to
        // retry (ABORTED would say so), no better code.
        BuildError::RunFailed { .. } => Status::unknown(e.to_string()),
        BuildError::Image(e) => image_status(e),
        BuildError::Container(e) => Status::from(e),
        BuildError::Cancelled => Status::cancelled(e.to_string()),
        BuildError::Layer(_) | BuildError::Io { .. } => {
            if is_no_space(&e) {
                Status::resource_exhausted(e.to_string())
            } else {
                Status::internal(e.to_string())
            }
        }
    }
}

fn is_no_space(e: &BuildError) -> bool {
    let text = e.to_string();
    text.contains("No space left") || text.contains("Disk quota exceeded")
}

/// Deletes the context upload however the build ends.
struct RemoveFile(std::path::PathBuf);

impl Drop for RemoveFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
