//! Where the last N lines of a log begin, found by reading it backwards:
//! memory is bounded by [`super::read`]'s window whatever the log's size
//! or the lines' lengths, and the time taken by the size of those lines.
//!
//! A line is what the container wrote up to a newline: its `P` pieces and
//! the `F` record that ends it (pieces of the other stream may come in
//! between), or, at the end of a stream, pieces with no `F` yet.

use std::fs::File;
use std::io;

use berth_runtime::cri_log::{parse_header, Stream, Tag};

use super::read::lines_rev;

/// A place in the log: which file (0 the older), and an offset in it.
pub type Pos = (usize, u64);

/// Where the last lines begin, per stream: records of a stream before its
/// position (all of its records, for `None`) are not part of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Start {
    /// Per stream (stdout, stderr).
    pub streams: [Option<Pos>; 2],
}

impl Start {
    /// Where reading starts: the earliest position of either stream.
    pub fn from(&self) -> Option<Pos> {
        self.streams.iter().flatten().min().copied()
    }

    /// Whether the record of `stream` at `at` is one of the last lines.
    pub fn keeps(&self, stream: Stream, at: Pos) -> bool {
        self.streams[stream as usize].is_some_and(|s| at >= s)
    }
}

/// Finds where the last `n` lines of `files` (oldest first, each with the
/// length to read) begin, counting only records that `keep` accepts (by
/// time and stream).
pub fn find(
    files: &[(&File, u64)],
    n: u32,
    keep: impl Fn(i64, Stream) -> bool,
) -> io::Result<Start> {
    let mut start = Start::default();
    if n == 0 {
        return Ok(start);
    }
    let mut count = 0u32;
    let mut seen = [false; 2];
    // A stream is closed once a line of it is found beyond the n-th.
    let mut closed = [false; 2];
    for (idx, (file, len)) in files.iter().enumerate().rev() {
        let mut done = false;
        lines_rev(file, *len, |off, line| {
            let Some((t, stream, tag, _)) = parse_header(line) else {
                return true;
            };
            let s = stream as usize;
            if !keep(t, stream) || closed[s] {
                return true;
            }
            if tag == Tag::Full || !seen[s] {
                if count == n {
                    closed[s] = true;
                    // Once every stream's last counted line is whole, no
                    // earlier record can belong to it.
                    done = (0..2).all(|i| closed[i] || !seen[i]);
                    return !done;
                }
                count += 1;
            }
            seen[s] = true;
            start.streams[s] = Some((idx, off));
            true
        })?;
        if done {
            break;
        }
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_runtime::cri_log::{encode_record, Lines};
    use std::io::Write;

    /// A log file of records: (stream, tag, content).
    fn log(records: &[(Stream, Tag, &[u8])]) -> File {
        let mut bytes = Vec::new();
        for (i, (s, t, c)) in records.iter().enumerate() {
            encode_record(&mut bytes, 1_000_000_000 + i as i64, *s, *t, c);
        }
        file(&bytes)
    }

    fn file(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    /// The contents of the last `n` lines, in order.
    fn tail(files: &[&File], n: u32) -> Vec<u8> {
        let with_len: Vec<(&File, u64)> = files
            .iter()
            .map(|f| (*f, f.metadata().unwrap().len()))
            .collect();
        let start = find(&with_len, n, |_, _| true).unwrap();
        let mut out = Vec::new();
        for (idx, (f, len)) in with_len.iter().enumerate() {
            let mut r = super::super::read::Forward::new(f.try_clone().unwrap(), 0, Some(*len));
            while let Some((off, line)) = r.next_line().unwrap() {
                let Some((_, s, tag, c)) = parse_header(line) else {
                    continue;
                };
                if start.keeps(s, (idx, off)) {
                    out.extend_from_slice(c);
                    if tag == Tag::Full {
                        out.push(b'\n');
                    }
                }
            }
        }
        out
    }

    use Stream::{Stderr as E, Stdout as O};
    use Tag::{Full as F, Partial as P};

    #[test]
    fn counts_lines_not_pieces() {
        let f = log(&[(O, F, b"a"), (O, P, b"b1"), (O, P, b"b2"), (O, F, b"b3")]);
        assert_eq!(tail(&[&f], 1), b"b1b2b3\n");
        assert_eq!(tail(&[&f], 2), b"a\nb1b2b3\n");
        assert_eq!(tail(&[&f], 9), b"a\nb1b2b3\n");
        assert_eq!(tail(&[&f], 0), b"");
    }

    #[test]
    fn pieces_of_the_other_stream_in_between() {
        let f = log(&[(O, P, b"long"), (E, F, b"err"), (O, F, b"line")]);
        assert_eq!(tail(&[&f], 1), b"longline\n");
        assert_eq!(tail(&[&f], 2), b"longerr\nline\n");
    }

    #[test]
    fn unfinished_pieces_at_the_end_are_a_line() {
        let f = log(&[(O, F, b"a"), (E, F, b"b"), (O, P, b"par"), (O, P, b"tial")]);
        assert_eq!(tail(&[&f], 1), b"partial");
        assert_eq!(tail(&[&f], 2), b"b\npartial");
    }

    #[test]
    fn across_rotation() {
        let old = log(&[(O, F, b"1"), (O, P, b"2a")]);
        let cur = log(&[(O, F, b"2b"), (O, F, b"3")]);
        assert_eq!(tail(&[&old, &cur], 2), b"2a2b\n3\n");
        assert_eq!(tail(&[&old, &cur], 3), b"1\n2a2b\n3\n");
    }

    #[test]
    fn corrupt_torn_and_empty() {
        let mut bytes = Vec::new();
        encode_record(&mut bytes, 1, O, F, b"ok");
        bytes.extend_from_slice(b"garbage line\n");
        encode_record(&mut bytes, 2, O, F, b"last");
        bytes.extend_from_slice(b"1970-01-01T00:00:00.000000003Z stdout F torn");
        let f = file(&bytes);
        assert_eq!(tail(&[&f], 2), b"ok\nlast\n");
        let empty = file(b"");
        assert_eq!(tail(&[&empty], 3), b"");
        assert_eq!(tail(&[&empty, &f], 1), b"last\n");
        let no_newline = file(b"no newline at all");
        assert_eq!(tail(&[&no_newline], 1), b"");
    }

    #[test]
    fn overlong_lines_are_skipped() {
        let mut bytes = Vec::new();
        encode_record(&mut bytes, 1, O, F, b"before");
        bytes.extend(std::iter::repeat_n(b'x', super::super::read::MAX_LINE + 10));
        bytes.push(b'\n');
        encode_record(&mut bytes, 2, O, F, b"after");
        let f = file(&bytes);
        assert_eq!(tail(&[&f], 2), b"before\nafter\n");
    }

    #[test]
    fn a_huge_line_whole_once() {
        // 3 MiB in one line, cut into pieces as the monitor does.
        let mut lines = Lines::default();
        let mut bytes = Vec::new();
        let mut t = 0;
        let mut emit = |s: Stream, tag: Tag, c: &[u8]| -> Result<(), ()> {
            t += 1;
            encode_record(&mut bytes, t, s, tag, c);
            Ok(())
        };
        lines.push(O, b"first\n", &mut emit).unwrap();
        let huge: Vec<u8> = (0..3 << 20).map(|i| b'a' + (i % 26) as u8).collect();
        for c in huge.chunks(4096) {
            lines.push(O, c, &mut emit).unwrap();
        }
        lines.push(O, b"\n", &mut emit).unwrap();
        let f = file(&bytes);
        let mut want = huge.clone();
        want.push(b'\n');
        assert_eq!(tail(&[&f], 1), want);
    }

    #[test]
    fn filters_count_only_kept_records() {
        let f = log(&[(O, F, b"o1"), (E, F, b"e1"), (O, F, b"o2")]);
        let len = f.metadata().unwrap().len();
        let only_err = find(&[(&f, len)], 1, |_, s| s == E).unwrap();
        assert!(only_err.streams[O as usize].is_none());
        assert!(only_err.streams[E as usize].is_some());
        // Times: 1_000_000_000 + i; since the second record.
        let since = find(&[(&f, len)], 5, |t, _| t >= 1_000_000_001).unwrap();
        assert!(!since.keeps(O, (0, 0)));
    }

    #[test]
    fn a_file_truncated_under_the_reader_reads_as_nothing() {
        let f = log(&[(O, F, b"a"), (O, F, b"b")]);
        let len = f.metadata().unwrap().len();
        f.set_len(0).unwrap();
        assert_eq!(
            find(&[(&f, len)], 1, |_, _| true).unwrap(),
            Start::default()
        );
    }
}
