//! The call span and `TraceCalls`, seen through a subscriber that captures span fields
//! and events.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tonic::Code;
use tonic::metadata::MetadataMap;
use tonic_intercept::trace::{LogDebug, LogSize, Redact};
use tonic_intercept::{
    Call, CallOutcome, Hook, IdempotencyLevel, PolicyKind, Rpc, RpcDescriptor, RpcKind, Service,
    TraceCalls,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

// ---- a test RPC, written by hand, whose span is the generated kind ----------------------

#[derive(Clone, PartialEq, prost::Message)]
pub struct Login {
    #[prost(string, tag = "1")]
    pub user: String,
    #[prost(string, tag = "2")]
    pub password: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Session {
    #[prost(string, tag = "1")]
    pub token: String,
}

#[derive(Debug, Clone, Copy)]
struct T;

impl Service for T {
    const NAME: &'static str = "test.v1.T";
    const RPCS: &'static [&'static RpcDescriptor] = &[&Get::DESCRIPTOR];
}

#[derive(Debug, Clone, Copy)]
struct Get;

impl Rpc for Get {
    type Service = T;
    type Request = Login;
    type Response = Session;
    const INDEX: usize = 0;
    const DESCRIPTOR: RpcDescriptor = RpcDescriptor::new(
        "test.v1.T",
        "Get",
        "/test.v1.T/Get",
        RpcKind::Unary,
        IdempotencyLevel::Unknown,
        false,
    );
    fn span(call: &Call) -> tracing::Span {
        tonic_intercept::__rpc_span!("test.v1.T/Get", call)
    }
}

// ---- a subscriber layer that captures spans and events ----------------------------------

#[derive(Debug, Clone)]
struct SpanRec {
    name: &'static str,
    fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
struct EventRec {
    level: Level,
    message: String,
    fields: BTreeMap<String, String>,
    span: Option<&'static str>,
}

#[derive(Debug, Default)]
struct State {
    spans: HashMap<u64, SpanRec>,
    events: Vec<EventRec>,
}

#[derive(Debug, Clone, Default)]
struct Capture(Arc<Mutex<State>>);

impl Capture {
    fn span(&self, name: &str) -> SpanRec {
        let state = self.0.lock().unwrap();
        let found: Vec<_> = state.spans.values().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "{state:#?}");
        found[0].clone()
    }

    fn events(&self) -> Vec<EventRec> {
        self.0.lock().unwrap().events.clone()
    }

    fn event(&self, message: &str) -> EventRec {
        let found: Vec<_> = self
            .events()
            .into_iter()
            .filter(|e| e.message == message)
            .collect();
        assert_eq!(found.len(), 1, "{message}: {:#?}", self.events());
        found.into_iter().next().unwrap()
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: LayerContext<'_, S>) {
        let mut span = SpanRec {
            name: attrs.metadata().name(),
            fields: BTreeMap::new(),
        };
        attrs.record(&mut Fields(&mut span.fields));
        self.0.lock().unwrap().spans.insert(id.into_u64(), span);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: LayerContext<'_, S>) {
        let mut state = self.0.lock().unwrap();
        if let Some(span) = state.spans.get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut span.fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        let span = ctx.event_span(event).map(|s| s.name());
        self.0.lock().unwrap().events.push(EventRec {
            level: *event.metadata().level(),
            message,
            fields,
            span,
        });
    }
}

/// Runs `f` with a capturing subscriber at `max` level as the thread's default.
fn capture<O>(max: LevelFilter, f: impl FnOnce() -> O) -> (Capture, O) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone().with_filter(max));
    let output = tracing::subscriber::with_default(subscriber, f);
    (capture, output)
}

// ---- helpers ---------------------------------------------------------------------------

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{PARENT_ID}-01")
}

fn metadata(traceparent: Option<&str>) -> MetadataMap {
    let mut metadata = MetadataMap::new();
    if let Some(value) = traceparent {
        metadata.insert("traceparent", value.parse().unwrap());
    }
    metadata
}

fn request_from(peer: Option<SocketAddr>) -> tonic::Request<()> {
    let mut request = tonic::Request::new(());
    if let Some(remote_addr) = peer {
        request
            .extensions_mut()
            .insert(tonic::transport::server::TcpConnectInfo {
                local_addr: None,
                remote_addr: Some(remote_addr),
            });
    }
    request
}

fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("not ready"),
    }
}

/// One call of `Get` as `#[intercept]` runs it: span opened, entered while the hooks run.
fn run_call<H: Hook<Get>>(
    hook: &H,
    traceparent: Option<&str>,
    messages: (&[Login], &[Session]),
    outcome: CallOutcome,
) {
    let request = request_from(Some("203.0.113.7:50211".parse().unwrap()));
    let call = Call::start(&Get::DESCRIPTOR, &request, None);
    let metadata = metadata(traceparent);
    let span = tonic_intercept::__private::call_span::<Get>(&call, &metadata);
    let _entered = span.enter();
    now(hook.on_call(&call, &metadata)).unwrap();
    for m in messages.0 {
        hook.on_request(&call, m).unwrap();
    }
    for m in messages.1 {
        hook.on_response(&call, m).unwrap();
    }
    hook.on_finish(&call, &outcome);
}

fn login() -> Login {
    Login {
        user: "alice".into(),
        password: "hunter2".into(),
    }
}

fn session() -> Session {
    Session {
        token: "s3cr3t".into(),
    }
}

// ---- the span --------------------------------------------------------------------------

#[test]
fn span_carries_rpc_fields_and_the_outcome() {
    let mut outcome = CallOutcome::new(Code::NotFound);
    (outcome.messages_in, outcome.messages_out) = (1, 0);
    (outcome.bytes_in, outcome.bytes_out) = (14, 0);
    let tp = traceparent();
    let (captured, ()) = capture(LevelFilter::TRACE, || {
        run_call(&TraceCalls::new(), Some(&tp), (&[login()], &[]), outcome);
    });

    let span = captured.span("test.v1.T/Get");
    let f = &span.fields;
    let field = |name: &str| f.get(name).map(String::as_str);
    assert_eq!(field("otel.name"), Some("test.v1.T/Get"));
    assert_eq!(field("otel.kind"), Some("server"));
    assert_eq!(field("rpc.system"), Some("grpc"));
    assert_eq!(field("rpc.service"), Some("test.v1.T"));
    assert_eq!(field("rpc.method"), Some("Get"));
    assert_eq!(field("client.address"), Some("203.0.113.7"));
    assert_eq!(field("trace_id"), Some(TRACE_ID));
    assert_eq!(field("parent_span_id"), Some(PARENT_ID));
    assert_eq!(field("rpc.grpc.status_code"), Some("5"));
    assert_eq!(field("messages_in"), Some("1"));
    assert_eq!(field("messages_out"), Some("0"));
    assert_eq!(field("bytes_in"), Some("14"));
    assert_eq!(field("bytes_out"), Some("0"));
    let ms: f64 = field("duration_ms").unwrap().parse().unwrap();
    assert!((0.0..10_000.0).contains(&ms), "{ms}");
    // Nothing ended the call but the handler.
    assert_eq!(field("ended_by"), None);

    let started = captured.event("started call");
    assert_eq!(started.level, Level::DEBUG);
    assert_eq!(started.span, Some("test.v1.T/Get"));
    let finished = captured.event("finished call");
    assert_eq!(finished.level, Level::INFO);
    assert_eq!(finished.span, Some("test.v1.T/Get"));
    assert_eq!(finished.fields["grpc.code"], "NotFound");
    assert!(finished.fields.contains_key("duration_ms"));
    // No message events unless asked for.
    assert_eq!(captured.events().len(), 2, "{:#?}", captured.events());
}

#[test]
fn span_records_the_policy_that_ended_the_call() {
    let mut outcome = CallOutcome::new(Code::Unauthenticated);
    outcome.ended_by = Some(PolicyKind::Auth);
    let (captured, ()) = capture(LevelFilter::TRACE, || {
        run_call(&TraceCalls::new(), None, (&[], &[]), outcome);
    });
    let span = captured.span("test.v1.T/Get");
    assert_eq!(span.fields["ended_by"], "auth");
    assert_eq!(span.fields["rpc.grpc.status_code"], "16");
}

#[test]
fn malformed_traceparent_is_ignored() {
    for bad in [
        "",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "not a traceparent at all, but long enough to be sliced at 55 bytes",
    ] {
        let (captured, ()) = capture(LevelFilter::TRACE, || {
            run_call(
                &TraceCalls::new(),
                Some(bad),
                (&[], &[]),
                CallOutcome::new(Code::Ok),
            );
        });
        let span = captured.span("test.v1.T/Get");
        assert_eq!(span.fields.get("trace_id"), None, "{bad:?}");
        assert_eq!(span.fields.get("parent_span_id"), None, "{bad:?}");
        // The call went on: it finished and was logged.
        assert_eq!(span.fields["rpc.grpc.status_code"], "0", "{bad:?}");
    }
}

#[test]
fn no_traceparent_and_no_peer() {
    let (captured, ()) = capture(LevelFilter::TRACE, || {
        let call = Call::start(&Get::DESCRIPTOR, &request_from(None), None);
        let _span = tonic_intercept::__private::call_span::<Get>(&call, &MetadataMap::new());
    });
    let span = captured.span("test.v1.T/Get");
    for absent in ["client.address", "trace_id", "parent_span_id"] {
        assert_eq!(span.fields.get(absent), None, "{absent}");
    }
}

// ---- levels ----------------------------------------------------------------------------

fn finish_level(trace: &TraceCalls, code: Code) -> Level {
    let (captured, ()) = capture(LevelFilter::TRACE, || {
        run_call(trace, None, (&[], &[]), CallOutcome::new(code));
    });
    captured.event("finished call").level
}

#[test]
fn finish_level_follows_the_code() {
    let trace = TraceCalls::new();
    assert_eq!(finish_level(&trace, Code::Ok), Level::INFO);
    assert_eq!(finish_level(&trace, Code::NotFound), Level::INFO);
    assert_eq!(finish_level(&trace, Code::PermissionDenied), Level::WARN);
    assert_eq!(finish_level(&trace, Code::Internal), Level::ERROR);
}

#[test]
fn levels_are_configurable() {
    let trace = TraceCalls::new()
        .start_level(Level::TRACE)
        .finish_level(|code| match code {
            Code::Ok => Level::DEBUG,
            _ => Level::ERROR,
        });
    assert_eq!(finish_level(&trace, Code::Ok), Level::DEBUG);
    assert_eq!(finish_level(&trace, Code::NotFound), Level::ERROR);

    let (captured, ()) = capture(LevelFilter::TRACE, || {
        run_call(&trace, None, (&[], &[]), CallOutcome::new(Code::Ok));
    });
    assert_eq!(captured.event("started call").level, Level::TRACE);
}

// ---- messages and redaction ------------------------------------------------------------

/// Shows who logs in, never the password nor the session token.
#[derive(Debug, Clone, Default)]
struct HideSecrets {
    shown: Arc<AtomicUsize>,
}

impl Redact<Login> for HideSecrets {
    fn redact(&self, message: &Login, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shown.fetch_add(1, Ordering::Relaxed);
        write!(out, "user={} password=<redacted>", message.user)
    }
}

impl Redact<Session> for HideSecrets {
    fn redact(&self, _: &Session, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shown.fetch_add(1, Ordering::Relaxed);
        out.write_str("session <redacted>")
    }
}

fn message_events<X>(redactor: X) -> (String, String)
where
    TraceCalls<X>: Hook<Get>,
{
    let trace = TraceCalls::new().messages(redactor);
    let (captured, ()) = capture(LevelFilter::TRACE, || {
        run_call(
            &trace,
            None,
            (&[login()], &[session()]),
            CallOutcome::new(Code::Ok),
        );
    });
    let received = captured.event("received message");
    let sent = captured.event("sent message");
    for e in [&received, &sent] {
        assert_eq!(e.level, Level::DEBUG);
        assert_eq!(e.span, Some("test.v1.T/Get"));
    }
    (
        received.fields["content"].clone(),
        sent.fields["content"].clone(),
    )
}

#[test]
fn the_redactor_decides_what_is_logged() {
    let (received, sent) = message_events(HideSecrets::default());
    assert_eq!(received, "user=alice password=<redacted>");
    assert_eq!(sent, "session <redacted>");

    let (received, sent) = message_events(LogSize);
    use prost::Message;
    assert_eq!(received, format!("{} bytes", login().encoded_len()));
    assert_eq!(sent, format!("{} bytes", session().encoded_len()));
    assert!(!received.contains("hunter2"));

    let (received, sent) = message_events(LogDebug);
    assert_eq!(received, format!("{:?}", login()));
    assert!(received.contains("hunter2"));
    assert!(sent.contains("s3cr3t"));
}

// Counts this thread's allocations.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn disabled_message_events_format_and_allocate_nothing() {
    let redactor = HideSecrets::default();
    let trace = TraceCalls::new().messages(redactor.clone());
    let call = Call::start(&Get::DESCRIPTOR, &request_from(None), None);
    let (login, session) = (login(), session());

    let (captured, allocations) = capture(LevelFilter::INFO, || {
        // Once to register the callsites.
        Hook::<Get>::on_request(&trace, &call, &login).unwrap();
        Hook::<Get>::on_response(&trace, &call, &session).unwrap();
        let before = ALLOCATIONS.with(Cell::get);
        for _ in 0..100 {
            Hook::<Get>::on_request(&trace, &call, &login).unwrap();
            Hook::<Get>::on_response(&trace, &call, &session).unwrap();
        }
        ALLOCATIONS.with(Cell::get) - before
    });
    assert_eq!(allocations, 0);
    assert_eq!(redactor.shown.load(Ordering::Relaxed), 0);
    assert!(captured.events().is_empty());
}

// ---- OpenTelemetry ---------------------------------------------------------------------

#[cfg(feature = "opentelemetry")]
#[test]
fn the_span_joins_the_callers_trace_in_opentelemetry() {
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::with_default(subscriber, || {
        let call = Call::start(&Get::DESCRIPTOR, &request_from(None), None);
        let tp = traceparent();
        let span = tonic_intercept::__private::call_span::<Get>(&call, &metadata(Some(&tp)));
        let context = span.context();
        let otel = context.span();
        let sc = otel.span_context();
        assert_eq!(sc.trace_id().to_string(), TRACE_ID);
        assert_ne!(sc.span_id().to_string(), PARENT_ID);
        assert!(sc.is_valid());

        // Malformed: a new root trace.
        let bad = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        let span = tonic_intercept::__private::call_span::<Get>(&call, &metadata(Some(bad)));
        let context = span.context();
        assert_ne!(
            context.span().span_context().trace_id().to_string(),
            TRACE_ID
        );
    });
}
