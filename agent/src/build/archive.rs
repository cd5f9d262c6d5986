//! ADD's local archives: which context files are tar archives (plain,
//! gzip, bzip2, xz or zstd, as Docker recognises them), and unpacking one
//! into a private directory with the image extractor's rules.
//!
//! A file is an archive when, once decompressed, its first 512 bytes are a
//! tar header whose checksum holds (what a tar reader checks first), so v7,
//! ustar, GNU and PAX archives all count, and a text file never does.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use super::error::{BuildError, Result};
use crate::error::capped;

/// Most bytes one ADD archive may unpack to (as a build context).
pub const MAX_UNPACKED: u64 = super::context::MAX_CONTEXT_BYTES;

/// Most memory the xz decoder may take (xz -9 needs 65 MiB).
const XZ_MEMORY: u64 = 256 << 20;

/// How an archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A tar as it is.
    Plain,
    /// gzip (`.tar.gz`, `.tgz`).
    Gzip,
    /// bzip2 (`.tar.bz2`).
    Bzip2,
    /// xz (`.tar.xz`).
    Xz,
    /// zstd (`.tar.zst`).
    Zstd,
}

impl Compression {
    /// The compression a file's first bytes announce (Plain when none does).
    fn of(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::Plain
        }
    }
}

/// The decompressed stream of `file`, compressed as `c`.
fn reader(file: File, c: Compression) -> std::io::Result<Box<dyn Read>> {
    let buf = BufReader::new(file);
    Ok(match c {
        Compression::Plain => Box::new(buf),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(buf)),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(buf)),
        Compression::Xz => {
            // Bounded: an xz header may ask for a dictionary of gigabytes.
            let stream = liblzma::stream::Stream::new_stream_decoder(
                XZ_MEMORY,
                liblzma::stream::CONCATENATED,
            )
            .map_err(std::io::Error::other)?;
            Box::new(liblzma::read::XzDecoder::new_stream(buf, stream))
        }
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buf)?),
    })
}

/// True when `block` is a tar header: its checksum (the unsigned sum of
/// the block with the checksum field read as spaces) is the one recorded.
pub fn is_tar_header(block: &[u8; 512]) -> bool {
    // Octal digits, maybe after spaces, ended by a NUL or a space.
    let text: String = block[148..156]
        .iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| **b != 0 && **b != b' ')
        .map(|b| *b as char)
        .collect();
    let Ok(recorded) = u32::from_str_radix(&text, 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as u32
            }
        })
        .sum();
    // An all-zero block (an empty archive's end) sums to 256 spaces only.
    sum == recorded && block[..100].iter().any(|b| *b != 0)
}

/// The compression of `path` when it is a tar archive, None when it is a
/// file to copy as it is (what Docker's ADD does with anything it cannot
/// read as an archive).
pub fn sniff(path: &Path) -> Result<Option<Compression>> {
    let io = |e| BuildError::io(format!("reading {}", path.display()), e);
    let mut head = Vec::with_capacity(6);
    File::open(path)
        .and_then(|f| f.take(6).read_to_end(&mut head))
        .map_err(io)?;
    let c = Compression::of(&head);
    let file = File::open(path).map_err(io)?;
    let Ok(r) = reader(file, c) else {
        return Ok(None);
    };
    let mut block = Vec::with_capacity(512);
    // A corrupt stream is not an archive: copied as it is.
    let _ = r.take(512).read_to_end(&mut block);
    Ok(<&[u8; 512]>::try_from(block.as_slice())
        .ok()
        .filter(|b| is_tar_header(b))
        .map(|_| c))
}

/// Unpacks the archive `path` (compressed as `c`) into the new private
/// directory `dest`, with the image extractor's rules (nothing outside
/// `dest`, nothing through a link; devices and fifos left out, whiteout
/// names refused; at most [`MAX_UNPACKED`] bytes) and owners and modes as
/// the archive records them. `name` is
/// the source as the Dockerfile gave it, for errors.
pub fn unpack(path: &Path, c: Compression, dest: &Path, name: &str) -> Result<()> {
    crate::state_dir::create_private_dir(dest)
        .map_err(|e| BuildError::io("creating the ADD directory", e))?;
    let file = File::open(path).map_err(|e| BuildError::io(format!("reading {name}"), e))?;
    let mut r = reader(file, c).map_err(|e| BuildError::io(format!("reading {name}"), e))?;
    let what = format!("ADD {:?}", capped(name));
    crate::image::extract::unpack_files(&mut r, dest, &what, MAX_UNPACKED).map_err(|e| match e
        .kind()
    {
        crate::image::ErrorKind::InvalidArchive => BuildError::invalid(e.to_string()),
        crate::image::ErrorKind::NoSpace => {
            BuildError::Image(crate::image::ImageError::NoSpace(format!(
                "{what} unpacks to more than {} GiB, or more than the state file system \
                     has free: {e}",
                MAX_UNPACKED >> 30
            )))
        }
        _ => BuildError::Image(e),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn tar_of(name: &str, body: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o640);
        h.set_uid(1234);
        h.set_gid(5678);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, body).unwrap();
        b.into_inner().unwrap()
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn every_compression_is_recognised_and_text_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of("a/b.txt", b"hello");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&tar).unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&tar).unwrap();
        let zst = zstd::encode_all(&tar[..], 1).unwrap();
        for (name, bytes, want) in [
            ("p.tar", tar.clone(), Compression::Plain),
            ("g.tgz", gz.finish().unwrap(), Compression::Gzip),
            ("b.tbz", bz.finish().unwrap(), Compression::Bzip2),
            ("x.txz", xz.finish().unwrap(), Compression::Xz),
            ("z.tzst", zst, Compression::Zstd),
        ] {
            let p = write(dir.path(), name, &bytes);
            assert_eq!(sniff(&p).unwrap(), Some(want), "{name}");
            let out = dir.path().join(format!("{name}.d"));
            unpack(&p, want, &out, name).unwrap();
            assert_eq!(std::fs::read(out.join("a/b.txt")).unwrap(), b"hello");
            let meta = std::fs::metadata(out.join("a/b.txt")).unwrap();
            use std::os::unix::fs::MetadataExt;
            assert_eq!(
                (meta.uid(), meta.gid(), meta.mode() & 0o7777),
                (1234, 5678, 0o640)
            );
        }
        // Not archives: text, a short file, gzip of text, zeros, garbage
        // after a gzip magic.
        let mut gz_text = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz_text.write_all(&[b'x'; 600]).unwrap();
        for (name, bytes) in [
            ("t.txt", vec![b'a'; 2048]),
            ("short", b"ustar".to_vec()),
            ("t.gz", gz_text.finish().unwrap()),
            ("zeros", vec![0; 1024]),
            ("bad.gz", vec![0x1f, 0x8b, 1, 2, 3]),
        ] {
            let p = write(dir.path(), name, &bytes);
            assert_eq!(sniff(&p).unwrap(), None, "{name}");
        }
    }

    #[test]
    fn a_header_with_a_wrong_checksum_is_not_one() {
        let tar = tar_of("f", b"x");
        let mut block = [0u8; 512];
        block.copy_from_slice(&tar[..512]);
        assert!(is_tar_header(&block));
        block[0] ^= 1;
        assert!(!is_tar_header(&block));
    }

    #[test]
    fn an_archive_leaving_its_directory_or_naming_a_whiteout_is_refused_and_devices_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        // set_path refuses "..": written as raw bytes, as a hostile tar would.
        h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let p = write(dir.path(), "up.tar", &b.into_inner().unwrap());
        let err = unpack(&p, Compression::Plain, &dir.path().join("up"), "up.tar").unwrap_err();
        assert!(matches!(err, BuildError::Invalid(_)), "{err}");
        assert!(!dir.path().join("escape").exists());

        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Char);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_size(0);
        h.set_mode(0o666);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, "null", std::io::empty()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, "kept", &b"k"[..]).unwrap();
        let p = write(dir.path(), "dev.tar", &b.into_inner().unwrap());
        // A device is left out, as BuildKit does; the rest is unpacked.
        unpack(&p, Compression::Plain, &dir.path().join("dev"), "dev.tar").unwrap();
        assert!(!dir.path().join("dev/null").exists());
        assert!(dir.path().join("dev/kept").exists());

        let p = write(dir.path(), "wh.tar", &tar_of("a/.wh.b", b""));
        let err = unpack(&p, Compression::Plain, &dir.path().join("wh"), "wh.tar").unwrap_err();
        assert!(err.to_string().contains("whiteout"), "{err}");
    }
}
