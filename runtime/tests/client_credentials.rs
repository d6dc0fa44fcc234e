//! The client's bearer-token provider: caching, refresh margin, single flight, errors
//! shared and not cached, cancellation of the fetching caller.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{Instant, advance, sleep};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Status};
use tonic_intercept::client::{BearerToken, TokenProvider, TokenSource};

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A source whose `n`th fetch (from 1) takes `delay`, then returns `make(n)`.
struct Source<F> {
    fetches: AtomicU32,
    delay: Duration,
    make: F,
}

impl<F> TokenSource for Source<F>
where
    F: Fn(u32) -> Result<BearerToken, Status> + Send + Sync + 'static,
{
    async fn fetch(&self) -> Result<BearerToken, Status> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        sleep(self.delay).await;
        (self.make)(n)
    }
}

fn provider<F>(delay: Duration, refresh_before: Duration, make: F) -> TokenProvider<Source<F>>
where
    F: Fn(u32) -> Result<BearerToken, Status> + Send + Sync + 'static,
{
    TokenProvider::new(
        Source {
            fetches: AtomicU32::new(0),
            delay,
            make,
        },
        refresh_before,
    )
}

fn fetches<F>(provider: &TokenProvider<Source<F>>) -> u32
where
    F: Fn(u32) -> Result<BearerToken, Status> + Send + Sync + 'static,
{
    provider.source().fetches.load(Ordering::SeqCst)
}

/// Tokens `token-<n>` living `lifetime` from when they are made.
fn lasting(
    lifetime: Duration,
) -> impl Fn(u32) -> Result<BearerToken, Status> + Send + Sync + 'static {
    move |n| Ok(BearerToken::expires_in(format!("token-{n}"), lifetime))
}

fn bearer(n: u32) -> MetadataValue<tonic::metadata::Ascii> {
    MetadataValue::try_from(format!("Bearer token-{n}")).unwrap()
}

/// Runs `calls` concurrent `token()` calls and returns their results.
async fn concurrently<S: TokenSource>(
    provider: &TokenProvider<S>,
    calls: usize,
) -> Vec<Result<MetadataValue<tonic::metadata::Ascii>, Status>> {
    let mut set = JoinSet::new();
    for _ in 0..calls {
        let provider = provider.clone();
        set.spawn(async move { provider.token().await });
    }
    let mut results = Vec::with_capacity(calls);
    while let Some(result) = set.join_next().await {
        results.push(result.unwrap());
    }
    results
}

#[tokio::test(start_paused = true)]
async fn fifty_concurrent_calls_make_one_fetch() {
    let provider = provider(secs(1), secs(10), lasting(secs(60)));
    let results = concurrently(&provider, 50).await;
    assert_eq!(results.len(), 50);
    for result in results {
        assert_eq!(result.unwrap(), bearer(1));
    }
    assert_eq!(fetches(&provider), 1);
}

#[tokio::test(start_paused = true)]
async fn cached_token_is_reused_until_the_refresh_margin_then_refreshed_once() {
    let provider = provider(Duration::ZERO, secs(10), lasting(secs(60)));
    let start = Instant::now();
    assert_eq!(provider.token().await.unwrap(), bearer(1));

    // Valid for more than 10 s: cached, up to just before expires_at - 10 s = start + 50 s.
    advance(secs(30)).await;
    assert_eq!(provider.token().await.unwrap(), bearer(1));
    advance(Duration::from_millis(19_999)).await;
    assert_eq!(Instant::now() - start, Duration::from_millis(49_999));
    assert_eq!(provider.token().await.unwrap(), bearer(1));
    assert_eq!(fetches(&provider), 1);

    // At expires_at - refresh_before: exactly one refresh, even for 50 concurrent callers.
    advance(Duration::from_millis(1)).await;
    for result in concurrently(&provider, 50).await {
        assert_eq!(result.unwrap(), bearer(2));
    }
    assert_eq!(fetches(&provider), 2);

    // The refreshed token (fetched at start + 50 s, lives 60 s) is now the cached one.
    advance(secs(49)).await;
    assert_eq!(provider.token().await.unwrap(), bearer(2));
    assert_eq!(fetches(&provider), 2);
    advance(secs(1)).await;
    assert_eq!(provider.token().await.unwrap(), bearer(3));
    assert_eq!(fetches(&provider), 3);
}

#[tokio::test(start_paused = true)]
async fn refresh_of_a_slow_source_is_shared_by_concurrent_callers() {
    // The fetch itself takes 2 s: callers arriving during it wait for it, not fetch.
    let provider = provider(secs(2), secs(5), lasting(secs(20)));
    assert_eq!(provider.token().await.unwrap(), bearer(1));
    advance(secs(15)).await;

    let first = {
        let provider = provider.clone();
        tokio::spawn(async move { provider.token().await })
    };
    advance(secs(1)).await; // mid-fetch
    let late = concurrently(&provider, 10).await;
    assert_eq!(first.await.unwrap().unwrap(), bearer(2));
    for result in late {
        assert_eq!(result.unwrap(), bearer(2));
    }
    assert_eq!(fetches(&provider), 2);
}

#[tokio::test(start_paused = true)]
async fn failed_fetch_is_shared_by_all_waiters_and_not_cached() {
    let provider = provider(secs(1), secs(10), |n| match n {
        1 => Err(Status::unavailable("token endpoint down")),
        n => Ok(BearerToken::expires_in(format!("token-{n}"), secs(60))),
    });

    let results = concurrently(&provider, 20).await;
    assert_eq!(results.len(), 20);
    for result in results {
        let status = result.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "token endpoint down");
    }
    assert_eq!(fetches(&provider), 1);

    // Not cached: the next call fetches again, and succeeds.
    assert_eq!(provider.token().await.unwrap(), bearer(2));
    assert_eq!(fetches(&provider), 2);
    assert_eq!(provider.token().await.unwrap(), bearer(2));
    assert_eq!(fetches(&provider), 2);
}

#[tokio::test(start_paused = true)]
async fn every_failure_is_retried_by_the_next_call() {
    let provider = provider(Duration::ZERO, secs(10), |_| {
        Err(Status::permission_denied("bad client secret"))
    });
    for expected in 1..=3 {
        let status = provider.token().await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(fetches(&provider), expected);
    }
}

#[tokio::test(start_paused = true)]
async fn zero_margin_refreshes_exactly_at_expiry() {
    let provider = provider(Duration::ZERO, Duration::ZERO, lasting(secs(60)));
    assert_eq!(provider.token().await.unwrap(), bearer(1));

    advance(Duration::from_millis(59_999)).await;
    assert_eq!(provider.token().await.unwrap(), bearer(1));
    assert_eq!(fetches(&provider), 1);

    advance(Duration::from_millis(1)).await;
    assert_eq!(provider.token().await.unwrap(), bearer(2));
    assert_eq!(fetches(&provider), 2);
}

#[tokio::test(start_paused = true)]
async fn margin_longer_than_the_lifetime_fetches_every_time() {
    // A token living 5 s is never valid for 10 s more: each call fetches, but still gets
    // the token it fetched.
    let provider = provider(Duration::ZERO, secs(10), lasting(secs(5)));
    assert_eq!(provider.token().await.unwrap(), bearer(1));
    assert_eq!(provider.token().await.unwrap(), bearer(2));
    assert_eq!(fetches(&provider), 2);
}

#[tokio::test(start_paused = true)]
async fn authorize_inserts_the_bearer_authorization_header() {
    let provider = provider(Duration::ZERO, secs(10), lasting(secs(60)));
    let mut request = Request::new(());
    request
        .metadata_mut()
        .insert("authorization", MetadataValue::from_static("Bearer stale"));
    provider.authorize(&mut request).await.unwrap();

    let values: Vec<_> = request
        .metadata()
        .get_all("authorization")
        .iter()
        .cloned()
        .collect();
    assert_eq!(values, [MetadataValue::from_static("Bearer token-1")]);
    assert_eq!(values[0].to_str().unwrap(), "Bearer token-1");
}

#[tokio::test(start_paused = true)]
async fn failed_authorize_leaves_the_request_unchanged() {
    let provider = provider(Duration::ZERO, secs(10), |_| {
        Err(Status::unauthenticated("no credentials"))
    });
    let mut request = Request::new(());
    let status = provider.authorize(&mut request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(request.metadata().get("authorization").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_token_that_is_not_valid_metadata_is_an_internal_error_and_not_cached() {
    let provider = provider(Duration::ZERO, secs(10), |n| match n {
        1 => Ok(BearerToken::expires_in("line\nbreak", secs(60))),
        n => Ok(BearerToken::expires_in(format!("token-{n}"), secs(60))),
    });
    assert_eq!(provider.token().await.unwrap_err().code(), Code::Internal);
    assert_eq!(provider.token().await.unwrap(), bearer(2));
    assert_eq!(fetches(&provider), 2);
}

#[tokio::test(start_paused = true)]
async fn cancelled_fetcher_hands_over_to_a_waiter() {
    let provider = provider(secs(2), secs(10), lasting(secs(60)));
    let leader = {
        let provider = provider.clone();
        tokio::spawn(async move { provider.token().await })
    };
    advance(secs(1)).await; // the leader is mid-fetch
    assert_eq!(fetches(&provider), 1);

    let waiter = {
        let provider = provider.clone();
        tokio::spawn(async move { provider.token().await })
    };
    tokio::task::yield_now().await; // the waiter is now waiting on the leader's fetch
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());

    // The waiter does not hang on the abandoned fetch: it makes the second one.
    assert_eq!(waiter.await.unwrap().unwrap(), bearer(2));
    assert_eq!(fetches(&provider), 2);
    assert_eq!(provider.token().await.unwrap(), bearer(2));
    assert_eq!(fetches(&provider), 2);
}

#[tokio::test(start_paused = true)]
async fn invalidate_forces_the_next_call_to_fetch() {
    let provider = provider(Duration::ZERO, secs(10), lasting(secs(60)));
    assert_eq!(provider.token().await.unwrap(), bearer(1));
    provider.invalidate();
    assert_eq!(provider.token().await.unwrap(), bearer(2));
    assert_eq!(fetches(&provider), 2);
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_cache() {
    let provider = provider(Duration::ZERO, secs(10), lasting(secs(60)));
    let clone = provider.clone();
    assert_eq!(provider.token().await.unwrap(), bearer(1));
    assert_eq!(clone.token().await.unwrap(), bearer(1));
    assert_eq!(fetches(&clone), 1);
    assert_eq!(clone.refresh_before(), secs(10));
}

#[test]
fn debug_output_never_shows_the_token() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let token = BearerToken::expires_in("s3cr3t", secs(60));
        let debug = format!("{token:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");

        let provider = provider(Duration::ZERO, secs(10), lasting(secs(60)));
        provider.token().await.unwrap();
        let debug = format!("{provider:?}");
        assert!(!debug.contains("token-1"), "{debug}");
        assert!(debug.contains("refresh_before"), "{debug}");
    });
}

#[tokio::test(start_paused = true)]
async fn a_source_that_never_waits_is_fetched_once() {
    // A fetch that completes without yielding: the first caller caches before the others run.
    struct Shared(Arc<AtomicU32>);
    impl TokenSource for Shared {
        async fn fetch(&self) -> Result<BearerToken, Status> {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(BearerToken::expires_in(format!("token-{n}"), secs(60)))
        }
    }
    let count = Arc::new(AtomicU32::new(0));
    let provider = TokenProvider::new(Shared(Arc::clone(&count)), secs(10));
    for result in concurrently(&provider, 50).await {
        assert_eq!(result.unwrap(), bearer(1));
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
}
