//! Ends an archive stream (image save, cp) with an error when its writer
//! stopped before the archive was whole, so a gRPC call never ends with OK
//! on a truncated archive (see [`crate::chunk_writer`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio_stream::Stream;
use tonic::Status;

use crate::chunk_writer::{Completion, STALL_TIMEOUT};

/// The items of `inner`, then DEADLINE_EXCEEDED if `done` was not set when
/// it ended.
pub fn or_cut_short<T, S>(inner: S, done: Completion) -> CutShort<S>
where
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    CutShort {
        inner: Some(inner),
        done,
    }
}

/// See [`or_cut_short`].
pub struct CutShort<S> {
    inner: Option<S>,
    done: Completion,
}

impl<T, S> Stream for CutShort<S>
where
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_next(cx) {
            Poll::Ready(None) => {
                self.inner = None;
                if self.done.is_set() {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                        "the archive was cut short: the client took no data for {} s",
                        STALL_TIMEOUT.as_secs()
                    )))))
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn a_whole_stream_ends_ok_and_a_cut_one_with_deadline_exceeded() {
        let whole = Completion::new();
        whole.set();
        let items: Vec<_> = or_cut_short(tokio_stream::iter([Ok::<_, Status>(1)]), whole)
            .collect()
            .await;
        assert_eq!(items.len(), 1);

        let cut: Vec<_> = or_cut_short(tokio_stream::iter([Ok::<_, Status>(1)]), Completion::new())
            .collect()
            .await;
        assert_eq!(cut.len(), 2);
        assert_eq!(
            cut[1].as_ref().expect_err("cut").code(),
            tonic::Code::DeadlineExceeded
        );
    }
}
