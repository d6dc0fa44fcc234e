//! The one door through which `#[intercept]` output reaches this crate.
//!
//! Not public API: names here change without notice. Generated code uses absolute paths
//! (`::tonic_intercept::__private::...`).

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use tonic::metadata::MetadataMap;
use tonic::{Request, Streaming};
use tracing::Span;

use crate::auth::{Roles, check_roles};
use crate::call::{Call, Incoming, Outcome, Policy};
use crate::hook::Hooks;
use crate::limits::{Dir, Limits, Meter};
use crate::recover::{Run, panicked};
use crate::rpc::Rpc;
use crate::stream::{
    InCounts, Inbound, InboundShared, Outbound, Tail, check_request, check_response,
    deadline_exceeded,
};

pub use crate::admission::{Admission, AdmissionConfig, Admitted, identity_key};
pub use crate::client::engine::{ClientCore, Transport};
pub use crate::idempotency::{Begin, Ticket};
pub use crate::limits::OnRateExceeded;
pub use crate::trace::call_span;
pub use crate::validate::check as validate;
pub use std::time::Duration;
pub use tonic;

pub use tonic::{Response, Status};

/// Wraps a call's whole future (steps and handler): entered in the call's span at every
/// poll and, under `recover`, caught so that a panic becomes [`Guard::panicked`].
pub fn run<F: Future>(span: Span, recover: bool, future: F) -> Run<F> {
    Run::new(future, span, recover)
}

/// `roles(..)` outside a guard (an auth-only RPC): `PERMISSION_DENIED` without a role.
pub fn authorize<I: Roles + ?Sized>(
    call: &Call,
    identity: &I,
    required: &[&str],
) -> Result<(), Status> {
    check_roles(call, identity, required)
}

/// Whether an attribute's limit agrees with the `.proto`'s (which may set none).
pub const fn agrees_u64(proto: Option<u64>, attribute: u64) -> bool {
    match proto {
        Some(proto) => proto == attribute,
        None => true,
    }
}

/// [`agrees_u64`] for message rates.
pub const fn agrees_u32(proto: Option<u32>, attribute: u64) -> bool {
    match proto {
        Some(proto) => proto as u64 == attribute,
        None => true,
    }
}

/// Whether two role lists hold the same roles, in a `const` (attribute vs `.proto`).
pub const fn same_roles(a: &[&str], b: &[&str]) -> bool {
    const fn contains(list: &[&str], role: &str) -> bool {
        let mut i = 0;
        while i < list.len() {
            if eq(list[i].as_bytes(), role.as_bytes()) {
                return true;
            }
            i += 1;
        }
        false
    }
    const fn eq(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }
    let mut i = 0;
    while i < a.len() {
        if !contains(b, a[i]) {
            return false;
        }
        i += 1;
    }
    let mut j = 0;
    while j < b.len() {
        if !contains(a, b[j]) {
            return false;
        }
        j += 1;
    }
    true
}

/// `metrics(value)`: the value must be the metrics of this impl's service.
#[diagnostic::on_unimplemented(
    message = "`{Self}` are not the metrics of the service `{S}`",
    label = "metrics of another service",
    note = "create this service's with `ServerMetrics::service::<{S}>()`"
)]
pub trait MetricsOf<S> {
    fn metrics(&self) -> crate::metrics::ServiceMetrics<S>;
}

impl<S: crate::rpc::Service> MetricsOf<S> for crate::metrics::ServiceMetrics<S> {
    fn metrics(&self) -> crate::metrics::ServiceMetrics<S> {
        self.clone()
    }
}

/// `idempotency(cache, Rpc)`: the cache must be typed by that RPC.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an idempotency cache for the RPC `{R}`",
    label = "a cache for another RPC",
    note = "the cache of `{R}` is an `IdempotencyCache<{R}>`: it stores `{R}`'s responses"
)]
pub trait CacheOf<R: Rpc> {
    fn cache(&self) -> &crate::idempotency::IdempotencyCache<R>;
}

impl<R: Rpc> CacheOf<R> for crate::idempotency::IdempotencyCache<R> {
    fn cache(&self) -> &crate::idempotency::IdempotencyCache<R> {
        self
    }
}

/// The service of the stand-in RPCs that `__doc_rpc!` defines for doc examples.
#[derive(Debug, Clone, Copy)]
pub struct DocService;

impl crate::rpc::Service for DocService {
    const NAME: &'static str = "doc.v1.DocService";
    /// One slot, `Rpc::INDEX` 0, which every stand-in RPC claims.
    const RPCS: &'static [&'static crate::rpc::RpcDescriptor] = &[&crate::rpc::RpcDescriptor::new(
        "doc.v1.DocService",
        "Doc",
        "/doc.v1.DocService/Doc",
        crate::rpc::RpcKind::Unary,
        crate::rpc::IdempotencyLevel::Unknown,
        false,
    )];
}

/// Hands the verified identity to the handler through the request extensions.
///
/// `type Identity = ();` means the verifier only admits or refuses: nothing is stored,
/// which saves a map insertion per call. (A zero-sized marker type is still stored:
/// its presence means something.)
pub fn store_identity<T, I: Clone + Send + Sync + 'static>(request: &mut Request<T>, identity: I) {
    if std::any::TypeId::of::<I>() != std::any::TypeId::of::<()>() {
        request.extensions_mut().insert(identity);
    }
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
            finished: false,
            _rpc: PhantomData,
        }
    }

    pub fn call(&self) -> &Call {
        &self.call
    }

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
    pub fn reject(&mut self, (policy, status): (Policy, Status)) -> Status {
        self.finish(status.code(), Some(policy));
        status
    }

    /// Ends a call whose handler, hook or stream panicked (under `recover`).
    pub fn panicked(&mut self, payload: Box<dyn std::any::Any + Send>) -> Status {
        let status = panicked(&self.call, &*payload);
        if !self.finished {
            self.finish(status.code(), Some(Policy::Recovery));
        }
        status
    }

    /// Concurrency and call rate: waits (under `queue`) or refuses.
    pub async fn admit(
        &mut self,
        admission: &'static Admission,
        identity: Option<u64>,
    ) -> Result<(), (Policy, Status)> {
        self.admitted = Some(admission.admit(&self.call, identity).await?);
        Ok(())
    }

    /// Passes the single request message of a unary or server-streaming call through
    /// the limits, validation and hooks.
    pub fn admit_request(&mut self, message: &R::Request) -> Result<(), (Policy, Status)> {
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

    pub async fn unary<F>(&mut self, handler: F) -> Result<Response<R::Response>, Status>
    where
        F: Future<Output = Result<Response<R::Response>, Status>>,
    {
        let result = self.deadline(handler).await;
        self.end_single(result)
    }

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

    pub async fn server_streaming<S, F>(
        &mut self,
        handler: F,
    ) -> Result<Response<Outbound<R, S, H>>, Status>
    where
        F: Future<Output = Result<Response<S>, Status>>,
    {
        let inbound = InCounts::Fixed {
            messages: self.meter_in.messages,
            bytes: self.meter_in.bytes,
        };
        self.streaming(handler, inbound).await
    }

    pub async fn bidi<S, F>(&mut self, handler: F) -> Result<Response<Outbound<R, S, H>>, Status>
    where
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
    async fn deadline<T, F>(&self, handler: F) -> Result<T, (Option<Policy>, Status)>
    where
        F: Future<Output = Result<T, Status>>,
    {
        let result = match self.call.deadline() {
            Some(deadline) => {
                let handler = self.incoming.clone().scope(handler);
                match tokio::time::timeout_at(deadline, handler).await {
                    Ok(result) => result,
                    Err(_) => return Err((Some(Policy::Deadline), deadline_exceeded(&self.call))),
                }
            }
            None => self.incoming.clone().scope(handler).await,
        };
        result.map_err(|status| (None, status))
    }

    fn end_single(
        &mut self,
        result: Result<Response<R::Response>, (Option<Policy>, Status)>,
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

    fn finish(&mut self, code: tonic::Code, ended_by: Option<Policy>) {
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
            &Outcome {
                code,
                messages_in,
                messages_out: self.meter_out.messages,
                bytes_in,
                bytes_out: self.meter_out.bytes,
                ended_by,
            },
        );
    }
}

impl<R: Rpc, H: Hooks<R>> Drop for Guard<R, H> {
    /// The call's future was dropped before it ended: the client went away (or, without
    /// `recover`, a panic is unwinding through it).
    fn drop(&mut self) {
        if !self.finished {
            let code = if std::thread::panicking() {
                tonic::Code::Internal
            } else {
                tonic::Code::Cancelled
            };
            self.finish(code, None);
        }
    }
}

pub use tracing;

/// The span of one call of an RPC; generated code calls it from `Rpc::span` with the
/// RPC's full name, because a span's name is fixed where it is declared.
///
/// Field names follow the OpenTelemetry RPC conventions; the empty ones are recorded as
/// the call goes (`TraceCalls`).
#[doc(hidden)]
#[macro_export]
macro_rules! __rpc_span {
    ($name:literal, $call:expr) => {{
        let call: &$crate::Call = $call;
        $crate::__private::tracing::info_span!(
            $name,
            otel.name = $name,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = call.rpc().service,
            rpc.method = call.rpc().method,
            rpc.grpc.status_code = $crate::__private::tracing::field::Empty,
            client.address = $crate::__private::tracing::field::Empty,
            trace_id = $crate::__private::tracing::field::Empty,
            parent_span_id = $crate::__private::tracing::field::Empty,
            duration_ms = $crate::__private::tracing::field::Empty,
            messages_in = $crate::__private::tracing::field::Empty,
            messages_out = $crate::__private::tracing::field::Empty,
            bytes_in = $crate::__private::tracing::field::Empty,
            bytes_out = $crate::__private::tracing::field::Empty,
            ended_by = $crate::__private::tracing::field::Empty,
        )
    }};
}
