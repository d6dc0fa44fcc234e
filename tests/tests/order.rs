//! The documented order of policies, observed through the hardened server in memory
//! (`tonic_intercept::testing::InMemory`): each refusal comes from the first policy in the
//! order that refuses, and the hooks and metrics see exactly that.
//!
//! recovery → tracing → metrics → deadline → auth → roles → admission (call rate) →
//! hooks' `on_call` → per message: limits → validation → hooks → handler.

use std::time::Duration;

use tonic::{Code, Request, Response, Status, Streaming};
use tonic_intercept::prometheus_client::registry::Registry;
use tonic_intercept::server::Server;
use tonic_intercept::testing::InMemory;
use tonic_intercept::{
    ServerMetrics, StaticTokens, auth::Principal, intercept, metrics::ServiceMetrics,
};
use tonic_intercept_tests::pb::echo_service_client::EchoServiceClient;
use tonic_intercept_tests::pb::echo_service_intercept as rpc;
use tonic_intercept_tests::pb::echo_service_server::EchoServiceServer;
use tonic_intercept_tests::pb::{EchoReply, EchoRequest, StreamRequest, Summary};
use tonic_intercept_tests::{Recorder, with_token};

type Replies = tokio_stream::wrappers::ReceiverStream<Result<EchoReply, Status>>;

struct Ordered {
    tokens: StaticTokens<Principal>,
    recorder: Recorder,
    metrics: ServiceMetrics<rpc::Service>,
}

// Written in an order unlike the one they run in, on purpose.
#[intercept(
    hook(self.recorder: Recorder, Unary),
    validate(Unary),
    limit(Unary, calls_per_second = 1),
    roles("writer", Unary),
    auth(self.tokens),
    metrics(self.metrics),
    recover,
    trace,
)]
#[tonic::async_trait]
impl tonic_intercept_tests::pb::echo_service_server::EchoService for Ordered {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let who = request
            .extensions()
            .get::<Principal>()
            .unwrap()
            .name
            .clone();
        let text = request.into_inner().text;
        Ok(Response::new(EchoReply {
            text: format!("{text} from {who}"),
            seq: 0,
        }))
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

fn echo(text: &str) -> EchoRequest {
    EchoRequest { text: text.into() }
}

fn metric(text: &str, name: &str, labels: &str) -> String {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no series `{prefix}` in\n{text}"))
        .to_string()
}

#[tokio::test]
async fn each_refusal_comes_from_the_first_policy_in_the_documented_order() {
    let mut registry = Registry::default();
    let metrics = ServerMetrics::register(&mut registry).service::<rpc::Service>();
    let recorder = Recorder::default();
    let service = Ordered {
        tokens: StaticTokens::new([
            ("w", Principal::new("ada").with_roles(["writer"])),
            ("r", Principal::new("bob").with_roles(["reader"])),
        ]),
        recorder: recorder.clone(),
        metrics,
    };
    let server = InMemory::serve(Server::builder().add_service(EchoServiceServer::new(service)))
        .await
        .unwrap();
    let mut client = EchoServiceClient::new(server.channel());

    // No token and an invalid message: auth comes first.
    let status = client.unary(echo("")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(recorder.take(), ["finish Unary Unauthenticated in=0 out=0"]);

    // A reader with an invalid message: roles come before validation.
    let status = client.unary(with_token(echo(""), "r")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "Unary requires the role `writer`");
    assert_eq!(
        recorder.take(),
        ["finish Unary PermissionDenied in=0 out=0"]
    );

    // A writer with an invalid message: admitted by the call rate (which takes this
    // second's call), then the hook's `on_call`, then validation refuses before the
    // hook's `on_request` sees the message.
    let status = client.unary(with_token(echo(""), "w")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = tonic_intercept::tonic_types::StatusExt::get_details_bad_request(&status)
        .expect("BadRequest details");
    let violations: Vec<_> = details
        .field_violations
        .iter()
        .map(|v| (v.field.as_str(), v.description.as_str()))
        .collect();
    assert_eq!(violations, [("text", "must not be empty")]);
    assert_eq!(
        recorder.take(),
        ["call Unary", "finish Unary InvalidArgument in=0 out=0"]
    );

    // At once again, valid this time: the call rate refuses before any hook runs.
    let status = client.unary(with_token(echo("hi"), "w")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let pushback: u64 = status
        .metadata()
        .get("grpc-retry-pushback-ms")
        .expect("a pushback hint")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1_000).contains(&pushback), "pushback {pushback} ms");
    assert_eq!(
        recorder.take(),
        ["finish Unary ResourceExhausted in=0 out=0"]
    );

    // After the pushback, the call goes through every policy.
    tokio::time::sleep(Duration::from_millis(pushback + 20)).await;
    let reply = client.unary(with_token(echo("hi"), "w")).await.unwrap();
    assert_eq!(reply.into_inner().text, "hi from ada");
    assert_eq!(
        recorder.take(),
        [
            "call Unary",
            "request hi",
            "response hi from ada",
            "finish Unary Ok in=1 out=1"
        ]
    );

    // The metrics saw the same five calls and who refused each.
    let text = tonic_intercept::metrics::render_metrics(&registry);
    let unary = r#"grpc_type="unary",grpc_service="echo.v1.EchoService",grpc_method="Unary""#;
    assert_eq!(metric(&text, "grpc_server_started_total", unary), "5");
    for (code, n) in [
        // Go's code names, as existing dashboards expect.
        ("OK", "1"),
        ("Unauthenticated", "1"),
        ("PermissionDenied", "1"),
        ("InvalidArgument", "1"),
        ("ResourceExhausted", "1"),
        ("Internal", "0"),
    ] {
        let labels = format!(r#"{unary},grpc_code="{code}""#);
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
        ("call_rate", "1"),
        ("hook", "0"),
    ] {
        let labels = format!(r#"{unary},policy="{policy}""#);
        assert_eq!(
            metric(&text, "grpc_server_rejected_total", &labels),
            n,
            "{policy}"
        );
    }
    assert_eq!(metric(&text, "grpc_server_msg_received_total", unary), "1");
    assert_eq!(metric(&text, "grpc_server_msg_sent_total", unary), "1");
    // "hi" is 4 bytes encoded; "hi from ada", 13.
    assert_eq!(
        metric(&text, "grpc_server_msg_received_bytes_total", unary),
        "4"
    );
    assert_eq!(
        metric(&text, "grpc_server_msg_sent_bytes_total", unary),
        "13"
    );
    assert_eq!(
        metric(&text, "grpc_server_handling_seconds_count", unary),
        "5"
    );
    server.shutdown().await.unwrap();
}
