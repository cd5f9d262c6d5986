//! Containers.StatPath, CopyFrom and CopyTo on the wire: requests checked,
//! the container's root found (`container/copy.rs`), the file work handed
//! to the blocking pool (`crate::copy`) through bounded channels.

use std::pin::Pin;
use std::sync::Arc;

use berth::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Status, Streaming};

use crate::container::{CopyAccess as Access, Manager};
use crate::copy::{self, ContainerRoot, CopyError, ExtractOptions, PathStat, CHUNK_MAX};
use crate::error::Error;

/// Most bytes of a container key (id, prefix or name) in a request.
pub const MAX_KEY: usize = 256;
/// Longest a CopyTo may go without a message before it is ended.
const IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// The stream CopyFrom answers with.
pub type CopyFromStream = Pin<Box<dyn Stream<Item = Result<pb::CopyFromResponse, Status>> + Send>>;

fn invalid(field: &'static str, reason: &'static str) -> Status {
    Error::InvalidRequest { field, reason }.into()
}

/// The root of container `id` for a copy of `path` (checked already). A
/// stopped container's root for writing holds its lifecycle lock
/// (`ContainerRoot::hold`): keep it until the copy is done.
async fn root(
    mgr: &Manager,
    id: &str,
    path: &str,
    access: Access,
) -> Result<ContainerRoot, Status> {
    if id.is_empty() {
        return Err(invalid("id", "a container id or name is required"));
    }
    if id.len() > MAX_KEY {
        return Err(invalid("id", "a container key is at most 256 bytes"));
    }
    Ok(mgr.copy_root(id, path, access).await?)
}

fn stat_to_proto(s: PathStat) -> pb::PathStat {
    pb::PathStat {
        name: s.name,
        size: s.size,
        mode: s.mode,
        mtime: Some(prost_types::Timestamp {
            seconds: s.mtime.0,
            nanos: i32::try_from(s.mtime.1).unwrap_or(0),
        }),
        link_target: s.link_target,
    }
}

async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, CopyError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(what, e))?
        .map_err(Status::from)
}

/// StatPath.
pub async fn stat_path(
    mgr: &Manager,
    req: pb::StatPathRequest,
) -> Result<pb::StatPathResponse, Status> {
    copy::path::check(&req.path)?;
    let root = root(mgr, &req.id, &req.path, Access::Read).await?;
    let resolved = blocking("describing the path", move || {
        copy::resolve_source(&root.root, &req.path)
    })
    .await?;
    Ok(pb::StatPathResponse {
        stat: Some(stat_to_proto(resolved.stat)),
    })
}

/// CopyFrom: the stat, then the archive's chunks.
pub async fn copy_from(mgr: &Manager, req: pb::CopyFromRequest) -> Result<CopyFromStream, Status> {
    use pb::copy_from_response::Response as Out;
    copy::path::check(&req.path)?;
    let root = root(mgr, &req.id, &req.path, Access::Read).await?;
    let ids = root.ids;
    let resolved = blocking("resolving the path", move || {
        copy::resolve_source(&root.root, &req.path)
    })
    .await?;
    let first = pb::CopyFromResponse {
        response: Some(Out::Stat(stat_to_proto(resolved.stat.clone()))),
    };
    let (chunks, done) = copy::stream_archive(resolved, ids);
    let chunks = tokio_stream::wrappers::ReceiverStream::new(chunks);
    let rest = chunks.map(|c| match c {
        Ok(data) => Ok(pb::CopyFromResponse {
            response: Some(Out::Data(data)),
        }),
        Err(e) => Err(Status::from(e)),
    });
    let rest = super::cut_short::or_cut_short(rest, done);
    Ok(Box::pin(tokio_stream::once(Ok(first)).chain(rest)))
}

/// CopyTo: the open message, then chunks extracted as they come.
pub async fn copy_to(
    mgr: Arc<Manager>,
    mut requests: Streaming<pb::CopyToRequest>,
) -> Result<pb::CopyToResponse, Status> {
    use pb::copy_to_request::Request as In;
    let open = match requests.message().await? {
        Some(pb::CopyToRequest {
            request: Some(In::Open(o)),
        }) => o,
        _ => return Err(invalid("open", "the first message must be open")),
    };
    copy::path::check(&open.path)?;
    let root = root(&mgr, &open.id, &open.path, Access::Write).await?;
    let opts = ExtractOptions {
        copy_uid_gid: open.copy_uid_gid,
        no_overwrite_dir_non_dir: open.no_overwrite_dir_non_dir,
        ids: root.ids,
    };
    let path = open.path;
    // A stopped container's hold (its lifecycle lock) goes with the work
    // on its root, and is let go only once nothing is open beneath that
    // root: not when this call is dropped (a client gone) while the
    // blocking work still runs.
    let hold = root.hold;
    let (dir, hold) = blocking("resolving the path", move || {
        Ok((copy::resolve_dir(&root.root, &path)?, hold))
    })
    .await?;
    let (tx, rx) = mpsc::channel(copy::CHUNKS_AHEAD);
    let work = tokio::task::spawn_blocking(move || {
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            copy::extract(dir, copy::ChunkReader::new(rx), opts)
        }))
        .unwrap_or_else(|_| Err(CopyError::Aborted("the extraction panicked".into())));
        drop(hold);
        done
    });
    // Feeds the extraction until the client's stream ends, it fails, or
    // the extraction stops reading (done, or failed: its error is the
    // call's).
    let mut refused = None;
    loop {
        let msg = match tokio::time::timeout(IDLE, requests.message()).await {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => break,
            Ok(Err(s)) => {
                let _ = tx.send(Err(s.message().chars().take(64).collect())).await;
                break;
            }
            // A stalled client must not hold the container (a stopped one
            // cannot start meanwhile) or the extraction for good.
            Err(_) => {
                refused = Some(Status::deadline_exceeded(
                    "the archive stalled: nothing came for 60 s",
                ));
                let _ = tx.send(Err("nothing came for 60 s".into())).await;
                break;
            }
        };
        match msg.request {
            Some(In::Data(d)) if d.len() > CHUNK_MAX => {
                refused = Some(invalid("data", "a chunk is at most 1 MiB"));
                let _ = tx.send(Err("a chunk over 1 MiB".into())).await;
                break;
            }
            Some(In::Data(d)) => {
                // The extraction stopped reading: its result is the call's.
                let stopped = tx.send(Ok(d.into())).await.is_err();
                if stopped {
                    break;
                }
            }
            Some(In::Open(_)) => {
                refused = Some(invalid("open", "open is only allowed in the first message"));
                let _ = tx.send(Err("a second open".into())).await;
                break;
            }
            None => {}
        }
    }
    drop(tx);
    let result = work
        .await
        .map_err(|e| Error::internal("the extraction task", e))?;
    if let Some(s) = refused {
        return Err(s);
    }
    let done = result?;
    Ok(pb::CopyToResponse {
        entries: done.entries,
        bytes: done.bytes,
    })
}
