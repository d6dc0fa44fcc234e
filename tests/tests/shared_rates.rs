//! `#[intercept(limit(.., shared = self.rates))]` through a real tonic server and a real
//! `redis-server` of each test's own: the exact refusals, pushback and headers, the
//! order of the two buckets, the round trips the deny cache saves, and every decision
//! taken without Redis counted in `grpc_server_limit_backend_errors_total`.
//!
//! Rates are a few calls a minute, so counts are exact in real time. Three replicas in
//! separate processes: `examples/tests/replicas.rs`.

mod common_redis;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common_redis::RedisServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_intercept::StaticTokens;
use tonic_intercept::backend::{FailurePolicy, RedisGcra, RedisGcraConfig};
use tonic_intercept::metrics::{ServerMetrics, ServiceMetrics, render_metrics};
use tonic_intercept::prometheus_client::registry::Registry;
use tonic_intercept::server::Server;
use tonic_intercept_tests::pb::echo_service_client::EchoServiceClient;
use tonic_intercept_tests::pb::echo_service_server::EchoServiceServer;
use tonic_intercept_tests::pb::{EchoReply, EchoRequest, StreamRequest, Summary};

#[derive(Clone)]
struct Echo {
    tokens: StaticTokens<String>,
    rates: Arc<RedisGcra>,
    metrics: ServiceMetrics<tonic_intercept_tests::pb::echo_service_intercept::Service>,
}

type Replies = ReceiverStream<Result<EchoReply, Status>>;

#[tonic_intercept::intercept(
    auth(self.tokens),
    limit(Unary, calls_per_minute = 5, calls_per_minute_per_identity = 3, shared = self.rates),
    metrics(self.metrics),
)]
#[tonic::async_trait]
impl tonic_intercept_tests::pb::echo_service_server::EchoService for Echo {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        Ok(Response::new(EchoReply {
            text: request.into_inner().text,
            seq: 0,
        }))
    }

    type ServerStreamStream = Replies;

    async fn server_stream(
        &self,
        _: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn client_stream(
        &self,
        _: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Summary>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    type BidiStream = Replies;

    async fn bidi(
        &self,
        _: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

struct Served {
    client: EchoServiceClient<Channel>,
    rates: Arc<RedisGcra>,
    registry: Arc<Registry>,
}

impl Served {
    async fn start(redis: &RedisServer, config: RedisGcraConfig) -> Served {
        let mut registry = Registry::default();
        let metrics = ServerMetrics::register(&mut registry);
        let rates = Arc::new(RedisGcra::new(redis.url(), config).unwrap());
        let echo = Echo {
            tokens: StaticTokens::new([
                ("alice-token", "alice".into()),
                ("bob-token", "bob".into()),
            ]),
            rates: rates.clone(),
            metrics: metrics.service(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(
            Server::builder()
                .add_service(EchoServiceServer::new(echo))
                .serve(listener),
        );
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Served {
            client: EchoServiceClient::new(channel),
            rates,
            registry: Arc::new(registry),
        }
    }

    async fn call(&mut self, token: &str) -> Result<(), Status> {
        let mut request = Request::new(EchoRequest { text: "hi".into() });
        let value = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
        request.set_timeout(Duration::from_secs(10));
        self.client.unary(request).await.map(drop)
    }

    fn metric(&self, series: &str) -> u64 {
        let body = render_metrics(&self.registry);
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{body}"))
    }
}

const UNARY: &str = r#"grpc_type="unary",grpc_service="echo.v1.EchoService",grpc_method="Unary""#;

fn patient() -> RedisGcraConfig {
    RedisGcraConfig::new()
        .budget(Duration::from_secs(5))
        .response_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(2))
}

fn impatient(policy: FailurePolicy) -> RedisGcraConfig {
    RedisGcraConfig::new()
        .budget(Duration::from_millis(200))
        .response_timeout(Duration::from_millis(100))
        .connect_timeout(Duration::from_millis(100))
        .failure_policy(policy)
}

fn pushback_ms(status: &Status) -> u64 {
    status
        .metadata()
        .get("grpc-retry-pushback-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_bucket_then_the_rpcs_with_exact_refusals_and_round_trips() {
    let Some(redis) = RedisServer::start("shared_rates_exact") else {
        return;
    };
    let mut served = Served::start(&redis, patient()).await;

    // alice: her 3 a minute, each call two round trips (her bucket, then the RPC's).
    for _ in 0..3 {
        served.call("alice-token").await.unwrap();
    }
    assert_eq!(served.rates.round_trips(), 6);
    let refused = served.call("alice-token").await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().starts_with(
            "Unary: more than 3 calls per minute per caller (calls_per_minute_per_identity, shared); retry in "
        ),
        "{}",
        refused.message()
    );
    // GCRA's exact wait: her next token, at most one interval (20 s) away.
    let wait = pushback_ms(&refused);
    assert!(wait > 0 && wait <= 20_000, "{wait}");
    assert_eq!(
        refused.metadata().get("x-ratelimit-remaining").unwrap(),
        "0"
    );
    let reset: u64 = refused
        .metadata()
        .get("x-ratelimit-reset")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset > 0 && reset <= 60, "{reset}");
    // Refused by her own bucket: the RPC's was not asked (one round trip), and she took
    // none of everyone's tokens.
    assert_eq!(served.rates.round_trips(), 7);
    // Asked again: refused from the local cache, no round trip.
    let again = served.call("alice-token").await.unwrap_err();
    assert_eq!(again.code(), Code::ResourceExhausted);
    assert_eq!(served.rates.round_trips(), 7);

    // bob: the RPC's 5 a minute has 2 left after alice's 3.
    served.call("bob-token").await.unwrap();
    served.call("bob-token").await.unwrap();
    assert_eq!(served.rates.round_trips(), 11);
    let full = served.call("bob-token").await.unwrap_err();
    assert_eq!(full.code(), Code::ResourceExhausted);
    assert!(
        full.message().starts_with(
            "Unary: more than 5 calls per minute (calls_per_minute, call_burst = 5, shared); retry in "
        ),
        "{}",
        full.message()
    );
    assert_eq!(served.rates.round_trips(), 13);

    assert_eq!(
        served.metric(&format!(
            r#"grpc_server_handled_total{{{UNARY},grpc_code="OK"}}"#
        )),
        5
    );
    assert_eq!(
        served.metric(&format!(
            r#"grpc_server_rejected_total{{{UNARY},policy="call_rate"}}"#
        )),
        3
    );
    assert_eq!(served.rates.errors(), 0);
    assert!(!render_metrics(&served.registry).contains("grpc_server_limit_backend_errors_total{"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_fail_open_admits_and_every_call_is_counted() {
    let Some(mut redis) = RedisServer::start("shared_rates_fail_open") else {
        return;
    };
    let mut served = Served::start(&redis, impatient(FailurePolicy::FailOpen)).await;
    served.call("alice-token").await.unwrap();
    redis.kill();
    // Over alice's 3 a minute, all admitted: nothing can check them.
    for _ in 0..4 {
        served.call("alice-token").await.unwrap();
    }
    // Two checks per call were decided without Redis; each call is counted once.
    assert_eq!(served.rates.errors(), 8);
    assert_eq!(
        served.metric(&format!(
            r#"grpc_server_limit_backend_errors_total{{{UNARY},backend="redis"}}"#
        )),
        4
    );
    assert_eq!(
        served.metric(&format!(
            r#"grpc_server_handled_total{{{UNARY},grpc_code="OK"}}"#
        )),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_fail_closed_refuses_unavailable_and_fallback_limits_locally() {
    let Some(mut redis) = RedisServer::start("shared_rates_fail_closed") else {
        return;
    };
    let mut closed = Served::start(&redis, impatient(FailurePolicy::FailClosed)).await;
    let mut local = Served::start(&redis, impatient(FailurePolicy::FallbackLocal)).await;
    closed.call("alice-token").await.unwrap();
    redis.kill();

    let refused = closed.call("alice-token").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused
            .message()
            .starts_with("Unary: the call-rate backend `redis` is unavailable ("),
        "{}",
        refused.message()
    );
    assert_eq!(
        closed.metric(&format!(
            r#"grpc_server_rejected_total{{{UNARY},policy="call_rate"}}"#
        )),
        1
    );
    assert_eq!(
        closed.metric(&format!(
            r#"grpc_server_limit_backend_errors_total{{{UNARY},backend="redis"}}"#
        )),
        1
    );

    // FallbackLocal: bob's 3 a minute, kept by this replica alone while Redis is away.
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(
            local
                .call("bob-token")
                .await
                .map_or_else(|s| s.code(), |()| Code::Ok),
        );
    }
    assert_eq!(
        codes,
        [Code::Ok, Code::Ok, Code::Ok, Code::ResourceExhausted]
    );
    assert_eq!(
        local.metric(&format!(
            r#"grpc_server_limit_backend_errors_total{{{UNARY},backend="redis"}}"#
        )),
        4
    );
}
