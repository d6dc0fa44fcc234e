//! The per-call context handed to auth and hooks.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;
use tonic::Code;
use tonic::codegen::http::{HeaderMap, HeaderValue};
use tonic::metadata::MetadataMap;

use crate::rpc::RpcDescriptor;
use crate::wire::{REQUEST_ID_HEADER, TRACEPARENT_HEADER, grpc_timeout};

/// What is known about one call when it starts: which RPC, who is calling, until when.
///
/// `Call` is `Copy` (a reference and a few words), so stream wrappers and hooks hold it
/// without allocating.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    rpc: &'static RpcDescriptor,
    peer: Option<SocketAddr>,
    started: Instant,
    deadline: Option<Instant>,
    counted_by_edge: bool,
}

/// What the [`Edge`](crate::server::Edge) found at a call's request headers, handed to
/// the handler's [`Call`]: one clock per call.
///
/// The edge makes it current (a thread-local, [`EdgeStart::scope`]) while it polls the
/// service's future, which creates the handler's guard in one of those polls; this costs
/// a few instructions where an entry in the request's extensions costs an allocation and
/// a hash map insertion per call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EdgeStart {
    /// The call's RPC: a call of another RPC (a handler polled inline by this one) does
    /// not take this start.
    pub(crate) rpc: &'static RpcDescriptor,
    /// When the request headers arrived.
    pub(crate) started: Instant,
    /// The client's `grpc-timeout`, as a deadline already advanced by [`CLIENT_MARGIN`].
    pub(crate) client_deadline: Option<Instant>,
    /// Whether the edge counts the call's start and end in the metrics.
    pub(crate) counted: bool,
}

thread_local! {
    static EDGE_START: std::cell::Cell<Option<EdgeStart>> = const { std::cell::Cell::new(None) };
}

impl EdgeStart {
    /// Runs `poll` with this start current, restoring the previous one after (also when
    /// `poll` unwinds).
    pub(crate) fn scope<T>(self, poll: impl FnOnce() -> T) -> T {
        struct Restore(Option<EdgeStart>);
        impl Drop for Restore {
            fn drop(&mut self) {
                EDGE_START.set(self.0);
            }
        }
        let _restore = Restore(EDGE_START.replace(Some(self)));
        poll()
    }

    /// The start of a call of `rpc`, if an edge is polling it.
    fn current(rpc: &RpcDescriptor) -> Option<EdgeStart> {
        EDGE_START.get().filter(|edge| edge.rpc.path == rpc.path)
    }
}

/// How much earlier than the client's `grpc-timeout` the server's deadline is: tonic runs
/// its own timer for `grpc-timeout`, started a little earlier, and answers `CANCELLED`
/// when it fires first; one timer tick (1 ms) early, ours answers `DEADLINE_EXCEEDED`, as
/// the client expects.
pub(crate) const CLIENT_MARGIN: Duration = Duration::from_millis(1);

/// The client's deadline for a `grpc-timeout` of `timeout` read at `started`.
pub(crate) fn client_deadline(started: Instant, timeout: Duration) -> Instant {
    started + timeout.saturating_sub(CLIENT_MARGIN)
}

/// The earlier of the client's deadline and the RPC's own `timeout`.
pub(crate) fn earliest(
    started: Instant,
    client: Option<Instant>,
    timeout: Option<Duration>,
) -> Option<Instant> {
    let own = timeout.map(|t| started + t);
    match (client, own) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Call {
    /// Starts a call of `rpc`: reads the peer address and the client's `grpc-timeout`,
    /// and caps the deadline at `timeout` (the RPC's own limit), whichever is earlier.
    ///
    /// Behind an [`Edge`](crate::server::Edge), the call started at its request headers:
    /// its start and the client's deadline are the ones the edge read there.
    pub fn start<T>(
        rpc: &'static RpcDescriptor,
        request: &tonic::Request<T>,
        timeout: Option<Duration>,
    ) -> Self {
        // Behind the edge, its clock: the call started at its request headers.
        let (started, client, counted_by_edge) = match EdgeStart::current(rpc) {
            Some(edge) => (edge.started, edge.client_deadline, edge.counted),
            None => {
                let started = Instant::now();
                let client = grpc_timeout(request.metadata()).map(|d| client_deadline(started, d));
                (started, client, false)
            }
        };
        Self {
            rpc,
            peer: request.remote_addr(),
            started,
            deadline: earliest(started, client, timeout),
            counted_by_edge,
        }
    }

    /// Whether an [`Edge`](crate::server::Edge) with metrics counts this call's start and
    /// end (`grpc_server_started_total`, `grpc_server_handled_total`, the histogram, and
    /// the `deadline` rejections), so the metrics hook must not count them again.
    pub(crate) fn counted_by_edge(&self) -> bool {
        self.counted_by_edge
    }

    /// Starts a call that has no deadline of the library's: like [`Call::start`], but
    /// without reading `grpc-timeout`, so [`Call::deadline`] is `None`. `#[intercept]`
    /// uses it for an auth-only RPC, which it leaves as tonic serves it: nothing there
    /// enforces or passes on a deadline (tonic's own `grpc-timeout` timer still runs), so
    /// its verifier is not made to pay for parsing one.
    pub fn unbounded<T>(rpc: &'static RpcDescriptor, request: &tonic::Request<T>) -> Self {
        Self {
            rpc,
            peer: request.remote_addr(),
            started: Instant::now(),
            deadline: None,
            counted_by_edge: false,
        }
    }

    /// The RPC being called.
    pub fn rpc(&self) -> &'static RpcDescriptor {
        self.rpc
    }

    /// The client's address, when the transport knows it.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// When the call started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Time since the call started; in [`Hook::on_finish`](crate::Hook::on_finish), the
    /// call's duration.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The earlier of the client's `grpc-timeout` and the RPC's `timeout_ms`, if any;
    /// always `None` in the verifier of an auth-only RPC ([`Call::unbounded`]).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before the deadline (zero once it has passed); `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The code of a call that its client abandoned now (reset its stream, or went away
    /// and let the call's future drop): `DeadlineExceeded` when the deadline had passed or
    /// was within [`DEADLINE_TOLERANCE`] of passing, `Cancelled` otherwise.
    ///
    /// A client that gives up at its deadline resets the stream a little before the
    /// server's timer fires: grpcio rounds the `grpc-timeout` it sends up (1 s goes out as
    /// `1010m`) and runs its own timer, so its `RST_STREAM` arrives a few milliseconds
    /// early. Both orders are the same event, and the server records it once, the same way.
    pub(crate) fn code_when_abandoned(&self) -> Code {
        match self.deadline {
            Some(deadline) if within_tolerance(self.started, deadline, Instant::now()) => {
                Code::DeadlineExceeded
            }
            _ => Code::Cancelled,
        }
    }
}

/// How close to its deadline a client may abandon a call for the server to record it as
/// `DEADLINE_EXCEEDED` rather than `CANCELLED`: 2 % of the time the call was given, at
/// least 20 ms (see [`Call`]'s deadline; grpcio's early reset is about 1 %).
pub(crate) const DEADLINE_TOLERANCE: (u32, Duration) = (2, Duration::from_millis(20));

/// Whether `now` is past `deadline`, or within [`DEADLINE_TOLERANCE`] of it.
pub(crate) fn within_tolerance(started: Instant, deadline: Instant, now: Instant) -> bool {
    let (percent, floor) = DEADLINE_TOLERANCE;
    let slack = (deadline.saturating_duration_since(started) * percent / 100).max(floor);
    now + slack >= deadline
}

/// The deadline of the call whose handler is running, for the handler to see how much
/// time is left and to pass it on to the calls it makes.
///
/// [`Deadline::current`] finds it while the handler's future runs (no allocation: it is
/// a task-local, set around the handler by `#[intercept]`); read it there, before
/// spawning work that should honour it. The generated clients read it too: a call made
/// from the handler never outlives it. `None` when the call has no deadline (neither a
/// client `grpc-timeout` nor `timeout_ms`), and for an RPC the attribute leaves as tonic
/// serves it (public or authenticated only, with no other policy).
///
/// ```
/// # async fn handler() {
/// use tonic_intercept::Deadline;
/// if let Some(deadline) = Deadline::current() {
///     let left = deadline.remaining();
///     # let _ = left;
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

/// What a handler's outgoing client calls inherit from the incoming call: its deadline,
/// request id and trace parent.
#[derive(Debug, Clone, Default)]
pub(crate) struct Incoming {
    pub(crate) deadline: Option<Instant>,
    pub(crate) request_id: Option<HeaderValue>,
    pub(crate) traceparent: Option<HeaderValue>,
}

impl Incoming {
    pub(crate) fn of(metadata: &MetadataMap, deadline: Option<Instant>) -> Self {
        let headers: &HeaderMap = metadata.as_ref();
        Self {
            deadline,
            request_id: headers.get(&REQUEST_ID_HEADER).cloned(),
            traceparent: headers.get(&TRACEPARENT_HEADER).cloned(),
        }
    }

    /// The incoming call around the running task, if it is an intercepted handler.
    pub(crate) fn current() -> Option<Incoming> {
        INCOMING.try_with(Incoming::clone).ok()
    }

    /// Runs `handler` inside this incoming call.
    pub(crate) fn scope<F: std::future::Future>(
        self,
        handler: F,
    ) -> impl std::future::Future<Output = F::Output> {
        INCOMING.scope(self, handler)
    }
}

tokio::task_local! {
    static INCOMING: Incoming;
}

impl Deadline {
    /// The running handler's deadline, if its call has one.
    pub fn current() -> Option<Deadline> {
        INCOMING
            .try_with(|incoming| incoming.deadline.map(Deadline))
            .ok()
            .flatten()
    }

    /// Time left (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// How a call ended, as seen by [`Hook::on_finish`](crate::Hook::on_finish).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallOutcome {
    /// The status code the client receives (`Cancelled` when the client went away).
    pub code: Code,
    /// Request messages that passed every policy.
    pub messages_in: u64,
    /// Response messages that passed every policy.
    pub messages_out: u64,
    /// Encoded bytes of those request messages; counted only when the RPC has a
    /// `max_message_bytes` limit or metrics (measuring a message walks it), zero
    /// otherwise.
    pub bytes_in: u64,
    /// Encoded bytes of those response messages; counted like `bytes_in`.
    pub bytes_out: u64,
    /// The policy that ended the call, if one did: `Some(PolicyKind::Auth)` for a refused
    /// token, `Some(PolicyKind::Recovery)` for a caught panic; `None` when the handler (or
    /// the client) decided the status.
    pub ended_by: Option<PolicyKind>,
    /// The shared call-rate backend (`redis`, `envoy_rls`) that could not be asked in
    /// time for this call, if one could not: its failure policy decided instead (the call
    /// ran unchecked, a local bucket decided, or it was refused `UNAVAILABLE`). Counted in
    /// `grpc_server_limit_backend_errors_total`.
    pub decided_without: Option<&'static str>,
}

impl CallOutcome {
    /// An outcome; for tests of hooks.
    pub const fn new(code: Code) -> Self {
        Self {
            code,
            messages_in: 0,
            messages_out: 0,
            bytes_in: 0,
            bytes_out: 0,
            ended_by: None,
            decided_without: None,
        }
    }
}

/// The policies that can end a call, as reported in [`CallOutcome::ended_by`] and in the
/// `policy` label of `grpc_server_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PolicyKind {
    /// `auth(..)` refused the credentials: `UNAUTHENTICATED`.
    Auth,
    /// The identity lacks a required role: `PERMISSION_DENIED`.
    Roles,
    /// `max_in_flight` calls were already running: `RESOURCE_EXHAUSTED`.
    Concurrency,
    /// `calls_per_second` (per RPC or per identity) was exceeded: `RESOURCE_EXHAUSTED`.
    CallRate,
    /// A stream or message limit (count, bytes, message rate): `RESOURCE_EXHAUSTED`.
    Limit,
    /// The deadline passed: `DEADLINE_EXCEEDED`.
    Deadline,
    /// No message moved for `idle_timeout_ms`: `DEADLINE_EXCEEDED`.
    IdleTimeout,
    /// A message failed `Validate`: `INVALID_ARGUMENT`.
    Validation,
    /// An idempotency key was reused for another request, or its first call is still
    /// running.
    Idempotency,
    /// A user [`Hook`](crate::Hook) returned an error.
    Hook,
    /// A panic in the handler, a hook or a stream was caught: `INTERNAL`.
    Recovery,
    /// The edge: the path names no method of the service: `UNIMPLEMENTED`.
    UnknownMethod,
    /// The edge: the `grpc-timeout` header is malformed: `INTERNAL`.
    GrpcTimeout,
    /// The edge: a request message could not be decoded before the handler saw it
    /// (malformed protobuf, unsupported or invalid compression): tonic's `INTERNAL` or
    /// `UNIMPLEMENTED`.
    Decode,
}

impl PolicyKind {
    /// Every policy, in the documented order in which they run: the edge's rules at the
    /// request headers and while the request is read, then the handler's (deadline covers
    /// the handler; idempotency replays just before it).
    pub const ALL: &'static [PolicyKind] = &[
        PolicyKind::UnknownMethod,
        PolicyKind::GrpcTimeout,
        PolicyKind::Decode,
        PolicyKind::Recovery,
        PolicyKind::Deadline,
        PolicyKind::Auth,
        PolicyKind::Roles,
        PolicyKind::Concurrency,
        PolicyKind::CallRate,
        PolicyKind::Limit,
        PolicyKind::IdleTimeout,
        PolicyKind::Validation,
        PolicyKind::Hook,
        PolicyKind::Idempotency,
    ];

    /// The label value: `auth`, `roles`, `concurrency`, `call_rate`, `limit`, `deadline`,
    /// `idle_timeout`, `validation`, `idempotency`, `hook`, `recovery`, and the edge's
    /// `unknown_method`, `grpc_timeout`, `decode`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Auth => "auth",
            PolicyKind::Roles => "roles",
            PolicyKind::Concurrency => "concurrency",
            PolicyKind::CallRate => "call_rate",
            PolicyKind::Limit => "limit",
            PolicyKind::Deadline => "deadline",
            PolicyKind::IdleTimeout => "idle_timeout",
            PolicyKind::Validation => "validation",
            PolicyKind::Idempotency => "idempotency",
            PolicyKind::Hook => "hook",
            PolicyKind::Recovery => "recovery",
            PolicyKind::UnknownMethod => "unknown_method",
            PolicyKind::GrpcTimeout => "grpc_timeout",
            PolicyKind::Decode => "decode",
        }
    }
}

impl std::fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: RpcDescriptor = RpcDescriptor::new(
        "t.v1.T",
        "Get",
        "/t.v1.T/Get",
        crate::rpc::RpcKind::Unary,
        crate::rpc::IdempotencyLevel::Unknown,
        false,
    );
    const PUT: RpcDescriptor = RpcDescriptor::new(
        "t.v1.T",
        "Put",
        "/t.v1.T/Put",
        crate::rpc::RpcKind::Unary,
        crate::rpc::IdempotencyLevel::Unknown,
        false,
    );

    #[test]
    fn a_call_takes_the_edges_clock_for_its_own_rpc_only() {
        static GET_RPC: RpcDescriptor = GET;
        static PUT_RPC: RpcDescriptor = PUT;
        let t0 = Instant::now() - Duration::from_secs(5);
        let edge = EdgeStart {
            rpc: &GET_RPC,
            started: t0,
            client_deadline: Some(t0 + Duration::from_millis(99)),
            counted: true,
        };
        let request = tonic::Request::new(());
        let (get, put) = edge.scope(|| {
            let get = Call::start(&GET_RPC, &request, Some(Duration::from_millis(200)));
            let put = Call::start(&PUT_RPC, &request, None);
            (get, put)
        });
        assert_eq!(get.started(), t0);
        assert_eq!(get.deadline(), Some(t0 + Duration::from_millis(99)));
        assert!(get.counted_by_edge());
        // Another RPC polled inside (a handler calling another in-process) has its own.
        assert!(put.started() > t0);
        assert!(!put.counted_by_edge());
        // Outside the scope, nothing is current.
        let after = Call::start(&GET_RPC, &request, None);
        assert!(!after.counted_by_edge());
        assert_eq!(after.deadline(), None);
    }

    #[test]
    fn the_own_timeout_caps_the_edges_client_deadline() {
        static GET_RPC: RpcDescriptor = GET;
        let t0 = Instant::now();
        let edge = EdgeStart {
            rpc: &GET_RPC,
            started: t0,
            client_deadline: Some(t0 + Duration::from_secs(10)),
            counted: false,
        };
        let request = tonic::Request::new(());
        let call = edge.scope(|| Call::start(&GET_RPC, &request, Some(Duration::from_millis(200))));
        assert_eq!(call.deadline(), Some(t0 + Duration::from_millis(200)));
        assert!(!call.counted_by_edge());
    }

    #[test]
    fn tolerance_is_two_percent_with_a_floor_of_twenty_ms() {
        let t0 = Instant::now();
        let one_s = t0 + Duration::from_secs(1);
        // 1 s given: 20 ms of slack (2 % is also 20 ms).
        assert!(!within_tolerance(
            t0,
            one_s,
            t0 + Duration::from_millis(979)
        ));
        assert!(within_tolerance(t0, one_s, t0 + Duration::from_millis(980)));
        assert!(within_tolerance(
            t0,
            one_s,
            t0 + Duration::from_millis(1_500)
        ));
        // 10 s given: 200 ms of slack.
        let ten_s = t0 + Duration::from_secs(10);
        assert!(!within_tolerance(
            t0,
            ten_s,
            t0 + Duration::from_millis(9_799)
        ));
        assert!(within_tolerance(
            t0,
            ten_s,
            t0 + Duration::from_millis(9_800)
        ));
        // 100 ms given: the 20 ms floor.
        let short = t0 + Duration::from_millis(100);
        assert!(!within_tolerance(t0, short, t0 + Duration::from_millis(79)));
        assert!(within_tolerance(t0, short, t0 + Duration::from_millis(80)));
    }
}
