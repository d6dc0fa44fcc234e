//! `RedisGcra` against a real `redis-server` of each test's own: a limit shared by three
//! replicas, the local deny cache, and the failure policies (Redis killed, restarted,
//! paused). Rates are 5 a minute or slower, so the counts are exact in real time.

mod common_redis;

use std::time::Duration;

use common_redis::RedisServer;
use tonic_intercept::backend::{
    BackendError, Decision, FailurePolicy, RateBackend, RateKey, RateLimit, RedisGcra,
    RedisGcraConfig,
};

const RPC: &str = "users.v1.UserService/GetUser";
const FIVE_A_MINUTE: RateLimit = RateLimit::new(5, Duration::from_secs(60)).burst(5);

/// Budgets generous enough for a loaded CI machine, where no fault is injected.
fn patient() -> RedisGcraConfig {
    RedisGcraConfig::new()
        .budget(Duration::from_secs(5))
        .response_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(2))
}

/// Short budgets for the fault tests.
fn impatient(policy: FailurePolicy) -> RedisGcraConfig {
    RedisGcraConfig::new()
        .budget(Duration::from_millis(200))
        .response_timeout(Duration::from_millis(100))
        .connect_timeout(Duration::from_millis(100))
        .failure_policy(policy)
}

/// A check that must complete: generously bounded (5x the budget), no timing asserted.
async fn check(
    backend: &RedisGcra,
    key: &RateKey,
    limit: RateLimit,
) -> Result<Decision, BackendError> {
    let bound = backend.config().budget * 5;
    tokio::time::timeout(bound, backend.check(key, limit))
        .await
        .expect("a check completes within 5x its budget")
}

/// Checks until Redis admits again (at most 200 tries), returning how many checks were
/// decided without it meanwhile.
async fn until_allowed(backend: &RedisGcra, key: &RateKey, limit: RateLimit) -> u64 {
    let mut without = 0;
    for _ in 0..200 {
        match check(backend, key, limit).await {
            Ok(Decision::Allowed { .. }) => return without,
            Ok(Decision::Unchecked) | Err(_) => without += 1,
            Ok(other) => panic!("unexpected {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the backend did not recover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_callers_limit() {
    let Some(redis) = RedisServer::start("three_replicas_share_one_callers_limit") else {
        return;
    };
    let replicas: Vec<RedisGcra> = (0..3)
        .map(|_| RedisGcra::new(redis.url(), patient()).unwrap())
        .collect();
    let alice = RateKey::per_identity(RPC, "alice");
    let interval = FIVE_A_MINUTE.emission_interval();
    assert_eq!(interval, Duration::from_secs(12));

    let mut remaining = Vec::new();
    let mut denials = Vec::new();
    for i in 0..30 {
        match check(&replicas[i % 3], &alice, FIVE_A_MINUTE)
            .await
            .unwrap()
        {
            Decision::Allowed { remaining: r, .. } => remaining.push((i, r)),
            Decision::Denied {
                retry_after,
                reset_after,
            } => denials.push((i, retry_after, reset_after)),
            other => panic!("call {i}: {other:?}"),
        }
    }
    // GCRA admits the burst, 5, across all replicas (not 3 x 5), the first five calls.
    assert_eq!(remaining, [(0, 4), (1, 3), (2, 2), (3, 1), (4, 0)]);
    assert_eq!(denials.len(), 25);
    for &(i, retry_after, reset_after) in &denials {
        assert!(
            retry_after > Duration::ZERO && retry_after <= interval,
            "call {i}: retry_after {retry_after:?}"
        );
        // The same TAT on every replica: reset_after - retry_after = (burst - 1) * T.
        assert_eq!(reset_after - retry_after, interval * 4, "call {i}");
    }
    // One round trip per call until each replica holds the denial: calls 0-4 admitted,
    // 5 (replica 2), 6 (replica 0) and 7 (replica 1) refused by Redis, 8-29 locally.
    let trips: Vec<u64> = replicas.iter().map(RedisGcra::round_trips).collect();
    assert_eq!(trips, [3, 3, 2]);
    assert_eq!(replicas.iter().map(RedisGcra::errors).sum::<u64>(), 0);

    // Another caller has a bucket of its own.
    let bob = RateKey::per_identity(RPC, "bob");
    let mut bob_admitted = 0;
    for i in 0..9 {
        if check(&replicas[i % 3], &bob, FIVE_A_MINUTE)
            .await
            .unwrap()
            .admits()
        {
            bob_admitted += 1;
        }
    }
    assert_eq!(bob_admitted, 5);
}

#[tokio::test]
async fn a_refused_caller_is_refused_without_a_round_trip() {
    let Some(redis) = RedisServer::start("a_refused_caller_is_refused_without_a_round_trip") else {
        return;
    };
    let once = RateLimit::new(1, Duration::from_secs(60));
    let backend = RedisGcra::new(redis.url(), patient().deny_cache_capacity(1)).unwrap();
    let a = RateKey::per_identity(RPC, "a");
    let b = RateKey::per_identity(RPC, "b");

    assert!(matches!(
        check(&backend, &a, once).await,
        Ok(Decision::Allowed { remaining: 0, .. })
    ));
    let evalsha = redis.command_calls("evalsha");
    assert!(matches!(
        check(&backend, &a, once).await,
        Ok(Decision::Denied { .. })
    ));
    assert_eq!(redis.command_calls("evalsha"), evalsha + 1);
    assert_eq!(backend.round_trips(), 2);
    for _ in 0..10 {
        assert!(matches!(
            check(&backend, &a, once).await,
            Ok(Decision::Denied { .. })
        ));
    }
    // Ten refusals, no round trip.
    assert_eq!(backend.round_trips(), 2);
    assert_eq!(redis.command_calls("evalsha"), evalsha + 1);

    // The cache holds one denial (a's, not expired): b's refusal is not cached.
    assert!(check(&backend, &b, once).await.unwrap().admits());
    assert!(!check(&backend, &b, once).await.unwrap().admits());
    assert!(!check(&backend, &b, once).await.unwrap().admits());
    assert_eq!(backend.round_trips(), 5);
    assert_eq!(redis.command_calls("evalsha"), evalsha + 4);
    assert_eq!(backend.errors(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_then_restarted() {
    let Some(mut redis) = RedisServer::start("redis_killed_then_restarted") else {
        return;
    };
    let open = RedisGcra::new(redis.url(), impatient(FailurePolicy::FailOpen)).unwrap();
    let closed = RedisGcra::new(redis.url(), impatient(FailurePolicy::FailClosed)).unwrap();
    let key = RateKey::per_identity(RPC, "alice");
    let many = RateLimit::new(1000, Duration::from_secs(60));
    assert_eq!(until_allowed(&open, &key, many).await, 0);
    assert_eq!(until_allowed(&closed, &key, many).await, 0);

    redis.kill();
    for _ in 0..5 {
        assert_eq!(check(&open, &key, many).await, Ok(Decision::Unchecked));
        assert!(check(&closed, &key, many).await.is_err());
    }
    // Each decision taken without Redis is counted, exactly.
    assert_eq!(open.errors(), 5);
    assert_eq!(closed.errors(), 5);
    assert!(matches!(
        check(&closed, &key, many).await,
        Err(BackendError::Failed(_) | BackendError::Timeout(_))
    ));
    assert_eq!(closed.errors(), 6);

    // FallbackLocal: an in-process bucket of the same rate decides, and counts.
    let local = RedisGcra::new(redis.url(), impatient(FailurePolicy::FallbackLocal)).unwrap();
    let mut admitted = 0;
    let mut refused = Vec::new();
    for _ in 0..7 {
        match check(&local, &key, FIVE_A_MINUTE).await.unwrap() {
            Decision::Unchecked => admitted += 1,
            Decision::UncheckedDenied { retry_after } => refused.push(retry_after),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(admitted, 5);
    assert_eq!(refused.len(), 2);
    assert!(
        refused
            .iter()
            .all(|r| *r > Duration::ZERO && *r <= Duration::from_secs(12))
    );
    assert_eq!(local.errors(), 7);

    // The same instances recover once Redis is back on its port.
    redis.restart();
    let open_meanwhile = until_allowed(&open, &key, many).await;
    let closed_meanwhile = until_allowed(&closed, &key, many).await;
    assert_eq!(open.errors(), 5 + open_meanwhile);
    assert_eq!(closed.errors(), 6 + closed_meanwhile);
    assert!(matches!(
        check(&open, &key, many).await,
        Ok(Decision::Allowed { .. })
    ));
    assert!(matches!(
        check(&closed, &key, many).await,
        Ok(Decision::Allowed { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_costs_at_most_the_budget() {
    let Some(redis) = RedisServer::start("a_paused_redis_costs_at_most_the_budget") else {
        return;
    };
    let open = RedisGcra::new(redis.url(), impatient(FailurePolicy::FailOpen)).unwrap();
    let closed = RedisGcra::new(redis.url(), impatient(FailurePolicy::FailClosed)).unwrap();
    let key = RateKey::per_identity(RPC, "alice");
    let many = RateLimit::new(1000, Duration::from_secs(60));
    assert_eq!(until_allowed(&open, &key, many).await, 0);
    assert_eq!(until_allowed(&closed, &key, many).await, 0);

    redis.pause();
    for _ in 0..3 {
        // `check` panics unless the call completes (within 5x the budget).
        assert_eq!(check(&open, &key, many).await, Ok(Decision::Unchecked));
        assert!(check(&closed, &key, many).await.is_err());
    }
    assert_eq!(open.errors(), 3);
    assert_eq!(closed.errors(), 3);

    redis.resume();
    let open_meanwhile = until_allowed(&open, &key, many).await;
    let closed_meanwhile = until_allowed(&closed, &key, many).await;
    assert_eq!(open.errors(), 3 + open_meanwhile);
    assert_eq!(closed.errors(), 3 + closed_meanwhile);
}
