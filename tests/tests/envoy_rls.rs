//! `EnvoyRls` against a real rate limit engine: a tonic RLS server on loopback whose
//! counting is Limitador's (the `limitador` crate, in-memory; tests/common_rls). Limits
//! are 5 a minute, so the counts are exact in real time. Also checks that the runtime's
//! checked-in RLS client is what the generator emits from the vendored protos.

mod common_rls;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common_rls::{Mode, Rls, per_identity, per_rpc};
use tonic_intercept::backend::{
    BackendError, Decision, EnvoyRls, EnvoyRlsConfig, FailurePolicy, RateBackend, RateKey,
    RateLimit,
};

const DOMAIN: &str = "tests";
const RPC: &str = "users.v1.UserService/GetUser";
const LIST: &str = "users.v1.UserService/ListUsers";
const FIVE_A_MINUTE: RateLimit = RateLimit::new(5, Duration::from_secs(60)).burst(5);

/// A budget generous enough for a loaded CI machine, where no fault is injected.
fn patient() -> EnvoyRlsConfig {
    EnvoyRlsConfig::new(DOMAIN)
        .budget(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
}

/// A short budget for the fault tests.
fn impatient(policy: FailurePolicy) -> EnvoyRlsConfig {
    EnvoyRlsConfig::new(DOMAIN)
        .budget(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(200))
        .failure_policy(policy)
}

/// A check that must complete: generously bounded (5x the budget), no timing asserted.
async fn check(
    backend: &EnvoyRls,
    key: &RateKey,
    limit: RateLimit,
) -> Result<Decision, BackendError> {
    let bound = backend.config().budget * 5;
    tokio::time::timeout(bound, backend.check(key, limit))
        .await
        .expect("a check completes within 5x its budget")
}

/// A loopback port nothing listens on.
fn closed_port() -> String {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

fn denied_within_a_minute(decision: Decision) -> Duration {
    match decision {
        Decision::Denied {
            retry_after,
            reset_after,
        } => {
            assert!(
                retry_after > Duration::ZERO && retry_after <= Duration::from_secs(60),
                "retry_after {retry_after:?} is within the 60 s window"
            );
            assert_eq!(
                reset_after, retry_after,
                "a fixed window resets when it admits"
            );
            retry_after
        }
        other => panic!("expected Denied, got {other:?}"),
    }
}

#[tokio::test]
async fn five_a_minute_per_identity_then_refused_locally() {
    let rls = Rls::start([per_identity(DOMAIN, RPC, 5, 60)], Mode::Limitador).await;
    let backend = EnvoyRls::new(rls.uri(), patient()).unwrap();
    assert_eq!(backend.name(), "envoy_rls");
    let alice = RateKey::per_identity(RPC, "alice");

    for remaining in (0..5).rev() {
        match check(&backend, &alice, FIVE_A_MINUTE).await.unwrap() {
            Decision::Allowed {
                remaining: r,
                reset_after,
            } => {
                assert_eq!(r, remaining, "Limitador's remaining count");
                assert!(reset_after > Duration::ZERO && reset_after <= Duration::from_secs(60));
            }
            other => panic!("call {} of 5: {other:?}", 5 - remaining),
        }
    }
    denied_within_a_minute(check(&backend, &alice, FIVE_A_MINUTE).await.unwrap());
    assert_eq!((backend.round_trips(), rls.calls()), (6, 6));

    // Refused again from the local cache: no round trip, the server sees nothing.
    for _ in 0..10 {
        denied_within_a_minute(check(&backend, &alice, FIVE_A_MINUTE).await.unwrap());
    }
    assert_eq!((backend.round_trips(), rls.calls()), (6, 6));

    // A second caller has its own counter.
    let bob = RateKey::per_identity(RPC, "bob");
    for _ in 0..5 {
        assert!(matches!(
            check(&backend, &bob, FIVE_A_MINUTE).await.unwrap(),
            Decision::Allowed { .. }
        ));
    }
    denied_within_a_minute(check(&backend, &bob, FIVE_A_MINUTE).await.unwrap());
    assert_eq!((backend.round_trips(), rls.calls()), (12, 12));
    assert_eq!(backend.errors(), 0);
    rls.stop().await;
}

/// Limitador's own server sends no descriptor status: the counts come from its
/// `X-RateLimit-Remaining` and `X-RateLimit-Reset` headers.
#[tokio::test]
async fn a_service_without_statuses_is_read_through_its_headers() {
    let rls = Rls::start([per_identity(DOMAIN, RPC, 5, 60)], Mode::HeadersOnly).await;
    let backend = EnvoyRls::new(rls.uri(), patient()).unwrap();
    let judy = RateKey::per_identity(RPC, "judy");
    for remaining in (0..5).rev() {
        match check(&backend, &judy, FIVE_A_MINUTE).await.unwrap() {
            Decision::Allowed {
                remaining: r,
                reset_after,
            } => {
                assert_eq!(r, remaining, "X-RateLimit-Remaining");
                assert!(reset_after <= Duration::from_secs(60), "X-RateLimit-Reset");
            }
            other => panic!("call {} of 5: {other:?}", 5 - remaining),
        }
    }
    let retry_after = denied_within_a_minute(check(&backend, &judy, FIVE_A_MINUTE).await.unwrap());
    assert_eq!(
        retry_after.subsec_nanos(),
        0,
        "whole seconds, from the header"
    );
    denied_within_a_minute(check(&backend, &judy, FIVE_A_MINUTE).await.unwrap());
    assert_eq!(
        (backend.round_trips(), rls.calls(), backend.errors()),
        (6, 6, 0)
    );
    rls.stop().await;
}

#[tokio::test]
async fn three_replicas_share_the_service_counter() {
    let rls = Rls::start([per_identity(DOMAIN, RPC, 5, 60)], Mode::Limitador).await;
    let replicas: Vec<EnvoyRls> = (0..3)
        .map(|_| EnvoyRls::new(rls.uri(), patient()).unwrap())
        .collect();
    let carol = RateKey::per_identity(RPC, "carol");
    let mut admitted = 0;
    for i in 0..30 {
        if check(&replicas[i % 3], &carol, FIVE_A_MINUTE)
            .await
            .unwrap()
            .admits()
        {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 5, "5 a minute across all replicas, not 15");
    // Each replica asked until its first refusal, then refused locally.
    let trips: u64 = replicas.iter().map(EnvoyRls::round_trips).sum();
    assert_eq!(trips, 5 + 3);
    assert_eq!(rls.calls(), 8);
    rls.stop().await;
}

#[tokio::test]
async fn the_request_carries_domain_entries_hits_and_override() {
    let rls = Rls::start(
        [
            per_identity(DOMAIN, RPC, 5, 60),
            per_rpc(DOMAIN, LIST, 2, 60),
        ],
        Mode::Limitador,
    )
    .await;
    let config = patient()
        .entry("cluster", "eu-west-1")
        .entry("tier", "gold");
    let backend = EnvoyRls::new(rls.uri(), config).unwrap();

    check(
        &backend,
        &RateKey::per_identity(RPC, "alice"),
        FIVE_A_MINUTE,
    )
    .await
    .unwrap();
    // Per RPC, with a period Envoy has no unit for: no identity entry, no override.
    let thirty_seconds = RateLimit::new(2, Duration::from_secs(30));
    let list = RateKey::per_rpc(LIST);
    check(&backend, &list, thirty_seconds).await.unwrap();

    let requests = rls.requests();
    assert_eq!(requests.len(), 2);
    let entries = |i: usize| -> Vec<(String, String)> {
        requests[i].descriptors[0]
            .entries
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect()
    };
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(
        entries(0),
        [
            pair("rpc", RPC),
            pair("identity", "alice"),
            pair("cluster", "eu-west-1"),
            pair("tier", "gold"),
        ]
    );
    assert_eq!(
        entries(1),
        [
            pair("rpc", LIST),
            pair("cluster", "eu-west-1"),
            pair("tier", "gold")
        ]
    );
    for request in &requests {
        assert_eq!(request.domain, DOMAIN);
        assert_eq!(request.hits_addend, 1);
        assert_eq!(request.descriptors.len(), 1);
        assert_eq!(request.descriptors[0].hits_addend, None);
    }
    let limit = requests[0].descriptors[0]
        .limit
        .expect("5 a minute is expressible");
    assert_eq!((limit.requests_per_unit, limit.unit), (5, 2 /* MINUTE */));
    assert_eq!(requests[1].descriptors[0].limit, None);

    // The per-RPC limit counts all callers together: 2, then refused.
    assert!(
        check(&backend, &list, thirty_seconds)
            .await
            .unwrap()
            .admits()
    );
    denied_within_a_minute(check(&backend, &list, thirty_seconds).await.unwrap());

    // With the override off, none is sent.
    let plain = EnvoyRls::new(rls.uri(), patient().limit_override(false)).unwrap();
    check(&plain, &RateKey::per_identity(RPC, "bob"), FIVE_A_MINUTE)
        .await
        .unwrap();
    let last = rls.requests().pop().unwrap();
    assert_eq!(last.descriptors[0].limit, None);
    assert_eq!(
        last.descriptors[0]
            .entries
            .iter()
            .map(|e| e.key.as_str())
            .collect::<Vec<_>>(),
        ["rpc", "identity"]
    );
    rls.stop().await;
}

#[tokio::test]
async fn a_stopped_service_fails_open_and_counts() {
    let rls = Rls::start([per_identity(DOMAIN, RPC, 5, 60)], Mode::Limitador).await;
    let addr = rls.addr();
    let backend = EnvoyRls::new(rls.uri(), impatient(FailurePolicy::FailOpen)).unwrap();
    let dave = RateKey::per_identity(RPC, "dave");
    // The first check connects; a loaded machine may need more than the short budget.
    let first = check(&backend, &dave, FIVE_A_MINUTE).await.unwrap();
    let errors_before = u64::from(first == Decision::Unchecked);
    rls.stop().await;

    for _ in 0..4 {
        assert_eq!(
            check(&backend, &dave, FIVE_A_MINUTE).await.unwrap(),
            Decision::Unchecked
        );
    }
    assert_eq!(backend.errors(), errors_before + 4);
    assert_eq!(backend.round_trips(), 5);

    // Back on the same port with fresh counters: decided by the service again, without
    // rebuilding the backend.
    let rls = Rls::restart_on(addr, [per_identity(DOMAIN, RPC, 5, 60)]).await;
    let mut tries = 0;
    let decision = loop {
        tries += 1;
        assert!(tries <= 200, "the service is used again after its restart");
        match check(&backend, &dave, FIVE_A_MINUTE).await.unwrap() {
            Decision::Unchecked => tokio::time::sleep(Duration::from_millis(20)).await,
            decision => break decision,
        }
    };
    // Fresh counters: what the service counted is what it reports left (a check cut at
    // the budget while the service came up may have been counted too).
    match decision {
        Decision::Allowed { remaining, .. } => {
            assert_eq!(u64::from(remaining), 5 - rls.calls());
        }
        other => panic!("expected Allowed after the restart, got {other:?}"),
    }
    rls.stop().await;
}

#[tokio::test]
async fn a_stopped_service_fails_closed() {
    // Nothing listens: refused at once, so a patient budget changes nothing but flakiness.
    let config = patient().failure_policy(FailurePolicy::FailClosed);
    let backend = EnvoyRls::new(closed_port(), config).unwrap();
    let erin = RateKey::per_identity(RPC, "erin");
    for _ in 0..3 {
        match check(&backend, &erin, FIVE_A_MINUTE).await {
            Err(BackendError::Failed(why)) => assert!(why.contains("ShouldRateLimit"), "{why}"),
            other => panic!("expected Err(Failed), got {other:?}"),
        }
    }
    assert_eq!((backend.errors(), backend.round_trips()), (3, 3));
}

#[tokio::test]
async fn a_stopped_service_falls_back_to_the_local_rate() {
    let config = patient().failure_policy(FailurePolicy::FallbackLocal);
    let backend = EnvoyRls::new(closed_port(), config).unwrap();
    let frank = RateKey::per_identity(RPC, "frank");
    for _ in 0..5 {
        assert_eq!(
            check(&backend, &frank, FIVE_A_MINUTE).await.unwrap(),
            Decision::Unchecked
        );
    }
    match check(&backend, &frank, FIVE_A_MINUTE).await.unwrap() {
        Decision::UncheckedDenied { retry_after } => {
            // GCRA: one call every 12 s after the burst of 5.
            assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(12));
        }
        other => panic!("expected the local bucket to refuse the 6th call: {other:?}"),
    }
    // Another caller has its own local bucket.
    assert_eq!(
        check(
            &backend,
            &RateKey::per_identity(RPC, "grace"),
            FIVE_A_MINUTE
        )
        .await
        .unwrap(),
        Decision::Unchecked
    );
    assert_eq!((backend.errors(), backend.round_trips()), (7, 7));
}

#[tokio::test]
async fn a_slow_service_is_cut_at_the_budget() {
    let rls = Rls::start(
        [per_identity(DOMAIN, RPC, 5, 60)],
        Mode::Slow(Duration::from_secs(60)),
    )
    .await;
    let closed = EnvoyRls::new(rls.uri(), impatient(FailurePolicy::FailClosed)).unwrap();
    let key = RateKey::per_identity(RPC, "heidi");
    assert_eq!(
        check(&closed, &key, FIVE_A_MINUTE).await,
        Err(BackendError::Timeout(Duration::from_millis(200)))
    );
    let open = EnvoyRls::new(rls.uri(), impatient(FailurePolicy::FailOpen)).unwrap();
    assert_eq!(
        check(&open, &key, FIVE_A_MINUTE).await,
        Ok(Decision::Unchecked)
    );
    assert_eq!((closed.errors(), open.errors()), (1, 1));
}

#[tokio::test]
async fn an_unknown_answer_goes_to_the_failure_policy() {
    let rls = Rls::start([], Mode::Unknown).await;
    let closed = EnvoyRls::new(
        rls.uri(),
        patient().failure_policy(FailurePolicy::FailClosed),
    )
    .unwrap();
    let key = RateKey::per_rpc(RPC);
    match check(&closed, &key, FIVE_A_MINUTE).await {
        Err(BackendError::Failed(why)) => assert!(why.contains("overall_code 0"), "{why}"),
        other => panic!("expected Err(Failed), got {other:?}"),
    }
    let open = EnvoyRls::new(rls.uri(), patient()).unwrap();
    assert_eq!(
        check(&open, &key, FIVE_A_MINUTE).await,
        Ok(Decision::Unchecked)
    );
    assert_eq!((closed.errors(), open.errors(), rls.calls()), (1, 1, 2));
    rls.stop().await;
}

#[tokio::test]
async fn no_matching_limit_is_allowed_without_a_count() {
    let rls = Rls::start([per_identity(DOMAIN, RPC, 5, 60)], Mode::Limitador).await;
    let backend = EnvoyRls::new(rls.uri(), patient()).unwrap();
    let other = RateKey::per_identity("users.v1.UserService/DeleteUser", "ivan");
    for _ in 0..10 {
        assert_eq!(
            check(&backend, &other, FIVE_A_MINUTE).await.unwrap(),
            Decision::Allowed {
                remaining: u32::MAX,
                reset_after: Duration::ZERO
            }
        );
    }
    assert_eq!(backend.errors(), 0);
    rls.stop().await;
}

/// The generated files, by name, under `dir`.
fn generated(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// The runtime's checked-in RLS client is what `tonic-intercept-build` emits from the
/// vendored protos. After an intended change:
/// `UPDATE_SNAPSHOTS=1 cargo test -p tonic-intercept-tests --test envoy_rls`.
#[test]
fn checked_in_client_is_what_the_generator_emits() {
    let runtime = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime");
    let checked_in = runtime.join("src/policy/backend/envoy_rls/generated");
    let out: PathBuf = std::env::temp_dir().join(format!("ti-envoy-rls-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    tonic_intercept_build::configure()
        .build_server(false)
        .intercept_types(false)
        .emit_rerun_if_changed(false)
        .out_dir(&out)
        .file_descriptor_set_path(out.join("rls.bin"))
        .compile_protos(
            &[runtime.join("proto/envoy/service/ratelimit/v3/rls.proto")],
            &[runtime.join("proto")],
        )
        .unwrap();
    let fresh = generated(&out);
    std::fs::remove_dir_all(&out).unwrap();
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        for (name, _) in generated(&checked_in) {
            std::fs::remove_file(checked_in.join(name)).unwrap();
        }
        for (name, text) in &fresh {
            std::fs::write(checked_in.join(name), text).unwrap();
        }
    }
    let names = |files: &[(String, String)]| files.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    let current = generated(&checked_in);
    assert_eq!(names(&current), names(&fresh), "the generated files");
    for ((name, now), (_, expected)) in current.iter().zip(&fresh) {
        assert!(
            now == expected,
            "{name} differs from what the generator emits; review the diff and rerun with UPDATE_SNAPSHOTS=1"
        );
    }
    assert_eq!(names(&fresh).len(), 4);
    // `intercept_types(false)`: plain prost + tonic, nothing that names the runtime.
    for (name, text) in &fresh {
        assert!(
            !text.contains("tonic_intercept"),
            "{name} names tonic_intercept"
        );
    }
}

/// Wall-clock cost of one check over loopback (debug build unless run with `--release`),
/// printed, not asserted: `cargo test -p tonic-intercept-tests --test envoy_rls -- --ignored
/// --nocapture latency`.
#[tokio::test]
#[ignore = "a measurement, not a test"]
async fn latency() {
    let rls = Rls::start([per_identity(DOMAIN, RPC, 1_000_000, 60)], Mode::Limitador).await;
    let backend = EnvoyRls::new(rls.uri(), patient()).unwrap();
    let key = RateKey::per_identity(RPC, "kim");
    check(&backend, &key, FIVE_A_MINUTE).await.unwrap();
    let mut samples = Vec::with_capacity(5_000);
    for _ in 0..5_000 {
        let start = std::time::Instant::now();
        assert!(check(&backend, &key, FIVE_A_MINUTE).await.unwrap().admits());
        samples.push(start.elapsed());
    }
    samples.sort();
    let denied = RateKey::per_identity(RPC, "lee");
    let tight = Rls::start([per_identity(DOMAIN, RPC, 1, 60)], Mode::Limitador).await;
    let cached = EnvoyRls::new(tight.uri(), patient()).unwrap();
    check(&cached, &denied, FIVE_A_MINUTE).await.unwrap();
    check(&cached, &denied, FIVE_A_MINUTE).await.unwrap();
    let start = std::time::Instant::now();
    for _ in 0..5_000 {
        assert!(
            !check(&cached, &denied, FIVE_A_MINUTE)
                .await
                .unwrap()
                .admits()
        );
    }
    let per_cached = start.elapsed() / 5_000;
    println!(
        "EnvoyRls over loopback, 5000 admitted checks: p50 {:?}, p99 {:?}, max {:?}; \
         a denial from the local cache: {per_cached:?} ({} round trips for 5002 checks)",
        samples[2_500],
        samples[4_950],
        samples[4_999],
        cached.round_trips()
    );
    rls.stop().await;
    tight.stop().await;
}

// ---- through `#[intercept(limit(.., shared = ..))]` and a real server ----

mod through_intercept {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio_stream::wrappers::ReceiverStream;
    use tonic::transport::Channel;
    use tonic::{Code, Request, Response, Status, Streaming};
    use tonic_intercept::StaticTokens;
    use tonic_intercept::backend::{EnvoyRls, FailurePolicy};
    use tonic_intercept::metrics::{ServerMetrics, ServiceMetrics, render_metrics};
    use tonic_intercept::prometheus_client::registry::Registry;
    use tonic_intercept::server::Server;
    use tonic_intercept_tests::pb::echo_service_client::EchoServiceClient;
    use tonic_intercept_tests::pb::echo_service_server::EchoServiceServer;
    use tonic_intercept_tests::pb::{EchoReply, EchoRequest, StreamRequest, Summary};

    use super::common_rls::{Mode, Rls, per_identity};
    use super::{DOMAIN, impatient, patient};

    const UNARY: &str = "echo.v1.EchoService/Unary";
    const SERIES: &str =
        r#"grpc_type="unary",grpc_service="echo.v1.EchoService",grpc_method="Unary""#;

    #[derive(Clone)]
    struct Echo {
        tokens: StaticTokens<String>,
        rates: Arc<EnvoyRls>,
        metrics: ServiceMetrics<tonic_intercept_tests::pb::echo_service_intercept::Service>,
    }

    type Replies = ReceiverStream<Result<EchoReply, Status>>;

    #[tonic_intercept::intercept(
        auth(self.tokens),
        limit(Unary, calls_per_minute_per_identity = 3, shared = self.rates),
        metrics(self.metrics),
    )]
    #[tonic::async_trait]
    impl tonic_intercept_tests::pb::echo_service_server::EchoService for Echo {
        async fn unary(
            &self,
            request: Request<EchoRequest>,
        ) -> Result<Response<EchoReply>, Status> {
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

    async fn serve(rates: EnvoyRls) -> (EchoServiceClient<Channel>, Arc<EnvoyRls>, Registry) {
        let mut registry = Registry::default();
        let metrics = ServerMetrics::register(&mut registry);
        let rates = Arc::new(rates);
        let echo = Echo {
            tokens: StaticTokens::new([
                ("alice-token", "alice".into()),
                ("bob-token", "bob".into()),
            ]),
            rates: rates.clone(),
            metrics: metrics.service(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
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
        (EchoServiceClient::new(channel), rates, registry)
    }

    async fn call(client: &mut EchoServiceClient<Channel>, token: &str) -> Result<(), Status> {
        let mut request = Request::new(EchoRequest { text: "hi".into() });
        let value = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
        request.set_timeout(Duration::from_secs(10));
        client.unary(request).await.map(drop)
    }

    fn metric(registry: &Registry, series: &str) -> u64 {
        let body = render_metrics(registry);
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{body}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn limitador_keeps_each_callers_rate_and_refusals_carry_its_wait() {
        let rls = Rls::start([per_identity(DOMAIN, UNARY, 3, 60)], Mode::Limitador).await;
        let (mut client, rates, registry) =
            serve(EnvoyRls::new(rls.uri(), patient()).unwrap()).await;
        for _ in 0..3 {
            call(&mut client, "alice-token").await.unwrap();
        }
        let refused = call(&mut client, "alice-token").await.unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        let pushback: u64 = refused
            .metadata()
            .get("grpc-retry-pushback-ms")
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(pushback > 0 && pushback <= 60_000, "{pushback}");
        // Refused again from the cache: no request reaches Limitador.
        assert_eq!(
            call(&mut client, "alice-token").await.unwrap_err().code(),
            Code::ResourceExhausted
        );
        assert_eq!((rls.calls(), rates.round_trips()), (4, 4));
        // bob has his own counter.
        call(&mut client, "bob-token").await.unwrap();
        assert_eq!(rls.calls(), 5);
        assert_eq!(
            metric(
                &registry,
                &format!(r#"grpc_server_rejected_total{{{SERIES},policy="call_rate"}}"#)
            ),
            2
        );
        // Each request named the RPC and the caller, in that order.
        let request = &rls.requests()[0];
        assert_eq!(request.domain, DOMAIN);
        let entries: Vec<(&str, &str)> = request.descriptors[0]
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(entries, [("rpc", UNARY), ("identity", "alice")]);
        rls.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_rate_limit_service_fails_open_and_every_call_is_counted() {
        let rls = Rls::start([per_identity(DOMAIN, UNARY, 3, 60)], Mode::Limitador).await;
        let (mut client, rates, registry) =
            serve(EnvoyRls::new(rls.uri(), impatient(FailurePolicy::FailOpen)).unwrap()).await;
        call(&mut client, "alice-token").await.unwrap();
        rls.stop().await;
        for _ in 0..4 {
            call(&mut client, "alice-token").await.unwrap();
        }
        assert_eq!(rates.errors(), 4);
        assert_eq!(
            metric(
                &registry,
                &format!(
                    r#"grpc_server_limit_backend_errors_total{{{SERIES},backend="envoy_rls"}}"#
                )
            ),
            4
        );
    }
}
