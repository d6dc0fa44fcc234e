//! What a user writes without tonic-intercept: tower layers over HTTP requests and bodies.
//!
//! `TokenLayer` is the minimal unboxed token check. `FullLayer` does at the byte level
//! what `#[intercept]`'s full chain does with types: the token, a deadline over the whole
//! call, and per message (found by parsing the gRPC length prefixes) a count limit, a
//! size limit and a pacing check, both ways.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tonic::Status;
use tower::{Layer, Service};

use crate::token_ok;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// The inner service's future, or a response decided at once.
    #[project = EitherProj]
    pub enum Either<F, T> {
        Inner { #[pin] future: F },
        Now { response: Option<T> },
    }
}

impl<F, T, E> Future for Either<F, T>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            EitherProj::Inner { future } => future.poll(cx),
            EitherProj::Now { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}

/// The minimal token check.
#[derive(Debug, Clone, Copy)]
pub struct TokenLayer;

impl<S> Layer<S> for TokenLayer {
    type Service = Token<S>;
    fn layer(&self, inner: S) -> Token<S> {
        Token { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Token<S> {
    inner: S,
}

impl<S, B, R: Default> Service<http::Request<B>> for Token<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if token_ok(request.headers()) {
            Either::Inner {
                future: self.inner.call(request),
            }
        } else {
            Either::Now {
                response: Some(Status::unauthenticated("invalid token").into_http()),
            }
        }
    }
}

/// Token, deadline, and per-message count, size and pacing checks both ways.
#[derive(Debug, Clone, Copy)]
pub struct FullLayer {
    timeout: Duration,
    limits: FrameLimits,
}

#[derive(Debug, Clone, Copy)]
struct FrameLimits {
    max_bytes: usize,
    max_messages: u64,
}

impl FullLayer {
    pub fn new(timeout: Duration, max_bytes: usize, max_messages: u64) -> Self {
        Self {
            timeout,
            limits: FrameLimits {
                max_bytes,
                max_messages,
            },
        }
    }
}

impl<S> Layer<S> for FullLayer {
    type Service = Full<S>;
    fn layer(&self, inner: S) -> Full<S> {
        Full {
            inner,
            layer: *self,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Full<S> {
    inner: S,
    layer: FullLayer,
}

impl<S> Service<http::Request<tonic::body::Body>> for Full<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>>,
{
    type Response = http::Response<Frames<tonic::body::Body>>;
    type Error = S::Error;
    type Future = Either<Deadline<S::Future>, Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if !token_ok(request.headers()) {
            let response = Status::unauthenticated("invalid token").into_http();
            return Either::Now {
                response: Some(response.map(|b| Frames::new(b, self.layer.limits, far()))),
            };
        }
        let deadline = Instant::now() + self.layer.timeout;
        let limits = self.layer.limits;
        // The request body must go back into tonic's own body type: a box per call.
        let request =
            request.map(|body| tonic::body::Body::new(Frames::new(body, limits, deadline)));
        Either::Inner {
            future: Deadline {
                future: self.inner.call(request),
                sleep: tokio::time::sleep_until(deadline),
                deadline,
                limits,
            },
        }
    }
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

pin_project! {
    /// The response future raced against the call's deadline.
    pub struct Deadline<F> {
        #[pin]
        future: F,
        #[pin]
        sleep: Sleep,
        deadline: Instant,
        limits: FrameLimits,
    }
}

impl<F, E> Future for Deadline<F>
where
    F: Future<Output = Result<http::Response<tonic::body::Body>, E>>,
{
    type Output = Result<http::Response<Frames<tonic::body::Body>>, E>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (limits, deadline) = (*this.limits, *this.deadline);
        if let Poll::Ready(result) = this.future.poll(cx) {
            return Poll::Ready(result.map(|r| r.map(|b| Frames::new(b, limits, deadline))));
        }
        ready!(this.sleep.poll(cx));
        let response = Status::deadline_exceeded("deadline exceeded").into_http();
        Poll::Ready(Ok(response.map(|b| Frames::new(b, limits, deadline))))
    }
}

pin_project! {
    /// A body whose gRPC messages are found, counted, size-checked and paced.
    pub struct Frames<B> {
        #[pin]
        inner: B,
        #[pin]
        deadline: Sleep,
        meter: FrameMeter,
        done: bool,
    }
}

impl<B> Frames<B> {
    fn new(inner: B, limits: FrameLimits, deadline: Instant) -> Self {
        Self {
            inner,
            deadline: tokio::time::sleep_until(deadline),
            meter: FrameMeter {
                limits,
                header: [0; 5],
                have: 0,
                remaining: 0,
                messages: 0,
                next: None,
            },
            done: false,
        }
    }
}

impl<B> Body for Frames<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        if this.deadline.poll(cx).is_ready() {
            *this.done = true;
            return Poll::Ready(Some(Err(
                Status::deadline_exceeded("deadline exceeded").into()
            )));
        }
        match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref()
                    && let Err(status) = this.meter.feed(data)
                {
                    *this.done = true;
                    return Poll::Ready(Some(Err(status.into())));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }
}

/// Walks the 5-byte gRPC message prefixes across data chunks.
#[derive(Debug)]
struct FrameMeter {
    limits: FrameLimits,
    header: [u8; 5],
    have: usize,
    remaining: usize,
    messages: u64,
    next: Option<Instant>,
}

impl FrameMeter {
    fn feed(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len());
                self.remaining -= n;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 5 {
                self.have = 0;
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]) as usize;
                self.message(len)?;
                self.remaining = len;
            }
        }
        Ok(())
    }

    fn message(&mut self, len: usize) -> Result<(), Status> {
        if self.messages >= self.limits.max_messages {
            return Err(Status::resource_exhausted("too many messages"));
        }
        if len > self.limits.max_bytes {
            return Err(Status::resource_exhausted("message too large"));
        }
        self.messages += 1;
        // The pacing check a rate limit makes per message.
        let now = Instant::now();
        if self.next.is_some_and(|next| now < next) {
            return Err(Status::resource_exhausted("too fast"));
        }
        self.next = Some(now);
        Ok(())
    }
}
