//! The `replicas` example end to end: three replica processes sharing one Redis (started
//! by the example from PATH): call rates, an idempotent retry replayed by another
//! replica, Redis paused, stopped and restarted. The example checks every count it prints and exits
//! non-zero at the first miss; this test runs it and reads its report.
//!
//! Skips, saying why, when `redis-server` is not on PATH, unless
//! `TONIC_INTERCEPT_REQUIRE_REDIS=1` (CI), where that is a failure.

use std::process::{Command, Stdio};

#[test]
fn three_replicas_share_call_rates_through_redis() {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var("TONIC_INTERCEPT_REQUIRE_REDIS").as_deref() == Ok("1") {
            panic!("redis-server is not on PATH and TONIC_INTERCEPT_REQUIRE_REDIS=1");
        }
        eprintln!(
            "SKIPPED three_replicas_share_call_rates_through_redis: redis-server is not on PATH \
             (apt-get install redis-server); set TONIC_INTERCEPT_REQUIRE_REDIS=1 to make this a failure"
        );
        return;
    }
    let output = Command::new(env!("CARGO_BIN_EXE_replicas"))
        .output()
        .expect("run the replicas example");
    let report = String::from_utf8_lossy(&output.stdout);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}\n{errors}");
    let checked = |prefix: &str| {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(&format!("✔ {prefix}"))),
            "no `{prefix}` in:\n{report}"
        );
    };
    checked("Pay: ada sent 30 over 3 replicas: 5 OK, 25 RESOURCE_EXHAUSTED");
    checked("Quote: the same: 5 OK, 25 RESOURCE_EXHAUSTED");
    checked("Browse: 15 OK, 15 RESOURCE_EXHAUSTED");
    checked("Pay: bob, meanwhile, 2 of 2 OK");
    checked("payments taken by r1, r2, r3: [3, 3, 1], 7 in all");
    checked(
        "Pay with idempotency-key order-42 on r1: receipt r1-4; retried on r2: receipt r1-4, \
         idempotency-replayed: true; payments taken [4, 3, 1]: one payment",
    );
    checked(
        "the same key with another amount on r3: Some((InvalidArgument, \
         \"Pay: idempotency key reused with a different request\"))",
    );
    checked("Redis paused (SIGSTOP): bob's Pay on r1 Some((Unavailable,");
    checked("Redis stopped: bob's Pay 3 of 3 UNAVAILABLE (fail closed); his Quote 3 of 3 OK");
    checked(
        "grpc_server_limit_backend_errors_total{backend=\"redis\"} of r1, r2, r3 as (Pay, Quote): [(2, 1), (1, 2), (1, 1)]",
    );
    checked("Redis restarted (empty): bob's Pay decided by Redis again");
    assert_eq!(report.lines().filter(|l| l.starts_with('✔')).count(), 11);
    assert!(report.ends_with("all processes stopped\n"), "{report}");
}
