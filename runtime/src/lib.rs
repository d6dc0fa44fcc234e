//! Typed, per-RPC, compile-checked interceptors for [tonic] gRPC services.
//!
//! `tonic-intercept-build` (in your `build.rs`) emits, next to prost's messages and
//! tonic's client and server, one type per RPC implementing [`Rpc`]. The
//! [`#[intercept]`](macro@intercept) attribute on your service impl then wraps every RPC
//! in the policies you declare (auth with a public allowlist and [`Roles`], per-RPC
//! limits on stream length, message size, message rate, time, concurrency and call rate,
//! [`Validate`], an [`IdempotencyCache`], Prometheus [`ServerMetrics`], [`TraceCalls`]
//! spans, panic recovery, and typed [`Hook`]s), in one documented order, and the compiler
//! rejects policies that cannot be right: an RPC name that does not exist, a stream
//! limit on a unary RPC, an RPC that no auth rule covers, a value that contradicts the
//! policy declared in the `.proto` ([`RpcPolicy`]).
//!
//! ```
//! # mod pb {
//! #     #[derive(Clone, PartialEq, prost::Message)]
//! #     pub struct CreateUserRequest { #[prost(string, tag = "1")] pub name: String }
//! #     #[derive(Clone, PartialEq, prost::Message)]
//! #     pub struct User { #[prost(string, tag = "1")] pub name: String }
//! #     pub mod user_service_server {
//! #         use tonic::{Request, Response, Status};
//! #         #[tonic::async_trait]
//! #         pub trait UserService: Send + Sync + 'static {
//! #             async fn create_user(&self, r: Request<super::CreateUserRequest>) -> Result<Response<super::User>, Status>;
//! #             async fn get_user(&self, r: Request<super::CreateUserRequest>) -> Result<Response<super::User>, Status>;
//! #         }
//! #     }
//! #     pub mod user_service_intercept {
//! #         use super::*;
//! #         tonic_intercept::__doc_rpc!(CreateUser, "users.v1.UserService", "CreateUser", Unary, CreateUserRequest, User);
//! #         tonic_intercept::__doc_rpc!(GetUser, "users.v1.UserService", "GetUser", Unary, CreateUserRequest, User);
//! #     }
//! # }
//! use tonic::{Request, Response, Status};
//! use tonic_intercept::{Call, Hook, StaticTokens, intercept};
//! use pb::{CreateUserRequest, User, user_service_intercept::CreateUser};
//!
//! /// Rejects sign-ups without a name before the handler runs.
//! #[derive(Clone)]
//! struct NonEmptyName;
//!
//! impl Hook<CreateUser> for NonEmptyName {
//!     fn on_request(&self, _: &Call, request: &CreateUserRequest) -> Result<(), Status> {
//!         if request.name.is_empty() {
//!             return Err(Status::invalid_argument("name must not be empty"));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! struct Users {
//!     tokens: StaticTokens<String>,
//! }
//!
//! #[intercept(
//!     public(CreateUser),
//!     auth(self.tokens),
//!     limit(timeout_ms = 2_000),
//!     hook(NonEmptyName, CreateUser),
//! )]
//! #[tonic::async_trait]
//! impl pb::user_service_server::UserService for Users {
//!     async fn create_user(&self, request: Request<CreateUserRequest>) -> Result<Response<User>, Status> {
//!         Ok(Response::new(User { name: request.into_inner().name }))
//!     }
//!
//!     async fn get_user(&self, request: Request<CreateUserRequest>) -> Result<Response<User>, Status> {
//!         let caller = request.extensions().get::<String>().cloned().unwrap_or_default();
//!         Ok(Response::new(User { name: caller }))
//!     }
//! }
//! ```
//!
//! A policy that cannot be right does not compile. Here `GetUser` is neither public nor
//! covered by an `auth(..)`:
//!
//! ```compile_fail
//! # mod pb {
//! #     pub mod user_service_server {
//! #         use tonic::{Request, Response, Status};
//! #         #[tonic::async_trait]
//! #         pub trait UserService: Send + Sync + 'static {
//! #             async fn get_user(&self, r: Request<()>) -> Result<Response<()>, Status>;
//! #         }
//! #     }
//! # }
//! # struct Users;
//! #[tonic_intercept::intercept(limit(GetUser, timeout_ms = 100))]
//! #[tonic::async_trait]
//! impl pb::user_service_server::UserService for Users {
//!     async fn get_user(&self, _: tonic::Request<()>) -> Result<tonic::Response<()>, tonic::Status> {
//!         Ok(tonic::Response::new(()))
//!     }
//! }
//! ```
//!
//! ## Client side
//!
//! The generator also emits a `Client<T, H>` per service (`user_service_intercept::Client`),
//! with tonic's method names, that applies a [`ClientConfig`]: a [`ClientPolicy`] per RPC
//! (retries per gRFC A6 with the `.proto`'s `idempotency_level` checked at compile time,
//! a default deadline, stream limits), a [`RetryThrottle`](client::RetryThrottle), a
//! [`TokenProvider`](client::TokenProvider), request ids, typed [`ClientHook`]s and
//! [`ClientMetrics`](client::ClientMetrics). The [`client`] module is its guide. Inside a handler of an
//! `#[intercept]` service, outgoing calls inherit the incoming call's deadline,
//! `x-request-id` and trace.
//!
//! ```no_run
//! # mod pb {
//! #     tonic_intercept::__doc_rpc!(GetUser, "users.v1.UserService", "GetUser", Unary, (), (), NoSideEffects);
//! # }
//! use std::time::Duration;
//! use tonic_intercept::client::{ClientConfig, ClientPolicy, RetryPolicy, RetryThrottle};
//!
//! // `rpc GetUser` is declared `option idempotency_level = NO_SIDE_EFFECTS;`.
//! const GET_USER: ClientPolicy<pb::GetUser> = ClientPolicy::retry(RetryPolicy::new().max_attempts(4))
//!     .deadline(Duration::from_millis(500));
//!
//! let config = ClientConfig::new()
//!     .policy(GET_USER)
//!     .throttle(RetryThrottle::new(10, 0.1));
//! # let _: ClientConfig<tonic_intercept::__private::DocService> = config;
//! // let mut users = user_service_intercept::Client::with_config(channel, config);
//! // let user = users.get_user(GetUserRequest { id: 7 }).await?;
//! ```
//!
//! ## Where things are
//!
//! The root holds what most services name: the RPC model ([`Rpc`], [`Service`], ...), the
//! call ([`Call`], [`CallOutcome`], [`PolicyKind`]), [`Hook`]s and the policies' main
//! types. Each concept has its module with its guide: [`auth`], [`limits`],
//! [`idempotency`], [`validate`], [`metrics`], [`trace`], [`server`] (the call and its
//! streams), [`client`] (the generated client) and [`wire`] (every header name).
//! With the `testing` feature (for `[dev-dependencies]`), `testing` holds test helpers:
//! a server served in memory with connected channels, and the `Call` a verifier, hook or
//! validation receives, built without a server.
//!
//! ## Cargo features
//!
//! None is on by default.
//!
//! | feature | what it adds |
//! |---|---|
//! | `tls` | TLS and mutual TLS for [`server::Server`], from a rustls config |
//! | `mtls` | `auth::ClientCert`: the verified client certificate (SPIFFE ID, DNS name or CN) as the caller's identity, roles from OUs, a table or a closure (implies `tls`) |
//! | `jwt` | `auth::Jwt`: bearer JWTs (RS, PS, ES, EdDSA, HS) checked against static keys or a JWKS URL, fetched once at a time and at most once per 30 s |
//! | `protovalidate` | `validate(Rpc)` from the `.proto`'s `buf.validate` rules (with `tonic-intercept-build`'s feature of that name); a hand-written [`Validate`] wins. Its build runs `protoc` |
//! | `redis` | call rates and idempotency keys shared across replicas in Redis (`backend::RedisGcra`, `idempotency::RedisIdempotency`) |
//! | `envoy-rls` | call rates kept by an Envoy rate limit service (`backend::EnvoyRls`) |
//! | `opentelemetry` | each call's span a child of the caller's span (W3C `traceparent`), for a `tracing-opentelemetry` layer to export |
//! | `testing` | for `[dev-dependencies]`: `testing::InMemory` (a server in memory, connected channels, no port) and `testing::CallBuilder` |
//!
//! ## Guides
//!
//! - [`#[intercept]`](macro@intercept): the reference of every entry, its rules and the
//!   compile errors it gives;
//! - [`RpcPolicy`]: policy declared in the `.proto` (`tonic_intercept/v1/options.proto`)
//!   and how it agrees with the attribute;
//! - [`client`]: the generated client, retries, deadlines, credentials and hooks.

#![warn(missing_docs, unreachable_pub)]

// The concept modules, from the bottom up (a module uses only those below it;
// `tests/layers.rs` checks it):
// `wire`, `util` (leaves) < `rpc` + `call` (the RPC model and one call's context) <
// `policy/` (auth, limits, idempotency, validate: public; admission, hook: internal) <
// `metrics`, `trace` < `server/` (the call lifecycle); `client/` uses the model, `wire`,
// `util`, the metric families and the trace context. `__private` and `deprecated` only
// re-export.
mod call;
pub mod client;
pub mod metrics;
mod policy;
mod rpc;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trace;
mod util;
pub mod wire;

pub use policy::{auth, backend, idempotency, limits, validate};

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

#[doc = include_str!("../docs/intercept.md")]
pub use tonic_intercept_macros::intercept;

pub use auth::{Authenticate, Roles, StaticTokens};
pub use call::{Call, CallOutcome, Deadline, PolicyKind};
pub use client::{ClientConfig, ClientHook, ClientPolicy};
pub use idempotency::{IdempotencyCache, IdempotencyStore, IdempotencyTicket};
pub use limits::Limits;
pub use metrics::ServerMetrics;
pub use policy::hook::{Hook, Hooks};
#[doc = include_str!("../docs/proto-policy.md")]
pub use rpc::RpcPolicy;
pub use rpc::{IdempotencyLevel, Rpc, RpcDescriptor, RpcKind, RpcOf, Service};
pub use trace::TraceCalls;
pub use validate::Validate;

/// The Prometheus client that [`ServerMetrics`] registers in: use this re-export (or the
/// same version) for the [`Registry`](prometheus_client::registry::Registry).
pub use prometheus_client;
/// The `grpc.health.v1` service that [`server::HealthServices`] builds: its client
/// (`tonic_health::pb::health_client`) and [`ServingStatus`](tonic_health::ServingStatus).
pub use tonic_health;
/// The server reflection services that [`server::reflection`] builds, and their clients
/// (`tonic_reflection::pb::v1`, `tonic_reflection::pb::v1alpha`).
pub use tonic_reflection;
/// The `google.rpc` rich error model that [`Validate`] answers with: decode a status's
/// details with [`tonic_types::StatusExt`], from this re-export, so versions match.
pub use tonic_types;

mod deprecated;
#[doc(hidden)]
#[allow(deprecated)]
pub use deprecated::*;
