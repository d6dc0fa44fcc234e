//! [`RedisGcra`]: GCRA in one Lua script on Redis (or Valkey), after go-redis's
//! `redis_rate`, with integer microseconds and the clock read inside Redis.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, IntoConnectionInfo, RedisError, Script};
use tokio::time::Instant;

use super::local::{DenyCache, Failures};
use super::{BackendError, Decision, FailurePolicy, RateBackend, RateKey, RateLimit};

/// GCRA in one round trip. KEYS[1]: the bucket; ARGV[1]: the emission interval in µs;
/// ARGV[2]: the burst. The clock is Redis's (`TIME`), so replicas with skewed clocks
/// agree; Redis 7 replicates the script's effects (the `SET`), not the script. Returns
/// `{allowed, remaining, retry_after_us, reset_after_us}` (`retry_after_us` is -1 when
/// allowed). Times are integer µs; a double holds them exactly (< 2^53).
const GCRA_LUA: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local key = KEYS[1]
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', key) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
local reset_after = new_tat - now
redis.call('SET', key, new_tat, 'PX', math.ceil(reset_after / 1000))
return {1, math.floor((now - allow_at) / interval), -1, reset_after}
"#;

/// The timeouts, budget and failure policy of a [`RedisGcra`].
///
/// ```
/// use std::time::Duration;
/// use tonic_intercept::backend::{FailurePolicy, RedisGcraConfig};
///
/// let config = RedisGcraConfig::new()
///     .budget(Duration::from_millis(30))
///     .failure_policy(FailurePolicy::FailClosed);
/// assert_eq!(config.response_timeout, Duration::from_millis(50));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisGcraConfig {
    /// The longest a check may take, connecting included; past it the failure policy
    /// decides. Default 100 ms.
    pub budget: Duration,
    /// How long one command waits for its answer (the `redis` crate's default is 500 ms,
    /// far too long on a per-call path). Default 50 ms.
    pub response_timeout: Duration,
    /// How long one connection attempt may take. Default 100 ms.
    pub connect_timeout: Duration,
    /// What a check does when Redis fails or is slower than the budget. Default
    /// [`FailurePolicy::FailOpen`].
    pub failure_policy: FailurePolicy,
    /// How many refused keys are remembered locally (refused again without a round trip
    /// until their `retry_after`). Default 10 000.
    pub deny_cache_capacity: usize,
}

impl Default for RedisGcraConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisGcraConfig {
    /// The defaults: 100 ms budget, 50 ms response and 100 ms connect timeouts, fail
    /// open, 10 000 cached denials.
    pub const fn new() -> Self {
        Self {
            budget: Duration::from_millis(100),
            response_timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_millis(100),
            failure_policy: FailurePolicy::FailOpen,
            deny_cache_capacity: 10_000,
        }
    }

    /// Sets [`budget`](Self::budget).
    pub const fn budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// Sets [`response_timeout`](Self::response_timeout).
    pub const fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub const fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`failure_policy`](Self::failure_policy).
    pub const fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }

    /// Sets [`deny_cache_capacity`](Self::deny_cache_capacity).
    pub const fn deny_cache_capacity(mut self, capacity: usize) -> Self {
        self.deny_cache_capacity = capacity;
        self
    }
}

/// Call rates shared across replicas through Redis: GCRA in one Lua script
/// (`EVALSHA`, loaded again on `NOSCRIPT`), one round trip per admitted call.
///
/// Each replica builds its own `RedisGcra` (one reconnecting `ConnectionManager`); all
/// replicas pointed at one Redis share every [`RateKey`]'s bucket. A refused key is
/// refused locally, without a round trip, until its `retry_after`. A check never takes
/// longer than [`RedisGcraConfig::budget`]; on an error or a timeout the
/// [`FailurePolicy`] decides and [`errors`](Self::errors) counts it.
///
/// ```no_run
/// use std::time::Duration;
/// use tonic_intercept::backend::{RateBackend, RateKey, RateLimit, RedisGcra, RedisGcraConfig};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let gcra = RedisGcra::new("redis://127.0.0.1:6379/", RedisGcraConfig::new())?;
/// let key = RateKey::per_identity("users.v1.UserService/GetUser", "alice");
/// let limit = RateLimit::new(5, Duration::from_secs(60)).burst(5);
/// let decision = gcra.check(&key, limit).await?;
/// println!("{decision:?}, {} round trips", gcra.round_trips());
/// # Ok(()) }
/// ```
pub struct RedisGcra {
    connection: ConnectionManager,
    script: Script,
    config: RedisGcraConfig,
    denials: DenyCache,
    failures: Failures,
    round_trips: AtomicU64,
}

impl fmt::Debug for RedisGcra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisGcra")
            .field("config", &self.config)
            .field("errors", &self.errors())
            .field("round_trips", &self.round_trips())
            .finish_non_exhaustive()
    }
}

impl RedisGcra {
    /// A backend on the Redis at `url` (`redis://host:port/db`). Connects lazily, on the
    /// first check, and reconnects by itself after Redis comes back. Must be called
    /// inside a tokio runtime.
    ///
    /// # Errors
    /// When `url` is not a Redis address.
    pub fn new(url: impl IntoConnectionInfo, config: RedisGcraConfig) -> Result<Self, RedisError> {
        let client = Client::open(url)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(config.connect_timeout))
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config)?;
        Ok(Self {
            connection,
            script: Script::new(GCRA_LUA),
            config,
            denials: DenyCache::new(config.deny_cache_capacity),
            failures: Failures::new(config.failure_policy, config.deny_cache_capacity),
            round_trips: AtomicU64::new(0),
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &RedisGcraConfig {
        &self.config
    }

    /// How many decisions were taken without Redis (an error or a timeout), under either
    /// failure policy.
    pub fn errors(&self) -> u64 {
        self.failures.count()
    }

    /// How many checks went to Redis (one script call each; a denial served from the
    /// local cache is not one).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// One script call, bounded by the budget.
    async fn ask(&self, key: &RateKey, limit: RateLimit) -> Result<[i64; 4], BackendError> {
        let interval = u64::try_from(limit.emission_interval().as_micros()).unwrap_or(u64::MAX);
        let mut connection = self.connection.clone();
        let mut invocation = self.script.key(key.as_str());
        invocation.arg(interval).arg(limit.burst);
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let reply: Vec<i64> =
            tokio::time::timeout(self.config.budget, invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| BackendError::Timeout(self.config.budget))?
                .map_err(|e| {
                    if e.is_timeout() {
                        BackendError::Timeout(self.config.response_timeout)
                    } else {
                        BackendError::Failed(e.to_string())
                    }
                })?;
        <[i64; 4]>::try_from(reply)
            .map_err(|r| BackendError::Failed(format!("unexpected reply from the script: {r:?}")))
    }
}

/// Microseconds from Redis as a `Duration` (negative ones as zero).
fn micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

impl RateBackend for RedisGcra {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn check(&self, key: &RateKey, limit: RateLimit) -> Result<Decision, BackendError> {
        let now = Instant::now();
        if let Some(denied) = self.denials.cached(key, now) {
            return Ok(denied);
        }
        match self.ask(key, limit).await {
            Ok([1, remaining, _, reset_after]) => Ok(Decision::Allowed {
                remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                reset_after: micros(reset_after),
            }),
            Ok([_, _, retry_after, reset_after]) => {
                let (retry_after, reset_after) = (micros(retry_after), micros(reset_after));
                self.denials.remember(key, now, retry_after, reset_after);
                Ok(Decision::Denied {
                    retry_after,
                    reset_after,
                })
            }
            Err(error) => self.failures.decide("Redis", key, limit, error),
        }
    }
}
