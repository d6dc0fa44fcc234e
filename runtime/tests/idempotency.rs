//! Idempotency keys: replay, TTL, mismatch, running calls, failures and the memory bound,
//! driven with `begin` / `complete` as `#[intercept]` drives them, under paused time.

use std::time::Duration;

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status};
use tonic_intercept::__private::{Begin, Ticket, idempotency_begin as begin};
use tonic_intercept::limits::identity_key;
use tonic_intercept::{Call, IdempotencyCache, PolicyKind, Rpc};

#[derive(Clone, PartialEq, prost::Message)]
pub struct PayRequest {
    #[prost(uint64, tag = "1")]
    pub cents: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Payment {
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

tonic_intercept::__doc_rpc!(Pay, "pay.v1.Payments", "Pay", Unary, PayRequest, Payment);

fn call() -> Call {
    Call::start(&Pay::DESCRIPTOR, &Request::new(()), None)
}

fn key(k: &str) -> MetadataMap {
    let mut m = MetadataMap::new();
    m.insert("idempotency-key", k.parse().unwrap());
    m
}

fn pay(cents: u64) -> PayRequest {
    PayRequest { cents }
}

/// What the macro's expansion does around a handler: begin, run (counting), complete.
fn handle(
    cache: &IdempotencyCache<Pay>,
    metadata: &MetadataMap,
    request: &PayRequest,
    runs: &mut u64,
    outcome: Result<u64, Status>,
) -> Result<Response<Payment>, (Option<PolicyKind>, Status)> {
    let ticket = match begin(cache, &call(), metadata, request, 0) {
        Err((policy, status)) => return Err((Some(policy), status)),
        Ok(Begin::Replay(response)) => return Ok(response),
        Ok(Begin::Bypass) => None,
        Ok(Begin::Run(ticket)) => Some(ticket),
    };
    *runs += 1;
    let result = outcome.map(|id| {
        let mut response = Response::new(Payment { id });
        response
            .metadata_mut()
            .insert("x-payment", MetadataValue::from(id));
        response
    });
    if let Some(ticket) = ticket {
        ticket.complete(&result);
    }
    result.map_err(|s| (None, s))
}

fn run(begin: Result<Begin<Pay>, (PolicyKind, Status)>) -> Ticket<Pay> {
    match begin {
        Ok(Begin::Run(ticket)) => ticket,
        other => panic!("expected Run, got {other:?}"),
    }
}

fn refused(begin: Result<Begin<Pay>, (PolicyKind, Status)>) -> Status {
    match begin {
        Err((policy, status)) => {
            assert_eq!(policy, PolicyKind::Idempotency);
            status
        }
        Ok(other) => panic!("expected a refusal, got {other:?}"),
    }
}

fn is_replay(begin: Result<Begin<Pay>, (PolicyKind, Status)>) -> bool {
    matches!(begin, Ok(Begin::Replay(_)))
}

#[tokio::test(start_paused = true)]
async fn a_retry_replays_the_first_response_without_running_again() {
    let cache = IdempotencyCache::<Pay>::new(Duration::from_secs(60), 100);
    let mut runs = 0;
    let first = handle(&cache, &key("k1"), &pay(500), &mut runs, Ok(7)).unwrap();
    assert!(first.metadata().get("idempotency-replayed").is_none());

    let retry = handle(&cache, &key("k1"), &pay(500), &mut runs, Ok(8)).unwrap();
    assert_eq!(runs, 1);
    assert_eq!(retry.get_ref(), &Payment { id: 7 });
    assert_eq!(
        retry.metadata().get("idempotency-replayed").unwrap(),
        "true"
    );
    assert_eq!(retry.metadata().get("x-payment").unwrap(), "7");

    // Without a key nothing is cached; another key runs.
    handle(&cache, &MetadataMap::new(), &pay(500), &mut runs, Ok(9)).unwrap();
    handle(&cache, &key("k2"), &pay(500), &mut runs, Ok(10)).unwrap();
    assert_eq!(runs, 3);
    assert!(matches!(
        begin(&cache, &call(), &MetadataMap::new(), &pay(1), 0),
        Ok(Begin::Bypass)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_completed_key_expires_after_the_ttl() {
    let cache = IdempotencyCache::<Pay>::new(Duration::from_secs(60), 100);
    let mut runs = 0;
    handle(&cache, &key("k"), &pay(1), &mut runs, Ok(1)).unwrap();
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(is_replay(begin(&cache, &call(), &key("k"), &pay(1), 0)));
    tokio::time::advance(Duration::from_secs(1)).await;
    let again = handle(&cache, &key("k"), &pay(1), &mut runs, Ok(2)).unwrap();
    assert_eq!(runs, 2);
    assert_eq!(again.get_ref().id, 2);
    assert!(again.metadata().get("idempotency-replayed").is_none());
}

#[tokio::test(start_paused = true)]
async fn the_same_key_with_another_request_is_invalid() {
    let cache = IdempotencyCache::<Pay>::new(Duration::from_secs(60), 100);
    let mut runs = 0;
    handle(&cache, &key("k"), &pay(500), &mut runs, Ok(1)).unwrap();
    let status = refused(begin(&cache, &call(), &key("k"), &pay(501), 0));
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Pay: idempotency key reused with a different request"
    );
    // Also while the first call is still running.
    let _ticket = run(begin(&cache, &call(), &key("r"), &pay(1), 0));
    let status = refused(begin(&cache, &call(), &key("r"), &pay(2), 0));
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test(start_paused = true)]
async fn a_key_whose_call_is_running_is_aborted() {
    let cache = IdempotencyCache::<Pay>::new(Duration::from_secs(60), 100);
    let ticket = run(begin(&cache, &call(), &key("k"), &pay(1), 0));
    let status = refused(begin(&cache, &call(), &key("k"), &pay(1), 0));
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(
        status.message(),
        "Pay: a call with this idempotency key is still running; retry later"
    );
    ticket.complete(&Ok(Response::new(Payment { id: 3 })));
    assert!(is_replay(begin(&cache, &call(), &key("k"), &pay(1), 0)));
}

#[tokio::test(start_paused = true)]
async fn a_failed_or_dropped_call_frees_its_key() {
    let cache = IdempotencyCache::<Pay>::new(Duration::from_secs(60), 100);
    let mut runs = 0;
    let failed = handle(
        &cache,
        &key("k"),
        &pay(1),
        &mut runs,
        Err(Status::unavailable("db down")),
    );
    assert_eq!(failed.unwrap_err().1.code(), Code::Unavailable);
    // The retry runs, and its success is stored.
    handle(&cache, &key("k"), &pay(1), &mut runs, Ok(4)).unwrap();
    assert_eq!(runs, 2);
    assert!(is_replay(begin(&cache, &call(), &key("k"), &pay(1), 0)));

    // Cancelled or panicked: the ticket is dropped without `complete`.
    drop(run(begin(&cache, &call(), &key("gone"), &pay(1), 0)));
    drop(run(begin(&cache, &call(), &key("gone"), &pay(1), 0)));
    let caught = std::panic::catch_unwind(|| {
        let _ticket = run(begin(&cache, &call(), &key("boom"), &pay(1), 0));
        panic!("handler panicked");
    });
    assert!(caught.is_err());
    drop(run(begin(&cache, &call(), &key("boom"), &pay(1), 0)));
}

#[tokio::test(start_paused = true)]
async fn bad_keys_are_invalid() {
    let cache = IdempotencyCache::<Pay>::new(Duration::from_secs(60), 100);
    let long = "x".repeat(256);
    let status = refused(begin(&cache, &call(), &key(&long), &pay(1), 0));
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("255"), "{status:?}");
    drop(run(begin(
        &cache,
        &call(),
        &key(&"x".repeat(255)),
        &pay(1),
        0,
    )));

    let mut accented = MetadataMap::new();
    accented.insert(
        "idempotency-key",
        MetadataValue::try_from("caf\u{e9}".as_bytes()).unwrap(),
    );
    let status = refused(begin(&cache, &call(), &accented, &pay(1), 0));
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("ASCII"), "{status:?}");

    let status = refused(begin(&cache, &call(), &key(""), &pay(1), 0));
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test(start_paused = true)]
async fn scoped_keys_do_not_meet() {
    let cache = IdempotencyCache::<Pay>::new(Duration::from_secs(60), 100);
    let (alice, bob) = (identity_key("alice"), identity_key("bob"));
    let ticket = run(begin(&cache, &call(), &key("k"), &pay(1), alice));
    // Bob's "k" is another call: neither running nor a mismatch.
    let bobs = run(begin(&cache, &call(), &key("k"), &pay(2), bob));
    ticket.complete(&Ok(Response::new(Payment { id: 1 })));
    bobs.complete(&Ok(Response::new(Payment { id: 2 })));
    match begin(&cache, &call(), &key("k"), &pay(2), bob) {
        Ok(Begin::Replay(r)) => assert_eq!(r.get_ref().id, 2),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn eviction_takes_expired_entries_then_the_oldest_completed() {
    let cache = IdempotencyCache::<Pay>::new(Duration::from_secs(60), 3);
    let mut runs = 0;
    handle(&cache, &key("a"), &pay(1), &mut runs, Ok(1)).unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    handle(&cache, &key("b"), &pay(1), &mut runs, Ok(2)).unwrap();
    handle(&cache, &key("c"), &pay(1), &mut runs, Ok(3)).unwrap();
    assert_eq!(cache.len(), 3);

    // Full, nothing expired: the oldest completed (`a`) makes room.
    run(begin(&cache, &call(), &key("d"), &pay(1), 0))
        .complete(&Ok(Response::new(Payment { id: 4 })));
    assert_eq!(cache.len(), 3);
    assert!(!is_replay(begin(&cache, &call(), &key("a"), &pay(1), 0))); // runs again (evicts `b`)
    assert!(is_replay(begin(&cache, &call(), &key("c"), &pay(1), 0)));
    assert!(is_replay(begin(&cache, &call(), &key("d"), &pay(1), 0)));
    assert!(!is_replay(begin(&cache, &call(), &key("b"), &pay(1), 0)));

    // Expired entries go first, before any completed one that is still live.
    let cache = IdempotencyCache::<Pay>::new(Duration::from_secs(60), 3);
    handle(&cache, &key("old"), &pay(1), &mut runs, Ok(1)).unwrap();
    tokio::time::advance(Duration::from_secs(50)).await;
    handle(&cache, &key("x"), &pay(1), &mut runs, Ok(2)).unwrap();
    handle(&cache, &key("y"), &pay(1), &mut runs, Ok(3)).unwrap();
    tokio::time::advance(Duration::from_secs(10)).await; // `old` expires
    run(begin(&cache, &call(), &key("z"), &pay(1), 0))
        .complete(&Ok(Response::new(Payment { id: 4 })));
    for k in ["x", "y", "z"] {
        assert!(
            is_replay(begin(&cache, &call(), &key(k), &pay(1), 0)),
            "{k}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_cache_full_of_running_calls_refuses_new_keys() {
    let cache = IdempotencyCache::<Pay>::new(Duration::from_secs(60), 2);
    let a = run(begin(&cache, &call(), &key("a"), &pay(1), 0));
    let _b = run(begin(&cache, &call(), &key("b"), &pay(1), 0));
    let status = refused(begin(&cache, &call(), &key("c"), &pay(1), 0));
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(cache.len(), 2);
    // Calls without a key are not affected.
    assert!(matches!(
        begin(&cache, &call(), &MetadataMap::new(), &pay(1), 0),
        Ok(Begin::Bypass)
    ));
    // Once one completes, it can be evicted to make room.
    a.complete(&Ok(Response::new(Payment { id: 1 })));
    drop(run(begin(&cache, &call(), &key("c"), &pay(1), 0)));
}

#[tokio::test(start_paused = true)]
async fn the_bound_holds_under_many_keys() {
    let cache = IdempotencyCache::<Pay>::new(Duration::from_secs(60), 1_000);
    let mut runs = 0;
    for i in 0..20_000u64 {
        let k = format!("key-{i}");
        handle(&cache, &key(&k), &pay(i), &mut runs, Ok(i)).unwrap();
        assert!(cache.len() <= 1_000);
        if i % 1_000 == 0 {
            tokio::time::advance(Duration::from_secs(1)).await;
        }
    }
    assert_eq!(runs, 20_000);
    assert_eq!(cache.len(), 1_000);
    // The most recent keys are the ones kept.
    assert!(is_replay(begin(
        &cache,
        &call(),
        &key("key-19999"),
        &pay(19_999),
        0
    )));
    assert!(!is_replay(begin(
        &cache,
        &call(),
        &key("key-0"),
        &pay(0),
        0
    )));
    // After the TTL everything has expired.
    tokio::time::advance(Duration::from_secs(61)).await;
    let _running = run(begin(&cache, &call(), &key("fresh"), &pay(1), 0));
    assert_eq!(cache.len(), 1);
}
