//! The benchmark in miniature, so that it cannot rot: every variant serves every
//! workload, every call ends with the status it must, and the policy suite's metrics
//! count what happened; and every client variant of the client-side measurement calls
//! the bare server. Correctness only, no timing.
//!
//! The variants that keep a call rate in Redis run against a `redis-server` of the
//! test's own; when it is not on PATH they are skipped with a printed reason, unless
//! `TONIC_INTERCEPT_REQUIRE_REDIS=1` (CI), where that is a failure.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tonic::Code;
use tonic_intercept::metrics::render_metrics;
use tonic_intercept::prometheus_client::registry::Registry;
use tonic_intercept_bench::{
    ClientVariant, Handled, Load, Variant, Workload, run_client_load, run_load, serve,
    serve_with_redis,
};
use tonic_intercept_examples::redis_process::RedisProcess;

/// A Redis for the variants that need one; `None` (they are skipped, saying why) when
/// `redis-server` is not on PATH, unless CI requires it.
fn redis_for_shared_variants() -> Option<RedisProcess> {
    if !RedisProcess::installed() {
        if std::env::var("TONIC_INTERCEPT_REQUIRE_REDIS").as_deref() == Ok("1") {
            panic!("redis-server is not on PATH and TONIC_INTERCEPT_REQUIRE_REDIS=1");
        }
        eprintln!(
            "SKIPPED the Redis variants (intercept-shared, intercept-shared-denied): \
             redis-server is not on PATH (apt-get install redis-server); \
             set TONIC_INTERCEPT_REQUIRE_REDIS=1 to make this a failure"
        );
        return None;
    }
    Some(RedisProcess::start().expect("redis-server starts"))
}

#[tokio::test]
async fn every_variant_serves_every_workload_with_the_right_status() {
    let redis = redis_for_shared_variants();
    for variant in Variant::ALL {
        let redis_url = match (variant.redis(), &redis) {
            (false, _) => None,
            (true, Some(redis)) => Some(redis.url()),
            (true, None) => continue, // Skipped, as printed above.
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handled = Arc::new(Handled::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_with_redis(
            variant,
            listener,
            handled.clone(),
            redis_url,
            async {
                let _ = stopped.await;
            },
        ));

        let mut expected_calls = 0;
        let mut expected_messages_in = 0;
        let mut expected_round_trips = 0;
        for workload in Workload::ALL {
            let load = Load {
                workload,
                calls: 3,
                messages: 5,
                size: 16,
                concurrency: 2,
            };
            let report = run_load(addr, load).await;
            let expected = workload.expected(variant);
            assert_eq!(
                report.count(expected),
                3,
                "{} {}: {:?}",
                variant.name(),
                workload.name(),
                report.statuses
            );
            let streamed = match workload {
                Workload::ServerStream | Workload::Bidi => 15,
                _ => 0,
            };
            assert_eq!(
                report.messages,
                streamed,
                "{} {}",
                variant.name(),
                workload.name()
            );
            expected_round_trips += 3 * workload.round_trips(variant);
            if expected == Code::Ok {
                expected_calls += 3;
                if matches!(workload, Workload::ClientStream | Workload::Bidi) {
                    expected_messages_in += 15;
                }
            }
        }
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        // Refused calls never reached a handler.
        assert_eq!(
            handled.calls.load(Ordering::Relaxed),
            expected_calls,
            "{}",
            variant.name()
        );
        assert_eq!(
            handled.messages_in.load(Ordering::Relaxed),
            expected_messages_in,
            "{}",
            variant.name()
        );
        if variant == Variant::InterceptSuite {
            suite_metrics_counted_every_call(&handled);
        }
        // The Redis variants: one round trip per unary call admitted (intercept-shared:
        // unary and oversize, 6), none for the refusals from the deny cache
        // (intercept-shared-denied), and Redis never failed a check.
        assert_eq!(
            handled.round_trips(),
            expected_round_trips,
            "{}",
            variant.name()
        );
        assert_eq!(handled.backend_errors(), 0, "{}", variant.name());
        match variant {
            Variant::InterceptShared => assert_eq!(expected_round_trips, 6),
            Variant::InterceptSharedDenied => {
                assert_eq!(expected_round_trips, 0);
                // Only the three streaming workloads reached a handler.
                assert_eq!(expected_calls, 9);
            }
            _ => {}
        }
    }
}

/// The suite's metrics saw every call of the run above, each refusal against its policy:
/// the measured variant really does the metrics work. Unary, no-token and oversize made
/// 3 calls each, the streaming workloads 3 calls of 5 messages.
fn suite_metrics_counted_every_call(handled: &Handled) {
    const EXPECTED: &str = r#"
grpc_server_started_total{grpc_type="unary",grpc_service="bench.v1.Bench",grpc_method="Unary"} 9
grpc_server_handled_total{grpc_type="unary",grpc_service="bench.v1.Bench",grpc_method="Unary",grpc_code="OK"} 3
grpc_server_handled_total{grpc_type="unary",grpc_service="bench.v1.Bench",grpc_method="Unary",grpc_code="Unauthenticated"} 3
grpc_server_handled_total{grpc_type="unary",grpc_service="bench.v1.Bench",grpc_method="Unary",grpc_code="ResourceExhausted"} 3
grpc_server_rejected_total{grpc_type="unary",grpc_service="bench.v1.Bench",grpc_method="Unary",policy="auth"} 3
grpc_server_rejected_total{grpc_type="unary",grpc_service="bench.v1.Bench",grpc_method="Unary",policy="limit"} 3
grpc_server_rejected_total{grpc_type="unary",grpc_service="bench.v1.Bench",grpc_method="Unary",policy="concurrency"} 0
grpc_server_rejected_total{grpc_type="unary",grpc_service="bench.v1.Bench",grpc_method="Unary",policy="validation"} 0
grpc_server_panics_total{grpc_type="unary",grpc_service="bench.v1.Bench",grpc_method="Unary"} 0
grpc_server_handled_total{grpc_type="server_stream",grpc_service="bench.v1.Bench",grpc_method="ServerStream",grpc_code="OK"} 3
grpc_server_msg_sent_total{grpc_type="server_stream",grpc_service="bench.v1.Bench",grpc_method="ServerStream"} 15
grpc_server_handled_total{grpc_type="client_stream",grpc_service="bench.v1.Bench",grpc_method="ClientStream",grpc_code="OK"} 3
grpc_server_msg_received_total{grpc_type="client_stream",grpc_service="bench.v1.Bench",grpc_method="ClientStream"} 15
grpc_server_handled_total{grpc_type="bidi_stream",grpc_service="bench.v1.Bench",grpc_method="Bidi",grpc_code="OK"} 3
grpc_server_msg_received_total{grpc_type="bidi_stream",grpc_service="bench.v1.Bench",grpc_method="Bidi"} 15
grpc_server_msg_sent_total{grpc_type="bidi_stream",grpc_service="bench.v1.Bench",grpc_method="Bidi"} 15
"#;
    let body = render_metrics(&handled.registry.lock().unwrap());
    for line in EXPECTED.lines().filter(|l| !l.is_empty()) {
        assert!(body.lines().any(|l| l == line), "no `{line}` in:\n{body}");
    }
}

/// The clients of `bench client-callgrind`, each making 3 calls to the bare server: all
/// succeed, the server handled each once, and the configured client's metrics saw them.
#[tokio::test]
async fn every_client_variant_calls_the_bare_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handled = Arc::new(Handled::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(Variant::Bare, listener, handled.clone(), async {
        let _ = stopped.await;
    }));
    let mut registry = Registry::default();
    for client in ClientVariant::ALL {
        let report = run_client_load(addr, client, 3, &mut registry).await;
        assert_eq!(
            report.count(Code::Ok),
            3,
            "{}: {:?}",
            client.name(),
            report.statuses
        );
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert_eq!(
        handled.calls.load(Ordering::Relaxed),
        3 * ClientVariant::ALL.len() as u64
    );
    let body = render_metrics(&registry);
    for line in [
        r#"grpc_client_started_total{grpc_type="unary",grpc_service="bench.v1.Bench",grpc_method="Unary"} 3"#,
        r#"grpc_client_handled_total{grpc_type="unary",grpc_service="bench.v1.Bench",grpc_method="Unary",grpc_code="OK"} 3"#,
        r#"grpc_client_attempts_total{grpc_type="unary",grpc_service="bench.v1.Bench",grpc_method="Unary"} 3"#,
        r#"grpc_client_msg_sent_total{grpc_type="unary",grpc_service="bench.v1.Bench",grpc_method="Unary"} 3"#,
    ] {
        assert!(body.lines().any(|l| l == line), "no `{line}` in:\n{body}");
    }
}
