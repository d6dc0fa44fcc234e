//! `trace` over loopback: one span per call, named after the RPC, with the OpenTelemetry
//! RPC attributes, the caller's `traceparent`, and a finish event whose level follows the
//! status code.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tonic::{Code, Request, Response, Status, Streaming};
use tonic_intercept::intercept;
use tonic_intercept_tests::pb::{EchoReply, EchoRequest, StreamRequest, Summary};
use tonic_intercept_tests::{client, serve};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

type Replies = tokio_stream::wrappers::ReceiverStream<Result<EchoReply, Status>>;

struct Traced;

#[intercept(public(*), trace)]
#[tonic::async_trait]
impl tonic_intercept_tests::pb::echo_service_server::EchoService for Traced {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        tracing::info!("inside the handler");
        match request.into_inner().text.as_str() {
            "missing" => Err(Status::not_found("no such echo")),
            "boom" => Err(Status::internal("it broke")),
            text => Ok(Response::new(EchoReply {
                text: text.into(),
                seq: 0,
            })),
        }
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

/// What the layer saw: each span's name and fields, and each event with its span.
#[derive(Clone, Default)]
struct Seen {
    spans: Arc<Mutex<Vec<SeenSpan>>>,
    events: Arc<Mutex<Vec<Seen1>>>,
}

/// A span's name and its fields as recorded so far.
type SeenSpan = (String, BTreeMap<String, String>);

#[derive(Debug, Clone, PartialEq)]
struct Seen1 {
    level: Level,
    message: String,
    span: Option<String>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            format!("{value:?}").trim_matches('"').to_string(),
        );
    }
}

/// Each span's index in `Seen::spans`.
struct Index(usize);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Seen {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.spans.lock().unwrap();
        spans.push((attrs.metadata().name().to_string(), fields));
        ctx.span(id)
            .unwrap()
            .extensions_mut()
            .insert(Index(spans.len() - 1));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let index = span.extensions().get::<Index>().unwrap().0;
        values.record(&mut Fields(&mut self.spans.lock().unwrap()[index].1));
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.events.lock().unwrap().push(Seen1 {
            level: *event.metadata().level(),
            message: fields.remove("message").unwrap_or_default(),
            span: ctx.event_span(event).map(|s| s.name().to_string()),
        });
    }
}

fn echo(text: &str, traceparent: Option<&str>) -> Request<EchoRequest> {
    let mut request = Request::new(EchoRequest { text: text.into() });
    if let Some(tp) = traceparent {
        request
            .metadata_mut()
            .insert("traceparent", tp.parse().unwrap());
    }
    request
}

// One thread, so the server's tasks run under this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn each_call_gets_a_span_named_after_its_rpc() {
    let seen = Seen::default();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(seen.clone()));
    let mut client = client(serve(Traced).await).await;

    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    client.unary(echo("hi", Some(parent))).await.unwrap();
    let status = client
        .unary(echo("missing", Some("00-not-a-trace")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = client.unary(echo("boom", None)).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);

    let spans: Vec<_> = seen
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|(name, _)| name == "echo.v1.EchoService/Unary")
        .cloned()
        .collect();
    assert_eq!(spans.len(), 3);
    let field = |i: usize, name: &str| spans[i].1.get(name).cloned();
    for i in 0..3 {
        assert_eq!(field(i, "rpc.system").as_deref(), Some("grpc"));
        assert_eq!(
            field(i, "rpc.service").as_deref(),
            Some("echo.v1.EchoService")
        );
        assert_eq!(field(i, "rpc.method").as_deref(), Some("Unary"));
        assert_eq!(field(i, "otel.kind").as_deref(), Some("server"));
        assert_eq!(field(i, "client.address").as_deref(), Some("127.0.0.1"));
        assert_eq!(field(i, "messages_in").as_deref(), Some("1"));
    }
    // The caller's trace, joined; a malformed header is ignored, not an error.
    assert_eq!(
        field(0, "trace_id").as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(
        field(0, "parent_span_id").as_deref(),
        Some("00f067aa0ba902b7")
    );
    assert_eq!(field(1, "trace_id"), None);
    assert_eq!(field(2, "trace_id"), None);
    // OpenTelemetry's numeric status codes.
    assert_eq!(field(0, "rpc.grpc.status_code").as_deref(), Some("0"));
    assert_eq!(field(1, "rpc.grpc.status_code").as_deref(), Some("5"));
    assert_eq!(field(2, "rpc.grpc.status_code").as_deref(), Some("13"));

    let events = seen.events.lock().unwrap().clone();
    let in_span = |message: &str| {
        events
            .iter()
            .filter(|e| {
                e.message == message && e.span.as_deref() == Some("echo.v1.EchoService/Unary")
            })
            .map(|e| e.level)
            .collect::<Vec<_>>()
    };
    // The handler's own events belong to the call's span.
    assert_eq!(in_span("inside the handler"), [Level::INFO; 3]);
    assert_eq!(in_span("started call"), [Level::DEBUG; 3]);
    // OK and NOT_FOUND at INFO, INTERNAL at ERROR, as go-grpc-middleware logs them.
    assert_eq!(
        in_span("finished call"),
        [Level::INFO, Level::INFO, Level::ERROR]
    );
}
