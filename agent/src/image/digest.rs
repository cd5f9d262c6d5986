//! sha256 helpers: digest string parsing and hashing readers.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use super::reference::is_lower_hex;
use super::ImageError;

/// Parses `sha256:<64 lowercase hex>` and returns the hex part.
///
/// Anything else (other algorithms, bad hex) is an [`ImageError::InvalidArchive`]:
/// digests only come from archive metadata here, and everything we store is
/// keyed by sha256 hex, so an unusable digest means an unusable archive.
pub(crate) fn sha256_hex<'a>(digest: &'a str, what: &str) -> Result<&'a str, ImageError> {
    match digest.split_once(':') {
        Some(("sha256", hex)) if hex.len() == 64 && is_lower_hex(hex) => Ok(hex),
        Some(("sha256", _)) => Err(ImageError::archive(format!(
            "{what}: malformed sha256 digest {digest:?}"
        ))),
        _ => Err(ImageError::archive(format!(
            "{what}: unsupported digest {digest:?} (only sha256 is supported)"
        ))),
    }
}

/// Returns `sha256:<hex>` of `data`.
pub(crate) fn sha256_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A reader that hashes and counts everything read through it, so digests are
/// checked while streaming instead of needing a second pass or a full buffer.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads (and hashes) the rest of the stream, so the digest covers all of it.
    pub(crate) fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(drop)
    }

    /// Bytes read so far.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// `sha256:<hex>` of everything read so far.
    pub(crate) fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_hashes() {
        let d = sha256_of(b"");
        assert_eq!(
            d,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(sha256_hex(&d, "x").is_ok());
        assert!(sha256_hex("sha512:abcd", "x").is_err());
        assert!(sha256_hex(&d.to_uppercase(), "x").is_err());
        assert!(sha256_hex("sha256:../../etc", "x").is_err());
        let mut r = HashingReader::new(&b"hello"[..]);
        r.drain().unwrap();
        assert_eq!(r.count(), 5);
        assert_eq!(r.digest(), sha256_of(b"hello"));
    }
}
