//! `tonic_intercept::testing`: the hardened server served in memory (its edge, policies,
//! metrics, many connections, the graceful shutdown), tonic's own server in memory, and
//! `CallBuilder` driving a verifier, typed hooks and `Validate` without a server, with
//! exactly what the server hands them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_stream::StreamExt;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_intercept::auth::Principal;
use tonic_intercept::metrics::{ServiceMetrics, render_metrics};
use tonic_intercept::prometheus_client::registry::Registry;
use tonic_intercept::server::{HealthServices, Server};
use tonic_intercept::testing::{CallBuilder, InMemory, InMemoryConnectInfo};
use tonic_intercept::tonic_health::pb::HealthCheckRequest;
use tonic_intercept::tonic_health::pb::health_check_response::ServingStatus;
use tonic_intercept::tonic_health::pb::health_client::HealthClient;
use tonic_intercept::{
    Authenticate, Call, CallOutcome, Hook, ServerMetrics, StaticTokens, intercept,
};
use tonic_intercept_tests::Recorder;
use tonic_intercept_tests::pb::echo_service_client::EchoServiceClient;
use tonic_intercept_tests::pb::echo_service_intercept as rpc;
use tonic_intercept_tests::pb::echo_service_server::{EchoService, EchoServiceServer};
use tonic_intercept_tests::pb::{EchoReply, EchoRequest, StreamRequest, Summary};

/// What the verifier was handed for one call: the client's address, the deadline as an
/// offset from the call's start, and the `x-tenant` metadata.
type Seen = (Option<SocketAddr>, Option<Duration>, Option<String>);

/// `StaticTokens`, recording what each call hands it.
#[derive(Clone)]
struct Verifier {
    tokens: StaticTokens<Principal>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Verifier {
    fn new() -> Self {
        Self {
            tokens: StaticTokens::new([
                ("w", Principal::new("ada").with_roles(["writer"])),
                ("r", Principal::new("bob").with_roles(["reader"])),
            ]),
            seen: Arc::default(),
        }
    }
}

fn seen(call: &Call, metadata: &MetadataMap) -> Seen {
    (
        call.peer(),
        call.deadline().map(|d| d - call.started()),
        metadata
            .get("x-tenant")
            .map(|v| v.to_str().unwrap().to_owned()),
    )
}

impl Authenticate for Verifier {
    type Identity = Principal;

    async fn authenticate(&self, call: &Call, metadata: &MetadataMap) -> Result<Principal, Status> {
        self.seen.lock().unwrap().push(seen(call, metadata));
        self.tokens.authenticate(call, metadata).await
    }
}

/// Holds a `wait` call until the test releases it.
#[derive(Default)]
struct Gate {
    entered: Notify,
    release: Notify,
}

#[derive(Clone)]
struct Echo {
    verifier: Verifier,
    gate: Arc<Gate>,
    metrics: ServiceMetrics<rpc::Service>,
}

impl Echo {
    /// Counted in metrics of its own.
    fn new() -> Self {
        Self::counted_in(&ServerMetrics::register(&mut Registry::default()))
    }

    /// Counted in `metrics`, which the server's edge counts in too.
    fn counted_in(metrics: &ServerMetrics) -> Self {
        Self {
            verifier: Verifier::new(),
            gate: Arc::default(),
            metrics: metrics.service(),
        }
    }
}

type Empty = tokio_stream::Empty<Result<EchoReply, Status>>;

/// How the call arrived: the in-memory connection, else the client address.
fn via<T>(request: &Request<T>) -> String {
    match (
        request.extensions().get::<InMemoryConnectInfo>(),
        request.remote_addr(),
    ) {
        (Some(info), _) => format!("memory#{}", info.connection()),
        (None, Some(addr)) => addr.to_string(),
        (None, None) => "nowhere".into(),
    }
}

#[intercept(
    public(ServerStream, Bidi),
    auth(self.verifier),
    metrics(self.metrics),
    roles("writer", Unary),
    validate(Unary),
    limit(ClientStream, max_messages_in = 2),
    limit(Unary, timeout_ms = 2_000),
)]
#[tonic::async_trait]
impl tonic_intercept_tests::pb::echo_service_server::EchoService for Echo {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let who = request
            .extensions()
            .get::<Principal>()
            .unwrap()
            .name
            .clone();
        let via = via(&request);
        let text = request.into_inner().text;
        match text.as_str() {
            "wait" => {
                self.gate.entered.notify_one();
                self.gate.release.notified().await;
            }
            "slow" => tokio::time::sleep(Duration::from_secs(30)).await,
            _ => {}
        }
        Ok(Response::new(EchoReply {
            text: format!("{text} from {who} via {via}"),
            seq: 0,
        }))
    }

    type ServerStreamStream = Empty;

    async fn server_stream(
        &self,
        _: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        Ok(Response::new(tokio_stream::empty()))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Summary>, Status> {
        let mut stream = request.into_inner();
        let mut texts = Vec::new();
        while let Some(message) = stream.next().await {
            texts.push(message?.text);
        }
        Ok(Response::new(Summary {
            received: texts.len() as u64,
            texts,
        }))
    }

    type BidiStream = Empty;

    async fn bidi(
        &self,
        _: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        Ok(Response::new(tokio_stream::empty()))
    }
}

fn echo(text: &str) -> EchoRequest {
    EchoRequest { text: text.into() }
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn metric(text: &str, name: &str, labels: &str) -> String {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no series `{prefix}` in\n{text}"))
        .to_string()
}

const UNARY: &str = r#"grpc_type="unary",grpc_service="echo.v1.EchoService",grpc_method="Unary""#;
const CLIENT_STREAM: &str =
    r#"grpc_type="client_stream",grpc_service="echo.v1.EchoService",grpc_method="ClientStream""#;
const UNKNOWN: &str =
    r#"grpc_type="unknown",grpc_service="echo.v1.EchoService",grpc_method="<unknown>""#;

/// Every refusal of the policies and of the edge, with the server's exact statuses and
/// metrics, over an in-memory channel.
#[tokio::test]
async fn the_hardened_server_in_memory_applies_its_edge_policies_and_metrics() {
    let mut registry = Registry::default();
    let metrics = ServerMetrics::register(&mut registry);
    let server = InMemory::serve(
        Server::builder()
            .metrics(&metrics)
            .add_service(EchoServiceServer::new(Echo::counted_in(&metrics))),
    )
    .await
    .unwrap();
    let channel = server.channel();
    let mut client = EchoServiceClient::new(channel.clone());

    let status = client.unary(echo("hi")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        status.message(),
        "missing `authorization: Bearer <token>` metadata"
    );
    let status = client.unary(with_token(echo("hi"), "r")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "Unary requires the role `writer`");
    let status = client.unary(with_token(echo(""), "w")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Unary: 1 invalid field: text: must not be empty"
    );
    let reply = client.unary(with_token(echo("hi"), "w")).await.unwrap();
    assert_eq!(reply.into_inner().text, "hi from ada via memory#1");

    // The RPC's own timeout, on the edge's clock. (Not a client `grpc-timeout`: tonic's
    // client runs a timer of its own for it, and either side may answer first.)
    let status = client
        .unary(with_token(echo("slow"), "w"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(status.message(), "Unary: deadline exceeded");

    // A stream limit.
    let three = tokio_stream::iter([echo("a"), echo("b"), echo("c")]);
    let status = client
        .client_stream(with_token(three, "w"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);

    // The edge refuses a method the service does not have, before any handler.
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let status = grpc
        .unary(
            Request::new(echo("hi")),
            PathAndQuery::from_static("/echo.v1.EchoService/Nope"),
            tonic_prost::ProstCodec::<EchoRequest, EchoReply>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);

    let text = render_metrics(&registry);
    assert_eq!(metric(&text, "grpc_server_started_total", UNARY), "5");
    for (code, n) in [
        ("OK", "1"),
        ("Unauthenticated", "1"),
        ("PermissionDenied", "1"),
        ("InvalidArgument", "1"),
        ("DeadlineExceeded", "1"),
    ] {
        let labels = format!(r#"{UNARY},grpc_code="{code}""#);
        assert_eq!(
            metric(&text, "grpc_server_handled_total", &labels),
            n,
            "{code}"
        );
    }
    for (policy, n) in [
        ("auth", "1"),
        ("roles", "1"),
        ("validation", "1"),
        ("deadline", "1"),
    ] {
        let labels = format!(r#"{UNARY},policy="{policy}""#);
        assert_eq!(
            metric(&text, "grpc_server_rejected_total", &labels),
            n,
            "{policy}"
        );
    }
    assert_eq!(
        metric(&text, "grpc_server_started_total", CLIENT_STREAM),
        "1"
    );
    let labels = format!(r#"{CLIENT_STREAM},grpc_code="ResourceExhausted""#);
    assert_eq!(metric(&text, "grpc_server_handled_total", &labels), "1");
    let labels = format!(r#"{CLIENT_STREAM},policy="limit""#);
    assert_eq!(metric(&text, "grpc_server_rejected_total", &labels), "1");
    assert_eq!(metric(&text, "grpc_server_started_total", UNKNOWN), "1");
    let labels = format!(r#"{UNKNOWN},policy="unknown_method""#);
    assert_eq!(metric(&text, "grpc_server_rejected_total", &labels), "1");

    server.shutdown().await.unwrap();
}

/// Each channel is its own connection: 16 channels, 4 calls at once on each, 64 calls
/// served, every channel's calls on one connection, 16 connections numbered 1 to 16.
#[tokio::test]
async fn many_channels_are_many_concurrent_connections() {
    let mut registry = Registry::default();
    let metrics = ServerMetrics::register(&mut registry);
    let server = InMemory::serve(
        Server::builder()
            .metrics(&metrics)
            .add_service(EchoServiceServer::new(Echo::counted_in(&metrics))),
    )
    .await
    .unwrap();
    let mut calls = tokio::task::JoinSet::new();
    for channel in 0..16 {
        let client = EchoServiceClient::new(server.channel());
        for _ in 0..4 {
            let mut client = client.clone();
            calls.spawn(async move {
                let reply = client.unary(with_token(echo("hi"), "w")).await.unwrap();
                (channel, reply.into_inner().text)
            });
        }
    }
    let mut by_channel = std::collections::BTreeMap::<u32, Vec<String>>::new();
    while let Some(done) = calls.join_next().await {
        let (channel, text) = done.unwrap();
        by_channel.entry(channel).or_default().push(text);
    }
    let mut connections = Vec::new();
    for texts in by_channel.values() {
        assert_eq!(texts.len(), 4);
        assert!(texts.iter().all(|t| t == &texts[0]), "{texts:?}");
        let number = texts[0].strip_prefix("hi from ada via memory#").unwrap();
        connections.push(number.parse::<u64>().unwrap());
    }
    connections.sort_unstable();
    assert_eq!(connections, (1..=16).collect::<Vec<_>>());
    let text = render_metrics(&registry);
    assert_eq!(metric(&text, "grpc_server_started_total", UNARY), "64");
    let labels = format!(r#"{UNARY},grpc_code="OK""#);
    assert_eq!(metric(&text, "grpc_server_handled_total", &labels), "64");
    server.shutdown().await.unwrap();
}

/// `shutdown` drains as over TCP: health turns `NOT_SERVING`, no new connection is
/// accepted, a call in flight finishes, and `shutdown` returns once it has.
#[tokio::test]
async fn shutdown_is_graceful_and_awaited() {
    let echo_service = Echo::new();
    let gate = echo_service.gate.clone();
    let server = InMemory::serve(
        Server::builder()
            .with_health(HealthServices::new())
            .add_service(EchoServiceServer::new(echo_service)),
    )
    .await
    .unwrap();
    let connector = server.connector();
    let mut client = EchoServiceClient::new(server.connect().await.unwrap());
    let in_flight = tokio::spawn(async move { client.unary(with_token(echo("wait"), "w")).await });
    gate.entered.notified().await;

    let mut watch = HealthClient::new(server.channel())
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap().status;
    assert_eq!(first, ServingStatus::Serving as i32);

    let stopped = tokio::spawn(server.shutdown());
    let next = watch.next().await.unwrap().unwrap().status;
    assert_eq!(next, ServingStatus::NotServing as i32);
    // The watch is a call in flight too: end it so that the drain need not wait for it.
    drop(watch);

    // No new connection: neither opened now nor at a lazy channel's first call.
    assert!(
        InMemory::endpoint()
            .connect_with_connector(connector.clone())
            .await
            .is_err()
    );
    let lazy = InMemory::endpoint().connect_with_connector_lazy(connector);
    let status = EchoServiceClient::new(lazy)
        .unary(with_token(echo("hi"), "w"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);

    assert!(!stopped.is_finished());
    gate.release.notify_one();
    let reply = in_flight.await.unwrap().unwrap();
    assert_eq!(reply.into_inner().text, "wait from ada via memory#1");
    tokio::time::timeout(Duration::from_secs(20), stopped)
        .await
        .expect("shutdown returns once the call finished")
        .unwrap()
        .unwrap();
}

/// tonic's own server in memory: the same policies (the expansion's), the same connect
/// info.
#[tokio::test]
async fn a_tonic_router_in_memory() {
    let router =
        tonic::transport::Server::builder().add_service(EchoServiceServer::new(Echo::new()));
    let server = InMemory::serve_router(router);
    let mut first = EchoServiceClient::new(server.channel());
    let mut second = EchoServiceClient::new(server.channel());
    let reply = first.unary(with_token(echo("one"), "w")).await.unwrap();
    assert_eq!(reply.into_inner().text, "one from ada via memory#1");
    let reply = second.unary(with_token(echo("two"), "w")).await.unwrap();
    assert_eq!(reply.into_inner().text, "two from ada via memory#2");
    let status = first.unary(with_token(echo("x"), "r")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    server.shutdown().await.unwrap();

    // `Routes` too; a channel made before the shutdown is refused after it.
    let server = InMemory::serve_routes(tonic::service::Routes::new(EchoServiceServer::new(
        Echo::new(),
    )));
    let channel = server.channel();
    server.shutdown().await.unwrap();
    let status = EchoServiceClient::new(channel)
        .unary(with_token(echo("x"), "w"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
}

/// `CallBuilder` hands the verifier what the server hands it: the same address, the
/// same deadline (the client's `grpc-timeout` less the server's 1 ms margin), the same
/// metadata.
#[tokio::test]
async fn call_builder_builds_what_the_server_hands_the_verifier() {
    let echo_service = Echo::new();
    let seen_by_server = echo_service.verifier.seen.clone();
    let server =
        InMemory::serve(Server::builder().add_service(EchoServiceServer::new(echo_service)))
            .await
            .unwrap();
    let mut request = with_token(echo("hi"), "w");
    request.set_timeout(Duration::from_millis(500));
    request
        .metadata_mut()
        .insert("x-tenant", "acme".parse().unwrap());
    EchoServiceClient::new(server.channel())
        .unary(request)
        .await
        .unwrap();
    server.shutdown().await.unwrap();

    let verifier = Verifier::new();
    let call = CallBuilder::<rpc::Unary>::new()
        .bearer("w")
        .timeout(Duration::from_millis(500))
        .metadata("x-tenant", "acme")
        .build();
    call.authenticate(&verifier).await.unwrap();
    let expected: Seen = (None, Some(Duration::from_millis(499)), Some("acme".into()));
    assert_eq!(
        *verifier.seen.lock().unwrap(),
        *seen_by_server.lock().unwrap()
    );
    assert_eq!(*verifier.seen.lock().unwrap(), [expected]);
}

#[tokio::test]
async fn call_builder_drives_static_tokens_and_roles() {
    let tokens = StaticTokens::new([
        ("w", Principal::new("ada").with_roles(["writer"])),
        ("r", Principal::new("bob").with_roles(["reader"])),
    ]);
    let unary = || CallBuilder::<rpc::Unary>::new();

    let ada = unary()
        .bearer("w")
        .build()
        .authenticate(&tokens)
        .await
        .unwrap();
    assert_eq!(ada, Principal::new("ada").with_roles(["writer"]));
    let ada = unary()
        .bearer("w")
        .build()
        .authorize(&tokens, &["writer"])
        .await
        .unwrap();
    assert_eq!(ada.name, "ada");

    for (call, message) in [
        (unary().bearer("nope"), "invalid bearer token"),
        (unary(), "missing `authorization: Bearer <token>` metadata"),
        (
            unary().metadata("authorization", "Basic dTpw"),
            "`authorization` metadata must be `Bearer <token>`",
        ),
    ] {
        let status = call.build().authenticate(&tokens).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), message);
    }

    let status = unary()
        .bearer("r")
        .build()
        .authorize(&tokens, &["writer", "admin"])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        status.message(),
        "Unary requires the role `writer` or `admin`"
    );
}

#[tokio::test(start_paused = true)]
async fn call_builder_sets_the_peer_and_the_deadline() {
    let addr: SocketAddr = "10.1.2.3:4567".parse().unwrap();
    let call = CallBuilder::<rpc::Unary>::new()
        .remote_addr(addr)
        .timeout(Duration::from_secs(2))
        .build();
    let call = call.call();
    assert_eq!(call.peer(), Some(addr));
    assert_eq!(call.rpc().path, "/echo.v1.EchoService/Unary");
    assert_eq!(
        call.deadline(),
        Some(call.started() + Duration::from_millis(1_999))
    );

    // The RPC's own timeout caps the client's.
    let call = CallBuilder::<rpc::Unary>::new()
        .timeout(Duration::from_secs(2))
        .rpc_timeout(Duration::from_millis(300))
        .build();
    assert_eq!(
        call.call().deadline(),
        Some(call.call().started() + Duration::from_millis(300))
    );
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(call.call().remaining(), Some(Duration::from_millis(200)));

    // An auth-only RPC's call has no deadline, whatever the client sent.
    let call = CallBuilder::<rpc::Unary>::new()
        .timeout(Duration::from_secs(2))
        .auth_only()
        .build();
    assert_eq!(call.call().deadline(), None);
    assert_eq!(call.call().peer(), None);
}

/// A typed hook that needs a tenant.
#[derive(Clone)]
struct Tenant;

impl Hook<rpc::Unary> for Tenant {
    async fn on_call(&self, _: &Call, metadata: &MetadataMap) -> Result<(), Status> {
        match metadata.get("x-tenant") {
            Some(_) => Ok(()),
            None => Err(Status::permission_denied("no tenant")),
        }
    }
}

#[tokio::test]
async fn call_builder_drives_typed_hooks() {
    let call = CallBuilder::<rpc::Unary>::new().build();
    let status = call.on_call(&Tenant).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "no tenant");
    let call = CallBuilder::<rpc::Unary>::new()
        .metadata("x-tenant", "acme")
        .build();
    call.on_call(&Tenant).await.unwrap();

    let recorder = Recorder::default();
    call.on_call(&recorder).await.unwrap();
    call.on_request(&recorder, &echo("hi")).unwrap();
    let status = call.on_request(&recorder, &echo("forbidden")).unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "text must not be `forbidden`");
    let reply = EchoReply {
        text: "hi".into(),
        seq: 0,
    };
    call.on_response(&recorder, &reply).unwrap();
    let mut outcome = CallOutcome::new(Code::Ok);
    outcome.messages_in = 1;
    outcome.messages_out = 1;
    call.on_finish(&recorder, &outcome);
    assert_eq!(
        recorder.take(),
        [
            "call Unary",
            "request hi",
            "request forbidden",
            "response hi",
            "finish Unary Ok in=1 out=1"
        ]
    );
}

#[test]
fn call_builder_drives_validate() {
    let call = CallBuilder::<rpc::Unary>::new().build();
    call.validate(&echo("hi")).unwrap();
    let status = call.validate(&echo(" ")).unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "Unary: 1 invalid field: text: must not start with a space"
    );
    let status = call.validate(&echo("")).unwrap_err();
    assert_eq!(
        status.message(),
        "Unary: 1 invalid field: text: must not be empty"
    );
    let details = tonic_intercept::tonic_types::StatusExt::get_details_bad_request(&status)
        .expect("BadRequest details");
    let violations: Vec<_> = details
        .field_violations
        .iter()
        .map(|v| (v.field.as_str(), v.description.as_str()))
        .collect();
    assert_eq!(violations, [("text", "must not be empty")]);
}

/// `CallBuilder::request` calls an `#[intercept]` handler directly: its policies run
/// without a server.
#[tokio::test]
async fn call_builder_requests_run_a_handler_under_its_policies() {
    let service = Echo::new();
    let addr: SocketAddr = "10.1.2.3:4567".parse().unwrap();
    let request = CallBuilder::<rpc::Unary>::new()
        .bearer("w")
        .remote_addr(addr)
        .request(echo("hi"));
    let reply = service.unary(request).await.unwrap();
    assert_eq!(reply.into_inner().text, "hi from ada via 10.1.2.3:4567");
    let request = CallBuilder::<rpc::Unary>::new()
        .bearer("w")
        .request(echo(""));
    let status = service.unary(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = service
        .unary(CallBuilder::<rpc::Unary>::new().request(echo("hi")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

/// The accept loop's edge protections hold in memory: a connection that does not open
/// with the HTTP/2 preface is closed, and one that sends nothing is closed at the
/// handshake timeout; the server goes on serving.
#[tokio::test]
async fn in_memory_connections_get_the_handshake_checks() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tonic::codegen::Service;

    let server = InMemory::serve(
        Server::builder()
            .handshake_timeout(Duration::from_millis(200))
            .add_service(EchoServiceServer::new(Echo::new())),
    )
    .await
    .unwrap();
    let mut connector = server.connector();
    let uri = tonic::codegen::http::Uri::from_static("http://in-memory");

    let mut http1 = connector.call(uri.clone()).await.unwrap().into_inner();
    http1
        .write_all(b"GET / HTTP/1.1\r\nHost: in-memory\r\n\r\n0123456789")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), http1.read_to_end(&mut buf))
        .await
        .expect("closed");
    assert_eq!(read.unwrap(), 0, "nothing answered: {buf:?}");

    let mut silent = connector.call(uri).await.unwrap().into_inner();
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut buf))
        .await
        .expect("closed at the handshake timeout");
    assert_eq!(read.unwrap(), 0);

    let reply = EchoServiceClient::new(server.channel())
        .unary(with_token(echo("hi"), "w"))
        .await
        .unwrap();
    assert_eq!(reply.into_inner().text, "hi from ada via memory#3");
    server.shutdown().await.unwrap();
}
