//! `RedisIdempotency` against a real `redis-server` of each test's own: two replicas of
//! one `#[intercept(auth(..), idempotency(self.store, Unary))]` service, two tonic
//! servers on loopback, each with its own store and its own connection to Redis (a
//! store is a field of the service: the replicas share nothing in this process but the
//! test's handler counter). Exact codes and counts; no timing is asserted.

mod common_redis;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use common_redis::RedisServer;
use tokio::sync::Semaphore;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::BinaryMetadataValue;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_intercept::auth::Principal;
use tonic_intercept::idempotency::{RedisIdempotency, RedisIdempotencyConfig};
use tonic_intercept::wire::{IDEMPOTENCY_KEY, IDEMPOTENCY_REPLAYED, RETRY_PUSHBACK};
use tonic_intercept::{StaticTokens, intercept};
use tonic_intercept_tests::pb::echo_service_intercept as rpc;
use tonic_intercept_tests::pb::{EchoReply, EchoRequest, StreamRequest, Summary};
use tonic_intercept_tests::{client, serve, with_token};

type Client =
    tonic_intercept_tests::pb::echo_service_client::EchoServiceClient<tonic::transport::Channel>;
type Replies = ReceiverStream<Result<EchoReply, Status>>;

/// What the test sees of the handlers of every replica.
#[derive(Debug)]
struct Work {
    /// Handler runs, across all replicas; a reply's `seq` is its run's number.
    handled: AtomicU32,
    /// Requests with text `hold` wait here for a permit.
    gate: Semaphore,
    /// While set, the handler fails with `UNAVAILABLE`.
    failing: AtomicBool,
}

impl Work {
    fn new() -> Arc<Self> {
        Arc::new(Work {
            handled: AtomicU32::new(0),
            gate: Semaphore::new(0),
            failing: AtomicBool::new(false),
        })
    }

    fn handled(&self) -> u32 {
        self.handled.load(Ordering::SeqCst)
    }
}

/// One replica: its own verifier and its own store, the test's counter.
struct Replica {
    tokens: StaticTokens<Principal>,
    store: RedisIdempotency<rpc::Unary>,
    work: Arc<Work>,
}

#[intercept(auth(self.tokens), idempotency(self.store, Unary))]
#[tonic::async_trait]
impl tonic_intercept_tests::pb::echo_service_server::EchoService for Replica {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let seq = self.work.handled.fetch_add(1, Ordering::SeqCst) + 1;
        let who = request
            .extensions()
            .get::<Principal>()
            .map_or_else(String::new, |p| p.name.clone());
        let text = request.into_inner().text;
        if self.work.failing.load(Ordering::SeqCst) {
            return Err(Status::unavailable("failed on purpose"));
        }
        if text == "hold" {
            self.work
                .gate
                .acquire()
                .await
                .expect("never closed")
                .forget();
        }
        let mut response = Response::new(EchoReply {
            text: format!("{text} for {who}"),
            seq: seq.into(),
        });
        response.metadata_mut().insert("x-order", seq.into());
        response.metadata_mut().insert_bin(
            "x-receipt-bin",
            BinaryMetadataValue::from_bytes(&[0, seq as u8, 255]),
        );
        Ok(response)
    }

    type ServerStreamStream = Replies;

    async fn server_stream(
        &self,
        _: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        Err(Status::unimplemented("not here"))
    }

    async fn client_stream(
        &self,
        _: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Summary>, Status> {
        Err(Status::unimplemented("not here"))
    }

    type BidiStream = Replies;

    async fn bidi(
        &self,
        _: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        Err(Status::unimplemented("not here"))
    }
}

/// Budgets generous enough for a loaded CI machine, where no fault is injected; claims
/// without a deadline last a minute (longer than any test).
fn patient() -> RedisIdempotencyConfig {
    RedisIdempotencyConfig::new()
        .max_claim(Duration::from_secs(60))
        .budget(Duration::from_secs(5))
        .response_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(2))
}

/// Short budgets for the fault tests.
fn impatient() -> RedisIdempotencyConfig {
    RedisIdempotencyConfig::new()
        .max_claim(Duration::from_secs(60))
        .budget(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(150))
        .connect_timeout(Duration::from_millis(150))
}

/// A replica on its own loopback server, with its own store on `redis`; its client and
/// its store (the test reads `errors()`).
async fn replica(
    redis: &RedisServer,
    config: RedisIdempotencyConfig,
    work: &Arc<Work>,
) -> (Client, RedisIdempotency<rpc::Unary>) {
    let store = RedisIdempotency::new(redis.url(), config).unwrap();
    let service = Replica {
        tokens: StaticTokens::new([("a", Principal::new("ada")), ("b", Principal::new("bob"))]),
        store: store.clone(),
        work: work.clone(),
    };
    (client(serve(service).await).await, store)
}

/// A request with a token and an idempotency key.
fn keyed(text: &str, token: &str, key: &str) -> Request<EchoRequest> {
    let mut request = with_token(EchoRequest { text: text.into() }, token);
    request
        .metadata_mut()
        .insert(IDEMPOTENCY_KEY, key.parse().unwrap());
    request
}

fn replayed<T>(response: &Response<T>) -> Option<&str> {
    response
        .metadata()
        .get(IDEMPOTENCY_REPLAYED)
        .map(|v| v.to_str().unwrap())
}

/// `(x-order, x-receipt-bin)` of a response.
fn receipt<T>(response: &Response<T>) -> (String, Vec<u8>) {
    let metadata = response.metadata();
    (
        metadata
            .get("x-order")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string(),
        metadata
            .get_bin("x-receipt-bin")
            .unwrap()
            .to_bytes()
            .unwrap()
            .to_vec(),
    )
}

/// The `grpc-retry-pushback-ms` of a refusal.
fn pushback_ms(status: &Status) -> u64 {
    status
        .metadata()
        .get(RETRY_PUSHBACK)
        .expect("a pushback hint")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Waits until `done` holds (a guard against hanging, not a timing assertion).
async fn until(what: &str, done: impl Fn() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .unwrap_or_else(|_| panic!("still not {what}"));
}

/// The idempotency keys in Redis, sorted.
fn redis_keys(redis: &RedisServer) -> Vec<String> {
    let mut connection = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("ti:*")
        .query(&mut connection)
        .unwrap();
    keys.sort();
    keys
}

/// The Redis key of an idempotency key of `Unary`: SHA-256 of the caller's identity as
/// its `Hash` writes it (`Principal { name, roles: [] }`: the name, 0xff, then the
/// roles' length as a little-endian u64), fixed on every replica of every process.
const ADA: &str = "3d840f810869d134ef36457841cef211";
const BOB: &str = "4dc93edb823cf8d8cae5870f88a2d904";

fn key_of(scope: &str, key: &str) -> String {
    format!("ti:{{echo.v1.EchoService/Unary}}:idem:{scope}:{key}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_another_replica_is_replayed_and_the_handler_ran_once() {
    let Some(redis) = RedisServer::start("a_retry_on_another_replica_is_replayed") else {
        return;
    };
    let work = Work::new();
    let (mut a, store_a) = replica(&redis, patient(), &work).await;
    let (mut b, store_b) = replica(&redis, patient(), &work).await;

    // The first call runs on A.
    let first = a.unary(keyed("pay", "a", "k1")).await.unwrap();
    assert_eq!(replayed(&first), None);
    assert_eq!(receipt(&first), ("1".to_string(), vec![0, 1, 255]));
    let first_reply = first.get_ref().clone();
    assert_eq!(
        first_reply,
        EchoReply {
            text: "pay for ada".into(),
            seq: 1
        }
    );
    assert_eq!(work.handled(), 1);

    // The retry lands on B: the same reply and metadata, marked as replayed; the
    // handler ran once across both replicas.
    let retry = b.unary(keyed("pay", "a", "k1")).await.unwrap();
    assert_eq!(replayed(&retry), Some("true"));
    assert_eq!(receipt(&retry), receipt(&first));
    assert_eq!(retry.into_inner(), first_reply);
    let again = a.unary(keyed("pay", "a", "k1")).await.unwrap();
    assert_eq!(replayed(&again), Some("true"));
    assert_eq!(again.into_inner(), first_reply);
    assert_eq!(work.handled(), 1);

    // The same key with another request, on either replica: INVALID_ARGUMENT.
    for client in [&mut a, &mut b] {
        let status = client.unary(keyed("refund", "a", "k1")).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "Unary: idempotency key reused with a different request"
        );
    }
    assert_eq!(work.handled(), 1);

    // Keys belong to their caller: Bob's "k1" is another call, replayed to Bob only.
    let bob = b.unary(keyed("pay", "b", "k1")).await.unwrap();
    assert_eq!(replayed(&bob), None);
    assert_eq!(bob.get_ref().text, "pay for bob");
    assert_eq!(work.handled(), 2);
    let bob_retry = a.unary(keyed("pay", "b", "k1")).await.unwrap();
    assert_eq!(replayed(&bob_retry), Some("true"));
    assert_eq!(bob_retry.get_ref().seq, 2);

    // Without a key, every call runs.
    a.unary(with_token(EchoRequest { text: "pay".into() }, "a"))
        .await
        .unwrap();
    assert_eq!(work.handled(), 3);

    // One Redis key per caller and key, named the same by both replicas.
    assert_eq!(redis_keys(&redis), [key_of(ADA, "k1"), key_of(BOB, "k1")]);

    // Round trips (the scripts are loaded by now): a replay costs one, a call that runs
    // two (the claim, then the completion).
    let evalsha = redis.command_calls("evalsha");
    b.unary(keyed("pay", "a", "k1")).await.unwrap();
    assert_eq!(redis.command_calls("evalsha"), evalsha + 1);
    b.unary(keyed("pay", "a", "k5")).await.unwrap();
    assert_eq!(redis.command_calls("evalsha"), evalsha + 3);
    assert_eq!(store_a.errors() + store_b.errors(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_duplicate_on_another_replica_is_aborted_with_pushback() {
    let Some(redis) = RedisServer::start("a_concurrent_duplicate_is_aborted") else {
        return;
    };
    let work = Work::new();
    let (a, store_a) = replica(&redis, patient(), &work).await;
    let (mut b, store_b) = replica(&redis, patient(), &work).await;

    // The first call holds its key on A, blocked in the handler.
    let mut first_client = a.clone();
    let first = tokio::spawn(async move { first_client.unary(keyed("hold", "a", "k2")).await });
    until("the first call in the handler", || work.handled() == 1).await;

    // The duplicate on B, and on A: refused, with the claim's remaining life as pushback
    // (no deadline: at most `max_claim`, a minute).
    for client in [&mut b, &mut a.clone()] {
        let status = client.unary(keyed("hold", "a", "k2")).await.unwrap_err();
        assert_eq!(status.code(), Code::Aborted);
        assert_eq!(
            status.message(),
            "Unary: a call with this idempotency key is still running; retry later"
        );
        let pushback = pushback_ms(&status);
        assert!(pushback > 0 && pushback <= 60_000, "{pushback}");
    }
    // Another request under the running key is a mismatch, not a wait.
    let status = b.unary(keyed("other", "a", "k2")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(work.handled(), 1);

    // The first call completes; the retry on B is its replay.
    work.gate.add_permits(1);
    let first = first.await.unwrap().unwrap();
    assert_eq!(replayed(&first), None);
    let retry = b.unary(keyed("hold", "a", "k2")).await.unwrap();
    assert_eq!(replayed(&retry), Some("true"));
    assert_eq!(retry.into_inner(), first.into_inner());
    assert_eq!(work.handled(), 1);
    assert_eq!(store_a.errors() + store_b.errors(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_cancelled_call_releases_its_key_and_the_retry_runs() {
    let Some(redis) = RedisServer::start("a_failed_call_releases_its_key") else {
        return;
    };
    let work = Work::new();
    let (mut a, store_a) = replica(&redis, patient(), &work).await;
    let (mut b, store_b) = replica(&redis, patient(), &work).await;

    // A failure is not stored, and frees the key before its status goes out.
    work.failing.store(true, Ordering::SeqCst);
    let status = a.unary(keyed("pay", "a", "k3")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "failed on purpose");
    assert_eq!(work.handled(), 1);
    assert!(redis_keys(&redis).is_empty());

    // So the retry on B runs, and its success is what later retries get.
    work.failing.store(false, Ordering::SeqCst);
    let retry = b.unary(keyed("pay", "a", "k3")).await.unwrap();
    assert_eq!(replayed(&retry), None);
    assert_eq!(retry.get_ref().seq, 2);
    assert_eq!(work.handled(), 2);
    let replay = a.unary(keyed("pay", "a", "k3")).await.unwrap();
    assert_eq!(replayed(&replay), Some("true"));
    assert_eq!(replay.get_ref().seq, 2);
    assert_eq!(work.handled(), 2);

    // A call whose client goes away while it runs: its ticket is dropped, which frees
    // the key (from a spawned task), long before the minute its claim would last.
    let mut gone = a.clone();
    let cancelled = tokio::spawn(async move { gone.unary(keyed("hold", "a", "k4")).await });
    until("the held call in the handler", || work.handled() == 3).await;
    cancelled.abort();
    let mut retrier = b.clone();
    let retried = tokio::spawn(async move {
        // Refused (ABORTED, handler not run) until the release lands, then it runs.
        for _ in 0..1000 {
            match retrier.unary(keyed("hold", "a", "k4")).await {
                Err(status) if status.code() == Code::Aborted => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => return other,
            }
        }
        panic!("the cancelled call's key was never freed");
    });
    until("the retry in the handler", || work.handled() == 4).await;
    work.gate.add_permits(1);
    let retried = retried.await.unwrap().unwrap();
    assert_eq!(replayed(&retried), None);
    assert_eq!(retried.get_ref().seq, 4);
    let replay = a.unary(keyed("hold", "a", "k4")).await.unwrap();
    assert_eq!(replayed(&replay), Some("true"));
    assert_eq!(replay.get_ref().seq, 4);
    assert_eq!(work.handled(), 4);
    assert_eq!(store_a.errors() + store_b.errors(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_or_open_and_recovers_when_it_is_back() {
    let Some(mut redis) = RedisServer::start("redis_down_fails_closed_or_open") else {
        return;
    };
    let work = Work::new();
    let (mut closed, closed_store) = replica(&redis, impatient(), &work).await;
    let (mut open, open_store) = replica(&redis, impatient().fail_open(true), &work).await;

    // Both work while Redis is up.
    closed.unary(keyed("pay", "a", "up")).await.unwrap();
    let replay = open.unary(keyed("pay", "a", "up")).await.unwrap();
    assert_eq!(replayed(&replay), Some("true"));
    assert_eq!(work.handled(), 1);

    redis.kill();
    // Fail closed (the default): refused, the handler does not run.
    for _ in 0..3 {
        let status = closed.unary(keyed("pay", "a", "down")).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.message(),
            "Unary: the idempotency store is unavailable; retry later"
        );
    }
    assert_eq!(work.handled(), 1);
    assert_eq!(closed_store.errors(), 3);
    // Fail open: the call runs, without deduplication (each retry runs again).
    for seq in [2, 3] {
        let reply = open.unary(keyed("pay", "a", "down")).await.unwrap();
        assert_eq!(replayed(&reply), None);
        assert_eq!(reply.get_ref().seq, seq);
    }
    assert_eq!(work.handled(), 3);
    assert_eq!(open_store.errors(), 2);
    // A call without a key never asks the store.
    closed
        .unary(with_token(EchoRequest { text: "pay".into() }, "a"))
        .await
        .unwrap();
    assert_eq!(work.handled(), 4);
    assert_eq!(closed_store.errors(), 3);

    // Redis comes back on its port (empty: it kept nothing): the same servers recover.
    redis.restart();
    let mut refused = 0;
    let reply = loop {
        match closed.unary(keyed("pay", "a", "back")).await {
            Ok(reply) => break reply,
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable);
                refused += 1;
                assert!(refused < 200, "the store did not recover");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(replayed(&reply), None);
    assert_eq!(work.handled(), 5);
    assert_eq!(closed_store.errors(), 3 + refused);
    let replay = loop {
        // The fail-open replica's connection may take a moment more: meanwhile its
        // calls run undeduplicated, which this loop would see as a reply without the mark.
        let response = open.unary(keyed("pay", "a", "back")).await.unwrap();
        if replayed(&response).is_some() {
            break response;
        }
        assert!(open_store.errors() < 200, "the store did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(replay.into_inner(), reply.into_inner());
    assert_eq!(
        work.handled(),
        5 + u32::try_from(open_store.errors() - 2).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_holds_no_call_past_the_budget() {
    let Some(redis) = RedisServer::start("a_paused_redis_holds_no_call_past_the_budget") else {
        return;
    };
    let work = Work::new();
    let (mut closed, closed_store) = replica(&redis, impatient(), &work).await;
    let (mut open, open_store) = replica(&redis, impatient().fail_open(true), &work).await;
    closed.unary(keyed("pay", "a", "up")).await.unwrap();
    assert_eq!(work.handled(), 1);

    redis.pause();
    // A guard against hanging (5x the budget), not a timing assertion: the call is
    // decided without Redis, within its budget.
    let bound = impatient().budget * 5;
    let status = tokio::time::timeout(bound, closed.unary(keyed("pay", "a", "slow")))
        .await
        .expect("decided within the budget")
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let reply = tokio::time::timeout(bound, open.unary(keyed("pay", "a", "slow")))
        .await
        .expect("decided within the budget")
        .unwrap();
    assert_eq!(replayed(&reply), None);
    assert_eq!(work.handled(), 2);
    assert_eq!(closed_store.errors(), 1);
    assert_eq!(open_store.errors(), 1);

    redis.resume();
    let mut refused = 0;
    loop {
        match closed.unary(keyed("pay", "a", "up")).await {
            Ok(reply) => {
                assert_eq!(replayed(&reply), Some("true"));
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable);
                refused += 1;
                assert!(refused < 200, "the store did not recover");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert_eq!(closed_store.errors(), 1 + refused);
    assert_eq!(work.handled(), 2);
}
