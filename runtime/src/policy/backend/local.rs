//! What every shared backend keeps in the replica itself: the cache of denials, the
//! in-process buckets of [`FailurePolicy::FallbackLocal`](super::FailurePolicy) and the
//! count (and rate-limited warning) of decisions taken without the backend. One
//! implementation for `RedisGcra` and `EnvoyRls`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::{BackendError, Decision, FailurePolicy, RateKey, RateLimit};

/// A denial remembered until its retry time.
#[derive(Debug, Clone, Copy)]
struct CachedDenial {
    retry_at: Instant,
    reset_at: Instant,
}

/// Denials remembered until their retry time, at most `capacity` of them: a caller
/// already refused is refused again without a round trip.
#[derive(Debug)]
pub(super) struct DenyCache {
    capacity: usize,
    denials: Mutex<HashMap<RateKey, CachedDenial>>,
}

impl DenyCache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            denials: Mutex::new(HashMap::new()),
        }
    }

    /// The cached denial of `key`, if it still holds at `now`.
    pub(super) fn cached(&self, key: &RateKey, now: Instant) -> Option<Decision> {
        let denials = self.denials.lock().unwrap_or_else(PoisonError::into_inner);
        let denial = denials.get(key)?;
        (denial.retry_at > now).then(|| Decision::Denied {
            retry_after: denial.retry_at - now,
            reset_after: denial.reset_at.saturating_duration_since(now),
        })
    }

    /// Remembers a denial; when the cache is full, expired entries go first, and if none
    /// has expired the denial is not cached (the next check asks the backend again).
    pub(super) fn remember(
        &self,
        key: &RateKey,
        now: Instant,
        retry_after: Duration,
        reset_after: Duration,
    ) {
        let mut denials = self.denials.lock().unwrap_or_else(PoisonError::into_inner);
        if denials.len() >= self.capacity && !denials.contains_key(key) {
            denials.retain(|_, d| d.retry_at > now);
            if denials.len() >= self.capacity {
                return;
            }
        }
        denials.insert(
            key.clone(),
            CachedDenial {
                retry_at: now + retry_after,
                reset_at: now + reset_after,
            },
        );
    }
}

/// GCRA in process, for [`FailurePolicy::FallbackLocal`](super::FailurePolicy): one TAT
/// per key, at most `capacity` keys.
#[derive(Debug)]
pub(super) struct LocalGcra {
    capacity: usize,
    tats: Mutex<HashMap<RateKey, Instant>>,
}

impl LocalGcra {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            tats: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token of `key`'s bucket: admitted calls are [`Decision::Unchecked`]
    /// (decided without the backend), refused ones [`Decision::UncheckedDenied`]. When full,
    /// buckets that are full again are forgotten (nothing is lost); if none is, the call
    /// is admitted without a bucket.
    pub(super) fn check(&self, key: &RateKey, limit: RateLimit) -> Decision {
        let now = Instant::now();
        let interval = limit.emission_interval();
        let burst = interval.saturating_mul(limit.burst);
        let mut tats = self.tats.lock().unwrap_or_else(PoisonError::into_inner);
        if tats.len() >= self.capacity && !tats.contains_key(key) {
            tats.retain(|_, tat| *tat > now);
            if tats.len() >= self.capacity {
                return Decision::Unchecked;
            }
        }
        let tat = tats.get(key).map_or(now, |&tat| tat.max(now));
        let new_tat = tat + interval;
        if now + burst < new_tat {
            return Decision::UncheckedDenied {
                retry_after: new_tat - (now + burst),
            };
        }
        tats.insert(key.clone(), new_tat);
        Decision::Unchecked
    }
}

/// Decisions taken without the backend: the failure policy (with its fallback buckets),
/// their count, and a warning at most once a second.
#[derive(Debug)]
pub(super) struct Failures {
    policy: FailurePolicy,
    fallback: LocalGcra,
    errors: AtomicU64,
    /// Milliseconds since `born` of the last warning (`u64::MAX`: none yet).
    last_warning: AtomicU64,
    born: Instant,
}

impl Failures {
    /// Decides by `policy`; the fallback buckets hold at most `capacity` keys.
    pub(super) fn new(policy: FailurePolicy, capacity: usize) -> Self {
        Self {
            policy,
            fallback: LocalGcra::new(capacity),
            errors: AtomicU64::new(0),
            last_warning: AtomicU64::new(u64::MAX),
            born: Instant::now(),
        }
    }

    /// How many decisions were taken without the backend.
    pub(super) fn count(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Decides a check of `key` that `backend` (`Redis`, `the rate limit service`) could
    /// not answer: applies the failure policy, counts the decision and warns at most once
    /// a second.
    pub(super) fn decide(
        &self,
        backend: &str,
        key: &RateKey,
        limit: RateLimit,
        error: BackendError,
    ) -> Result<Decision, BackendError> {
        if self.record() {
            tracing::warn!(
                key = %key,
                policy = ?self.policy,
                errors = self.count(),
                "{error}; deciding without {backend}"
            );
        }
        match self.policy {
            FailurePolicy::FailOpen => Ok(Decision::Unchecked),
            FailurePolicy::FailClosed => Err(error),
            FailurePolicy::FallbackLocal => Ok(self.fallback.check(key, limit)),
        }
    }

    /// Counts one; true when the caller should warn (the first time, then at most once a
    /// second).
    fn record(&self) -> bool {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let now_ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let last = self.last_warning.load(Ordering::Relaxed);
        (last == u64::MAX || now_ms.saturating_sub(last) >= 1000)
            && self
                .last_warning
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}
