//! The lifecycle of one server call: [`Guard`] holds a call's policies from its start to
//! its end, and [`run`] wraps the call's whole future.
//!
//! The `#[intercept]` expansion drives it step by step (see `__private`): create the
//! guard, run the call-start steps against it, hand it the handler's future, and let it
//! report the call's end to the hooks exactly once.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};
use tracing::Span;

use crate::call::{Call, CallOutcome, Incoming, PolicyKind};
use crate::limits::{Dir, Limits, Meter};
use crate::policy::admission::{Admission, Admitted};
use crate::policy::hook::Hooks;
use crate::rpc::Rpc;
use crate::server::recover::{Run, panicked};
use crate::server::stream::{
    InCounts, Inbound, InboundShared, Outbound, Tail, check_request, check_response,
    deadline_exceeded,
};

/// Wraps a call's whole future (steps and handler): entered in the call's span at every
/// poll and, under `recover`, caught so that a panic becomes [`Guard::panicked`].
pub fn run<F: Future>(span: Span, recover: bool, future: F) -> Run<F> {
    Run::new(future, span, recover)
}

/// The policies of one call of `R`, from its start to its end.
///
/// The expansion creates it first, runs the call-start steps against it, hands it the
/// handler's future, and finally lets it report the call's end to the hooks, exactly once:
/// when the call returns, when its response stream ends, when a panic is caught, or, if
/// the call's future is dropped (the client went away), from `Drop`.
#[derive(Debug)]
pub struct Guard<R: Rpc, H: Hooks<R>> {
    call: Call,
    limits: Limits,
    hooks: H,
    meter_in: Meter,
    meter_out: Meter,
    shared: Option<Arc<InboundShared>>,
    span: Span,
    recover: bool,
    admitted: Option<Admitted>,
    /// The shared backend its failure policy stood in for, if it did.
    decided_without: Option<&'static str>,
    finished: bool,
    incoming: Incoming,
    _rpc: PhantomData<fn() -> R>,
}

impl<R: Rpc, H: Hooks<R>> Guard<R, H> {
    /// Starts the call: peer, deadline, counters.
    pub fn new<T>(request: &Request<T>, limits: Limits, hooks: H, recover: bool) -> Self {
        let call = Call::start(&R::DESCRIPTOR, request, limits.get_timeout());
        Self {
            incoming: Incoming::of(request.metadata(), call.deadline()),
            call,
            meter_in: Meter::new(Dir::In, &limits),
            meter_out: Meter::new(Dir::Out, &limits),
            limits,
            hooks,
            shared: None,
            span: Span::none(),
            recover,
            admitted: None,
            decided_without: None,
            finished: false,
            _rpc: PhantomData,
        }
    }

    /// The call, for the steps that run against it.
    pub fn call(&self) -> &Call {
        &self.call
    }

    /// The call's hooks, for the steps that call them.
    pub fn hooks(&self) -> &H {
        &self.hooks
    }

    /// Opens the call's span (`trace`): named after the RPC, joined to the caller's trace.
    pub fn trace(&mut self, metadata: &MetadataMap) -> Span {
        self.span = crate::trace::call_span::<R>(&self.call, metadata);
        self.span.clone()
    }

    /// The call's span (`Span::none()` without `trace`), for [`run`].
    pub fn span(&self) -> Span {
        self.span.clone()
    }

    /// Ends a call that a step refused: hooks see the status, which is returned.
    pub fn reject(&mut self, (policy, status): (PolicyKind, Status)) -> Status {
        self.finish(status.code(), Some(policy));
        status
    }

    /// Ends a call whose handler, hook or stream panicked (under `recover`).
    pub fn panicked(&mut self, payload: Box<dyn std::any::Any + Send>) -> Status {
        let status = panicked(&self.call, &*payload);
        if !self.finished {
            self.finish(status.code(), Some(PolicyKind::Recovery));
        }
        status
    }

    /// Concurrency and call rate: waits (under `queue`) or refuses.
    pub async fn admit(
        &mut self,
        admission: &'static Admission,
        identity: Option<u64>,
    ) -> Result<(), (PolicyKind, Status)> {
        self.admitted = Some(admission.admit(&self.call, identity).await?);
        Ok(())
    }

    /// Takes the answer of the call rates kept in a shared backend
    /// (`limit(.., shared = backend)`, asked with [`AdmitShared`](crate::__private::AdmitShared)
    /// after the local admission): the refusal, and the backend its failure policy stood
    /// in for, for the call's outcome.
    pub fn settle_shared(
        &mut self,
        (admitted, without): (Result<(), (PolicyKind, Status)>, Option<&'static str>),
    ) -> Result<(), (PolicyKind, Status)> {
        self.decided_without = without;
        admitted
    }

    /// Passes the single request message of a unary or server-streaming call through
    /// the limits, validation and hooks.
    pub fn admit_request(&mut self, message: &R::Request) -> Result<(), (PolicyKind, Status)> {
        check_request(&mut self.meter_in, &self.call, &self.hooks, message)
    }

    /// Wraps the request stream of a client-streaming or bidi call.
    pub fn inbound(&mut self, request: Request<Streaming<R::Request>>) -> Request<Inbound<R, H>> {
        let shared = self.shared_counts();
        let (call, limits, hooks) = (self.call, self.limits, self.hooks.clone());
        request.map(|s| Inbound::new(s, call, &limits, hooks, shared))
    }

    fn shared_counts(&mut self) -> Arc<InboundShared> {
        self.shared
            .get_or_insert_with(|| Arc::new(InboundShared::new(self.call.started())))
            .clone()
    }

    /// Runs a unary handler until the deadline, then passes its response through the
    /// limits and hooks and ends the call.
    pub async fn unary<F>(&mut self, handler: F) -> Result<Response<R::Response>, Status>
    where
        F: Future<Output = Result<Response<R::Response>, Status>>,
    {
        let result = self.deadline(handler).await;
        self.end_single(result)
    }

    /// [`unary`](Self::unary) for a client-streaming handler: a violation of the request
    /// stream's limits decides the status even if the handler returned.
    pub async fn client_streaming<F>(&mut self, handler: F) -> Result<Response<R::Response>, Status>
    where
        F: Future<Output = Result<Response<R::Response>, Status>>,
    {
        let result = self.deadline(handler).await;
        let result = match self.shared.as_ref().and_then(|s| s.violation.get()) {
            Some((policy, status)) => Err((Some(*policy), status.clone())),
            None => result,
        };
        self.end_single(result)
    }

    /// Replays a stored response (idempotency key): the hooks see it like a handler's.
    pub fn replay(
        &mut self,
        response: Response<R::Response>,
    ) -> Result<Response<R::Response>, Status> {
        self.end_single(Ok(response))
    }

    /// Runs a server-streaming handler until it returns its stream, which then reports
    /// the call's end.
    pub async fn server_streaming<S, F>(
        &mut self,
        handler: F,
    ) -> Result<Response<Outbound<R, S, H>>, Status>
    where
        S: Send + 'static,
        F: Future<Output = Result<Response<S>, Status>>,
    {
        let inbound = InCounts::Fixed {
            messages: self.meter_in.messages,
            bytes: self.meter_in.bytes,
        };
        self.streaming(handler, inbound).await
    }

    /// [`server_streaming`](Self::server_streaming) for a bidi handler, whose request
    /// counts are shared with its [`Inbound`] stream.
    pub async fn bidi<S, F>(&mut self, handler: F) -> Result<Response<Outbound<R, S, H>>, Status>
    where
        S: Send + 'static,
        F: Future<Output = Result<Response<S>, Status>>,
    {
        let inbound = InCounts::Shared(self.shared_counts());
        self.streaming(handler, inbound).await
    }

    async fn streaming<S, F>(
        &mut self,
        handler: F,
        inbound: InCounts,
    ) -> Result<Response<Outbound<R, S, H>>, Status>
    where
        S: Send + 'static,
        F: Future<Output = Result<Response<S>, Status>>,
    {
        match self.deadline(handler).await {
            Ok(response) => {
                // From here the response stream reports the call's end.
                self.finished = true;
                let tail = Tail {
                    call: self.call,
                    limits: self.limits,
                    hooks: self.hooks.clone(),
                    inbound,
                    span: self.span.clone(),
                    recover: self.recover,
                    admitted: self.admitted.take(),
                    decided_without: self.decided_without,
                };
                Ok(response.map(|s| Outbound::new(s, tail)))
            }
            Err((policy, status)) => {
                self.finish(status.code(), policy);
                Err(status)
            }
        }
    }

    /// Runs the handler until the deadline; the error says whether the deadline ended it.
    async fn deadline<T, F>(&self, handler: F) -> Result<T, (Option<PolicyKind>, Status)>
    where
        F: Future<Output = Result<T, Status>>,
    {
        let result = match self.call.deadline() {
            Some(deadline) => {
                let handler = self.incoming.clone().scope(handler);
                match tokio::time::timeout_at(deadline, handler).await {
                    Ok(result) => result,
                    Err(_) => {
                        return Err((Some(PolicyKind::Deadline), deadline_exceeded(&self.call)));
                    }
                }
            }
            None => self.incoming.clone().scope(handler).await,
        };
        result.map_err(|status| (None, status))
    }

    fn end_single(
        &mut self,
        result: Result<Response<R::Response>, (Option<PolicyKind>, Status)>,
    ) -> Result<Response<R::Response>, Status> {
        let result = result.and_then(|r| {
            check_response(&mut self.meter_out, &self.call, &self.hooks, r.get_ref())
                .map(|()| r)
                .map_err(|(policy, status)| (Some(policy), status))
        });
        match result {
            Ok(response) => {
                self.finish(tonic::Code::Ok, None);
                Ok(response)
            }
            Err((policy, status)) => {
                self.finish(status.code(), policy);
                Err(status)
            }
        }
    }

    fn finish(&mut self, code: tonic::Code, ended_by: Option<PolicyKind>) {
        self.finished = true;
        self.admitted = None;
        let (messages_in, bytes_in) = match &self.shared {
            Some(s) => (
                s.messages.load(std::sync::atomic::Ordering::Relaxed),
                s.bytes.load(std::sync::atomic::Ordering::Relaxed),
            ),
            None => (self.meter_in.messages, self.meter_in.bytes),
        };
        let _span = self.span.enter();
        self.hooks.on_finish(
            &self.call,
            &CallOutcome {
                code,
                messages_in,
                messages_out: self.meter_out.messages,
                bytes_in,
                bytes_out: self.meter_out.bytes,
                ended_by,
                decided_without: self.decided_without,
            },
        );
    }
}

impl<R: Rpc, H: Hooks<R>> Drop for Guard<R, H> {
    /// The call's future was dropped before it ended: the client went away (`CANCELLED`,
    /// or `DEADLINE_EXCEEDED` at its deadline, see `Call::code_when_abandoned`), or,
    /// without `recover`, a panic is unwinding through it.
    fn drop(&mut self) {
        if !self.finished {
            if std::thread::panicking() {
                self.finish(tonic::Code::Internal, None);
            } else {
                match self.call.code_when_abandoned() {
                    tonic::Code::DeadlineExceeded => {
                        self.finish(tonic::Code::DeadlineExceeded, Some(PolicyKind::Deadline))
                    }
                    code => self.finish(code, None),
                }
            }
        }
    }
}
