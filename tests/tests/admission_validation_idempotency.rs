//! Admission (concurrency, call rate per RPC and per caller, the queue), validation
//! (unary and streamed messages, `google.rpc.BadRequest` details) and idempotency keys,
//! over real loopback TCP, with exact codes, messages and counts.
//!
//! Admission state is a `static` per RPC per impl type, and the tests of this binary run
//! in parallel: every test that admits uses its own service type, defined with
//! `echo_service!` below.
//!
//! The tests run on `#[tokio::test]`'s current-thread runtime, with the server on the
//! same thread: when a test sees that a call reached `auth(..)` (which counts it), that
//! call's task has already gone on to admission and is waiting there.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_intercept::prometheus_client::registry::Registry;
use tonic_intercept::tonic_types::StatusExt;
use tonic_intercept::{
    Authenticate, Call, IdempotencyCache, ServerMetrics, StaticTokens, auth::Principal, intercept,
    metrics::ServiceMetrics, wire::IDEMPOTENCY_KEY, wire::IDEMPOTENCY_REPLAYED,
    wire::RETRY_PUSHBACK,
};
use tonic_intercept_tests::pb::echo_service_intercept as rpc;
use tonic_intercept_tests::pb::{EchoReply, EchoRequest, StreamRequest, Summary};
use tonic_intercept_tests::{client, serve, with_token};

type Replies = tokio_stream::wrappers::ReceiverStream<Result<EchoReply, Status>>;
type Client =
    tonic_intercept_tests::pb::echo_service_client::EchoServiceClient<tonic::transport::Channel>;

/// Tokens of the tests: `a` is ada, `b` is bob, `c` is cy.
const A: &str = "a";
const B: &str = "b";
const C: &str = "c";

/// What the handlers and the verifier saw.
#[derive(Debug, Default)]
struct Work {
    /// Calls that reached `auth(..)`, admitted or not.
    arrived: AtomicU64,
    /// Unary handler invocations; a unary reply's `seq` is its invocation's number.
    handled: AtomicU64,
    /// Request messages a streaming handler received as `Ok`.
    seen: AtomicU64,
}

impl Work {
    fn arrived(&self) -> u64 {
        self.arrived.load(Ordering::SeqCst)
    }
    fn handled(&self) -> u64 {
        self.handled.load(Ordering::SeqCst)
    }
    fn seen(&self) -> u64 {
        self.seen.load(Ordering::SeqCst)
    }
}

/// `StaticTokens` that also counts the calls reaching it.
#[derive(Debug, Clone)]
struct Tokens {
    table: StaticTokens<Principal>,
    work: Arc<Work>,
}

impl Authenticate for Tokens {
    type Identity = Principal;

    async fn authenticate(&self, call: &Call, metadata: &MetadataMap) -> Result<Principal, Status> {
        self.work.arrived.fetch_add(1, Ordering::SeqCst);
        self.table.authenticate(call, metadata).await
    }
}

/// Everything a service of this file may name in its `#[intercept]`, shared with the test
/// (every field is a handle on shared state).
#[derive(Clone)]
struct Env {
    tokens: Tokens,
    work: Arc<Work>,
    /// Each unary call takes a permit before answering (except for text `fail`): a
    /// gated `Env` starts with none, so the test decides when calls end.
    gate: Arc<Semaphore>,
    cache: IdempotencyCache<rpc::Unary>,
    metrics: ServiceMetrics<rpc::Service>,
    registry: Arc<Registry>,
}

impl Env {
    /// Unary calls answer at once.
    fn open() -> Self {
        Self::with_gate(Semaphore::MAX_PERMITS)
    }

    /// Unary calls wait in the handler until `gate.add_permits(..)`.
    fn gated() -> Self {
        Self::with_gate(0)
    }

    fn with_gate(permits: usize) -> Self {
        let work = Arc::new(Work::default());
        let mut registry = Registry::default();
        let metrics = ServerMetrics::register(&mut registry).service::<rpc::Service>();
        Self {
            tokens: Tokens {
                table: StaticTokens::new([
                    (A, Principal::new("ada")),
                    (B, Principal::new("bob")),
                    (C, Principal::new("cy")),
                ]),
                work: work.clone(),
            },
            work,
            gate: Arc::new(Semaphore::new(permits)),
            cache: IdempotencyCache::new(Duration::from_secs(600), 100),
            metrics,
            registry: Arc::new(registry),
        }
    }

    /// The value of one series of the metrics, as rendered.
    fn metric(&self, name: &str, labels: &str) -> String {
        let text = tonic_intercept::metrics::render_metrics(&self.registry);
        let prefix = format!("{name}{{{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no series `{prefix}` in\n{text}"))
            .to_string()
    }
}

/// The labels of `Unary`'s series.
const UNARY: &str = r#"grpc_type="unary",grpc_service="echo.v1.EchoService",grpc_method="Unary""#;

async fn unary(env: &Env, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
    let seq = env.work.handled.fetch_add(1, Ordering::SeqCst) + 1;
    let who = request
        .extensions()
        .get::<Principal>()
        .map_or_else(|| "anonymous".to_string(), |p| p.name.clone());
    let text = request.into_inner().text;
    if text == "fail" {
        return Err(Status::unavailable("failed on purpose"));
    }
    env.gate.acquire().await.expect("never closed").forget();
    Ok(Response::new(EchoReply {
        text: format!("{text} from {who}"),
        seq,
    }))
}

/// Generic over the request stream: `Streaming` without inbound policies, `Inbound` with.
async fn client_stream<S>(work: &Work, requests: S) -> Result<Response<Summary>, Status>
where
    S: Stream<Item = Result<EchoRequest, Status>>,
{
    let mut requests = pin!(requests);
    let mut summary = Summary::default();
    while let Some(request) = requests.next().await {
        let text = request?.text;
        work.seen.fetch_add(1, Ordering::SeqCst);
        summary.received += 1;
        summary.texts.push(text);
    }
    Ok(Response::new(summary))
}

/// Echoes each message; forwards an error and stops.
fn bidi<S>(work: &Arc<Work>, requests: S) -> Result<Response<Replies>, Status>
where
    S: Stream<Item = Result<EchoRequest, Status>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(4);
    let work = work.clone();
    tokio::spawn(async move {
        let mut requests = pin!(requests);
        let mut seq = 0;
        while let Some(request) = requests.next().await {
            let reply = match request {
                Ok(request) => {
                    work.seen.fetch_add(1, Ordering::SeqCst);
                    seq += 1;
                    Ok(EchoReply {
                        text: request.text,
                        seq,
                    })
                }
                Err(status) => Err(status),
            };
            let failed = reply.is_err();
            if tx.send(reply).await.is_err() || failed {
                break;
            }
        }
    });
    Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
        rx,
    )))
}

/// Defines `struct $name(Env)` and its `EchoService` impl under `#[intercept($policy)]`.
///
/// `self` is passed in (`Name(self) => ..`) because `self` is hygienic in `macro_rules`:
/// the `self.tokens` of the policy and the `&self` of the methods must come from the
/// same place.
macro_rules! echo_service {
    ($(#[$doc:meta])* $name:ident($self:tt) => $($policy:tt)*) => {
        $(#[$doc])*
        struct $name(Env);

        impl std::ops::Deref for $name {
            type Target = Env;
            fn deref(&self) -> &Env {
                &self.0
            }
        }

        #[intercept($($policy)*)]
        #[tonic::async_trait]
        impl tonic_intercept_tests::pb::echo_service_server::EchoService for $name {
            async fn unary(
                &$self,
                request: Request<EchoRequest>,
            ) -> Result<Response<EchoReply>, Status> {
                unary(&$self.0, request).await
            }

            type ServerStreamStream = Replies;

            async fn server_stream(
                &$self,
                _: Request<StreamRequest>,
            ) -> Result<Response<Self::ServerStreamStream>, Status> {
                Err(Status::unimplemented("not here"))
            }

            async fn client_stream(
                &$self,
                request: Request<Streaming<EchoRequest>>,
            ) -> Result<Response<Summary>, Status> {
                client_stream(&$self.0.work, request.into_inner()).await
            }

            type BidiStream = Replies;

            async fn bidi(
                &$self,
                request: Request<Streaming<EchoRequest>>,
            ) -> Result<Response<Self::BidiStream>, Status> {
                bidi(&$self.0.work, request.into_inner())
            }
        }
    };
}

fn echo(text: &str) -> EchoRequest {
    EchoRequest { text: text.into() }
}

/// Starts a unary call in its own task; its result arrives on `results`.
fn start(
    client: &Client,
    request: Request<EchoRequest>,
    results: &mpsc::UnboundedSender<Result<EchoReply, Status>>,
) {
    let mut client = client.clone();
    let results = results.clone();
    tokio::spawn(async move {
        let result = client.unary(request).await.map(Response::into_inner);
        let _ = results.send(result);
    });
}

/// Waits until `done` holds (a guard against hanging, not a timing assertion).
async fn until(what: &str, done: impl Fn() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .unwrap_or_else(|_| panic!("still not {what}"));
}

/// The `grpc-retry-pushback-ms` of a refusal, in milliseconds.
fn pushback_ms(status: &Status) -> u64 {
    status
        .metadata()
        .get(RETRY_PUSHBACK)
        .expect("a pushback hint")
        .to_str()
        .unwrap()
        .parse()
        .expect("an integer")
}

/// The texts of some replies, sorted (concurrent calls end in any order).
fn sorted_texts(replies: &[EchoReply]) -> Vec<&str> {
    let mut texts: Vec<_> = replies.iter().map(|r| r.text.as_str()).collect();
    texts.sort_unstable();
    texts
}

/// `(field, description)` of each violation in the status's `google.rpc.BadRequest`.
fn violations(status: &Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|v| (v.field, v.description))
        .collect()
}

fn violation(field: &str, description: &str) -> Vec<(String, String)> {
    vec![(field.to_string(), description.to_string())]
}

// ---- concurrency ----

echo_service!(
    /// Two calls at once, refused beyond, counted by `metrics`.
    InFlight(self) => public(*), limit(Unary, max_in_flight = 2), metrics(self.metrics)
);

#[tokio::test]
async fn max_in_flight_admits_two_refuses_the_third_and_frees_the_slots() {
    let env = Env::gated();
    let mut client = client(serve(InFlight(env.clone())).await).await;
    let (tx, mut results) = mpsc::unbounded_channel();

    for text in ["one", "two", "three"] {
        start(&client, Request::new(echo(text)), &tx);
    }
    // The two admitted calls wait in the handler: the first result is the refusal.
    let status = results.recv().await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    // No call has ended yet, so the pushback is its floor of 1 ms.
    assert_eq!(
        status.message(),
        "Unary: too many calls in flight (max_in_flight = 2); retry in 1 ms"
    );
    assert_eq!(pushback_ms(&status), 1);
    until("two calls in the handler", || env.work.handled() == 2).await;
    assert_eq!(env.work.handled(), 2);
    assert!(results.try_recv().is_err(), "the admitted calls still wait");

    // Released, the two admitted calls succeed.
    env.gate.add_permits(2);
    let first = results.recv().await.unwrap().unwrap();
    let second = results.recv().await.unwrap().unwrap();
    let replies = [first, second];
    let texts = sorted_texts(&replies);
    assert_eq!(texts.len(), 2);
    let admitted: Vec<_> = texts
        .iter()
        .map(|t| t.strip_suffix(" from anonymous").unwrap())
        .collect();
    assert!(
        matches!(
            admitted.as_slice(),
            ["one", "two"] | ["one", "three"] | ["three", "two"]
        ),
        "{admitted:?}"
    );
    let mut seqs: Vec<_> = replies.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2]);

    // Their slots are free again: a fourth call is admitted.
    env.gate.add_permits(1);
    let reply = client.unary(echo("four")).await.unwrap().into_inner();
    assert_eq!(reply.text, "four from anonymous");
    assert_eq!(reply.seq, 3);
    assert_eq!(env.work.handled(), 3);

    // The metrics saw four calls, one refused by the concurrency limit.
    assert_eq!(env.metric("grpc_server_started_total", UNARY), "4");
    for (code, n) in [("OK", "3"), ("ResourceExhausted", "1")] {
        let labels = format!(r#"{UNARY},grpc_code="{code}""#);
        assert_eq!(
            env.metric("grpc_server_handled_total", &labels),
            n,
            "{code}"
        );
    }
    for (policy, n) in [("concurrency", "1"), ("call_rate", "0"), ("deadline", "0")] {
        let labels = format!(r#"{UNARY},policy="{policy}""#);
        assert_eq!(
            env.metric("grpc_server_rejected_total", &labels),
            n,
            "{policy}"
        );
    }
}

echo_service!(
    /// Two calls at once and one waiting; `auth` counts arrivals.
    Queued(self) => auth(self.tokens), limit(Unary, max_in_flight = 2, queue = 1)
);

#[tokio::test]
async fn a_queued_call_waits_for_a_slot_and_the_next_is_refused_at_once() {
    let env = Env::gated();
    let mut client = client(serve(Queued(env.clone())).await).await;
    let (tx, mut results) = mpsc::unbounded_channel();

    start(&client, with_token(echo("one"), A), &tx);
    start(&client, with_token(echo("two"), A), &tx);
    until("two calls in the handler", || env.work.handled() == 2).await;

    // The third call passes auth and waits in the queue.
    start(&client, with_token(echo("three"), A), &tx);
    until("the third call queued", || env.work.arrived() == 3).await;
    assert_eq!(env.work.handled(), 2);

    // The queue is full: a fourth call is refused at once.
    let status = client.unary(with_token(echo("four"), A)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "Unary: too many calls in flight (max_in_flight = 2, queue of 1 full); retry in 1 ms"
    );
    assert_eq!(pushback_ms(&status), 1);
    assert_eq!(env.work.arrived(), 4);
    assert_eq!(env.work.handled(), 2);
    assert!(results.try_recv().is_err(), "nothing ended yet");

    // One call ends; its slot goes to the queued call.
    env.gate.add_permits(1);
    let first = results.recv().await.unwrap().unwrap();
    until("the queued call in the handler", || env.work.handled() == 3).await;
    env.gate.add_permits(2);
    let second = results.recv().await.unwrap().unwrap();
    let third = results.recv().await.unwrap().unwrap();
    let replies = [first, second, third];
    assert_eq!(
        sorted_texts(&replies),
        ["one from ada", "three from ada", "two from ada"]
    );
    let three = replies.iter().find(|r| r.text == "three from ada").unwrap();
    assert_eq!(three.seq, 3, "the queued call ran after the first two");
    assert_eq!(env.work.handled(), 3);
}

// ---- call rate ----

echo_service!(
    /// One call per second per caller.
    PerCaller(self) => auth(self.tokens), limit(Unary, calls_per_second_per_identity = 1)
);

#[tokio::test]
async fn calls_per_second_per_identity_keeps_each_caller_to_its_own_rate() {
    let env = Env::open();
    let mut client = client(serve(PerCaller(env.clone())).await).await;

    let reply = client.unary(with_token(echo("x"), A)).await.unwrap();
    assert_eq!(reply.into_inner().text, "x from ada");

    // Ada again at once: over her rate.
    let status = client.unary(with_token(echo("x"), A)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let pushback = pushback_ms(&status);
    assert!((1..=1_000).contains(&pushback), "pushback {pushback} ms");
    assert_eq!(
        status.message(),
        format!(
            "Unary: more than 1 calls per second per caller \
             (calls_per_second_per_identity); retry in {pushback} ms"
        )
    );

    // Bob has a bucket of his own.
    let reply = client.unary(with_token(echo("x"), B)).await.unwrap();
    assert_eq!(reply.into_inner().text, "x from bob");
    assert_eq!(env.work.handled(), 2);

    // After the pushback, Ada's bucket has refilled.
    tokio::time::sleep(Duration::from_millis(pushback + 20)).await;
    let reply = client.unary(with_token(echo("y"), A)).await.unwrap();
    assert_eq!(reply.into_inner().text, "y from ada");
    assert_eq!(env.work.handled(), 3);
    assert_eq!(env.work.arrived(), 4);
}

echo_service!(
    /// One call per second from everyone together.
    PublicRate(self) => public(*), limit(Unary, calls_per_second = 1)
);

#[tokio::test]
async fn calls_per_second_on_a_public_rpc_is_shared_by_every_caller() {
    let env = Env::open();
    let mut client = client(serve(PublicRate(env.clone())).await).await;

    let reply = client.unary(echo("x")).await.unwrap();
    assert_eq!(reply.into_inner().text, "x from anonymous");

    // Another caller (its token means nothing to a public RPC) shares the same bucket.
    let status = client.unary(with_token(echo("x"), B)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let pushback = pushback_ms(&status);
    assert!((1..=1_000).contains(&pushback), "pushback {pushback} ms");
    assert_eq!(
        status.message(),
        format!(
            "Unary: more than 1 calls per second (calls_per_second, call_burst = 1); \
             retry in {pushback} ms"
        )
    );
    assert_eq!(env.work.handled(), 1);

    tokio::time::sleep(Duration::from_millis(pushback + 20)).await;
    let reply = client.unary(echo("y")).await.unwrap();
    assert_eq!(reply.into_inner().text, "y from anonymous");
    assert_eq!(env.work.handled(), 2);
}

echo_service!(
    /// Two calls a minute per caller, three from everyone: the rates in minutes, kept
    /// in this process.
    PerMinute(self) =>
        auth(self.tokens),
        limit(Unary, calls_per_minute = 3, calls_per_minute_per_identity = 2),
);

#[tokio::test(start_paused = true)]
async fn calls_per_minute_pace_callers_and_the_rpc_in_minutes() {
    let env = Env::open();
    let mut client = client(serve(PerMinute(env.clone())).await).await;
    for _ in 0..2 {
        client.unary(with_token(echo("x"), A)).await.unwrap();
    }
    let status = client.unary(with_token(echo("x"), A)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    // Her next token: one interval (30 s) after the first of her two.
    let pushback = pushback_ms(&status);
    assert!(
        (29_000..=30_000).contains(&pushback),
        "pushback {pushback} ms"
    );
    assert_eq!(
        status.message(),
        format!(
            "Unary: more than 2 calls per minute per caller \
             (calls_per_minute_per_identity); retry in {pushback} ms"
        )
    );
    // Bob takes the RPC's third token, then the RPC's bucket is empty for him too.
    client.unary(with_token(echo("x"), B)).await.unwrap();
    let status = client.unary(with_token(echo("x"), B)).await.unwrap_err();
    let pushback = pushback_ms(&status);
    assert_eq!(
        status.message(),
        format!(
            "Unary: more than 3 calls per minute (calls_per_minute, call_burst = 3); \
             retry in {pushback} ms"
        )
    );
    assert_eq!(env.work.handled(), 3);

    // A minute later both buckets have refilled.
    tokio::time::sleep(Duration::from_secs(60)).await;
    client.unary(with_token(echo("y"), A)).await.unwrap();
    assert_eq!(env.work.handled(), 4);
}

echo_service!(
    /// Two calls a second per peer address, on a public RPC.
    PerPeer(self) =>
        public(*),
        limit(Unary, calls_per_second_per_peer = 2),
        metrics(self.metrics),
);

/// A client whose connection leaves from `source` (a loopback address), so the server
/// sees that peer address.
async fn client_from(addr: std::net::SocketAddr, source: [u8; 4]) -> Client {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .local_address(Some(std::net::Ipv4Addr::from(source).into()))
        .connect()
        .await
        .unwrap();
    Client::new(channel)
}

// Paused time: the clock stands still while the calls travel over loopback (nothing
// here sleeps), so the pushback is exact.
#[tokio::test(start_paused = true)]
async fn calls_per_second_per_peer_keeps_each_address_to_its_own_rate_on_a_public_rpc() {
    let env = Env::open();
    let addr = serve(PerPeer(env.clone())).await;
    let mut first = client_from(addr, [127, 0, 0, 1]).await;
    // A second connection from the same address shares its bucket.
    let mut also_first = client_from(addr, [127, 0, 0, 1]).await;
    let mut second = client_from(addr, [127, 0, 0, 2]).await;

    let reply = first.unary(echo("x")).await.unwrap();
    assert_eq!(reply.into_inner().text, "x from anonymous");
    also_first.unary(echo("x")).await.unwrap();

    // 127.0.0.1's third call in the same instant: over its rate.
    let status = first.unary(echo("x")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(pushback_ms(&status), 500);
    assert_eq!(
        status.message(),
        "Unary: more than 2 calls per second per peer address \
         (calls_per_second_per_peer); retry in 500 ms"
    );

    // 127.0.0.2 has a bucket of its own.
    for _ in 0..2 {
        let reply = second.unary(echo("y")).await.unwrap();
        assert_eq!(reply.into_inner().text, "y from anonymous");
    }
    let status = second.unary(echo("y")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(pushback_ms(&status), 500);
    assert_eq!(env.work.handled(), 4);

    // After the pushback, 127.0.0.1 has a token again.
    tokio::time::advance(Duration::from_millis(500)).await;
    first.unary(echo("z")).await.unwrap();
    assert_eq!(env.work.handled(), 5);

    assert_eq!(env.metric("grpc_server_started_total", UNARY), "7");
    for (code, n) in [("OK", "5"), ("ResourceExhausted", "2")] {
        let labels = format!(r#"{UNARY},grpc_code="{code}""#);
        assert_eq!(
            env.metric("grpc_server_handled_total", &labels),
            n,
            "{code}"
        );
    }
    let labels = format!(r#"{UNARY},policy="call_rate""#);
    assert_eq!(env.metric("grpc_server_rejected_total", &labels), "2");
}

echo_service!(
    /// Two calls back to back from all callers, one per second per caller.
    Shared(self) =>
        auth(self.tokens),
        limit(Unary, calls_per_second = 1, call_burst = 2, calls_per_second_per_identity = 1),
        metrics(self.metrics),
);

#[tokio::test]
async fn a_caller_over_its_own_rate_does_not_use_up_the_rpcs_rate() {
    let env = Env::open();
    let mut client = client(serve(Shared(env.clone())).await).await;

    client.unary(with_token(echo("x"), A)).await.unwrap();

    // Ada is over her own rate; the RPC token she took is given back...
    let status = client.unary(with_token(echo("x"), A)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let pushback = pushback_ms(&status);
    assert_eq!(
        status.message(),
        format!(
            "Unary: more than 1 calls per second per caller \
             (calls_per_second_per_identity); retry in {pushback} ms"
        )
    );

    // ...so Bob gets the burst's second call...
    let reply = client.unary(with_token(echo("x"), B)).await.unwrap();
    assert_eq!(reply.into_inner().text, "x from bob");

    // ...and then the RPC's own rate refuses Cy, who has not called yet.
    let status = client.unary(with_token(echo("x"), C)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let pushback = pushback_ms(&status);
    assert!((1..=1_000).contains(&pushback), "pushback {pushback} ms");
    assert_eq!(
        status.message(),
        format!(
            "Unary: more than 1 calls per second (calls_per_second, call_burst = 2); \
             retry in {pushback} ms"
        )
    );
    assert_eq!(env.work.handled(), 2);

    tokio::time::sleep(Duration::from_millis(pushback + 20)).await;
    let reply = client.unary(with_token(echo("y"), C)).await.unwrap();
    assert_eq!(reply.into_inner().text, "y from cy");
    assert_eq!(env.work.handled(), 3);

    assert_eq!(env.metric("grpc_server_started_total", UNARY), "5");
    for (policy, n) in [("call_rate", "2"), ("concurrency", "0"), ("auth", "0")] {
        let labels = format!(r#"{UNARY},policy="{policy}""#);
        assert_eq!(
            env.metric("grpc_server_rejected_total", &labels),
            n,
            "{policy}"
        );
    }
}

echo_service!(
    /// One call per second, one more waiting for its token.
    RateQueued(self) => auth(self.tokens), limit(Unary, calls_per_second = 1, queue = 1)
);

#[tokio::test]
async fn a_queued_call_waits_for_its_token_and_the_next_is_refused_at_once() {
    let env = Env::open();
    let mut client = client(serve(RateQueued(env.clone())).await).await;
    let (tx, mut results) = mpsc::unbounded_channel();

    client.unary(with_token(echo("one"), A)).await.unwrap();

    // The second call reserves the next token and waits for it, in the queue.
    start(&client, with_token(echo("two"), B), &tx);
    until("the second call queued", || env.work.arrived() == 2).await;
    assert_eq!(env.work.handled(), 1);

    // The queue is full: the third is refused, told to come back after the token the
    // second call holds (more than a second away).
    let status = client
        .unary(with_token(echo("three"), C))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let pushback = pushback_ms(&status);
    assert!(
        (1_001..=2_000).contains(&pushback),
        "pushback {pushback} ms"
    );
    assert_eq!(
        status.message(),
        format!(
            "Unary: more than 1 calls per second (calls_per_second, call_burst = 1); \
             retry in {pushback} ms"
        )
    );
    assert_eq!(env.work.handled(), 1);

    // The queued call gets its token and runs.
    let reply = results.recv().await.unwrap().unwrap();
    assert_eq!(reply.text, "two from bob");
    assert_eq!(reply.seq, 2);
    assert_eq!(env.work.handled(), 2);
}

// ---- validation ----

echo_service!(
    /// Every request message validated.
    Validated(self) => public(*), validate(Unary, ClientStream, Bidi)
);

#[tokio::test]
async fn an_invalid_unary_request_never_reaches_the_handler() {
    let env = Env::open();
    let mut client = client(serve(Validated(env.clone())).await).await;

    let status = client.unary(echo("")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Unary: 1 invalid field: text: must not be empty"
    );
    assert_eq!(violations(&status), violation("text", "must not be empty"));

    let status = client.unary(echo(" x")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Unary: 1 invalid field: text: must not start with a space"
    );
    assert_eq!(
        violations(&status),
        violation("text", "must not start with a space")
    );
    assert_eq!(env.work.handled(), 0);

    let reply = client.unary(echo("x")).await.unwrap();
    assert_eq!(reply.into_inner().text, "x from anonymous");
    assert_eq!(env.work.handled(), 1);
}

#[tokio::test]
async fn an_invalid_client_streamed_message_ends_the_stream_after_the_valid_ones() {
    let env = Env::open();
    let mut client = client(serve(Validated(env.clone())).await).await;

    let requests = tokio_stream::iter([echo("a"), echo(""), echo("c")]);
    let status = client.client_stream(requests).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "ClientStream: 1 invalid field: text: must not be empty"
    );
    assert_eq!(violations(&status), violation("text", "must not be empty"));
    // The handler got "a", then the error in place of "".
    assert_eq!(env.work.seen(), 1);

    let requests = tokio_stream::iter([echo("a"), echo("b")]);
    let summary = client.client_stream(requests).await.unwrap().into_inner();
    assert_eq!(summary.received, 2);
    assert_eq!(summary.texts, ["a", "b"]);
    assert_eq!(env.work.seen(), 3);
}

#[tokio::test]
async fn bidi_delivers_the_replies_to_valid_messages_then_invalid_argument() {
    let env = Env::open();
    let mut client = client(serve(Validated(env.clone())).await).await;

    let requests = tokio_stream::iter([echo("a"), echo("b"), echo(" d"), echo("e")]);
    let replies: Vec<_> = client
        .bidi(requests)
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    assert_eq!(replies.len(), 3, "{replies:?}");
    let texts: Vec<_> = replies[..2]
        .iter()
        .map(|r| {
            let r = r.as_ref().unwrap();
            (r.text.as_str(), r.seq)
        })
        .collect();
    assert_eq!(texts, [("a", 1), ("b", 2)]);
    let status = replies[2].as_ref().unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Bidi: 1 invalid field: text: must not start with a space"
    );
    assert_eq!(
        violations(status),
        violation("text", "must not start with a space")
    );
    assert_eq!(env.work.seen(), 2);
}

// ---- idempotency ----

echo_service!(
    /// Unary calls with an `idempotency-key` are answered once per caller and key.
    Idempotent(self) => auth(self.tokens), idempotency(self.cache, Unary)
);

/// A request with a token and an idempotency key.
fn keyed(text: &str, token: &str, key: &str) -> Request<EchoRequest> {
    let mut request = with_token(echo(text), token);
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

#[tokio::test]
async fn an_idempotency_key_replays_the_first_success_for_the_same_caller() {
    let env = Env::open();
    let mut client = client(serve(Idempotent(env.clone())).await).await;

    // The first call runs and is stored.
    let first = client.unary(keyed("pay", A, "k1")).await.unwrap();
    assert_eq!(replayed(&first), None);
    let first = first.into_inner();
    assert_eq!(
        first,
        EchoReply {
            text: "pay from ada".into(),
            seq: 1
        }
    );
    assert_eq!(env.work.handled(), 1);
    assert_eq!(env.cache.len(), 1);

    // The retry gets the same reply, marked as replayed, without running the handler.
    let retry = client.unary(keyed("pay", A, "k1")).await.unwrap();
    assert_eq!(replayed(&retry), Some("true"));
    assert_eq!(retry.into_inner(), first);
    assert_eq!(env.work.handled(), 1);

    // The same key with another request is a client bug.
    let status = client.unary(keyed("refund", A, "k1")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Unary: idempotency key reused with a different request"
    );
    assert_eq!(env.work.handled(), 1);

    // Without a key, every call runs.
    for seq in [2, 3] {
        let reply = client.unary(with_token(echo("pay"), A)).await.unwrap();
        assert_eq!(replayed(&reply), None);
        assert_eq!(reply.into_inner().seq, seq);
    }
    assert_eq!(env.work.handled(), 3);
    assert_eq!(env.cache.len(), 1);

    // Keys are per caller: Bob's "k1" is not Ada's.
    let bob = client.unary(keyed("pay", B, "k1")).await.unwrap();
    assert_eq!(replayed(&bob), None);
    let bob = bob.into_inner();
    assert_eq!(
        bob,
        EchoReply {
            text: "pay from bob".into(),
            seq: 4
        }
    );
    assert_eq!(env.work.handled(), 4);
    assert_eq!(env.cache.len(), 2);
    // Each caller's key now replays that caller's own reply.
    let retry = client.unary(keyed("pay", B, "k1")).await.unwrap();
    assert_eq!(replayed(&retry), Some("true"));
    assert_eq!(retry.into_inner(), bob);
    let retry = client.unary(keyed("pay", A, "k1")).await.unwrap();
    assert_eq!(replayed(&retry), Some("true"));
    assert_eq!(retry.into_inner(), first);
    assert_eq!(env.work.handled(), 4);
}

#[tokio::test]
async fn a_failed_call_is_not_stored_and_its_retry_runs_again() {
    let env = Env::open();
    let mut client = client(serve(Idempotent(env.clone())).await).await;

    for handled in [1, 2] {
        let status = client.unary(keyed("fail", A, "k2")).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "failed on purpose");
        assert_eq!(env.work.handled(), handled);
        assert_eq!(env.cache.len(), 0, "a failure frees its key");
    }

    // The freed key is not bound to the failed request: another one may use it.
    let reply = client.unary(keyed("ok", A, "k2")).await.unwrap();
    assert_eq!(replayed(&reply), None);
    assert_eq!(reply.into_inner().seq, 3);
    let retry = client.unary(keyed("ok", A, "k2")).await.unwrap();
    assert_eq!(replayed(&retry), Some("true"));
    assert_eq!(retry.into_inner().seq, 3);
    assert_eq!(env.work.handled(), 3);
}

#[tokio::test]
async fn a_key_whose_first_call_still_runs_is_aborted_for_its_caller_only() {
    let env = Env::gated();
    let mut client = client(serve(Idempotent(env.clone())).await).await;
    let (tx, mut results) = mpsc::unbounded_channel();

    start(&client, keyed("pay", A, "k3"), &tx);
    until("the first call in the handler", || env.work.handled() == 1).await;

    let status = client.unary(keyed("pay", A, "k3")).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(
        status.message(),
        "Unary: a call with this idempotency key is still running; retry later"
    );
    assert_eq!(env.work.handled(), 1);

    // Bob's "k3" is another call: it runs (and waits at the gate too).
    start(&client, keyed("pay", B, "k3"), &tx);
    until("Bob's call in the handler", || env.work.handled() == 2).await;

    env.gate.add_permits(2);
    let first = results.recv().await.unwrap().unwrap();
    let second = results.recv().await.unwrap().unwrap();
    assert_eq!(
        sorted_texts(&[first.clone(), second.clone()]),
        ["pay from ada", "pay from bob"]
    );
    let ada = if first.text == "pay from ada" {
        first
    } else {
        second
    };

    // Completed now: the retry is a replay.
    let retry = client.unary(keyed("pay", A, "k3")).await.unwrap();
    assert_eq!(replayed(&retry), Some("true"));
    assert_eq!(retry.into_inner(), ada);
    assert_eq!(env.work.handled(), 2);
    assert_eq!(env.cache.len(), 2);
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_invalid_argument() {
    let env = Env::open();
    let mut client = client(serve(Idempotent(env.clone())).await).await;

    let status = client.unary(keyed("pay", A, "")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "Unary: the idempotency key is empty");

    let long = "k".repeat(256);
    let status = client.unary(keyed("pay", A, &long)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Unary: the idempotency key is longer than 255 bytes"
    );
    assert_eq!(env.work.handled(), 0);
    assert!(env.cache.is_empty());

    // 255 bytes is the longest key accepted.
    let longest = "k".repeat(255);
    let reply = client.unary(keyed("pay", A, &longest)).await.unwrap();
    assert_eq!(replayed(&reply), None);
    assert_eq!(env.work.handled(), 1);
    assert_eq!(env.cache.len(), 1);
}
