//! `ClientMetrics`: every series exported at zero from the start, exact values after a
//! known sequence of calls, and the handling histogram's count and buckets.

use std::time::Duration;

use tonic::Code;
use tonic_intercept::client::{ClientMetrics, ClientServiceMetrics, GiveUpReason};
use tonic_intercept::metrics::render_metrics;
use tonic_intercept::prometheus_client::registry::Registry;
use tonic_intercept::{IdempotencyLevel, Rpc, RpcDescriptor, RpcKind, ServerMetrics, Service};

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

const REASONS: [&str; 6] = [
    "not_retryable",
    "attempts_exhausted",
    "committed",
    "throttled",
    "pushback",
    "deadline",
];

const BUCKETS: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf",
];

const RPCS: [(&str, &str); 3] = [
    ("unary", "Get"),
    ("server_stream", "List"),
    ("bidi_stream", "Chat"),
];

// ---- helpers ---------------------------------------------------------------------------

fn setup() -> (Registry, ClientServiceMetrics<T>) {
    let mut registry = Registry::default();
    let metrics = ClientMetrics::register(&mut registry).service::<T>();
    (registry, metrics)
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

/// Every sample line (not a comment) of `body`.
fn samples(body: &str) -> Vec<&str> {
    body.lines().filter(|line| !line.starts_with('#')).collect()
}

// ---- tests -----------------------------------------------------------------------------

/// The whole exposition of a fresh service, line by line: every family's metadata, and
/// every series of every RPC at zero, in registration and `.proto` order.
#[test]
fn every_series_is_rendered_at_zero() {
    let (registry, _metrics) = setup();
    let body = render_metrics(&registry);

    let mut expected = String::new();
    let mut family =
        |name: &str, kind: &str, unit: Option<&str>, help: &str, lines: Vec<String>| {
            let full = match unit {
                Some(unit) => format!("{name}_{unit}"),
                None => name.to_owned(),
            };
            expected += &format!("# HELP {full} {help}.\n# TYPE {full} {kind}\n");
            if let Some(unit) = unit {
                expected += &format!("# UNIT {full} {unit}\n");
            }
            for line in lines {
                expected += &line;
                expected += "\n";
            }
        };
    let per_rpc = |f: &dyn Fn(String) -> Vec<String>| -> Vec<String> {
        RPCS.iter()
            .flat_map(|(kind, method)| f(labels(kind, method)))
            .collect()
    };
    let counter = |name: &'static str| move |l: String| vec![format!("{name}_total{{{l}}} 0")];

    family(
        "grpc_client_started",
        "counter",
        None,
        "Total number of RPCs started on the client",
        per_rpc(&counter("grpc_client_started")),
    );
    family(
        "grpc_client_handled",
        "counter",
        None,
        "Total number of RPCs completed by the client, regardless of success or failure",
        per_rpc(&|l| {
            CODES
                .iter()
                .map(|code| format!(r#"grpc_client_handled_total{{{l},grpc_code="{code}"}} 0"#))
                .collect()
        }),
    );
    family(
        "grpc_client_handling",
        "histogram",
        Some("seconds"),
        "Histogram of response latency (seconds) of the gRPC until it is finished by the \
         application",
        per_rpc(&|l| {
            let mut lines = vec![
                format!("grpc_client_handling_seconds_sum{{{l}}} 0.0"),
                format!("grpc_client_handling_seconds_count{{{l}}} 0"),
            ];
            lines.extend(
                BUCKETS
                    .iter()
                    .map(|le| format!(r#"grpc_client_handling_seconds_bucket{{le="{le}",{l}}} 0"#)),
            );
            lines
        }),
    );
    family(
        "grpc_client_msg_sent",
        "counter",
        None,
        "Total number of gRPC stream messages sent by the client",
        per_rpc(&counter("grpc_client_msg_sent")),
    );
    family(
        "grpc_client_msg_received",
        "counter",
        None,
        "Total number of RPC stream messages received by the client",
        per_rpc(&counter("grpc_client_msg_received")),
    );
    family(
        "grpc_client_attempts",
        "counter",
        None,
        "Total number of RPC attempts made by the client, first attempts and retries",
        per_rpc(&counter("grpc_client_attempts")),
    );
    family(
        "grpc_client_retries",
        "counter",
        None,
        "Total number of RPC attempts the client made after the first one",
        per_rpc(&counter("grpc_client_retries")),
    );
    family(
        "grpc_client_gave_up",
        "counter",
        None,
        "Total number of RPCs the client gave up on after a failed attempt, by reason",
        per_rpc(&|l| {
            REASONS
                .iter()
                .map(|reason| format!(r#"grpc_client_gave_up_total{{{l},reason="{reason}"}} 0"#))
                .collect()
        }),
    );
    expected += "# EOF\n";

    // Series within a family are in hash-map order: compare each family's lines as sets,
    // and the whole as a sorted multiset of lines, plus the exact count.
    let mut got: Vec<&str> = body.lines().collect();
    let mut want: Vec<&str> = expected.lines().collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "rendered:\n{body}");
    // 3 RPCs × (1 + 17 + 14 + 1 + 1 + 1 + 1 + 6) series lines.
    assert_eq!(samples(&body).len(), 3 * 42);
    assert_eq!(GiveUpReason::ALL.map(GiveUpReason::as_str), REASONS);
}

/// Exact values after a known sequence of calls, and nothing recorded for RPCs that were
/// not called.
#[test]
fn exact_values_after_a_known_sequence() {
    let (registry, metrics) = setup();

    // Get: OK at once; then UNAVAILABLE, retried twice, attempts exhausted.
    metrics.started::<Get>();
    metrics.finished::<Get>(Code::Ok, Duration::from_millis(3), 1, 1);
    metrics.started::<Get>();
    metrics.retried::<Get>();
    metrics.retried::<Get>();
    metrics.gave_up::<Get>(GiveUpReason::AttemptsExhausted);
    metrics.finished::<Get>(Code::Unavailable, Duration::from_millis(300), 3, 0);
    // List: committed after 7 responses, then the stream broke.
    metrics.started::<List>();
    metrics.gave_up::<List>(GiveUpReason::Committed);
    metrics.finished::<List>(Code::Unavailable, Duration::from_secs(2), 1, 7);
    // Chat: not retryable.
    metrics.started::<Chat>();
    metrics.gave_up::<Chat>(GiveUpReason::NotRetryable);
    metrics.finished::<Chat>(Code::NotFound, Duration::from_millis(40), 4, 0);

    let body = render_metrics(&registry);
    let get = labels("unary", "Get");
    let list = labels("server_stream", "List");
    let chat = labels("bidi_stream", "Chat");
    let counter = |name: &str, l: &str| value(&body, &format!("{name}_total{{{l}}}"));

    // (labels, started, sent, received, attempts, retries)
    for (l, started, sent, received, attempts, retries) in [
        (&get, "2", "4", "1", "4", "2"),
        (&list, "1", "1", "7", "1", "0"),
        (&chat, "1", "4", "0", "1", "0"),
    ] {
        assert_eq!(counter("grpc_client_started", l), started, "{l}");
        assert_eq!(counter("grpc_client_msg_sent", l), sent, "{l}");
        assert_eq!(counter("grpc_client_msg_received", l), received, "{l}");
        assert_eq!(counter("grpc_client_attempts", l), attempts, "{l}");
        assert_eq!(counter("grpc_client_retries", l), retries, "{l}");
    }

    let handled = |l: &str, code: &str| {
        value(
            &body,
            &format!(r#"grpc_client_handled_total{{{l},grpc_code="{code}"}}"#),
        )
    };
    for (l, ones) in [
        (&get, &["OK", "Unavailable"][..]),
        (&list, &["Unavailable"][..]),
        (&chat, &["NotFound"][..]),
    ] {
        for code in CODES {
            let want = if ones.contains(&code) { "1" } else { "0" };
            assert_eq!(handled(l, code), want, "{l} {code}");
        }
    }

    let gave_up = |l: &str, reason: &str| {
        value(
            &body,
            &format!(r#"grpc_client_gave_up_total{{{l},reason="{reason}"}}"#),
        )
    };
    for (l, one) in [
        (&get, "attempts_exhausted"),
        (&list, "committed"),
        (&chat, "not_retryable"),
    ] {
        for reason in REASONS {
            let want = if reason == one { "1" } else { "0" };
            assert_eq!(gave_up(l, reason), want, "{l} {reason}");
        }
    }
}

/// The histogram counts every finished call once, in the right cumulative buckets, with
/// the durations' sum; retries do not add observations.
#[test]
fn histogram_count_buckets_and_sum() {
    let (registry, metrics) = setup();
    for millis in [1, 3, 30, 30, 700, 20_000] {
        metrics.started::<Get>();
        metrics.retried::<Get>();
        metrics.finished::<Get>(Code::Ok, Duration::from_millis(millis), 1, 1);
    }
    let body = render_metrics(&registry);
    let l = labels("unary", "Get");

    assert_eq!(
        value(&body, &format!("grpc_client_handling_seconds_count{{{l}}}")),
        "6"
    );
    let sum: f64 = value(&body, &format!("grpc_client_handling_seconds_sum{{{l}}}"))
        .parse()
        .unwrap();
    assert!((sum - 20.764).abs() < 1e-9, "sum {sum}");
    let cumulative = ["2", "2", "2", "4", "4", "4", "4", "5", "5", "5", "5", "6"];
    for (le, want) in BUCKETS.iter().zip(cumulative) {
        assert_eq!(
            value(
                &body,
                &format!(r#"grpc_client_handling_seconds_bucket{{le="{le}",{l}}}"#)
            ),
            want,
            "le={le}"
        );
    }
    // Other RPCs' histograms are untouched.
    for (kind, method) in &RPCS[1..] {
        let l = labels(kind, method);
        assert_eq!(
            value(&body, &format!("grpc_client_handling_seconds_count{{{l}}}")),
            "0"
        );
    }
}

/// Clones and a second `service::<T>()` share the series; server and client metrics live
/// side by side in one registry.
#[test]
fn handles_share_series_and_coexist_with_server_metrics() {
    let mut registry = Registry::default();
    let client = ClientMetrics::register(&mut registry);
    let _server = ServerMetrics::register(&mut registry).service::<T>();
    let a = client.service::<T>();
    let b = client.clone().service::<T>();
    a.started::<Get>();
    b.started::<Get>();
    a.clone().started::<Get>();

    let body = render_metrics(&registry);
    let l = labels("unary", "Get");
    assert_eq!(
        value(&body, &format!("grpc_client_started_total{{{l}}}")),
        "3"
    );
    assert_eq!(
        value(&body, &format!("grpc_server_started_total{{{l}}}")),
        "0"
    );
    assert_eq!(
        format!("{a:?}"),
        r#"ClientServiceMetrics { service: "test.v1.T", rpcs: 3 }"#
    );
}
