//! Lets any HTTP/2 `:authority` through on the unix socket.
//!
//! gRPC clients have no host name to send over a unix socket, and they
//! disagree on what to send instead: grpc-go sends "localhost", grpc-core
//! (Python, C++, Ruby, PHP) since 1.57 the percent-encoded socket path
//! ("%2Frun%2Fberth%2Fberthd.sock"), grpc-java the raw path. h2, under
//! tonic, validates `:authority` as an RFC 3986 authority and resets the
//! stream (PROTOCOL_ERROR) for the last two, so a Python client's first call
//! failed with "Stream removed". h2 has no option to relax this.
//!
//! On the unix socket the authority means nothing (there is one server, and
//! berthd never looks at it), so this wrapper sits between the socket and
//! h2 and replaces an authority h2 would refuse by "localhost". It follows
//! the client's header compression (HPACK) state to read every header block
//! and passes each block on byte for byte, until the first one that needs a
//! new authority: from then on every block is re-encoded without the dynamic
//! table (literals only), so h2's table never depends on what it did not
//! see. Every other frame, and every byte the server writes, passes through
//! untouched. Well-behaved clients (grpc-go, tonic, grpc-js) never cost
//! more than the decoding of their headers.
//!
//! TCP listeners do not get this: there the authority must be a valid
//! `host[:port]`, as any HTTP/2 server requires.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Frames written are at most this large: the smallest SETTINGS_MAX_FRAME_SIZE
/// a server may set, so always allowed.
const MAX_FRAME: usize = 16_384;
/// A header block (all its frames) larger than this ends the connection.
/// h2 refuses decoded header lists over 16 KiB by default; the encoded
/// block is never larger than what it decodes to plus a few bytes a field.
const MAX_BLOCK: usize = 256 * 1024;
/// The authority put in place of one h2 would refuse.
const REPLACEMENT: &[u8] = b"localhost";

/// The first frame of a header block, waiting for the block to end.
struct Pending {
    stream_id: [u8; 4],
    /// END_STREAM of the HEADERS frame.
    end_stream: bool,
    /// The priority fields of the HEADERS frame, when it had them.
    priority: Option<[u8; 5]>,
    /// The block exactly as the client sent it.
    original: Vec<u8>,
}

/// A connection whose incoming `:authority` values h2 will accept.
pub struct AuthorityFix<S> {
    inner: S,
    /// Bytes read from the client, not yet looked at.
    raw: BytesMut,
    /// Bytes ready for h2.
    out: BytesMut,
    /// The preface has been seen.
    started: bool,
    /// Not HTTP/2 with prior knowledge: everything passes untouched (h2
    /// refuses it itself).
    transparent: bool,
    /// Bytes of the current non-header frame still to pass through.
    passing: usize,
    pending: Option<Pending>,
    decoder: loona_hpack::Decoder<'static>,
    /// A block has been re-encoded: every later one must be too.
    reencoding: bool,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    /// Wraps a freshly accepted connection.
    pub fn new(inner: S) -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        // h2 announces the default table size (4096), so the client may
        // never grow its table beyond it.
        decoder.set_max_allowed_table_size(4096);
        AuthorityFix {
            inner,
            raw: BytesMut::new(),
            out: BytesMut::new(),
            started: false,
            transparent: false,
            passing: 0,
            pending: None,
            decoder,
            reencoding: false,
            eof: false,
        }
    }

    /// Moves what can be decided from `raw` to `out`.
    fn process(&mut self) -> io::Result<()> {
        loop {
            if self.transparent {
                let all = self.raw.split();
                self.out.unsplit(all);
                return Ok(());
            }
            if !self.started {
                let n = self.raw.len().min(PREFACE.len());
                if self.raw[..n] != PREFACE[..n] {
                    self.transparent = true;
                    continue;
                }
                if n < PREFACE.len() {
                    return Ok(());
                }
                let preface = self.raw.split_to(n);
                self.out.unsplit(preface);
                self.started = true;
            }
            if self.passing > 0 {
                let n = self.passing.min(self.raw.len());
                if n == 0 {
                    return Ok(());
                }
                let data = self.raw.split_to(n);
                self.out.unsplit(data);
                self.passing -= n;
                continue;
            }
            if self.raw.len() < FRAME_HEADER {
                return Ok(());
            }
            let len = u32::from_be_bytes([0, self.raw[0], self.raw[1], self.raw[2]]) as usize;
            let kind = self.raw[3];
            if kind != HEADERS && kind != CONTINUATION {
                if self.pending.is_some() {
                    return Err(invalid("a header block is interrupted by another frame"));
                }
                let head = self.raw.split_to(FRAME_HEADER);
                self.out.unsplit(head);
                self.passing = len;
                continue;
            }
            if len > MAX_BLOCK {
                return Err(invalid("header block too large"));
            }
            if self.raw.len() < FRAME_HEADER + len {
                return Ok(());
            }
            let mut frame = self.raw.split_to(FRAME_HEADER + len);
            let flags = frame[4];
            let stream_id = [frame[5], frame[6], frame[7], frame[8]];
            frame.advance(FRAME_HEADER);
            self.header_frame(kind, flags, stream_id, frame)?;
        }
    }

    fn header_frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream_id: [u8; 4],
        mut payload: BytesMut,
    ) -> io::Result<()> {
        if kind == HEADERS {
            if self.pending.is_some() {
                return Err(invalid("a header block is interrupted by another frame"));
            }
            if flags & PADDED != 0 {
                if payload.is_empty() {
                    return Err(invalid("HEADERS frame without its pad length"));
                }
                let pad = payload[0] as usize;
                payload.advance(1);
                if pad > payload.len() {
                    return Err(invalid("HEADERS padding longer than the frame"));
                }
                payload.truncate(payload.len() - pad);
            }
            let priority = if flags & PRIORITY != 0 {
                if payload.len() < 5 {
                    return Err(invalid("HEADERS frame too short for its priority"));
                }
                let p = payload.split_to(5);
                Some([p[0], p[1], p[2], p[3], p[4]])
            } else {
                None
            };
            self.pending = Some(Pending {
                stream_id,
                end_stream: flags & END_STREAM != 0,
                priority,
                original: Vec::with_capacity(payload.len()),
            });
        }
        let Some(pending) = self.pending.as_mut() else {
            return Err(invalid("CONTINUATION frame without HEADERS"));
        };
        if pending.stream_id != stream_id {
            return Err(invalid("CONTINUATION frame of another stream"));
        }
        if pending.original.len() + payload.len() > MAX_BLOCK {
            return Err(invalid("header block too large"));
        }
        pending.original.extend_from_slice(&payload);
        if flags & END_HEADERS != 0 {
            if let Some(p) = self.pending.take() {
                self.finish(p)?;
            }
        }
        Ok(())
    }

    /// Decodes a complete header block and hands it on, as it came or
    /// re-encoded with a new authority.
    fn finish(&mut self, p: Pending) -> io::Result<()> {
        let mut fields = Vec::new();
        let mut refused = false;
        self.decoder
            .decode_with_cb(&p.original, |name, value| {
                let mut value = value.into_owned();
                if &*name == b":authority" && http::uri::Authority::try_from(&value[..]).is_err() {
                    value = REPLACEMENT.to_vec();
                    refused = true;
                }
                fields.push((name.into_owned(), value));
            })
            .map_err(|e| invalid(&format!("header block: {e}")))?;
        if refused && !self.reencoding {
            tracing::debug!("replacing a unix socket client's :authority by localhost");
            self.reencoding = true;
        }
        let block = if self.reencoding {
            encode_literals(&fields)
        } else {
            p.original
        };
        self.write_block(p.stream_id, p.end_stream, p.priority, &block);
        Ok(())
    }

    /// Writes a header block as a HEADERS frame and as many CONTINUATION
    /// frames as it needs.
    fn write_block(
        &mut self,
        stream_id: [u8; 4],
        end_stream: bool,
        priority: Option<[u8; 5]>,
        block: &[u8],
    ) {
        let room = MAX_FRAME - if priority.is_some() { 5 } else { 0 };
        let (first, mut rest) = block.split_at(block.len().min(room));
        let mut flags = if end_stream { END_STREAM } else { 0 };
        if priority.is_some() {
            flags |= PRIORITY;
        }
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        let len = first.len() + if priority.is_some() { 5 } else { 0 };
        self.frame_header(len, HEADERS, flags, stream_id);
        if let Some(p) = priority {
            self.out.put_slice(&p);
        }
        self.out.put_slice(first);
        while !rest.is_empty() {
            let (chunk, after) = rest.split_at(rest.len().min(MAX_FRAME));
            let flags = if after.is_empty() { END_HEADERS } else { 0 };
            self.frame_header(chunk.len(), CONTINUATION, flags, stream_id);
            self.out.put_slice(chunk);
            rest = after;
        }
    }

    fn frame_header(&mut self, len: usize, kind: u8, flags: u8, stream_id: [u8; 4]) {
        let l = (len as u32).to_be_bytes();
        self.out.put_slice(&[l[1], l[2], l[3], kind, flags]);
        self.out.put_slice(&stream_id);
    }
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// HPACK: every field as a literal without indexing with a literal name and
/// plain (not Huffman) strings, so the decoder's dynamic table is untouched.
fn encode_literals(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (name, value) in fields {
        b.push(0);
        encode_string(&mut b, name);
        encode_string(&mut b, value);
    }
    b
}

/// An HPACK string literal, not Huffman coded: a 7-bit prefix integer
/// length (RFC 7541 §5.1), then the bytes.
fn encode_string(b: &mut Vec<u8>, s: &[u8]) {
    let mut n = s.len();
    if n < 127 {
        b.push(n as u8);
    } else {
        b.push(127);
        n -= 127;
        while n >= 128 {
            b.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        b.push(n as u8);
    }
    b.extend_from_slice(s);
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            if rb.filled().is_empty() {
                // The client is gone: h2 gets what is left, and its end.
                this.eof = true;
                let rest = this.raw.split();
                this.out.unsplit(rest);
                continue;
            }
            this.raw.extend_from_slice(rb.filled());
            if let Err(e) = this.process() {
                tracing::debug!("closing a unix socket connection: {e}");
                return Poll::Ready(Err(e));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u8, payload: &[u8]) -> Vec<u8> {
        let l = (payload.len() as u32).to_be_bytes();
        let mut f = vec![l[1], l[2], l[3], kind, flags, 0, 0, 0, stream];
        f.extend_from_slice(payload);
        f
    }

    /// Feeds `input` through the wrapper in pieces of `step` bytes and
    /// decodes the header blocks h2 would see.
    fn run(input: &[u8], step: usize) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut fix = AuthorityFix::new(());
        for piece in input.chunks(step) {
            fix.raw.extend_from_slice(piece);
            fix.process().unwrap();
        }
        let mut out = fix.out.to_vec();
        assert!(out.starts_with(PREFACE));
        out.drain(..PREFACE.len());
        let mut dec = loona_hpack::Decoder::new();
        let mut blocks = Vec::new();
        let mut block = Vec::new();
        while !out.is_empty() {
            let len = u32::from_be_bytes([0, out[0], out[1], out[2]]) as usize;
            assert!(len <= MAX_FRAME);
            let (kind, flags) = (out[3], out[4]);
            let payload: Vec<u8> = out[9..9 + len].to_vec();
            out.drain(..9 + len);
            if kind == HEADERS || kind == CONTINUATION {
                let p = if kind == HEADERS && flags & PRIORITY != 0 {
                    &payload[5..]
                } else {
                    &payload[..]
                };
                block.extend_from_slice(p);
                if flags & END_HEADERS != 0 {
                    blocks.push(dec.decode(&block).unwrap());
                    block.clear();
                }
            }
        }
        blocks
    }

    fn request(enc: &mut loona_hpack::Encoder<'_>, authority: &[u8]) -> Vec<u8> {
        enc.encode(vec![
            (&b":method"[..], &b"POST"[..]),
            (b":path", b"/berth.v1.Agent/Info"),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
        ])
    }

    #[test]
    fn percent_encoded_socket_path_becomes_localhost_and_the_rest_stays() {
        let mut enc = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        input.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &request(&mut enc, b"%2Frun%2Fberthd.sock"),
        ));
        input.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\0"));
        // A second request whose fields may come from the dynamic table.
        input.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &request(&mut enc, b"%2Frun%2Fberthd.sock"),
        ));
        for step in [1, 7, input.len()] {
            let blocks = run(&input, step);
            assert_eq!(blocks.len(), 2);
            for b in &blocks {
                let auth = b.iter().find(|(n, _)| n == b":authority").unwrap();
                assert_eq!(auth.1, b"localhost");
                assert!(b
                    .iter()
                    .any(|(n, v)| n == b":path" && v == b"/berth.v1.Agent/Info"));
            }
        }
    }

    #[test]
    fn valid_authority_passes_byte_for_byte() {
        let mut enc = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &request(&mut enc, b"localhost"),
        ));
        let mut fix = AuthorityFix::new(());
        fix.raw.extend_from_slice(&input);
        fix.process().unwrap();
        assert_eq!(&fix.out[..], &input[..]);
    }

    #[test]
    fn continuation_and_padding_are_reassembled() {
        let mut enc = loona_hpack::Encoder::new();
        let block = request(&mut enc, b"/run/berthd.sock");
        let (a, b) = block.split_at(block.len() / 2);
        let mut first = vec![3u8]; // pad length
        first.extend_from_slice(a);
        first.extend_from_slice(&[0, 0, 0]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, PADDED, 1, &first));
        input.extend(frame(CONTINUATION, END_HEADERS, 1, b));
        let blocks = run(&input, 5);
        assert_eq!(blocks.len(), 1);
        assert!(blocks[0]
            .iter()
            .any(|(n, v)| n == b":authority" && v == b"localhost"));
    }

    #[test]
    fn not_http2_passes_untouched() {
        let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut fix = AuthorityFix::new(());
        fix.raw.extend_from_slice(input);
        fix.process().unwrap();
        assert_eq!(&fix.out[..], &input[..]);
    }

    #[test]
    fn broken_header_block_ends_the_connection() {
        let mut input = PREFACE.to_vec();
        input.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ));
        let mut fix = AuthorityFix::new(());
        fix.raw.extend_from_slice(&input);
        assert!(fix.process().is_err());
    }
}
