//! The generated client against a fault-injecting server on loopback: retries and their
//! backoff, pushback, throttling, deadlines, the commit rules of streams, replay, limits,
//! hooks, credentials, propagation through an `#[intercept]`ed relay, and metrics.
//!
//! Time is paused (tokio's `start_paused`): backoffs and stalls advance the clock as soon
//! as nothing else can run, so waits are measured exactly on tokio's clock, never with
//! the wall clock, and loopback I/O takes no time on it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_intercept::prometheus_client::registry::Registry;
use tonic_intercept::{
    ClientConfig, ClientHook, ClientPolicy, Rpc, client::BearerToken, client::ClientMetrics,
    client::ClientOutcome, client::GiveUpReason, client::RetryPolicy, client::RetryThrottle,
    client::TokenProvider, client::TokenSource, intercept, metrics::render_metrics,
};
use tonic_intercept_tests::flaky::{self, Flaky, Replies, StreamEnd};
use tonic_intercept_tests::flaky_pb::flaky_service_intercept::{
    self as rpc, Chat, Create, Get, Put, Upload, Watch,
};
use tonic_intercept_tests::flaky_pb::{Fault, Reply};

type Client<H = ()> = rpc::Client<Channel, H>;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A fault that never fails.
fn fault(key: &str) -> Fault {
    Fault {
        key: key.to_owned(),
        ..Fault::default()
    }
}

/// A fault whose first `attempts` attempts fail with `code`.
fn failing(key: &str, attempts: u32, code: Code) -> Fault {
    Fault {
        fail_attempts: attempts,
        code: code as i32,
        ..fault(key)
    }
}

/// A fault that fails with UNAVAILABLE on every attempt a test can make.
fn always_failing(key: &str) -> Fault {
    failing(key, 1_000, Code::Unavailable)
}

/// Retries with a backoff of at most 1 ms, for tests about something else than backoff.
const QUICK: RetryPolicy = RetryPolicy::new().initial_backoff(ms(1)).max_backoff(ms(1));

/// How a call ended, without its duration: (rpc, code, attempts, gave up, sent, received).
type End = (&'static str, Code, u32, Option<GiveUpReason>, u64, u64);

/// Messages per RPC, by method name.
type Counts = Vec<(&'static str, u64)>;

/// A client hook on every RPC: counts the messages it sees and records each call's end.
#[derive(Debug, Clone, Default)]
struct Recorder {
    log: Arc<Mutex<Log>>,
}

#[derive(Debug, Default)]
struct Log {
    sent: BTreeMap<&'static str, u64>,
    received: BTreeMap<&'static str, u64>,
    ends: Vec<End>,
    elapsed: Vec<Duration>,
}

impl Recorder {
    fn ends(&self) -> Vec<End> {
        std::mem::take(&mut self.log.lock().unwrap().ends)
    }

    /// The only end recorded since the last call.
    fn end(&self) -> End {
        let ends = self.ends();
        assert_eq!(ends.len(), 1, "{ends:?}");
        ends[0]
    }

    fn elapsed(&self) -> Vec<Duration> {
        std::mem::take(&mut self.log.lock().unwrap().elapsed)
    }

    /// Messages the hook saw per RPC: (sent, received).
    fn counts(&self) -> (Counts, Counts) {
        let log = self.log.lock().unwrap();
        let list = |map: &BTreeMap<&'static str, u64>| map.iter().map(|(k, v)| (*k, *v)).collect();
        (list(&log.sent), list(&log.received))
    }
}

impl<R: Rpc> ClientHook<R> for Recorder {
    fn on_send(&self, _: &R::Request) -> Result<(), Status> {
        *self
            .log
            .lock()
            .unwrap()
            .sent
            .entry(R::DESCRIPTOR.method)
            .or_default() += 1;
        Ok(())
    }

    fn on_receive(&self, _: &R::Response) -> Result<(), Status> {
        *self
            .log
            .lock()
            .unwrap()
            .received
            .entry(R::DESCRIPTOR.method)
            .or_default() += 1;
        Ok(())
    }

    fn on_finish(&self, outcome: &ClientOutcome) {
        let mut log = self.log.lock().unwrap();
        log.ends.push((
            R::DESCRIPTOR.method,
            outcome.code,
            outcome.attempts,
            outcome.gave_up,
            outcome.messages_sent,
            outcome.messages_received,
        ));
        log.elapsed.push(outcome.elapsed);
    }
}

/// A server with a client whose config is `config` plus a [`Recorder`].
async fn start(config: ClientConfig<rpc::Service>) -> (Flaky, Client<Recorder>, Recorder) {
    let (flaky, channel) = Flaky::start().await;
    let recorder = Recorder::default();
    let client = Client::with_config(channel, config.hooks(recorder.clone()));
    (flaky, client, recorder)
}

// ---- unary retries ---------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn unary_retry_succeeds_on_the_third_attempt_with_one_request_id() {
    const GET: ClientPolicy<Get> = ClientPolicy::retry(RetryPolicy::new().max_attempts(4));
    let (flaky, mut client, recorder) = start(ClientConfig::new().policy(GET)).await;

    let reply = client
        .get(failing("unary-retry", 2, Code::Unavailable))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(reply.attempt, 3);
    assert_eq!(reply.previous_attempts, "2");
    assert_eq!(flaky.attempts("unary-retry"), 3);
    let seen = flaky.seen("unary-retry");
    let previous: Vec<&str> = seen.iter().map(|s| s.previous_attempts.as_str()).collect();
    assert_eq!(previous, ["", "1", "2"]);
    // A new id (128 random bits in hex), the same on every attempt.
    let id = &seen[0].request_id;
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert!(seen.iter().all(|s| &s.request_id == id), "{seen:?}");
    assert_eq!(&reply.request_id, id);
    assert_eq!(recorder.end(), ("Get", Code::Ok, 3, None, 1, 1));

    // The caller's own id is kept, on every attempt.
    let mut request = Request::new(failing("unary-own-id", 1, Code::Unavailable));
    request
        .metadata_mut()
        .insert("x-request-id", "caller-id-7".parse().unwrap());
    let reply = client.get(request).await.unwrap().into_inner();
    assert_eq!(reply.attempt, 2);
    let ids: Vec<String> = flaky
        .seen("unary-own-id")
        .into_iter()
        .map(|s| s.request_id)
        .collect();
    assert_eq!(ids, ["caller-id-7", "caller-id-7"]);
}

#[tokio::test(start_paused = true)]
async fn idempotent_put_is_retried_too() {
    const PUT: ClientPolicy<Put> = ClientPolicy::retry(QUICK);
    let (flaky, mut client, recorder) = start(ClientConfig::new().policy(PUT)).await;
    let reply = client
        .put(failing("put", 1, Code::Unavailable))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.attempt, 2);
    assert_eq!(flaky.attempts("put"), 2);
    assert_eq!(recorder.end(), ("Put", Code::Ok, 2, None, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn attempts_exhausted_returns_the_last_failure() {
    const GET: ClientPolicy<Get> = ClientPolicy::retry(QUICK.max_attempts(3));
    let (flaky, mut client, recorder) = start(ClientConfig::new().policy(GET)).await;

    let status = client
        .get(failing("exhausted", 10, Code::Unavailable))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.message(),
        "injected failure of attempt 3 of `exhausted`"
    );
    assert_eq!(flaky.attempts("exhausted"), 3);
    assert_eq!(
        recorder.end(),
        (
            "Get",
            Code::Unavailable,
            3,
            Some(GiveUpReason::AttemptsExhausted),
            1,
            0
        )
    );
}

#[tokio::test(start_paused = true)]
async fn non_idempotent_create_is_retried_only_when_accepted() {
    // No policy for `Create`: one attempt.
    let (flaky, mut client, recorder) =
        start(ClientConfig::new().policy(ClientPolicy::<Create>::new())).await;
    let status = client
        .create(failing("create-once", 1, Code::Unavailable))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(flaky.attempts("create-once"), 1);
    assert_eq!(recorder.end(), ("Create", Code::Unavailable, 1, None, 1, 0));

    // `retry_non_idempotent`: the caller accepts repeated side effects.
    const CREATE: ClientPolicy<Create> = ClientPolicy::retry_non_idempotent(QUICK);
    assert!(CREATE.retries_non_idempotent());
    let (flaky, mut client, recorder) = start(ClientConfig::new().policy(CREATE)).await;
    let reply = client
        .create(failing("create-retried", 1, Code::Unavailable))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.attempt, 2);
    assert_eq!(flaky.attempts("create-retried"), 2);
    assert_eq!(recorder.end(), ("Create", Code::Ok, 2, None, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_code_that_is_not_retryable_is_not_retried() {
    const GET: ClientPolicy<Get> = ClientPolicy::retry(QUICK.max_attempts(5));
    let (flaky, mut client, recorder) = start(ClientConfig::new().policy(GET)).await;

    let status = client
        .get(failing("invalid", 3, Code::InvalidArgument))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(flaky.attempts("invalid"), 1);
    assert_eq!(
        recorder.end(),
        (
            "Get",
            Code::InvalidArgument,
            1,
            Some(GiveUpReason::NotRetryable),
            1,
            0
        )
    );
}

// ---- backoff, pushback, throttling -----------------------------------------------------

#[tokio::test(start_paused = true)]
async fn backoff_waits_stay_under_their_exponential_ceilings() {
    const GET: ClientPolicy<Get> = ClientPolicy::retry(
        RetryPolicy::new()
            .max_attempts(4)
            .initial_backoff(ms(100))
            .backoff_multiplier(2.0)
            .max_backoff(ms(1_000)),
    );
    let (flaky, mut client, recorder) = start(ClientConfig::new().policy(GET)).await;
    const CEILINGS: [Duration; 3] = [ms(100), ms(200), ms(400)];

    // 20 calls failing 3 times each: 60 random waits, each under its ceiling.
    let mut waits: [Vec<Duration>; 3] = Default::default();
    for n in 0..20 {
        let key = format!("backoff-{n}");
        let started = Instant::now();
        let reply = client
            .get(failing(&key, 3, Code::Unavailable))
            .await
            .unwrap()
            .into_inner();
        let elapsed = started.elapsed();
        assert_eq!(reply.attempt, 4);

        let seen = flaky.seen(&key);
        assert_eq!(seen.len(), 4);
        // Loopback I/O takes no time on the paused clock: the first attempt arrives at
        // once, and the call lasts exactly its three waits.
        assert_eq!(seen[0].at, started);
        assert_eq!(seen[3].at - started, elapsed);
        for (retry, pair) in seen.windows(2).enumerate() {
            let wait = pair[1].at - pair[0].at;
            assert!(
                wait <= CEILINGS[retry],
                "{key}: retry {retry} waited {wait:?}"
            );
            waits[retry].push(wait);
        }
        assert!(elapsed <= ms(100 + 200 + 400), "{key}: {elapsed:?}");
        assert_eq!(recorder.end(), ("Get", Code::Ok, 4, None, 1, 1));
        assert_eq!(recorder.elapsed(), [elapsed]);
    }
    // The ceilings grow: with full jitter, half the waits of the second and third retries
    // are expected past the previous ceiling (each check fails with probability 2^-20).
    assert!(waits[1].iter().any(|&w| w > CEILINGS[0]), "{waits:?}");
    assert!(waits[2].iter().any(|&w| w > CEILINGS[1]), "{waits:?}");
}

#[tokio::test(start_paused = true)]
async fn pushback_replaces_the_backoff_or_stops_retries() {
    const GET: ClientPolicy<Get> = ClientPolicy::retry(QUICK.max_attempts(3));
    let (flaky, mut client, recorder) = start(ClientConfig::new().policy(GET)).await;

    // 250 ms: the retry comes exactly then, not after the client's own (<= 1 ms) backoff.
    let pushed = Fault {
        pushback: true,
        pushback_ms: 250,
        ..failing("pushback-250", 1, Code::Unavailable)
    };
    let reply = client.get(pushed).await.unwrap().into_inner();
    assert_eq!(reply.attempt, 2);
    let seen = flaky.seen("pushback-250");
    assert_eq!(seen[1].at - seen[0].at, ms(250));
    assert_eq!(recorder.end(), ("Get", Code::Ok, 2, None, 1, 1));

    // Negative: do not retry.
    let refused = Fault {
        pushback: true,
        pushback_ms: -1,
        ..failing("pushback-never", 5, Code::Unavailable)
    };
    let status = client.get(refused).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.metadata().get("grpc-retry-pushback-ms").unwrap(),
        "-1"
    );
    assert_eq!(flaky.attempts("pushback-never"), 1);
    assert_eq!(
        recorder.end(),
        (
            "Get",
            Code::Unavailable,
            1,
            Some(GiveUpReason::Pushback),
            1,
            0
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_shared_throttle_stops_retries_while_calls_fail() {
    const GET: ClientPolicy<Get> = ClientPolicy::retry(QUICK.max_attempts(5));
    // 10 tokens; each failed attempt takes 1, each successful call gives back 0.5;
    // a retry is allowed while more than 5 remain after the failure.
    let throttle = RetryThrottle::new(10, 0.5);
    let (flaky, channel) = Flaky::start().await;
    let recorder = Recorder::default();
    let config = || {
        ClientConfig::new()
            .policy(GET)
            .throttle(throttle.clone())
            .hooks(recorder.clone())
    };
    let mut a = Client::with_config(channel.clone(), config());
    let mut b = Client::with_config(channel, config());

    // 10 -> 9, 8, 7, 6: retried; the 5th failure leaves 5: throttled (before the
    // attempts run out).
    a.get(always_failing("throttle-1")).await.unwrap_err();
    assert_eq!(flaky.attempts("throttle-1"), 5);
    assert_eq!(
        recorder.end(),
        (
            "Get",
            Code::Unavailable,
            5,
            Some(GiveUpReason::Throttled),
            1,
            0
        )
    );
    assert_eq!(throttle.tokens(), Some(5.0));

    // The other client shares the bucket: 5 -> 4, no retry.
    b.get(always_failing("throttle-2")).await.unwrap_err();
    assert_eq!(flaky.attempts("throttle-2"), 1);
    assert_eq!(
        recorder.end(),
        (
            "Get",
            Code::Unavailable,
            1,
            Some(GiveUpReason::Throttled),
            1,
            0
        )
    );
    assert_eq!(throttle.tokens(), Some(4.0));

    // A call that would have succeeded on its retry is not retried either: 4 -> 3.
    b.get(failing("throttle-3", 1, Code::Unavailable))
        .await
        .unwrap_err();
    assert_eq!(flaky.attempts("throttle-3"), 1);
    assert_eq!(throttle.tokens(), Some(3.0));

    // Eight successes: 3 + 8 * 0.5 = 7.
    for n in 0..8 {
        a.get(fault(&format!("throttle-ok-{n}"))).await.unwrap();
    }
    assert_eq!(throttle.tokens(), Some(7.0));
    assert_eq!(recorder.ends().len(), 9);

    // 7 -> 6: retried; 6 -> 5: throttled.
    b.get(always_failing("throttle-4")).await.unwrap_err();
    assert_eq!(flaky.attempts("throttle-4"), 2);
    assert_eq!(
        recorder.end(),
        (
            "Get",
            Code::Unavailable,
            2,
            Some(GiveUpReason::Throttled),
            1,
            0
        )
    );
    assert_eq!(throttle.tokens(), Some(5.0));

    // A non-retryable code does not count.
    a.get(failing("throttle-5", 1, Code::InvalidArgument))
        .await
        .unwrap_err();
    assert_eq!(throttle.tokens(), Some(5.0));
    assert_eq!(
        recorder.end(),
        (
            "Get",
            Code::InvalidArgument,
            1,
            Some(GiveUpReason::NotRetryable),
            1,
            0
        )
    );
}

#[tokio::test(start_paused = true)]
async fn every_rpc_counts_in_the_throttle_with_or_without_a_retry_policy() {
    const GET: ClientPolicy<Get> = ClientPolicy::retry(QUICK.max_attempts(5));
    // gRFC A6: "Every outgoing RPC (regardless of service or method invoked)" changes the
    // tokens: `Create` and `Watch` have no retry policy here.
    let throttle = RetryThrottle::new(10, 0.5);
    let (flaky, mut client, recorder) =
        start(ClientConfig::new().policy(GET).throttle(throttle.clone())).await;

    // 5 counted failures: 10 -> 5.
    client.get(always_failing("refill-1")).await.unwrap_err();
    assert_eq!(flaky.attempts("refill-1"), 5);
    assert_eq!(throttle.tokens(), Some(5.0));

    // Without a policy no code is retryable: an UNAVAILABLE does not count...
    client
        .create(failing("refill-2", 1, Code::Unavailable))
        .await
        .unwrap_err();
    assert_eq!(throttle.tokens(), Some(5.0));
    // ...a pushback saying not to retry does: 5 -> 4.
    let refused = Fault {
        pushback: true,
        pushback_ms: -1,
        ..failing("refill-3", 1, Code::Unavailable)
    };
    client.create(refused).await.unwrap_err();
    assert_eq!(throttle.tokens(), Some(4.0));

    // Successes without a policy give back `token_ratio`: four unary calls and two
    // response streams read to their end, 4 + 6 * 0.5 = 7.
    for n in 0..4 {
        client
            .create(fault(&format!("refill-ok-{n}")))
            .await
            .unwrap();
    }
    for n in 0..2 {
        let watch = Fault {
            messages: 2,
            ..fault(&format!("refill-watch-{n}"))
        };
        let stream = client.watch(watch).await.unwrap().into_inner();
        assert_eq!(collect(stream).await.len(), 2);
    }
    assert_eq!(throttle.tokens(), Some(7.0));
    // A stream dropped before its end is no success.
    let stream = client
        .watch(Fault {
            messages: 2,
            ..fault("refill-dropped")
        })
        .await
        .unwrap();
    drop(stream);
    assert_eq!(throttle.tokens(), Some(7.0));
    recorder.ends();

    // 7 -> 6: retried; 6 -> 5: throttled.
    client.get(always_failing("refill-4")).await.unwrap_err();
    assert_eq!(flaky.attempts("refill-4"), 2);
    assert_eq!(
        recorder.end(),
        (
            "Get",
            Code::Unavailable,
            2,
            Some(GiveUpReason::Throttled),
            1,
            0
        )
    );
}

/// A proxy in front of the server that answers the next calls itself with HTTP `503` and
/// no `grpc-status`: not gRPC Response-Headers.
#[derive(Debug, Clone)]
struct Proxy503 {
    inner: Channel,
    refusals: Arc<AtomicU32>,
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for Proxy503 {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let take = |n: u32| n.checked_sub(1);
        if self
            .refusals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, take)
            .is_ok()
        {
            let refusal = http::Response::builder()
                .status(http::StatusCode::SERVICE_UNAVAILABLE)
                .body(tonic::body::Body::empty())
                .unwrap();
            return Box::pin(async move { Ok(refusal) });
        }
        // The channel polled ready serves this call; a fresh clone waits for the next.
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        Box::pin(async move { ready.call(request).await })
    }
}

#[tokio::test(start_paused = true)]
async fn a_proxys_non_grpc_answer_does_not_commit_the_call() {
    const GET: ClientPolicy<Get> = ClientPolicy::retry(QUICK);
    const WATCH: ClientPolicy<Watch> = ClientPolicy::retry(QUICK);
    let (flaky, channel) = Flaky::start().await;
    let refusals = Arc::new(AtomicU32::new(0));
    let proxy = Proxy503 {
        inner: channel,
        refusals: refusals.clone(),
    };
    let recorder = Recorder::default();
    let config = ClientConfig::new()
        .policy(GET)
        .policy(WATCH)
        .hooks(recorder.clone());
    let mut client = rpc::Client::with_config(proxy, config);

    // tonic maps the 503 to UNAVAILABLE, which is retried: the server sees 1 attempt.
    refusals.store(1, Ordering::SeqCst);
    let reply = client.get(fault("proxied")).await.unwrap().into_inner();
    assert_eq!(reply.attempt, 1);
    assert_eq!(flaky.attempts("proxied"), 1);
    assert_eq!(recorder.end(), ("Get", Code::Ok, 2, None, 1, 1));

    refusals.store(1, Ordering::SeqCst);
    let watch = Fault {
        messages: 2,
        ..fault("proxied-watch")
    };
    let stream = client.watch(watch).await.unwrap().into_inner();
    assert_eq!(collect(stream).await, [Ok((1, 1)), Ok((1, 2))]);
    assert_eq!(recorder.end(), ("Watch", Code::Ok, 2, None, 1, 2));
}

// ---- deadlines ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_stalled_attempt_times_out_and_the_next_one_succeeds() {
    const GET: ClientPolicy<Get> = ClientPolicy::retry(
        QUICK
            .max_attempts(3)
            .per_attempt_timeout(ms(100))
            .retryable_codes(&[Code::Unavailable, Code::DeadlineExceeded]),
    );
    let (flaky, mut client, recorder) = start(ClientConfig::new().policy(GET)).await;

    let stalled = Fault {
        stall_ms: 10_000,
        ..failing("per-attempt", 1, Code::Unavailable)
    };
    let started = Instant::now();
    let reply = client.get(stalled).await.unwrap().into_inner();

    assert_eq!(reply.attempt, 2);
    assert_eq!(flaky.attempts("per-attempt"), 2);
    let seen = flaky.seen("per-attempt");
    // Each attempt is sent with its own timeout: 100 ms, in tonic's units.
    assert_eq!(seen[0].grpc_timeout, "100000u");
    assert_eq!(seen[1].grpc_timeout, "100000u");
    // The first attempt timed out at 100 ms; the retry came after a backoff of <= 1 ms.
    let gap = seen[1].at - seen[0].at;
    assert!((ms(100)..=ms(101)).contains(&gap), "{gap:?}");
    assert_eq!(started.elapsed(), seen[1].at - started);
    assert_eq!(recorder.end(), ("Get", Code::Ok, 2, None, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn the_overall_deadline_caps_attempts_and_backoff() {
    const GET: ClientPolicy<Get> = ClientPolicy::retry(QUICK.max_attempts(5)).deadline(ms(250));
    let (flaky, mut client, recorder) = start(ClientConfig::new().policy(GET)).await;
    // Each failing attempt takes 100 ms, each backoff at most 1 ms: attempts start at 0,
    // ~100 and ~200 ms, and the third is cut by the deadline at 250 ms.
    let slow = |key: &str| Fault {
        stall_ms: 100,
        ..always_failing(key)
    };

    let started = Instant::now();
    let status = client.get(slow("deadline-policy")).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(started.elapsed(), ms(250));
    assert_eq!(flaky.attempts("deadline-policy"), 3);
    let seen = flaky.seen("deadline-policy");
    assert_eq!(seen[0].grpc_timeout, "250000u");
    assert_eq!(
        recorder.end(),
        (
            "Get",
            Code::DeadlineExceeded,
            3,
            Some(GiveUpReason::Deadline),
            1,
            0
        )
    );

    // The request's own timeout replaces the policy's: 150 ms, two attempts.
    let mut request = Request::new(slow("deadline-request"));
    request.set_timeout(ms(150));
    let started = Instant::now();
    let status = client.get(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(started.elapsed(), ms(150));
    assert_eq!(flaky.attempts("deadline-request"), 2);
    assert_eq!(flaky.seen("deadline-request")[0].grpc_timeout, "150000u");
    assert_eq!(
        recorder.end(),
        (
            "Get",
            Code::DeadlineExceeded,
            2,
            Some(GiveUpReason::Deadline),
            1,
            0
        )
    );
}

// ---- streams -------------------------------------------------------------------------------

/// Everything a response stream yields: each reply's `(attempt, value)`, or the code it
/// failed with.
async fn collect<S>(stream: S) -> Vec<Result<(u32, u64), Code>>
where
    S: tokio_stream::Stream<Item = Result<Reply, Status>>,
{
    stream
        .map(|item| item.map(|r| (r.attempt, r.value)).map_err(|s| s.code()))
        .collect()
        .await
}

#[tokio::test(start_paused = true)]
async fn a_server_stream_is_retried_until_its_response_headers_only() {
    const WATCH: ClientPolicy<Watch> = ClientPolicy::retry(QUICK);
    let (flaky, mut client, recorder) = start(ClientConfig::new().policy(WATCH)).await;

    // Fails before its response headers (Trailers-Only): retried, and the second attempt
    // streams everything.
    let early = Fault {
        messages: 3,
        fail_after: 0,
        ..failing("watch-early", 1, Code::Unavailable)
    };
    let stream = client.watch(early).await.unwrap().into_inner();
    assert_eq!(collect(stream).await, [Ok((2, 1)), Ok((2, 2)), Ok((2, 3))]);
    assert_eq!(flaky.attempts("watch-early"), 2);
    assert_eq!(recorder.end(), ("Watch", Code::Ok, 2, None, 1, 3));

    // Fails after two messages: the response headers committed the call, so the failure
    // reaches the application after them, and nothing is retried.
    let late = Fault {
        messages: 3,
        fail_after: 2,
        ..failing("watch-late", 1, Code::Unavailable)
    };
    let stream = client.watch(late).await.unwrap().into_inner();
    assert_eq!(
        collect(stream).await,
        [Ok((1, 1)), Ok((1, 2)), Err(Code::Unavailable)]
    );
    assert_eq!(flaky.attempts("watch-late"), 1);
    // Committed by its response headers: not retried, and that is the reason given.
    assert_eq!(
        recorder.end(),
        (
            "Watch",
            Code::Unavailable,
            1,
            Some(GiveUpReason::Committed),
            1,
            2
        )
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_retry_policy_a_stream_failure_arrives_in_the_stream() {
    let (flaky, mut client, recorder) = start(ClientConfig::new()).await;
    // After the response headers: in the stream.
    let late = Fault {
        messages: 3,
        fail_after: 1,
        ..failing("watch-plain", 1, Code::Unavailable)
    };
    let stream = client.watch(late).await.unwrap().into_inner();
    assert_eq!(collect(stream).await, [Ok((1, 1)), Err(Code::Unavailable)]);
    assert_eq!(flaky.attempts("watch-plain"), 1);
    assert_eq!(recorder.end(), ("Watch", Code::Unavailable, 1, None, 1, 1));

    // Trailers-Only (no response headers, hence no stream): from the call itself, as
    // tonic's own client returns it.
    let early = Fault {
        messages: 3,
        fail_after: 0,
        ..failing("watch-trailers-only", 1, Code::Unavailable)
    };
    let status = client.watch(early).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(flaky.attempts("watch-trailers-only"), 1);
    assert_eq!(recorder.end(), ("Watch", Code::Unavailable, 1, None, 1, 0));

    // Dropping a stream before its end cancels the call.
    let mut stream = client
        .watch(Fault {
            messages: 5,
            ..fault("watch-dropped")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().value, 1);
    drop(stream);
    assert_eq!(recorder.end(), ("Watch", Code::Cancelled, 1, None, 1, 1));
}

/// An upload of `values`, the first message carrying `first`'s fault.
fn upload(first: Fault, values: &[u64]) -> impl tokio_stream::Stream<Item = Fault> + use<> {
    let mut messages = vec![first];
    messages.extend(values.iter().map(|&value| Fault {
        value,
        ..Fault::default()
    }));
    tokio_stream::iter(messages)
}

#[tokio::test(start_paused = true)]
async fn a_client_stream_is_replayed_on_retry() {
    const UPLOAD: ClientPolicy<Upload> = ClientPolicy::retry(QUICK);
    let (flaky, mut client, recorder) = start(ClientConfig::new().policy(UPLOAD)).await;

    let first = Fault {
        value: 1,
        ..failing("upload-replay", 1, Code::Unavailable)
    };
    let reply = client
        .upload(upload(first, &[2, 3, 4, 5]))
        .await
        .unwrap()
        .into_inner();

    // The second attempt got every message, the ones sent before the failure replayed.
    assert_eq!(reply.attempt, 2);
    assert_eq!(reply.received, 5);
    assert_eq!(reply.value, 1 + 2 + 3 + 4 + 5);
    assert_eq!(flaky.attempts("upload-replay"), 2);
    assert_eq!(
        flaky.upload_ends("upload-replay", 1).await,
        [StreamEnd {
            received: 5,
            code: Code::Ok
        }]
    );
    // Each message seen by the hook once, however many attempts sent it.
    assert_eq!(recorder.end(), ("Upload", Code::Ok, 2, None, 5, 1));
}

#[tokio::test(start_paused = true)]
async fn a_client_stream_past_its_replay_buffer_is_committed() {
    const UPLOAD: ClientPolicy<Upload> = ClientPolicy::retry(QUICK).replay_buffer(16);
    let (flaky, mut client, recorder) = start(ClientConfig::new().policy(UPLOAD)).await;

    // The server fails after reading the first message only: make it alone outgrow the
    // replay buffer.
    let first = Fault {
        payload: vec![7; 64],
        ..failing("upload-committed", 1, Code::Unavailable)
    };
    let status = client.upload(upload(first, &[2, 3])).await.unwrap_err();

    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(flaky.attempts("upload-committed"), 1);
    let (_, code, attempts, gave_up, _, received) = recorder.end();
    assert_eq!(
        (code, attempts, gave_up, received),
        (Code::Unavailable, 1, Some(GiveUpReason::Committed), 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_bidi_call_failing_before_its_headers_is_retried() {
    const CHAT: ClientPolicy<Chat> = ClientPolicy::retry(QUICK);
    let (flaky, mut client, recorder) = start(ClientConfig::new().policy(CHAT)).await;

    let first = Fault {
        value: 1,
        ..failing("chat", 1, Code::Unavailable)
    };
    let stream = client
        .chat(upload(first, &[2, 3]))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(collect(stream).await, [Ok((2, 1)), Ok((2, 2)), Ok((2, 3))]);
    assert_eq!(flaky.attempts("chat"), 2);
    assert_eq!(recorder.end(), ("Chat", Code::Ok, 2, None, 3, 3));
}

// ---- limits ------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn max_messages_sent_cancels_the_call_at_the_next_message() {
    const UPLOAD: ClientPolicy<Upload> = ClientPolicy::new().max_messages_sent(3);
    let (flaky, mut client, recorder) = start(ClientConfig::new().policy(UPLOAD)).await;

    // One message every 10 ms, so that each reaches the server before the next is made.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        for value in 1..=5 {
            tokio::time::sleep(ms(10)).await;
            let message = Fault {
                value,
                ..fault("too-many-sent")
            };
            if tx.send(message).await.is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let status = client
        .upload(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();

    // The 4th message, at 40 ms, ends the call.
    assert_eq!(started.elapsed(), ms(40));
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "Upload: more than 3 request messages (client limit)"
    );
    assert_eq!(
        recorder.end(),
        ("Upload", Code::ResourceExhausted, 1, None, 3, 0)
    );
    // The server read the first 3 messages; the client then reset the stream
    // (RST_STREAM(CANCEL)), it did not half-close it. A tonic server cannot tell the
    // difference: tonic 0.14's request decoder (`Streaming`, `Direction::Request`) reads a
    // `CANCELLED` body error as the end of the stream, so the handler sees a clean end
    // after 3 messages. This pins that behaviour of tonic's server: a handler that must
    // not act on a truncated upload cannot rely on the end of its request stream.
    assert_eq!(flaky.attempts("too-many-sent"), 1);
    assert_eq!(
        flaky.upload_ends("too-many-sent", 1).await,
        [StreamEnd {
            received: 3,
            code: Code::Ok
        }]
    );
}

#[tokio::test(start_paused = true)]
async fn max_messages_received_ends_the_stream() {
    const WATCH: ClientPolicy<Watch> = ClientPolicy::new().max_messages_received(3);
    let (flaky, mut client, recorder) = start(ClientConfig::new().policy(WATCH)).await;

    let stream = client
        .watch(Fault {
            messages: 5,
            ..fault("too-many-received")
        })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(
        collect(stream).await,
        [
            Ok((1, 1)),
            Ok((1, 2)),
            Ok((1, 3)),
            Err(Code::ResourceExhausted)
        ]
    );
    assert_eq!(flaky.attempts("too-many-received"), 1);
    assert_eq!(
        recorder.end(),
        ("Watch", Code::ResourceExhausted, 1, None, 1, 3)
    );
}

#[tokio::test(start_paused = true)]
async fn max_message_bytes_refuses_big_messages_either_way() {
    const GET: ClientPolicy<Get> = ClientPolicy::new().max_message_bytes(40);
    let (flaky, mut client, recorder) = start(ClientConfig::new().policy(GET)).await;

    // A request over the limit is never sent.
    let big = Fault {
        payload: vec![0; 100],
        ..fault("big-request")
    };
    let status = client.get(big).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(flaky.attempts("big-request"), 0);
    assert_eq!(
        recorder.end(),
        ("Get", Code::ResourceExhausted, 1, None, 0, 0)
    );

    // A request under it is; its reply (attempt, value and a 32-character request id:
    // 47 bytes) is refused.
    let small = Fault {
        value: u64::MAX,
        ..fault("big-reply")
    };
    let status = client.get(small).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "Get: response message of 47 bytes, over the client limit of 40"
    );
    assert_eq!(flaky.attempts("big-reply"), 1);
    assert_eq!(
        recorder.end(),
        ("Get", Code::ResourceExhausted, 1, None, 1, 0)
    );
}

// ---- hooks -------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn hooks_see_each_message_once_and_each_call_end() {
    let config = ClientConfig::new()
        .policy(ClientPolicy::<Get>::retry(QUICK))
        .policy(ClientPolicy::<Watch>::retry(QUICK))
        .policy(ClientPolicy::<Upload>::retry(QUICK))
        .policy(ClientPolicy::<Chat>::retry(QUICK));
    let (_flaky, mut client, recorder) = start(config).await;

    client
        .get(failing("hooks-get", 1, Code::Unavailable))
        .await
        .unwrap();
    let stream = client
        .watch(Fault {
            messages: 3,
            ..failing("hooks-watch", 1, Code::Unavailable)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(collect(stream).await.len(), 3);
    client
        .upload(upload(
            failing("hooks-upload", 1, Code::Unavailable),
            &[1, 2, 3],
        ))
        .await
        .unwrap();
    let stream = client
        .chat(upload(failing("hooks-chat", 1, Code::Unavailable), &[1]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(collect(stream).await.len(), 2);

    let (sent, received) = recorder.counts();
    assert_eq!(sent, [("Chat", 2), ("Get", 1), ("Upload", 4), ("Watch", 1)]);
    assert_eq!(
        received,
        [("Chat", 2), ("Get", 1), ("Upload", 1), ("Watch", 3)]
    );
    assert_eq!(
        recorder.ends(),
        [
            ("Get", Code::Ok, 2, None, 1, 1),
            ("Watch", Code::Ok, 2, None, 1, 3),
            ("Upload", Code::Ok, 2, None, 4, 1),
            ("Chat", Code::Ok, 2, None, 2, 2),
        ]
    );
}

/// Refuses to send a `Get` whose key starts with `refused`.
#[derive(Debug, Clone, Default)]
struct RefuseKeys {
    finished: Arc<Mutex<Vec<ClientOutcome>>>,
}

impl ClientHook<Get> for RefuseKeys {
    fn on_send(&self, message: &Fault) -> Result<(), Status> {
        if message.key.starts_with("refused") {
            return Err(Status::failed_precondition("refused by the client hook"));
        }
        Ok(())
    }

    fn on_finish(&self, outcome: &ClientOutcome) {
        self.finished.lock().unwrap().push(*outcome);
    }
}

#[tokio::test(start_paused = true)]
async fn an_on_send_error_keeps_the_request_from_being_sent() {
    let (flaky, channel) = Flaky::start().await;
    let hook = RefuseKeys::default();
    let config = ClientConfig::new()
        .policy(ClientPolicy::<Get>::retry(QUICK))
        .hooks(hook.clone());
    let mut client = Client::with_config(channel, config);

    let status = client.get(fault("refused-1")).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "refused by the client hook");
    assert_eq!(flaky.attempts("refused-1"), 0);

    client.get(fault("accepted")).await.unwrap();
    assert_eq!(flaky.attempts("accepted"), 1);

    let finished = std::mem::take(&mut *hook.finished.lock().unwrap());
    let ends: Vec<_> = finished
        .iter()
        .map(|o| {
            (
                o.code,
                o.attempts,
                o.gave_up,
                o.messages_sent,
                o.messages_received,
            )
        })
        .collect();
    // The refused call reports one attempt although nothing was sent.
    assert_eq!(
        ends,
        [
            (Code::FailedPrecondition, 1, None, 0, 0),
            (Code::Ok, 1, None, 1, 1)
        ]
    );
}

// ---- credentials ---------------------------------------------------------------------------

/// A token endpoint that takes 50 ms per fetch and counts them.
#[derive(Debug, Default)]
struct Endpoint {
    fetches: AtomicU32,
}

impl TokenSource for Endpoint {
    async fn fetch(&self) -> Result<BearerToken, Status> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(ms(50)).await;
        Ok(BearerToken::expires_in(
            format!("token-{n}"),
            Duration::from_secs(3_600),
        ))
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_calls_share_one_token_fetch() {
    let provider = TokenProvider::new(Endpoint::default(), Duration::from_secs(60));
    let (flaky, mut client, _recorder) =
        start(ClientConfig::new().credentials(provider.clone())).await;

    let mut calls = tokio::task::JoinSet::new();
    for n in 0..20 {
        let mut client = client.clone();
        calls.spawn(async move { client.get(fault(&format!("cred-{n}"))).await });
    }
    let mut authorizations = Vec::new();
    while let Some(result) = calls.join_next().await {
        authorizations.push(result.unwrap().unwrap().into_inner().authorization);
    }

    assert_eq!(provider.source().fetches.load(Ordering::SeqCst), 1);
    assert_eq!(authorizations, vec!["Bearer token-1"; 20]);
    for n in 0..20 {
        assert_eq!(
            flaky.seen(&format!("cred-{n}"))[0].authorization,
            "Bearer token-1"
        );
    }

    // A request's own credentials are kept; the cached token is not fetched again.
    let mut request = Request::new(fault("cred-own"));
    request
        .metadata_mut()
        .insert("authorization", "Bearer mine".parse().unwrap());
    let reply = client.get(request).await.unwrap().into_inner();
    assert_eq!(reply.authorization, "Bearer mine");
    let reply = client.get(fault("cred-cached")).await.unwrap().into_inner();
    assert_eq!(reply.authorization, "Bearer token-1");
    assert_eq!(provider.source().fetches.load(Ordering::SeqCst), 1);
}

// ---- propagation through an intercepted server ------------------------------------------------

/// An `#[intercept]`ed server whose `Get` calls the flaky server with the generated client.
struct Relay {
    upstream: Client,
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("the relay only relays Get"))
}

#[intercept(public(*), limit(timeout_ms = 500))]
#[tonic::async_trait]
impl tonic_intercept_tests::flaky_pb::flaky_service_server::FlakyService for Relay {
    async fn get(&self, request: Request<Fault>) -> Result<Response<Reply>, Status> {
        // A new request: the client engine forwards the incoming call's deadline,
        // request id and trace.
        self.upstream.clone().get(request.into_inner()).await
    }

    async fn put(&self, _: Request<Fault>) -> Result<Response<Reply>, Status> {
        unimplemented()
    }

    async fn create(&self, _: Request<Fault>) -> Result<Response<Reply>, Status> {
        unimplemented()
    }

    type WatchStream = Replies;

    async fn watch(&self, _: Request<Fault>) -> Result<Response<Replies>, Status> {
        unimplemented()
    }

    async fn upload(&self, _: Request<Streaming<Fault>>) -> Result<Response<Reply>, Status> {
        unimplemented()
    }

    type ChatStream = Replies;

    async fn chat(&self, _: Request<Streaming<Fault>>) -> Result<Response<Replies>, Status> {
        unimplemented()
    }
}

/// A `grpc-timeout` value as a duration.
fn grpc_timeout(value: &str) -> Duration {
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().unwrap();
    match unit {
        "n" => Duration::from_nanos(n),
        "u" => Duration::from_micros(n),
        "m" => Duration::from_millis(n),
        "S" => Duration::from_secs(n),
        _ => panic!("unexpected grpc-timeout {value}"),
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

#[tokio::test(start_paused = true)]
async fn a_relay_forwards_deadline_request_id_and_trace() {
    let (flaky, channel) = Flaky::start().await;
    let upstream = Client::with_config(
        channel,
        ClientConfig::new().policy(ClientPolicy::<Get>::retry(QUICK)),
    );
    let relay = flaky::connect(flaky::serve(Relay { upstream }).await).await;
    let mut client = Client::new(relay);

    let mut request = Request::new(failing("relayed", 1, Code::Unavailable));
    request
        .metadata_mut()
        .insert("x-request-id", "req-42".parse().unwrap());
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    request.set_timeout(ms(300));
    let reply = client.get(request).await.unwrap().into_inner();

    // The relay's client retried once; both attempts carried what the relay received.
    assert_eq!(reply.attempt, 2);
    let seen = flaky.seen("relayed");
    assert_eq!(seen.len(), 2);
    for attempt in &seen {
        assert_eq!(attempt.request_id, "req-42");
        // Same trace, same flags, a new parent: the relay's span.
        let parts: Vec<&str> = attempt.traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{}", attempt.traceparent);
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], TRACE_ID);
        assert_ne!(parts[2], PARENT_ID);
        assert_eq!(parts[2].len(), 16);
        assert_ne!(parts[2], "0000000000000000");
        assert_eq!(parts[3], "01");
        // Never more than the caller's 300 ms.
        assert!(
            grpc_timeout(&attempt.grpc_timeout) <= ms(300),
            "{attempt:?}"
        );
    }
    // One call, one trace parent for all its attempts.
    assert_eq!(seen[0].traceparent, seen[1].traceparent);
    // The relay's deadline is the caller's 300 ms less tonic's 1 ms margin (its own
    // `timeout_ms = 500` is later), and no time passes on loopback.
    assert_eq!(seen[0].grpc_timeout, "299000u");
    let waited = seen[1].at - seen[0].at;
    assert_eq!(
        grpc_timeout(&seen[1].grpc_timeout),
        ms(299) - waited,
        "{seen:?}"
    );

    // Without a caller deadline, the relay's `timeout_ms = 500` is the deadline.
    let reply = client.get(fault("relayed-500")).await.unwrap().into_inner();
    assert_eq!(reply.grpc_timeout, "500000u");
    // Without a caller id, the relay's server does not make one, so its client does.
    assert_eq!(reply.request_id.len(), 32);
    assert!(reply.traceparent.is_empty(), "{reply:?}");
}

#[tokio::test(start_paused = true)]
async fn a_relayed_call_ends_at_the_callers_deadline() {
    let (flaky, channel) = Flaky::start().await;
    let upstream = Client::new(channel);
    let relay = flaky::connect(flaky::serve(Relay { upstream }).await).await;
    let mut client = Client::new(relay);

    let mut request = Request::new(Fault {
        stall_ms: 10_000,
        ..failing("relayed-stalled", 1, Code::Unavailable)
    });
    request.set_timeout(ms(300));
    let started = Instant::now();
    let status = client.get(request).await.unwrap_err();

    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert!(started.elapsed() <= ms(300), "{:?}", started.elapsed());
    assert_eq!(flaky.attempts("relayed-stalled"), 1);
    assert_eq!(flaky.seen("relayed-stalled")[0].grpc_timeout, "299000u");
}

// ---- metrics -------------------------------------------------------------------------------

/// The value of the one sample of `family` for the RPC `method` (and `extra` labels).
fn sample(body: &str, family: &str, kind: &str, method: &str, extra: &str) -> String {
    let series = format!(
        r#"{family}{{grpc_type="{kind}",grpc_service="flaky.v1.FlakyService",grpc_method="{method}"{extra}}} "#
    );
    let found: Vec<&str> = body
        .lines()
        .filter_map(|line| line.strip_prefix(&series))
        .collect();
    assert_eq!(found.len(), 1, "{series}: {found:?} in\n{body}");
    found[0].to_owned()
}

#[tokio::test(start_paused = true)]
async fn metrics_count_calls_attempts_retries_and_give_ups() {
    let mut registry = Registry::default();
    let metrics = ClientMetrics::register(&mut registry).service::<rpc::Service>();
    const GET: ClientPolicy<Get> = ClientPolicy::retry(QUICK.max_attempts(4));
    let (_flaky, mut client, _recorder) =
        start(ClientConfig::new().policy(GET).metrics(metrics)).await;
    let get = |body: &str, family: &str, extra: &str| sample(body, family, "unary", "Get", extra);
    let reasons = [
        "not_retryable",
        "attempts_exhausted",
        "committed",
        "throttled",
        "pushback",
        "deadline",
    ];

    // Fails twice, succeeds on the third attempt.
    client
        .get(failing("metrics-1", 2, Code::Unavailable))
        .await
        .unwrap();
    let body = render_metrics(&registry);
    assert_eq!(get(&body, "grpc_client_started_total", ""), "1");
    assert_eq!(get(&body, "grpc_client_attempts_total", ""), "3");
    assert_eq!(get(&body, "grpc_client_retries_total", ""), "2");
    assert_eq!(
        get(&body, "grpc_client_handled_total", r#",grpc_code="OK""#),
        "1"
    );
    assert_eq!(
        get(
            &body,
            "grpc_client_handled_total",
            r#",grpc_code="Unavailable""#
        ),
        "0"
    );
    assert_eq!(get(&body, "grpc_client_msg_sent_total", ""), "1");
    assert_eq!(get(&body, "grpc_client_msg_received_total", ""), "1");
    assert_eq!(get(&body, "grpc_client_handling_seconds_count", ""), "1");
    for reason in reasons {
        let labels = format!(r#",reason="{reason}""#);
        assert_eq!(get(&body, "grpc_client_gave_up_total", &labels), "0");
    }

    // Fails on all 4 attempts.
    client.get(always_failing("metrics-2")).await.unwrap_err();
    let body = render_metrics(&registry);
    assert_eq!(get(&body, "grpc_client_started_total", ""), "2");
    assert_eq!(get(&body, "grpc_client_attempts_total", ""), "7");
    assert_eq!(get(&body, "grpc_client_retries_total", ""), "5");
    assert_eq!(
        get(&body, "grpc_client_handled_total", r#",grpc_code="OK""#),
        "1"
    );
    assert_eq!(
        get(
            &body,
            "grpc_client_handled_total",
            r#",grpc_code="Unavailable""#
        ),
        "1"
    );
    assert_eq!(get(&body, "grpc_client_msg_sent_total", ""), "2");
    assert_eq!(get(&body, "grpc_client_msg_received_total", ""), "1");
    assert_eq!(get(&body, "grpc_client_handling_seconds_count", ""), "2");
    for reason in reasons {
        let labels = format!(r#",reason="{reason}""#);
        let expected = if reason == "attempts_exhausted" {
            "1"
        } else {
            "0"
        };
        assert_eq!(get(&body, "grpc_client_gave_up_total", &labels), expected);
    }
    // The other RPCs were not called.
    assert_eq!(
        sample(&body, "grpc_client_started_total", "unary", "Put", ""),
        "0"
    );
    assert_eq!(
        sample(
            &body,
            "grpc_client_attempts_total",
            "bidi_stream",
            "Chat",
            ""
        ),
        "0"
    );
}

// ---- visibility --------------------------------------------------------------------------

/// One event: its level and its fields, `message` included.
type LoggedEvent = (tracing::Level, BTreeMap<String, String>);

/// The `tonic_intercept::client` events.
#[derive(Clone, Default)]
struct ClientEvents(Arc<Mutex<Vec<LoggedEvent>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ClientEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields<'a>(&'a mut BTreeMap<String, String>);
        impl tracing::field::Visit for Fields<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_owned(), format!("{value:?}"));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.insert(field.name().to_owned(), value.to_owned());
            }
        }
        if event.metadata().target() != "tonic_intercept::client" {
            return;
        }
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), fields));
    }
}

#[tokio::test(start_paused = true)]
async fn each_retry_and_each_give_up_is_an_event() {
    use tracing_subscriber::layer::SubscriberExt;

    let events = ClientEvents::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(events.clone()));
    const GET: ClientPolicy<Get> = ClientPolicy::retry(QUICK.max_attempts(3));
    let (_flaky, mut client, _recorder) = start(ClientConfig::new().policy(GET)).await;

    let status = client
        .get(failing("events", 10, Code::Unavailable))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);

    let events = events.0.lock().unwrap().clone();
    let summary: Vec<(tracing::Level, &str, &str, &str)> = events
        .iter()
        .map(|(level, fields)| {
            let field = |name: &str| fields.get(name).map_or("", String::as_str);
            (*level, field("message"), field("attempt"), field("reason"))
        })
        .collect();
    assert_eq!(
        summary,
        [
            (tracing::Level::INFO, "retrying", "1", ""),
            (tracing::Level::INFO, "retrying", "2", ""),
            (
                tracing::Level::DEBUG,
                "not retrying",
                "",
                "attempts_exhausted"
            ),
        ]
    );
    assert_eq!(events[0].1["rpc"], "/flaky.v1.FlakyService/Get");
    assert_eq!(events[0].1["code"], "Unavailable");
    assert_eq!(events[2].1["attempts"], "3");
}
