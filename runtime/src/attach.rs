//! The attach socket: how berthd reaches the stdin and terminal of a
//! container, which its monitor owns (so they outlive a berthd restart).
//!
//! A monitor whose container has an open stdin or a terminal
//! ([`crate::launch::LaunchSpec::attachable`]) listens on [`SOCKET`] in
//! the container's directory (mode 0700, root's: only berthd connects).
//! Each connection is one attached client. Both directions carry frames
//! of one kind byte, a little-endian `u32` length and that many bytes:
//!
//! - monitor to client: first [`OUT_ATTACHED`] (no payload) once the
//!   monitor has taken the client on, then [`OUT_STDOUT`] and
//!   [`OUT_STDERR`], the container's output from that moment (with a
//!   terminal, all of it is stdout); the socket closes once the
//!   container's output has ended (it exited).
//! - client to monitor: [`IN_STDIN`] (bytes for the container's stdin,
//!   ignored without an open stdin), [`IN_CLOSE_STDIN`] (end of file on
//!   it; ignored for a terminal, whose user types its own), [`IN_RESIZE`] (four
//!   bytes: rows then columns, `u16` each).
//!
//! A client that only shuts down its writing side has ended its input and
//! still gets the output; one that closes the socket detaches. Either way
//! the container goes on.

use alloc::vec::Vec;

/// The socket's file name in the container's directory.
pub const SOCKET: &str = "attach.sock";
/// Output frame: the client is attached; output from here on reaches it.
pub const OUT_ATTACHED: u8 = 0;
/// Output frame, instead of [`OUT_ATTACHED`]: the container has as many
/// clients as it takes; the socket closes.
pub const OUT_BUSY: u8 = 3;
/// Output frame: the container's stdout (or terminal).
pub const OUT_STDOUT: u8 = 1;
/// Output frame: the container's stderr.
pub const OUT_STDERR: u8 = 2;
/// Input frame: bytes for stdin.
pub const IN_STDIN: u8 = 0;
/// Input frame: close stdin (no payload).
pub const IN_CLOSE_STDIN: u8 = 1;
/// Input frame: the terminal's size (rows, columns as `u16` LE).
pub const IN_RESIZE: u8 = 2;
/// Bytes before a frame's payload.
pub const HEADER_LEN: usize = 5;
/// The largest payload either side sends or accepts.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Appends one frame to `out`.
pub fn encode(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
}

/// A resize frame's payload.
pub fn resize_payload(rows: u16, cols: u16) -> [u8; 4] {
    let (r, c) = (rows.to_le_bytes(), cols.to_le_bytes());
    [r[0], r[1], c[0], c[1]]
}

/// The (rows, columns) of a resize payload.
pub fn parse_resize(payload: &[u8]) -> Option<(u16, u16)> {
    match payload {
        [r0, r1, c0, c1] => Some((
            u16::from_le_bytes([*r0, *r1]),
            u16::from_le_bytes([*c0, *c1]),
        )),
        _ => None,
    }
}

/// A frame at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole frame, and how many bytes of the buffer it took.
    Frame {
        /// Its kind byte.
        kind: u8,
        /// Its payload.
        payload: &'a [u8],
        /// Header plus payload.
        len: usize,
    },
    /// More bytes are needed.
    Incomplete,
    /// A length over [`MAX_PAYLOAD`]: the peer is broken.
    TooLarge,
}

/// Parses the frame at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Parsed::Incomplete;
    };
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Parsed::TooLarge;
    }
    match buf.get(HEADER_LEN..HEADER_LEN + len) {
        Some(payload) => Parsed::Frame {
            kind: header[0],
            payload,
            len: HEADER_LEN + len,
        },
        None => Parsed::Incomplete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_one_after_another_and_in_pieces() {
        let mut buf = Vec::new();
        encode(&mut buf, IN_STDIN, b"hello");
        encode(&mut buf, IN_CLOSE_STDIN, b"");
        encode(&mut buf, IN_RESIZE, &resize_payload(50, 132));
        // Every prefix short of the first frame is incomplete.
        for cut in 0..10 {
            assert_eq!(parse(&buf[..cut]), Parsed::Incomplete, "cut at {cut}");
        }
        let Parsed::Frame { kind, payload, len } = parse(&buf) else {
            panic!("no first frame")
        };
        assert_eq!((kind, payload, len), (IN_STDIN, &b"hello"[..], 10));
        let rest = &buf[len..];
        let Parsed::Frame { kind, payload, len } = parse(rest) else {
            panic!("no second frame")
        };
        assert_eq!((kind, payload.len(), len), (IN_CLOSE_STDIN, 0, 5));
        let Parsed::Frame { kind, payload, .. } = parse(&rest[len..]) else {
            panic!("no third frame")
        };
        assert_eq!(kind, IN_RESIZE);
        assert_eq!(parse_resize(payload), Some((50, 132)));
    }

    #[test]
    fn an_oversized_or_malformed_frame_is_refused() {
        let mut buf = vec![IN_STDIN];
        buf.extend_from_slice(&((MAX_PAYLOAD as u32) + 1).to_le_bytes());
        assert_eq!(parse(&buf), Parsed::TooLarge);
        assert_eq!(parse_resize(b"abc"), None);
        assert_eq!(parse_resize(b"abcde"), None);
    }
}
