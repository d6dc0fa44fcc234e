//! The one place the demo injects failures: a [`Channel`] wrapper standing in for a
//! flaky path to the server (a proxy answering `UNAVAILABLE` while the backend restarts,
//! a slow hop). It answers the next calls with `UNAVAILABLE`, or holds one back, before
//! they reach the server, so the services stay real services and only the client
//! scenarios, whose retries and deadlines need a failure to act on, see it. The tests
//! crate's fault-injecting server (`tests/src/flaky.rs`) would bring a third service and
//! a test-support dependency into the examples; this is a few dozen lines on the client side.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::transport::Channel;

/// A [`Channel`] that fails or slows the next calls on purpose; clones share the faults.
#[derive(Debug, Clone)]
pub(crate) struct FlakyChannel {
    inner: Channel,
    faults: Arc<Faults>,
}

#[derive(Debug, Default)]
struct Faults {
    failures: AtomicU32,
    delay_ms: AtomicU64,
    calls: AtomicU32,
}

impl FlakyChannel {
    pub(crate) fn new(inner: Channel) -> Self {
        Self {
            inner,
            faults: Arc::default(),
        }
    }

    /// The next `n` calls fail with `UNAVAILABLE` (a restarting backend, say).
    pub(crate) fn fail_next(&self, n: u32) {
        self.faults.failures.store(n, Ordering::SeqCst);
    }

    /// The next call waits `delay` before it goes on to the server (a slow backend).
    pub(crate) fn slow_next(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.faults.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// How many calls (attempts, for a retrying client) came through so far.
    pub(crate) fn calls(&self) -> u32 {
        self.faults.calls.load(Ordering::SeqCst)
    }
}

impl Service<http::Request<Body>> for FlakyChannel {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The channel polled ready serves this call; a fresh clone waits for the next.
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        let faults = self.faults.clone();
        Box::pin(async move {
            let call = faults.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let delay = faults.delay_ms.swap(0, Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let take = |n: u32| n.checked_sub(1);
            let fail = faults
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, take);
            if fail.is_ok() {
                let path = request.uri().path().to_owned();
                let status = Status::unavailable(format!("{path}: injected failure (call {call})"));
                return Ok(status.into_http());
            }
            ready.call(request).await
        })
    }
}
