//! An in-memory sink with a size cap, for registry metadata (image
//! configs) whose size a registry may misstate.

/// An in-memory sink that refuses to grow past `max` bytes.
pub(super) struct Capped {
    buf: Vec<u8>,
    max: u64,
    overflowed: bool,
}

impl Capped {
    pub(super) fn new(max: u64) -> Self {
        Capped {
            buf: Vec::new(),
            max,
            overflowed: false,
        }
    }

    /// True once a write was refused for going past the cap.
    pub(super) fn overflowed(&self) -> bool {
        self.overflowed
    }

    pub(super) fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if (self.buf.len() + data.len()) as u64 > self.max {
            let max = self.max;
            self.overflowed = true;
            return std::task::Poll::Ready(Err(std::io::Error::other(format!(
                "more than {max} bytes of metadata"
            ))));
        }
        self.buf.extend_from_slice(data);
        std::task::Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn metadata_is_refused_once_it_grows_past_the_cap() {
        use tokio::io::AsyncWriteExt;
        let mut c = Capped::new(10);
        c.write_all(b"0123456789").await.unwrap();
        assert!(!c.overflowed());
        assert!(c.write_all(b"x").await.is_err(), "an 11th byte");
        assert!(c.overflowed());
        assert_eq!(c.into_inner(), b"0123456789");
    }
}
