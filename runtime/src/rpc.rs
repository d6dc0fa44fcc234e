//! What the generator knows about each RPC, as types and constants.

use std::fmt;

pub(crate) mod limits;

use limits::Limits;

/// One RPC of a service, as a type.
///
/// `tonic-intercept-build` emits one unit struct per RPC (for `rpc ListUsers` in
/// `users.v1.UserService`: `user_service_intercept::ListUsers`) and implements this trait
/// for it. Policies and hooks are generic over it, so a hook for `ListUsers` receives
/// `&ListUsersRequest` and each `&User` it streams, by type.
///
/// ```
/// use tonic_intercept::{Rpc, RpcKind};
/// # mod pb { tonic_intercept::__doc_rpc!(ListUsers, "users.v1.UserService", "ListUsers", ServerStreaming, (), ()); }
/// fn describe<R: Rpc>() -> String {
///     format!("{} ({})", R::DESCRIPTOR.path, R::DESCRIPTOR.kind)
/// }
/// assert_eq!(describe::<pb::ListUsers>(), "/users.v1.UserService/ListUsers (server-streaming)");
/// ```
pub trait Rpc: Copy + Send + Sync + 'static {
    /// The service this RPC belongs to.
    type Service: Service;
    /// The request message (each inbound message when requests stream).
    type Request: prost::Message + Send + 'static;
    /// The response message (each outbound message when responses stream).
    type Response: prost::Message + Send + 'static;
    /// Names, kind and options, read from the `.proto`.
    const DESCRIPTOR: RpcDescriptor;
    /// This RPC's position in [`Service::RPCS`] (`.proto` order).
    const INDEX: usize;

    /// A new span for one call of this RPC, named after it (`users.v1.UserService/GetUser`).
    ///
    /// A span's name is fixed where the span is declared, so the generator declares one
    /// per RPC; see [`TraceCalls`](crate::TraceCalls) for its fields.
    #[doc(hidden)]
    fn span(call: &crate::call::Call) -> tracing::Span {
        let _ = call;
        tracing::Span::none()
    }
}

/// A gRPC service, as a type: `tonic-intercept-build` emits `Service` in each
/// `<service>_intercept` module.
///
/// Per-service runtime state (metrics series, say) is keyed by it, so handing the metrics
/// of one service to another does not compile.
pub trait Service: Copy + Send + Sync + 'static {
    /// Fully qualified service name, e.g. `users.v1.UserService`.
    const NAME: &'static str;
    /// Every RPC of the service, in `.proto` order; `Rpc::INDEX` indexes it.
    const RPCS: &'static [&'static RpcDescriptor];
}

/// Implemented by the generated code for each RPC of service `S`: what
/// [`ClientConfig::policy`](crate::ClientConfig::policy) and the generated client's methods accept.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an RPC of the service `{S}`",
    label = "this RPC belongs to another service",
    note = "a client's config takes the policies of its own service's RPCs: use the types of \
            the same `<service>_intercept` module as the client"
)]
pub trait RpcOf<S: Service>: Rpc<Service = S> {}

/// Policy declared in the `.proto` with `option (tonic_intercept.v1.rpc) = { ... }` (and the
/// service-level `option (tonic_intercept.v1.service)` default), as the generator read it.
///
/// `#[intercept]` applies it; where the attribute sets the same value, they must agree.
/// Its limits are a [`Limits`], the same value `#[intercept(limit(..))]` builds, so a limit
/// key exists once in the runtime. Built with `const` setters by generated code:
///
/// ```
/// use std::time::Duration;
/// use tonic_intercept::{Limits, RpcPolicy};
/// const POLICY: RpcPolicy = RpcPolicy::new()
///     .roles(&["admin"])
///     .with_limits(Limits::new().max_messages_out(10_000).timeout(Duration::from_millis(2_000)));
/// assert_eq!(POLICY.limits().get_max_messages_out(), Some(10_000));
/// assert!(POLICY.declares_limits());
/// assert!(!POLICY.public);
/// ```
///
/// A message rate in the `.proto` is only a per-second value: the generator builds it with
/// a burst of 1 and `Delay`, and [`Limits::with_policy`] takes only its `per_second`,
/// keeping the attribute's burst and pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RpcPolicy {
    /// `public: true`: callable without authentication.
    pub public: bool,
    /// `roles: ["admin"]`: the caller needs at least one of these roles.
    pub roles: &'static [&'static str],
    /// `max_messages_in`, `timeout_ms`, ...: every other key.
    limits: Limits,
}

impl RpcPolicy {
    /// Nothing declared.
    pub const fn new() -> Self {
        Self {
            public: false,
            roles: &[],
            limits: Limits::new(),
        }
    }
    /// Whether any limit is declared (anything but `public` and `roles`).
    pub const fn declares_limits(&self) -> bool {
        self.limits.sets_any()
    }
    /// The limits declared (`max_messages_in`, `timeout_ms`, ...).
    pub const fn limits(&self) -> &Limits {
        &self.limits
    }
    /// `public: true`.
    pub const fn public(mut self) -> Self {
        self.public = true;
        self
    }
    /// `roles: [...]`.
    pub const fn roles(mut self, roles: &'static [&'static str]) -> Self {
        self.roles = roles;
        self
    }
    /// The limit keys (`max_messages_in: 3` is `Limits::new().max_messages_in(3)`).
    pub const fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// The static description of an RPC, taken from the `.proto` at build time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RpcDescriptor {
    /// Fully qualified service name, e.g. `users.v1.UserService`.
    pub service: &'static str,
    /// Method name as written in the `.proto`, e.g. `ListUsers`.
    pub method: &'static str,
    /// The HTTP/2 path tonic routes on, e.g. `/users.v1.UserService/ListUsers`.
    pub path: &'static str,
    /// Which sides stream.
    pub kind: RpcKind,
    /// `option idempotency_level = ...;` from the `.proto`.
    pub idempotency: IdempotencyLevel,
    /// `option deprecated = true;` from the `.proto`.
    pub deprecated: bool,
    /// `option (tonic_intercept.v1.rpc) = { ... }` from the `.proto`, merged over the
    /// service's default.
    pub policy: RpcPolicy,
}

impl RpcDescriptor {
    /// Builds a descriptor; used by generated code.
    pub const fn new(
        service: &'static str,
        method: &'static str,
        path: &'static str,
        kind: RpcKind,
        idempotency: IdempotencyLevel,
        deprecated: bool,
    ) -> Self {
        Self {
            service,
            method,
            path,
            kind,
            idempotency,
            deprecated,
            policy: RpcPolicy::new(),
        }
    }

    /// Sets the policy declared in the `.proto`; used by generated code.
    pub const fn with_policy(mut self, policy: RpcPolicy) -> Self {
        self.policy = policy;
        self
    }
}

/// Which sides of an RPC stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RpcKind {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses.
    ServerStreaming,
    /// A stream of requests, one response.
    ClientStreaming,
    /// Streams both ways.
    Bidi,
}

impl RpcKind {
    /// Whether requests arrive as a stream.
    pub const fn client_streams(self) -> bool {
        matches!(self, RpcKind::ClientStreaming | RpcKind::Bidi)
    }

    /// Whether responses leave as a stream.
    pub const fn server_streams(self) -> bool {
        matches!(self, RpcKind::ServerStreaming | RpcKind::Bidi)
    }

    /// The `grpc_type` label used by Prometheus gRPC dashboards.
    pub const fn as_str(self) -> &'static str {
        match self {
            RpcKind::Unary => "unary",
            RpcKind::ServerStreaming => "server_stream",
            RpcKind::ClientStreaming => "client_stream",
            RpcKind::Bidi => "bidi_stream",
        }
    }
}

impl fmt::Display for RpcKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RpcKind::Unary => "unary",
            RpcKind::ServerStreaming => "server-streaming",
            RpcKind::ClientStreaming => "client-streaming",
            RpcKind::Bidi => "bidi-streaming",
        })
    }
}

/// `google.protobuf.MethodOptions.idempotency_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IdempotencyLevel {
    /// Not declared: the RPC may have side effects, so it is not safe to retry.
    #[default]
    Unknown,
    /// `NO_SIDE_EFFECTS`: a read; safe to retry and to cache.
    NoSideEffects,
    /// `IDEMPOTENT`: repeating it has the effect of doing it once.
    Idempotent,
}

impl IdempotencyLevel {
    /// Whether a failed attempt may be retried without changing the outcome.
    pub const fn is_retry_safe(self) -> bool {
        !matches!(self, IdempotencyLevel::Unknown)
    }
}

/// Defines a stand-in RPC for doc examples, so they compile without a build script.
#[doc(hidden)]
#[macro_export]
macro_rules! __doc_rpc {
    // Retry-safe levels get `IdempotentRpc`, as the generator does.
    (@retry_safe $name:ident, Unknown) => {};
    (@retry_safe $name:ident, $idempotency:ident) => {
        impl $crate::__private::IdempotentRpc for $name {}
    };
    ($name:ident, $svc:literal, $method:literal, $kind:ident, $req:ty, $resp:ty) => {
        $crate::__doc_rpc!($name, $svc, $method, $kind, $req, $resp, Unknown);
    };
    // The optional last argument names an `IdempotencyLevel` variant (default `Unknown`).
    ($name:ident, $svc:literal, $method:literal, $kind:ident, $req:ty, $resp:ty, $idempotency:ident) => {
        #[derive(Debug, Clone, Copy)]
        pub struct $name;
        impl $crate::__private::Rpc for $name {
            type Service = $crate::__private::DocService;
            type Request = $req;
            type Response = $resp;
            const INDEX: usize = 0;
            const DESCRIPTOR: $crate::__private::RpcDescriptor =
                $crate::__private::RpcDescriptor::new(
                    $svc,
                    $method,
                    concat!("/", $svc, "/", $method),
                    $crate::__private::RpcKind::$kind,
                    $crate::__private::IdempotencyLevel::$idempotency,
                    false,
                );
        }
        impl $crate::__private::RpcOf<$crate::__private::DocService> for $name {}
        $crate::__doc_rpc!(@retry_safe $name, $idempotency);
    };
}
