//! Typed stream wrappers: every message of a streaming RPC passes through these.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::{Mutex, MutexGuard};
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
use crate::wire::is_client_cancelled;

/// The per-message policies of a request, in their documented order: stream limits,
/// validation, hooks. The error names the policy that refused.
#[inline(always)]
pub(crate) fn check_request<R: Rpc, H: Hooks<R>>(
    meter: &mut Meter,
    call: &Call,
    hooks: &H,
    message: &R::Request,
) -> Result<(), (PolicyKind, Status)> {
    let bytes = measure_request(meter, call, message)?;
    pass_request(meter, call, hooks, message, bytes)
}

/// The stream limits of a request message (count, size, total); its size.
#[inline(always)]
fn measure_request<M: prost::Message>(
    meter: &Meter,
    call: &Call,
    message: &M,
) -> Result<u64, (PolicyKind, Status)> {
    meter
        .check(call.rpc(), message)
        .and_then(|len| meter.check_total(call.rpc(), len))
        .map_err(|s| (PolicyKind::Limit, s))
}

/// A request message measured at `bytes` is handed on: validation, hooks, counted.
#[inline(always)]
fn pass_request<R: Rpc, H: Hooks<R>>(
    meter: &mut Meter,
    call: &Call,
    hooks: &H,
    message: &R::Request,
    bytes: u64,
) -> Result<(), (PolicyKind, Status)> {
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
    pass_response(meter, call, hooks, message, bytes)
}

/// A response message measured at `bytes` is handed on: hooks, then counted.
#[inline(always)]
fn pass_response<R: Rpc, H: Hooks<R>>(
    meter: &mut Meter,
    call: &Call,
    hooks: &H,
    message: &R::Response,
    bytes: u64,
) -> Result<(), (PolicyKind, Status)> {
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

    /// When this side is idle for too long: the last move either way plus the timeout.
    fn due(&self, shared: Option<&InboundShared>) -> Instant {
        let last = match shared.and_then(InboundShared::last_moved) {
            Some(other) if other > self.last => other,
            _ => self.last,
        };
        last + self.after
    }

    /// Called when the side would wait: whether it has been idle too long (else the
    /// timer is armed, so the task wakes when it would be).
    fn expired(&mut self, cx: &mut Context<'_>, shared: Option<&InboundShared>) -> bool {
        let at = self.due(shared);
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
    /// A message is counted, measured and shown to the hooks when it is handed on to
    /// tonic, not while `messages_per_second_out` holds it back: a call that ends while
    /// the pacer holds a message does not count that message.
    ///
    /// # Deadlines that do not wait for the client
    ///
    /// hyper polls a response body only while the client's HTTP/2 flow-control window
    /// has room, so a client that stops reading would never let a timer that runs inside
    /// `poll_next` fire. When the call has a deadline (`timeout_ms` or the client's
    /// `grpc-timeout`) or an `idle_timeout_ms`, a watchdog task (one per such call,
    /// spawned when the handler returns its stream) ends the call at the deadline or
    /// once no message has been handed on for the idle timeout, whether or not the
    /// stream is polled: the hooks and metrics see `DEADLINE_EXCEEDED` (ended by
    /// `Deadline` or `IdleTimeout`) once, your stream is dropped (a `ReceiverStream`'s
    /// producer sees its `send` fail) and the `max_in_flight` slot is freed. Time spent
    /// blocked on the client's window counts as idle.
    ///
    /// What the client sees on the wire: the status is the next item this stream yields,
    /// so tonic sends it as trailers as soon as hyper polls the body again. While the
    /// client's window stays closed that does not happen, and even then h2 queues
    /// trailers behind the stream's unsent DATA (h2's `send_trailers` puts them on the
    /// stream's `pending_send` queue), so they could not overtake it anyway; grpc-go does
    /// the same (its loopy writer queues the trailing HEADERS behind the stream's data,
    /// followed by `RST_STREAM(NO_ERROR)`). A response body cannot reset its own HTTP/2
    /// stream through tonic and hyper, so the stream stays open on the wire, holding
    /// only h2's buffered DATA (at most one encoded chunk beyond the window), until the
    /// client reads (it then receives the data already sent and `DEADLINE_EXCEEDED`),
    /// resets the stream, or the connection closes. The call's work, producer and slot
    /// are gone at the deadline either way.
    ///
    /// No allocation per message: counters are integers and the timers are reused. A
    /// call with a deadline or an idle timeout allocates its shared state and the
    /// watchdog task once, and pays an uncontended lock per poll.
    #[must_use = "streams do nothing unless polled"]
    pub struct Outbound<R: Rpc, S, H: Hooks<R>> {
        #[pin]
        cell: Cell<R, S, H>,
        call: Call,
    }
}

pin_project! {
    /// Where an [`Outbound`]'s state lives: inline, or shared with its watchdog.
    #[project = CellProj]
    enum Cell<R: Rpc, S, H: Hooks<R>> {
        Local { #[pin] body: Body<R, S, H> },
        Watched { body: Arc<Mutex<Body<R, S, H>>>, watchdog: AbortOnDrop },
    }
}

pin_project! {
    /// The state of a response stream: the handler's stream and everything else.
    #[project = BodyProj]
    struct Body<R: Rpc, S, H: Hooks<R>> {
        #[pin]
        inner: Option<S>,
        // Everything else in one unpinned part, so that projecting (at every poll) is
        // two pointers, not one per field.
        st: OutboundState<R, H>,
    }

    impl<R: Rpc, S, H: Hooks<R>> PinnedDrop for Body<R, S, H> {
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
                    decided_without: this.st.decided_without,
                });
            }
        }
    }
}

/// Aborts the watchdog when the stream goes (it holds only a weak reference, so this
/// just stops its timer early).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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
    /// A message the pacer holds, with its size: counted when it is handed on.
    pending: Option<(R::Response, u64)>,
    span: Span,
    recover: bool,
    admitted: Option<Admitted>,
    decided_without: Option<&'static str>,
    finished: bool,
    /// The status of a call the watchdog ended, for the next poll.
    ended: Option<Status>,
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
    pub(crate) decided_without: Option<&'static str>,
}

/// Locks a watched body. parking_lot's lock has no poisoning: a panic in a poll
/// (without `recover`) leaves the body in a state that is still safe to finish or drop.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
}

impl<R, S, H> Outbound<R, S, H>
where
    R: Rpc,
    S: Send + 'static,
    H: Hooks<R>,
{
    pub(crate) fn new(inner: S, tail: Tail<H>) -> Self {
        let Tail {
            call,
            limits,
            hooks,
            inbound,
            span,
            recover,
            admitted,
            decided_without,
        } = tail;
        let idle = Idle::new(limits.get_idle_timeout(), Instant::now());
        let watched = call.deadline().is_some() || idle.is_some();
        let body = Body {
            inner: Some(inner),
            st: OutboundState {
                deadline: call
                    .deadline()
                    .map(|d| Box::pin(tokio::time::sleep_until(d))),
                idle,
                call,
                meter: Meter::new(Dir::Out, &limits),
                hooks,
                inbound,
                pacing: None,
                pending: None,
                span,
                recover,
                admitted,
                decided_without,
                finished: false,
                ended: None,
            },
        };
        let cell = if watched {
            let body = Arc::new(Mutex::new(body));
            let watchdog = tokio::spawn(watchdog(Arc::downgrade(&body))).abort_handle();
            Cell::Watched {
                body,
                watchdog: AbortOnDrop(watchdog),
            }
        } else {
            Cell::Local { body }
        };
        Self { cell, call }
    }
}

/// Ends a watched call at its deadline or idle timeout, whether or not it is polled.
async fn watchdog<R, S, H>(body: Weak<Mutex<Body<R, S, H>>>)
where
    R: Rpc,
    S: Send + 'static,
    H: Hooks<R>,
{
    loop {
        let wake = {
            let Some(body) = body.upgrade() else { return };
            let mut guard = lock(&body);
            // SAFETY: the body lives in the `Arc` until it is dropped in place and is
            // never moved out of the mutex.
            let pinned = unsafe { Pin::new_unchecked(&mut *guard) };
            match pinned.expire(Instant::now()) {
                Some(at) => at,
                None => return,
            }
        };
        tokio::time::sleep_until(wake).await;
    }
}

impl<R: Rpc, S, H: Hooks<R>> Body<R, S, H> {
    /// The watchdog's check at `now`: ends the call if its deadline or idle timeout
    /// has passed; else when to look again (`None`: the call is over).
    fn expire(self: Pin<&mut Self>, now: Instant) -> Option<Instant> {
        let mut this = self.project();
        if this.st.finished {
            return None;
        }
        let deadline = this.st.call.deadline();
        let ended = if deadline.is_some_and(|d| d <= now) {
            Some((Some(PolicyKind::Deadline), deadline_exceeded(&this.st.call)))
        } else {
            match this.st.idle.as_ref() {
                Some(idle) if idle.due(this.st.inbound.shared()) <= now => Some((
                    Some(PolicyKind::IdleTimeout),
                    idle_timeout(&this.st.call, idle.after),
                )),
                Some(idle) => {
                    let due = idle.due(this.st.inbound.shared());
                    return Some(deadline.map_or(due, |d| d.min(due)));
                }
                None => return deadline,
            }
        };
        let span = this.st.span.clone();
        let _entered = span.enter();
        // The status is kept for the next poll before the hooks run, so that a hook
        // that panics here (in the watchdog's task) cannot turn it into an `OK` end.
        this.st.ended = ended.as_ref().map(|(_, status)| status.clone());
        finish(&mut this, ended);
        None
    }
}

impl<R: Rpc, S, H: Hooks<R>> Outbound<R, S, H> {
    /// The call this stream belongs to.
    pub fn call(&self) -> &Call {
        &self.call
    }

    /// Response messages handed on so far.
    pub fn messages_sent(&self) -> u64 {
        match &self.cell {
            Cell::Local { body } => body.st.meter.messages,
            Cell::Watched { body, .. } => lock(body).st.meter.messages,
        }
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
        // One copy of the per-message path for both cells: the guard (if any) is held
        // here for the poll.
        let mut guard;
        let body = match self.project().cell.project() {
            CellProj::Local { body } => body,
            CellProj::Watched { body, .. } => {
                guard = lock(body);
                // SAFETY: as in `watchdog`: pinned in its `Arc`, never moved out.
                unsafe { Pin::new_unchecked(&mut *guard) }
            }
        };
        body.poll_body(cx)
    }
}

impl<R, S, H> Body<R, S, H>
where
    R: Rpc,
    S: Stream<Item = Result<R::Response, Status>>,
    H: Hooks<R>,
{
    #[inline(always)]
    fn poll_body(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<R::Response, Status>>> {
        let mut this = self.project();
        if this.st.finished {
            // The watchdog's status goes out first, then the end.
            return Poll::Ready(this.st.ended.take().map(Err));
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

type Projected<'a, R, S, H> = BodyProj<'a, R, S, H>;

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
            let (message, bytes) = this.st.pending.take().expect("checked");
            if let Err((policy, status)) = pass_response(
                &mut this.st.meter,
                &this.st.call,
                &this.st.hooks,
                &message,
                bytes,
            ) {
                break Some((Some(policy), status));
            }
            if let Some(idle) = this.st.idle.as_mut() {
                idle.moved(this.st.inbound.shared());
            }
            return Poll::Ready(Some(Ok(message)));
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
        let bytes = match this.st.meter.check(this.st.call.rpc(), &message) {
            Ok(bytes) => bytes,
            Err(status) => break Some((Some(PolicyKind::Limit), status)),
        };
        match this.st.meter.admit(this.st.call.rpc()) {
            Ok(Admit::Now) => {
                if let Err((policy, status)) = pass_response(
                    &mut this.st.meter,
                    &this.st.call,
                    &this.st.hooks,
                    &message,
                    bytes,
                ) {
                    break Some((Some(policy), status));
                }
                if let Some(idle) = this.st.idle.as_mut() {
                    idle.moved(this.st.inbound.shared());
                }
                return Poll::Ready(Some(Ok(message)));
            }
            Ok(Admit::At(at)) => {
                arm(&mut this.st.pacing, at);
                this.st.pending = Some((message, bytes));
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
            decided_without: this.st.decided_without,
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
    /// A message the pacer holds, with its size: counted when it is handed on.
    pending: Option<(R::Request, u64)>,
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
            .field("rpc", &self.call.rpc().path)
            .field("watched", &matches!(self.cell, Cell::Watched { .. }))
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

    /// The message goes to the handler: validation and hooks see it, and it is counted.
    #[inline(always)]
    fn hand_on(
        &mut self,
        message: R::Request,
        bytes: u64,
    ) -> Poll<Option<Result<R::Request, Status>>> {
        if let Err((policy, status)) =
            pass_request(&mut self.meter, &self.call, &self.hooks, &message, bytes)
        {
            return self.fail(policy, status);
        }
        self.shared
            .messages
            .store(self.meter.messages, Ordering::Relaxed);
        self.shared.bytes.store(self.meter.bytes, Ordering::Relaxed);
        if let Some(idle) = self.idle.as_mut() {
            idle.moved(Some(&self.shared));
        }
        Poll::Ready(Some(Ok(message)))
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
                let (message, bytes) = this.pending.take().expect("checked");
                return this.hand_on(message, bytes);
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
                    // The client reset the stream (the edge says so with `ABORTED`, which
                    // tonic passes on): the handler sees what happened, `CANCELLED`.
                    if is_client_cancelled(&status) {
                        return Poll::Ready(Some(Err(Status::cancelled(status.message()))));
                    }
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(Some(Ok(message))) => message,
            };
            let bytes = match measure_request(&this.meter, &this.call, &message) {
                Ok(bytes) => bytes,
                Err((policy, status)) => return this.fail(policy, status),
            };
            match this.meter.admit(this.call.rpc()) {
                Ok(Admit::Now) => return this.hand_on(message, bytes),
                Ok(Admit::At(at)) => {
                    arm(&mut this.pacing, at);
                    this.pending = Some((message, bytes));
                }
                Err(status) => return this.fail(PolicyKind::Limit, status),
            }
        }
    }
}
