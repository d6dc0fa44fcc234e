//! [`RedisIdempotency`]: idempotency keys shared by every replica pointed at one Redis
//! (or Valkey), so a retry that lands on another replica is replayed, not run again.
//!
//! # How
//!
//! One Redis key per idempotency key, `ti:{<package.Service/Method>}:idem:<scope>:<key>`
//! (the braces are a Redis Cluster hash tag: an RPC's keys live on one shard). `<scope>`
//! is `-` for keys global to the RPC, else 32 hex digits: SHA-256 of the caller's
//! identity as its `Hash` writes it (integers little-endian, so every replica of one
//! build agrees; see [`Scope::hash_identity`]). The value is a small protobuf record:
//! the SHA-256 of the encoded request, and either the claim of a running call (a random
//! 128-bit owner token) or the stored response.
//!
//! - **Claim**: one script (`EVALSHA`) runs `SET key <claim> NX PX <ms>`, where `ms` is
//!   the call's remaining deadline, or [`max_claim`](RedisIdempotencyConfig::max_claim)
//!   without one; when the key exists it returns the record and its `PTTL` instead. One
//!   round trip.
//! - **Done**: a replay (the stored response decoded, its metadata, and
//!   `idempotency-replayed: true`); the handler does not run.
//! - **Running**: `ABORTED` "... still running; retry later" with
//!   `grpc-retry-pushback-ms` = the claim's remaining `PTTL`. A duplicate is refused
//!   rather than held waiting: waiting would tie up a slot of this replica for up to
//!   the first call's whole deadline, and by the pushback the first call has either
//!   completed (the retry is replayed) or died (its claim expired: the retry runs).
//! - **Another request under the key** (running or done): `INVALID_ARGUMENT`, as with
//!   the in-process cache.
//! - **Completion**: only a success is stored: a script compares the key's value with
//!   this call's claim and, if it still holds, replaces it with the response (prost
//!   encoded) and its metadata, for [`ttl`](RedisIdempotencyConfig::ttl). A failed call
//!   deletes its claim (compare and delete, before its status goes out), and so does a
//!   cancelled or panicked one (from the ticket's `Drop`, spawned), so a retry runs. A
//!   call that outlives its claim stores nothing.
//! - **Metadata**: every entry of the response's metadata is stored and replayed, ASCII
//!   ones as they are and binary (`-bin`) ones as their decoded bytes, encoded again on
//!   replay; repeated keys keep their order. The status of a stored call is always
//!   `OK`: failures are never stored.
//!
//! # When Redis fails
//!
//! Each round trip is bounded by [`budget`](RedisIdempotencyConfig::budget) (and the
//! connection's own short timeouts). When the claim cannot be made in time, the call is
//! refused with `UNAVAILABLE` ([`PolicyKind::Idempotency`]): an RPC that declares
//! idempotency would rather not run than run twice. With
//! [`fail_open`](RedisIdempotencyConfig::fail_open) it runs without deduplication
//! instead. Either way [`errors`](RedisIdempotency::errors) counts it and a warning is
//! logged at most once a second. The store reconnects by itself once Redis is back.
//!
//! # What is guaranteed, and what a failover can lose
//!
//! With one Redis that stays up: for a key and scope, at most one call runs at a time,
//! the first success is replayed to every retry on any replica for the TTL, and a retry
//! after a failure runs. This is best-effort deduplication, not exactly-once:
//!
//! - Redis replicates asynchronously: a failover to a replica can lose a fresh claim
//!   (a duplicate then runs concurrently) or a stored result (a retry runs again). So
//!   can a restart of a Redis without persistence, and eviction under `maxmemory`.
//! - A call whose completion cannot reach Redis leaves its claim until it expires: its
//!   retries are refused with `ABORTED` until then, and run afterwards.
//! - With `fail_open`, calls made while Redis is unreachable are not deduplicated.
//!
//! Handlers with effects that must never repeat still need their own guard (a unique
//! constraint in their database, say); this store removes the common duplicates, from
//! client retries across replicas, at one round trip per keyed call.
//!
//! [`Scope::hash_identity`]: super::Scope::hash_identity

use std::fmt;
use std::hash::Hasher;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, IntoConnectionInfo, RedisError, Script, Value};
use prost::Message;
use ring::digest;
use tokio::time::Instant;
use tonic::metadata::{
    AsciiMetadataKey, AsciiMetadataValue, BinaryMetadataKey, BinaryMetadataValue, KeyAndValueRef,
    MetadataMap, MetadataValue,
};
use tonic::{Response, Status};

use super::{Begin, IdempotencyStore, IdempotencyTicket, Scope};
use crate::call::{Call, PolicyKind};
use crate::rpc::Rpc;
use crate::wire::{IDEMPOTENCY_REPLAYED, RETRY_PUSHBACK};

/// The claim, in one round trip. KEYS[1]: the key; ARGV[1]: the claim record; ARGV[2]:
/// its life in ms. Returns `{1}` when claimed, else `{0, record, pttl}`.
const BEGIN_LUA: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1}
end
return {0, redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
";

/// Stores a success if the claim still holds. KEYS[1]: the key; ARGV[1]: the claim
/// record (it holds the owner token); ARGV[2]: the done record; ARGV[3]: the TTL in ms.
const COMPLETE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// Frees the key if the claim still holds. KEYS[1]: the key; ARGV[1]: the claim record.
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// The TTL, claim bound, timeouts and failure policy of a [`RedisIdempotency`].
///
/// ```
/// use std::time::Duration;
/// use tonic_intercept::idempotency::RedisIdempotencyConfig;
///
/// const CONFIG: RedisIdempotencyConfig = RedisIdempotencyConfig::new()
///     .ttl(Duration::from_secs(3600))
///     .budget(Duration::from_millis(30))
///     .fail_open(true);
/// assert_eq!(CONFIG.max_claim, Duration::from_secs(30));
/// assert!(CONFIG.fail_open);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisIdempotencyConfig {
    /// How long a completed call's response is replayed. Default 24 hours (the
    /// Idempotency-Key draft's and Stripe's choice).
    pub ttl: Duration,
    /// How long a running call holds its key when it has no deadline (with one, the
    /// claim expires with the deadline). Default 30 s.
    pub max_claim: Duration,
    /// The longest one round trip may take, connecting included; past it the call is
    /// refused (or runs, with [`fail_open`](Self::fail_open)). Default 100 ms.
    pub budget: Duration,
    /// How long one command waits for its answer (the `redis` crate's default is 500 ms,
    /// far too long on a per-call path). Default 50 ms.
    pub response_timeout: Duration,
    /// How long one connection attempt may take. Default 100 ms.
    pub connect_timeout: Duration,
    /// Whether a call runs, without deduplication, when Redis cannot be asked in time.
    /// Default `false`: it is refused with `UNAVAILABLE`.
    pub fail_open: bool,
}

impl Default for RedisIdempotencyConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisIdempotencyConfig {
    /// The defaults: 24 h TTL, 30 s claims without a deadline, 100 ms budget, 50 ms
    /// response and 100 ms connect timeouts, fail closed.
    pub const fn new() -> Self {
        Self {
            ttl: Duration::from_secs(24 * 3600),
            max_claim: Duration::from_secs(30),
            budget: Duration::from_millis(100),
            response_timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_millis(100),
            fail_open: false,
        }
    }

    /// Sets [`ttl`](Self::ttl).
    pub const fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets [`max_claim`](Self::max_claim).
    pub const fn max_claim(mut self, max_claim: Duration) -> Self {
        self.max_claim = max_claim;
        self
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

    /// Sets [`fail_open`](Self::fail_open).
    pub const fn fail_open(mut self, fail_open: bool) -> Self {
        self.fail_open = fail_open;
        self
    }
}

/// The idempotency keys of the unary RPC `R`, shared through Redis by every replica: a
/// retry is replayed by whichever replica it reaches. See [the module](self) for the
/// protocol, the failure policy and what a failover can lose.
///
/// Each replica builds its own (one reconnecting connection); clones share it. Use it
/// as the in-process [`IdempotencyCache`](super::IdempotencyCache) is used:
///
/// ```no_run
/// use std::time::Duration;
/// use tonic_intercept::idempotency::{RedisIdempotency, RedisIdempotencyConfig};
/// # #[derive(Clone, PartialEq, prost::Message)]
/// # pub struct PayRequest { #[prost(uint64, tag = "1")] pub cents: u64 }
/// # #[derive(Clone, PartialEq, prost::Message)]
/// # pub struct Payment { #[prost(uint64, tag = "1")] pub id: u64 }
/// # tonic_intercept::__doc_rpc!(Pay, "pay.v1.Payments", "Pay", Unary, PayRequest, Payment);
///
/// /// The service's state: `#[intercept(auth(self.tokens), idempotency(self.payments, Pay))]`.
/// struct Payments {
///     payments: RedisIdempotency<Pay>,
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = RedisIdempotencyConfig::new().ttl(Duration::from_secs(24 * 3600));
/// let service = Payments {
///     payments: RedisIdempotency::new("redis://127.0.0.1:6379/", config)?,
/// };
/// // ... serve it; later:
/// println!("{} decisions taken without Redis", service.payments.errors());
/// # Ok(()) }
/// ```
pub struct RedisIdempotency<R: Rpc> {
    shared: Arc<Shared>,
    _rpc: PhantomData<fn() -> R>,
}

impl<R: Rpc> Clone for RedisIdempotency<R> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            _rpc: PhantomData,
        }
    }
}

impl<R: Rpc> fmt::Debug for RedisIdempotency<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisIdempotency")
            .field("rpc", &R::DESCRIPTOR.path)
            .field("config", &self.shared.config)
            .field("errors", &self.errors())
            .finish_non_exhaustive()
    }
}

impl<R: Rpc> RedisIdempotency<R> {
    /// A store on the Redis at `url` (`redis://host:port/db`). Connects lazily, on the
    /// first keyed call, and reconnects by itself after Redis comes back. Must be called
    /// inside a tokio runtime.
    ///
    /// # Errors
    /// When `url` is not a Redis address.
    pub fn new(
        url: impl IntoConnectionInfo,
        config: RedisIdempotencyConfig,
    ) -> Result<Self, RedisError> {
        let client = Client::open(url)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(config.connect_timeout))
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config)?;
        Ok(Self {
            shared: Arc::new(Shared {
                connection,
                begin: Script::new(BEGIN_LUA),
                complete: Script::new(COMPLETE_LUA),
                release: Script::new(RELEASE_LUA),
                config,
                errors: AtomicU64::new(0),
                last_warning: AtomicU64::new(u64::MAX),
                born: Instant::now(),
            }),
            _rpc: PhantomData,
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &RedisIdempotencyConfig {
        &self.shared.config
    }

    /// How many round trips to Redis failed or outlived the budget: claims (each one a
    /// call refused, or run without deduplication under `fail_open`), completions and
    /// releases. A record this build cannot read counts too.
    pub fn errors(&self) -> u64 {
        self.shared.errors.load(Ordering::Relaxed)
    }
}

impl<R: Rpc> IdempotencyStore<R> for RedisIdempotency<R>
where
    R::Response: Default,
{
    type Ticket = RedisTicket<R>;

    fn begin(
        &self,
        call: &Call,
        key: &str,
        scope: Scope<'_>,
        request: &R::Request,
    ) -> impl Future<Output = Result<Begin<R, RedisTicket<R>>, (PolicyKind, Status)>> + Send {
        // Everything borrowed from the call is read before the first `await`.
        let method = call.rpc().method;
        let key = redis_key(call.rpc().path, scope, key);
        let fingerprint = sha256(&request.encode_to_vec());
        let claim = Record {
            fingerprint: fingerprint.to_vec(),
            owner: owner_token().to_vec(),
            ..Record::default()
        }
        .encode_to_vec();
        let life = millis(call.remaining().unwrap_or(self.shared.config.max_claim));
        let shared = self.shared.clone();
        async move {
            let reply = shared
                .invoke(&shared.begin, &key, &[&claim, life.to_string().as_bytes()])
                .await
                .and_then(parse_begin);
            let (record, pttl) = match reply {
                Ok(None) => {
                    return Ok(Begin::Run(RedisTicket {
                        shared,
                        key,
                        claim,
                        fingerprint,
                        armed: true,
                        _rpc: PhantomData,
                    }));
                }
                Ok(Some(held)) => held,
                Err(error) => return shared.without_store(method, &key, &error),
            };
            if record.fingerprint != fingerprint {
                return Err(invalid_request(method));
            }
            if !record.done {
                return Err(still_running(method, pttl));
            }
            match replay::<R>(record) {
                Ok(response) => Ok(Begin::Replay(response)),
                Err(error) => shared.without_store(method, &key, &error),
            }
        }
    }
}

/// The claim of a running call on its key in Redis, from [`RedisIdempotency`]'s
/// `begin`: [`complete`](IdempotencyTicket::complete) stores a success, or frees the key
/// after a failure; dropped without completing (a cancelled or panicked call), it frees
/// the key from a spawned task.
#[must_use = "dropping the ticket frees the key without storing the response"]
pub struct RedisTicket<R: Rpc> {
    shared: Arc<Shared>,
    key: String,
    /// The claim record as written: `GET key == claim` means this call still owns it.
    claim: Vec<u8>,
    fingerprint: [u8; 32],
    /// Whether `Drop` must free the key.
    armed: bool,
    _rpc: PhantomData<fn() -> R>,
}

impl<R: Rpc> fmt::Debug for RedisTicket<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTicket")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<R: Rpc> IdempotencyTicket<R> for RedisTicket<R> {
    fn complete(
        mut self,
        result: &Result<Response<R::Response>, Status>,
    ) -> impl Future<Output = ()> + Send {
        let done = result
            .as_ref()
            .ok()
            .map(|response| done_record(&self.fingerprint, response).encode_to_vec());
        async move {
            let shared = self.shared.clone();
            let outcome = match &done {
                Some(done) => {
                    let ttl = millis(shared.config.ttl).to_string();
                    shared
                        .invoke(
                            &shared.complete,
                            &self.key,
                            &[&self.claim, done, ttl.as_bytes()],
                        )
                        .await
                }
                // Freed before the failure goes out, so the client's retry runs.
                None => {
                    shared
                        .invoke(&shared.release, &self.key, &[&self.claim])
                        .await
                }
            };
            // On an error the claim expires by itself; retrying from `Drop` would most
            // likely fail the same way.
            self.armed = false;
            if let Err(error) = outcome {
                shared.failed(&self.key, &error);
            }
        }
    }
}

impl<R: Rpc> Drop for RedisTicket<R> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Cancelled or panicked: free the key from a task (`Drop` cannot wait). Outside
        // a runtime the claim expires by itself.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            let key = std::mem::take(&mut self.key);
            let claim = std::mem::take(&mut self.claim);
            runtime.spawn(async move {
                if let Err(error) = shared.invoke(&shared.release, &key, &[&claim]).await {
                    shared.failed(&key, &error);
                }
            });
        }
    }
}

/// What the replicas' handles on one store share.
struct Shared {
    connection: ConnectionManager,
    begin: Script,
    complete: Script,
    release: Script,
    config: RedisIdempotencyConfig,
    errors: AtomicU64,
    /// Milliseconds since `born` of the last warning (`u64::MAX`: none yet).
    last_warning: AtomicU64,
    born: Instant,
}

/// Why Redis could not decide.
#[derive(Debug)]
enum StoreError {
    Timeout(Duration),
    Failed(String),
    /// A reply or record this build cannot read.
    Unreadable(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Timeout(budget) => {
                write!(f, "the idempotency store did not answer within {budget:?}")
            }
            StoreError::Failed(why) => write!(f, "the idempotency store failed: {why}"),
            StoreError::Unreadable(what) => {
                write!(f, "the idempotency store answered {what}")
            }
        }
    }
}

impl Shared {
    /// One script call (`EVALSHA`, loaded again on `NOSCRIPT`), bounded by the budget.
    async fn invoke(
        &self,
        script: &Script,
        key: &str,
        args: &[&[u8]],
    ) -> Result<Value, StoreError> {
        let mut connection = self.connection.clone();
        let mut invocation = script.key(key);
        for arg in args {
            invocation.arg(*arg);
        }
        tokio::time::timeout(self.config.budget, invocation.invoke_async(&mut connection))
            .await
            .map_err(|_| StoreError::Timeout(self.config.budget))?
            .map_err(|e| StoreError::Failed(e.to_string()))
    }

    /// Counts a failed round trip and warns, at most once a second.
    fn failed(&self, key: &str, error: &StoreError) {
        let errors = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
        let now_ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let last = self.last_warning.load(Ordering::Relaxed);
        if (last == u64::MAX || now_ms.saturating_sub(last) >= 1000)
            && self
                .last_warning
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                key,
                fail_open = self.config.fail_open,
                errors,
                "{error}; deciding without Redis"
            );
        }
    }

    /// A claim Redis could not decide: the call runs without deduplication
    /// (`fail_open`), or is refused with `UNAVAILABLE`.
    fn without_store<R: Rpc>(
        &self,
        method: &str,
        key: &str,
        error: &StoreError,
    ) -> Result<Begin<R, RedisTicket<R>>, (PolicyKind, Status)> {
        self.failed(key, error);
        if self.config.fail_open {
            Ok(Begin::Bypass)
        } else {
            Err(unavailable(method))
        }
    }
}

/// The claim script's reply: `None` when claimed, else the record held and its `PTTL`.
fn parse_begin(reply: Value) -> Result<Option<(Record, u64)>, StoreError> {
    let unreadable = |reply: &Value| StoreError::Unreadable(format!("{reply:?} to a claim"));
    let Value::Array(items) = &reply else {
        return Err(unreadable(&reply));
    };
    match items.as_slice() {
        [Value::Int(1)] => Ok(None),
        [Value::Int(0), Value::BulkString(record), Value::Int(pttl)] => {
            let record = Record::decode(record.as_slice())
                .map_err(|e| StoreError::Unreadable(format!("a record it cannot read: {e}")))?;
            Ok(Some((record, u64::try_from(*pttl).unwrap_or(0))))
        }
        _ => Err(unreadable(&reply)),
    }
}

/// The stored response, as a replay.
fn replay<R: Rpc>(record: Record) -> Result<Response<R::Response>, StoreError>
where
    R::Response: Default,
{
    let unreadable = |what: String| StoreError::Unreadable(format!("a stored response {what}"));
    let message = R::Response::decode(record.response.as_slice())
        .map_err(|e| unreadable(format!("that is not a `{}`: {e}", R::DESCRIPTOR.path)))?;
    let mut metadata = MetadataMap::with_capacity(record.metadata.len() + 1);
    for entry in record.metadata {
        let ok = if entry.binary {
            BinaryMetadataKey::from_bytes(entry.key.as_bytes())
                .map(|key| metadata.append_bin(key, BinaryMetadataValue::from_bytes(&entry.value)))
                .is_ok()
        } else {
            match (
                AsciiMetadataKey::from_bytes(entry.key.as_bytes()),
                AsciiMetadataValue::try_from(entry.value.as_slice()),
            ) {
                (Ok(key), Ok(value)) => {
                    metadata.append(key, value);
                    true
                }
                _ => false,
            }
        };
        if !ok {
            return Err(unreadable(format!("with invalid metadata `{}`", entry.key)));
        }
    }
    metadata.insert(IDEMPOTENCY_REPLAYED, MetadataValue::from_static("true"));
    Ok(Response::from_parts(
        metadata,
        message,
        tonic::Extensions::new(),
    ))
}

/// The record of a completed call: its request's fingerprint, response and metadata.
fn done_record<M: Message>(fingerprint: &[u8; 32], response: &Response<M>) -> Record {
    let metadata = response
        .metadata()
        .iter()
        .filter_map(|entry| match entry {
            KeyAndValueRef::Ascii(key, value) => Some(Entry {
                key: key.as_str().to_owned(),
                value: value.as_bytes().to_vec(),
                binary: false,
            }),
            // A value that is not valid base64 could not be sent either; it is dropped.
            KeyAndValueRef::Binary(key, value) => value.to_bytes().ok().map(|bytes| Entry {
                key: key.as_str().to_owned(),
                value: bytes.to_vec(),
                binary: true,
            }),
        })
        .collect();
    Record {
        fingerprint: fingerprint.to_vec(),
        owner: Vec::new(),
        done: true,
        response: response.get_ref().encode_to_vec(),
        metadata,
    }
}

/// The value of an idempotency key in Redis.
#[derive(Clone, PartialEq, Message)]
struct Record {
    /// SHA-256 of the encoded request.
    #[prost(bytes = "vec", tag = "1")]
    fingerprint: Vec<u8>,
    /// While running: the claim's random owner token (which makes the claim unique).
    #[prost(bytes = "vec", tag = "2")]
    owner: Vec<u8>,
    /// Whether the call completed (and `response` holds its answer).
    #[prost(bool, tag = "3")]
    done: bool,
    /// The encoded response message.
    #[prost(bytes = "vec", tag = "4")]
    response: Vec<u8>,
    /// The response metadata, in order.
    #[prost(message, repeated, tag = "5")]
    metadata: Vec<Entry>,
}

/// One response metadata entry.
#[derive(Clone, PartialEq, Message)]
struct Entry {
    #[prost(string, tag = "1")]
    key: String,
    /// ASCII: the value; binary: its decoded bytes.
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
    #[prost(bool, tag = "3")]
    binary: bool,
}

/// `ti:{<rpc>}:idem:<scope>:<key>`, `<rpc>` the path without its leading slash.
fn redis_key(path: &str, scope: Scope<'_>, key: &str) -> String {
    use std::fmt::Write as _;
    let path = path.trim_start_matches('/');
    let mut out = String::with_capacity(20 + path.len() + 32 + key.len());
    let _ = write!(out, "ti:{{{path}}}:idem:");
    let mut hasher = Sha256Hasher(digest::Context::new(&digest::SHA256));
    if scope.hash_identity(&mut hasher) {
        for byte in &hasher.0.finish().as_ref()[..16] {
            let _ = write!(out, "{byte:02x}");
        }
    } else {
        out.push('-');
    }
    out.push(':');
    out.push_str(key);
    out
}

/// SHA-256 as a [`Hasher`], integers written little-endian and `usize` as 64 bits, so
/// the digest of a `Hash` value is the same on every platform.
struct Sha256Hasher(digest::Context);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finish();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_ref()[..8]);
        u64::from_le_bytes(first)
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn write_u16(&mut self, n: u16) {
        self.write(&n.to_le_bytes());
    }
    fn write_u32(&mut self, n: u32) {
        self.write(&n.to_le_bytes());
    }
    fn write_u64(&mut self, n: u64) {
        self.write(&n.to_le_bytes());
    }
    fn write_u128(&mut self, n: u128) {
        self.write(&n.to_le_bytes());
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

/// 128 random bits: tells this claim from every other.
fn owner_token() -> [u8; 16] {
    let (a, b) = (
        crate::util::random_nonzero_u64(),
        crate::util::random_nonzero_u64(),
    );
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out
}

/// Whole milliseconds, at least 1 (`PX 0` is an error).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cold]
#[inline(never)]
fn invalid_request(method: &str) -> (PolicyKind, Status) {
    (
        PolicyKind::Idempotency,
        Status::invalid_argument(format!(
            "{method}: idempotency key reused with a different request"
        )),
    )
}

#[cold]
#[inline(never)]
fn still_running(method: &str, pttl_ms: u64) -> (PolicyKind, Status) {
    let mut metadata = MetadataMap::new();
    metadata.insert(RETRY_PUSHBACK, MetadataValue::from(pttl_ms.max(1)));
    (
        PolicyKind::Idempotency,
        Status::with_metadata(
            tonic::Code::Aborted,
            format!("{method}: a call with this idempotency key is still running; retry later"),
            metadata,
        ),
    )
}

#[cold]
#[inline(never)]
fn unavailable(method: &str) -> (PolicyKind, Status) {
    (
        PolicyKind::Idempotency,
        Status::unavailable(format!(
            "{method}: the idempotency store is unavailable; retry later"
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_by_rpc_and_scope() {
        let path = "/pay.v1.Payments/Pay";
        assert_eq!(
            redis_key(path, Scope::GLOBAL, "k1"),
            "ti:{pay.v1.Payments/Pay}:idem:-:k1"
        );
        let alice = redis_key(path, Scope::of(&"alice"), "k1");
        let prefix = "ti:{pay.v1.Payments/Pay}:idem:";
        let scope = &alice[prefix.len()..alice.len() - ":k1".len()];
        assert_eq!(scope.len(), 32);
        assert!(scope.bytes().all(|b| b.is_ascii_hexdigit()));
        // A fixed function: the same on every replica (here: SHA-256 of "alice", 0xff).
        let mut bytes = b"alice".to_vec();
        bytes.push(0xff);
        let expected: String = sha256(&bytes)[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(scope, expected);
        assert_ne!(alice, redis_key(path, Scope::of(&"bob"), "k1"));
    }

    #[test]
    fn a_done_record_round_trips_its_metadata() {
        let mut response = Response::new(());
        response
            .metadata_mut()
            .append("x-order", "7".parse().unwrap());
        response
            .metadata_mut()
            .append("x-order", "8".parse().unwrap());
        response
            .metadata_mut()
            .insert_bin("x-raw-bin", BinaryMetadataValue::from_bytes(&[0, 159, 255]));
        let record = done_record(&[1; 32], &response);
        let bytes = record.encode_to_vec();
        let record = Record::decode(bytes.as_slice()).unwrap();
        assert!(record.done);
        let metadata = record.metadata.clone();
        assert_eq!(metadata.len(), 3);
        assert!(metadata[2].binary);
        assert_eq!(metadata[2].value, [0, 159, 255]);

        let mut replayed = MetadataMap::new();
        for entry in metadata {
            if entry.binary {
                replayed.append_bin(
                    BinaryMetadataKey::from_bytes(entry.key.as_bytes()).unwrap(),
                    BinaryMetadataValue::from_bytes(&entry.value),
                );
            } else {
                replayed.append(
                    AsciiMetadataKey::from_bytes(entry.key.as_bytes()).unwrap(),
                    AsciiMetadataValue::try_from(entry.value.as_slice()).unwrap(),
                );
            }
        }
        let orders: Vec<_> = replayed.get_all("x-order").iter().collect();
        assert_eq!(orders, ["7", "8"]);
        assert_eq!(
            replayed.get_bin("x-raw-bin").unwrap().to_bytes().unwrap(),
            &[0u8, 159, 255][..]
        );
    }

    #[test]
    fn millis_are_at_least_one() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_micros(2500)), 2);
        assert_eq!(millis(Duration::from_secs(30)), 30_000);
    }
}
