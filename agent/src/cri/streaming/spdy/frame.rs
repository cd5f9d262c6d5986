//! SPDY/3.1 frames on the wire, without any I/O (the SPDY Protocol, Draft
//! 3.1, section 2.2): a data frame is a stream id, flags, a 24-bit length
//! and the bytes; a control frame is the version and type, flags, a 24-bit
//! length and a payload. Header blocks stay compressed here
//! ([`super::headers`] inflates them, in connection order).

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;
/// The flag that ends the sender's side of a stream (data and control).
pub const FLAG_FIN: u8 = 0x01;
/// The largest frame taken from a client: client-go writes at most 32 KiB
/// of data at once and header blocks of a few dozen bytes.
pub const FRAME_MAX: usize = 1 << 20;
/// The largest payload of one data frame sent.
pub const DATA_MAX: usize = 32 * 1024;

/// RST_STREAM status: the stream is not one this server takes.
pub const REFUSED_STREAM: u32 = 3;
/// RST_STREAM status: the stream is cancelled (its session ended).
pub const CANCEL: u32 = 5;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// A frame read from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// Bytes on a stream; `fin` ends the client's side of it.
    Data {
        /// The stream.
        stream: u32,
        /// The client's last frame on it.
        fin: bool,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The client opens a stream; `block` is its compressed headers.
    SynStream {
        /// The new stream's id (odd: the client's).
        stream: u32,
        /// The client sends nothing more on it.
        fin: bool,
        /// The compressed header block.
        block: Vec<u8>,
    },
    /// More headers on a stream (read for the compression state only).
    Headers {
        /// The stream.
        stream: u32,
        /// The client's last frame on it.
        fin: bool,
        /// The compressed header block.
        block: Vec<u8>,
    },
    /// The client abandons a stream.
    RstStream {
        /// The stream.
        stream: u32,
    },
    /// A ping, answered with itself when the client started it (odd id).
    Ping {
        /// Its id.
        id: u32,
    },
    /// The client ends the connection.
    GoAway,
    /// A frame this server has no use for (SETTINGS, WINDOW_UPDATE, a
    /// SYN_REPLY, an unknown type): skipped, as spdystream skips them.
    Ignored,
}

/// A frame that breaks the protocol: the connection ends.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Longer than [`FRAME_MAX`].
    #[error("a SPDY frame of {0} bytes (at most {FRAME_MAX} are taken)")]
    TooLarge(usize),
    /// A control frame of another version.
    #[error("a SPDY/{0} frame (3 is spoken)")]
    Version(u16),
    /// A control frame too short for its type.
    #[error("a malformed SPDY frame: {0}")]
    Malformed(&'static str),
}

fn be32(b: &[u8], at: usize) -> Result<u32, FrameError> {
    b.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_be_bytes)
        .ok_or(FrameError::Malformed("a payload too short for its type"))
}

/// The first frame of `buf` and the bytes it took; `None` until `buf`
/// holds a whole one.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some(head) = buf.get(..8) else {
        return Ok(None);
    };
    let first = be32(head, 0)?;
    let flags = head[4];
    let len = usize::try_from(be32(head, 4)? & 0x00ff_ffff).unwrap_or(usize::MAX);
    if len > FRAME_MAX {
        return Err(FrameError::TooLarge(len));
    }
    let Some(payload) = buf.get(8..8 + len) else {
        return Ok(None);
    };
    let fin = flags & FLAG_FIN != 0;
    let frame = if first & 0x8000_0000 == 0 {
        Frame::Data {
            stream: first & 0x7fff_ffff,
            fin,
            data: payload.to_vec(),
        }
    } else {
        let version = u16::try_from((first >> 16) & 0x7fff).unwrap_or(u16::MAX);
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let stream = || be32(payload, 0).map(|s| s & 0x7fff_ffff);
        match u16::try_from(first & 0xffff).unwrap_or(0) {
            SYN_STREAM => Frame::SynStream {
                stream: stream()?,
                fin,
                // Stream id, associated id, priority and slot: 10 bytes.
                block: payload
                    .get(10..)
                    .ok_or(FrameError::Malformed("a SYN_STREAM too short"))?
                    .to_vec(),
            },
            HEADERS => Frame::Headers {
                stream: stream()?,
                fin,
                block: payload.get(4..).unwrap_or_default().to_vec(),
            },
            RST_STREAM => Frame::RstStream { stream: stream()? },
            PING => Frame::Ping {
                id: be32(payload, 0)?,
            },
            GOAWAY => Frame::GoAway,
            SYN_REPLY | SETTINGS | WINDOW_UPDATE => Frame::Ignored,
            _ => Frame::Ignored,
        }
    };
    Ok(Some((frame, 8 + len)))
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + payload.len());
    v.extend_from_slice(&(0x8000_u16 | VERSION).to_be_bytes());
    v.extend_from_slice(&kind.to_be_bytes());
    v.extend_from_slice(&length_word(flags, payload.len()));
    v.extend_from_slice(payload);
    v
}

/// Flags and a 24-bit length; callers keep payloads under 16 MiB.
fn length_word(flags: u8, len: usize) -> [u8; 4] {
    let len = u32::try_from(len).unwrap_or(u32::MAX) & 0x00ff_ffff;
    ((u32::from(flags) << 24) | len).to_be_bytes()
}

/// A data frame (`data` at most [`DATA_MAX`] bytes).
pub fn data(stream: u32, fin: bool, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + data.len());
    v.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    v.extend_from_slice(&length_word(if fin { FLAG_FIN } else { 0 }, data.len()));
    v.extend_from_slice(data);
    v
}

/// The reply that accepts a client's stream; `block` is the compressed
/// headers.
pub fn syn_reply(stream: u32, block: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(4 + block.len());
    payload.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    payload.extend_from_slice(block);
    control(SYN_REPLY, 0, &payload)
}

/// Ends a stream at once with `status`.
pub fn rst_stream(stream: u32, status: u32) -> Vec<u8> {
    let mut payload = [0u8; 8];
    payload[..4].copy_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    payload[4..].copy_from_slice(&status.to_be_bytes());
    control(RST_STREAM, 0, &payload)
}

/// A ping (the answer to the client's is the same frame).
pub fn ping(id: u32) -> Vec<u8> {
    control(PING, 0, &id.to_be_bytes())
}

/// The server ends the connection; `last` is the last client stream it
/// took (status 0: OK).
pub fn goaway(last: u32) -> Vec<u8> {
    let mut payload = [0u8; 8];
    payload[..4].copy_from_slice(&(last & 0x7fff_ffff).to_be_bytes());
    control(GOAWAY, 0, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_frames_round_trip_and_wait_for_their_bytes() {
        let f = data(5, true, b"hello");
        assert_eq!(&f[..8], &[0, 0, 0, 5, 1, 0, 0, 5]);
        assert_eq!(parse(&f[..7]), Ok(None));
        assert_eq!(parse(&f[..12]), Ok(None));
        let mut two = f.clone();
        two.extend(data(7, false, b""));
        let (frame, used) = parse(&two).unwrap().unwrap();
        assert_eq!(
            frame,
            Frame::Data {
                stream: 5,
                fin: true,
                data: b"hello".to_vec()
            }
        );
        assert_eq!(used, 13);
        let (frame, _) = parse(&two[used..]).unwrap().unwrap();
        assert_eq!(
            frame,
            Frame::Data {
                stream: 7,
                fin: false,
                data: vec![]
            }
        );
    }

    #[test]
    fn control_frames_are_read_as_spdy3_lays_them_out() {
        // SYN_STREAM, as spdystream writes it: id 1, associated 0,
        // priority 0, slot 0, then the block.
        let mut payload = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        payload.extend_from_slice(b"zz");
        let f = control(SYN_STREAM, 0, &payload);
        assert_eq!(&f[..4], &[0x80, 3, 0, 1]);
        assert_eq!(
            parse(&f).unwrap().unwrap().0,
            Frame::SynStream {
                stream: 1,
                fin: false,
                block: b"zz".to_vec()
            }
        );
        assert_eq!(parse(&ping(9)).unwrap().unwrap().0, Frame::Ping { id: 9 });
        assert_eq!(parse(&goaway(3)).unwrap().unwrap().0, Frame::GoAway);
        assert_eq!(
            parse(&rst_stream(3, CANCEL)).unwrap().unwrap().0,
            Frame::RstStream { stream: 3 }
        );
        assert_eq!(
            parse(&syn_reply(3, b"x")).unwrap().unwrap().0,
            Frame::Ignored
        );
        let window_update = control(WINDOW_UPDATE, 0, &[0, 0, 0, 1, 0, 0, 1, 0]);
        assert_eq!(parse(&window_update).unwrap().unwrap().0, Frame::Ignored);
    }

    #[test]
    fn broken_frames_end_the_connection() {
        let mut f = ping(1);
        f[1] = 2;
        assert_eq!(parse(&f), Err(FrameError::Version(2)));
        let short = control(SYN_STREAM, 0, &[0, 0, 0, 1]);
        assert!(matches!(parse(&short), Err(FrameError::Malformed(_))));
        let huge = [0, 0, 0, 1, 0, 0x20, 0, 0];
        assert_eq!(parse(&huge), Err(FrameError::TooLarge(0x20_0000)));
        let rst = control(RST_STREAM, 0, &[0, 0]);
        assert!(parse(&rst).is_err());
    }
}
