//! The client side: the generated `<service>_intercept::Client<T, H>` and what it applies.
//!
//! `tonic-intercept-build` emits, beside tonic's client, a `Client` per service with the
//! same methods; it sends each call through a [`ClientConfig`]:
//!
//! - a [`ClientPolicy`] per RPC, typed by the generated per-RPC type and checked against
//!   the `.proto` at compile time: retries only for RPCs declared `IDEMPOTENT` or
//!   `NO_SIDE_EFFECTS` (unless [`ClientPolicy::retry_non_idempotent`]), stream limits only
//!   for RPCs that stream that way, a default deadline;
//! - retries with the semantics of gRPC's service config ([gRFC A6]): [`RetryPolicy`]
//!   (`maxAttempts`, exponential backoff with full jitter, `retryableStatusCodes`, a
//!   per-attempt timeout inside the call's deadline), the channel-wide [`RetryThrottle`],
//!   the server's `grpc-retry-pushback-ms`, and A6's commit rules: a
//!   server-streaming call is retried until its first response message, a request
//!   stream is replayed from a buffer of at most
//!   [`replay_buffer`](ClientPolicy::replay_buffer) bytes, a bidi call commits at the
//!   response headers;
//! - deadlines: the request's own (`Request::set_timeout`), else the RPC's default, never
//!   later than the deadline of the incoming call a handler makes it for
//!   ([`Deadline::current`](crate::server::Deadline::current)); every attempt carries what is
//!   left as `grpc-timeout`, every retry `grpc-previous-rpc-attempts`;
//! - metadata: bearer tokens from a [`TokenProvider`] (cached, refreshed before expiry,
//!   one fetch for all concurrent calls), an `x-request-id` (the incoming call's, or a new
//!   one) and a `traceparent` continuing the incoming call's trace;
//! - typed [`ClientHook`]s on every message sent and received, and the client metrics
//!   ([`ClientMetrics`]: `grpc_client_*`, with attempts, retries and give-ups).
//!
//! ```
//! # mod pb {
//! #     tonic_intercept::__doc_rpc!(GetUser, "users.v1.UserService", "GetUser", Unary, (), (), NoSideEffects);
//! # }
//! use std::time::Duration;
//! use tonic::Code;
//! use tonic_intercept::client::{ClientConfig, ClientPolicy, RetryPolicy, RetryThrottle};
//!
//! // Up to 3 attempts on UNAVAILABLE or RESOURCE_EXHAUSTED, waiting random(0, 100 ms),
//! // then random(0, 200 ms); `GetUser` is declared `NO_SIDE_EFFECTS` in the `.proto`.
//! const RETRY: RetryPolicy = RetryPolicy::new()
//!     .max_attempts(3)
//!     .initial_backoff(Duration::from_millis(100))
//!     .max_backoff(Duration::from_secs(1))
//!     .retryable_codes(&[Code::Unavailable, Code::ResourceExhausted]);
//!
//! let config = ClientConfig::new()
//!     .policy(ClientPolicy::<pb::GetUser>::retry(RETRY).deadline(Duration::from_millis(500)))
//!     .throttle(RetryThrottle::new(10, 0.1));
//! assert_eq!(config.deadline_of::<pb::GetUser>(), Some(Duration::from_millis(500)));
//! ```
//!
//! [gRFC A6]: https://github.com/grpc/proposal/blob/master/A6-client-retries.md

mod config;
mod credentials;
pub(crate) mod engine;
mod metrics;
mod policy;
pub(crate) mod retry;
mod stream;

pub use config::{ClientConfig, ClientHook, ClientOutcome};
pub use credentials::{BearerToken, TokenProvider, TokenSource};
pub use engine::Transport;
pub use metrics::{ClientMetrics, ClientServiceMetrics};
pub use policy::{ClientPolicy, DEFAULT_REPLAY_BUFFER};
pub use retry::{GiveUpReason, MAX_ATTEMPTS_CAP, RetryPolicy, RetryThrottle};
pub use stream::Responses;
