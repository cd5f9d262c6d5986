//! `image import`: uploads an image archive (OCI layout or `docker save`).

use std::sync::Arc;

use berth::v1::{
    images_client::ImagesClient, import_image_request::Payload, ImportImageRequest, ImportOptions,
};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::cli::ImportArgs;
use crate::error::{Error, Result};
use crate::fleet::{host_table, split, with_host, Fleet, Member};
use crate::output::{self, print_json_line};

/// `image import FILE`: to one agent the file is streamed as it is read;
/// to many it is read once and uploaded to all concurrently.
pub async fn import(f: &Fleet, args: ImportArgs) -> Result<()> {
    if f.is_single() {
        return import_one(f.first()?, f.json(), args).await;
    }
    import_many(f, args).await
}

/// Size of each uploaded piece of an archive: large enough to keep the
/// per-message overhead small, well under gRPC's default 4 MiB limit.
pub const CHUNK_SIZE: usize = 1 << 20;

/// The first message of an Import: the options.
pub fn import_options(reference: Option<&str>) -> ImportImageRequest {
    ImportImageRequest {
        payload: Some(Payload::Options(ImportOptions {
            reference: reference.unwrap_or_default().to_string(),
        })),
    }
}

/// Reads `input` in chunks of [`CHUNK_SIZE`] into `tx` as Import messages,
/// after the options. A read error is sent on `failed` and the request
/// stream is left open, so that the caller can abandon the call (which
/// cancels it on the agent) instead of ending the upload early and having a
/// truncated archive imported.
async fn pump(
    mut input: impl AsyncRead + Unpin,
    first: ImportImageRequest,
    tx: mpsc::Sender<ImportImageRequest>,
    failed: oneshot::Sender<std::io::Error>,
) {
    if tx.send(first).await.is_err() {
        return;
    }
    loop {
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut filled = 0;
        // Fill whole chunks: pipes return short reads.
        while filled < CHUNK_SIZE {
            match input.read(&mut buf[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = failed.send(e);
                    // Keep `tx` alive until the caller drops the call.
                    std::future::pending::<()>().await;
                    return;
                }
            }
        }
        if filled == 0 {
            return;
        }
        buf.truncate(filled);
        let msg = ImportImageRequest {
            payload: Some(Payload::Chunk(buf)),
        };
        if tx.send(msg).await.is_err() || filled < CHUNK_SIZE {
            return;
        }
    }
}

/// `image import FILE` to one agent: streams the archive as it is read and
/// prints what was imported.
async fn import_one(m: &Member, json: bool, args: ImportArgs) -> Result<()> {
    // Open the file first: a typo in its name should not need an agent.
    let input: Box<dyn AsyncRead + Unpin + Send> = if args.file == "-" {
        Box::new(tokio::io::stdin())
    } else {
        Box::new(
            tokio::fs::File::open(&args.file)
                .await
                .map_err(|e| Error::Message(format!("cannot open {}: {e}", args.file)))?,
        )
    };
    let mut client = ImagesClient::new(m.channel().await?)
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES);
    let (tx, rx) = mpsc::channel(2);
    let (failed_tx, failed_rx) = oneshot::channel();
    let reader = tokio::spawn(pump(
        input,
        import_options(args.reference.as_deref()),
        tx,
        failed_tx,
    ));
    let result = tokio::select! {
        r = client.import(ReceiverStream::new(rx)) => r.map_err(Error::from),
        Ok(e) = failed_rx => Err(Error::Message(format!("cannot read {}: {e}", args.file))),
    };
    reader.abort();
    let images = result?.into_inner().images;
    for image in &images {
        if json {
            print_json_line(&output::message_json(image)?);
        } else if image.references.is_empty() {
            println!("Imported: {}", image.id);
        } else {
            for r in &image.references {
                println!("Imported: {r} ({})", image.id);
            }
        }
    }
    Ok(())
}

/// Reads the archive once, whatever the number of hosts.
async fn read_archive(file: &str) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    let r = if file == "-" {
        tokio::io::stdin().read_to_end(&mut data).await
    } else {
        match tokio::fs::File::open(file).await {
            Ok(mut f) => f.read_to_end(&mut data).await,
            Err(e) => return Err(Error::Message(format!("cannot open {file}: {e}"))),
        }
    };
    r.map_err(|e| Error::Message(format!("cannot read {file}: {e}")))?;
    Ok(data)
}

/// `image import` to many hosts, concurrently, from one read of the file.
async fn import_many(f: &Fleet, args: ImportArgs) -> Result<()> {
    let data = Arc::new(read_archive(&args.file).await?);
    let reference = args.reference.clone();
    let results = f
        .each(|_, ch| {
            let data = data.clone();
            let first = import_options(reference.as_deref());
            async move {
                let chunks = data.len().div_ceil(CHUNK_SIZE);
                let body = (0..chunks).map(move |i| {
                    let end = ((i + 1) * CHUNK_SIZE).min(data.len());
                    ImportImageRequest {
                        payload: Some(Payload::Chunk(data[i * CHUNK_SIZE..end].to_vec())),
                    }
                });
                let msgs = tokio_stream::iter(std::iter::once(first).chain(body));
                Ok(ImagesClient::new(ch)
                    .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                    .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                    .import(msgs)
                    .await?
                    .into_inner()
                    .images)
            }
        })
        .await;
    let (ok, fails) = split(results);
    if f.json() {
        for (m, images) in &ok {
            for i in images {
                print_json_line(&with_host(&m.name, output::message_json(i)?));
            }
        }
    } else {
        let mut rows = Vec::new();
        for (m, images) in &ok {
            for i in images {
                let refs = if i.references.is_empty() {
                    "<none>".to_string()
                } else {
                    i.references.join(", ")
                };
                rows.push((
                    m.name.clone(),
                    vec![output::short_image_id(&i.id).to_string(), refs],
                ));
            }
        }
        print!("{}", host_table(&["IMAGE ID", "IMPORTED"], rows));
    }
    fails.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_come_first() {
        assert_eq!(
            import_options(Some("busybox:test")).payload,
            Some(Payload::Options(ImportOptions {
                reference: "busybox:test".into()
            }))
        );
        assert_eq!(
            import_options(None).payload,
            Some(Payload::Options(ImportOptions {
                reference: String::new()
            }))
        );
    }

    async fn chunks_of(data: Vec<u8>) -> Vec<usize> {
        let (tx, mut rx) = mpsc::channel(4);
        let (ftx, _frx) = oneshot::channel();
        let task = tokio::spawn(pump(
            std::io::Cursor::new(data),
            import_options(None),
            tx,
            ftx,
        ));
        let mut sizes = Vec::new();
        let first = rx.recv().await.and_then(|m| m.payload);
        assert!(matches!(first, Some(Payload::Options(_))));
        while let Some(m) = rx.recv().await {
            match m.payload {
                Some(Payload::Chunk(c)) => sizes.push(c.len()),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(task.await.is_ok());
        sizes
    }

    #[tokio::test]
    async fn archives_are_sent_in_mib_chunks() {
        assert_eq!(chunks_of(vec![]).await, Vec::<usize>::new());
        assert_eq!(chunks_of(vec![1; 10]).await, [10]);
        assert_eq!(chunks_of(vec![1; CHUNK_SIZE]).await, [CHUNK_SIZE]);
        assert_eq!(
            chunks_of(vec![1; 2 * CHUNK_SIZE + 5]).await,
            [CHUNK_SIZE, CHUNK_SIZE, 5]
        );
    }
}
