//! Message size limits of the API, and the status an oversize request
//! gets.
//!
//! tonic refuses a request over its decoding limit with `OUT_OF_RANGE`
//! ("decoded message length too large"); gRPC's own status code table
//! says `RESOURCE_EXHAUSTED` for that, and that is what clients test for.
//! The refusal happens inside tonic, before a handler runs, so the code is
//! rewritten on the way out, in the trailers-only response it sends.

use tonic::codegen::http;

/// Most bytes of a request message berthd decodes: gRPC's usual 4 MiB.
/// The largest spec accepted (see `container::bounds`) is about 1.6 MiB.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Most bytes of a response message berthd encodes: List and snapshots
/// grow with the number of containers (each at most about 3 MiB, see
/// `container::bounds`). berthctl decodes up to the same size.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// `OUT_OF_RANGE` for an oversize message becomes `RESOURCE_EXHAUSTED`.
pub fn fix_status<B>(mut r: http::Response<B>) -> http::Response<B> {
    let oversize = r.headers().get("grpc-status").is_some_and(|s| s == "11")
        && r.headers().get("grpc-message").is_some_and(|m| {
            let m = m.as_bytes();
            [
                &b"message length too large"[..],
                b"message%20length%20too%20large",
            ]
            .iter()
            .any(|needle| m.windows(needle.len()).any(|w| w == *needle))
        });
    if oversize {
        r.headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_oversize_out_of_range_is_rewritten() {
        let resp = |status: &'static str, msg: &'static str| {
            let mut r = http::Response::new(());
            r.headers_mut()
                .insert("grpc-status", http::HeaderValue::from_static(status));
            r.headers_mut()
                .insert("grpc-message", http::HeaderValue::from_static(msg));
            fix_status(r).headers()["grpc-status"].clone()
        };
        let big = "Error,%20decoded%20message%20length%20too%20large:%20found%205000000%20bytes";
        assert_eq!(resp("11", big), "8");
        assert_eq!(resp("11", "events%20before%20seq%203"), "11");
        assert_eq!(resp("5", big), "5");
    }
}
