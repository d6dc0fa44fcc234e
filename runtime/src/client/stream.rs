//! The typed streams of a client call: the request stream each attempt sends (with its
//! replay buffer) and the response stream the application reads.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use prost::Message;
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;
use tonic::metadata::MetadataMap;
use tonic::{CancellationHandle, Code, Status, Streaming};

use crate::client::config::{ClientConfig, ClientHook, ClientOutcome};
use crate::client::policy::Settings;
use crate::client::retry::{GiveUpReason, counts_as_failure, pushback};
use crate::rpc::Rpc;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks but user hooks, and their state is
    // consistent either way.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts of one call, shared by its attempts' request streams and its response stream,
/// and the status of a policy that ended the call from the request side.
#[derive(Debug, Default)]
pub(crate) struct SendCounts {
    sent: AtomicU64,
    received: AtomicU64,
    violated: AtomicBool,
    violation: Mutex<Violation>,
}

#[derive(Debug, Default)]
struct Violation {
    status: Option<Status>,
    waker: Option<Waker>,
    /// Resets the request stream of the current attempt (streaming requests only).
    cancel: Option<CancellationHandle>,
}

impl SendCounts {
    /// Passes one request message through the limits and the hook, then counts it.
    pub(crate) fn send<R: Rpc, H: ClientHook<R>>(
        &self,
        hooks: &H,
        settings: &Settings,
        message: &R::Request,
    ) -> Result<(), Status> {
        let n = self.sent.load(Ordering::Relaxed) + 1;
        if let Some(max) = settings.max_messages_sent
            && n > max
        {
            return Err(Status::resource_exhausted(format!(
                "{}: more than {max} request messages (client limit)",
                R::DESCRIPTOR.method
            )));
        }
        check_size::<R>(settings, message, "request")?;
        hooks.on_send(message)?;
        self.sent.store(n, Ordering::Relaxed);
        Ok(())
    }

    /// Passes one response message through the limits and the hook, then counts it.
    pub(crate) fn receive<R: Rpc, H: ClientHook<R>>(
        &self,
        hooks: &H,
        settings: &Settings,
        message: &R::Response,
    ) -> Result<(), Status> {
        let n = self.received.load(Ordering::Relaxed) + 1;
        if let Some(max) = settings.max_messages_received
            && n > max
        {
            return Err(Status::resource_exhausted(format!(
                "{}: more than {max} response messages (client limit)",
                R::DESCRIPTOR.method
            )));
        }
        check_size::<R>(settings, message, "response")?;
        hooks.on_receive(message)?;
        self.received.store(n, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub(crate) fn violated(&self) -> bool {
        self.violated.load(Ordering::Acquire)
    }

    /// Ends the call with `status` from the request side: resets the request stream and
    /// wakes whoever waits on the response.
    fn violate(&self, status: Status) {
        let mut violation = lock(&self.violation);
        violation.status.get_or_insert(status);
        self.violated.store(true, Ordering::Release);
        if let Some(cancel) = violation.cancel.take() {
            cancel.cancel();
        }
        if let Some(waker) = violation.waker.take() {
            waker.wake();
        }
    }

    /// Makes `request` the current attempt, whose stream [`cancel_attempt`] resets.
    ///
    /// [`cancel_attempt`]: SendCounts::cancel_attempt
    pub(crate) fn arm<M>(&self, request: &mut tonic::Request<M>) {
        let handle = request.cancellation_handle();
        if let Some(previous) = lock(&self.violation).cancel.replace(handle) {
            previous.cancel();
        }
    }

    /// Resets the request stream of the current attempt (RST_STREAM), if it is still
    /// open: a failed or abandoned attempt must not keep the server waiting for more.
    pub(crate) fn cancel_attempt(&self) {
        if let Some(cancel) = lock(&self.violation).cancel.take() {
            cancel.cancel();
        }
    }

    /// The violation, if any; otherwise registers `cx` to be woken by one.
    fn poll_violation(&self, cx: &mut Context<'_>) -> Poll<Status> {
        let mut violation = lock(&self.violation);
        match &violation.status {
            Some(status) => Poll::Ready(status.clone()),
            None => {
                violation.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// `attempt`, unless the request stream ends the call first.
    pub(crate) async fn or_violation<T>(
        &self,
        attempt: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let mut attempt = std::pin::pin!(attempt);
        poll_fn(move |cx| {
            if let Poll::Ready(result) = attempt.as_mut().poll(cx) {
                // A violation resets the attempt's stream (`violate`), which can fail the
                // attempt with a `CANCELLED` of its own before this future sees the
                // violation: the policy's status is the call's.
                if result.is_err() && self.violated() {
                    return self.poll_violation(cx).map(Err);
                }
                return Poll::Ready(result);
            }
            self.poll_violation(cx).map(Err)
        })
        .await
    }
}

/// Measuring walks the whole message: only done under a limit.
fn check_size<R: Rpc>(
    settings: &Settings,
    message: &impl Message,
    what: &str,
) -> Result<(), Status> {
    let Some(max) = settings.max_message_bytes else {
        return Ok(());
    };
    let len = message.encoded_len();
    if len as u64 > max {
        return Err(Status::resource_exhausted(format!(
            "{}: {what} message of {len} bytes, over the client limit of {max}",
            R::DESCRIPTOR.method
        )));
    }
    Ok(())
}

/// The request stream of a client-streaming or bidi call, shared by its attempts.
pub(crate) struct Sending<R: Rpc, St, H> {
    replay: Arc<Mutex<Replay<R, St>>>,
    config: Arc<ClientConfig<R::Service, H>>,
    settings: Settings,
    counts: Arc<SendCounts>,
}

struct Replay<R: Rpc, St> {
    source: Pin<Box<St>>,
    source_done: bool,
    /// What was sent so far, while it may be replayed.
    buffer: Vec<R::Request>,
    bytes: usize,
    /// The stream outgrew the replay buffer (or the RPC is not retried): no replay.
    committed: bool,
    /// The attempt whose stream may pull from `source`; older attempts' streams wait.
    generation: u32,
}

impl<R, St, H> Sending<R, St, H>
where
    R: Rpc,
    R::Request: Clone,
    H: ClientHook<R>,
    St: Stream<Item = R::Request> + Send + 'static,
{
    pub(crate) fn new(
        source: St,
        config: &Arc<ClientConfig<R::Service, H>>,
        settings: Settings,
        counts: Arc<SendCounts>,
    ) -> Self {
        Self {
            replay: Arc::new(Mutex::new(Replay {
                source: Box::pin(source),
                source_done: false,
                buffer: Vec::new(),
                bytes: 0,
                committed: settings.retry.is_none(),
                generation: 0,
            })),
            config: Arc::clone(config),
            settings,
            counts,
        }
    }

    /// The stream of the next attempt: what was sent so far, then the rest of the source.
    pub(crate) fn attempt(&self) -> AttemptStream<R, St, H> {
        let mut replay = lock(&self.replay);
        replay.generation += 1;
        AttemptStream {
            replay: Arc::clone(&self.replay),
            config: Arc::clone(&self.config),
            settings: self.settings,
            counts: Arc::clone(&self.counts),
            generation: replay.generation,
            cursor: 0,
        }
    }

    /// Whether what was sent can no longer be replayed.
    pub(crate) fn committed(&self) -> bool {
        lock(&self.replay).committed
    }
}

/// One attempt's request stream.
pub(crate) struct AttemptStream<R: Rpc, St, H> {
    replay: Arc<Mutex<Replay<R, St>>>,
    config: Arc<ClientConfig<R::Service, H>>,
    settings: Settings,
    counts: Arc<SendCounts>,
    generation: u32,
    cursor: usize,
}

impl<R, St, H> Stream for AttemptStream<R, St, H>
where
    R: Rpc,
    R::Request: Clone,
    H: ClientHook<R>,
    St: Stream<Item = R::Request> + Send + 'static,
{
    type Item = R::Request;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let mut replay = lock(&this.replay);
        // A superseded attempt, or a call a policy ended, never ends its stream cleanly:
        // a half-close would tell the server the request was complete.
        if replay.generation != this.generation || this.counts.violated() {
            return Poll::Pending;
        }
        if let Some(message) = replay.buffer.get(this.cursor) {
            this.cursor += 1;
            return Poll::Ready(Some(message.clone()));
        }
        if replay.source_done {
            return Poll::Ready(None);
        }
        match replay.source.as_mut().poll_next(cx) {
            Poll::Ready(Some(message)) => {
                if let Err(status) =
                    this.counts
                        .send::<R, H>(&this.config.hooks, &this.settings, &message)
                {
                    this.counts.violate(status);
                    return Poll::Pending;
                }
                if !replay.committed {
                    let bytes = replay.bytes + message.encoded_len();
                    if bytes > this.settings.replay_buffer {
                        replay.committed = true;
                        replay.buffer = Vec::new();
                    } else {
                        replay.bytes = bytes;
                        replay.buffer.push(message.clone());
                        this.cursor += 1;
                    }
                }
                Poll::Ready(Some(message))
            }
            Poll::Ready(None) => {
                replay.source_done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// What a call's end is reported with: metrics and the hook's outcome.
pub(crate) struct Tail<R: Rpc, H> {
    pub(crate) config: Arc<ClientConfig<R::Service, H>>,
    pub(crate) counts: Arc<SendCounts>,
    pub(crate) settings: Settings,
    pub(crate) started: Instant,
    pub(crate) attempts: u32,
    pub(crate) gave_up: Option<GiveUpReason>,
}

impl<R: Rpc, H: ClientHook<R>> Tail<R, H> {
    /// A committed call failed (its stream ended with `status` after the response
    /// headers): it counts against the throttle as gRFC A6 says ([`counts_as_failure`]),
    /// and if its policy retries that code, it is not retried because it is committed,
    /// which is worth a give-up like any other.
    pub(crate) fn committed_failure(&mut self, status: &Status) {
        let policy = self.settings.retry.as_ref();
        if counts_as_failure(policy, status.code(), pushback(status.metadata())) {
            self.config.throttle.on_failure();
        }
        if policy.is_some_and(|retry| retry.is_retryable(status.code())) {
            self.gave_up = Some(GiveUpReason::Committed);
            if let Some(metrics) = &self.config.metrics {
                metrics.gave_up::<R>(GiveUpReason::Committed);
            }
        }
    }

    /// Reports the call's end. A successful call gives `token_ratio` back to the
    /// throttle, whether its RPC has a retry policy or not (gRFC A6: "Every outgoing RPC
    /// (regardless of service or method invoked) will effect `token_count` [...] Every
    /// successful RPC will increment the `token_count` by `tokenRatio`"; grpc-go's
    /// `clientStream.finish` calls `successfulRPC` for every call that ends `OK`).
    pub(crate) fn finish(&self, code: Code) {
        if code == Code::Ok {
            self.config.throttle.on_success();
        }
        let elapsed = self.started.elapsed();
        let (sent, received) = (self.counts.sent(), self.counts.received());
        if let Some(metrics) = &self.config.metrics {
            metrics.finished::<R>(code, elapsed, sent, received);
        }
        self.config.hooks.on_finish(&ClientOutcome::at(
            code,
            self.attempts,
            self.gave_up,
            sent,
            received,
            elapsed,
        ));
    }
}

/// The response stream of a server-streaming or bidi call, after the client's policies:
/// each message passes the RPC's limits and [`ClientHook::on_receive`], the call's
/// deadline ends it with `DEADLINE_EXCEEDED`, and its end (or its drop) is reported to
/// the metrics and [`ClientHook::on_finish`].
///
/// Read it like tonic's `Streaming`: `while let Some(message) = stream.message().await? { .. }`,
/// or as a [`Stream`] of `Result<R::Response, Status>`. After an error it ends.
pub struct Responses<R: Rpc, H: ClientHook<R> = ()> {
    inner: Option<Streaming<R::Response>>,
    /// The first message, read before the call was committed (only when the response
    /// head was not gRPC Response-Headers); `Some(None)`: the stream ended before any
    /// message.
    first: Option<Option<R::Response>>,
    deadline: Option<Pin<Box<Sleep>>>,
    tail: Tail<R, H>,
    finished: bool,
}

// No field is structurally pinned.
impl<R: Rpc, H: ClientHook<R>> Unpin for Responses<R, H> {}

impl<R: Rpc, H: ClientHook<R>> Responses<R, H> {
    pub(crate) fn new(
        inner: Streaming<R::Response>,
        first: Option<Option<R::Response>>,
        deadline: Option<Instant>,
        tail: Tail<R, H>,
    ) -> Self {
        Self {
            inner: Some(inner),
            first,
            deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
            tail,
            finished: false,
        }
    }

    /// The next message, `None` at the end of the stream.
    pub async fn message(&mut self) -> Result<Option<R::Response>, Status> {
        poll_fn(|cx| Pin::new(&mut *self).poll_next(cx))
            .await
            .transpose()
    }

    /// The trailing metadata, once the stream has ended (see tonic's
    /// `Streaming::trailers`).
    pub async fn trailers(&mut self) -> Result<Option<MetadataMap>, Status> {
        match &mut self.inner {
            Some(inner) => inner.trailers().await,
            None => Ok(None),
        }
    }

    fn end(&mut self, code: Code) {
        if !self.finished {
            self.finished = true;
            self.inner = None;
            self.deadline = None;
            if code != Code::Ok {
                // The call is over: so is the request stream of a bidi call.
                self.tail.counts.cancel_attempt();
            }
            self.tail.finish(code);
        }
    }

    fn fail(&mut self, status: Status) -> Poll<Option<Result<R::Response, Status>>> {
        self.end(status.code());
        Poll::Ready(Some(Err(status)))
    }

    fn deliver(&mut self, message: R::Response) -> Poll<Option<Result<R::Response, Status>>> {
        match self.tail.counts.receive::<R, H>(
            &self.tail.config.hooks,
            &self.tail.settings,
            &message,
        ) {
            Ok(()) => Poll::Ready(Some(Ok(message))),
            Err(status) => self.fail(status),
        }
    }
}

impl<R: Rpc, H: ClientHook<R>> Stream for Responses<R, H> {
    type Item = Result<R::Response, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        if this.tail.counts.violated()
            && let Poll::Ready(status) = this.tail.counts.poll_violation(cx)
        {
            return this.fail(status);
        }
        match this.first.take() {
            Some(Some(message)) => return this.deliver(message),
            Some(None) => {
                this.end(Code::Ok);
                return Poll::Ready(None);
            }
            None => {}
        }
        if let Some(deadline) = &mut this.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            return this.fail(Status::deadline_exceeded(format!(
                "{}: deadline exceeded while streaming",
                R::DESCRIPTOR.method
            )));
        }
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_next(cx) {
            Poll::Ready(Some(Ok(message))) => this.deliver(message),
            Poll::Ready(Some(Err(status))) => {
                this.tail.committed_failure(&status);
                this.fail(status)
            }
            Poll::Ready(None) => {
                this.end(Code::Ok);
                Poll::Ready(None)
            }
            Poll::Pending => {
                // A policy on the request side (bidi) may end the call meanwhile.
                match this.tail.counts.poll_violation(cx) {
                    Poll::Ready(status) => this.fail(status),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<R: Rpc, H: ClientHook<R>> Drop for Responses<R, H> {
    fn drop(&mut self) {
        // Dropping the stream before its end cancels the call.
        self.end(Code::Cancelled);
    }
}

impl<R: Rpc, H: ClientHook<R>> fmt::Debug for Responses<R, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responses")
            .field("rpc", &R::DESCRIPTOR.path)
            .field("received", &self.tail.counts.received())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}
