//! The edge: a tower service in front of a generated tonic server that owns each call from
//! its request headers (see [`Edge`]).
//!
//! The per-call decisions (the `grpc-timeout` value, the length prefixes, what a final
//! status means) are plain functions of bytes and codes (`crate::wire`, [`verdict`]); the
//! tonic and `http` types stay in the service, future and body wrappers below.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tonic::codegen::Service as TowerService;
use tonic::codegen::http::{self, HeaderMap, HeaderName, HeaderValue};
use tonic::codegen::{Bytes, StdError};
use tonic::server::NamedService;
use tonic::{Code, Status};

use crate::call::{EdgeStart, PolicyKind, client_deadline, earliest, within_tolerance};
use crate::limits::Limits;
use crate::metrics::{EdgeMetrics, ServerMetrics};
use crate::rpc::{RpcDescriptor, Service};
use crate::wire::{
    CLIENT_CANCELLED, GRPC_TIMEOUT, PrefixMeter, client_cancelled, parse_grpc_timeout,
};

/// The size of a request message an RPC without its own `max_message_bytes` may send:
/// tonic's default `max_decoding_message_size`, 4 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 4 * 1024 * 1024;

/// The effective limits of each RPC of the service `S`, as an `#[intercept]` impl declares
/// them: the attribute's `limit(..)` entries with the `.proto`'s policy over them.
///
/// Implemented by the `#[intercept]` expansion; not public API.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `#[intercept]` for `{S}`, so its limits are unknown",
    label = "the service's impl has no `#[intercept]`",
    note = "add `#[tonic_intercept::intercept(..)]` above the impl of the tonic service trait \
            for `{Self}` (`#[intercept(public(*))]` where it has no policy): `Edge` enforces the \
            limits it declares"
)]
pub trait Declared<S: Service> {
    /// One entry per RPC of `S`, in the impl's order: the RPC and its effective limits.
    const LIMITS: &'static [(&'static RpcDescriptor, Limits)];
}

/// A generated tonic server (`UserServiceServer<T>`) whose RPCs and effective limits are
/// known: implemented by the generated code when `T` has an `#[intercept]` impl.
///
/// Not public API.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be wrapped in an `Edge`",
    label = "not a generated tonic server of an `#[intercept]` impl",
    note = "`Edge::new` takes the generated server (`UserServiceServer::new(users)`) of a service \
            whose impl has `#[tonic_intercept::intercept]`"
)]
pub trait Edged {
    /// The service, as the generated `<service>_intercept::Service`.
    type Service: Service;
    /// The effective limits of each RPC (see [`Declared`]).
    const LIMITS: &'static [(&'static RpcDescriptor, Limits)];
    /// The server with tonic's `max_decoding_message_size` set to `limit`: the bound on
    /// a decompressed message, which the length prefix (the compressed size) does not
    /// give.
    #[must_use]
    fn cap_decoding(self, limit: usize) -> Self;
}

/// The limits `S` declares for `rpc`; the `.proto`'s alone for an RPC it does not list.
fn declared<S: Edged>(rpc: &RpcDescriptor) -> Limits {
    S::LIMITS
        .iter()
        .find(|(declared, _)| declared.path == rpc.path)
        .map_or_else(
            || Limits::new().with_policy(&rpc.policy),
            |&(_, limits)| limits,
        )
}

/// What the edge enforces for one RPC.
#[derive(Debug, Clone, Copy)]
struct Route {
    rpc: &'static RpcDescriptor,
    index: usize,
    timeout: Option<Duration>,
    max_message_bytes: u64,
}

/// Built once per `Edge`, shared by its clones.
#[derive(Debug, Clone)]
struct Shared {
    routes: Box<[Route]>,
    metrics: Option<Arc<EdgeMetrics>>,
}

/// The edge in front of a generated tonic server: each call of the service is owned by
/// the library from its request headers, not from the moment tonic hands a decoded
/// request to the handler.
///
/// For each call `Edge`
/// - starts the call's clock at the request headers and hands it to `#[intercept]`'s
///   handler (one clock: the handler's [`Call`](crate::Call) and
///   [`Deadline`](crate::Deadline) are the edge's);
/// - refuses a malformed `grpc-timeout` with `INTERNAL` "malformed grpc-timeout: …"
///   without calling the service, and a deadline already passed (`grpc-timeout: 1n`)
///   with `DEADLINE_EXCEEDED`;
/// - runs a timer at the earlier of the client's `grpc-timeout` and the RPC's
///   `timeout_ms`, around reading and decoding the request and the handler: expiry
///   answers `DEADLINE_EXCEEDED` ("GetUser: deadline exceeded") and drops the handler;
/// - follows the 5-byte length prefixes of the request stream and refuses a message
///   longer than the RPC's `max_message_bytes` (or [`DEFAULT_MAX_MESSAGE_BYTES`]) with
///   `RESOURCE_EXHAUSTED` before tonic buffers any of it (a compressed message's prefix
///   is its compressed size: when every RPC declares `max_message_bytes`, the edge sets
///   the generated server's `max_decoding_message_size` to the largest, which bounds
///   decompression), and turns tonic's own
///   `OUT_OF_RANGE` "decoded message length too large" into `RESOURCE_EXHAUSTED`, as the
///   gRPC spec says;
/// - with [`metrics`](Self::metrics), counts every call that reaches the service:
///   `grpc_server_started_total` at the headers, `grpc_server_handled_total` with the
///   status that went out (or the client's `CANCELLED`, `DEADLINE_EXCEEDED` when it went
///   away at its deadline), the handling histogram, and
///   `grpc_server_rejected_total{policy}` for the edge's refusals (`unknown_method`,
///   `grpc_timeout`, `decode`, `limit`, `deadline`). Calls of methods the service does
///   not have are counted under one fixed label,
///   [`grpc_method="<unknown>"`](crate::metrics::UNKNOWN_METHOD_LABEL), so a client
///   cannot create series by inventing paths.
///
/// Behind an edge with metrics, the metrics hook of `#[intercept(metrics(..))]` leaves
/// the start, the end and the deadline to the edge and keeps counting messages, bytes and
/// the handler's own refusals: each call is counted once.
///
/// Leave tonic's own `Server::timeout` unset: its timer runs outside the edge and answers
/// `CANCELLED` "Timeout expired" where the edge cannot correct it; `timeout_ms` says the
/// same per RPC and goes out as `DEADLINE_EXCEEDED`.
///
/// `Edge::new` takes the generated server of an impl with `#[intercept]`, which declares
/// each RPC's limits to the edge through the types; an impl without it does not compile.
///
/// ```
/// # tonic_intercept::__doc_server!();
/// use pb::user_service_server::UserServiceServer;
/// use tonic_intercept::ServerMetrics;
/// use tonic_intercept::prometheus_client::registry::Registry;
/// use tonic_intercept::server::Edge;
///
/// # async fn serve(users: Users) -> Result<(), Box<dyn std::error::Error>> {
/// let mut registry = Registry::default();
/// let metrics = ServerMetrics::register(&mut registry);
/// // `Users` implements `UserService` under `#[intercept(..)]`.
/// let router = tonic::transport::Server::builder()
///     .add_service(Edge::new(UserServiceServer::new(users)).metrics(&metrics));
/// // router.serve(addr).await?;
/// # drop(router);
/// # Ok(())
/// # }
/// ```
pub struct Edge<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Edged> Edge<S> {
    /// Puts the edge in front of `server`, a generated tonic server of an `#[intercept]`
    /// impl. Reads each RPC's effective limits once.
    pub fn new(server: S) -> Self {
        let declared = <S::Service as Service>::RPCS
            .iter()
            .map(|&rpc| (rpc, declared::<S>(rpc)));
        let routes: Box<[Route]> = declared
            .clone()
            .enumerate()
            .map(|(index, (rpc, limits))| Route {
                rpc,
                index,
                timeout: limits.get_timeout(),
                max_message_bytes: limits
                    .get_max_message_bytes()
                    .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
            })
            .collect();
        // A compressed message's prefix gives its compressed size: what bounds its
        // decompression is tonic's `max_decoding_message_size`, per service. When every
        // RPC declares `max_message_bytes`, the largest of them is that bound; else it
        // stays the server's own (4 MiB unless set).
        let declared_by_all: Option<Vec<u64>> = declared
            .map(|(_, limits)| limits.get_max_message_bytes())
            .collect();
        let server = match declared_by_all.and_then(|own| own.into_iter().max()) {
            Some(largest) => server.cap_decoding(usize::try_from(largest).unwrap_or(usize::MAX)),
            None => server,
        };
        Self {
            inner: server,
            shared: Arc::new(Shared {
                routes,
                metrics: None,
            }),
        }
    }

    /// Counts every call of the service in `metrics` (see [`Edge`]); creates the series
    /// of every RPC at zero, and those of the unknown-method label.
    #[must_use]
    pub fn metrics(mut self, metrics: &ServerMetrics) -> Self {
        Arc::make_mut(&mut self.shared).metrics = Some(Arc::new(metrics.edge::<S::Service>()));
        self
    }
}

impl<S: Edged> Edge<S> {
    /// The largest request message of an RPC without its own `max_message_bytes`
    /// (default [`DEFAULT_MAX_MESSAGE_BYTES`], tonic's default): raise it together with
    /// the generated server's `max_decoding_message_size`.
    #[must_use]
    pub fn default_max_message_bytes(mut self, n: u64) -> Self {
        let shared = Arc::make_mut(&mut self.shared);
        for route in shared.routes.iter_mut() {
            let own = declared::<S>(route.rpc).get_max_message_bytes();
            route.max_message_bytes = own.unwrap_or(n);
        }
        self
    }
}

impl<S> Edge<S> {
    /// The wrapped server.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped server, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn route(&self, path: &str) -> Option<Route> {
        self.shared
            .routes
            .iter()
            .find(|route| route.rpc.path == path)
            .copied()
    }
}

impl<S: Clone> Clone for Edge<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S> fmt::Debug for Edge<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Edge")
            .field("rpcs", &self.shared.routes.len())
            .field("metrics", &self.shared.metrics.is_some())
            .finish_non_exhaustive()
    }
}

impl<S: NamedService> NamedService for Edge<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> TowerService<http::Request<B>> for Edge<S>
where
    S: TowerService<
            http::Request<EdgeBody<B>>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        >,
    B: Body<Data = Bytes>,
    B::Error: Into<StdError>,
{
    type Response = http::Response<EdgeResponseBody>;
    type Error = Infallible;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let Some(route) = self.route(request.uri().path()) else {
            // Not a method of the service: tonic's own answer (`UNIMPLEMENTED`), counted
            // under the one unknown-method label.
            let tally = Tally::start(&self.shared, None, started, None);
            let request = request.map(|body| EdgeBody::new(body, None, u64::MAX, None));
            return EdgeFuture::running(self.inner.call(request), tally);
        };
        let client = match find(request.headers(), &GRPC_TIMEOUT_NAME) {
            None => None,
            Some(value) => match parse_grpc_timeout(value.as_bytes()) {
                Ok(timeout) => Some(client_deadline(started, timeout)),
                Err(_) => {
                    let tally = Tally::start(&self.shared, Some(route.index), started, None);
                    let status = Status::internal(format!(
                        "malformed grpc-timeout: {}",
                        String::from_utf8_lossy(value.as_bytes())
                    ));
                    return EdgeFuture::answered(status, PolicyKind::GrpcTimeout, tally);
                }
            },
        };
        let deadline = earliest(started, client, route.timeout);
        let tally = Tally::start(&self.shared, Some(route.index), started, deadline);
        if let Some(deadline) = deadline
            && deadline <= started
        {
            // `grpc-timeout: 1n`: over before it began; the handler never runs.
            return EdgeFuture::answered(deadline_exceeded(route.rpc), PolicyKind::Deadline, tally);
        }
        let start = EdgeStart {
            rpc: route.rpc,
            started,
            client_deadline: client,
            counted: self.shared.metrics.is_some(),
        };
        let request = request.map(|body| {
            let deadline = deadline.map(|deadline| (started, deadline));
            EdgeBody::new(body, Some(route.rpc), route.max_message_bytes, deadline)
        });
        let mut future = EdgeFuture::running(self.inner.call(request), tally);
        future.start = Some(start);
        future.deadline = deadline;
        future
    }
}

/// `grpc-timeout` and `grpc-status`, parsed once.
static GRPC_TIMEOUT_NAME: HeaderName = HeaderName::from_static(GRPC_TIMEOUT);
static GRPC_STATUS_NAME: HeaderName = HeaderName::from_static("grpc-status");

/// The value of the header `name` in `headers`. A gRPC request or response carries a
/// handful of headers, and comparing two parsed names is mostly a comparison of their
/// kinds (standard or not) and lengths: cheaper than hashing one.
fn find<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    if headers.len() > 16 {
        return headers.get(name);
    }
    headers
        .iter()
        .find(|&(key, _)| key == name)
        .map(|(_, value)| value)
}

#[cold]
fn deadline_exceeded(rpc: &RpcDescriptor) -> Status {
    Status::deadline_exceeded(format!("{}: deadline exceeded", rpc.method))
}

/// The text that marks the edge's own size refusal, so that its end is counted as the
/// `limit` policy's.
const PREFIX_REFUSAL: &str = "refused at its length prefix";

#[cold]
#[inline(never)]
fn too_large(rpc: Option<&RpcDescriptor>, len: u64, max: u64) -> Status {
    let method = rpc.map_or("", |rpc| rpc.method);
    Status::resource_exhausted(format!(
        "{method}: request message of {len} bytes exceeds the limit of {max} bytes, {PREFIX_REFUSAL}"
    ))
}

/// What a call's final status means to the edge: the code to send (tonic's oversize
/// `OUT_OF_RANGE` and timer `CANCELLED` are the spec's `RESOURCE_EXHAUSTED` and
/// `DEADLINE_EXCEEDED`) and the edge rule to count it under, if any.
///
/// `message` is read only for the few codes where it decides; `at_deadline`, whether the
/// call ended at its deadline (within `Call`'s tolerance).
pub(crate) fn verdict(
    code: Code,
    message: impl FnOnce() -> String,
    known_method: bool,
    at_deadline: bool,
) -> (Code, Option<PolicyKind>) {
    match code {
        Code::Unimplemented if !known_method => return (code, Some(PolicyKind::UnknownMethod)),
        Code::DeadlineExceeded => return (code, at_deadline.then_some(PolicyKind::Deadline)),
        Code::OutOfRange
        | Code::Cancelled
        | Code::Aborted
        | Code::ResourceExhausted
        | Code::Internal
        | Code::Unimplemented => {}
        _ => return (code, None),
    }
    let message = message();
    match code {
        Code::OutOfRange if message.contains("decoded message length too large") => {
            (Code::ResourceExhausted, Some(PolicyKind::Limit))
        }
        Code::Cancelled if message == "Timeout expired" => {
            (Code::DeadlineExceeded, Some(PolicyKind::Deadline))
        }
        // The client's reset, as the edge's request body handed it on (see `EdgeBody`).
        Code::Aborted if message.ends_with(CLIENT_CANCELLED) => (Code::Cancelled, None),
        // The edge's own refusal, or tonic's decompression cap (the generated server's
        // `max_decoding_message_size`) on a compressed message.
        Code::ResourceExhausted
            if message.ends_with(PREFIX_REFUSAL)
                || message.starts_with("Error decompressing: size limit") =>
        {
            (code, Some(PolicyKind::Limit))
        }
        Code::Internal | Code::Unimplemented if is_decode_failure(&message) => {
            (code, Some(PolicyKind::Decode))
        }
        _ => (code, None),
    }
}

/// tonic 0.14's messages for a request it could not decode (tonic-prost's protobuf
/// errors, `codec/decode.rs`, `codec/compression.rs`, `server/grpc.rs`).
fn is_decode_failure(message: &str) -> bool {
    const TONIC_DECODE_FAILURES: [&str; 6] = [
        "failed to decode Protobuf message",
        "protocol error: received message with",
        "Error decompressing",
        "Content is compressed with",
        "Unexpected EOF decoding stream",
        "Missing request message",
    ];
    TONIC_DECODE_FAILURES
        .iter()
        .any(|prefix| message.starts_with(prefix))
}

/// Applies [`verdict`] to a header map that carries a `grpc-status` (the headers of a
/// trailers-only response, or the trailers): rewrites the code in place when it changes,
/// and returns the code and the rule. `None` without a `grpc-status`.
fn settle(
    headers: &mut HeaderMap,
    known_method: bool,
    at_deadline: impl FnOnce() -> bool,
) -> Option<(Code, Option<PolicyKind>)> {
    let value = find(headers, &GRPC_STATUS_NAME)?;
    if value.as_bytes() == b"0" {
        return Some((Code::Ok, None));
    }
    let code = Code::from_bytes(value.as_bytes());
    let message = || {
        Status::from_header_map(headers)
            .map(|s| s.message().to_owned())
            .unwrap_or_default()
    };
    let (sent, rule) = verdict(code, message, known_method, at_deadline());
    if sent != code {
        headers.insert(Status::GRPC_STATUS, HeaderValue::from(sent as i32));
    }
    Some((sent, rule))
}

/// The edge's count of one call: started when created, finished exactly once (or, if
/// dropped first, as abandoned by its client).
#[derive(Debug)]
struct Tally {
    metrics: Arc<EdgeMetrics>,
    index: Option<usize>,
    started: Instant,
    deadline: Option<Instant>,
    done: bool,
}

impl Tally {
    fn start(
        shared: &Shared,
        index: Option<usize>,
        started: Instant,
        deadline: Option<Instant>,
    ) -> Option<Tally> {
        let metrics = shared.metrics.as_ref()?;
        metrics.started(index);
        Some(Tally {
            metrics: metrics.clone(),
            index,
            started,
            deadline,
            done: false,
        })
    }

    fn at_deadline(started: Instant, deadline: Option<Instant>) -> bool {
        deadline.is_some_and(|deadline| within_tolerance(started, deadline, Instant::now()))
    }

    fn finish(&mut self, code: Code, rule: Option<PolicyKind>) {
        if !self.done {
            self.done = true;
            self.metrics
                .finished(self.index, code, self.started.elapsed(), rule);
        }
    }
}

impl Drop for Tally {
    /// The client went away before the status went out: `CANCELLED`, or
    /// `DEADLINE_EXCEEDED` at its deadline (the rule of `Call::code_when_abandoned`).
    fn drop(&mut self) {
        if !self.done {
            match Tally::at_deadline(self.started, self.deadline) {
                true => self.finish(Code::DeadlineExceeded, Some(PolicyKind::Deadline)),
                false => self.finish(Code::Cancelled, None),
            }
        }
    }
}

pin_project! {
    /// The response future of an [`Edge`]: the service's, under the call's deadline.
    pub struct EdgeFuture<F> {
        #[pin]
        inner: Option<F>,
        // Armed at the first poll that leaves the service pending: a call answered in
        // one poll never registers a timer.
        #[pin]
        sleep: Option<Sleep>,
        deadline: Option<Instant>,
        start: Option<EdgeStart>,
        answer: Option<Box<(Status, PolicyKind)>>,
        tally: Option<Tally>,
    }
}

impl<F> fmt::Debug for EdgeFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeFuture")
            .field("rpc", &self.start.map(|start| start.rpc.path))
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<F> EdgeFuture<F> {
    fn running(inner: F, tally: Option<Tally>) -> Self {
        Self {
            inner: Some(inner),
            sleep: None,
            deadline: None,
            start: None,
            answer: None,
            tally,
        }
    }

    #[cold]
    fn answered(status: Status, rule: PolicyKind, tally: Option<Tally>) -> Self {
        Self {
            inner: None,
            sleep: None,
            deadline: None,
            start: None,
            answer: Some(Box::new((status, rule))),
            tally,
        }
    }
}

impl<F> Future for EdgeFuture<F>
where
    F: Future<Output = Result<http::Response<tonic::body::Body>, Infallible>>,
{
    type Output = Result<http::Response<EdgeResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(answer) = this.answer.take() {
            let (status, rule) = *answer;
            return Poll::Ready(Ok(refusal(status, rule, this.tally.take())));
        }
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            panic!("EdgeFuture polled after completion");
        };
        // The service first, with the edge's start current for the handler's `Call`; a
        // handler whose own deadline fires at the same tick answers (and counts) for
        // itself.
        let polled = match *this.start {
            Some(start) => start.scope(|| inner.poll(cx)),
            None => inner.poll(cx),
        };
        if let Poll::Ready(result) = polled {
            let Ok(response) = result;
            this.inner.set(None);
            // Only a call of a known method has a start.
            let known_method = this.start.is_some();
            return Poll::Ready(Ok(respond(response, this.tally.take(), known_method)));
        }
        let Some(deadline) = *this.deadline else {
            return Poll::Pending;
        };
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep_until(deadline)));
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
            // Drop the handler now: its work stops, its guard reports the end to hooks.
            this.inner.set(None);
            let rpc = this.start.expect("a deadline only for a known RPC").rpc;
            return Poll::Ready(Ok(refusal(
                deadline_exceeded(rpc),
                PolicyKind::Deadline,
                this.tally.take(),
            )));
        }
        Poll::Pending
    }
}

/// A trailers-only response of the edge's own, counted under `rule`.
fn refusal(
    status: Status,
    rule: PolicyKind,
    tally: Option<Tally>,
) -> http::Response<EdgeResponseBody> {
    let code = status.code();
    if let Some(mut tally) = tally {
        tally.finish(code, Some(rule));
    }
    status
        .into_http::<tonic::body::Body>()
        .map(|body| EdgeResponseBody::new(body, None, true))
}

/// The service's response: a trailers-only status is settled now, otherwise when the
/// body's trailers go out.
fn respond(
    mut response: http::Response<tonic::body::Body>,
    mut tally: Option<Tally>,
    known_method: bool,
) -> http::Response<EdgeResponseBody> {
    let at_deadline = || {
        tally
            .as_ref()
            .is_some_and(|t| Tally::at_deadline(t.started, t.deadline))
    };
    if let Some((code, rule)) = settle(response.headers_mut(), known_method, at_deadline) {
        if let Some(tally) = tally.as_mut() {
            tally.finish(code, rule);
        }
        tally = None;
    }
    response.map(|body| EdgeResponseBody::new(body, tally, known_method))
}

pin_project! {
    /// The response body of an [`Edge`]: the service's, whose trailers it reads (and, for
    /// the codes [`Edge`] corrects, rewrites) to count the call's end.
    pub struct EdgeResponseBody {
        #[pin]
        inner: tonic::body::Body,
        tally: Option<Tally>,
        known_method: bool,
    }
}

impl fmt::Debug for EdgeResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeResponseBody").finish_non_exhaustive()
    }
}

impl EdgeResponseBody {
    fn new(inner: tonic::body::Body, tally: Option<Tally>, known_method: bool) -> Self {
        Self {
            inner,
            tally,
            known_method,
        }
    }
}

impl Body for EdgeResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match frame {
            Some(Ok(mut frame)) => {
                if let Some(trailers) = frame.trailers_mut() {
                    let tally = this.tally.as_ref();
                    let at_deadline =
                        || tally.is_some_and(|t| Tally::at_deadline(t.started, t.deadline));
                    let settled = settle(trailers, *this.known_method, at_deadline);
                    if let (Some((code, rule)), Some(tally)) = (settled, this.tally.as_mut()) {
                        tally.finish(code, rule);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(status)) => {
                // The stream is reset: the client sees no status of ours.
                if let Some(tally) = this.tally.as_mut() {
                    tally.finish(status.code(), None);
                }
                Poll::Ready(Some(Err(status)))
            }
            None => {
                // Ended without trailers: a client reads no status, which it takes as
                // `UNKNOWN`.
                if let Some(tally) = this.tally.as_mut() {
                    tally.finish(Code::Unknown, None);
                }
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// The request body an [`Edge`] hands to the service: the client's, whose length
    /// prefixes it follows to refuse an oversized message before it is buffered.
    pub struct EdgeBody<B> {
        #[pin]
        inner: B,
        meter: PrefixMeter,
        rpc: Option<&'static RpcDescriptor>,
        // The call's start and deadline, to tell a client's reset at its deadline.
        deadline: Option<(Instant, Instant)>,
        refused: bool,
    }
}

impl<B> fmt::Debug for EdgeBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeBody")
            .field("max", &self.meter.max())
            .finish_non_exhaustive()
    }
}

impl<B> EdgeBody<B> {
    fn new(
        inner: B,
        rpc: Option<&'static RpcDescriptor>,
        max: u64,
        deadline: Option<(Instant, Instant)>,
    ) -> Self {
        Self {
            inner,
            meter: PrefixMeter::new(max),
            rpc,
            deadline,
            refused: false,
        }
    }
}

impl<B> Body for EdgeBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<StdError>,
{
    type Data = Bytes;
    type Error = StdError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if *this.refused {
            return Poll::Ready(None);
        }
        match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref()
                    && let Err(len) = this.meter.feed(data)
                {
                    *this.refused = true;
                    // tonic's decoder downcasts the error to this `Status`.
                    let status = too_large(*this.rpc, len, this.meter.max());
                    return Poll::Ready(Some(Err(Box::new(status))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => {
                // tonic's decoder ends a request stream quietly, as if the client had
                // finished it, when the body fails with `CANCELLED` (the client's
                // `RST_STREAM(CANCEL)`), so a handler would store half an upload and
                // answer `OK`. The client's reset goes on as a status tonic passes to the
                // handler: `DEADLINE_EXCEEDED` at the deadline, else `ABORTED` "…: the
                // client cancelled the call" (the intercepted `Inbound` hands it on as
                // `CANCELLED`; the edge counts it as `Canceled`).
                let status = Status::from_error(error.into());
                let status = match (status.code(), *this.rpc) {
                    (Code::Cancelled, Some(rpc)) => match *this.deadline {
                        Some((started, deadline))
                            if within_tolerance(started, deadline, Instant::now()) =>
                        {
                            deadline_exceeded(rpc)
                        }
                        _ => client_cancelled(rpc.method),
                    },
                    _ => status,
                };
                Poll::Ready(Some(Err(Box::new(status))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.refused || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Defines, for doc examples, a stand-in for the generated code of a `UserService` with
/// one RPC (`pb::user_service_intercept`, `pb::user_service_server::UserServiceServer`,
/// `Edged` as the generator emits it) and a `Users` impl with `Declared` as
/// `#[intercept]` emits it.
#[doc(hidden)]
#[macro_export]
macro_rules! __doc_server {
    () => {
        mod pb {
            pub mod user_service_intercept {
                $crate::__doc_service!(Service = "users.v1.UserService" { 0 => GetUser: Unary });
            }
            pub mod user_service_server {
                use $crate::__private::{Declared, Edged, Limits, RpcDescriptor};
                use tonic::codegen::http::{Request, Response};
                #[derive(Debug, Clone)]
                pub struct UserServiceServer<T>(pub T);
                impl<T> UserServiceServer<T> {
                    pub fn new(t: T) -> Self {
                        Self(t)
                    }
                }
                impl<T> tonic::server::NamedService for UserServiceServer<T> {
                    const NAME: &'static str = "users.v1.UserService";
                }
                impl<T: Send + 'static, B: Send + 'static> tonic::codegen::Service<Request<B>>
                    for UserServiceServer<T>
                {
                    type Response = Response<tonic::body::Body>;
                    type Error = std::convert::Infallible;
                    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
                    fn poll_ready(
                        &mut self,
                        _: &mut std::task::Context<'_>,
                    ) -> std::task::Poll<Result<(), Self::Error>> {
                        std::task::Poll::Ready(Ok(()))
                    }
                    fn call(&mut self, _: Request<B>) -> Self::Future {
                        std::future::ready(Ok(tonic::Status::unimplemented("").into_http()))
                    }
                }
                impl<T: Declared<super::user_service_intercept::Service>> Edged for UserServiceServer<T> {
                    type Service = super::user_service_intercept::Service;
                    const LIMITS: &'static [(&'static RpcDescriptor, Limits)] = T::LIMITS;
                    fn cap_decoding(self, _limit: usize) -> Self {
                        self
                    }
                }
            }
        }
        #[derive(Debug, Clone, Copy)]
        struct Users;
        impl $crate::__private::Declared<pb::user_service_intercept::Service> for Users {
            const LIMITS: &'static [(&'static $crate::__private::RpcDescriptor, $crate::__private::Limits)] = &[];
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> String {
        panic!("the message is not read for this code")
    }

    #[test]
    fn verdicts() {
        let m = |s: &'static str| move || s.to_owned();
        assert_eq!(verdict(Code::Ok, none, true, true), (Code::Ok, None));
        // A client's reset, handed on by the request body: counted as the client's cancel.
        let reset = crate::wire::client_cancelled("Upload");
        assert!(crate::wire::is_client_cancelled(&reset));
        assert_eq!(
            verdict(Code::Aborted, || reset.message().to_owned(), true, false),
            (Code::Cancelled, None)
        );
        assert_eq!(
            verdict(Code::Aborted, m("Upload: lost a race"), true, false),
            (Code::Aborted, None)
        );
        assert_eq!(
            verdict(Code::Unimplemented, none, false, false),
            (Code::Unimplemented, Some(PolicyKind::UnknownMethod))
        );
        assert_eq!(
            verdict(
                Code::OutOfRange,
                m("Error, decoded message length too large: found 5 bytes, the limit is: 4 bytes"),
                true,
                false
            ),
            (Code::ResourceExhausted, Some(PolicyKind::Limit))
        );
        assert_eq!(
            verdict(
                Code::ResourceExhausted,
                m(
                    "Error decompressing: size limit, of 1024 bytes, exceeded while decompressing message"
                ),
                true,
                false
            ),
            (Code::ResourceExhausted, Some(PolicyKind::Limit))
        );
        assert_eq!(
            verdict(Code::ResourceExhausted, m("quota"), true, false),
            (Code::ResourceExhausted, None)
        );
        assert_eq!(
            verdict(Code::OutOfRange, m("page 9 of 3"), true, false),
            (Code::OutOfRange, None)
        );
        assert_eq!(
            verdict(Code::Cancelled, m("Timeout expired"), true, false),
            (Code::DeadlineExceeded, Some(PolicyKind::Deadline))
        );
        assert_eq!(
            verdict(Code::DeadlineExceeded, m("x"), true, true),
            (Code::DeadlineExceeded, Some(PolicyKind::Deadline))
        );
        assert_eq!(
            verdict(Code::DeadlineExceeded, m("x"), true, false),
            (Code::DeadlineExceeded, None)
        );
        let edge = too_large(None, 9, 8);
        assert_eq!(
            verdict(
                Code::ResourceExhausted,
                || edge.message().to_owned(),
                true,
                false
            ),
            (Code::ResourceExhausted, Some(PolicyKind::Limit))
        );
        assert_eq!(
            verdict(
                Code::Internal,
                m("failed to decode Protobuf message: invalid wire type"),
                true,
                false
            ),
            (Code::Internal, Some(PolicyKind::Decode))
        );
        assert_eq!(
            verdict(Code::Internal, m("database down"), true, false),
            (Code::Internal, None)
        );
    }
}
