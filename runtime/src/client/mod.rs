//! Client-side policy core: what a client does when an attempt of a call fails.
//!
//! This module is the deterministic heart the client interceptor builds on; it does no
//! networking, sleeps on no timer and owns no randomness it cannot be handed. It encodes
//! the retry semantics of gRPC's service config ([gRFC A6]):
//!
//! - [`RetryPolicy`]: `maxAttempts` (capped at 5), exponential backoff with full jitter,
//!   `retryableStatusCodes` (default `UNAVAILABLE`) and a per-attempt timeout;
//! - [`RetryThrottle`]: the channel-wide `retryThrottling{maxTokens, tokenRatio}` token
//!   bucket that stops retries when too many calls fail;
//! - [`pushback`]: the server's `grpc-retry-pushback-ms` trailer ([`Pushback`]);
//! - [`RetryPolicy::decide`]: one failed attempt in, a [`Decision`] out, with a
//!   [`Reason`] (a metric label) whenever the client gives up;
//! - [`ClientPolicy`]: a policy typed by the generated per-RPC type, where retrying an RPC
//!   that the `.proto` does not declare idempotent does not compile unless accepted
//!   explicitly.
//!
//! ```
//! use std::time::Duration;
//! use tonic::{Code, Status};
//! use tonic_intercept::{Decision, Reason, RetryPolicy, RetryThrottle};
//!
//! const POLICY: RetryPolicy = RetryPolicy::new()
//!     .max_attempts(3)
//!     .initial_backoff(Duration::from_millis(100))
//!     .max_backoff(Duration::from_secs(1));
//! let throttle = RetryThrottle::new(10, 0.1);
//!
//! // Attempt 1 failed with UNAVAILABLE: retry after random(0, 100 ms); here random = 0.5.
//! let unavailable = Status::unavailable("connection reset");
//! assert_eq!(
//!     POLICY.decide(1, &unavailable, false, &throttle, 0.5),
//!     Decision::RetryAfter(Duration::from_millis(50)),
//! );
//! // Attempt 3 was the last one allowed.
//! assert_eq!(
//!     POLICY.decide(3, &unavailable, false, &throttle, 0.5),
//!     Decision::GiveUp(Reason::AttemptsExhausted),
//! );
//! ```
//!
//! [gRFC A6]: https://github.com/grpc/proposal/blob/master/A6-client-retries.md

mod config;
mod credentials;
pub(crate) mod engine;
mod metrics;
mod policy;
mod retry;
mod stream;

pub use config::{ClientConfig, ClientHook, ClientOutcome, RpcOf};
pub use credentials::{Token, TokenProvider, TokenSource};
pub use policy::{ClientPolicy, DEFAULT_REPLAY_BUFFER};
pub use stream::Responses;

pub use metrics::{ClientMetrics, ClientServiceMetrics};

pub use retry::{
    Decision, Jitter, MAX_ATTEMPTS_CAP, Pushback, Reason, RetryPolicy, RetryThrottle, pushback,
};
