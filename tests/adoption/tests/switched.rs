//! What the switch added, next to the unchanged tests of `tests/service.rs`: the typed RPC
//! modules the `#[intercept]` lines name, and their policies at work on the same plain tonic
//! server.

use std::net::SocketAddr;

use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use tonic::transport::Server;
use tonic_intercept::{Rpc, RpcKind};
use tonic_intercept_adoption::Orders;
use tonic_intercept_adoption::inventory::v1::inventory_service_intercept as inventory;
use tonic_intercept_adoption::orders::v1::order_service_client::OrderServiceClient;
use tonic_intercept_adoption::orders::v1::order_service_server::OrderServiceServer;
use tonic_intercept_adoption::orders::v1::{OrderLine, PlaceOrderRequest};

#[test]
fn the_generated_rpc_types_describe_the_protos() {
    let list = inventory::ListItems::DESCRIPTOR;
    assert_eq!(list.path, "/inventory.v1.InventoryService/ListItems");
    assert_eq!(list.kind, RpcKind::ServerStreaming);
    assert_eq!(inventory::RPCS.len(), 2);
}

#[tokio::test]
async fn max_message_bytes_refuses_an_oversized_order() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(OrderServiceServer::new(Orders::default()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut client = OrderServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let order = |note: usize| PlaceOrderRequest {
        lines: vec![OrderLine {
            sku: "b-1".into(),
            quantity: 1,
            unit_price: Some(adoption_common::common::v1::Money::new("EUR", 1)),
        }],
        note: vec![0; note].into(),
        ..Default::default()
    };
    // `limit(max_message_bytes = 65_536)`: refused over it, served under it.
    let refused = client.place_order(order(70_000)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let placed = client
        .place_order(order(60_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(placed.id, "o-1");
}
