//! Shared call-rate backends: call rates that hold across the replicas of a service.
//!
//! The in-process token buckets of `#[intercept(limit(calls_per_second..))]` live in one
//! process, so with six replicas a caller allowed 5 calls a second gets 30. A shared
//! backend keeps the state of a limit outside the process, where every replica sees it.
//! This module holds the seam ([`RateBackend`]) and its types, free of tonic types; the
//! Redis implementation, `RedisGcra`, is behind the runtime's `redis` feature, and
//! `EnvoyRls`, a client of Envoy's rate limit service (envoyproxy/ratelimit, Limitador),
//! behind its `envoy-rls` feature.
//!
//! The two differ in where the limit is defined. `RedisGcra` runs GCRA with the rate
//! declared in the code (`RateLimit`), so the burst and the exact `retry_after` are
//! this crate's. `EnvoyRls` asks a service that owns its limits: it sends the RPC, the
//! identity and user-chosen entries as a descriptor, and the service's configuration
//! (fixed windows, in both engines) decides; the declared rate goes along as the
//! descriptor's `limit` override, which envoyproxy/ratelimit honours and Limitador
//! ignores. Both keep the same things local (the deny cache, the failure policy and its
//! fallback buckets, one implementation shared by both).
//!
//! # GCRA
//!
//! The generic cell rate algorithm is a token bucket stored as one number, the
//! *theoretical arrival time* (TAT): the instant at which the bucket will be full again.
//! With an emission interval `T = period / per_period` and a bucket of `burst` tokens, a
//! call at `now` is admitted when `max(TAT, now) + T - burst * T <= now`, and then moves
//! the TAT to `max(TAT, now) + T`. So `burst` calls may start back to back, then one per
//! `T`: the same meaning as the local buckets (`call_burst` is the bucket's size). A
//! refused call learns exactly how long to wait (`retry_after`), which becomes the
//! `grpc-retry-pushback-ms` of the refusal.
//!
//! # What is shared and what is local
//!
//! Shared (in the backend): the TAT of each [`RateKey`], hence the number of calls a
//! caller may start across all replicas. Local (in each replica): the cache of denials
//! (a caller already refused is refused again without a round trip until its
//! `retry_after` has passed; GCRA cannot admit it earlier, so nothing is lost), the
//! connection, the failure counter and the failure policy. Per-stream limits, deadlines,
//! idle timeouts and `max_in_flight` protect a replica's own resources and stay local.
//!
//! # When the backend fails
//!
//! Every check is bounded by a budget. When the backend errs or does not answer within
//! it, the [`FailurePolicy`] decides: [`FailurePolicy::FailOpen`] (the default, as
//! Envoy's rate limit filter) admits the call as [`Decision::Unchecked`];
//! [`FailurePolicy::FailClosed`] returns a [`BackendError`], which a server maps to
//! `UNAVAILABLE`; [`FailurePolicy::FallbackLocal`] decides with an in-process bucket of
//! the same rate (per replica). Each decision taken without the backend is counted (the
//! backend's `errors()`) and traced with `tracing::warn!`, at most once a second per
//! backend.

use std::fmt;
use std::future::Future;
use std::time::Duration;

#[cfg(feature = "envoy-rls")]
mod envoy_rls;
#[cfg(any(feature = "redis", feature = "envoy-rls"))]
mod local;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "envoy-rls")]
pub use self::envoy_rls::{EnvoyRls, EnvoyRlsConfig};
#[cfg(feature = "redis")]
pub use self::redis::{RedisGcra, RedisGcraConfig};

/// The key prefix of every key a shared backend writes.
pub const KEY_PREFIX: &str = "ti:";

/// Which bucket a check takes from: one RPC's, for all callers or for one identity.
///
/// Its text is the Redis key: `ti:{<rpc>}:rpc` for the RPC's own bucket and
/// `ti:{<rpc>}:id:<identity>` for one caller's, where `<rpc>` is the RPC's path without
/// its leading slash (`users.v1.UserService/GetUser`). The RPC is in braces, a Redis
/// Cluster hash tag: all keys of one RPC live on one shard.
///
/// ```
/// use tonic_intercept::backend::RateKey;
///
/// let key = RateKey::per_identity("users.v1.UserService/GetUser", "alice");
/// assert_eq!(key.as_str(), "ti:{users.v1.UserService/GetUser}:id:alice");
/// assert_eq!((key.rpc(), key.identity()), ("users.v1.UserService/GetUser", Some("alice")));
/// let key = RateKey::per_rpc("/users.v1.UserService/GetUser");
/// assert_eq!(key.as_str(), "ti:{users.v1.UserService/GetUser}:rpc");
/// assert_eq!(key.identity(), None);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RateKey {
    text: Box<str>,
    /// Where the identity starts in `text`, for a per-identity key.
    identity_at: Option<usize>,
}

impl RateKey {
    /// The bucket of the RPC `rpc` (`package.Service/Method`, a leading `/` is dropped),
    /// shared by all callers.
    pub fn per_rpc(rpc: &str) -> Self {
        Self {
            text: format!("{KEY_PREFIX}{{{}}}:rpc", rpc.trim_start_matches('/')).into(),
            identity_at: None,
        }
    }

    /// The bucket of one caller (`identity`, as authentication named it) of the RPC `rpc`.
    pub fn per_identity(rpc: &str, identity: &str) -> Self {
        let text = format!(
            "{KEY_PREFIX}{{{}}}:id:{identity}",
            rpc.trim_start_matches('/')
        );
        Self {
            identity_at: Some(text.len() - identity.len()),
            text: text.into(),
        }
    }

    /// The key's text, as stored in the backend.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The RPC, `package.Service/Method`.
    pub fn rpc(&self) -> &str {
        let rest = &self.text[KEY_PREFIX.len() + 1..];
        &rest[..rest.find("}:").unwrap_or(rest.len())]
    }

    /// The caller, for a per-identity key.
    pub fn identity(&self) -> Option<&str> {
        self.identity_at.map(|at| &self.text[at..])
    }
}

impl fmt::Debug for RateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

impl fmt::Display for RateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A call rate: `per_period` calls every `period`, in bursts of up to `burst`.
///
/// ```
/// use std::time::Duration;
/// use tonic_intercept::backend::RateLimit;
///
/// const FIVE_A_MINUTE: RateLimit = RateLimit::new(5, Duration::from_secs(60)).burst(5);
/// assert_eq!(FIVE_A_MINUTE.emission_interval(), Duration::from_secs(12));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// Calls admitted per `period`, sustained.
    pub per_period: u32,
    /// The period `per_period` is counted over.
    pub period: Duration,
    /// The bucket's size: how many calls may start back to back.
    pub burst: u32,
}

impl RateLimit {
    /// `per_period` calls every `period`, with a burst of `per_period`.
    ///
    /// # Panics
    /// When `per_period` is 0 or `period` is shorter than a microsecond.
    pub const fn new(per_period: u32, period: Duration) -> Self {
        assert!(per_period > 0, "a rate needs at least one call per period");
        assert!(
            period.as_micros() > 0,
            "a rate's period must be at least 1 µs"
        );
        Self {
            per_period,
            period,
            burst: per_period,
        }
    }

    /// `n` calls a second, with a burst of `n`.
    pub const fn per_second(n: u32) -> Self {
        Self::new(n, Duration::from_secs(1))
    }

    /// Sets the burst (the bucket's size).
    ///
    /// # Panics
    /// When `burst` is 0.
    pub const fn burst(mut self, burst: u32) -> Self {
        assert!(burst > 0, "a burst must be at least 1");
        self.burst = burst;
        self
    }

    /// `period / per_period`, to the microsecond (at least 1 µs): the time one call
    /// occupies in the bucket.
    pub const fn emission_interval(&self) -> Duration {
        let micros = self.period.as_micros() / self.per_period as u128;
        Duration::from_micros(if micros == 0 { 1 } else { micros as u64 })
    }
}

/// What a backend decided for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Admitted by the backend.
    Allowed {
        /// How many more calls could start right now.
        remaining: u32,
        /// When the bucket is full again (nothing of this key is left to remember).
        reset_after: Duration,
    },
    /// Refused: the bucket is empty.
    Denied {
        /// The exact wait until a call of this key would be admitted (GCRA's
        /// `retry_after`): the refusal's `grpc-retry-pushback-ms`.
        retry_after: Duration,
        /// When the bucket is full again.
        reset_after: Duration,
    },
    /// Admitted without the backend: it failed or was slower than the budget, and the
    /// failure policy is [`FailurePolicy::FailOpen`] (or [`FailurePolicy::FallbackLocal`]
    /// and the local bucket admitted the call). Counted by the backend's `errors()`.
    Unchecked,
    /// Refused without the backend: it failed or was slower than the budget, and
    /// [`FailurePolicy::FallbackLocal`]'s in-process bucket refused the call. Counted by
    /// the backend's `errors()`.
    UncheckedDenied {
        /// The wait until the local bucket would admit a call of this key.
        retry_after: Duration,
    },
}

impl Decision {
    /// Whether the call may start ([`Decision::Allowed`] or [`Decision::Unchecked`]).
    pub const fn admits(&self) -> bool {
        !matches!(
            self,
            Decision::Denied { .. } | Decision::UncheckedDenied { .. }
        )
    }
}

/// What a shared backend does with a call when it cannot ask its store in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Admit the call ([`Decision::Unchecked`]), as Envoy's rate limit filter does by
    /// default: an outage of the limiter does not become an outage of the service.
    #[default]
    FailOpen,
    /// Refuse the call with a [`BackendError`]; a server answers `UNAVAILABLE`.
    FailClosed,
    /// Decide with an in-process bucket of the same rate per key (GCRA, like the local
    /// buckets): admitted calls are [`Decision::Unchecked`], refused ones
    /// [`Decision::UncheckedDenied`]. Each replica then enforces the whole limit by itself, so
    /// with `n` replicas a caller may get up to `n` times its rate while the backend is
    /// down: coarse, but bounded.
    FallbackLocal,
}

/// Why a check was refused without the backend's answer (under
/// [`FailurePolicy::FailClosed`]). A server maps it to `UNAVAILABLE`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend did not answer within the budget.
    Timeout(Duration),
    /// The backend answered with an error or could not be reached.
    Failed(String),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Timeout(budget) => {
                write!(f, "the rate-limit backend did not answer within {budget:?}")
            }
            BackendError::Failed(why) => write!(f, "the rate-limit backend failed: {why}"),
        }
    }
}

impl std::error::Error for BackendError {}

/// A store of call rates shared by the replicas of a service.
///
/// `check` takes one token from `key`'s bucket of rate `limit` or says how long to wait.
/// An implementation applies its [`FailurePolicy`] itself: it returns `Err` only when the
/// policy is to refuse, and never takes longer than its budget.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a shared call-rate backend",
    label = "not a `tonic_intercept::backend::RateBackend`",
    note = "`shared = ..` takes a backend such as `tonic_intercept::backend::RedisGcra`, or a type of yours that implements `tonic_intercept::backend::RateBackend`"
)]
pub trait RateBackend: Send + Sync + 'static {
    /// The backend's name, the `backend` label of its metrics: `redis`, `envoy_rls`.
    fn name(&self) -> &'static str;

    /// Takes one token of `key`'s bucket.
    fn check(
        &self,
        key: &RateKey,
        limit: RateLimit,
    ) -> impl Future<Output = Result<Decision, BackendError>> + Send;
}

/// A backend behind an `Arc`, as a service that is cloned per connection holds it.
impl<B: RateBackend> RateBackend for std::sync::Arc<B> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn check(
        &self,
        key: &RateKey,
        limit: RateLimit,
    ) -> impl Future<Output = Result<Decision, BackendError>> + Send {
        (**self).check(key, limit)
    }
}
