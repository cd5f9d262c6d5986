//! `cp SRC DST`: files and directories between a container and here, as
//! `docker cp` (Docker's rules for destinations: `cp_rules.rs`; the local
//! tar: `cp_local.rs`). The agent resolves every container path inside the
//! container's root (`Containers.StatPath`, `CopyFrom`, `CopyTo`).

use std::io::{IsTerminal, Read, Write};

use berth::v1::containers_client::ContainersClient;
use berth::v1::{
    copy_from_response, copy_to_request, CopyFromRequest, CopyToOpen, CopyToRequest, PathStat,
    StatPathRequest,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use super::cp_local::{self, ChunkReader, ChunkWriter, CHUNKS_AHEAD, CHUNK_BYTES};
use super::cp_rules::{self, Info, Side};
use crate::cli::CpArgs;
use crate::error::{Error, Result};
use crate::fleet::Member;

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

fn client(ch: Channel) -> ContainersClient<Channel> {
    ContainersClient::new(ch)
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
}

fn local(what: &str, path: &str, e: std::io::Error) -> Error {
    Error::Message(format!("{what} {path}: {e}"))
}

/// `cp [-a] [-L] SRC DST`.
pub async fn cp(m: &Member, a: CpArgs) -> Result<()> {
    match (cp_rules::split_arg(&a.src), cp_rules::split_arg(&a.dst)) {
        (Side::Container { .. }, Side::Container { .. }) => Err(Error::Message(
            "copying between containers is not supported".into(),
        )),
        (Side::Local(_), Side::Local(_)) => Err(Error::Message(
            "one of SRC and DST must be CONTAINER:PATH".into(),
        )),
        (Side::Container { container, path }, Side::Local(dst)) => {
            copy_out(client(m.channel().await?), &container, &path, &dst, &a).await
        }
        (Side::Local(src), Side::Container { container, path }) => {
            copy_in(client(m.channel().await?), &src, &container, &path, &a).await
        }
    }
}

async fn stat(
    c: &mut ContainersClient<Channel>,
    id: &str,
    path: &str,
) -> std::result::Result<PathStat, tonic::Status> {
    let r = c
        .stat_path(StatPathRequest {
            id: id.into(),
            path: path.into(),
        })
        .await?;
    Ok(r.into_inner().stat.unwrap_or_default())
}

/// CONTAINER:PATH to a local path or stdout.
async fn copy_out(
    mut c: ContainersClient<Channel>,
    id: &str,
    path: &str,
    dst: &str,
    a: &CpArgs,
) -> Result<()> {
    let mut src_path = path.to_string();
    let mut rebase_name = None;
    if a.follow_link {
        let st = stat(&mut c, id, path).await?;
        if st.mode & S_IFMT == S_IFLNK {
            let target = cp_rules::link_target_path(path, &st.link_target);
            let (resolved, rebase) = cp_rules::rebase_name(path, &target);
            src_path = resolved;
            rebase_name = rebase;
        }
    }
    if dst == "-" && std::io::stdout().is_terminal() {
        return Err(Error::Message(
            "refusing to write an archive to a terminal: redirect standard output".into(),
        ));
    }
    let mut stream = c
        .copy_from(CopyFromRequest {
            id: id.into(),
            path: src_path.clone(),
        })
        .await?
        .into_inner();
    let stat = match stream.next().await.transpose()? {
        Some(berth::v1::CopyFromResponse {
            response: Some(copy_from_response::Response::Stat(s)),
        }) => s,
        _ => {
            return Err(Error::Message(
                "the agent sent no description of the path".into(),
            ))
        }
    };
    if dst == "-" {
        let mut out = std::io::stdout().lock();
        while let Some(msg) = stream.next().await {
            if let Some(copy_from_response::Response::Data(d)) = msg?.response {
                out.write_all(&d)
                    .map_err(|e| Error::Message(format!("writing the archive: {e}")))?;
            }
        }
        return out
            .flush()
            .map_err(|e| Error::Message(format!("writing the archive: {e}")));
    }
    let src = Info {
        path: src_path,
        exists: true,
        is_dir: stat.mode & S_IFMT == S_IFDIR,
        rebase_name,
    };
    let dst_info = cp_local::dest_info(dst).map_err(|e| local("destination", dst, e))?;
    let plan =
        cp_rules::prepare(&src, &dst_info).map_err(|e| Error::Message(format!("{dst}: {e}")))?;
    let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
    let dir = std::path::PathBuf::from(&plan.dir);
    let keep_owners = a.archive;
    let unpack = tokio::task::spawn_blocking(move || {
        cp_local::extract(ChunkReader::new(rx), &dir, plan.rebase, keep_owners)
    });
    let mut failed = None;
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(m) => {
                let Some(copy_from_response::Response::Data(d)) = m.response else {
                    continue;
                };
                // The extraction stopped reading: its result says why.
                let stopped = tx.send(d).await.is_err();
                if stopped {
                    break;
                }
            }
            Err(s) => {
                failed = Some(s);
                break;
            }
        }
    }
    drop(tx);
    let unpacked = unpack
        .await
        .map_err(|e| Error::Message(format!("extracting: {e}")))?;
    if let Some(s) = failed {
        return Err(s.into());
    }
    unpacked.map_err(|e| local("extracting into", dst, e))
}

/// A local path or stdin to CONTAINER:PATH.
async fn copy_in(
    mut c: ContainersClient<Channel>,
    src: &str,
    id: &str,
    path: &str,
    a: &CpArgs,
) -> Result<()> {
    // The destination as the container has it; a symlink there is
    // followed once (its target is resolved in the container's root).
    let mut dst = Info {
        path: path.to_string(),
        ..Info::default()
    };
    let mut found = stat(&mut c, id, path).await;
    if let Ok(st) = &found {
        if st.mode & S_IFMT == S_IFLNK {
            dst.path = cp_rules::link_target_path(path, &st.link_target);
            found = stat(&mut c, id, &dst.path).await;
        }
    }
    match found {
        Ok(st) => {
            let kind = st.mode & S_IFMT;
            if kind != S_IFDIR && kind != S_IFREG {
                return Err(Error::Message(format!(
                    "destination \"{id}:{path}\" must be a directory or a regular file"
                )));
            }
            dst.exists = true;
            dst.is_dir = kind == S_IFDIR;
        }
        Err(s) if s.code() == tonic::Code::NotFound && is_path_not_found(&s) => {}
        Err(s) => return Err(s.into()),
    }
    let (tx, rx) = mpsc::channel::<Vec<u8>>(CHUNKS_AHEAD);
    let (dir, producer) = if src == "-" {
        if !dst.is_dir {
            return Err(Error::Message(format!(
                "destination \"{id}:{path}\" must be a directory when copying from stdin"
            )));
        }
        let producer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; CHUNK_BYTES];
            loop {
                let n = stdin.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                if tx.blocking_send(buf[..n].to_vec()).is_err() {
                    return Ok(());
                }
            }
        });
        (dst.path.clone(), producer)
    } else {
        let info =
            cp_local::source_info(src, a.follow_link).map_err(|e| local("source", src, e))?;
        let plan = cp_rules::prepare(&info, &dst)
            .map_err(|e| Error::Message(format!("{id}:{path}: {e}")))?;
        let (_, src_base) = cp_rules::split_dir_entry(&info.path);
        let top = match &plan.rebase {
            Some((_, to)) => to.clone(),
            None => src_base,
        };
        let producer = tokio::task::spawn_blocking(move || {
            cp_local::write_tar(&info, &top, ChunkWriter::new(tx))
        });
        (plan.dir, producer)
    };
    let open = CopyToRequest {
        request: Some(copy_to_request::Request::Open(CopyToOpen {
            id: id.into(),
            path: dir,
            copy_uid_gid: a.archive,
            no_overwrite_dir_non_dir: true,
        })),
    };
    let data = tokio_stream::wrappers::ReceiverStream::new(rx).map(|d| CopyToRequest {
        request: Some(copy_to_request::Request::Data(d)),
    });
    let sent = c.copy_to(tokio_stream::once(open).chain(data)).await;
    let produced = producer
        .await
        .map_err(|e| Error::Message(format!("archiving: {e}")))?;
    // A local failure explains a truncated upload; else the agent's word.
    match (produced, sent) {
        (Err(e), _) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(local("archiving", src, e))
        }
        (_, Err(s)) => Err(s.into()),
        (_, Ok(_)) => Ok(()),
    }
}

/// Whether a NOT_FOUND is about the path (not the container).
fn is_path_not_found(s: &tonic::Status) -> bool {
    use tonic_types::StatusExt;
    s.get_details_error_info()
        .is_some_and(|i| i.reason == "PATH_NOT_FOUND")
}
