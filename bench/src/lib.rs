//! One echo service, served fourteen ways, and a load generator that checks every status.
//!
//! The variants differ only in what wraps the same handlers: nothing (bare tonic),
//! tonic's `Interceptor`, a hand-written tower layer, a hand-written tower stack doing
//! what `#[intercept]`'s full chain does, and `#[intercept]` with no policy, with auth,
//! with auth + limits + typed hooks, with typed hooks and count limits only, and with
//! the full chain plus the server policy suite (metrics, recovery, tracing, validation,
//! a concurrency limit), and with auth plus a per-caller call rate kept in Redis
//! (admitted, or refused from the local deny cache). `BENCHMARKS.md` has the figures.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_intercept::backend::{
    Decision, RateBackend, RateKey, RateLimit, RedisGcra, RedisGcraConfig,
};
use tonic_intercept::prometheus_client::registry::Registry;
use tonic_intercept::{
    Authenticate, Call, Hook, Rpc, ServerMetrics, Validate, intercept, metrics::ServiceMetrics,
    validate::Violations,
};

pub mod tower_layers;

pub mod pb {
    tonic::include_proto!("bench.v1");
}

use pb::bench_server::{Bench, BenchServer};
use pb::{Payload, StreamRequest, Summary};

/// The bearer token every authenticating variant accepts.
pub const TOKEN: &str = "bench-token";
/// `max_message_bytes` of the limiting variants; the `oversize` workload sends more.
pub const MAX_MESSAGE_BYTES: u64 = 64 * 1024;

/// How the echo service is wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Plain tonic: the ceiling.
    Bare,
    /// tonic's `Interceptor` comparing the bearer token.
    Interceptor,
    /// A minimal hand-written tower layer comparing the token.
    Tower,
    /// A hand-written tower stack doing what the full `#[intercept]` chain does: token,
    /// deadline, message counting and size limits by parsing the gRPC frames.
    TowerFull,
    /// `#[intercept(public(*))]`: no policy at all.
    InterceptNone,
    /// `#[intercept(auth(..))]`.
    InterceptAuth,
    /// `#[intercept]` with auth, limits (deadline, sizes, stream counts and rates) and
    /// typed hooks on every message.
    InterceptFull,
    /// [`InterceptFull`](Variant::InterceptFull) behind `tonic_intercept::server::Edge`:
    /// the clock and deadline from the request headers, the length-prefix meter on the
    /// request body, the final status read from the response.
    InterceptFullEdge,
    /// `#[intercept]` with only what the per-message target names: typed hooks on every
    /// message and stream count limits.
    InterceptHooks,
    /// Plain tonic served by `tonic_intercept::server::Server` (the hardened accept loop
    /// and hyper settings) instead of tonic's `transport::Server`: the server's own cost.
    BareHardened,
    /// [`InterceptFull`](Variant::InterceptFull) served by `tonic_intercept::server::Server`,
    /// which puts it behind its edge: how a user serves it.
    InterceptFullHardened,
    /// [`InterceptFull`](Variant::InterceptFull) plus the server policy suite: Prometheus
    /// metrics, panic recovery, a span per call (no subscriber installed), validation of
    /// every request message, and `max_in_flight` on the unary RPC.
    InterceptSuite,
    /// [`InterceptAuth`](Variant::InterceptAuth) plus a per-caller call rate on the unary
    /// RPC kept in Redis (`limit(Unary, calls_per_second_per_identity = SHARED_RATE,
    /// shared = self.rates)` on a [`RedisGcra`]), so high that it never refuses: one
    /// `EVALSHA` round trip per unary call.
    InterceptShared,
    /// The same with a rate that refuses every unary call: the caller's bucket in Redis
    /// is full for an hour before the first call (see [`warm_up`]), so every unary call is
    /// refused `RESOURCE_EXHAUSTED` from the local deny cache, with no round trip.
    InterceptSharedDenied,
}

impl Variant {
    pub const ALL: [Variant; 14] = [
        Variant::Bare,
        Variant::Interceptor,
        Variant::Tower,
        Variant::TowerFull,
        Variant::InterceptNone,
        Variant::InterceptAuth,
        Variant::InterceptFull,
        Variant::InterceptFullEdge,
        Variant::BareHardened,
        Variant::InterceptFullHardened,
        Variant::InterceptHooks,
        Variant::InterceptSuite,
        Variant::InterceptShared,
        Variant::InterceptSharedDenied,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Bare => "bare",
            Variant::Interceptor => "interceptor",
            Variant::Tower => "tower",
            Variant::TowerFull => "tower-full",
            Variant::InterceptNone => "intercept-none",
            Variant::InterceptAuth => "intercept-auth",
            Variant::InterceptFull => "intercept-full",
            Variant::InterceptFullEdge => "intercept-full-edge",
            Variant::BareHardened => "bare-hardened",
            Variant::InterceptFullHardened => "intercept-full-hardened",
            Variant::InterceptHooks => "intercept-hooks",
            Variant::InterceptSuite => "intercept-suite",
            Variant::InterceptShared => "intercept-shared",
            Variant::InterceptSharedDenied => "intercept-shared-denied",
        }
    }

    /// Whether the variant keeps a call rate in Redis: its server needs a Redis URL
    /// ([`serve_with_redis`]).
    pub fn redis(self) -> bool {
        matches!(
            self,
            Variant::InterceptShared | Variant::InterceptSharedDenied
        )
    }

    /// Whether calls without the token are refused.
    pub fn authenticates(self) -> bool {
        !matches!(
            self,
            Variant::Bare
                | Variant::BareHardened
                | Variant::InterceptNone
                | Variant::InterceptHooks
        )
    }

    /// Whether messages over [`MAX_MESSAGE_BYTES`] are refused.
    pub fn limits_size(self) -> bool {
        matches!(
            self,
            Variant::TowerFull
                | Variant::InterceptFull
                | Variant::InterceptFullEdge
                | Variant::InterceptFullHardened
                | Variant::InterceptSuite
        )
    }
}

impl FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Variant::ALL.iter().map(|v| v.name()).collect();
                format!("unknown variant `{s}`; one of: {}", names.join(", "))
            })
    }
}

/// What the server did, counted by the handlers themselves.
#[derive(Debug, Default)]
pub struct Handled {
    /// Handler invocations.
    pub calls: AtomicU64,
    /// Messages the handlers received (client streams, bidi).
    pub messages_in: AtomicU64,
    /// The Prometheus registry of the variants with `metrics(..)` (empty for the others),
    /// so that a test can check the metrics counted what the load did.
    pub registry: Mutex<Registry>,
    /// The Redis backend of the [`Variant::redis`] variants, set as their server starts.
    pub shared: OnceLock<Shared>,
}

impl Handled {
    /// The Redis round trips made since the server's start-up ([`warm_up`]): one per call
    /// the shared rate admitted; a call refused from the local deny cache makes none. 0
    /// for the variants without Redis.
    pub fn round_trips(&self) -> u64 {
        self.shared
            .get()
            .map_or(0, |s| s.rates.round_trips() - s.warm_up_round_trips)
    }

    /// Decisions the Redis backend took without Redis (an error or a timeout, then its
    /// failure policy): must stay 0, or a run would measure a failure path.
    pub fn backend_errors(&self) -> u64 {
        self.shared.get().map_or(0, |s| s.rates.errors())
    }
}

/// The Redis backend of a [`Variant::redis`] server.
#[derive(Debug)]
pub struct Shared {
    /// The backend the variant's `shared = self.rates` names.
    pub rates: Arc<RedisGcra>,
    /// Its round trips during [`warm_up`], before the first call.
    pub warm_up_round_trips: u64,
}

/// The shared handlers: an echo, written once.
mod echo {
    use super::*;

    pub(crate) fn unary(
        h: &Handled,
        request: Request<Payload>,
    ) -> Result<Response<Payload>, Status> {
        h.calls.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(request.into_inner()))
    }

    pub(crate) fn server_stream(
        h: &Handled,
        request: Request<StreamRequest>,
    ) -> Result<Response<Payloads>, Status> {
        h.calls.fetch_add(1, Ordering::Relaxed);
        let StreamRequest { count, size } = request.into_inner();
        Ok(Response::new(Payloads {
            next: 0,
            end: u64::from(count),
            size: size as usize,
        }))
    }

    pub(crate) async fn client_stream<S>(
        h: &Handled,
        requests: S,
    ) -> Result<Response<Summary>, Status>
    where
        S: Stream<Item = Result<Payload, Status>>,
    {
        h.calls.fetch_add(1, Ordering::Relaxed);
        let mut requests = std::pin::pin!(requests);
        let mut count = 0;
        while let Some(payload) = requests.next().await {
            payload?;
            count += 1;
        }
        h.messages_in.fetch_add(count, Ordering::Relaxed);
        Ok(Response::new(Summary { count }))
    }

    pub(crate) fn bidi<S>(h: &Arc<Handled>, requests: S) -> Result<Response<Echoes>, Status>
    where
        S: Stream<Item = Result<Payload, Status>> + Send + 'static,
    {
        h.calls.fetch_add(1, Ordering::Relaxed);
        let h = h.clone();
        Ok(Response::new(Box::pin(requests.map(move |r| {
            h.messages_in.fetch_add(1, Ordering::Relaxed);
            r
        }))))
    }
}

/// `count` payloads of `size` bytes, always ready: no channel, no task, so that only the
/// wrapping differs between variants.
#[derive(Debug)]
pub struct Payloads {
    next: u64,
    end: u64,
    size: usize,
}

impl Stream for Payloads {
    type Item = Result<Payload, Status>;
    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.next == self.end {
            return Poll::Ready(None);
        }
        self.next += 1;
        Poll::Ready(Some(Ok(Payload {
            seq: self.next,
            data: vec![7; self.size],
        })))
    }
}

/// The bidi echo stream.
pub type Echoes = Pin<Box<dyn Stream<Item = Result<Payload, Status>> + Send>>;

/// The handlers with nothing around them.
#[derive(Debug, Clone, Default)]
pub struct Plain {
    pub handled: Arc<Handled>,
}

#[tonic::async_trait]
impl Bench for Plain {
    async fn unary(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        echo::unary(&self.handled, request)
    }
    type ServerStreamStream = Payloads;
    async fn server_stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<Payloads>, Status> {
        echo::server_stream(&self.handled, request)
    }
    async fn client_stream(
        &self,
        request: Request<Streaming<Payload>>,
    ) -> Result<Response<Summary>, Status> {
        echo::client_stream(&self.handled, request.into_inner()).await
    }
    type BidiStream = Echoes;
    async fn bidi(&self, request: Request<Streaming<Payload>>) -> Result<Response<Echoes>, Status> {
        echo::bidi(&self.handled, request.into_inner())
    }
}

/// Whether `authorization` is `Bearer <TOKEN>`, the check every variant makes.
pub fn token_ok(headers: &http::HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        == Some(TOKEN.as_bytes())
}

/// The same check as an `Authenticate` verifier; the identity is zero-sized, as the
/// other variants pass none on.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenCheck;

impl Authenticate for TokenCheck {
    type Identity = ();
    async fn authenticate(&self, _: &Call, metadata: &MetadataMap) -> Result<(), Status> {
        if token_ok(metadata.as_ref()) {
            Ok(())
        } else {
            Err(Status::unauthenticated("invalid token"))
        }
    }
}

/// `#[intercept(public(*))]`.
#[derive(Debug, Clone, Default)]
pub struct InterceptNone {
    pub handled: Arc<Handled>,
}

#[intercept(public(*))]
#[tonic::async_trait]
impl pb::bench_server::Bench for InterceptNone {
    async fn unary(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        echo::unary(&self.handled, request)
    }
    type ServerStreamStream = Payloads;
    async fn server_stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<Payloads>, Status> {
        echo::server_stream(&self.handled, request)
    }
    async fn client_stream(
        &self,
        request: Request<Streaming<Payload>>,
    ) -> Result<Response<Summary>, Status> {
        echo::client_stream(&self.handled, request.into_inner()).await
    }
    type BidiStream = Echoes;
    async fn bidi(&self, request: Request<Streaming<Payload>>) -> Result<Response<Echoes>, Status> {
        echo::bidi(&self.handled, request.into_inner())
    }
}

/// `#[intercept(auth(..))]`.
#[derive(Debug, Clone, Default)]
pub struct InterceptAuth {
    pub handled: Arc<Handled>,
    pub tokens: TokenCheck,
}

#[intercept(auth(self.tokens))]
#[tonic::async_trait]
impl pb::bench_server::Bench for InterceptAuth {
    async fn unary(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        echo::unary(&self.handled, request)
    }
    type ServerStreamStream = Payloads;
    async fn server_stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<Payloads>, Status> {
        echo::server_stream(&self.handled, request)
    }
    async fn client_stream(
        &self,
        request: Request<Streaming<Payload>>,
    ) -> Result<Response<Summary>, Status> {
        echo::client_stream(&self.handled, request.into_inner()).await
    }
    type BidiStream = Echoes;
    async fn bidi(&self, request: Request<Streaming<Payload>>) -> Result<Response<Echoes>, Status> {
        echo::bidi(&self.handled, request.into_inner())
    }
}

/// A typed hook on every RPC that counts each message it sees.
#[derive(Debug, Clone, Default)]
pub struct MessageCounter {
    pub requests: Arc<AtomicU64>,
    pub responses: Arc<AtomicU64>,
}

impl<R: Rpc> Hook<R> for MessageCounter {
    fn on_request(&self, _: &Call, _: &R::Request) -> Result<(), Status> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn on_response(&self, _: &Call, _: &R::Response) -> Result<(), Status> {
        self.responses.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Stream limits high enough never to cut a benchmark stream, but checked on every message.
pub const STREAM_MAX: u64 = 100_000_000;
/// A rate that never delays a benchmark stream, but runs the token bucket per message.
pub const STREAM_RATE: u32 = 4_000_000_000;

/// `#[intercept]` with auth, limits and typed hooks.
#[derive(Debug, Clone, Default)]
pub struct InterceptFull {
    pub handled: Arc<Handled>,
    pub tokens: TokenCheck,
    pub counter: MessageCounter,
}

#[intercept(
    auth(self.tokens),
    limit(timeout_ms = 60_000, max_message_bytes = MAX_MESSAGE_BYTES),
    limit(ServerStream, max_messages_out = STREAM_MAX, messages_per_second_out = STREAM_RATE, burst = 1_000),
    limit(ClientStream, max_messages_in = STREAM_MAX, messages_per_second_in = STREAM_RATE, burst = 1_000),
    limit(Bidi, max_messages_in = STREAM_MAX, max_messages_out = STREAM_MAX),
    hook(self.counter: MessageCounter),
)]
#[tonic::async_trait]
impl pb::bench_server::Bench for InterceptFull {
    async fn unary(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        echo::unary(&self.handled, request)
    }
    type ServerStreamStream = Payloads;
    async fn server_stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<Payloads>, Status> {
        echo::server_stream(&self.handled, request)
    }
    async fn client_stream(
        &self,
        request: Request<Streaming<Payload>>,
    ) -> Result<Response<Summary>, Status> {
        echo::client_stream(&self.handled, request.into_inner()).await
    }
    type BidiStream = Echoes;
    async fn bidi(&self, request: Request<Streaming<Payload>>) -> Result<Response<Echoes>, Status> {
        echo::bidi(&self.handled, request.into_inner())
    }
}

/// `#[intercept]` with typed hooks and stream count limits only.
#[derive(Debug, Clone, Default)]
pub struct InterceptHooks {
    pub handled: Arc<Handled>,
    pub counter: MessageCounter,
}

#[intercept(
    public(*),
    limit(ServerStream, max_messages_out = STREAM_MAX),
    limit(ClientStream, max_messages_in = STREAM_MAX),
    limit(Bidi, max_messages_in = STREAM_MAX, max_messages_out = STREAM_MAX),
    hook(self.counter: MessageCounter),
)]
#[tonic::async_trait]
impl pb::bench_server::Bench for InterceptHooks {
    async fn unary(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        echo::unary(&self.handled, request)
    }
    type ServerStreamStream = Payloads;
    async fn server_stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<Payloads>, Status> {
        echo::server_stream(&self.handled, request)
    }
    async fn client_stream(
        &self,
        request: Request<Streaming<Payload>>,
    ) -> Result<Response<Summary>, Status> {
        echo::client_stream(&self.handled, request.into_inner()).await
    }
    type BidiStream = Echoes;
    async fn bidi(&self, request: Request<Streaming<Payload>>) -> Result<Response<Echoes>, Status> {
        echo::bidi(&self.handled, request.into_inner())
    }
}

/// The trivial rule `validate` checks on every request message of the suite: payloads
/// carry data.
impl Validate for Payload {
    fn validate(&self, violations: &mut Violations) {
        if self.data.is_empty() {
            violations.field("data", "must not be empty");
        }
    }
}

/// A server stream may not ask for payloads over the size limit.
impl Validate for StreamRequest {
    fn validate(&self, violations: &mut Violations) {
        if u64::from(self.size) > MAX_MESSAGE_BYTES {
            violations.field("size", "must be at most MAX_MESSAGE_BYTES");
        }
    }
}

/// The caller [`Variant::InterceptShared`]'s token names: its bucket in Redis.
pub const SHARED_CALLER: &str = "bench-shared";
/// The caller [`Variant::InterceptSharedDenied`]'s token names: another bucket, so that
/// both variants can share one Redis.
pub const REFUSED_CALLER: &str = "bench-refused";
/// [`Variant::InterceptShared`]'s `calls_per_second_per_identity` (its burst too): so high
/// that it never refuses, and the highest whose GCRA emission interval (1 µs, the
/// script's unit) is not zero.
pub const SHARED_RATE: u32 = 1_000_000;

/// [`TokenCheck`] naming the caller: the per-identity rates key their bucket by it
/// (`Display`), so the identity cannot be `()`.
#[derive(Debug, Clone, Copy)]
pub struct NamedTokenCheck(pub &'static str);

impl Authenticate for NamedTokenCheck {
    type Identity = &'static str;
    async fn authenticate(&self, _: &Call, metadata: &MetadataMap) -> Result<&'static str, Status> {
        if token_ok(metadata.as_ref()) {
            Ok(self.0)
        } else {
            Err(Status::unauthenticated("invalid token"))
        }
    }
}

/// The Redis variants' timeouts: patient, so that a loaded machine (or a server under
/// callgrind) never fails open; a run checks that none did ([`Handled::backend_errors`]).
pub fn patient() -> RedisGcraConfig {
    RedisGcraConfig::new()
        .budget(Duration::from_secs(10))
        .response_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
}

/// Connects the variant's backend before the first call, so that no measured call pays
/// the connection. [`Variant::InterceptShared`]: one check of a bucket of its own.
/// [`Variant::InterceptSharedDenied`]: fills [`REFUSED_CALLER`]'s bucket of `Unary` for an
/// hour (a check at 1 call an hour), then checks it again, refused: the denial is cached
/// for that hour, so every unary call of the run is refused from the cache. Returns the
/// round trips it made.
///
/// # Errors
///
/// When Redis does not answer as it must (an error, or a decision other than the one
/// expected).
pub async fn warm_up(variant: Variant, rates: &RedisGcra) -> Result<u64, String> {
    let unexpected = |d: &Decision| format!("{}: warming up, Redis answered {d:?}", variant.name());
    match variant {
        Variant::InterceptShared => {
            let key = RateKey::per_rpc("bench.v1.Bench/WarmUp");
            let limit = RateLimit::new(SHARED_RATE, Duration::from_secs(1));
            let decision = rates.check(&key, limit).await.map_err(|e| e.to_string())?;
            if !matches!(decision, Decision::Allowed { .. }) {
                return Err(unexpected(&decision));
            }
        }
        Variant::InterceptSharedDenied => {
            let path = <pb::bench_intercept::Unary as Rpc>::DESCRIPTOR.path;
            let key = RateKey::per_identity(path, REFUSED_CALLER);
            let hourly = RateLimit::new(1, Duration::from_secs(3600)).burst(1);
            // The first check takes the hour's one token (or is refused already, when an
            // earlier server filled the bucket); the next is refused and cached.
            let mut denied = false;
            for _ in 0..2 {
                match rates.check(&key, hourly).await.map_err(|e| e.to_string())? {
                    Decision::Allowed { .. } => {}
                    Decision::Denied { .. } => {
                        denied = true;
                        break;
                    }
                    other => return Err(unexpected(&other)),
                }
            }
            if !denied {
                return Err(format!("{}: the bucket was not refused", variant.name()));
            }
        }
        _ => return Ok(0),
    }
    if rates.errors() != 0 {
        return Err(format!("{}: Redis failed while warming up", variant.name()));
    }
    Ok(rates.round_trips())
}

/// `#[intercept(auth(..))]` plus a per-caller call rate on `Unary` kept in Redis, so high
/// that it never refuses.
#[derive(Debug, Clone)]
pub struct InterceptShared {
    pub handled: Arc<Handled>,
    pub tokens: NamedTokenCheck,
    pub rates: Arc<RedisGcra>,
}

#[intercept(
    auth(self.tokens),
    limit(Unary, calls_per_second_per_identity = SHARED_RATE, shared = self.rates),
)]
#[tonic::async_trait]
impl pb::bench_server::Bench for InterceptShared {
    async fn unary(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        echo::unary(&self.handled, request)
    }
    type ServerStreamStream = Payloads;
    async fn server_stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<Payloads>, Status> {
        echo::server_stream(&self.handled, request)
    }
    async fn client_stream(
        &self,
        request: Request<Streaming<Payload>>,
    ) -> Result<Response<Summary>, Status> {
        echo::client_stream(&self.handled, request.into_inner()).await
    }
    type BidiStream = Echoes;
    async fn bidi(&self, request: Request<Streaming<Payload>>) -> Result<Response<Echoes>, Status> {
        echo::bidi(&self.handled, request.into_inner())
    }
}

/// The same with a rate that refuses: 1 call a minute per caller, whose bucket
/// [`warm_up`] has filled for an hour, so every unary call is refused from the local
/// deny cache.
#[derive(Debug, Clone)]
pub struct InterceptSharedDenied {
    pub handled: Arc<Handled>,
    pub tokens: NamedTokenCheck,
    pub rates: Arc<RedisGcra>,
}

#[intercept(
    auth(self.tokens),
    limit(Unary, calls_per_minute_per_identity = 1, shared = self.rates),
)]
#[tonic::async_trait]
impl pb::bench_server::Bench for InterceptSharedDenied {
    async fn unary(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        echo::unary(&self.handled, request)
    }
    type ServerStreamStream = Payloads;
    async fn server_stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<Payloads>, Status> {
        echo::server_stream(&self.handled, request)
    }
    async fn client_stream(
        &self,
        request: Request<Streaming<Payload>>,
    ) -> Result<Response<Summary>, Status> {
        echo::client_stream(&self.handled, request.into_inner()).await
    }
    type BidiStream = Echoes;
    async fn bidi(&self, request: Request<Streaming<Payload>>) -> Result<Response<Echoes>, Status> {
        echo::bidi(&self.handled, request.into_inner())
    }
}

/// `max_in_flight` of the suite's unary RPC: far above the benchmark's one caller, but
/// checked (and the slot taken and released) on every call.
pub const SUITE_MAX_IN_FLIGHT: u32 = 1_000;

/// `#[intercept]` with the full chain plus the server policy suite.
#[derive(Debug, Clone)]
pub struct InterceptSuite {
    pub handled: Arc<Handled>,
    pub tokens: TokenCheck,
    pub counter: MessageCounter,
    pub metrics: ServiceMetrics<pb::bench_intercept::Service>,
}

#[intercept(
    recover,
    trace,
    metrics(self.metrics),
    auth(self.tokens),
    validate,
    limit(timeout_ms = 60_000, max_message_bytes = MAX_MESSAGE_BYTES),
    limit(Unary, max_in_flight = SUITE_MAX_IN_FLIGHT),
    limit(ServerStream, max_messages_out = STREAM_MAX, messages_per_second_out = STREAM_RATE, burst = 1_000),
    limit(ClientStream, max_messages_in = STREAM_MAX, messages_per_second_in = STREAM_RATE, burst = 1_000),
    limit(Bidi, max_messages_in = STREAM_MAX, max_messages_out = STREAM_MAX),
    hook(self.counter: MessageCounter),
)]
#[tonic::async_trait]
impl pb::bench_server::Bench for InterceptSuite {
    async fn unary(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        echo::unary(&self.handled, request)
    }
    type ServerStreamStream = Payloads;
    async fn server_stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<Payloads>, Status> {
        echo::server_stream(&self.handled, request)
    }
    async fn client_stream(
        &self,
        request: Request<Streaming<Payload>>,
    ) -> Result<Response<Summary>, Status> {
        echo::client_stream(&self.handled, request.into_inner()).await
    }
    type BidiStream = Echoes;
    async fn bidi(&self, request: Request<Streaming<Payload>>) -> Result<Response<Echoes>, Status> {
        echo::bidi(&self.handled, request.into_inner())
    }
}

/// Serves `variant` on `listener` until `shutdown` resolves; `handled` counts the work.
/// The [`Variant::redis`] variants need [`serve_with_redis`].
pub async fn serve(
    variant: Variant,
    listener: TcpListener,
    handled: Arc<Handled>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    serve_with_redis(variant, listener, handled, None, shutdown).await
}

/// [`serve`], the [`Variant::redis`] variants' call rates in the Redis at `redis`
/// (`redis://127.0.0.1:<port>/`), connected and warmed up ([`warm_up`]) before the first
/// call is accepted.
pub async fn serve_with_redis(
    variant: Variant,
    listener: TcpListener,
    handled: Arc<Handled>,
    redis: Option<String>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use tonic::transport::Server;
    use tonic_intercept::server::Server as Hardened;
    let plain = Plain {
        handled: handled.clone(),
    };
    match variant {
        Variant::BareHardened => {
            let server = Hardened::builder().add_tonic_service(BenchServer::new(plain));
            return Ok(server.serve_with_shutdown(listener, shutdown).await?);
        }
        Variant::InterceptFullHardened => {
            let server = Hardened::builder().add_service(BenchServer::new(InterceptFull {
                handled,
                tokens: TokenCheck,
                counter: MessageCounter::default(),
            }));
            return Ok(server.serve_with_shutdown(listener, shutdown).await?);
        }
        _ => {}
    }
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let served = match variant {
        Variant::Bare => {
            Server::builder()
                .add_service(BenchServer::new(plain))
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        Variant::Interceptor => {
            let check = |request: Request<()>| {
                if token_ok(request.metadata().as_ref()) {
                    Ok(request)
                } else {
                    Err(Status::unauthenticated("invalid token"))
                }
            };
            Server::builder()
                .add_service(BenchServer::with_interceptor(plain, check))
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        Variant::Tower => {
            Server::builder()
                .layer(tower_layers::TokenLayer)
                .add_service(BenchServer::new(plain))
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        Variant::TowerFull => {
            Server::builder()
                .layer(tower_layers::FullLayer::new(
                    Duration::from_secs(60),
                    MAX_MESSAGE_BYTES as usize,
                    STREAM_MAX,
                ))
                .add_service(BenchServer::new(plain))
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        Variant::InterceptNone => {
            Server::builder()
                .add_service(BenchServer::new(InterceptNone { handled }))
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        Variant::InterceptAuth => {
            Server::builder()
                .add_service(BenchServer::new(InterceptAuth {
                    handled,
                    tokens: TokenCheck,
                }))
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        Variant::InterceptFull => {
            Server::builder()
                .add_service(BenchServer::new(InterceptFull {
                    handled,
                    tokens: TokenCheck,
                    counter: MessageCounter::default(),
                }))
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        Variant::InterceptFullEdge => {
            Server::builder()
                .add_service(tonic_intercept::server::Edge::new(BenchServer::new(
                    InterceptFull {
                        handled,
                        tokens: TokenCheck,
                        counter: MessageCounter::default(),
                    },
                )))
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        Variant::InterceptHooks => {
            Server::builder()
                .add_service(BenchServer::new(InterceptHooks {
                    handled,
                    counter: MessageCounter::default(),
                }))
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        Variant::InterceptSuite => {
            let metrics = {
                let mut registry = handled.registry.lock().expect("registry lock");
                ServerMetrics::register(&mut registry).service::<pb::bench_intercept::Service>()
            };
            Server::builder()
                .add_service(BenchServer::new(InterceptSuite {
                    handled,
                    tokens: TokenCheck,
                    counter: MessageCounter::default(),
                    metrics,
                }))
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        Variant::InterceptShared => {
            let rates = connect_shared(variant, redis, &handled).await?;
            Server::builder()
                .add_service(BenchServer::new(InterceptShared {
                    handled,
                    tokens: NamedTokenCheck(SHARED_CALLER),
                    rates,
                }))
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        Variant::InterceptSharedDenied => {
            let rates = connect_shared(variant, redis, &handled).await?;
            Server::builder()
                .add_service(BenchServer::new(InterceptSharedDenied {
                    handled,
                    tokens: NamedTokenCheck(REFUSED_CALLER),
                    rates,
                }))
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        Variant::BareHardened | Variant::InterceptFullHardened => unreachable!("served above"),
    };
    Ok(served?)
}

/// The backend of a [`Variant::redis`] variant on the Redis at `redis`, warmed up and
/// kept in `handled`.
async fn connect_shared(
    variant: Variant,
    redis: Option<String>,
    handled: &Handled,
) -> Result<Arc<RedisGcra>, Box<dyn std::error::Error + Send + Sync>> {
    let url = redis.ok_or_else(|| format!("{} needs a Redis URL", variant.name()))?;
    let rates = Arc::new(RedisGcra::new(url.as_str(), patient())?);
    let warm_up_round_trips = warm_up(variant, &rates).await?;
    let shared = Shared {
        rates: rates.clone(),
        warm_up_round_trips,
    };
    handled
        .shared
        .set(shared)
        .map_err(|_| "one server per `Handled`")?;
    Ok(rates)
}

/// What the load generator does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// One small message each way.
    Unary,
    /// `messages` responses per call.
    ServerStream,
    /// `messages` requests per call.
    ClientStream,
    /// `messages` request/response round trips per call.
    Bidi,
    /// Unary without a token: refused by the authenticating variants.
    NoToken,
    /// Unary over [`MAX_MESSAGE_BYTES`]: refused by the limiting variants.
    Oversize,
}

impl Workload {
    pub const ALL: [Workload; 6] = [
        Workload::Unary,
        Workload::ServerStream,
        Workload::ClientStream,
        Workload::Bidi,
        Workload::NoToken,
        Workload::Oversize,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Unary => "unary",
            Workload::ServerStream => "server-stream",
            Workload::ClientStream => "client-stream",
            Workload::Bidi => "bidi",
            Workload::NoToken => "no-token",
            Workload::Oversize => "oversize",
        }
    }

    /// The status every call of this workload must end with against `variant`.
    pub fn expected(self, variant: Variant) -> Code {
        match self {
            Workload::NoToken if variant.authenticates() => Code::Unauthenticated,
            Workload::Oversize if variant.limits_size() => Code::ResourceExhausted,
            // Every unary call with the token meets the refusing shared rate.
            Workload::Unary | Workload::Oversize if variant == Variant::InterceptSharedDenied => {
                Code::ResourceExhausted
            }
            _ => Code::Ok,
        }
    }

    /// The Redis round trips each call of this workload makes against `variant`: one per
    /// unary call the shared rate admits; none for a call refused before it (no token) or
    /// from the local deny cache, nor for the RPCs without a shared rate.
    pub fn round_trips(self, variant: Variant) -> u64 {
        match (variant, self) {
            (Variant::InterceptShared, Workload::Unary | Workload::Oversize) => 1,
            _ => 0,
        }
    }
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| format!("unknown workload `{s}`"))
    }
}

/// One load run.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub workload: Workload,
    pub calls: u64,
    /// Messages per call for the streaming workloads.
    pub messages: u32,
    /// Payload bytes per message.
    pub size: usize,
    pub concurrency: usize,
}

/// What came back: every status counted, latencies per call.
#[derive(Debug, Default)]
pub struct Report {
    pub statuses: BTreeMap<String, u64>,
    /// Messages received by the client (streaming workloads).
    pub messages: u64,
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

impl Report {
    /// Calls that ended with `code`.
    pub fn count(&self, code: Code) -> u64 {
        self.statuses
            .get(&format!("{code:?}"))
            .copied()
            .unwrap_or(0)
    }

    /// The latency at quantile `q` (0..=1), over all calls.
    pub fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted.get(i).copied().unwrap_or_default()
    }
}

type Client = pb::bench_client::BenchClient<tonic::transport::Channel>;

/// The client the client-side measurement (`bench client-callgrind`) drives: each makes
/// the same unary calls (a 16-byte [`Payload`], no token) against the `bare` server, and
/// the measured process is the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientVariant {
    /// tonic's generated `BenchClient`.
    Tonic,
    /// tonic's `BenchClient` with [`CLIENT_DEADLINE`] set on each request
    /// (`Request::set_timeout`), as a tonic user sets a deadline.
    TonicDeadline,
    /// Our generated `bench_intercept::Client::new(channel)`: no policy (request ids on,
    /// the default).
    InterceptNew,
    /// `Client::new` but `ClientConfig::new().request_ids(false)`: what the request id costs.
    InterceptNoIds,
    /// `Client::with_config`: a retry policy on `Unary` (retried on `UNAVAILABLE`, which
    /// never happens here), [`CLIENT_DEADLINE`], and `ClientMetrics`.
    InterceptConfig,
}

/// The deadline of the client variants that set one: far above any call's duration.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(30);

/// The typical client policy on the unary RPC: gRPC's default retry policy (3 attempts,
/// `UNAVAILABLE` only). The bench proto does not declare `Unary` idempotent, and the
/// server variants are measured on the same proto, so the risk is accepted explicitly.
const UNARY_RETRIED: tonic_intercept::ClientPolicy<pb::bench_intercept::Unary> =
    tonic_intercept::ClientPolicy::retry_non_idempotent(tonic_intercept::client::RetryPolicy::new());

impl ClientVariant {
    pub const ALL: [ClientVariant; 5] = [
        ClientVariant::Tonic,
        ClientVariant::TonicDeadline,
        ClientVariant::InterceptNew,
        ClientVariant::InterceptNoIds,
        ClientVariant::InterceptConfig,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ClientVariant::Tonic => "tonic",
            ClientVariant::TonicDeadline => "tonic-deadline",
            ClientVariant::InterceptNew => "intercept-new",
            ClientVariant::InterceptNoIds => "intercept-no-ids",
            ClientVariant::InterceptConfig => "intercept-config",
        }
    }
}

impl FromStr for ClientVariant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ClientVariant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = ClientVariant::ALL.iter().map(|v| v.name()).collect();
                format!("unknown client `{s}`; one of: {}", names.join(", "))
            })
    }
}

/// One client of a [`ClientVariant`], on one channel.
#[derive(Debug)]
pub enum Caller {
    Tonic {
        client: Client,
        deadline: Option<Duration>,
    },
    Intercept(pb::bench_intercept::Client<tonic::transport::Channel>),
}

impl Caller {
    /// The client of `variant`; `registry` receives the `grpc_client_*` metrics of the
    /// variant that has them.
    pub fn new(
        variant: ClientVariant,
        channel: tonic::transport::Channel,
        registry: &mut Registry,
    ) -> Self {
        use tonic_intercept::{ClientConfig, client::ClientMetrics};
        let config = ClientConfig::new();
        match variant {
            ClientVariant::Tonic | ClientVariant::TonicDeadline => Caller::Tonic {
                client: Client::new(channel),
                deadline: (variant == ClientVariant::TonicDeadline).then_some(CLIENT_DEADLINE),
            },
            ClientVariant::InterceptNew => {
                Caller::Intercept(pb::bench_intercept::Client::new(channel))
            }
            ClientVariant::InterceptNoIds => Caller::Intercept(
                pb::bench_intercept::Client::with_config(channel, config.request_ids(false)),
            ),
            ClientVariant::InterceptConfig => {
                let metrics =
                    ClientMetrics::register(registry).service::<pb::bench_intercept::Service>();
                let config = config
                    .policy(UNARY_RETRIED)
                    .deadline(CLIENT_DEADLINE)
                    .metrics(metrics);
                Caller::Intercept(pb::bench_intercept::Client::with_config(channel, config))
            }
        }
    }

    /// One unary call of a `size`-byte payload; checks the echo.
    pub async fn unary(&mut self, seq: u64, size: usize) -> Code {
        let request = Request::new(payload(seq, size));
        let response = match self {
            Caller::Tonic { client, deadline } => {
                let mut request = request;
                if let Some(deadline) = deadline {
                    request.set_timeout(*deadline);
                }
                client.unary(request).await
            }
            Caller::Intercept(client) => client.unary(request).await,
        };
        match response {
            Ok(r) if r.get_ref().seq == seq && r.get_ref().data.len() == size => Code::Ok,
            Ok(_) => Code::DataLoss,
            Err(status) => status.code(),
        }
    }
}

/// `calls` unary calls one after another from a client of `variant`, counting every
/// outcome (no latencies: this is what the client-side measurement runs).
pub async fn run_client_load(
    addr: SocketAddr,
    variant: ClientVariant,
    calls: u64,
    registry: &mut Registry,
) -> Report {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid address")
        .connect()
        .await
        .expect("the server is listening");
    let mut caller = Caller::new(variant, channel, registry);
    let started = Instant::now();
    let mut report = Report::default();
    for seq in 0..calls {
        let code = caller.unary(seq + 1, 16).await;
        *report.statuses.entry(format!("{code:?}")).or_default() += 1;
    }
    report.elapsed = started.elapsed();
    report
}

/// Drives `load` against the server at `addr` and counts every outcome.
pub async fn run_load(addr: SocketAddr, load: Load) -> Report {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid address")
        .connect()
        .await
        .expect("the server is listening");
    let started = Instant::now();
    let workers = load.concurrency.max(1) as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let calls = load.calls / workers + u64::from(worker < load.calls % workers);
        let mut client = Client::new(channel.clone()).max_decoding_message_size(usize::MAX);
        tasks.spawn(async move {
            let mut report = Report::default();
            for _ in 0..calls {
                let t = Instant::now();
                let (status, messages) = one_call(&mut client, load).await;
                report.latencies.push(t.elapsed());
                report.messages += messages;
                *report.statuses.entry(format!("{status:?}")).or_default() += 1;
            }
            report
        });
    }
    let mut total = Report::default();
    while let Some(report) = tasks.join_next().await {
        let report = report.expect("load worker");
        for (k, v) in report.statuses {
            *total.statuses.entry(k).or_default() += v;
        }
        total.messages += report.messages;
        total.latencies.extend(report.latencies);
    }
    total.elapsed = started.elapsed();
    total
}

fn request<T>(message: T, token: bool) -> Request<T> {
    let mut request = Request::new(message);
    if token {
        let value = format!("Bearer {TOKEN}").parse().expect("ascii");
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn payload(seq: u64, size: usize) -> Payload {
    Payload {
        seq,
        data: vec![7; size],
    }
}

/// One call; its final code and the messages it received.
async fn one_call(client: &mut Client, load: Load) -> (Code, u64) {
    let n = u64::from(load.messages);
    let code = |r: Result<(), Status>| r.map_or_else(|s| s.code(), |()| Code::Ok);
    match load.workload {
        Workload::Unary => (
            code(
                client
                    .unary(request(payload(1, load.size), true))
                    .await
                    .map(drop),
            ),
            0,
        ),
        Workload::NoToken => (
            code(
                client
                    .unary(request(payload(1, load.size), false))
                    .await
                    .map(drop),
            ),
            0,
        ),
        Workload::Oversize => {
            let big = payload(1, MAX_MESSAGE_BYTES as usize + 1);
            (code(client.unary(request(big, true)).await.map(drop)), 0)
        }
        Workload::ServerStream => {
            let ask = StreamRequest {
                count: load.messages,
                size: load.size as u32,
            };
            match client.server_stream(request(ask, true)).await {
                Err(s) => (s.code(), 0),
                Ok(response) => drain(response.into_inner()).await,
            }
        }
        Workload::ClientStream => {
            let size = load.size;
            let requests = tokio_stream::iter((0..n).map(move |i| payload(i, size)));
            match client.client_stream(request(requests, true)).await {
                Err(s) => (s.code(), 0),
                Ok(summary) if summary.get_ref().count == n => (Code::Ok, 0),
                Ok(_) => (Code::DataLoss, 0),
            }
        }
        Workload::Bidi => {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let outbound = tokio_stream::wrappers::ReceiverStream::new(rx);
            let mut replies = match client.bidi(request(outbound, true)).await {
                Err(s) => return (s.code(), 0),
                Ok(response) => response.into_inner(),
            };
            let mut received = 0;
            for i in 0..n {
                if tx.send(payload(i, load.size)).await.is_err() {
                    break;
                }
                match replies.message().await {
                    Ok(Some(_)) => received += 1,
                    Ok(None) => return (Code::DataLoss, received),
                    Err(s) => return (s.code(), received),
                }
            }
            drop(tx);
            match replies.message().await {
                Ok(None) => (Code::Ok, received),
                Ok(Some(_)) => (Code::DataLoss, received),
                Err(s) => (s.code(), received),
            }
        }
    }
}

async fn drain(mut stream: Streaming<Payload>) -> (Code, u64) {
    let mut received = 0;
    loop {
        match stream.message().await {
            Ok(Some(_)) => received += 1,
            Ok(None) => return (Code::Ok, received),
            Err(s) => return (s.code(), received),
        }
    }
}
