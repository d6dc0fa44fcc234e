//! Idempotency keys for unary RPCs: a retried call with the same key gets the first
//! call's response instead of running again.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Response, Status};

use crate::call::{Call, PolicyKind};
use crate::rpc::Rpc;
use crate::wire::{IDEMPOTENCY_KEY, IDEMPOTENCY_REPLAYED};

/// The longest idempotency key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;

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
    /// Decides what a call of `R` with this request metadata and request does: run
    /// ([`Begin::Bypass`] without a key, [`Begin::Run`] with one), get the stored
    /// response ([`Begin::Replay`]), or be refused with [`PolicyKind::Idempotency`]:
    ///
    /// - `INVALID_ARGUMENT`: the key is empty, longer than 255 bytes or not ASCII, or was
    ///   used with a different request;
    /// - `ABORTED`: the first call with this key is still running;
    /// - `RESOURCE_EXHAUSTED`: the cache is full of running calls.
    ///
    /// Keys are scoped to `scope` (the caller's `identity_key`, say; 0 for keys global
    /// to the RPC): the same key from two scopes names two different calls.
    fn begin_in(
        &self,
        call: &Call,
        metadata: &MetadataMap,
        request: &R::Request,
        scope: u64,
    ) -> Result<Begin<R>, (PolicyKind, Status)> {
        let Some(value) = metadata.get(IDEMPOTENCY_KEY) else {
            return Ok(Begin::Bypass);
        };
        let key = match value.to_str() {
            Ok(key) if !key.is_empty() && key.len() <= MAX_KEY_LEN => key,
            Ok("") => {
                return Err(invalid(call, "the idempotency key is empty"));
            }
            Ok(_) => {
                return Err(invalid(
                    call,
                    "the idempotency key is longer than 255 bytes",
                ));
            }
            Err(_) => {
                return Err(invalid(call, "the idempotency key is not printable ASCII"));
            }
        };
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
/// ([`Begin::Replay`]), or be refused with [`PolicyKind::Idempotency`]. The expansion of
/// `idempotency(cache, Rpc)` calls it before the handler, with `scope` the caller's
/// `identity_key` under `auth(..)` and 0 otherwise.
#[doc(hidden)] // reached through `__private`; the expansion's protocol
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
    cache.begin_in(call, metadata, request, scope)
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

/// What a call with (or without) an idempotency key does; from
/// [`begin`].
#[doc(hidden)] // reached through `__private`; the expansion's protocol
pub enum Begin<R: Rpc> {
    /// No `idempotency-key`: the call runs and nothing is stored.
    Bypass,
    /// A call with this key and request completed within the TTL: answer with this (a
    /// clone of its response, with `idempotency-replayed: true`) without running the
    /// handler.
    Replay(Response<R::Response>),
    /// The first call with this key: run it, then hand the result to
    /// [`Ticket::complete`].
    Run(Ticket<R>),
}

impl<R: Rpc> fmt::Debug for Begin<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Begin::Bypass => f.write_str("Bypass"),
            Begin::Replay(_) => f.write_str("Replay(..)"),
            Begin::Run(ticket) => f.debug_tuple("Run").field(ticket).finish(),
        }
    }
}

/// The claim of a running call on its idempotency key.
///
/// [`complete`](Self::complete) stores a success for replay; dropping the ticket without
/// completing it (the handler failed, was cancelled or panicked) frees the key, so a
/// retry runs again.
#[doc(hidden)] // reached through `__private`; the expansion's protocol
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
