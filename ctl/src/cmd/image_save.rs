//! `image save` (`save`): the agent streams an archive of images; berthctl
//! writes it to a file or to standard output.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use berth::v1::{images_client::ImagesClient, SaveFormat, SaveImagesRequest};
use tokio_stream::StreamExt;

use crate::cli::{ImageSaveArgs, SaveFormatArg};
use crate::error::{Error, Result};
use crate::fleet::Member;

/// `image save IMAGE...`: the archive to `-o FILE` (written beside it and
/// renamed once complete, so a failed save leaves no file; a FILE that is
/// a device or FIFO is written in place), or to standard
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
            // Blocking writes, as for standard output: the CLI does nothing
            // else meanwhile. Dropping `out` on an error removes the
            // temporary file.
            let mut out = Output::create(&file)?;
            while let Some(msg) = stream.next().await {
                out.write_all(&msg?.chunk)?;
            }
            out.finish()
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

/// Where `-o FILE` is written.
enum Output {
    /// FILE exists and is not a regular file (`/dev/null`, a FIFO,
    /// `/dev/stdout`): written in place, as replacing it by a rename would
    /// destroy a device node.
    Direct(std::fs::File, PathBuf),
    /// A temporary file beside FILE (same file system, so the final rename
    /// is atomic), renamed over FILE once complete so a failed save leaves
    /// no file. `tempfile` creates it with O_EXCL, mode 0600 and a random
    /// name, so nothing planted at a guessable name is followed; dropped
    /// unpersisted, it is removed.
    Temp(tempfile::NamedTempFile, PathBuf),
}

impl Output {
    /// Opens the output for FILE (see [`Output`]).
    fn create(file: &Path) -> Result<Self> {
        // metadata follows symlinks: `-o /dev/stdout` is written directly.
        if let Ok(meta) = std::fs::metadata(file) {
            if !meta.is_file() {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(file)
                    .map_err(|e| Error::Message(format!("opening {}: {e}", file.display())))?;
                return Ok(Output::Direct(f, file.to_path_buf()));
            }
        }
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "archive".into());
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(dir)
            .map_err(|e| {
                Error::Message(format!(
                    "creating a temporary file in {}: {e}",
                    dir.display()
                ))
            })?;
        Ok(Output::Temp(tmp, file.to_path_buf()))
    }

    /// Appends a chunk of the archive.
    fn write_all(&mut self, chunk: &[u8]) -> Result<()> {
        let (r, path) = match self {
            Output::Direct(f, p) => (f.write_all(chunk), p.as_path()),
            Output::Temp(t, p) => (t.as_file_mut().write_all(chunk), p.as_path()),
        };
        r.map_err(|e| Error::Message(format!("writing {}: {e}", path.display())))
    }

    /// Completes the archive: synced and renamed over FILE.
    fn finish(self) -> Result<()> {
        match self {
            Output::Direct(mut f, p) => f
                .flush()
                .map_err(|e| Error::Message(format!("writing {}: {e}", p.display()))),
            Output::Temp(t, p) => {
                t.as_file()
                    .sync_all()
                    .map_err(|e| Error::Message(format!("writing {}: {e}", p.display())))?;
                // On failure the error holds the temporary file, and
                // dropping it removes it.
                t.persist(&p).map(drop).map_err(|e| {
                    Error::Message(format!("renaming to {}: {}", p.display(), e.error))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileTypeExt;

    use super::*;

    /// Names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn an_archive_replaces_the_file_once_complete() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app.tar");
        std::fs::write(&file, b"old").unwrap();
        let mut out = Output::create(&file).unwrap();
        out.write_all(b"new ").unwrap();
        out.write_all(b"archive").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"old", "replaced early");
        out.finish().unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"new archive");
        assert_eq!(names(dir.path()), ["app.tar"]);
    }

    #[test]
    fn a_failed_save_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Output::create(&dir.path().join("app.tar")).unwrap();
        out.write_all(b"part").unwrap();
        drop(out);
        assert!(names(dir.path()).is_empty());
    }

    /// `-o /dev/null` writes to the device; renaming over it would replace
    /// the device node with a regular file (as root).
    #[test]
    fn a_device_is_written_in_place() {
        let mut out = Output::create(Path::new("/dev/null")).unwrap();
        assert!(matches!(out, Output::Direct(..)));
        out.write_all(b"archive").unwrap();
        out.finish().unwrap();
        let meta = std::fs::symlink_metadata("/dev/null").unwrap();
        assert!(meta.file_type().is_char_device(), "/dev/null was replaced");
    }

    /// A symlink planted where the old code put its temporary file (a
    /// predictable name) is neither followed nor replaced.
    #[test]
    fn a_planted_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let planted = dir
            .path()
            .join(format!(".app.tar.partial-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let file = dir.path().join("app.tar");
        let mut out = Output::create(&file).unwrap();
        out.write_all(b"archive").unwrap();
        out.finish().unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&file).unwrap(), b"archive");
        assert!(std::fs::symlink_metadata(&planted)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(names(dir.path()).len(), 3);
    }
}
