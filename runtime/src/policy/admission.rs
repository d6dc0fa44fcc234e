//! Admission control: how many calls of an RPC may run at once, and how many may start
//! per second, per RPC and per caller.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tonic::Status;
use tonic::metadata::{MetadataMap, MetadataValue};

use crate::call::{Call, PolicyKind};
use crate::policy::backend::{Decision, RateBackend, RateKey, RateLimit};
use crate::util::secret;
use crate::wire::{RATELIMIT_REMAINING, RATELIMIT_RESET, RETRY_PUSHBACK};

/// How many callers an [`Admission`] tracks per-identity rates for, unless
/// [`AdmissionConfig::max_identities`] says otherwise.
pub(crate) const DEFAULT_MAX_IDENTITIES: u32 = 10_000;

/// How many peer addresses an [`Admission`] tracks per-peer rates for, unless
/// [`AdmissionConfig::max_peers`] says otherwise: the same bound as for identities.
pub(crate) const DEFAULT_MAX_PEERS: u32 = DEFAULT_MAX_IDENTITIES;

/// The admission limits of one RPC, as `#[intercept(limit(...))]` declared them
/// (`max_in_flight`, `calls_per_second` or `calls_per_minute`, `call_burst`,
/// `calls_per_second_per_peer`, `calls_per_second_per_identity` or
/// `calls_per_minute_per_identity`, `queue`).
///
/// Built in a `const` with the setters; every limit is optional.
///
/// ```
/// use tonic_intercept::__private::AdmissionConfig;
///
/// const CREATE_USER: AdmissionConfig = AdmissionConfig::new()
///     .max_in_flight(64)
///     .calls_per_second(200)
///     .call_burst(50)
///     .calls_per_second_per_peer(20)
///     .calls_per_second_per_identity(5)
///     .queue(16);
/// assert_eq!(CREATE_USER.call_burst, Some(50));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdmissionConfig {
    /// At most this many calls of the RPC run at once (`PolicyKind::Concurrency`).
    pub max_in_flight: Option<u32>,
    /// Sustained calls per second of the RPC, from all callers (`PolicyKind::CallRate`).
    pub calls_per_second: Option<u32>,
    /// Sustained calls per minute of the RPC, from all callers: `calls_per_second` in
    /// other units (at most one of the two).
    pub calls_per_minute: Option<u32>,
    /// How many calls may start back to back before the RPC's rate paces them; the rate's
    /// own number when not set.
    pub call_burst: Option<u32>,
    /// Sustained calls per second of the RPC from one peer address (an IPv6 peer by its
    /// /64), with a burst of the same number (`PolicyKind::CallRate`). A call without a
    /// peer address (a unix socket, an in-memory transport) is not limited by it.
    pub calls_per_second_per_peer: Option<u32>,
    /// Sustained calls per second of the RPC from one identity, with a burst of the same
    /// number (`PolicyKind::CallRate`).
    pub calls_per_second_per_identity: Option<u32>,
    /// Sustained calls per minute of the RPC from one identity, with a burst of the same
    /// number: `calls_per_second_per_identity` in other units (at most one of the two).
    pub calls_per_minute_per_identity: Option<u32>,
    /// How many calls may wait for a slot or a token instead of being rejected at once;
    /// 0 rejects at once.
    pub queue: u32,
    /// How many identities the per-identity rate tracks at most (see [`Admission`]).
    pub max_identities: u32,
    /// How many peer addresses the per-peer rate tracks at most (see [`Admission`]).
    pub max_peers: u32,
}

impl AdmissionConfig {
    /// No limits, no queue.
    pub const fn new() -> Self {
        Self {
            max_in_flight: None,
            calls_per_second: None,
            calls_per_minute: None,
            call_burst: None,
            calls_per_second_per_peer: None,
            calls_per_second_per_identity: None,
            calls_per_minute_per_identity: None,
            queue: 0,
            max_identities: DEFAULT_MAX_IDENTITIES,
            max_peers: DEFAULT_MAX_PEERS,
        }
    }
    /// At most `n` calls at once.
    pub const fn max_in_flight(mut self, n: u32) -> Self {
        self.max_in_flight = Some(n);
        self
    }
    /// At most `n` calls per second, sustained.
    pub const fn calls_per_second(mut self, n: u32) -> Self {
        self.calls_per_second = Some(n);
        self
    }
    /// At most `n` calls per minute, sustained.
    pub const fn calls_per_minute(mut self, n: u32) -> Self {
        self.calls_per_minute = Some(n);
        self
    }
    /// Bursts of up to `n` calls (with `calls_per_second` or `calls_per_minute`).
    pub const fn call_burst(mut self, n: u32) -> Self {
        self.call_burst = Some(n);
        self
    }
    /// At most `n` calls per second from one peer address, in bursts of up to `n`.
    pub const fn calls_per_second_per_peer(mut self, n: u32) -> Self {
        self.calls_per_second_per_peer = Some(n);
        self
    }
    /// At most `n` calls per second from one identity, in bursts of up to `n`.
    pub const fn calls_per_second_per_identity(mut self, n: u32) -> Self {
        self.calls_per_second_per_identity = Some(n);
        self
    }
    /// At most `n` calls per minute from one identity, in bursts of up to `n`.
    pub const fn calls_per_minute_per_identity(mut self, n: u32) -> Self {
        self.calls_per_minute_per_identity = Some(n);
        self
    }
    /// Up to `n` calls wait instead of being rejected.
    pub const fn queue(mut self, n: u32) -> Self {
        self.queue = n;
        self
    }
    /// Tracks at most `n` identities (default [`DEFAULT_MAX_IDENTITIES`]).
    pub const fn max_identities(mut self, n: u32) -> Self {
        self.max_identities = n;
        self
    }
    /// Tracks at most `n` peer addresses (default [`DEFAULT_MAX_PEERS`]).
    pub const fn max_peers(mut self, n: u32) -> Self {
        self.max_peers = n;
        self
    }
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Admission control for one RPC: concurrency, call rate per RPC, per peer address and per
/// identity, and an optional bounded queue. Lives in a `static`, one per RPC.
///
/// [`admit`](Self::admit) runs the checks in this order, and the first that refuses
/// ends the call with the policy it reports:
///
/// 1. `max_in_flight` ([`PolicyKind::Concurrency`]): a call slot.
/// 2. `calls_per_second` / `call_burst` ([`PolicyKind::CallRate`]): a token of the RPC's
///    bucket.
/// 3. `calls_per_second_per_peer` ([`PolicyKind::CallRate`]): a token of the bucket of
///    the call's [`peer`](Call::peer) address. An IPv4 address is one key (the port is
///    ignored); an IPv6 address is keyed by its /64 prefix, the block one host or one
///    subscriber usually holds, so a client cannot mint fresh keys from its own prefix
///    (an IPv4-mapped IPv6 address counts as its IPv4 address). A call without a peer
///    address (a unix socket, an in-memory transport) is not limited by it.
/// 4. `calls_per_second_per_identity` ([`PolicyKind::CallRate`]): a token of the caller's
///    bucket.
///
/// A call refused by a later bucket gives back the tokens it took from the earlier ones,
/// so a caller over its own limit does not use up everyone's.
///
/// A refusal is `RESOURCE_EXHAUSTED`, naming the RPC and the limit, with a
/// `grpc-retry-pushback-ms` trailer (gRFC A6): for a rate, the exact time until a token is
/// free; for concurrency, the recent mean duration of the RPC's calls (an exponentially
/// weighted moving average, at least 1 ms).
///
/// With a `queue` of `n`, up to `n` calls wait (for a slot, a token, or both, counted
/// once) instead of being refused, and the next is refused at once. A waiting call gives
/// up at its deadline with `DEADLINE_EXCEEDED` ([`PolicyKind::Deadline`]); a call whose token
/// would come only after its deadline gets that answer at once instead of waiting for it.
/// A call waiting for a token holds its call slot: it counts as in flight. Slots are
/// handed out first come, first served.
///
/// # Memory
///
/// Per-RPC state is a few words, allocated nowhere. Per-peer and per-identity buckets
/// live in one map each, of at most [`max_peers`](AdmissionConfig::max_peers) and
/// [`max_identities`](AdmissionConfig::max_identities) entries (10 000 each by default,
/// about 40 bytes each: some 400 KiB at most per map and RPC), so a client minting
/// identities or addresses cannot grow memory without bound. When a map is full, a new
/// key first drops every bucket that is full again (forgetting it loses nothing); if none
/// is, the least recently used sixteenth of the map. An evicted caller starts over with
/// a full bucket.
///
/// ```
/// use tonic_intercept::Call;
/// use tonic_intercept::__private::{Admission, AdmissionConfig};
/// # tonic_intercept::__doc_rpc!(CreateUser, "users.v1.UserService", "CreateUser", Unary, (), ());
/// use tonic_intercept::Rpc;
///
/// static CREATE_USER: Admission = Admission::new(AdmissionConfig::new().max_in_flight(1));
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let call = Call::start(&CreateUser::DESCRIPTOR, &tonic::Request::new(()), None);
/// let first = CREATE_USER.admit(&call, None).await.unwrap();
/// let (policy, status) = CREATE_USER.admit(&call, None).await.unwrap_err();
/// assert_eq!(policy, tonic_intercept::PolicyKind::Concurrency);
/// assert_eq!(status.code(), tonic::Code::ResourceExhausted);
/// drop(first); // the slot is free again
/// assert!(CREATE_USER.admit(&call, None).await.is_ok());
/// # });
/// ```
pub struct Admission {
    config: AdmissionConfig,
    rate: Option<Gcra>,
    peer_rate: Option<Gcra>,
    identity_rate: Option<Gcra>,
    permits: Semaphore,
    waiting: AtomicU32,
    /// Times below are nanoseconds since this instant, set by the first call.
    epoch: OnceLock<Instant>,
    /// The RPC bucket's theoretical arrival time.
    tat: AtomicU64,
    /// Moving average of call durations, in nanoseconds (0: none yet).
    mean_nanos: AtomicU64,
    peers: Mutex<KeyedBuckets>,
    identities: Mutex<KeyedBuckets>,
}

impl Admission {
    /// Admission control with these limits; `const`, for a `static`.
    ///
    /// # Panics
    ///
    /// (At compile time in a `static`) when a limit is zero.
    pub const fn new(config: AdmissionConfig) -> Admission {
        let rate = match config.rpc_rate() {
            Some((count, unit)) => {
                let burst = match config.call_burst {
                    Some(b) => b,
                    None => count,
                };
                Some(Gcra::new(count, unit, burst))
            }
            None => {
                assert!(
                    config.call_burst.is_none(),
                    "call_burst needs calls_per_second or calls_per_minute"
                );
                None
            }
        };
        let peer_rate = match config.calls_per_second_per_peer {
            Some(per_second) => Some(Gcra::new(per_second, RateUnit::Second, per_second)),
            None => None,
        };
        let identity_rate = match config.identity_rate() {
            Some((count, unit)) => Some(Gcra::new(count, unit, count)),
            None => None,
        };
        let permits = match config.max_in_flight {
            Some(n) => {
                assert!(n > 0, "max_in_flight must be at least 1");
                n as usize
            }
            None => 0,
        };
        assert!(
            config.max_identities > 0,
            "max_identities must be at least 1"
        );
        assert!(config.max_peers > 0, "max_peers must be at least 1");
        Admission {
            config,
            rate,
            peer_rate,
            identity_rate,
            permits: Semaphore::const_new(permits),
            waiting: AtomicU32::new(0),
            epoch: OnceLock::new(),
            tat: AtomicU64::new(0),
            mean_nanos: AtomicU64::new(0),
            peers: Mutex::new(KeyedBuckets::new()),
            identities: Mutex::new(KeyedBuckets::new()),
        }
    }

    /// The limits.
    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    /// Calls admitted and not finished (0 without `max_in_flight`).
    pub fn in_flight(&self) -> u32 {
        match self.config.max_in_flight {
            Some(max) => max - self.permits.available_permits() as u32,
            None => 0,
        }
    }

    /// Calls waiting in the queue.
    pub fn queued(&self) -> u32 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Identities whose per-identity buckets are kept.
    pub fn tracked_identities(&self) -> usize {
        self.identities
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Peer addresses (IPv6: /64 prefixes) whose per-peer buckets are kept.
    pub fn tracked_peers(&self) -> usize {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Admits one call of the RPC, or says which policy refuses it and why.
    ///
    /// `identity` is the caller's [`identity_key`], for the per-identity rate (ignored
    /// without one); the per-peer rate reads [`Call::peer`] (ignored without one). The
    /// returned [`Admitted`] holds the call slot: drop it when the call
    /// ends.
    pub async fn admit(
        &'static self,
        call: &Call,
        identity: Option<u64>,
    ) -> Result<Admitted, (PolicyKind, Status)> {
        let mut waiter = None;
        let permit = match self.config.max_in_flight {
            None => None,
            Some(_) => Some(match self.permits.try_acquire() {
                Ok(permit) => permit,
                Err(_) => {
                    waiter = Some(self.enqueue().ok_or_else(|| self.too_many(call))?);
                    self.wait_for_permit(call).await?
                }
            }),
        };
        let peer = match self.peer_rate {
            Some(_) => call.peer().map(|addr| peer_key(addr.ip())),
            None => None,
        };
        if self.rate.is_some()
            || peer.is_some()
            || (self.identity_rate.is_some() && identity.is_some())
        {
            let ready = self.take_tokens(call, peer, identity, &mut waiter)?;
            if let Some(ready) = ready {
                tokio::time::sleep_until(ready).await;
            }
        }
        drop(waiter);
        let started = permit.as_ref().map(|_| Instant::now());
        Ok(Admitted {
            admission: self,
            permit,
            started,
        })
    }

    /// Takes a token from the RPC's bucket, then from the peer's, then from the caller's.
    /// `Ok(Some(t))`: all are reserved and the call may start at `t`. A refusal gives
    /// back the tokens already taken.
    fn take_tokens<'a>(
        &'a self,
        call: &Call,
        peer: Option<u64>,
        identity: Option<u64>,
        waiter: &mut Option<Waiter<'a>>,
    ) -> Result<Option<Instant>, (PolicyKind, Status)> {
        let epoch = *self.epoch.get_or_init(Instant::now);
        let now = nanos_since(epoch, Instant::now());
        let deadline = call.deadline().map_or(u64::MAX, |d| nanos_since(epoch, d));
        let mut ready = now;
        let rpc_rate = self.rate;
        if let Some(rate) = rpc_rate {
            let take = |until| rate.take_atomic(&self.tat, now, until);
            match self.take_or_queue(take, waiter, now, deadline) {
                Ok(at) => ready = at,
                Err(refusal) => return Err(self.refused(call, refusal, rate, Per::Rpc, now)),
            }
        }
        let give_back_rpc = || {
            if let Some(rpc) = rpc_rate {
                rpc.give_back(&self.tat);
            }
        };
        let peer_taken = match (self.peer_rate, peer) {
            (Some(rate), Some(key)) => {
                let max = self.config.max_peers;
                let take = |until| lock(&self.peers).take(rate, key, now, until, max);
                match self.take_or_queue(take, waiter, now, deadline) {
                    Ok(at) => ready = ready.max(at),
                    Err(refusal) => {
                        give_back_rpc();
                        return Err(self.refused(call, refusal, rate, Per::Peer, now));
                    }
                }
                Some((rate, key))
            }
            _ => None,
        };
        if let (Some(rate), Some(key)) = (self.identity_rate, identity) {
            let max = self.config.max_identities;
            let take = |until| lock(&self.identities).take(rate, key, now, until, max);
            match self.take_or_queue(take, waiter, now, deadline) {
                Ok(at) => ready = ready.max(at),
                Err(refusal) => {
                    give_back_rpc();
                    if let Some((peer_rate, key)) = peer_taken {
                        lock(&self.peers).give_back(peer_rate, key);
                    }
                    return Err(self.refused(call, refusal, rate, Per::Identity, now));
                }
            }
        }
        Ok((ready > now).then(|| epoch + std::time::Duration::from_nanos(ready)))
    }

    /// Takes a token now; failing that, with a place in the queue, reserves one before
    /// the deadline.
    fn take_or_queue<'a>(
        &'a self,
        mut take: impl FnMut(u64) -> Result<u64, u64>,
        waiter: &mut Option<Waiter<'a>>,
        now: u64,
        deadline: u64,
    ) -> Result<u64, Refusal> {
        if waiter.is_some() {
            return take(deadline).map_err(Refusal::Deadline);
        }
        match take(now) {
            Ok(at) => Ok(at),
            Err(ready) => match self.enqueue() {
                None => Err(Refusal::Rate(ready)),
                Some(w) => {
                    *waiter = Some(w);
                    take(deadline).map_err(Refusal::Deadline)
                }
            },
        }
    }

    /// A place in the queue, if one is free.
    fn enqueue(&self) -> Option<Waiter<'_>> {
        let queue = self.config.queue;
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |w| {
                (w < queue).then_some(w + 1)
            })
            .ok()
            .map(|_| Waiter(&self.waiting))
    }

    async fn wait_for_permit(
        &'static self,
        call: &Call,
    ) -> Result<SemaphorePermit<'static>, (PolicyKind, Status)> {
        let acquired = match call.deadline() {
            Some(deadline) => tokio::time::timeout_at(deadline, self.permits.acquire())
                .await
                .map_err(|_| self.queued_too_long(call))?,
            None => self.permits.acquire().await,
        };
        // The semaphore is never closed.
        acquired.map_err(|_| self.too_many(call))
    }

    /// Feeds the moving average with one call's duration (weight 1/8).
    fn record(&self, nanos: u64) {
        let nanos = nanos.max(1);
        let _ = self
            .mean_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |mean| {
                Some(if mean == 0 {
                    nanos
                } else {
                    mean - mean / 8 + nanos / 8
                })
            });
    }

    /// Recent mean call duration in whole milliseconds, at least 1.
    fn concurrency_pushback_ms(&self) -> u64 {
        self.mean_nanos
            .load(Ordering::Relaxed)
            .div_ceil(1_000_000)
            .max(1)
    }

    #[cold]
    #[inline(never)]
    fn too_many(&self, call: &Call) -> (PolicyKind, Status) {
        let max = self.config.max_in_flight.unwrap_or(0);
        let queue = match self.config.queue {
            0 => String::new(),
            n => format!(", queue of {n} full"),
        };
        let ms = self.concurrency_pushback_ms();
        let message = format!(
            "{}: too many calls in flight (max_in_flight = {max}{queue}); retry in {ms} ms",
            call.rpc().method
        );
        (PolicyKind::Concurrency, with_pushback(message, ms))
    }

    #[cold]
    #[inline(never)]
    fn queued_too_long(&self, call: &Call) -> (PolicyKind, Status) {
        let message = format!(
            "{}: deadline exceeded while queued for a call slot (max_in_flight = {})",
            call.rpc().method,
            self.config.max_in_flight.unwrap_or(0)
        );
        (PolicyKind::Deadline, Status::deadline_exceeded(message))
    }

    #[cold]
    #[inline(never)]
    fn refused(
        &self,
        call: &Call,
        refusal: Refusal,
        rate: Gcra,
        per: Per,
        now: u64,
    ) -> (PolicyKind, Status) {
        let method = call.rpc().method;
        let (count, unit) = (rate.count, rate.unit.as_str());
        let limit = match per {
            Per::Identity => {
                format!("{count} calls per {unit} per caller (calls_per_{unit}_per_identity)")
            }
            Per::Peer => {
                format!("{count} calls per {unit} per peer address (calls_per_{unit}_per_peer)")
            }
            Per::Rpc => format!(
                "{count} calls per {unit} (calls_per_{unit}, call_burst = {})",
                rate.burst
            ),
        };
        match refusal {
            Refusal::Rate(ready) => {
                let ms = (ready - now).div_ceil(1_000_000);
                let message = format!("{method}: more than {limit}; retry in {ms} ms");
                (PolicyKind::CallRate, with_pushback(message, ms))
            }
            Refusal::Deadline(ready) => {
                let ms = (ready - now).div_ceil(1_000_000);
                let message = format!(
                    "{method}: the deadline passes before the call rate admits this call \
                     (at most {limit}; next free in {ms} ms)"
                );
                (PolicyKind::Deadline, Status::deadline_exceeded(message))
            }
        }
    }
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("config", &self.config)
            .field("in_flight", &self.in_flight())
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

/// An admitted call: holds its call slot until dropped, and then reports the call's
/// duration to the RPC's moving average.
#[must_use = "dropping `Admitted` ends the call's admission at once"]
pub struct Admitted {
    admission: &'static Admission,
    permit: Option<SemaphorePermit<'static>>,
    started: Option<Instant>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(started) = self.started {
            let nanos = started.elapsed().as_nanos();
            self.admission
                .record(u64::try_from(nanos).unwrap_or(u64::MAX));
        }
        // `permit` drops after this, freeing the slot.
    }
}

impl fmt::Debug for Admitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admitted")
            .field("rpc_slot", &self.permit.is_some())
            .finish_non_exhaustive()
    }
}

/// The key of a caller for the per-identity rate: a hash of `identity` (a user id, a
/// token's subject...) keyed with a random per-process secret, so clients cannot craft
/// colliding identities. Stable within the process only.
pub fn identity_key<I: Hash + ?Sized>(identity: &I) -> u64 {
    secret().hash_one(identity)
}

/// The key of a peer address for the per-peer rate: an IPv4 address, or the /64 prefix
/// of an IPv6 one (an IPv4-mapped IPv6 address is its IPv4 address), hashed with the
/// per-process secret like [`identity_key`].
fn peer_key(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => secret().hash_one((4u8, v4.to_bits())),
        IpAddr::V6(v6) => secret().hash_one((6u8, v6.to_bits() >> 64)),
    }
}

/// Whose bucket refused a call.
#[derive(Debug, Clone, Copy)]
enum Per {
    Rpc,
    Peer,
    Identity,
}

fn lock(buckets: &Mutex<KeyedBuckets>) -> std::sync::MutexGuard<'_, KeyedBuckets> {
    buckets.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A place in the queue, given back on drop.
#[derive(Debug)]
struct Waiter<'a>(&'a AtomicU32);

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a token was refused; both carry when one would be free.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// None now, and no place in the queue.
    Rate(u64),
    /// Queued, but none before the deadline.
    Deadline(u64),
}

fn nanos_since(epoch: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

const NANOS: u64 = 1_000_000_000;

/// The period a call rate counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateUnit {
    /// `calls_per_second..`
    Second,
    /// `calls_per_minute..`
    Minute,
}

impl RateUnit {
    /// The period in nanoseconds.
    pub const fn nanos(self) -> u64 {
        match self {
            RateUnit::Second => NANOS,
            RateUnit::Minute => 60 * NANOS,
        }
    }

    /// `second`, `minute`: as in the keys' names.
    pub const fn as_str(self) -> &'static str {
        match self {
            RateUnit::Second => "second",
            RateUnit::Minute => "minute",
        }
    }
}

impl AdmissionConfig {
    /// The RPC's rate, `(calls, per)`, from `calls_per_second` or `calls_per_minute`.
    ///
    /// # Panics
    /// When both are set.
    pub const fn rpc_rate(&self) -> Option<(u32, RateUnit)> {
        rate_of(self.calls_per_second, self.calls_per_minute)
    }

    /// A caller's rate, `(calls, per)`, from `calls_per_second_per_identity` or
    /// `calls_per_minute_per_identity`.
    ///
    /// # Panics
    /// When both are set.
    pub const fn identity_rate(&self) -> Option<(u32, RateUnit)> {
        rate_of(
            self.calls_per_second_per_identity,
            self.calls_per_minute_per_identity,
        )
    }
}

const fn rate_of(per_second: Option<u32>, per_minute: Option<u32>) -> Option<(u32, RateUnit)> {
    match (per_second, per_minute) {
        (Some(n), None) => Some((n, RateUnit::Second)),
        (None, Some(n)) => Some((n, RateUnit::Minute)),
        (None, None) => None,
        (Some(_), Some(_)) => panic!("a rate per second and per minute for the same calls"),
    }
}

/// A token bucket in integer nanoseconds, as in `limits`, in the form that fits one atomic
/// word (the generic cell rate algorithm): `tat`, the theoretical arrival time, is when
/// the bucket will be full again. A call at `now` may pass if `tat - tolerance <= now`,
/// and moves `tat` one interval later.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    count: u32,
    unit: RateUnit,
    burst: u32,
    /// Nanoseconds per token (rounded up: never faster than the rate).
    interval: u64,
    /// `(burst - 1) * interval`.
    tolerance: u64,
}

impl Gcra {
    const fn new(count: u32, unit: RateUnit, burst: u32) -> Self {
        assert!(count > 0, "a call rate must be at least 1 call per period");
        assert!(burst > 0, "a call burst must be at least 1");
        let interval = unit.nanos().div_ceil(count as u64);
        Gcra {
            count,
            unit,
            burst,
            interval,
            tolerance: (burst as u64 - 1) * interval,
        }
    }

    /// From bucket state `tat` at `now`: `Ok(t)` takes a token usable at `t`
    /// (`t == now`, or up to `until` if waiting is allowed), `Err(t)`: the next token is
    /// usable at `t`, after `until`; nothing is taken. Also returns the new state.
    #[inline]
    fn decide(self, tat: u64, now: u64, until: u64) -> (Result<u64, u64>, u64) {
        let base = tat.max(now);
        let ready = base.saturating_sub(self.tolerance).max(now);
        if ready <= until.max(now) {
            (Ok(ready), base.saturating_add(self.interval))
        } else {
            (Err(ready), tat)
        }
    }

    /// [`decide`](Self::decide) on a shared bucket: lock-free, allocation-free.
    #[inline]
    fn take_atomic(self, tat: &AtomicU64, now: u64, until: u64) -> Result<u64, u64> {
        let mut current = tat.load(Ordering::Acquire);
        loop {
            let (result, next) = self.decide(current, now, until);
            if result.is_err() || next == current {
                return result;
            }
            match tat.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return result,
                Err(actual) => current = actual,
            }
        }
    }

    /// Returns a token taken by [`take_atomic`](Self::take_atomic).
    fn give_back(self, tat: &AtomicU64) {
        let _ = tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
            Some(t.saturating_sub(self.interval))
        });
    }
}

/// One token bucket per key (a peer address, an identity), at most `max` of them: the
/// per-peer and the per-identity rates each hold one.
#[derive(Debug)]
struct KeyedBuckets {
    map: HashMap<u64, KeyedBucket, BuildHasherDefault<KeyHasher>>,
    /// Incremented on each use: `used` orders buckets by recency without ties.
    clock: u64,
}

#[derive(Debug, Clone, Copy)]
struct KeyedBucket {
    tat: u64,
    used: u64,
}

impl KeyedBuckets {
    const fn new() -> Self {
        KeyedBuckets {
            map: HashMap::with_hasher(BuildHasherDefault::new()),
            clock: 0,
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    /// [`Gcra::decide`] on `key`'s bucket, making room for it first if the map holds
    /// `max` others.
    fn take(&mut self, rate: Gcra, key: u64, now: u64, until: u64, max: u32) -> Result<u64, u64> {
        let max = max as usize;
        if self.map.len() >= max && !self.map.contains_key(&key) {
            self.evict(now, max);
        }
        self.clock += 1;
        let used = self.clock;
        let bucket = self.map.entry(key).or_insert(KeyedBucket { tat: 0, used });
        bucket.used = used;
        let (result, tat) = rate.decide(bucket.tat, now, until);
        bucket.tat = tat;
        result
    }

    /// Returns a token taken by [`take`](Self::take) (if the bucket is still there).
    fn give_back(&mut self, rate: Gcra, key: u64) {
        if let Some(bucket) = self.map.get_mut(&key) {
            bucket.tat = bucket.tat.saturating_sub(rate.interval);
        }
    }

    /// Makes room for one more key: drops the buckets that are full again, else the
    /// least recently used sixteenth.
    #[cold]
    fn evict(&mut self, now: u64, max: usize) {
        self.map.retain(|_, b| b.tat > now);
        if self.map.len() < max {
            return;
        }
        let count = (self.map.len() / 16).max(1);
        let mut used: Vec<u64> = self.map.values().map(|b| b.used).collect();
        let (_, &mut threshold, _) = used.select_nth_unstable(count - 1);
        self.map.retain(|_, b| b.used > threshold);
    }
}

/// Identity keys are already keyed hashes ([`identity_key`]); this only mixes the bits,
/// in case a caller passes plain numbers.
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        // splitmix64's finaliser.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The call rates of one RPC kept in a shared backend, as
/// `#[intercept(limit(.., shared = self.rates))]` declared them: the RPC's rate
/// (`calls_per_second` or `calls_per_minute`, `call_burst`) and a caller's
/// (`calls_per_second_per_identity` or `calls_per_minute_per_identity`). Lives in a
/// `static`, one per RPC; the backend itself is the user's value.
///
/// [`admit`](Self::admit) asks the caller's bucket first, then the RPC's, so a caller
/// over its own limit does not use up everyone's (a backend cannot give a token back).
///
/// ```
/// use tonic_intercept::__private::{AdmissionConfig, SharedRates};
///
/// static PLACE_ORDER: SharedRates =
///     SharedRates::new(AdmissionConfig::new().calls_per_minute_per_identity(5));
/// let limit = PLACE_ORDER.per_identity().unwrap();
/// assert_eq!((limit.per_period, limit.period.as_secs(), limit.burst), (5, 60, 5));
/// assert!(PLACE_ORDER.per_rpc().is_none());
/// ```
#[derive(Debug)]
pub struct SharedRates {
    per_rpc: Option<(RateLimit, RateUnit)>,
    per_identity: Option<(RateLimit, RateUnit)>,
    /// The RPC bucket's key, made at its first call.
    rpc_key: OnceLock<RateKey>,
}

impl SharedRates {
    /// The shared rates of `config`.
    ///
    /// # Panics
    ///
    /// (At compile time in a `static`) when `config` sets a limit that stays local
    /// (`max_in_flight`, `calls_per_second_per_peer`, `queue`), or a rate of zero.
    pub const fn new(config: AdmissionConfig) -> Self {
        assert!(
            config.max_in_flight.is_none()
                && config.calls_per_second_per_peer.is_none()
                && config.queue == 0,
            "only call rates are shared; max_in_flight, calls_per_second_per_peer and queue stay local"
        );
        let per_rpc = match config.rpc_rate() {
            Some((count, unit)) => {
                let burst = match config.call_burst {
                    Some(b) => b,
                    None => count,
                };
                Some((rate_limit(count, unit, burst), unit))
            }
            None => None,
        };
        let per_identity = match config.identity_rate() {
            Some((count, unit)) => Some((rate_limit(count, unit, count), unit)),
            None => None,
        };
        SharedRates {
            per_rpc,
            per_identity,
            rpc_key: OnceLock::new(),
        }
    }

    /// The RPC's rate, from all callers.
    pub fn per_rpc(&self) -> Option<RateLimit> {
        self.per_rpc.map(|(limit, _)| limit)
    }

    /// One caller's rate.
    pub fn per_identity(&self) -> Option<RateLimit> {
        self.per_identity.map(|(limit, _)| limit)
    }

    /// Asks `backend` for the call's tokens: the caller's (`identity`, its
    /// [`Display`](fmt::Display) form, when the RPC has a per-identity rate), then the
    /// RPC's. Returns the decision and, when the backend could not be asked in time
    /// (its failure policy decided), the backend's name.
    ///
    /// A refusal is `RESOURCE_EXHAUSTED` ([`PolicyKind::CallRate`]) with the backend's
    /// exact wait as `grpc-retry-pushback-ms`, `x-ratelimit-remaining: 0` and
    /// `x-ratelimit-reset`; a backend that fails closed answers `UNAVAILABLE`.
    pub async fn admit<B: RateBackend>(
        &'static self,
        backend: &B,
        call: &Call,
        identity: Option<&str>,
    ) -> (Result<(), (PolicyKind, Status)>, Option<&'static str>) {
        let mut without = None;
        if let (Some((limit, unit)), Some(identity)) = (self.per_identity, identity) {
            let key = RateKey::per_identity(call.rpc().path, identity);
            let decided = shared_decision(backend, &key, limit, unit, Per::Identity, call).await;
            without = decided.1;
            if decided.0.is_err() {
                return decided;
            }
        }
        if let Some((limit, unit)) = self.per_rpc {
            let key = self
                .rpc_key
                .get_or_init(|| RateKey::per_rpc(call.rpc().path));
            let decided = shared_decision(backend, key, limit, unit, Per::Rpc, call).await;
            return (decided.0, decided.1.or(without));
        }
        (Ok(()), without)
    }
}

/// What the expansion of `limit(.., shared = backend)` calls on the user's backend: a
/// trait method on the user's expression, so a value that is not a [`RateBackend`] is
/// one error, at that expression.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a shared call-rate backend",
    label = "named by `shared = ..` in `limit(..)`",
    note = "`shared = ..` takes a backend such as `tonic_intercept::backend::RedisGcra`, or a type of yours that implements `tonic_intercept::backend::RateBackend`"
)]
pub trait AdmitShared {
    /// [`SharedRates::admit`] with this backend.
    fn admit_shared<'a>(
        &'a self,
        rates: &'static SharedRates,
        call: &'a Call,
        identity: Option<&'a str>,
    ) -> impl Future<Output = (Result<(), (PolicyKind, Status)>, Option<&'static str>)> + Send + 'a;
}

#[diagnostic::do_not_recommend]
impl<B: RateBackend> AdmitShared for B {
    fn admit_shared<'a>(
        &'a self,
        rates: &'static SharedRates,
        call: &'a Call,
        identity: Option<&'a str>,
    ) -> impl Future<Output = (Result<(), (PolicyKind, Status)>, Option<&'static str>)> + Send + 'a
    {
        rates.admit(self, call, identity)
    }
}

/// A caller's name in a shared backend's keys: its identity's
/// [`Display`](fmt::Display) form, the same on every replica (unlike [`identity_key`],
/// which is keyed per process).
pub fn shared_identity<I: fmt::Display + ?Sized>(identity: &I) -> String {
    identity.to_string()
}

const fn rate_limit(count: u32, unit: RateUnit, burst: u32) -> RateLimit {
    RateLimit::new(count, Duration::from_nanos(unit.nanos())).burst(burst)
}

/// One shared bucket's answer, as the call's result.
async fn shared_decision<B: RateBackend>(
    backend: &B,
    key: &RateKey,
    limit: RateLimit,
    unit: RateUnit,
    per: Per,
    call: &Call,
) -> (Result<(), (PolicyKind, Status)>, Option<&'static str>) {
    match backend.check(key, limit).await {
        Ok(Decision::Allowed { .. }) => (Ok(()), None),
        Ok(Decision::Unchecked) => (Ok(()), Some(backend.name())),
        Ok(Decision::Denied {
            retry_after,
            reset_after,
        }) => (
            Err(shared_refusal(
                call,
                limit,
                unit,
                per,
                retry_after,
                reset_after,
            )),
            None,
        ),
        Ok(Decision::UncheckedDenied { retry_after }) => (
            Err(shared_refusal(
                call,
                limit,
                unit,
                per,
                retry_after,
                retry_after,
            )),
            Some(backend.name()),
        ),
        Err(error) => {
            let message = format!(
                "{}: the call-rate backend `{}` is unavailable ({error}); retry later",
                call.rpc().method,
                backend.name()
            );
            (
                Err((PolicyKind::CallRate, Status::unavailable(message))),
                Some(backend.name()),
            )
        }
    }
}

#[cold]
#[inline(never)]
fn shared_refusal(
    call: &Call,
    limit: RateLimit,
    unit: RateUnit,
    per: Per,
    retry_after: Duration,
    reset_after: Duration,
) -> (PolicyKind, Status) {
    let (count, unit) = (limit.per_period, unit.as_str());
    let whose = match per {
        Per::Identity => format!(" per caller (calls_per_{unit}_per_identity, shared)"),
        _ => format!(" (calls_per_{unit}, call_burst = {}, shared)", limit.burst),
    };
    let ms = u64::try_from(retry_after.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
    let message = format!(
        "{}: more than {count} calls per {unit}{whose}; retry in {ms} ms",
        call.rpc().method
    );
    let mut status = with_pushback(message, ms);
    let metadata = status.metadata_mut();
    metadata.insert(RATELIMIT_REMAINING, MetadataValue::from(0u32));
    metadata.insert(
        RATELIMIT_RESET,
        MetadataValue::from(reset_after.as_millis().div_ceil(1000) as u64),
    );
    (PolicyKind::CallRate, status)
}

#[cold]
#[inline(never)]
fn with_pushback(message: String, ms: u64) -> Status {
    let mut metadata = MetadataMap::new();
    metadata.insert(RETRY_PUSHBACK, MetadataValue::from(ms));
    Status::with_metadata(tonic::Code::ResourceExhausted, message, metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn bucket_allows_the_burst_then_paces() {
        let g = Gcra::new(10, RateUnit::Second, 3);
        let mut tat = 0;
        for _ in 0..3 {
            let (r, t) = g.decide(tat, 0, 0);
            assert_eq!(r, Ok(0));
            tat = t;
        }
        let (r, t) = g.decide(tat, 0, 0);
        assert_eq!(r, Err(100 * MS));
        assert_eq!(t, tat, "a refusal takes nothing");
        // Waiting allowed until 250 ms: reserved at 100 ms, then 200 ms, then refused.
        let (r, t) = g.decide(tat, 0, 250 * MS);
        assert_eq!(r, Ok(100 * MS));
        let (r, t) = g.decide(t, 0, 250 * MS);
        assert_eq!(r, Ok(200 * MS));
        let (r, _) = g.decide(t, 0, 250 * MS);
        assert_eq!(r, Err(300 * MS));
        // After a quiet second the full burst is back, and no more.
        for _ in 0..3 {
            let (r, t) = g.decide(tat, 2_000 * MS, 0);
            assert_eq!(r, Ok(2_000 * MS));
            tat = t;
        }
        assert_eq!(g.decide(tat, 2_000 * MS, 0).0, Err(2_100 * MS));
    }

    #[test]
    fn sustains_the_rate_exactly() {
        let g = Gcra::new(1_000, RateUnit::Second, 1);
        let tat = AtomicU64::new(0);
        let mut admitted = 0;
        for ms in 0..1_000u64 {
            // Two attempts each millisecond: exactly one passes.
            for _ in 0..2 {
                if g.take_atomic(&tat, ms * MS, 0).is_ok() {
                    admitted += 1;
                }
            }
        }
        assert_eq!(admitted, 1_000);
    }

    #[test]
    fn give_back_returns_the_token() {
        let g = Gcra::new(1, RateUnit::Second, 1);
        let tat = AtomicU64::new(0);
        assert!(g.take_atomic(&tat, 0, 0).is_ok());
        assert!(g.take_atomic(&tat, 0, 0).is_err());
        g.give_back(&tat);
        assert!(g.take_atomic(&tat, 0, 0).is_ok());
    }
}
