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

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use tracing::Span;

use crate::call::{Call, CallOutcome, PolicyKind};
use crate::limits::{Admit, Dir, Limits, Meter};
use crate::policy::admission::Admitted;
use crate::policy::hook::Hooks;
use crate::rpc::Rpc;
use crate::server::recover::panicked;

/// The per-message policies of a request, in their documented order: stream limits,
/// validation, hooks. The error names the policy that refused.
#[inline(always)]
pub(crate) fn check_request<R: Rpc, H: Hooks<R>>(
    meter: &mut Meter,
    call: &Call,
    hooks: &H,
    message: &R::Request,
) -> Result<(), (PolicyKind, Status)> {
    let bytes = meter
        .check(call.rpc(), message)
        .and_then(|len| meter.check_total(call.rpc(), len))
        .map_err(|s| (PolicyKind::Limit, s))?;
    hooks
        .validate(call, message)
        .map_err(|s| (PolicyKind::Validation, s))?;
    hooks
        .on_request(call, message)
        .map_err(|s| (PolicyKind::Hook, s))?;
    meter.record(bytes);
    Ok(())
}

/// The per-message policies of a response: stream limits, then hooks.
#[inline(always)]
pub(crate) fn check_response<R: Rpc, H: Hooks<R>>(
    meter: &mut Meter,
    call: &Call,
    hooks: &H,
    message: &R::Response,
) -> Result<(), (PolicyKind, Status)> {
    let bytes = meter
        .check(call.rpc(), message)
        .map_err(|s| (PolicyKind::Limit, s))?;
    hooks
        .on_response(call, message)
        .map_err(|s| (PolicyKind::Hook, s))?;
    meter.record(bytes);
    Ok(())
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

#[cold]
fn idle_timeout(call: &Call, idle: Duration) -> Status {
    Status::deadline_exceeded(format!(
        "{}: no message for {} ms (idle timeout)",
        call.rpc().method,
        idle.as_millis()
    ))
}

/// The idle timeout of one side of a stream: when it waits, a timer is armed at the
/// last message's time plus the timeout; the clock is read per message only when an
/// idle timeout is configured.
#[derive(Debug)]
pub(crate) struct Idle {
    after: Duration,
    last: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Idle {
    pub(crate) fn new(after: Option<Duration>, now: Instant) -> Option<Self> {
        after.map(|after| Self {
            after,
            last: now,
            timer: None,
        })
    }

    fn moved(&mut self, shared: Option<&InboundShared>) {
        self.last = Instant::now();
        if let Some(shared) = shared {
            shared.moved(self.last);
        }
    }

    /// Called when the side would wait: whether it has been idle too long (else the
    /// timer is armed, so the task wakes when it would be).
    fn expired(&mut self, cx: &mut Context<'_>, shared: Option<&InboundShared>) -> bool {
        let last = match shared.and_then(InboundShared::last_moved) {
            Some(other) if other > self.last => other,
            _ => self.last,
        };
        let at = last + self.after;
        arm(&mut self.timer, at);
        let timer = self.timer.as_mut().expect("armed");
        timer.as_mut().poll(cx).is_ready()
    }
}

/// What the request side of a streaming call shares with the code that finishes it.
#[derive(Debug)]
pub(crate) struct InboundShared {
    pub(crate) violation: OnceLock<(PolicyKind, Status)>,
    pub(crate) messages: AtomicU64,
    pub(crate) bytes: AtomicU64,
    /// When a message last moved either way, in nanoseconds since `base` (0: never);
    /// kept only under an idle timeout.
    moved: AtomicU64,
    base: Instant,
}

impl InboundShared {
    pub(crate) fn new(base: Instant) -> Self {
        Self {
            violation: OnceLock::new(),
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            moved: AtomicU64::new(0),
            base,
        }
    }

    fn moved(&self, at: Instant) {
        let nanos = at.saturating_duration_since(self.base).as_nanos() as u64;
        self.moved.fetch_max(nanos.max(1), Ordering::Relaxed);
    }

    fn last_moved(&self) -> Option<Instant> {
        match self.moved.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.base + Duration::from_nanos(n)),
        }
    }
}

/// How the response side learns the request-side counts for [`CallOutcome`].
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

    fn violation(&self) -> Option<&(PolicyKind, Status)> {
        match self {
            InCounts::Shared(s) => s.violation.get(),
            InCounts::Fixed { .. } => None,
        }
    }

    fn shared(&self) -> Option<&InboundShared> {
        match self {
            InCounts::Shared(s) => Some(s),
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
    /// deadline or the idle timeout with `DEADLINE_EXCEEDED`, a panic in your stream (under
    /// `recover`) with `INTERNAL`; in each case your stream is dropped at once, so its
    /// producer stops. When the client goes away, tonic drops this wrapper and with it
    /// your stream, and the hooks see `CANCELLED`.
    ///
    /// No allocation per message: counters are integers and the timers are reused.
    #[must_use = "streams do nothing unless polled"]
    #[project = OutboundProj]
    pub struct Outbound<R: Rpc, S, H: Hooks<R>> {
        #[pin]
        inner: Option<S>,
        // Everything else in one unpinned part, so that projecting (at every poll) is
        // two pointers, not one per field.
        st: OutboundState<R, H>,
    }

    impl<R: Rpc, S, H: Hooks<R>> PinnedDrop for Outbound<R, S, H> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !this.st.finished {
                let _span = this.st.span.enter();
                let (messages_in, bytes_in) = this.st.inbound.get();
                let code = if std::thread::panicking() {
                    Code::Internal
                } else {
                    this.st.call.code_when_abandoned()
                };
                let ended_by = (code == Code::DeadlineExceeded).then_some(PolicyKind::Deadline);
                this.st.hooks.on_finish(&this.st.call, &CallOutcome {
                    code,
                    messages_in,
                    messages_out: this.st.meter.messages,
                    bytes_in,
                    bytes_out: this.st.meter.bytes,
                    ended_by,
                });
            }
        }
    }
}

/// The unpinned part of an [`Outbound`].
pub(crate) struct OutboundState<R: Rpc, H: Hooks<R>> {
    call: Call,
    hooks: H,
    meter: Meter,
    inbound: InCounts,
    deadline: Option<Pin<Box<Sleep>>>,
    idle: Option<Idle>,
    pacing: Option<Pin<Box<Sleep>>>,
    pending: Option<R::Response>,
    span: Span,
    recover: bool,
    admitted: Option<Admitted>,
    finished: bool,
}

/// What a guard hands to the response stream when the handler returns it.
pub(crate) struct Tail<H> {
    pub(crate) call: Call,
    pub(crate) limits: Limits,
    pub(crate) hooks: H,
    pub(crate) inbound: InCounts,
    pub(crate) span: Span,
    pub(crate) recover: bool,
    pub(crate) admitted: Option<Admitted>,
}

impl<R: Rpc, S, H: Hooks<R>> Outbound<R, S, H> {
    pub(crate) fn new(inner: S, tail: Tail<H>) -> Self {
        let Tail {
            call,
            limits,
            hooks,
            inbound,
            span,
            recover,
            admitted,
        } = tail;
        Self {
            inner: Some(inner),
            st: OutboundState {
                deadline: call
                    .deadline()
                    .map(|d| Box::pin(tokio::time::sleep_until(d))),
                idle: Idle::new(limits.get_idle_timeout(), Instant::now()),
                call,
                meter: Meter::new(Dir::Out, &limits),
                hooks,
                inbound,
                pacing: None,
                pending: None,
                span,
                recover,
                admitted,
                finished: false,
            },
        }
    }

    /// The call this stream belongs to.
    pub fn call(&self) -> &Call {
        &self.st.call
    }

    /// The handler's stream, unless the call already ended.
    pub fn get_ref(&self) -> Option<&S> {
        self.inner.as_ref()
    }

    /// Response messages that passed so far.
    pub fn messages_sent(&self) -> u64 {
        self.st.meter.messages
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
        if this.st.finished {
            return Poll::Ready(None);
        }
        // Entered through a clone, because the projection is borrowed whole below; without
        // `trace` the span is `Span::none()` and neither is done.
        let span = (!this.st.span.is_none()).then(|| this.st.span.clone());
        let _entered = span.as_ref().map(Span::enter);
        if !this.st.recover {
            return step(&mut this, cx);
        }
        match catch_unwind(AssertUnwindSafe(|| step(&mut this, cx))) {
            Ok(poll) => poll,
            Err(payload) => {
                let status = panicked(&this.st.call, &*payload);
                if this.st.finished {
                    // The panic came from a hook's `on_finish`: the call was reported.
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(finish(&mut this, Some((Some(PolicyKind::Recovery), status))).map(Err))
            }
        }
    }
}

type Projected<'a, R, S, H> = OutboundProj<'a, R, S, H>;

/// One poll of the response side; ends the call itself when it ends.
///
/// Always inlined: it is the per-message hot path, and `poll_next` calls it from two
/// places (with and without `recover`), which would otherwise keep it out of line.
#[inline(always)]
fn step<R, S, H>(
    this: &mut Projected<'_, R, S, H>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<R::Response, Status>>>
where
    R: Rpc,
    S: Stream<Item = Result<R::Response, Status>>,
    H: Hooks<R>,
{
    // Polling the deadline timer costs more than the rest of a message's policies, so
    // it is polled when the stream would wait (which also arms the wake-up) and every
    // 64th message (so a stream that never waits is still cut).
    let mut deadline_passed = |cx: &mut Context<'_>| {
        this.st
            .deadline
            .as_mut()
            .is_some_and(|d| d.as_mut().poll(cx).is_ready())
    };
    let ended: Option<(Option<PolicyKind>, Status)> = loop {
        if this.st.pending.is_some() {
            let pacing = this.st.pacing.as_mut().expect("armed with pending");
            if pacing.as_mut().poll(cx).is_pending() {
                if deadline_passed(cx) {
                    break Some((Some(PolicyKind::Deadline), deadline_exceeded(&this.st.call)));
                }
                return Poll::Pending;
            }
            if let Some(idle) = this.st.idle.as_mut() {
                idle.moved(this.st.inbound.shared());
            }
            return Poll::Ready(this.st.pending.take().map(Ok));
        }
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        // What the handler already produced still goes out; a request-side
        // violation ends the call once the handler has nothing ready.
        let message = match inner.poll_next(cx) {
            Poll::Pending if deadline_passed(cx) => {
                break Some((Some(PolicyKind::Deadline), deadline_exceeded(&this.st.call)));
            }
            Poll::Pending => match this.st.inbound.violation() {
                Some((policy, status)) => break Some((Some(*policy), status.clone())),
                None => {
                    if let Some(idle) = this.st.idle.as_mut()
                        && idle.expired(cx, this.st.inbound.shared())
                    {
                        let after = idle.after;
                        break Some((
                            Some(PolicyKind::IdleTimeout),
                            idle_timeout(&this.st.call, after),
                        ));
                    }
                    return Poll::Pending;
                }
            },
            Poll::Ready(Some(Ok(_)))
                if this.st.meter.messages % 64 == 63 && deadline_passed(cx) =>
            {
                break Some((Some(PolicyKind::Deadline), deadline_exceeded(&this.st.call)));
            }
            Poll::Ready(None) => {
                break this
                    .st
                    .inbound
                    .violation()
                    .map(|(policy, status)| (Some(*policy), status.clone()));
            }
            // A request-side violation decides the call's status, whatever the handler
            // made of it.
            Poll::Ready(Some(Err(status))) => match this.st.inbound.violation() {
                Some((policy, violation)) => break Some((Some(*policy), violation.clone())),
                None => break Some((None, status)),
            },
            Poll::Ready(Some(Ok(message))) => message,
        };
        if let Err((policy, status)) =
            check_response(&mut this.st.meter, &this.st.call, &this.st.hooks, &message)
        {
            break Some((Some(policy), status));
        }
        match this.st.meter.admit(this.st.call.rpc()) {
            Ok(Admit::Now) => {
                if let Some(idle) = this.st.idle.as_mut() {
                    idle.moved(this.st.inbound.shared());
                }
                return Poll::Ready(Some(Ok(message)));
            }
            Ok(Admit::At(at)) => {
                arm(&mut this.st.pacing, at);
                this.st.pending = Some(message);
            }
            Err(status) => break Some((Some(PolicyKind::Limit), status)),
        }
    };
    Poll::Ready(finish(this, ended).map(Err))
}

/// The call is over: drop the producer now so that its work stops, then report.
fn finish<R: Rpc, S, H: Hooks<R>>(
    this: &mut Projected<'_, R, S, H>,
    ended: Option<(Option<PolicyKind>, Status)>,
) -> Option<Status> {
    this.st.finished = true;
    this.inner.set(None);
    this.st.pending = None;
    // The in-flight slot frees when the call's work is done.
    this.st.admitted = None;
    let (messages_in, bytes_in) = this.st.inbound.get();
    let (ended_by, status) = match ended {
        Some((policy, status)) => (policy, Some(status)),
        None => (None, None),
    };
    this.st.hooks.on_finish(
        &this.st.call,
        &CallOutcome {
            code: status.as_ref().map_or(Code::Ok, Status::code),
            messages_in,
            messages_out: this.st.meter.messages,
            bytes_in,
            bytes_out: this.st.meter.bytes,
            ended_by,
        },
    );
    status
}

/// The request stream of a client-streaming or bidi RPC `R`, after policies.
///
/// When `#[intercept]` configures inbound limits, validation or hooks for such an RPC,
/// the handler's request holds an `Inbound` instead of the raw `tonic::Streaming`; it
/// reads the same way ([`Inbound::message`], or as a `Stream`). Each message has passed
/// the count, size and rate limits, validation and the hooks before the handler sees
/// it. A violation yields one `Err(status)` and ends the stream; the call then ends with
/// that status even if the handler swallows the error.
///
/// No allocation per message; `Inbound` is `Unpin`, like `Streaming`.
#[must_use = "streams do nothing unless polled"]
pub struct Inbound<R: Rpc, H: Hooks<R>> {
    inner: Streaming<R::Request>,
    call: Call,
    hooks: H,
    meter: Meter,
    shared: Arc<InboundShared>,
    idle: Option<Idle>,
    pacing: Option<Pin<Box<Sleep>>>,
    pending: Option<R::Request>,
    done: bool,
}

// No field is structurally pinned: the timers are boxed and `Streaming` is `Unpin`.
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
            .field("rpc", &self.st.call.rpc().path)
            .field("messages", &self.st.meter.messages)
            .field("finished", &self.st.finished)
            .finish_non_exhaustive()
    }
}

impl<R: Rpc, H: Hooks<R>> Inbound<R, H> {
    pub(crate) fn new(
        inner: Streaming<R::Request>,
        call: Call,
        limits: &Limits,
        hooks: H,
        shared: Arc<InboundShared>,
    ) -> Self {
        Self {
            inner,
            call,
            meter: Meter::new(Dir::In, limits),
            hooks,
            idle: Idle::new(limits.get_idle_timeout(), Instant::now()),
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

    fn fail(
        &mut self,
        policy: PolicyKind,
        status: Status,
    ) -> Poll<Option<Result<R::Request, Status>>> {
        self.done = true;
        self.pending = None;
        let _ = self.shared.violation.set((policy, status.clone()));
        Poll::Ready(Some(Err(status)))
    }

    fn moved(&mut self) {
        if let Some(idle) = self.idle.as_mut() {
            idle.moved(Some(&self.shared));
        }
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
                this.moved();
                return Poll::Ready(this.pending.take().map(Ok));
            }
            let message = match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Pending => {
                    if let Some(idle) = this.idle.as_mut()
                        && idle.expired(cx, Some(&this.shared))
                    {
                        let status = idle_timeout(&this.call, idle.after);
                        return this.fail(PolicyKind::IdleTimeout, status);
                    }
                    return Poll::Pending;
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(status))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(Some(Ok(message))) => message,
            };
            if let Err((policy, status)) =
                check_request(&mut this.meter, &this.call, &this.hooks, &message)
            {
                return this.fail(policy, status);
            }
            this.shared
                .messages
                .store(this.meter.messages, Ordering::Relaxed);
            this.shared.bytes.store(this.meter.bytes, Ordering::Relaxed);
            match this.meter.admit(this.call.rpc()) {
                Ok(Admit::Now) => {
                    this.moved();
                    return Poll::Ready(Some(Ok(message)));
                }
                Ok(Admit::At(at)) => {
                    arm(&mut this.pacing, at);
                    this.pending = Some(message);
                }
                Err(status) => return this.fail(PolicyKind::Limit, status),
            }
        }
    }
}
