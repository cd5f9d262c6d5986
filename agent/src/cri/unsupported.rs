//! The one answer of every CRI call berth does not serve yet.
//!
//! A half-built capability must say so: kubelet and crictl get
//! UNIMPLEMENTED with the call's name, never an empty or made-up success.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::Status;

/// The prefix of every "not supported yet" message of the CRI server.
pub const NOT_SUPPORTED: &str = "berth CRI: not supported yet";

/// UNIMPLEMENTED for `what` (an RPC name such as "RunPodSandbox", or a
/// request field).
pub fn not_supported(what: &str) -> Status {
    Status::unimplemented(format!("{NOT_SUPPORTED}: {what}"))
}

/// The longest method name a message repeats (CRI's are under 30).
const METHOD_MAX: usize = 64;

/// Wraps a generated CRI server so that a call it does not know at all (one
/// of a cri-api newer than the api.proto berthd is built from) answers
/// UNIMPLEMENTED with the same named message, not tonic's empty one.
/// Clients go by the code: cri-client falls back from the Stream* calls to
/// the unary List* ones on UNIMPLEMENTED.
#[derive(Clone)]
pub struct NamedUnimplemented<S> {
    inner: S,
}

impl<S> NamedUnimplemented<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        NamedUnimplemented { inner }
    }
}

impl<S: NamedService> NamedService for NamedUnimplemented<S> {
    const NAME: &'static str = S::NAME;
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<S, B> tower::Service<Request<B>> for NamedUnimplemented<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let method = method_of(req.uri().path());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            name_unimplemented(&mut resp, &method);
            Ok(resp)
        })
    }
}

/// The method of a gRPC path ("/runtime.v1.ImageService/StreamImages"), if
/// it is a plain name a message can repeat.
fn method_of(path: &str) -> String {
    path.rsplit('/')
        .next()
        .filter(|m| {
            !m.is_empty() && m.len() <= METHOD_MAX && m.bytes().all(|b| b.is_ascii_alphanumeric())
        })
        .unwrap_or("this call")
        .to_string()
}

/// Gives an UNIMPLEMENTED answer without a message the named one.
fn name_unimplemented(resp: &mut Response<Body>, method: &str) {
    let h = resp.headers();
    let unimplemented = h.get("grpc-status").is_some_and(|v| v.as_bytes() == b"12");
    let has_message = h.get("grpc-message").is_some_and(|v| !v.is_empty());
    if unimplemented && !has_message {
        // Printable ASCII only (method_of): no percent-encoding needed.
        if let Ok(v) = HeaderValue::from_str(&format!("{NOT_SUPPORTED}: {method}")) {
            resp.headers_mut().insert("grpc-message", v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Service, ServiceExt};

    /// A server that knows nothing, as a generated one answers an unknown
    /// method.
    fn unknown_method() -> Response<Body> {
        let mut r = Response::new(Body::default());
        r.headers_mut()
            .insert("grpc-status", HeaderValue::from_static("12"));
        r
    }

    #[tokio::test]
    async fn unknown_calls_get_the_named_message() {
        let inner = tower::service_fn(|_req: Request<()>| async { Ok(unknown_method()) });
        let mut svc = NamedUnimplemented::new(inner);
        let req = Request::builder()
            .uri("/runtime.v1.ImageService/StreamImages")
            .body(())
            .unwrap();
        let resp = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(
            resp.headers()["grpc-message"],
            "berth CRI: not supported yet: StreamImages"
        );
    }

    #[test]
    fn only_unnamed_unimplemented_answers_change() {
        let mut r = unknown_method();
        r.headers_mut()
            .insert("grpc-message", HeaderValue::from_static("own"));
        name_unimplemented(&mut r, "X");
        assert_eq!(r.headers()["grpc-message"], "own");
        let mut ok = Response::new(Body::default());
        ok.headers_mut()
            .insert("grpc-status", HeaderValue::from_static("0"));
        name_unimplemented(&mut ok, "X");
        assert!(ok.headers().get("grpc-message").is_none());
        assert_eq!(method_of("/a.B/StreamPodSandboxes"), "StreamPodSandboxes");
        assert_eq!(method_of(&format!("/a.B/{}", "x".repeat(65))), "this call");
        assert_eq!(method_of("/a.B/bad%20name"), "this call");
    }

    #[test]
    fn names_the_call() {
        let s = not_supported("RunPodSandbox");
        assert_eq!(s.code(), tonic::Code::Unimplemented);
        assert_eq!(s.message(), "berth CRI: not supported yet: RunPodSandbox");
    }
}
