//! Call credentials: an async, cached, single-flight bearer-token provider.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};

/// A bearer token and the instant it stops being accepted.
///
/// Its `Debug` output never shows the secret `value`.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken {
    /// The token itself, without the `Bearer ` prefix.
    pub value: String,
    /// When the token expires, on tokio's clock (so paused-time tests control it).
    pub expires_at: Instant,
}

impl BearerToken {
    /// A token `value` that expires at `expires_at`.
    pub fn new(value: impl Into<String>, expires_at: Instant) -> Self {
        Self {
            value: value.into(),
            expires_at,
        }
    }

    /// A token `value` that expires `lifetime` from now (e.g. an OAuth `expires_in`).
    pub fn expires_in(value: impl Into<String>, lifetime: Duration) -> Self {
        Self::new(value, Instant::now() + lifetime)
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerToken")
            .field("value", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Where a [`TokenProvider`] gets fresh tokens: an OAuth token endpoint, a metadata
/// server, a file a sidecar rewrites...
///
/// The provider calls [`fetch`](TokenSource::fetch) only when its cached token is about
/// to expire, and never twice at once.
pub trait TokenSource: Send + Sync + 'static {
    /// Fetches a new token. An error is handed to every caller waiting on this fetch and
    /// is not cached: the next [`TokenProvider::token`] fetches again.
    fn fetch(&self) -> impl Future<Output = Result<BearerToken, Status>> + Send;
}

/// What a fetch shared by concurrent callers resolves to.
type Shared = Option<Result<MetadataValue<Ascii>, Status>>;

/// The next step of [`TokenProvider::token`].
enum Step {
    /// The cached token is fresh.
    Cached(MetadataValue<Ascii>),
    /// Another caller is fetching: wait for its result.
    Wait(watch::Receiver<Shared>),
    /// Fetch, as generation `.0`, and publish the result on `.1`.
    Fetch(u64, watch::Sender<Shared>),
}

struct Cached {
    header: MetadataValue<Ascii>,
    expires_at: Instant,
}

#[derive(Default)]
struct State {
    cached: Option<Cached>,
    /// The fetch in progress, if any: its generation and where its result appears.
    in_flight: Option<(u64, watch::Receiver<Shared>)>,
    generation: u64,
}

struct Inner<S> {
    source: S,
    refresh_before: Duration,
    state: Mutex<State>,
}

impl<S> Inner<S> {
    fn state(&self) -> MutexGuard<'_, State> {
        // The lock is never held across a panic-prone call, but stay usable regardless.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An async bearer-token provider for outgoing calls: it caches the token of a
/// [`TokenSource`], refreshes it `refresh_before` its expiry, and makes one fetch for
/// all the concurrent calls that need a new token (single flight).
///
/// - While the cached token is valid for at least `refresh_before`,
///   [`token`](Self::token) returns it without fetching.
/// - Otherwise the first caller fetches; callers arriving during that fetch wait for
///   its result instead of fetching too, and all of them get the same token, or the
///   same error.
/// - A failed fetch is not cached: the next call after it fetches again.
/// - If the caller doing the fetch is cancelled, the fetch is abandoned and one of the
///   waiters starts a new one.
///
/// Clones share the cache (an [`Arc`] inside), so one provider serves a whole client.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use tonic::{Request, Status};
/// use tonic_intercept::client::{BearerToken, TokenProvider, TokenSource};
///
/// /// Stands in for an OAuth token endpoint: each token lives 1 hour.
/// struct Oauth {
///     fetches: AtomicU32,
/// }
///
/// impl TokenSource for Oauth {
///     async fn fetch(&self) -> Result<BearerToken, Status> {
///         let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
///         Ok(BearerToken::expires_in(format!("token-{n}"), Duration::from_secs(3600)))
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// // Refresh 5 minutes before the token expires.
/// let provider = TokenProvider::new(Oauth { fetches: AtomicU32::new(0) }, Duration::from_secs(300));
///
/// let mut request = Request::new(());
/// provider.authorize(&mut request).await?;
/// assert_eq!(request.metadata().get("authorization").unwrap(), "Bearer token-1");
///
/// // The second call reuses the cached token.
/// assert_eq!(provider.token().await?, "Bearer token-1");
/// assert_eq!(provider.source().fetches.load(Ordering::SeqCst), 1);
/// # Ok::<(), Status>(())
/// # }).unwrap();
/// ```
pub struct TokenProvider<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for TokenProvider<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S> fmt::Debug for TokenProvider<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.state();
        f.debug_struct("TokenProvider")
            .field("refresh_before", &self.inner.refresh_before)
            .field(
                "expires_at",
                &state.cached.as_ref().map(|cached| cached.expires_at),
            )
            .field("fetching", &state.in_flight.is_some())
            .finish_non_exhaustive()
    }
}

/// Clears the in-flight marker of generation `generation` when the fetching caller
/// finishes or is cancelled, so that waiters never wait on an abandoned fetch.
struct FlightGuard<'a, S> {
    inner: &'a Inner<S>,
    generation: u64,
}

impl<S> Drop for FlightGuard<'_, S> {
    fn drop(&mut self) {
        let mut state = self.inner.state();
        if matches!(state.in_flight, Some((generation, _)) if generation == self.generation) {
            state.in_flight = None;
        }
    }
}

impl<S: TokenSource> TokenProvider<S> {
    /// A provider fetching from `source` that refreshes a token `refresh_before` it
    /// expires (`Duration::ZERO`: only once it has expired).
    pub fn new(source: S, refresh_before: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                source,
                refresh_before,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The token source.
    pub fn source(&self) -> &S {
        &self.inner.source
    }

    /// How long before its expiry a token is refreshed.
    pub fn refresh_before(&self) -> Duration {
        self.inner.refresh_before
    }

    /// Forgets the cached token, so the next [`token`](Self::token) fetches a new one
    /// (e.g. after the server answered `UNAUTHENTICATED`). A fetch in progress is not
    /// affected.
    pub fn invalidate(&self) {
        self.inner.state().cached = None;
    }

    /// The `authorization` metadata value, `Bearer <token>`.
    ///
    /// Returns the cached token while it is valid for at least `refresh_before`, that is
    /// strictly before `expires_at - refresh_before`; otherwise fetches a new one, sharing
    /// a fetch already in progress. A token the source returns is handed to the callers of
    /// that fetch even if it is already inside the refresh margin.
    ///
    /// # Errors
    ///
    /// The error of the fetch, or `INTERNAL` if the source returned a token that is not a
    /// valid ASCII metadata value; in both cases nothing is cached.
    pub async fn token(&self) -> Result<MetadataValue<Ascii>, Status> {
        loop {
            let (generation, tx) = match self.next_step() {
                Step::Cached(header) => return Ok(header),
                Step::Wait(mut rx) => {
                    if let Ok(shared) = rx.wait_for(Option::is_some).await
                        && let Some(result) = shared.as_ref()
                    {
                        return result.clone();
                    }
                    // The fetching caller was cancelled: start over.
                    continue;
                }
                Step::Fetch(generation, tx) => (generation, tx),
            };

            let guard = FlightGuard {
                inner: &self.inner,
                generation,
            };
            let result = self.inner.source.fetch().await.and_then(|token| {
                let header =
                    MetadataValue::try_from(format!("Bearer {}", token.value)).map_err(|_| {
                        Status::internal("token source returned a token that is not valid metadata")
                    })?;
                Ok(Cached {
                    header,
                    expires_at: token.expires_at,
                })
            });
            let result = result.map(|cached| {
                let header = cached.header.clone();
                self.inner.state().cached = Some(cached);
                header
            });
            drop(guard);
            tx.send_replace(Some(result.clone()));
            return result;
        }
    }

    /// What [`token`](Self::token) does next, decided under the state lock.
    /// The cached header while it is fresh, without fetching.
    pub(crate) fn fresh(&self) -> Option<MetadataValue<Ascii>> {
        self.cached(&self.inner.state())
    }

    fn cached(&self, state: &State) -> Option<MetadataValue<Ascii>> {
        let cached = state.cached.as_ref()?;
        // Fresh while now < expires_at - refresh_before (without underflowing).
        let fresh = Instant::now()
            .checked_add(self.inner.refresh_before)
            .is_some_and(|margin_end| margin_end < cached.expires_at);
        fresh.then(|| cached.header.clone())
    }

    fn next_step(&self) -> Step {
        let mut state = self.inner.state();
        if let Some(header) = self.cached(&state) {
            return Step::Cached(header);
        }
        if let Some((_, rx)) = &state.in_flight {
            return Step::Wait(rx.clone());
        }
        state.generation += 1;
        let generation = state.generation;
        let (tx, rx) = watch::channel(None);
        state.in_flight = Some((generation, rx));
        Step::Fetch(generation, tx)
    }

    /// Inserts `authorization: Bearer <token>` into `request`'s metadata, replacing any
    /// value already there.
    ///
    /// # Errors
    ///
    /// As [`token`](Self::token); the request is then left unchanged.
    pub async fn authorize<T>(&self, request: &mut tonic::Request<T>) -> Result<(), Status> {
        let header = self.token().await?;
        request.metadata_mut().insert("authorization", header);
        Ok(())
    }
}
