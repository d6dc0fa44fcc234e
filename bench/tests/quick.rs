//! The benchmark in miniature, so that it cannot rot: every variant serves every
//! workload, and every call ends with the status it must. Correctness only, no timing.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tonic::Code;
use tonic_intercept_bench::{Handled, Load, Variant, Workload, run_load, serve};

#[tokio::test]
async fn every_variant_serves_every_workload_with_the_right_status() {
    for variant in Variant::ALL {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handled = Arc::new(Handled::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(variant, listener, handled.clone(), async {
            let _ = stopped.await;
        }));

        let mut expected_calls = 0;
        let mut expected_messages_in = 0;
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
    }
}
