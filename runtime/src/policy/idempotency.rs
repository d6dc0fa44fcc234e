//! Idempotency keys for unary RPCs: a retried call with the same key gets the first
//! call's response instead of running again.
//!
//! `#[intercept(idempotency(self.store, Rpc))]` asks an [`IdempotencyStore`] before the
//! handler and tells it the outcome afterwards. Two stores ship:
//!
//! - [`IdempotencyCache`], in the process: the default, no I/O; a retry that lands on
//!   another replica is not recognised;
//! - `RedisIdempotency` (feature `redis`), shared by every replica pointed at one Redis:
//!   a retry is replayed by whichever replica it reaches (its module, `redis`, states
//!   what it guarantees and what a Redis failover can lose).
//!
//! Which one an RPC uses is the type of the field named in `idempotency(..)`; the
//! attribute is the same.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::{Future, ready};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};

use crate::auth::Authenticate;
use crate::call::{Call, PolicyKind};
use crate::rpc::Rpc;
use crate::wire::{IDEMPOTENCY_KEY, IDEMPOTENCY_REPLAYED};

#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
pub use self::redis::{RedisIdempotency, RedisIdempotencyConfig, RedisTicket};

/// The longest idempotency key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// Where `#[intercept(idempotency(store, R))]` keeps the idempotency keys of the unary
/// RPC `R`: [`IdempotencyCache`] in the process, `RedisIdempotency` (feature `redis`)
/// across replicas, or a store of your own.
///
/// The expansion reads and checks the call's `idempotency-key` (a call without one runs
/// without the store), then, before the handler, awaits [`begin`](Self::begin) with the
/// key, its [`Scope`] and the request message:
///
/// - [`Begin::Replay`]: a call with this key and request completed; its response is the
///   answer (with `idempotency-replayed: true`) and the handler does not run;
/// - [`Begin::Run`]: this call owns the key; after the handler the expansion awaits
///   [`IdempotencyTicket::complete`] with its result;
/// - [`Begin::Bypass`]: the call runs and nothing is stored (a store that cannot decide
///   and is told to fail open);
/// - `Err((PolicyKind::Idempotency, status))`: the call is refused with `status`.
///
/// A store must refuse a key reused with a different request (`INVALID_ARGUMENT`,
/// "idempotency key reused with a different request") and a key whose first call is
/// still running (`ABORTED`), store only successes, and free the key of a call that
/// failed, was cancelled or panicked (its ticket dropped without `complete`).
///
/// Driven by hand, as the expansion drives it:
///
/// ```
/// use std::time::Duration;
/// use tonic::{Request, Response};
/// use tonic_intercept::idempotency::{Begin, Scope};
/// use tonic_intercept::{Call, IdempotencyCache, IdempotencyStore, IdempotencyTicket, Rpc};
/// # #[derive(Clone, PartialEq, prost::Message)]
/// # pub struct PayRequest { #[prost(uint64, tag = "1")] pub cents: u64 }
/// # #[derive(Clone, PartialEq, prost::Message)]
/// # pub struct Payment { #[prost(uint64, tag = "1")] pub id: u64 }
/// # tonic_intercept::__doc_rpc!(Pay, "pay.v1.Payments", "Pay", Unary, PayRequest, Payment);
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let store = IdempotencyCache::<Pay>::new(Duration::from_secs(600), 10_000);
/// let call = Call::start(&Pay::DESCRIPTOR, &Request::new(()), None);
/// let (request, alice) = (PayRequest { cents: 500 }, "alice");
///
/// // The first call with the key runs; its success is stored.
/// let begin = store.begin(&call, "3f2a9c1e", Scope::of(&alice), &request).await;
/// let Ok(Begin::Run(ticket)) = begin else { panic!() };
/// IdempotencyTicket::complete(ticket, &Ok(Response::new(Payment { id: 7 }))).await;
///
/// // Alice's retry is replayed; the same key is another call for someone else.
/// let retry = store.begin(&call, "3f2a9c1e", Scope::of(&alice), &request).await;
/// assert!(matches!(retry, Ok(Begin::Replay(r)) if r.get_ref().id == 7));
/// let bob = store.begin(&call, "3f2a9c1e", Scope::of(&"bob"), &request).await;
/// assert!(matches!(bob, Ok(Begin::Run(_))));
/// # });
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an idempotency store for the RPC `{R}`",
    label = "a store for another RPC",
    note = "the store of `{R}` is an `IdempotencyCache<{R}>` (in process) or a `RedisIdempotency<{R}>` (shared by replicas): it keeps `{R}`'s responses"
)]
pub trait IdempotencyStore<R: Rpc>: Send + Sync {
    /// What a call that owns its key holds until it ends.
    type Ticket: IdempotencyTicket<R>;

    /// Decides what the call with this (valid) `key` in `scope` and this request does;
    /// see the trait's documentation.
    fn begin(
        &self,
        call: &Call,
        key: &str,
        scope: Scope<'_>,
        request: &R::Request,
    ) -> impl Future<Output = Result<Begin<R, Self::Ticket>, (PolicyKind, Status)>> + Send;
}

/// The claim of a running call on its idempotency key, from [`IdempotencyStore::begin`].
pub trait IdempotencyTicket<R: Rpc>: Send {
    /// Ends the call: a success is stored for replay, a failure frees the key so a retry
    /// runs. Dropping the ticket without calling this (the call was cancelled or
    /// panicked) must free the key too.
    fn complete(
        self,
        result: &Result<Response<R::Response>, Status>,
    ) -> impl Future<Output = ()> + Send;
}

/// Whose idempotency keys these are: the same key from two scopes names two calls.
///
/// Without `auth(..)` keys are global to the RPC ([`Scope::GLOBAL`]); with it, they
/// belong to the caller's identity, so one caller can neither replay nor block another's
/// keys. A scope offers the identity two ways: [`local`](Self::local), a keyed hash that
/// is fast but differs from process to process (what [`IdempotencyCache`] uses), and
/// [`hash_identity`](Self::hash_identity), the identity's own [`Hash`] fed to a hasher
/// of the store's choice, which a store shared by replicas hashes with a fixed function.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    local: u64,
    identity: Option<&'a dyn ScopeIdentity>,
}

/// An identity that can feed its [`Hash`] to a `dyn Hasher` (what [`Scope`] holds).
trait ScopeIdentity: Sync {
    fn feed(&self, state: &mut dyn Hasher);
}

impl<T: Hash + Sync + ?Sized> ScopeIdentity for T {
    fn feed(&self, mut state: &mut dyn Hasher) {
        self.hash(&mut state);
    }
}

impl Scope<'static> {
    /// Keys global to the RPC (no `auth(..)`, or an RPC its `.proto` makes public).
    pub const GLOBAL: Scope<'static> = Scope {
        local: 0,
        identity: None,
    };
}

impl<'a> Scope<'a> {
    /// The keys of the caller `identity`.
    pub fn of<I: Hash + Sync>(identity: &'a I) -> Self {
        Scope {
            local: crate::util::secret().hash_one(identity),
            identity: Some(identity),
        }
    }

    /// The scope the expansion passes under `auth(verifier)`: `local` is the caller's
    /// `identity_key` when the verifier ran (`None` for an RPC its `.proto` makes
    /// public), and the identity is the one the verifier stored in the request's
    /// extensions (absent for `type Identity = ()`, where every caller is the same).
    #[doc(hidden)] // the expansion's protocol, reached through `__private`
    pub fn of_caller<V, T>(_verifier: &V, request: &'a Request<T>, local: Option<u64>) -> Self
    where
        V: Authenticate + ?Sized,
        V::Identity: Hash,
    {
        match local {
            None => Scope::GLOBAL,
            Some(local) => Scope {
                local,
                identity: request
                    .extensions()
                    .get::<V::Identity>()
                    .map(|i| i as &dyn ScopeIdentity),
            },
        }
    }

    /// The identity hashed with this process's secret (0 when global): equal identities
    /// give equal values within one process only.
    pub fn local(&self) -> u64 {
        self.local
    }

    /// Whether the keys are global to the RPC (no identity to hash).
    pub fn is_global(&self) -> bool {
        self.identity.is_none()
    }

    /// Feeds the identity's [`Hash`] to `state`; `false` (nothing fed) when global.
    ///
    /// With a fixed hash function (no per-process key) the result is the same on every
    /// replica running the same build; the bytes a type's `Hash` writes are not promised
    /// stable across Rust versions or platforms (for `str`, integers and derived impls
    /// over them they have not changed), so mixed-version fleets may see two scopes for
    /// one caller while they roll out.
    pub fn hash_identity(&self, state: &mut dyn Hasher) -> bool {
        match self.identity {
            Some(identity) => {
                identity.feed(state);
                true
            }
            None => false,
        }
    }
}

impl fmt::Debug for Scope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("local", &self.local)
            .field("global", &self.is_global())
            .finish()
    }
}

/// The call's `idempotency-key`, checked: `None` without one; refused with
/// [`PolicyKind::Idempotency`] and `INVALID_ARGUMENT` when it is empty, longer than 255
/// bytes or not printable ASCII.
#[doc(hidden)] // reached through `__private`; the expansion's protocol
pub fn read_key<'m>(
    call: &Call,
    metadata: &'m MetadataMap,
) -> Result<Option<&'m str>, (PolicyKind, Status)> {
    let Some(value) = metadata.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= MAX_KEY_LEN => Ok(Some(key)),
        Ok("") => Err(invalid(call, "the idempotency key is empty")),
        Ok(_) => Err(invalid(
            call,
            "the idempotency key is longer than 255 bytes",
        )),
        Err(_) => Err(invalid(call, "the idempotency key is not printable ASCII")),
    }
}

/// Remembers the responses of completed calls of the unary RPC `R` by idempotency key, so
/// a client retrying a call whose response it never saw (a timeout, a dropped
/// connection) gets that response instead of a second effect.
///
/// A client opts in per call with the `idempotency-key` metadata (a unique ASCII string
/// of at most 255 bytes, such as a UUID). With `#[intercept(idempotency(self.cache, Rpc))]`
/// the macro asks the cache before the handler runs (scoped by the caller's identity
/// under `auth(..)`) and tells it the outcome
/// afterwards ([`Ticket::complete`]):
///
/// - no key: the call runs as usual;
/// - a key whose call completed within the TTL: the stored response is returned (a clone,
///   with the metadata `idempotency-replayed: true`) and the handler does not run;
/// - a key whose first call is still running: `ABORTED`, retry later;
/// - a known key with a different request: `INVALID_ARGUMENT`;
/// - otherwise the call runs; only a success is stored. A failed, cancelled or panicked
///   call frees the key, so a retry runs again.
///
/// Requests are compared by a keyed hash of their encoding. (prost encodes `map` fields
/// in hash-map order, so two equal requests with maps of several entries may encode
/// differently and be taken for different ones: use `btree_map` for such fields.)
///
/// # Memory
///
/// At most `max_entries` keys are kept, running or completed. To make room for a new
/// key, expired entries go first (they go anyway, at the next call), then the oldest
/// completed one; if every entry is a running call, the new call is refused with
/// `RESOURCE_EXHAUSTED` rather than growing. Each entry holds its key, a clone of the
/// response and its metadata.
///
/// Without `auth(..)` keys are global to the RPC; with it, they are scoped by the
/// caller's [`identity_key`](crate::limits::identity_key), so one caller can neither
/// replay nor block another's keys.
///
/// ```
/// use std::time::Duration;
/// use tonic::metadata::MetadataMap;
/// use tonic::{Request, Response};
/// use tonic_intercept::{Call, IdempotencyCache, Rpc};
/// # use tonic_intercept::__private::{Begin, idempotency_begin as begin};
/// # #[derive(Clone, PartialEq, prost::Message)]
/// # pub struct PayRequest { #[prost(uint64, tag = "1")] pub cents: u64 }
/// # #[derive(Clone, PartialEq, prost::Message)]
/// # pub struct Payment { #[prost(uint64, tag = "1")] pub id: u64 }
/// # tonic_intercept::__doc_rpc!(Pay, "pay.v1.Payments", "Pay", Unary, PayRequest, Payment);
///
/// let cache = IdempotencyCache::<Pay>::new(Duration::from_secs(600), 10_000);
/// let mut metadata = MetadataMap::new();
/// metadata.insert("idempotency-key", "3f2a9c1e".parse().unwrap());
/// let request = PayRequest { cents: 500 };
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let call = Call::start(&Pay::DESCRIPTOR, &Request::new(()), None);
///
/// // The first call runs, and its success is stored.
/// let Ok(Begin::Run(ticket)) = begin(&cache, &call, &metadata, &request, 0) else { panic!() };
/// let result = Ok(Response::new(Payment { id: 7 }));
/// ticket.complete(&result);
///
/// // A retry with the same key gets the same payment back, without paying twice.
/// let Ok(Begin::Replay(replay)) = begin(&cache, &call, &metadata, &request, 0) else { panic!() };
/// assert_eq!(replay.get_ref().id, 7);
/// assert_eq!(replay.metadata().get("idempotency-replayed").unwrap(), "true");
/// # });
/// ```
pub struct IdempotencyCache<R: Rpc> {
    inner: Arc<Inner<R>>,
}

struct Inner<R: Rpc> {
    ttl: Duration,
    max_entries: usize,
    state: Mutex<State<R>>,
}

/// `(scope, key)`.
type Key = (u64, Arc<str>);

struct State<R: Rpc> {
    entries: HashMap<Key, Entry<R>>,
    /// One record per completed entry, in completion order, which (one TTL for all) is
    /// also expiry order: the front is the oldest and the first to expire.
    completed: VecDeque<(Instant, u64, Key)>,
    next_seq: u64,
}

struct Entry<R: Rpc> {
    /// Tells this use of the key from earlier and later ones.
    seq: u64,
    /// Keyed hash of the encoded request.
    request: u64,
    done: Option<Done<R>>,
}

struct Done<R: Rpc> {
    message: R::Response,
    metadata: MetadataMap,
}

impl<R: Rpc> Clone for IdempotencyCache<R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<R: Rpc> fmt::Debug for IdempotencyCache<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyCache")
            .field("rpc", &R::DESCRIPTOR.path)
            .field("ttl", &self.inner.ttl)
            .field("max_entries", &self.inner.max_entries)
            .field("len", &self.len())
            .finish()
    }
}

impl<R: Rpc> IdempotencyCache<R> {
    /// A cache keeping completed responses for `ttl`, holding at most `max_entries`
    /// keys (running or completed).
    ///
    /// # Panics
    ///
    /// When `max_entries` is 0.
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        assert!(max_entries > 0, "an idempotency cache needs room for a key");
        Self {
            inner: Arc::new(Inner {
                ttl,
                max_entries,
                state: Mutex::new(State {
                    entries: HashMap::new(),
                    completed: VecDeque::new(),
                    next_seq: 0,
                }),
            }),
        }
    }

    /// Keys held, running or completed (expired ones until the next call purges them).
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How long a completed response is replayed.
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// The most keys held at once.
    pub fn max_entries(&self) -> usize {
        self.inner.max_entries
    }
}

impl<R: Rpc> IdempotencyCache<R>
where
    R::Response: Clone,
{
    /// Decides what a call of `R` with this (valid) key and request does: run
    /// ([`Begin::Run`]), get the stored response ([`Begin::Replay`]), or be refused with
    /// [`PolicyKind::Idempotency`]:
    ///
    /// - `INVALID_ARGUMENT`: the key was used with a different request;
    /// - `ABORTED`: the first call with this key is still running;
    /// - `RESOURCE_EXHAUSTED`: the cache is full of running calls.
    ///
    /// Keys are scoped to `scope` (the caller's `identity_key`, say; 0 for keys global
    /// to the RPC): the same key from two scopes names two different calls.
    fn begin_in(
        &self,
        call: &Call,
        key: &str,
        request: &R::Request,
        scope: u64,
    ) -> Result<Begin<R>, (PolicyKind, Status)> {
        let hash = hash_request(request);
        let key: Key = (scope, Arc::from(key));
        let now = Instant::now();

        let mut state = self.inner.lock();
        state.purge(now);
        if let Some(entry) = state.entries.get(&key) {
            if entry.request != hash {
                return Err(invalid(
                    call,
                    "idempotency key reused with a different request",
                ));
            }
            return match &entry.done {
                None => Err((
                    PolicyKind::Idempotency,
                    Status::aborted(format!(
                        "{}: a call with this idempotency key is still running; retry later",
                        call.rpc().method
                    )),
                )),
                Some(done) => {
                    let mut metadata = done.metadata.clone();
                    metadata.insert(IDEMPOTENCY_REPLAYED, MetadataValue::from_static("true"));
                    Ok(Begin::Replay(Response::from_parts(
                        metadata,
                        done.message.clone(),
                        tonic::Extensions::new(),
                    )))
                }
            };
        }
        if state.entries.len() >= self.inner.max_entries && !state.evict_oldest_completed() {
            return Err((
                PolicyKind::Idempotency,
                Status::resource_exhausted(format!(
                    "{}: too many calls with idempotency keys running (at most {}); retry later",
                    call.rpc().method,
                    self.inner.max_entries
                )),
            ));
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        state.entries.insert(
            key.clone(),
            Entry {
                seq,
                request: hash,
                done: None,
            },
        );
        drop(state);
        Ok(Begin::Run(Ticket {
            inner: Some(self.inner.clone()),
            key,
            seq,
        }))
    }
}

/// Asks `cache` what a call of `R` with this request metadata and request does: run
/// ([`Begin::Bypass`] without a key, [`Begin::Run`] with one), get the stored response
/// ([`Begin::Replay`]), or be refused with [`PolicyKind::Idempotency`]; synchronously,
/// as the cache needs no I/O. `scope` is the caller's `identity_key` (0: global keys).
/// The expansion goes through [`IdempotencyStore`], which the cache implements with
/// ready futures over this.
#[doc(hidden)] // reached through `__private`; the cache's synchronous protocol
pub fn begin<R: Rpc>(
    cache: &IdempotencyCache<R>,
    call: &Call,
    metadata: &MetadataMap,
    request: &R::Request,
    scope: u64,
) -> Result<Begin<R>, (PolicyKind, Status)>
where
    R::Response: Clone,
{
    match read_key(call, metadata)? {
        None => Ok(Begin::Bypass),
        Some(key) => cache.begin_in(call, key, request, scope),
    }
}

impl<R: Rpc> IdempotencyStore<R> for IdempotencyCache<R>
where
    R::Response: Clone,
{
    type Ticket = Ticket<R>;

    fn begin(
        &self,
        call: &Call,
        key: &str,
        scope: Scope<'_>,
        request: &R::Request,
    ) -> impl Future<Output = Result<Begin<R>, (PolicyKind, Status)>> + Send {
        ready(self.begin_in(call, key, request, scope.local()))
    }
}

impl<R: Rpc> IdempotencyTicket<R> for Ticket<R>
where
    R::Response: Clone,
{
    fn complete(
        self,
        result: &Result<Response<R::Response>, Status>,
    ) -> impl Future<Output = ()> + Send {
        Ticket::complete(self, result);
        ready(())
    }
}

impl<R: Rpc> Inner<R> {
    fn lock(&self) -> MutexGuard<'_, State<R>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<R: Rpc> State<R> {
    /// Drops the completed entries whose TTL has passed.
    fn purge(&mut self, now: Instant) {
        while let Some((expires, _, _)) = self.completed.front() {
            if *expires > now {
                break;
            }
            self.pop_completed();
        }
    }

    /// Drops the oldest completed entry; `false` if none is.
    fn evict_oldest_completed(&mut self) -> bool {
        !self.completed.is_empty() && {
            self.pop_completed();
            true
        }
    }

    fn pop_completed(&mut self) {
        if let Some((_, seq, key)) = self.completed.pop_front()
            && self.entries.get(&key).is_some_and(|e| e.seq == seq)
        {
            self.entries.remove(&key);
        }
    }
}

/// What a call with (or without) an idempotency key does: from
/// [`IdempotencyStore::begin`] (`T` is the store's ticket).
pub enum Begin<R: Rpc, T = Ticket<R>> {
    /// The call runs and nothing is stored: it has no `idempotency-key`, or the store
    /// could not decide and fails open.
    Bypass,
    /// A call with this key and request completed within the TTL: answer with this (its
    /// response, with `idempotency-replayed: true`) without running the handler.
    Replay(Response<R::Response>),
    /// The first call with this key: run it, then hand the result to
    /// [`IdempotencyTicket::complete`].
    Run(T),
}

impl<R: Rpc, T: fmt::Debug> fmt::Debug for Begin<R, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Begin::Bypass => f.write_str("Bypass"),
            Begin::Replay(_) => f.write_str("Replay(..)"),
            Begin::Run(ticket) => f.debug_tuple("Run").field(ticket).finish(),
        }
    }
}

/// The claim of a running call on its key in an [`IdempotencyCache`].
///
/// [`complete`](Self::complete) stores a success for replay; dropping the ticket without
/// completing it (the handler failed, was cancelled or panicked) frees the key, so a
/// retry runs again.
#[must_use = "dropping the ticket frees the key without storing the response"]
pub struct Ticket<R: Rpc> {
    inner: Option<Arc<Inner<R>>>,
    key: Key,
    seq: u64,
}

impl<R: Rpc> Ticket<R>
where
    R::Response: Clone,
{
    /// Ends the call: a success is stored (message and metadata) for the TTL, a failure
    /// frees the key.
    pub fn complete(mut self, result: &Result<Response<R::Response>, Status>) {
        let Ok(response) = result else {
            return; // Drop frees the key.
        };
        let Some(inner) = self.inner.take() else {
            return;
        };
        let expires = Instant::now() + inner.ttl;
        let mut state = inner.lock();
        let key = self.key.clone();
        let Some(entry) = state.entries.get_mut(&key) else {
            return;
        };
        if entry.seq != self.seq {
            return;
        }
        entry.done = Some(Done {
            message: response.get_ref().clone(),
            metadata: response.metadata().clone(),
        });
        state.completed.push_back((expires, self.seq, key));
    }
}

impl<R: Rpc> Drop for Ticket<R> {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        let mut state = inner.lock();
        if state
            .entries
            .get(&self.key)
            .is_some_and(|e| e.seq == self.seq && e.done.is_none())
        {
            state.entries.remove(&self.key);
        }
    }
}

impl<R: Rpc> fmt::Debug for Ticket<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("key", &self.key.1)
            .finish_non_exhaustive()
    }
}

fn hash_request<M: prost::Message>(request: &M) -> u64 {
    crate::util::secret().hash_one(request.encode_to_vec())
}

#[cold]
#[inline(never)]
fn invalid(call: &Call, what: &str) -> (PolicyKind, Status) {
    (
        PolicyKind::Idempotency,
        Status::invalid_argument(format!("{}: {what}", call.rpc().method)),
    )
}
