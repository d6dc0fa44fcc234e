//! The one door through which `#[intercept]` output reaches this crate.
//!
//! Not public API: names here change without notice. Generated code uses absolute paths
//! (`::tonic_intercept::__private::...`).

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use tonic::{Request, Streaming};

use crate::call::{Call, Outcome};
use crate::hook::Hooks;
use crate::limits::{Dir, Limits, Meter};
use crate::rpc::Rpc;
use crate::stream::{InCounts, Inbound, InboundShared, Outbound, check, deadline_exceeded};

pub use crate::limits::OnRateExceeded;
pub use std::time::Duration;

pub use tonic::{Response, Status};

/// The service of the stand-in RPCs that `__doc_rpc!` defines for doc examples.
#[derive(Debug, Clone, Copy)]
pub struct DocService;

impl crate::rpc::Service for DocService {
    const NAME: &'static str = "doc.v1.DocService";
    const RPCS: &'static [&'static crate::rpc::RpcDescriptor] = &[];
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
#[derive(Debug)]
pub struct Guard<R: Rpc, H: Hooks<R>> {
    call: Call,
    limits: Limits,
    limits_first: bool,
    hooks: H,
    meter_in: Meter,
    meter_out: Meter,
    shared: Option<Arc<InboundShared>>,
    _rpc: PhantomData<fn() -> R>,
}

impl<R: Rpc, H: Hooks<R>> Guard<R, H> {
    /// Starts the call: peer, deadline, counters.
    pub fn new<T>(request: &Request<T>, limits: Limits, limits_first: bool, hooks: H) -> Self {
        Self {
            call: Call::start(&R::DESCRIPTOR, request, limits.get_timeout()),
            meter_in: Meter::new(Dir::In, &limits),
            meter_out: Meter::new(Dir::Out, &limits),
            limits,
            limits_first,
            hooks,
            shared: None,
            _rpc: PhantomData,
        }
    }

    pub fn call(&self) -> &Call {
        &self.call
    }

    pub fn hooks(&self) -> &H {
        &self.hooks
    }

    /// Ends a call that a start step rejected: hooks see the status, which is returned.
    pub fn reject(&self, status: Status) -> Status {
        self.finish(status.code());
        status
    }

    /// Passes the single request message of a unary or server-streaming call through
    /// the limits and hooks.
    pub fn admit_request(&mut self, message: &R::Request) -> Result<(), Status> {
        let (call, hooks) = (&self.call, &self.hooks);
        check(&mut self.meter_in, call, message, self.limits_first, |m| {
            hooks.on_request(call, m)
        })
    }

    /// Passes the single response message of a unary or client-streaming call through
    /// the limits and hooks.
    fn admit_response(&mut self, message: &R::Response) -> Result<(), Status> {
        let (call, hooks) = (&self.call, &self.hooks);
        check(&mut self.meter_out, call, message, self.limits_first, |m| {
            hooks.on_response(call, m)
        })
    }

    /// Wraps the request stream of a client-streaming or bidi call.
    pub fn inbound(&mut self, request: Request<Streaming<R::Request>>) -> Request<Inbound<R, H>> {
        let shared = Arc::new(InboundShared::default());
        self.shared = Some(shared.clone());
        let (call, limits, first, hooks) = (
            self.call,
            self.limits,
            self.limits_first,
            self.hooks.clone(),
        );
        request.map(|s| Inbound::new(s, call, &limits, first, hooks, shared))
    }

    pub async fn unary<F>(mut self, handler: F) -> Result<Response<R::Response>, Status>
    where
        F: Future<Output = Result<Response<R::Response>, Status>>,
    {
        let result = self.run(handler).await;
        let result = result.and_then(|r| self.admit_response(r.get_ref()).map(|()| r));
        self.end(result)
    }

    pub async fn client_streaming<F>(mut self, handler: F) -> Result<Response<R::Response>, Status>
    where
        F: Future<Output = Result<Response<R::Response>, Status>>,
    {
        let result = self.run(handler).await;
        let result = match self.shared.as_ref().and_then(|s| s.violation.get()) {
            Some(violation) => Err(violation.clone()),
            None => result,
        };
        let result = result.and_then(|r| self.admit_response(r.get_ref()).map(|()| r));
        self.end(result)
    }

    pub async fn server_streaming<S, F>(
        self,
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

    pub async fn bidi<S, F>(self, handler: F) -> Result<Response<Outbound<R, S, H>>, Status>
    where
        F: Future<Output = Result<Response<S>, Status>>,
    {
        let inbound = match &self.shared {
            Some(shared) => InCounts::Shared(shared.clone()),
            None => InCounts::Fixed {
                messages: 0,
                bytes: 0,
            },
        };
        self.streaming(handler, inbound).await
    }

    async fn streaming<S, F>(
        self,
        handler: F,
        inbound: InCounts,
    ) -> Result<Response<Outbound<R, S, H>>, Status>
    where
        F: Future<Output = Result<Response<S>, Status>>,
    {
        match self.run(handler).await {
            Ok(response) => {
                let Self {
                    call,
                    limits,
                    limits_first,
                    hooks,
                    ..
                } = self;
                Ok(response.map(|s| Outbound::new(s, call, &limits, limits_first, hooks, inbound)))
            }
            Err(status) => Err(self.reject(status)),
        }
    }

    async fn run<T, F>(&self, handler: F) -> Result<T, Status>
    where
        F: Future<Output = Result<T, Status>>,
    {
        match self.call.deadline() {
            Some(deadline) => tokio::time::timeout_at(deadline, handler)
                .await
                .unwrap_or_else(|_| Err(deadline_exceeded(&self.call))),
            None => handler.await,
        }
    }

    fn end<T>(&self, result: Result<T, Status>) -> Result<T, Status> {
        self.finish(match &result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        });
        result
    }

    fn finish(&self, code: tonic::Code) {
        let (messages_in, bytes_in) = match &self.shared {
            Some(s) => (
                s.messages.load(std::sync::atomic::Ordering::Relaxed),
                s.bytes.load(std::sync::atomic::Ordering::Relaxed),
            ),
            None => (self.meter_in.messages, self.meter_in.bytes),
        };
        self.hooks.on_finish(
            &self.call,
            &Outcome {
                code,
                messages_in,
                messages_out: self.meter_out.messages,
                bytes_in,
                bytes_out: self.meter_out.bytes,
                ended_by: None,
            },
        );
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
