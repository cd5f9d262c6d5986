//! `image save` (`save`): the agent streams an archive of images; berthctl
//! writes it to a file or to standard output.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use berth::v1::{images_client::ImagesClient, SaveFormat, SaveImagesRequest};
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;

use crate::cli::{ImageSaveArgs, SaveFormatArg};
use crate::error::{Error, Result};
use crate::fleet::Member;

/// `image save IMAGE...`: the archive to `-o FILE` (written beside it and
/// renamed once complete, so a failed save leaves no file), or to standard
/// output, which must not be a terminal (as `docker save` refuses).
pub async fn save(m: &Member, args: ImageSaveArgs) -> Result<()> {
    if args.file.is_none() && std::io::stdout().is_terminal() {
        return Err(Error::Message(
            "refusing to write an archive to a terminal: use -o FILE or redirect standard output"
                .into(),
        ));
    }
    let format = match args.format {
        SaveFormatArg::Docker => SaveFormat::DockerArchive,
        SaveFormatArg::Oci => SaveFormat::OciArchive,
    };
    let mut stream = ImagesClient::new(m.channel().await?)
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
        .save(SaveImagesRequest {
            images: args.images,
            format: format as i32,
        })
        .await?
        .into_inner();
    match args.file {
        Some(file) => {
            let partial = partial_path(&file);
            let result = async {
                let mut out = tokio::fs::File::create(&partial)
                    .await
                    .map_err(|e| Error::Message(format!("creating {}: {e}", partial.display())))?;
                while let Some(msg) = stream.next().await {
                    out.write_all(&msg?.chunk).await.map_err(|e| {
                        Error::Message(format!("writing {}: {e}", partial.display()))
                    })?;
                }
                out.sync_all()
                    .await
                    .map_err(|e| Error::Message(format!("writing {}: {e}", partial.display())))?;
                tokio::fs::rename(&partial, &file)
                    .await
                    .map_err(|e| Error::Message(format!("renaming to {}: {e}", file.display())))
            }
            .await;
            if result.is_err() {
                let _ = std::fs::remove_file(&partial);
            }
            result
        }
        None => {
            let mut out = std::io::stdout().lock();
            while let Some(msg) = stream.next().await {
                out.write_all(&msg?.chunk)
                    .map_err(|e| Error::Message(format!("writing the archive: {e}")))?;
            }
            out.flush()
                .map_err(|e| Error::Message(format!("writing the archive: {e}")))
        }
    }
}

/// Where the archive is written until it is complete: a hidden name in
/// FILE's directory, so the final rename stays on one file system.
fn partial_path(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    file.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partial_file_sits_beside_the_archive() {
        let p = partial_path(Path::new("/tmp/x/app.tar"));
        assert_eq!(p.parent(), Some(Path::new("/tmp/x")));
        assert!(p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".app.tar.partial-")));
    }
}
