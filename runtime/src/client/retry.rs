//! Retry policy, throttling, pushback and the retry decision (gRFC A6).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use crate::wire::RETRY_PUSHBACK;

/// The largest `maxAttempts` gRFC A6 honours: larger values are treated as this one.
///
/// ```
/// use tonic_intercept::client::{MAX_ATTEMPTS_CAP, RetryPolicy};
/// assert_eq!(RetryPolicy::new().max_attempts(9).attempts(), MAX_ATTEMPTS_CAP);
/// ```
pub const MAX_ATTEMPTS_CAP: u32 = 5;

/// A6's `retryPolicy`: how often and how patiently one RPC is retried.
///
/// Built with `const` setters, so a policy can be a `const` item:
///
/// ```
/// use std::time::Duration;
/// use tonic::Code;
/// use tonic_intercept::client::RetryPolicy;
///
/// const POLICY: RetryPolicy = RetryPolicy::new()
///     .max_attempts(4)
///     .initial_backoff(Duration::from_millis(50))
///     .max_backoff(Duration::from_secs(2))
///     .backoff_multiplier(1.5)
///     .retryable_codes(&[Code::Unavailable, Code::ResourceExhausted])
///     .per_attempt_timeout(Duration::from_millis(500));
/// assert_eq!(POLICY.attempts(), 4);
/// assert_eq!(POLICY.codes(), &[Code::Unavailable, Code::ResourceExhausted]);
/// ```
///
/// The setters check A6's constraints and panic on a value A6 rejects (in a `const`, that
/// is a compile error): fewer than 2 attempts, a zero backoff, a multiplier that is not
/// a positive finite number, an empty list of codes.
///
/// A call is retried only until it is *committed* (A6, "When Retries are Valid"): when
/// the server's response headers arrive, whatever the kind of call (unary,
/// server-streaming, client-streaming, bidi), or when a request stream outgrows its
/// replay buffer. What is retried is a failure the server sends before anything else,
/// in a Trailers-Only response. A committed call that fails with one of its retryable
/// codes ends with that status, reported as [`GiveUpReason::Committed`]. The
/// [client guide](crate::client) has the whole rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    backoff_multiplier: f64,
    retryable_codes: &'static [Code],
    per_attempt_timeout: Option<Duration>,
}

impl Default for RetryPolicy {
    /// [`RetryPolicy::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl RetryPolicy {
    /// 3 attempts, backoff from 100 ms doubling up to 1 s, retrying `UNAVAILABLE` only,
    /// no per-attempt timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tonic::Code;
    /// use tonic_intercept::client::RetryPolicy;
    /// let policy = RetryPolicy::new();
    /// assert_eq!(policy.attempts(), 3);
    /// assert_eq!(policy.initial(), Duration::from_millis(100));
    /// assert_eq!(policy.max(), Duration::from_secs(1));
    /// assert_eq!(policy.multiplier(), 2.0);
    /// assert_eq!(policy.codes(), &[Code::Unavailable]);
    /// assert_eq!(policy.attempt_timeout(), None);
    /// ```
    pub const fn new() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            backoff_multiplier: 2.0,
            retryable_codes: &[Code::Unavailable],
            per_attempt_timeout: None,
        }
    }

    /// `maxAttempts`, counting the original attempt: at least 2, capped at
    /// [`MAX_ATTEMPTS_CAP`] (5) as A6 says.
    ///
    /// ```
    /// use tonic_intercept::client::RetryPolicy;
    /// assert_eq!(RetryPolicy::new().max_attempts(2).attempts(), 2);
    /// assert_eq!(RetryPolicy::new().max_attempts(6).attempts(), 5);
    /// ```
    ///
    /// ```compile_fail,E0080
    /// // One attempt is no retry policy at all.
    /// const P: tonic_intercept::client::RetryPolicy = tonic_intercept::client::RetryPolicy::new().max_attempts(1);
    /// ```
    pub const fn max_attempts(mut self, n: u32) -> Self {
        assert!(
            n >= 2,
            "RetryPolicy::max_attempts must be at least 2 (gRFC A6)"
        );
        self.max_attempts = if n > MAX_ATTEMPTS_CAP {
            MAX_ATTEMPTS_CAP
        } else {
            n
        };
        self
    }

    /// `initialBackoff`: the bound of the first retry's random wait. Must not be zero.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tonic_intercept::client::RetryPolicy;
    /// let policy = RetryPolicy::new().initial_backoff(Duration::from_millis(20));
    /// assert_eq!(policy.initial(), Duration::from_millis(20));
    /// ```
    pub const fn initial_backoff(mut self, backoff: Duration) -> Self {
        assert!(
            !backoff.is_zero(),
            "RetryPolicy::initial_backoff must be greater than zero (gRFC A6)"
        );
        self.initial_backoff = backoff;
        self
    }

    /// `maxBackoff`: no retry waits longer. Must not be zero.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tonic_intercept::client::RetryPolicy;
    /// let policy = RetryPolicy::new().max_backoff(Duration::from_secs(30));
    /// assert_eq!(policy.max(), Duration::from_secs(30));
    /// ```
    pub const fn max_backoff(mut self, backoff: Duration) -> Self {
        assert!(
            !backoff.is_zero(),
            "RetryPolicy::max_backoff must be greater than zero (gRFC A6)"
        );
        self.max_backoff = backoff;
        self
    }

    /// `backoffMultiplier`: each retry's bound is the previous one's times this. Must be
    /// a positive finite number.
    ///
    /// ```
    /// use tonic_intercept::client::RetryPolicy;
    /// assert_eq!(RetryPolicy::new().backoff_multiplier(1.6).multiplier(), 1.6);
    /// ```
    pub const fn backoff_multiplier(mut self, multiplier: f64) -> Self {
        assert!(
            multiplier > 0.0 && multiplier.is_finite(),
            "RetryPolicy::backoff_multiplier must be a positive finite number (gRFC A6)"
        );
        self.backoff_multiplier = multiplier;
        self
    }

    /// `retryableStatusCodes`: the codes worth another attempt. Must not be empty; the
    /// default is `[Code::Unavailable]`.
    pub const fn retryable_codes(mut self, codes: &'static [Code]) -> Self {
        assert!(
            !codes.is_empty(),
            "RetryPolicy::retryable_codes must not be empty (gRFC A6)"
        );
        self.retryable_codes = codes;
        self
    }

    /// A timeout for each attempt, inside the call's overall deadline (see
    /// `attempt_deadline`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tonic_intercept::client::RetryPolicy;
    /// let policy = RetryPolicy::new().per_attempt_timeout(Duration::from_millis(300));
    /// assert_eq!(policy.attempt_timeout(), Some(Duration::from_millis(300)));
    /// ```
    pub const fn per_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.per_attempt_timeout = Some(timeout);
        self
    }

    /// The most attempts a call makes, the original one included.
    ///
    /// ```
    /// assert_eq!(tonic_intercept::client::RetryPolicy::new().max_attempts(4).attempts(), 4);
    /// ```
    pub const fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The initial backoff.
    ///
    /// ```
    /// # use std::time::Duration;
    /// assert_eq!(tonic_intercept::client::RetryPolicy::new().initial(), Duration::from_millis(100));
    /// ```
    pub const fn initial(&self) -> Duration {
        self.initial_backoff
    }

    /// The maximum backoff.
    ///
    /// ```
    /// # use std::time::Duration;
    /// assert_eq!(tonic_intercept::client::RetryPolicy::new().max(), Duration::from_secs(1));
    /// ```
    pub const fn max(&self) -> Duration {
        self.max_backoff
    }

    /// The backoff multiplier.
    ///
    /// ```
    /// assert_eq!(tonic_intercept::client::RetryPolicy::new().multiplier(), 2.0);
    /// ```
    pub const fn multiplier(&self) -> f64 {
        self.backoff_multiplier
    }

    /// The retryable status codes.
    ///
    /// ```
    /// # use tonic::Code;
    /// assert_eq!(tonic_intercept::client::RetryPolicy::new().codes(), &[Code::Unavailable]);
    /// ```
    pub const fn codes(&self) -> &'static [Code] {
        self.retryable_codes
    }

    /// The per-attempt timeout, if any.
    ///
    /// ```
    /// assert_eq!(tonic_intercept::client::RetryPolicy::new().attempt_timeout(), None);
    /// ```
    pub const fn attempt_timeout(&self) -> Option<Duration> {
        self.per_attempt_timeout
    }

    /// How long the next attempt may run: the per-attempt timeout, never past what is
    /// left of the call's overall deadline (`remaining`); `None` when neither is set.
    #[cfg(test)] // public API before 0.2; the engine computes these inline
    pub(crate) fn attempt_deadline(&self, remaining: Option<Duration>) -> Option<Duration> {
        match (self.per_attempt_timeout, remaining) {
            (Some(own), Some(left)) => Some(own.min(left)),
            (own, left) => own.or(left),
        }
    }

    /// Whether a status code is in `retryableStatusCodes`. `OK` never is.
    pub(crate) fn is_retryable(&self, code: Code) -> bool {
        code != Code::Ok && self.retryable_codes.contains(&code)
    }

    /// The bound of the `attempt`-th retry's wait, before jitter:
    /// `min(initial_backoff * multiplier^(attempt - 1), max_backoff)` (attempt 0 counts
    /// as 1).
    pub(crate) fn backoff_ceiling(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.max(1) - 1).unwrap_or(i32::MAX);
        let grown = self.initial_backoff.as_nanos() as f64 * self.backoff_multiplier.powi(exponent);
        // `f64::min` ignores NaN, and an overflow to infinity lands on the cap.
        let ceiling = grown.min(self.max_backoff.as_nanos() as f64);
        Duration::from_nanos(ceiling.round() as u64)
    }

    /// gRFC A6's backoff with full jitter: the `attempt`-th retry (1 for the first retry)
    /// waits `random(0, min(initial_backoff * multiplier^(attempt - 1), max_backoff))`.
    ///
    /// `random` is the uniform draw in `[0, 1]`, injected so the result is deterministic
    /// (a value outside is clamped, NaN counts as 0); the result is rounded to the
    /// nanosecond. [`Jitter`] supplies draws in production, or see
    /// [`RetryPolicy::backoff_with`].
    pub(crate) fn backoff(&self, attempt: u32, random: f64) -> Duration {
        let random = if random.is_nan() {
            0.0
        } else {
            random.clamp(0.0, 1.0)
        };
        let ceiling = self.backoff_ceiling(attempt).as_nanos() as f64;
        Duration::from_nanos((ceiling * random).round() as u64)
    }

    /// [`RetryPolicy::backoff`] with the draw taken from `rng` (a closure returning a
    /// uniform `f64` in `[0, 1]`).
    #[cfg(test)] // public API before 0.2; the engine computes these inline
    pub(crate) fn backoff_with(&self, attempt: u32, rng: &mut impl FnMut() -> f64) -> Duration {
        self.backoff(attempt, rng())
    }

    /// What to do after attempt number `attempt` (1 for the original call) failed with
    /// `status`, following gRFC A6 in this order:
    ///
    /// 1. the status is `OK`: nothing to retry, [`GiveUpReason::NotRetryable`];
    /// 2. the failure counts against `throttle` when A6 counts it ([`counts_as_failure`]:
    ///    a retryable code, or a pushback saying not to retry), committed or not;
    /// 3. the code is not retryable and there is no pushback saying not to retry: give up,
    ///    [`GiveUpReason::NotRetryable`];
    /// 4. `committed` (the response headers arrived, a response message reached the
    ///    application, or a client stream outgrew its replay buffer): give up,
    ///    [`GiveUpReason::Committed`];
    /// 5. the server's pushback (see [`pushback`]) says not to retry: give up,
    ///    [`GiveUpReason::Pushback`];
    /// 6. the throttle is at or under half its tokens: give up, [`GiveUpReason::Throttled`];
    /// 7. `attempt` reached [`RetryPolicy::attempts`]: give up,
    ///    [`GiveUpReason::AttemptsExhausted`];
    /// 8. otherwise retry, after the server's pushback when it sent one, or else after
    ///    [`RetryPolicy::backoff`]`(backoff_step, random)`.
    ///
    /// `backoff_step` counts the backoff-driven retries since the call started or since
    /// its last pushback-driven retry, plus one (A6, "Pushback: Retry in *n* ms": "If this
    /// attempt also fails, retry delay will reset to initial backoff for the following
    /// retry"); the engine keeps it ([`BackoffStep`]).
    ///
    /// Successful calls are the caller's to report with [`RetryThrottle::on_success`].
    /// This is a pure function of its arguments, apart from the throttle it updates.
    pub(crate) fn decide(
        &self,
        attempt: u32,
        backoff_step: u32,
        status: &Status,
        committed: bool,
        throttle: &RetryThrottle,
        random: f64,
    ) -> RetryDecision {
        if status.code() == Code::Ok {
            return RetryDecision::GiveUp(GiveUpReason::NotRetryable);
        }
        let pushback = pushback(status.metadata());
        if counts_as_failure(Some(self), status.code(), pushback) {
            throttle.on_failure();
        }
        if !self.is_retryable(status.code()) && pushback != Pushback::DoNotRetry {
            return RetryDecision::GiveUp(GiveUpReason::NotRetryable);
        }
        if committed {
            return RetryDecision::GiveUp(GiveUpReason::Committed);
        }
        if pushback == Pushback::DoNotRetry {
            return RetryDecision::GiveUp(GiveUpReason::Pushback);
        }
        if !self.is_retryable(status.code()) {
            return RetryDecision::GiveUp(GiveUpReason::NotRetryable);
        }
        if !throttle.allows_retry() {
            return RetryDecision::GiveUp(GiveUpReason::Throttled);
        }
        if attempt >= self.max_attempts {
            return RetryDecision::GiveUp(GiveUpReason::AttemptsExhausted);
        }
        match pushback {
            Pushback::RetryAfter(wait) => RetryDecision::RetryAfter(wait),
            Pushback::None | Pushback::DoNotRetry => {
                RetryDecision::RetryAfter(self.backoff(backoff_step, random))
            }
        }
    }
}

/// Whether a failed attempt counts against the channel's [`RetryThrottle`], by the letter
/// of gRFC A6 ("Throttling Retry Attempts and Hedged RPCs"): "The only RPCs that are
/// counted as failures for the throttling policy are RPCs that fail with a status code
/// that qualifies as a retryable [...] status code, or that receive a pushback response
/// indicating not to retry."
///
/// `policy` is the RPC's retry policy: without one no code is retryable, so only a
/// pushback saying not to retry counts. A committed call's failure counts too (A6 counts
/// failed RPCs, committed or not; grpc-go counts only Trailers-Only failures). `OK`
/// never counts.
pub(crate) fn counts_as_failure(
    policy: Option<&RetryPolicy>,
    code: Code,
    pushback: Pushback,
) -> bool {
    code != Code::Ok
        && (pushback == Pushback::DoNotRetry || policy.is_some_and(|p| p.is_retryable(code)))
}

/// The backoff exponent of a call's next backoff-driven retry: 1 for the first, one more
/// after each backoff-driven retry, back to 1 after a pushback-driven one (gRFC A6:
/// after "Retry in *n* ms", "retry delay will reset to initial backoff for the following
/// retry"; grpc-go's `numRetriesSincePushback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BackoffStep(u32);

impl Default for BackoffStep {
    fn default() -> Self {
        Self(1)
    }
}

impl BackoffStep {
    /// The step the next backoff-driven retry waits with.
    pub(crate) const fn get(self) -> u32 {
        self.0
    }

    /// After a retry: back to 1 when its wait was the server's pushback (`pushed`),
    /// else one more.
    pub(crate) fn advance(&mut self, pushed: bool) {
        self.0 = if pushed { 1 } else { self.0.saturating_add(1) };
    }
}

/// The outcome of [`RetryPolicy::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryDecision {
    /// Start the next attempt after this wait: the server's pushback when the failed
    /// attempt carried one ([`pushback`]), else the backoff.
    RetryAfter(Duration),
    /// Return the failed attempt's status to the application.
    GiveUp(GiveUpReason),
}

impl RetryDecision {
    /// Whether this is [`RetryDecision::RetryAfter`].
    #[cfg(test)] // public API before 0.2; the engine computes these inline
    pub(crate) const fn is_retry(&self) -> bool {
        matches!(self, RetryDecision::RetryAfter(_))
    }
}

/// Why a failed call was not retried: a small, fixed set, usable as a metric label
/// ([`GiveUpReason::as_str`]).
///
/// ```
/// use tonic_intercept::client::GiveUpReason;
/// assert_eq!(GiveUpReason::AttemptsExhausted.as_str(), "attempts_exhausted");
/// assert_eq!(GiveUpReason::Throttled.to_string(), "throttled");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GiveUpReason {
    /// The code is not in `retryableStatusCodes` (or the status is `OK`).
    NotRetryable,
    /// The call already made its last allowed attempt.
    AttemptsExhausted,
    /// The call is committed (gRFC A6, "When Retries are Valid"): the server's response
    /// headers arrived (for every kind of call), or the request stream outgrew what can
    /// be replayed; reported when such a call then fails with a code its policy retries.
    /// A Trailers-Only response (the status alone, without response headers) does not
    /// commit a call: that is the failure retries are for.
    Committed,
    /// The channel's [`RetryThrottle`] is at or under half its tokens.
    Throttled,
    /// The server's `grpc-retry-pushback-ms` said not to retry.
    Pushback,
    /// The call's deadline passed, or would pass during the backoff.
    Deadline,
}

impl GiveUpReason {
    /// Every reason, for pre-registering metric series.
    ///
    /// ```
    /// assert_eq!(tonic_intercept::client::GiveUpReason::ALL.len(), 6);
    /// ```
    pub const ALL: [GiveUpReason; 6] = [
        GiveUpReason::NotRetryable,
        GiveUpReason::AttemptsExhausted,
        GiveUpReason::Committed,
        GiveUpReason::Throttled,
        GiveUpReason::Pushback,
        GiveUpReason::Deadline,
    ];

    /// A `snake_case` label for metrics and logs.
    ///
    /// ```
    /// use tonic_intercept::client::GiveUpReason;
    /// assert_eq!(GiveUpReason::Pushback.as_str(), "pushback");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            GiveUpReason::NotRetryable => "not_retryable",
            GiveUpReason::AttemptsExhausted => "attempts_exhausted",
            GiveUpReason::Committed => "committed",
            GiveUpReason::Throttled => "throttled",
            GiveUpReason::Pushback => "pushback",
            GiveUpReason::Deadline => "deadline",
        }
    }
}

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The server's word on retrying, from its `grpc-retry-pushback-ms` trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pushback {
    /// No pushback: the client's own backoff applies.
    None,
    /// Retry after exactly this long, instead of the client's backoff.
    RetryAfter(Duration),
    /// Do not retry this call.
    DoNotRetry,
}

/// The largest pushback A6 allows: its value is "an ASCII encoded signed 32-bit integer".
pub(crate) const MAX_PUSHBACK_MS: u64 = i32::MAX as u64;

/// Reads `grpc-retry-pushback-ms` (gRFC A6) from a failed attempt's trailers.
///
/// A6: "The value is to be an ASCII encoded signed 32-bit integer with no unnecessary
/// leading zeros that represents how many milliseconds to wait before sending a retry. If
/// the value for pushback is negative or unparseble, then it will be seen as the server
/// asking the client not to retry at all." So:
///
/// - absent: [`Pushback::None`];
/// - one value of ASCII digits only whose number is in `0..=i32::MAX` (2,147,483,647):
///   [`Pushback::RetryAfter`] that many milliseconds (leading zeros are tolerated);
/// - anything else: negative, past `i32::MAX` (not a signed 32-bit integer), not an
///   integer (`1.5`, `+5`, `soon`), empty, several values: [`Pushback::DoNotRetry`].
pub(crate) fn pushback(metadata: &MetadataMap) -> Pushback {
    let mut values = metadata.get_all(RETRY_PUSHBACK).iter();
    let Some(value) = values.next() else {
        return Pushback::None;
    };
    if values.next().is_some() {
        return Pushback::DoNotRetry;
    }
    let Ok(text) = value.to_str() else {
        return Pushback::DoNotRetry;
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Pushback::DoNotRetry;
    }
    match text.parse::<u64>() {
        Ok(ms) if ms <= MAX_PUSHBACK_MS => Pushback::RetryAfter(Duration::from_millis(ms)),
        _ => Pushback::DoNotRetry,
    }
}

/// A6's `retryThrottling{maxTokens, tokenRatio}`: a token bucket shared by every call of a
/// channel that stops retries while too many calls fail.
///
/// It starts full (`max_tokens`). As A6 counts them, for every RPC of the clients that
/// share it, whether their RPC has a retry policy or not:
///
/// - each failed attempt takes one token if its code is one its RPC's policy retries
///   (an RPC without a policy has none), or if the server's pushback said not to retry;
///   also when the call was committed and is not retried. Other failures (say
///   `INVALID_ARGUMENT`) do not count: "This avoids conflating server failure with
///   responses to malformed requests";
/// - each call that ends `OK` (a response stream: read to its end) gives back
///   `token_ratio`, up to `max_tokens`.
///
/// Retries are allowed while more than half the tokens remain. Tokens are counted in
/// thousandths in an atomic, as A6 suggests (`token_ratio` keeps 3 decimal places).
/// Cloning shares the bucket.
///
/// ```
/// use tonic_intercept::client::RetryThrottle;
/// // A6's example: 10 tokens, 0.1 back per success; the 5th counted failure in a row
/// // leaves 5, which stops retries until a success brings 5.1.
/// let throttle = RetryThrottle::new(10, 0.1);
/// assert_eq!(throttle.tokens(), Some(10.0));
/// ```
#[derive(Debug, Clone)]
pub struct RetryThrottle {
    bucket: Option<Arc<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    /// Current tokens, in thousandths.
    tokens: AtomicU32,
    /// `max_tokens`, in thousandths.
    max: u32,
    /// `token_ratio`, in thousandths.
    ratio: u32,
}

impl RetryThrottle {
    /// A full bucket of `max_tokens` (1..=1000) refilled by `token_ratio` (0 exclusive to
    /// 1 inclusive, rounded to 3 decimal places, at least 0.001) per success.
    ///
    /// # Panics
    ///
    /// On values outside A6's ranges.
    ///
    /// ```
    /// let throttle = tonic_intercept::client::RetryThrottle::new(10, 0.1);
    /// assert_eq!(throttle.tokens(), Some(10.0));
    /// ```
    pub fn new(max_tokens: u32, token_ratio: f64) -> Self {
        assert!(
            (1..=1000).contains(&max_tokens),
            "RetryThrottle max_tokens must be in 1..=1000 (gRFC A6)"
        );
        assert!(
            token_ratio > 0.0 && token_ratio <= 1.0,
            "RetryThrottle token_ratio must be in (0, 1] (gRFC A6)"
        );
        let max = max_tokens * 1000;
        let ratio = ((token_ratio * 1000.0).round() as u32).max(1);
        Self {
            bucket: Some(Arc::new(Bucket {
                tokens: AtomicU32::new(max),
                max,
                ratio,
            })),
        }
    }

    /// No throttling: every retry is allowed and nothing is counted.
    pub const fn disabled() -> Self {
        Self { bucket: None }
    }

    /// Counts a failed call: one token less (never below zero).
    pub(crate) fn on_failure(&self) {
        if let Some(bucket) = &self.bucket {
            // The bucket is a lone counter: no other memory is ordered by it.
            let _ = bucket
                .tokens
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                    Some(t.saturating_sub(1000))
                });
        }
    }

    /// Counts a successful call: `token_ratio` tokens more, up to `max_tokens`.
    pub(crate) fn on_success(&self) {
        if let Some(bucket) = &self.bucket {
            let _ = bucket
                .tokens
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                    Some(t.saturating_add(bucket.ratio).min(bucket.max))
                });
        }
    }

    /// Whether retries are allowed: more than `max_tokens / 2` tokens remain.
    pub(crate) fn allows_retry(&self) -> bool {
        match &self.bucket {
            Some(bucket) => {
                u64::from(bucket.tokens.load(Ordering::Relaxed)) * 2 > u64::from(bucket.max)
            }
            None => true,
        }
    }

    /// The tokens left (`None` when [`RetryThrottle::disabled`]), for metrics and tests.
    ///
    /// ```
    /// assert_eq!(tonic_intercept::client::RetryThrottle::new(3, 0.25).tokens(), Some(3.0));
    /// ```
    pub fn tokens(&self) -> Option<f64> {
        self.bucket
            .as_ref()
            .map(|bucket| f64::from(bucket.tokens.load(Ordering::Relaxed)) / 1000.0)
    }
}

#[cfg(test)]
#[allow(unreachable_pub)] // the stand-in RPCs of `__doc_rpc!`
mod a6;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::Jitter;

    #[test]
    fn backoff_clamps_out_of_range_and_nan_draws() {
        let policy = RetryPolicy::new();
        assert_eq!(policy.backoff(1, f64::NAN), Duration::ZERO);
        assert_eq!(policy.backoff(1, -3.0), Duration::ZERO);
        assert_eq!(policy.backoff(1, 7.0), Duration::from_millis(100));
        assert_eq!(policy.backoff(0, 1.0), Duration::from_millis(100));
    }

    #[test]
    fn backoff_ceiling_survives_huge_attempts() {
        let policy = RetryPolicy::new().max_backoff(Duration::from_secs(3));
        assert_eq!(policy.backoff_ceiling(u32::MAX), Duration::from_secs(3));
        let shrinking = RetryPolicy::new().backoff_multiplier(0.5);
        assert_eq!(shrinking.backoff_ceiling(2), Duration::from_millis(50));
        assert_eq!(shrinking.backoff_ceiling(u32::MAX), Duration::ZERO);
    }

    #[test]
    fn token_ratio_is_kept_in_thousandths() {
        let bucket = |t: &RetryThrottle| t.bucket.as_ref().map(|b| (b.max, b.ratio));
        assert_eq!(bucket(&RetryThrottle::new(10, 0.1)), Some((10_000, 100)));
        assert_eq!(
            bucket(&RetryThrottle::new(1000, 1.0)),
            Some((1_000_000, 1000))
        );
        assert_eq!(bucket(&RetryThrottle::new(1, 0.0004)), Some((1000, 1)));
        assert_eq!(bucket(&RetryThrottle::new(1, 0.1236)), Some((1000, 124)));
    }

    #[test]
    #[should_panic(expected = "max_tokens must be in 1..=1000")]
    fn throttle_rejects_too_many_tokens() {
        let _ = RetryThrottle::new(1001, 0.1);
    }

    #[test]
    #[should_panic(expected = "token_ratio must be in (0, 1]")]
    fn throttle_rejects_zero_ratio() {
        let _ = RetryThrottle::new(10, 0.0);
    }

    #[test]
    #[should_panic(expected = "max_attempts must be at least 2")]
    fn one_attempt_is_rejected_at_run_time_too() {
        let _ = RetryPolicy::new().max_attempts(1);
    }

    #[test]
    fn throttle_is_exact_under_concurrency() {
        let throttle = RetryThrottle::new(1000, 0.5);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let throttle = throttle.clone();
                scope.spawn(move || {
                    for _ in 0..100 {
                        throttle.on_failure();
                    }
                });
            }
        });
        assert_eq!(throttle.tokens(), Some(600.0));
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let throttle = throttle.clone();
                scope.spawn(move || {
                    for _ in 0..100 {
                        throttle.on_success();
                    }
                });
            }
        });
        assert_eq!(throttle.tokens(), Some(800.0));
    }

    #[test]
    fn jitter_draws_are_spread_over_the_unit_interval() {
        let mut jitter = Jitter::seeded(12345);
        let draws: Vec<f64> = (0..10_000).map(|_| jitter.next_f64()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        for decile in 0..10 {
            let lo = f64::from(decile) / 10.0;
            let n = draws.iter().filter(|&&x| x >= lo && x < lo + 0.1).count();
            assert!((800..1200).contains(&n), "decile {decile}: {n}");
        }
    }

    // The doc examples of what stopped being public, kept as tests.
    /// Was the doc example of `pub struct RetryPolicy {`.
    #[test]
    fn doc_retrypolicy_1() {
        use tonic::Code;

        const POLICY: RetryPolicy = RetryPolicy::new()
            .max_attempts(4)
            .initial_backoff(Duration::from_millis(50))
            .max_backoff(Duration::from_secs(2))
            .backoff_multiplier(1.5)
            .retryable_codes(&[Code::Unavailable, Code::ResourceExhausted])
            .per_attempt_timeout(Duration::from_millis(500));
        assert_eq!(POLICY.attempts(), 4);
        assert!(POLICY.is_retryable(Code::ResourceExhausted));
        assert!(!POLICY.is_retryable(Code::Internal));
    }

    /// Was the doc example of `pub const fn retryable_codes(mut self, codes: &'static [Code]) -> Self`.
    #[test]
    fn doc_retryable_codes() {
        use tonic::Code;
        let policy = RetryPolicy::new().retryable_codes(&[Code::Unavailable, Code::Aborted]);
        assert!(policy.is_retryable(Code::Aborted));
    }

    /// Was the doc example of `pub fn attempt_deadline(&self, remaining: Option<Duration>) -> Option<`.
    #[test]
    fn doc_attempt_deadline_3() {
        let ms = Duration::from_millis;
        let policy = RetryPolicy::new().per_attempt_timeout(ms(300));
        assert_eq!(policy.attempt_deadline(Some(ms(1_000))), Some(ms(300)));
        assert_eq!(policy.attempt_deadline(Some(ms(120))), Some(ms(120)));
        assert_eq!(policy.attempt_deadline(None), Some(ms(300)));
        assert_eq!(RetryPolicy::new().attempt_deadline(None), None);
    }

    /// Was the doc example of `pub fn is_retryable(&self, code: Code) -> bool {`.
    #[test]
    fn doc_is_retryable_4() {
        use tonic::Code;
        let policy = RetryPolicy::new();
        assert!(policy.is_retryable(Code::Unavailable));
        assert!(!policy.is_retryable(Code::DeadlineExceeded));
    }

    /// Was the doc example of `pub fn backoff_ceiling(&self, attempt: u32) -> Duration {`.
    #[test]
    fn doc_backoff_ceiling_5() {
        let policy = RetryPolicy::new(); // 100 ms, x2, max 1 s
        let ceilings: Vec<_> = (1..=5)
            .map(|n| policy.backoff_ceiling(n).as_millis())
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1_000]);
    }

    /// Was the doc example of `pub fn backoff(&self, attempt: u32, random: f64) -> Duration {`.
    #[test]
    fn doc_backoff_6() {
        let policy = RetryPolicy::new(); // 100 ms, x2, max 1 s
        assert_eq!(policy.backoff(1, 0.5), Duration::from_millis(50));
        assert_eq!(policy.backoff(3, 0.25), Duration::from_millis(100));
        assert_eq!(policy.backoff(9, 1.0), Duration::from_secs(1)); // capped
    }

    /// Was the doc example of `pub fn backoff_with(&self, attempt: u32, rng: &mut impl FnMut() -> f64`.
    #[test]
    fn doc_backoff_with_7() {
        let policy = RetryPolicy::new();
        let mut jitter = Jitter::new();
        let wait = policy.backoff_with(2, &mut || jitter.next_f64());
        assert!(wait <= Duration::from_millis(200));
        assert_eq!(
            policy.backoff_with(2, &mut || 0.5),
            Duration::from_millis(100)
        );
    }

    /// Was the doc example of `pub fn decide(`.
    #[test]
    fn doc_decide_8() {
        use tonic::Status;

        let policy = RetryPolicy::new();
        let throttle = RetryThrottle::disabled();
        let status = Status::unavailable("down");
        assert_eq!(
            policy.decide(1, 1, &status, false, &throttle, 0.5),
            RetryDecision::RetryAfter(Duration::from_millis(50))
        );
        assert_eq!(
            policy.decide(1, 1, &status, true, &throttle, 0.5),
            RetryDecision::GiveUp(GiveUpReason::Committed)
        );
        let invalid = Status::invalid_argument("bad");
        assert_eq!(
            policy.decide(1, 1, &invalid, false, &throttle, 0.5),
            RetryDecision::GiveUp(GiveUpReason::NotRetryable)
        );
    }

    /// Was the doc example of `pub enum RetryDecision {`.
    #[test]
    fn doc_retrydecision_9() {
        let d = RetryDecision::RetryAfter(Duration::from_millis(10));
        assert!(d.is_retry());
        assert!(!RetryDecision::GiveUp(GiveUpReason::Throttled).is_retry());
    }

    /// Was the doc example of `pub const fn is_retry(&self) -> bool {`.
    #[test]
    fn doc_is_retry() {
        assert!(RetryDecision::RetryAfter(Duration::ZERO).is_retry());
    }

    /// Was the doc example of `pub const fn as_str(self) -> &'static str {`.
    #[test]
    fn doc_give_up_reason_as_str() {
        assert_eq!(GiveUpReason::Pushback.as_str(), "pushback");
    }

    /// Was the doc example of `pub enum Pushback {`.
    #[test]
    fn doc_pushback_enum() {
        use tonic::metadata::MetadataMap;
        let mut trailers = MetadataMap::new();
        assert_eq!(pushback(&trailers), Pushback::None);
        trailers.insert("grpc-retry-pushback-ms", "250".parse().unwrap());
        assert_eq!(
            pushback(&trailers),
            Pushback::RetryAfter(Duration::from_millis(250))
        );
    }

    /// Was the doc example of `pub fn pushback(metadata: &MetadataMap) -> Pushback {`.
    #[test]
    fn doc_pushback_fn() {
        use tonic::metadata::MetadataMap;
        let mut trailers = MetadataMap::new();
        trailers.insert("grpc-retry-pushback-ms", "-1".parse().unwrap());
        assert_eq!(pushback(&trailers), Pushback::DoNotRetry);
    }

    /// Was the doc example of `pub struct RetryThrottle {`.
    #[test]
    fn doc_retrythrottle_14() {
        let throttle = RetryThrottle::new(10, 0.1);
        let shared = throttle.clone();
        for _ in 0..4 {
            shared.on_failure();
        }
        assert!(throttle.allows_retry()); // 6 > 5
        shared.on_failure();
        assert!(!throttle.allows_retry()); // 5 is not > 5
        throttle.on_success();
        assert!(throttle.allows_retry()); // 5.1 > 5
    }

    /// Was the doc example of `pub const fn disabled() -> Self {`.
    #[test]
    fn doc_disabled() {
        let throttle = RetryThrottle::disabled();
        throttle.on_failure();
        assert!(throttle.allows_retry());
        assert_eq!(throttle.tokens(), None);
    }

    /// Was the doc example of `pub fn on_failure(&self) {`.
    #[test]
    fn doc_on_failure_16() {
        let throttle = RetryThrottle::new(2, 0.5);
        throttle.on_failure();
        assert_eq!(throttle.tokens(), Some(1.0));
    }

    /// Was the doc example of `pub fn on_success(&self) {`.
    #[test]
    fn doc_on_success_17() {
        let throttle = RetryThrottle::new(2, 0.5);
        throttle.on_failure();
        throttle.on_success();
        assert_eq!(throttle.tokens(), Some(1.5));
        throttle.on_success();
        throttle.on_success();
        assert_eq!(throttle.tokens(), Some(2.0));
    }

    /// Was the doc example of `pub fn allows_retry(&self) -> bool {`.
    #[test]
    fn doc_allows_retry_18() {
        let throttle = RetryThrottle::new(2, 0.5);
        assert!(throttle.allows_retry());
        throttle.on_failure();
        assert!(!throttle.allows_retry()); // 1 is not > 1
    }

    /// Was the example of the client guide (`client/mod.rs`).
    #[test]
    fn guide_decisions() {
        use tonic::Status;

        const POLICY: RetryPolicy = RetryPolicy::new()
            .max_attempts(3)
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_secs(1));
        let throttle = RetryThrottle::new(10, 0.1);

        // Attempt 1 failed with UNAVAILABLE: retry after random(0, 100 ms); here random = 0.5.
        let unavailable = Status::unavailable("connection reset");
        assert_eq!(
            POLICY.decide(1, 1, &unavailable, false, &throttle, 0.5),
            RetryDecision::RetryAfter(Duration::from_millis(50)),
        );
        // Attempt 3 was the last one allowed.
        assert_eq!(
            POLICY.decide(3, 3, &unavailable, false, &throttle, 0.5),
            RetryDecision::GiveUp(GiveUpReason::AttemptsExhausted),
        );
    }
}
