//! The resize channel of exec and attach: the client's terminal sizes, a
//! stream of JSON objects (`{"Width":w,"Height":h}`, client-go's
//! TerminalSize), pure.

use serde::Deserialize;

/// The most bytes of an unfinished resize document kept.
const RESIZE_BUF_MAX: usize = 4096;

/// A terminal size from the resize channel (client-go's TerminalSize).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TermSize {
    /// Columns.
    #[serde(rename = "Width", alias = "width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height", alias = "height")]
    pub height: u16,
}

/// The resize channel: a stream of JSON objects (client-go writes one per
/// message, each followed by a newline, but a stream need not keep to
/// message boundaries).
#[derive(Debug, Default)]
pub struct ResizeStream {
    buf: Vec<u8>,
}

/// A resize stream that is not one.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the resize stream is not a sequence of {{\"Width\":w,\"Height\":h}} objects")]
pub struct BadResize;

impl ResizeStream {
    /// Takes `data`; the sizes it completes. A size with a zero side is
    /// dropped, as kubelet's HandleResizing drops it (a client whose own
    /// terminal has no size sends 0x0, which would leave the process with
    /// no usable terminal). After an error the stream starts over (what
    /// was buffered is dropped).
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<TermSize>, BadResize> {
        self.buf.extend_from_slice(data);
        let mut sizes = Vec::new();
        let mut iter = serde_json::Deserializer::from_slice(&self.buf).into_iter::<TermSize>();
        let consumed = loop {
            match iter.next() {
                Some(Ok(size)) if size.width == 0 || size.height == 0 => {}
                Some(Ok(size)) => sizes.push(size),
                None => break iter.byte_offset(),
                Some(Err(e)) if e.is_eof() => break iter.byte_offset(),
                Some(Err(_)) => {
                    self.buf.clear();
                    return Err(BadResize);
                }
            }
        };
        self.buf.drain(..consumed);
        if self.buf.len() > RESIZE_BUF_MAX {
            self.buf.clear();
            return Err(BadResize);
        }
        Ok(sizes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_stream_takes_documents_across_messages() {
        let mut r = ResizeStream::default();
        assert_eq!(
            r.push(b"{\"Width\":80,\"Height\":24}\n"),
            Ok(vec![TermSize {
                width: 80,
                height: 24
            }])
        );
        assert_eq!(r.push(b"{\"Width\":100,"), Ok(vec![]));
        assert_eq!(
            r.push(b"\"Height\":50}{\"width\":1,\"height\":2}"),
            Ok(vec![
                TermSize {
                    width: 100,
                    height: 50
                },
                TermSize {
                    width: 1,
                    height: 2
                }
            ])
        );
        assert_eq!(r.push(b"{\"Width\":0,\"Height\":0}\n"), Ok(vec![]));
        assert_eq!(r.push(b"{\"Width\":-1,\"Height\":2}"), Err(BadResize));
        assert_eq!(r.push(b"nope"), Err(BadResize));
        // It starts over after an error.
        assert_eq!(
            r.push(b"{\"Width\":3,\"Height\":4}").map(|v| v.len()),
            Ok(1)
        );
        // An unfinished document is bounded.
        let long = format!("{{\"Width\":{}", " ".repeat(5000));
        assert_eq!(r.push(long.as_bytes()), Err(BadResize));
    }
}
