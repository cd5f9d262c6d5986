//! SPDY/3 header blocks: a count, then length-prefixed names and values,
//! compressed with zlib primed with [`DICTIONARY`]. Each direction of a
//! connection is one zlib stream, every block ending in a sync flush, so
//! the [`Inflater`] and [`Deflater`] of a connection live as long as it
//! and see its blocks in order.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::DICTIONARY;

/// The largest inflated block taken (streaming headers are a few dozen
/// bytes).
const BLOCK_MAX: usize = 64 * 1024;
/// The most headers in one block.
const HEADERS_MAX: usize = 64;

/// A stream's headers, names in lower case as SPDY/3 has them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// Headers from pairs (tests).
    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Headers {
        Headers(
            pairs
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
                .collect(),
        )
    }

    /// The value of `name` (any case); the first of several.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a header block is not one: the connection ends.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// zlib refused the bytes.
    #[error("a header block that does not inflate: {0}")]
    Inflate(String),
    /// More than [`BLOCK_MAX`] inflated bytes or [`HEADERS_MAX`] headers.
    #[error("a header block over {BLOCK_MAX} bytes or {HEADERS_MAX} headers")]
    TooLarge,
    /// The counts and lengths do not add up.
    #[error("a malformed header block")]
    Malformed,
}

/// The inflating side of a connection (the client's blocks).
pub struct Inflater(Decompress);

impl Default for Inflater {
    fn default() -> Self {
        Inflater(Decompress::new(true))
    }
}

impl Inflater {
    /// The headers of the next compressed block.
    pub fn block(&mut self, compressed: &[u8]) -> Result<Headers, HeaderError> {
        let raw = self.inflate(compressed)?;
        decode(&raw)
    }

    fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, HeaderError> {
        let d = &mut self.0;
        let start = d.total_in();
        let used = |d: &Decompress| usize::try_from(d.total_in() - start).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(256);
        loop {
            if out.len() == out.capacity() {
                if out.len() >= BLOCK_MAX {
                    return Err(HeaderError::TooLarge);
                }
                out.reserve(out.len());
            }
            let (before_in, before_out) = (used(d), out.len());
            let rest = input.get(before_in..).unwrap_or_default();
            match d.decompress_vec(rest, &mut out, FlushDecompress::Sync) {
                Ok(Status::Ok | Status::BufError) => {}
                Ok(Status::StreamEnd) => {
                    // A SPDY header stream never ends.
                    return Err(HeaderError::Inflate("the zlib stream ended".into()));
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    d.set_dictionary(DICTIONARY)
                        .map_err(|e| HeaderError::Inflate(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(HeaderError::Inflate(e.to_string())),
            }
            let all_in = used(d) >= input.len();
            if all_in && out.len() < out.capacity() {
                return Ok(out);
            }
            if used(d) == before_in && out.len() == before_out && out.len() < out.capacity() {
                return Err(HeaderError::Inflate("a truncated block".into()));
            }
        }
    }
}

/// The deflating side of a connection (the server's blocks).
pub struct Deflater(Compress);

impl Default for Deflater {
    fn default() -> Self {
        let mut c = Compress::new(Compression::default(), true);
        // Only fails on a stream already under way; this one is new.
        let _ = c.set_dictionary(DICTIONARY);
        Deflater(c)
    }
}

impl Deflater {
    /// The next compressed block for `headers`.
    pub fn block(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let raw = encode(headers);
        let c = &mut self.0;
        let start = c.total_in();
        let used = |c: &Compress| usize::try_from(c.total_in() - start).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(raw.len() + 64);
        loop {
            if out.len() == out.capacity() {
                out.reserve(256);
            }
            let rest = raw.get(used(c)..).unwrap_or_default();
            // zlib fails only on a misused stream, never on input.
            if c.compress_vec(rest, &mut out, FlushCompress::Sync).is_err() {
                return out;
            }
            if used(c) >= raw.len() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

/// An inflated block of `headers`.
pub fn encode(headers: &[(&str, &str)]) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    let mut v = Vec::new();
    v.extend_from_slice(&len(headers.len()));
    for (name, value) in headers {
        v.extend_from_slice(&len(name.len()));
        v.extend_from_slice(name.to_ascii_lowercase().as_bytes());
        v.extend_from_slice(&len(value.len()));
        v.extend_from_slice(value.as_bytes());
    }
    v
}

/// The headers of an inflated block (several values of one name, NUL
/// separated, are kept as one).
pub fn decode(raw: &[u8]) -> Result<Headers, HeaderError> {
    let mut c = Cursor { raw, at: 0 };
    let count = c.word()?;
    if count > HEADERS_MAX {
        return Err(HeaderError::TooLarge);
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let n = c.word()?;
        let name = String::from_utf8_lossy(c.take(n)?).to_ascii_lowercase();
        let n = c.word()?;
        let value = String::from_utf8_lossy(c.take(n)?).into_owned();
        headers.push((name, value));
    }
    Ok(Headers(headers))
}

/// Reads a block front to back.
struct Cursor<'a> {
    raw: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HeaderError> {
        let end = self.at.checked_add(n).ok_or(HeaderError::Malformed)?;
        let s = self.raw.get(self.at..end).ok_or(HeaderError::Malformed)?;
        self.at = end;
        Ok(s)
    }

    fn word(&mut self) -> Result<usize, HeaderError> {
        let b = self.take(4)?;
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_through_one_connections_zlib_streams() {
        let mut out = Deflater::default();
        let mut inn = Inflater::default();
        for i in 0..50 {
            let port = i.to_string();
            let block = out.block(&[("streamType", "data"), ("port", &port)]);
            let h = inn.block(&block).expect("a block");
            assert_eq!(h.get("streamtype"), Some("data"));
            assert_eq!(h.get("Port"), Some(port.as_str()));
            assert_eq!(h.get("requestid"), None);
        }
        // The first block names the dictionary; later ones compress
        // against what came before.
        let first = Deflater::default().block(&[("streamtype", "error")]);
        assert_eq!(first[0], 0x78);
        assert_ne!(first[1] & 0x20, 0, "FDICT set");
        let empty = out.block(&[]);
        assert_eq!(inn.block(&empty), Ok(Headers::default()));
    }

    #[test]
    fn a_block_of_another_stream_or_garbage_is_refused() {
        let mut inn = Inflater::default();
        assert!(inn.block(b"not zlib at all").is_err());
        let mut a = Deflater::default();
        let _ = a.block(&[("x", "1")]);
        let second = a.block(&[("x", "2")]);
        // Without the first block, the second's back references dangle.
        assert!(Inflater::default().block(&second).is_err());
    }

    #[test]
    fn decoding_checks_every_length() {
        let raw = encode(&[("a", "b")]);
        assert_eq!(decode(&raw).unwrap().get("a"), Some("b"));
        assert_eq!(decode(&raw[..raw.len() - 1]), Err(HeaderError::Malformed));
        let mut many = Vec::from(100u32.to_be_bytes());
        many.extend(std::iter::repeat_n(0u8, 800));
        assert_eq!(decode(&many), Err(HeaderError::TooLarge));
        let lying = [0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(decode(&lying), Err(HeaderError::Malformed));
    }

    #[test]
    fn a_bomb_is_cut_off() {
        let mut out = Deflater::default();
        let big = "x".repeat(200_000);
        let block = out.block(&[("big", &big)]);
        assert!(block.len() < 2000);
        assert_eq!(
            Inflater::default().block(&block),
            Err(HeaderError::TooLarge)
        );
    }
}
