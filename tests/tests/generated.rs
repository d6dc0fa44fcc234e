//! The generated code for `proto/echo/v1/echo.proto` and `proto/catalog/v1/catalog.proto`,
//! checked in and compared on every run: a change to the generator shows up as a diff
//! here. The same code is what this crate compiles and serves in the other tests.
//!
//! After an intended change: `UPDATE_SNAPSHOTS=1 cargo test --workspace --test generated`.

fn matches_snapshot(generated: &str, snapshot: &str) {
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(snapshot, generated).unwrap();
    }
    let expected = std::fs::read_to_string(snapshot).unwrap_or_default();
    assert!(
        expected == generated,
        "generated code differs from {snapshot}; review the diff and rerun with UPDATE_SNAPSHOTS=1"
    );
}

#[test]
fn generated_code_matches_snapshot() {
    matches_snapshot(
        include_str!(concat!(env!("OUT_DIR"), "/echo.v1.rs")),
        concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots/echo.v1.rs"),
    );
}

#[test]
fn generated_catalog_matches_snapshot() {
    matches_snapshot(
        include_str!(concat!(env!("OUT_DIR"), "/catalog.v1.rs")),
        concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots/catalog.v1.rs"),
    );
}

#[test]
fn only_the_asked_protos_are_generated() {
    // The options file only annotates descriptors: no `tonic_intercept.v1.rs`, and no
    // `google.protobuf.rs` for the `descriptor.proto` it imports.
    let mut files: Vec<String> = std::fs::read_dir(env!("OUT_DIR"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".rs"))
        .collect();
    files.sort();
    assert_eq!(files, ["catalog.v1.rs", "echo.v1.rs", "flaky.v1.rs"]);
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

#[test]
fn service_type_and_indices() {
    use tonic_intercept::{Rpc, Service};
    use tonic_intercept_tests::pb::echo_service_intercept as rpc;

    assert_eq!(<rpc::Service as Service>::NAME, "echo.v1.EchoService");
    assert_eq!(<rpc::Service as Service>::RPCS.len(), 4);
    assert_eq!(rpc::Unary::INDEX, 0);
    assert_eq!(rpc::ServerStream::INDEX, 1);
    assert_eq!(rpc::ClientStream::INDEX, 2);
    assert_eq!(rpc::Bidi::INDEX, 3);
    assert_eq!(
        <rpc::Service as Service>::RPCS[rpc::Bidi::INDEX],
        &rpc::Bidi::DESCRIPTOR
    );
    // No option in echo.proto: nothing declared.
    for d in rpc::RPCS {
        assert_eq!(d.policy, tonic_intercept::RpcPolicy::new(), "{}", d.path);
    }
    fn service_of<R: Rpc<Service = rpc::Service>>() {}
    service_of::<rpc::Unary>();
}

#[test]
fn catalog_descriptors_carry_the_declared_policy() {
    use std::time::Duration;
    use tonic_intercept::{Limits, Rpc, RpcKind, RpcPolicy, Service};
    use tonic_intercept_tests::catalog_pb::catalog_service_intercept as rpc;

    assert_eq!(<rpc::Service as Service>::NAME, "catalog.v1.CatalogService");
    assert_eq!(<rpc::Service as Service>::RPCS.len(), 4);
    assert_eq!(
        [
            rpc::GetItem::INDEX,
            rpc::ListItems::INDEX,
            rpc::DeleteItem::INDEX,
            rpc::WatchItems::INDEX
        ],
        [0, 1, 2, 3]
    );
    assert_eq!(rpc::WatchItems::DESCRIPTOR.kind, RpcKind::Bidi);

    // `{ public: true }` plus the service's `timeout_ms: 5000`.
    let get = rpc::GetItem::DESCRIPTOR.policy;
    assert_eq!(
        get,
        RpcPolicy::new()
            .public()
            .with_limits(Limits::new().timeout(Duration::from_millis(5000)))
    );
    assert!(get.roles.is_empty());

    // The RPC's own `timeout_ms` wins over the service default.
    let list = rpc::ListItems::DESCRIPTOR.policy;
    assert_eq!(list.limits().get_max_messages_out(), Some(3));
    assert_eq!(
        list.limits().get_timeout(),
        Some(Duration::from_millis(2000))
    );
    assert_eq!(list.limits().get_max_messages_in(), None);
    assert!(!list.public);

    let delete = rpc::DeleteItem::DESCRIPTOR.policy;
    assert_eq!(delete.roles, ["admin"]);
    assert_eq!(
        delete.limits().get_timeout(),
        Some(Duration::from_millis(5000))
    );
    assert!(!delete.public);

    let watch = rpc::WatchItems::DESCRIPTOR.policy;
    assert_eq!(
        watch,
        RpcPolicy::new().with_limits(
            Limits::new()
                .timeout(Duration::from_millis(5000))
                .idle_timeout(Duration::from_millis(200))
        )
    );

    // `RPCS` and `Service::RPCS` are the same descriptors, in `.proto` order.
    let paths: Vec<&str> = <rpc::Service as Service>::RPCS
        .iter()
        .map(|d| d.method)
        .collect();
    assert_eq!(paths, ["GetItem", "ListItems", "DeleteItem", "WatchItems"]);
    assert_eq!(rpc::RPCS[rpc::ListItems::INDEX].policy, list);
}
