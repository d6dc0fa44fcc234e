//! `ServerMetrics`: every series exported at zero from the start, exact values after a
//! known sequence of calls, and nothing allocated per call.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use tonic::Code;
use tonic::metadata::MetadataMap;
use tonic_intercept::metrics::{ServiceMetrics, render_metrics};
use tonic_intercept::prometheus_client::registry::Registry;
use tonic_intercept::{
    Call, CallOutcome, Hook, IdempotencyLevel, PolicyKind, Rpc, RpcDescriptor, RpcKind,
    ServerMetrics, Service,
};

// ---- a test service of three RPCs of different kinds, written by hand -------------------

#[derive(Debug, Clone, Copy)]
struct T;

impl Service for T {
    const NAME: &'static str = "test.v1.T";
    const RPCS: &'static [&'static RpcDescriptor] =
        &[&Get::DESCRIPTOR, &List::DESCRIPTOR, &Chat::DESCRIPTOR];
}

macro_rules! rpc {
    ($name:ident, $index:literal, $kind:ident) => {
        #[derive(Debug, Clone, Copy)]
        struct $name;
        impl Rpc for $name {
            type Service = T;
            type Request = ();
            type Response = ();
            const INDEX: usize = $index;
            const DESCRIPTOR: RpcDescriptor = RpcDescriptor::new(
                "test.v1.T",
                stringify!($name),
                concat!("/test.v1.T/", stringify!($name)),
                RpcKind::$kind,
                IdempotencyLevel::Unknown,
                false,
            );
        }
    };
}

rpc!(Get, 0, Unary);
rpc!(List, 1, ServerStreaming);
rpc!(Chat, 2, Bidi);

const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

const REJECT_POLICIES: [&str; 12] = [
    // The edge's rules that apply to a known RPC (`unknown_method` has its own label).
    "grpc_timeout",
    "decode",
    "auth",
    "roles",
    "concurrency",
    "call_rate",
    "limit",
    "deadline",
    "idle_timeout",
    "validation",
    "idempotency",
    "hook",
];

const BUCKETS: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf",
];

// ---- helpers ---------------------------------------------------------------------------

fn call<R: Rpc>() -> Call {
    Call::start(&R::DESCRIPTOR, &tonic::Request::new(()), None)
}

/// Polls a future that must be ready at once (the metrics' `on_call` is).
fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("on_call was not ready"),
    }
}

fn start<R: Rpc<Service = T>>(metrics: &ServiceMetrics<T>) -> Call {
    let call = call::<R>();
    now(Hook::<R>::on_call(metrics, &call, &MetadataMap::new())).unwrap();
    call
}

fn outcome(
    code: Code,
    msgs: (u64, u64),
    bytes: (u64, u64),
    ended_by: Option<PolicyKind>,
) -> CallOutcome {
    let mut outcome = CallOutcome::new(code);
    (outcome.messages_in, outcome.messages_out) = msgs;
    (outcome.bytes_in, outcome.bytes_out) = bytes;
    outcome.ended_by = ended_by;
    outcome
}

fn labels(kind: &str, method: &str) -> String {
    format!(r#"grpc_type="{kind}",grpc_service="test.v1.T",grpc_method="{method}""#)
}

/// The value of the one line that starts with `series ` (a name and its labels).
fn value(body: &str, series: &str) -> String {
    let prefix = format!("{series} ");
    let found: Vec<&str> = body
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .collect();
    assert_eq!(found.len(), 1, "{series}: {found:?} in\n{body}");
    found[0].to_owned()
}

const RPCS: [(&str, &str); 3] = [
    ("unary", "Get"),
    ("server_stream", "List"),
    ("bidi_stream", "Chat"),
];

// ---- tests -----------------------------------------------------------------------------

#[test]
fn every_series_exists_at_zero() {
    let mut registry = Registry::default();
    let metrics = ServerMetrics::register(&mut registry);
    let _t = metrics.service::<T>();
    let body = render_metrics(&registry);

    for (kind, method) in RPCS {
        let l = labels(kind, method);
        for family in [
            "grpc_server_started_total",
            "grpc_server_msg_received_total",
            "grpc_server_msg_sent_total",
            "grpc_server_msg_received_bytes_total",
            "grpc_server_msg_sent_bytes_total",
            "grpc_server_panics_total",
            "grpc_server_handling_seconds_count",
        ] {
            let line = format!("{family}{{{l}}} 0");
            assert!(body.lines().any(|x| x == line), "missing {line}\n{body}");
        }
        for code in CODES {
            let line = format!(r#"grpc_server_handled_total{{{l},grpc_code="{code}"}} 0"#);
            assert!(body.lines().any(|x| x == line), "missing {line}\n{body}");
        }
        for policy in REJECT_POLICIES {
            let line = format!(r#"grpc_server_rejected_total{{{l},policy="{policy}"}} 0"#);
            assert!(body.lines().any(|x| x == line), "missing {line}\n{body}");
        }
        // prometheus-client writes `le` first.
        for le in BUCKETS {
            let line = format!(r#"grpc_server_handling_seconds_bucket{{le="{le}",{l}}} 0"#);
            assert!(body.lines().any(|x| x == line), "missing {line}\n{body}");
        }
        let line = format!("grpc_server_handling_seconds_sum{{{l}}} 0.0");
        assert!(body.lines().any(|x| x == line), "missing {line}\n{body}");
    }
    // The brief's example line, spelled as go-grpc-middleware spells the code.
    assert!(body.contains(
        r#"grpc_server_handled_total{grpc_type="unary",grpc_service="test.v1.T",grpc_method="Get",grpc_code="NotFound"} 0"#
    ));
    // A panic is not a rejection: `recovery` has its own family.
    assert!(!body.contains(r#"policy="recovery""#));
    // 3 RPCs x (7 counters/summaries + 17 codes + 12 policies + 12 buckets + sum) series.
    let samples = body.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(samples, 3 * (7 + 17 + 12 + 12 + 1), "{body}");
    assert!(!body.contains(r#"policy="unknown_method""#));
    assert!(body.ends_with("# EOF\n"));

    for header in [
        "# TYPE grpc_server_started counter",
        "# HELP grpc_server_started Total number of RPCs started on the server.",
        "# TYPE grpc_server_handled counter",
        "# TYPE grpc_server_handling_seconds histogram",
        "# UNIT grpc_server_handling_seconds seconds",
        "# TYPE grpc_server_msg_received counter",
        "# TYPE grpc_server_msg_sent counter",
        "# TYPE grpc_server_msg_received_bytes counter",
        "# UNIT grpc_server_msg_received_bytes bytes",
        "# TYPE grpc_server_msg_sent_bytes counter",
        "# TYPE grpc_server_rejected counter",
        "# TYPE grpc_server_panics counter",
    ] {
        assert!(
            body.lines().any(|x| x == header),
            "missing {header}\n{body}"
        );
    }
}

#[test]
fn counts_a_known_sequence_of_calls() {
    let mut registry = Registry::default();
    let metrics = ServerMetrics::register(&mut registry);
    let t = metrics.service::<T>();

    // Get: OK, NotFound, refused by auth.
    let c = start::<Get>(&t);
    Hook::<Get>::on_finish(&t, &c, &outcome(Code::Ok, (1, 1), (10, 20), None));
    let c = start::<Get>(&t);
    Hook::<Get>::on_finish(&t, &c, &outcome(Code::NotFound, (1, 0), (10, 0), None));
    let c = start::<Get>(&t);
    let refused = outcome(
        Code::Unauthenticated,
        (0, 0),
        (0, 0),
        Some(PolicyKind::Auth),
    );
    Hook::<Get>::on_finish(&t, &c, &refused);

    // List: OK after 5 messages, then a panic after 2.
    let c = start::<List>(&t);
    Hook::<List>::on_finish(&t, &c, &outcome(Code::Ok, (1, 5), (7, 500), None));
    let c = start::<List>(&t);
    let panicked = outcome(Code::Internal, (1, 2), (7, 200), Some(PolicyKind::Recovery));
    Hook::<List>::on_finish(&t, &c, &panicked);

    // Chat: over a stream limit; and a second handle to the same service's series.
    let again = metrics.service::<T>();
    let c = start::<Chat>(&again);
    let limited = outcome(
        Code::ResourceExhausted,
        (4, 3),
        (40, 30),
        Some(PolicyKind::Limit),
    );
    Hook::<Chat>::on_finish(&t, &c, &limited);

    let body = render_metrics(&registry);
    let get = labels("unary", "Get");
    let list = labels("server_stream", "List");
    let chat = labels("bidi_stream", "Chat");
    let v = |series: String| value(&body, &series);

    assert_eq!(v(format!("grpc_server_started_total{{{get}}}")), "3");
    assert_eq!(v(format!("grpc_server_started_total{{{list}}}")), "2");
    assert_eq!(v(format!("grpc_server_started_total{{{chat}}}")), "1");

    let handled = |l: &str, code: &str| {
        v(format!(
            r#"grpc_server_handled_total{{{l},grpc_code="{code}"}}"#
        ))
    };
    assert_eq!(handled(&get, "OK"), "1");
    assert_eq!(handled(&get, "NotFound"), "1");
    assert_eq!(handled(&get, "Unauthenticated"), "1");
    assert_eq!(handled(&get, "Internal"), "0");
    assert_eq!(handled(&list, "OK"), "1");
    assert_eq!(handled(&list, "Internal"), "1");
    assert_eq!(handled(&chat, "ResourceExhausted"), "1");
    assert_eq!(handled(&chat, "OK"), "0");
    let total: u64 = body
        .lines()
        .filter(|l| l.starts_with("grpc_server_handled_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 6);

    for (l, received, sent, bytes_received, bytes_sent) in [
        (&get, "2", "1", "20", "20"),
        (&list, "2", "7", "14", "700"),
        (&chat, "4", "3", "40", "30"),
    ] {
        assert_eq!(
            v(format!("grpc_server_msg_received_total{{{l}}}")),
            received
        );
        assert_eq!(v(format!("grpc_server_msg_sent_total{{{l}}}")), sent);
        assert_eq!(
            v(format!("grpc_server_msg_received_bytes_total{{{l}}}")),
            bytes_received
        );
        assert_eq!(
            v(format!("grpc_server_msg_sent_bytes_total{{{l}}}")),
            bytes_sent
        );
    }

    let rejected =
        |l: &str, p: &str| v(format!(r#"grpc_server_rejected_total{{{l},policy="{p}"}}"#));
    assert_eq!(rejected(&get, "auth"), "1");
    assert_eq!(rejected(&get, "limit"), "0");
    assert_eq!(rejected(&chat, "limit"), "1");
    assert_eq!(rejected(&chat, "auth"), "0");
    for p in REJECT_POLICIES {
        assert_eq!(rejected(&list, p), "0", "{p}");
    }
    assert_eq!(v(format!("grpc_server_panics_total{{{list}}}")), "1");
    assert_eq!(v(format!("grpc_server_panics_total{{{get}}}")), "0");

    for (l, n) in [(&get, "3"), (&list, "2"), (&chat, "1")] {
        assert_eq!(v(format!("grpc_server_handling_seconds_count{{{l}}}")), n);
        // The calls took microseconds: all in the first bucket.
        assert_eq!(
            v(format!(
                r#"grpc_server_handling_seconds_bucket{{le="0.005",{l}}}"#
            )),
            n
        );
        assert_eq!(
            v(format!(
                r#"grpc_server_handling_seconds_bucket{{le="+Inf",{l}}}"#
            )),
            n
        );
    }
}

#[test]
fn handling_seconds_observes_the_call_duration() {
    let mut registry = Registry::default();
    let t = ServerMetrics::register(&mut registry).service::<T>();
    let c = start::<Get>(&t);
    std::thread::sleep(std::time::Duration::from_millis(30));
    Hook::<Get>::on_finish(&t, &c, &CallOutcome::new(Code::Ok));

    let body = render_metrics(&registry);
    let get = labels("unary", "Get");
    let bucket = |le: &str| {
        value(
            &body,
            &format!(r#"grpc_server_handling_seconds_bucket{{le="{le}",{get}}}"#),
        )
    };
    assert_eq!(bucket("0.025"), "0");
    assert_eq!(bucket("10.0"), "1");
    let sum: f64 = value(&body, &format!("grpc_server_handling_seconds_sum{{{get}}}"))
        .parse()
        .unwrap();
    assert!((0.03..10.0).contains(&sum), "{sum}");
}

#[test]
fn registries_are_independent() {
    let (mut a, mut b) = (Registry::default(), Registry::default());
    let ta = ServerMetrics::register(&mut a).service::<T>();
    let _tb = ServerMetrics::register(&mut b).service::<T>();
    start::<Get>(&ta);
    let started = format!("grpc_server_started_total{{{}}}", labels("unary", "Get"));
    assert_eq!(value(&render_metrics(&a), &started), "1");
    assert_eq!(value(&render_metrics(&b), &started), "0");
}

// ---- no allocation per call -------------------------------------------------------------

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
fn a_call_allocates_nothing() {
    let mut registry = Registry::default();
    let t = ServerMetrics::register(&mut registry).service::<T>();
    let metadata = MetadataMap::new();
    let c = call::<Chat>();
    let finished = outcome(Code::Aborted, (3, 4), (30, 40), Some(PolicyKind::Hook));

    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..100 {
        now(Hook::<Chat>::on_call(&t, &c, &metadata)).unwrap();
        Hook::<Chat>::on_finish(&t, &c, &finished);
    }
    assert_eq!(ALLOCATIONS.with(Cell::get) - before, 0);

    let body = render_metrics(&registry);
    let chat = labels("bidi_stream", "Chat");
    assert_eq!(
        value(&body, &format!("grpc_server_started_total{{{chat}}}")),
        "100"
    );
    assert_eq!(
        value(
            &body,
            &format!(r#"grpc_server_rejected_total{{{chat},policy="hook"}}"#)
        ),
        "100"
    );
}
