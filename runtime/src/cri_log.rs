//! Container logs on disk, in the CRI log format that crictl and kubelet use:
//! one record per line, `<RFC 3339 time> <stdout|stderr> <F|P> <content>`,
//! where `F` ends a line (its newline is implied) and `P` is a piece of a line
//! that continues in the next record of that stream.
//!
//! The monitor cuts output into records ([`Lines`], [`encode_record`]) and
//! appends them to the file; berthd reads (and follows) it while the monitor
//! writes ([`parse_record`]). When the file grows past its limit the monitor
//! renames it to `<path>`[`ROTATED_SUFFIX`] and starts a new one.

use alloc::vec::Vec;

use crate::rfc3339;

/// A container output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The stream's name in a record.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Whether a record ends its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// `F`: the record ends a line.
    Full,
    /// `P`: a piece; the line goes on in the stream's next record.
    Partial,
}

/// Longest line piece kept in memory before it is written as a partial record.
pub const MAX_PIECE: usize = 16 * 1024;

/// What the previous generation of a log is called: the log's path plus this.
pub const ROTATED_SUFFIX: &str = ".1";

/// Cuts each stream's output into records: every completed line is one full
/// record; an unfinished line waits for more data, up to [`MAX_PIECE`].
#[derive(Debug, Default)]
pub struct Lines {
    pending: [Vec<u8>; 2],
}

impl Lines {
    /// Takes `data` read from `stream` and hands every record it completes
    /// to `emit`, in order.
    pub fn push<E>(
        &mut self,
        stream: Stream,
        data: &[u8],
        mut emit: impl FnMut(Stream, Tag, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let pending = &mut self.pending[stream as usize];
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            if pending.is_empty() {
                emit(stream, Tag::Full, &rest[..nl])?;
            } else {
                pending.extend_from_slice(&rest[..nl]);
                emit(stream, Tag::Full, pending)?;
                pending.clear();
            }
            rest = &rest[nl + 1..];
        }
        pending.extend_from_slice(rest);
        if pending.len() >= MAX_PIECE {
            emit(stream, Tag::Partial, pending)?;
            // A long line must not keep its largest piece's memory.
            *pending = Vec::new();
        }
        Ok(())
    }

    /// Hands out unfinished lines as pieces (at exit: output that did not
    /// end in a newline).
    pub fn finish<E>(
        &mut self,
        mut emit: impl FnMut(Stream, Tag, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let piece = core::mem::take(&mut self.pending[stream as usize]);
            if !piece.is_empty() {
                emit(stream, Tag::Partial, &piece)?;
            }
        }
        Ok(())
    }
}

/// Appends one record line, newline included, to `out`.
pub fn encode_record(out: &mut Vec<u8>, unix_nanos: i64, stream: Stream, tag: Tag, content: &[u8]) {
    out.reserve(rfc3339::LEN + 10 + content.len());
    out.extend_from_slice(&rfc3339::format_nanos(unix_nanos));
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(match tag {
        Tag::Full => b" F ",
        Tag::Partial => b" P ",
    });
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// One parsed log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When the monitor read it, Unix time in nanoseconds.
    pub unix_nanos: i64,
    /// Which stream.
    pub stream: Stream,
    /// The bytes, with the newline restored for full lines.
    pub data: Vec<u8>,
}

/// Parses one record line (without its trailing newline) into its time
/// (Unix nanoseconds), stream, tag and content. `None` for a line that is
/// not a record (a torn write at a crash).
pub fn parse_header(line: &[u8]) -> Option<(i64, Stream, Tag, &[u8])> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let ts = core::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let tag = match parts.next()? {
        b"F" => Tag::Full,
        b"P" => Tag::Partial,
        _ => return None,
    };
    let content = parts.next().unwrap_or_default();
    Some((rfc3339::parse_nanos(ts)?, stream, tag, content))
}

/// Parses one record line (without its trailing newline). `None` for a line
/// that is not a record (a torn write at a crash).
pub fn parse_record(line: &[u8]) -> Option<Record> {
    let (unix_nanos, stream, tag, content) = parse_header(line)?;
    let mut data = Vec::with_capacity(content.len() + 1);
    data.extend_from_slice(content);
    if tag == Tag::Full {
        data.push(b'\n');
    }
    Some(Record {
        unix_nanos,
        stream,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs writes through [`Lines`] and [`encode_record`] into one file
    /// image, as the monitor does, and parses it back.
    fn roundtrip(writes: &[(Stream, &[u8])]) -> Vec<Record> {
        let mut lines = Lines::default();
        let mut file = Vec::new();
        let mut t = 1_764_650_000_000_000_000;
        let mut emit = |s: Stream, tag: Tag, c: &[u8]| -> Result<(), ()> {
            t += 1;
            encode_record(&mut file, t, s, tag, c);
            Ok(())
        };
        for (s, data) in writes {
            lines.push(*s, data, &mut emit).unwrap();
        }
        lines.finish(&mut emit).unwrap();
        let recs: Vec<Record> = file
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| parse_record(l).unwrap())
            .collect();
        assert!(recs.windows(2).all(|w| w[0].unix_nanos < w[1].unix_nanos));
        recs
    }

    fn stream_bytes(recs: &[Record], s: Stream) -> Vec<u8> {
        recs.iter()
            .filter(|r| r.stream == s)
            .flat_map(|r| r.data.clone())
            .collect()
    }

    #[test]
    fn lines_are_split_and_joined_back() {
        let recs = roundtrip(&[
            (Stream::Stdout, b"hel"),
            (Stream::Stderr, b"oops\n"),
            (Stream::Stdout, b"lo\nwor"),
            (Stream::Stdout, b"ld\nend"),
        ]);
        assert_eq!(stream_bytes(&recs, Stream::Stdout), b"hello\nworld\nend");
        assert_eq!(recs[0].stream, Stream::Stderr);
        assert_eq!(recs[0].data, b"oops\n");
        // "end" had no newline: a piece, written at the finish.
        assert_eq!(recs.last().unwrap().data, b"end");
    }

    #[test]
    fn binary_and_spaces_survive() {
        let recs = roundtrip(&[(Stream::Stdout, b"a b  c\xff\x00\n\n")]);
        assert_eq!(recs[0].data, b"a b  c\xff\x00\n");
        assert_eq!(recs[1].data, b"\n");
    }

    #[test]
    fn long_lines_become_pieces() {
        let long = vec![b'x'; MAX_PIECE * 2 + 10];
        let recs = roundtrip(&[(Stream::Stdout, &long), (Stream::Stdout, b"\n")]);
        assert!(recs.len() >= 2);
        assert_eq!(stream_bytes(&recs, Stream::Stdout).len(), long.len() + 1);
    }

    #[test]
    fn records_match_the_cri_layout() {
        let mut out = Vec::new();
        encode_record(
            &mut out,
            1_500_000_000,
            Stream::Stderr,
            Tag::Partial,
            b"x y",
        );
        assert_eq!(out, b"1970-01-01T00:00:01.500000000Z stderr P x y\n");
    }

    #[test]
    fn garbage_is_not_a_record() {
        assert!(parse_record(b"nonsense").is_none());
        assert!(parse_record(b"2026-01-01T00:00:00Z stdin F x").is_none());
        assert!(parse_record(b"yesterday stdout F x").is_none());
        assert!(parse_record(b"2026-01-01T00:00:00Z stdout X x").is_none());
    }
}
