//! Writing an archive as a stream of chunks: a blocking task builds the tar
//! straight from the plan's open blob files into a bounded channel, so a
//! save holds at most a few chunks in memory whatever the image's size, and
//! a client that stops reading stops the task.

use std::io::{self, Read, Write};

use tokio::sync::mpsc;

use super::documents::{docker_manifest, oci_index, DockerEntry, OCI_LAYOUT};
use super::{blob_member, SaveFormat, SavePlan};
use crate::chunk_writer::{ChunkWriter, Completion};
use crate::image::ImageError;

/// Size of the chunks an archive is streamed in (under gRPC's default 4 MiB
/// message limit).
pub const CHUNK_BYTES: usize = 1 << 20;

/// Chunks queued ahead of the client: with [`CHUNK_BYTES`], what a save
/// holds in memory at most (plus the one being filled).
const CHUNKS_AHEAD: usize = 4;

/// Streams the archive of `plan`: each item is the next chunk, or the error
/// that ended the archive (after which nothing more comes). Dropping the
/// receiver stops the writer at its next chunk. The [`Completion`] is set
/// once the stream is whole; a channel that closes without it was cut
/// short (a client that took nothing for the stall timeout).
pub fn stream_archive(plan: SavePlan) -> (mpsc::Receiver<Result<Vec<u8>, ImageError>>, Completion) {
    let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
    let done = Completion::new();
    let whole = done.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter::new(tx, CHUNK_BYTES);
        // A panic must still end the stream with an error: the channel just
        // closing would end the gRPC call with OK and a truncated archive.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write_archive(plan, &mut out).and_then(|()| out.flush_chunk())
        }))
        .unwrap_or_else(|_| Err(io::Error::other("the archive writer panicked")));
        match result {
            Ok(()) => whole.set(),
            // A client that went away is not an error worth reporting, and
            // one that stalled has no room left for it.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::TimedOut
                ) =>
            {
                tracing::debug!("image save ended early: {e}");
            }
            Err(e) => {
                if out.send_error(ImageError::io("writing the archive", e)) {
                    whole.set();
                }
            }
        }
    });
    (rx, done)
}

/// Reads exactly `left` bytes of a blob: fewer (the file shrank since it
/// was opened) is an error, as tar would otherwise pad the member with
/// zeros and the archive would hold a blob that does not match its digest.
struct Exact<'a> {
    inner: io::Take<&'a std::fs::File>,
    digest: &'a str,
    left: u64,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "layer blob {} ended {} bytes short of its size",
                    self.digest, self.left
                ),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Writes the whole archive of `plan` to `out`.
fn write_archive(plan: SavePlan, out: &mut dyn Write) -> io::Result<()> {
    let mut tar = tar::Builder::new(out);
    match plan.format {
        SaveFormat::DockerArchive => {
            let entries: Vec<DockerEntry<'_>> = plan
                .images
                .iter()
                .map(|i| DockerEntry {
                    config: &i.record.id,
                    references: &i.references,
                    layers: i.layers.iter().map(|(d, _)| d.digest.as_str()).collect(),
                })
                .collect();
            append_bytes(&mut tar, "manifest.json", &docker_manifest(&entries))?;
        }
        SaveFormat::OciArchive => {
            append_bytes(&mut tar, "oci-layout", OCI_LAYOUT)?;
            append_bytes(&mut tar, "index.json", &oci_index(&plan.images))?;
        }
    }
    append_dir(&mut tar, "blobs/")?;
    append_dir(&mut tar, "blobs/sha256/")?;
    let mut written: Vec<&str> = Vec::new();
    for i in &plan.images {
        let mut small = vec![(i.record.id.as_str(), i.config.as_slice())];
        // A Docker archive has no manifest blobs (manifest.json stands in).
        if plan.format == SaveFormat::OciArchive {
            small.push((i.record.manifest_digest.as_str(), i.manifest.as_slice()));
        }
        for (digest, data) in small {
            if !written.contains(&digest) {
                append_bytes(&mut tar, &blob_member(digest), data)?;
                written.push(digest);
            }
        }
        for (d, file) in &i.layers {
            if written.contains(&d.digest.as_str()) {
                continue;
            }
            let mut h = header(tar::EntryType::Regular, d.size, 0o644);
            // The size was checked against the file when it was opened; take
            // exactly that many bytes so a header never lies.
            let mut r = Exact {
                inner: Read::take(file, d.size),
                digest: &d.digest,
                left: d.size,
            };
            tar.append_data(&mut h, blob_member(&d.digest), &mut r)?;
            written.push(&d.digest);
        }
    }
    tar.into_inner()?.flush()
}

/// A header with fixed ownership, mode and time, so the same images always
/// make the same archive.
fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8]) -> io::Result<()> {
    let mut h = header(tar::EntryType::Regular, data.len() as u64, 0o644);
    tar.append_data(&mut h, name, data)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    let mut h = header(tar::EntryType::Directory, 0, 0o755);
    tar.append_data(&mut h, name, io::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_fixed_and_ustar() {
        let mut b = tar::Builder::new(Vec::new());
        append_bytes(&mut b, "blobs/sha256/ab", b"hello").expect("append");
        append_dir(&mut b, "blobs/").expect("dir");
        let data = b.into_inner().expect("tar");
        let mut ar = tar::Archive::new(data.as_slice());
        let entries: Vec<(String, u64, u32, u64, bool)> = ar
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                let h = e.header();
                (
                    e.path().expect("path").display().to_string(),
                    h.size().expect("size"),
                    h.mode().expect("mode"),
                    h.mtime().expect("mtime"),
                    h.as_ustar().is_some(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("blobs/sha256/ab".to_string(), 5, 0o644, 0, true),
                ("blobs/".to_string(), 0, 0o755, 0, true)
            ]
        );
    }

    /// A blob shorter than its descriptor ends the stream with an error,
    /// not with a member padded out with zeros.
    #[tokio::test]
    async fn a_short_blob_ends_the_stream_with_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blob");
        std::fs::write(&path, b"short").expect("write");
        let file = std::fs::File::open(&path).expect("open");
        let image = super::super::SaveImage {
            record: crate::image::ImageRecord {
                id: "sha256:cc".into(),
                references: Vec::new(),
                manifest_digest: "sha256:mm".into(),
                size_bytes: 0,
                created: None,
                imported_at_unix_nanos: 0,
                os: "linux".into(),
                architecture: "amd64".into(),
                config: Default::default(),
                layers: Vec::new(),
                build_cache: false,
            },
            references: Vec::new(),
            manifest: b"{}".to_vec(),
            manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            config: b"{}".to_vec(),
            layers: vec![(
                crate::image::store::Descriptor {
                    media_type: String::new(),
                    digest: "sha256:aa".into(),
                    size: 100,
                },
                file,
            )],
        };
        let (mut rx, done) = stream_archive(SavePlan {
            format: SaveFormat::OciArchive,
            images: vec![image],
        });
        let mut last = None;
        while let Some(item) = rx.recv().await {
            last = Some(item);
        }
        let err = last
            .expect("items")
            .expect_err("the stream ended in an error");
        assert!(err.to_string().contains("short"), "{err}");
        assert!(
            done.is_set(),
            "the error reached the client: the stream is whole"
        );
    }
}
