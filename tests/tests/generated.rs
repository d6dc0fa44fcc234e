//! The generated code for `proto/echo/v1/echo.proto`, checked in and compared on every
//! run: a change to the generator shows up as a diff here. The same code is what this
//! crate compiles and serves in the other tests.
//!
//! After an intended change: `UPDATE_SNAPSHOTS=1 cargo test --workspace --test generated`.

const GENERATED: &str = include_str!(concat!(env!("OUT_DIR"), "/echo.v1.rs"));
const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots/echo.v1.rs");

#[test]
fn generated_code_matches_snapshot() {
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(SNAPSHOT, GENERATED).unwrap();
    }
    let expected = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
    assert!(
        expected == GENERATED,
        "generated code differs from {SNAPSHOT}; review the diff and rerun with UPDATE_SNAPSHOTS=1"
    );
}

#[test]
fn descriptors_carry_the_proto() {
    use tonic_intercept::{IdempotencyLevel, Rpc, RpcKind};
    use tonic_intercept_tests::pb::echo_service_intercept as rpc;

    let d = rpc::ServerStream::DESCRIPTOR;
    assert_eq!(d.service, "echo.v1.EchoService");
    assert_eq!(d.method, "ServerStream");
    assert_eq!(d.path, "/echo.v1.EchoService/ServerStream");
    assert_eq!(d.kind, RpcKind::ServerStreaming);
    assert_eq!(d.idempotency, IdempotencyLevel::NoSideEffects);
    assert_eq!(
        rpc::Bidi::DESCRIPTOR.idempotency,
        IdempotencyLevel::Idempotent
    );
    assert_eq!(
        rpc::Unary::DESCRIPTOR.idempotency,
        IdempotencyLevel::Unknown
    );
    let kinds: Vec<RpcKind> = rpc::RPCS.iter().map(|d| d.kind).collect();
    assert_eq!(
        kinds,
        [
            RpcKind::Unary,
            RpcKind::ServerStreaming,
            RpcKind::ClientStreaming,
            RpcKind::Bidi
        ]
    );
    assert_eq!(rpc::SERVICE_NAME, "echo.v1.EchoService");
    // The path tonic routes on is the one tonic's client sends.
    assert_eq!(
        rpc::Unary::DESCRIPTOR.path,
        format!(
            "/{}/Unary",
            tonic_intercept_tests::pb::echo_service_server::SERVICE_NAME
        )
    );
}
