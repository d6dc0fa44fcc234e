//! Typed stream wrappers: every message of a streaming RPC passes through these.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;
use tonic::{Code, Status, Streaming};

use crate::call::{Call, Outcome};
use crate::hook::Hooks;
use crate::limits::{Admit, Dir, Limits, Meter};
use crate::rpc::Rpc;

/// Runs the per-message policies of one direction, in declared order.
pub(crate) fn check<M: prost::Message>(
    meter: &mut Meter,
    call: &Call,
    message: &M,
    limits_first: bool,
    hooks: impl FnOnce(&M) -> Result<(), Status>,
) -> Result<(), Status> {
    if limits_first {
        meter.check(call.rpc(), message)?;
        hooks(message)
    } else {
        hooks(message)?;
        meter.check(call.rpc(), message)
    }
}

/// Arms `sleep` for `at`, creating it on first use; later messages reuse it.
fn arm(sleep: &mut Option<Pin<Box<Sleep>>>, at: Instant) {
    match sleep {
        Some(s) => s.as_mut().reset(at),
        None => *sleep = Some(Box::pin(tokio::time::sleep_until(at))),
    }
}

pub(crate) fn deadline_exceeded(call: &Call) -> Status {
    Status::deadline_exceeded(format!("{}: deadline exceeded", call.rpc().method))
}

/// What the request side of a streaming call shares with the code that finishes it.
#[derive(Debug, Default)]
pub(crate) struct InboundShared {
    pub(crate) violation: OnceLock<Status>,
    pub(crate) messages: AtomicU64,
    pub(crate) bytes: AtomicU64,
}

/// How the response side learns the request-side counts for [`Outcome`].
#[derive(Debug)]
pub(crate) enum InCounts {
    Fixed { messages: u64, bytes: u64 },
    Shared(Arc<InboundShared>),
}

impl InCounts {
    fn get(&self) -> (u64, u64) {
        match self {
            InCounts::Fixed { messages, bytes } => (*messages, *bytes),
            InCounts::Shared(s) => (
                s.messages.load(Ordering::Relaxed),
                s.bytes.load(Ordering::Relaxed),
            ),
        }
    }

    fn violation(&self) -> Option<&Status> {
        match self {
            InCounts::Shared(s) => s.violation.get(),
            InCounts::Fixed { .. } => None,
        }
    }
}

pin_project! {
    /// The response stream of a server-streaming or bidi RPC `R`, after policies.
    ///
    /// `#[intercept]` sets the service's associated stream type to
    /// `Outbound<R, YourStream, Hooks>`: your handler returns `YourStream`, and every
    /// message it yields is counted, size-checked, shown to the hooks and paced before
    /// tonic encodes it. A violated limit ends the stream with `RESOURCE_EXHAUSTED`, the
    /// deadline with `DEADLINE_EXCEEDED`; in both cases your stream is dropped at once,
    /// so its producer stops. When the client goes away, tonic drops this wrapper and
    /// with it your stream, and the hooks see `CANCELLED`.
    ///
    /// No allocation per message: counters are integers and the pacing timer is reused.
    #[must_use = "streams do nothing unless polled"]
    pub struct Outbound<R: Rpc, S, H: Hooks<R>> {
        #[pin]
        inner: Option<S>,
        call: Call,
        hooks: H,
        limits_first: bool,
        meter: Meter,
        inbound: InCounts,
        deadline: Option<Pin<Box<Sleep>>>,
        pacing: Option<Pin<Box<Sleep>>>,
        pending: Option<R::Response>,
        finished: bool,
    }

    impl<R: Rpc, S, H: Hooks<R>> PinnedDrop for Outbound<R, S, H> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.finished {
                let (messages_in, bytes_in) = this.inbound.get();
                this.hooks.on_finish(this.call, &Outcome {
                    code: Code::Cancelled,
                    messages_in,
                    messages_out: this.meter.messages,
                    bytes_in,
                    bytes_out: this.meter.bytes,
                ended_by: None,
                });
            }
        }
    }
}

impl<R: Rpc, S, H: Hooks<R>> Outbound<R, S, H> {
    pub(crate) fn new(
        inner: S,
        call: Call,
        limits: &Limits,
        limits_first: bool,
        hooks: H,
        inbound: InCounts,
    ) -> Self {
        Self {
            inner: Some(inner),
            deadline: call
                .deadline()
                .map(|d| Box::pin(tokio::time::sleep_until(d))),
            call,
            meter: Meter::new(Dir::Out, limits),
            hooks,
            limits_first,
            inbound,
            pacing: None,
            pending: None,
            finished: false,
        }
    }

    /// The call this stream belongs to.
    pub fn call(&self) -> &Call {
        &self.call
    }

    /// The handler's stream, unless the call already ended.
    pub fn get_ref(&self) -> Option<&S> {
        self.inner.as_ref()
    }

    /// Response messages that passed so far.
    pub fn messages_sent(&self) -> u64 {
        self.meter.messages
    }
}

impl<R, S, H> Stream for Outbound<R, S, H>
where
    R: Rpc,
    S: Stream<Item = Result<R::Response, Status>>,
    H: Hooks<R>,
{
    type Item = Result<R::Response, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.finished {
            return Poll::Ready(None);
        }
        // Polling the deadline timer costs more than the rest of a message's policies, so
        // it is polled when the stream would wait (which also arms the wake-up) and every
        // 64th message (so a stream that never waits is still cut).
        let mut deadline_passed = |cx: &mut Context<'_>| {
            this.deadline
                .as_mut()
                .is_some_and(|d| d.as_mut().poll(cx).is_ready())
        };
        // `None`: the stream ended well. (A `Status` is boxed: don't build one for Ok.)
        let status: Option<Status> = loop {
            if this.pending.is_some() {
                let pacing = this.pacing.as_mut().expect("armed with pending");
                if pacing.as_mut().poll(cx).is_pending() {
                    if deadline_passed(cx) {
                        break Some(deadline_exceeded(this.call));
                    }
                    return Poll::Pending;
                }
                return Poll::Ready(this.pending.take().map(Ok));
            }
            let Some(inner) = this.inner.as_mut().as_pin_mut() else {
                return Poll::Ready(None);
            };
            // What the handler already produced still goes out; a request-side
            // violation ends the call once the handler has nothing ready.
            let message = match inner.poll_next(cx) {
                Poll::Pending if deadline_passed(cx) => break Some(deadline_exceeded(this.call)),
                Poll::Pending => match this.inbound.violation() {
                    Some(status) => break Some(status.clone()),
                    None => return Poll::Pending,
                },
                Poll::Ready(Some(Ok(_)))
                    if this.meter.messages % 64 == 63 && deadline_passed(cx) =>
                {
                    break Some(deadline_exceeded(this.call));
                }
                Poll::Ready(None) => break this.inbound.violation().cloned(),
                Poll::Ready(Some(Err(status))) => break Some(status),
                Poll::Ready(Some(Ok(message))) => message,
            };
            let (call, hooks) = (&*this.call, &*this.hooks);
            let checked = check(this.meter, call, &message, *this.limits_first, |m| {
                hooks.on_response(call, m)
            });
            if let Err(status) = checked {
                break Some(status);
            }
            match this.meter.admit(call.rpc()) {
                Ok(Admit::Now) => return Poll::Ready(Some(Ok(message))),
                Ok(Admit::At(at)) => {
                    arm(this.pacing, at);
                    *this.pending = Some(message);
                }
                Err(status) => break Some(status),
            }
        };
        // The call is over: drop the producer now so that its work stops, then report.
        *this.finished = true;
        this.inner.set(None);
        *this.pending = None;
        let (messages_in, bytes_in) = this.inbound.get();
        this.hooks.on_finish(
            this.call,
            &Outcome {
                code: status.as_ref().map_or(Code::Ok, Status::code),
                messages_in,
                messages_out: this.meter.messages,
                bytes_in,
                bytes_out: this.meter.bytes,
                ended_by: None,
            },
        );
        Poll::Ready(status.map(Err))
    }
}

/// The request stream of a client-streaming or bidi RPC `R`, after policies.
///
/// When `#[intercept]` configures inbound limits or hooks for such an RPC, the handler's
/// request holds an `Inbound` instead of the raw `tonic::Streaming`; it reads the same way
/// ([`Inbound::message`], or as a `Stream`). Each message has passed the count, size and
/// rate limits and the hooks before the handler sees it. A violation yields one
/// `Err(status)` and ends the stream; the call then ends with that status even if the
/// handler swallows the error.
///
/// No allocation per message; `Inbound` is `Unpin`, like `Streaming`.
#[must_use = "streams do nothing unless polled"]
pub struct Inbound<R: Rpc, H: Hooks<R>> {
    inner: Streaming<R::Request>,
    call: Call,
    hooks: H,
    limits_first: bool,
    meter: Meter,
    shared: Arc<InboundShared>,
    pacing: Option<Pin<Box<Sleep>>>,
    pending: Option<R::Request>,
    done: bool,
}

// No field is structurally pinned: the timer is boxed and `Streaming` is `Unpin`.
impl<R: Rpc, H: Hooks<R>> Unpin for Inbound<R, H> {}

impl<R: Rpc, H: Hooks<R>> std::fmt::Debug for Inbound<R, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("rpc", &self.call.rpc().path)
            .field("messages", &self.meter.messages)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<R: Rpc, S, H: Hooks<R>> std::fmt::Debug for Outbound<R, S, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("rpc", &self.call.rpc().path)
            .field("messages", &self.meter.messages)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<R: Rpc, H: Hooks<R>> Inbound<R, H> {
    pub(crate) fn new(
        inner: Streaming<R::Request>,
        call: Call,
        limits: &Limits,
        limits_first: bool,
        hooks: H,
        shared: Arc<InboundShared>,
    ) -> Self {
        Self {
            inner,
            call,
            meter: Meter::new(Dir::In, limits),
            hooks,
            limits_first,
            shared,
            pacing: None,
            pending: None,
            done: false,
        }
    }

    /// The next request message, like [`Streaming::message`]: `Ok(None)` at the end.
    pub async fn message(&mut self) -> Result<Option<R::Request>, Status> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx))
            .await
            .transpose()
    }

    /// The call this stream belongs to.
    pub fn call(&self) -> &Call {
        &self.call
    }

    /// Request messages that passed so far.
    pub fn messages_received(&self) -> u64 {
        self.meter.messages
    }

    /// The underlying tonic stream.
    pub fn get_ref(&self) -> &Streaming<R::Request> {
        &self.inner
    }

    fn fail(&mut self, status: Status) -> Poll<Option<Result<R::Request, Status>>> {
        self.done = true;
        self.pending = None;
        let _ = self.shared.violation.set(status.clone());
        Poll::Ready(Some(Err(status)))
    }
}

impl<R: Rpc, H: Hooks<R>> Stream for Inbound<R, H> {
    type Item = Result<R::Request, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if this.pending.is_some() {
                let pacing = this.pacing.as_mut().expect("armed with pending");
                ready!(pacing.as_mut().poll(cx));
                return Poll::Ready(this.pending.take().map(Ok));
            }
            let message = match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                None => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Some(Err(status)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(status)));
                }
                Some(Ok(message)) => message,
            };
            let (call, hooks) = (&this.call, &this.hooks);
            let checked = check(&mut this.meter, call, &message, this.limits_first, |m| {
                hooks.on_request(call, m)
            });
            if let Err(status) = checked {
                return this.fail(status);
            }
            this.shared
                .messages
                .store(this.meter.messages, Ordering::Relaxed);
            this.shared.bytes.store(this.meter.bytes, Ordering::Relaxed);
            match this.meter.admit(this.call.rpc()) {
                Ok(Admit::Now) => return Poll::Ready(Some(Ok(message))),
                Ok(Admit::At(at)) => {
                    arm(&mut this.pacing, at);
                    this.pending = Some(message);
                }
                Err(status) => return this.fail(status),
            }
        }
    }
}
