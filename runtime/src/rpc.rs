//! What the generator knows about each RPC, as types and constants.

use std::fmt;

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
    /// The request message (each inbound message when requests stream).
    type Request: prost::Message + Send + 'static;
    /// The response message (each outbound message when responses stream).
    type Response: prost::Message + Send + 'static;
    /// Names, kind and options, read from the `.proto`.
    const DESCRIPTOR: RpcDescriptor;
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
        }
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
    ($name:ident, $svc:literal, $method:literal, $kind:ident, $req:ty, $resp:ty) => {
        #[derive(Debug, Clone, Copy)]
        pub struct $name;
        impl $crate::Rpc for $name {
            type Request = $req;
            type Response = $resp;
            const DESCRIPTOR: $crate::RpcDescriptor = $crate::RpcDescriptor::new(
                $svc,
                $method,
                concat!("/", $svc, "/", $method),
                $crate::RpcKind::$kind,
                $crate::IdempotencyLevel::Unknown,
                false,
            );
        }
    };
}
