//! What an attempt's response head was: gRFC A6's Response-Headers, which commit the
//! call, or something else (a Trailers-Only response, a proxy's non-gRPC answer).
//!
//! A6 ("When Retries are Valid"): "An RPC becomes committed [when] the client receives
//! Response-Headers", and "If the application code closes the stream with an error before
//! sending headers or any response messages, gRPC servers should send the error in
//! Trailers-Only", the response a retry is made for. tonic's `Grpc` turns a Trailers-Only
//! response with an error into an `Err` before any `Response` exists, and turns everything
//! else into a `Response`, whose HTTP status is then gone: this wrapper of the transport
//! marks, in the response's extensions, a head that was not gRPC Response-Headers (HTTP
//! 200 without `grpc-status`, as PROTOCOL-HTTP2.md defines them): a non-200 head (a
//! proxy's `503`), as grpc-go treats it (its `TrailersOnly()` is true then), or a
//! Trailers-Only `OK`. Only that rare case is marked, so a call pays no allocation for it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tonic::codegen::Service;
use tonic::codegen::http::{self, HeaderName, StatusCode};

use crate::client::engine::Transport;

/// A client transport that marks each response whose head was not gRPC Response-Headers
/// (see [`ResponseHead`]).
///
/// Named only by the signature of the generated client's `ClientCore::map_grpc`, which
/// generated code calls with a closure: it is not part of the public API.
#[allow(unreachable_pub)] // see above
#[derive(Debug, Clone)]
pub struct Head<T> {
    inner: T,
}

impl<T> Head<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self { inner }
    }
}

/// Built once: a lookup by `&str` parses the name on every response.
static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// Whether an attempt's response head was gRPC Response-Headers, which commit the call;
/// in a response's extensions only when it was not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    pub(crate) headers: bool,
}

impl ResponseHead {
    fn of<B>(response: &http::Response<B>) -> Self {
        Self {
            headers: response.status() == StatusCode::OK
                && !response.headers().contains_key(&GRPC_STATUS),
        }
    }

    /// Whether `response` arrived with Response-Headers: unless [`Head`] marked it
    /// otherwise (so also, the safe answer, when no `Head` saw it).
    pub(crate) fn committed<M>(response: &tonic::Response<M>) -> bool {
        response
            .extensions()
            .get::<ResponseHead>()
            .is_none_or(|head| head.headers)
    }
}

impl<T: Transport> Service<http::Request<tonic::body::Body>> for Head<T> {
    type Response = http::Response<T::ResponseBody>;
    type Error = T::Error;
    type Future = HeadFuture<T::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tonic::client::GrpcService::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        HeadFuture {
            inner: tonic::client::GrpcService::call(&mut self.inner, request),
        }
    }
}

pin_project! {
    /// The response future of [`Head`].
    #[allow(unreachable_pub)] // named by `Head`'s `Service` impl only
    pub struct HeadFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, B, E> Future for HeadFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut result = ready!(self.project().inner.poll(cx));
        if let Ok(response) = &mut result {
            let head = ResponseHead::of(response);
            if !head.headers {
                response.extensions_mut().insert(head);
            }
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, grpc_status: Option<&str>) -> bool {
        let mut response = http::Response::builder().status(status);
        if let Some(code) = grpc_status {
            response = response.header("grpc-status", code);
        }
        ResponseHead::of(&response.body(()).unwrap()).headers
    }

    #[test]
    fn only_a_200_without_grpc_status_is_response_headers() {
        assert!(head(200, None));
        // Trailers-Only, an error or OK.
        assert!(!head(200, Some("14")));
        assert!(!head(200, Some("0")));
        // A proxy's answer.
        assert!(!head(503, None));
        assert!(!head(404, None));
    }

    #[test]
    fn an_unmarked_response_counts_as_committed() {
        assert!(ResponseHead::committed(&tonic::Response::new(())));
        let mut marked = tonic::Response::new(());
        marked
            .extensions_mut()
            .insert(ResponseHead { headers: false });
        assert!(!ResponseHead::committed(&marked));
    }
}
