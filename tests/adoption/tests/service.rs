//! The service's own tests, from before the switch to tonic-intercept, unchanged: plain
//! tonic servers on 127.0.0.1 and plain tonic clients.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use adoption_common::common::v1::Money;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use tonic::transport::{Channel, Server};
use tonic_intercept_adoption::inventory::v1::inventory_service_client::InventoryServiceClient;
use tonic_intercept_adoption::inventory::v1::inventory_service_server::InventoryServiceServer;
use tonic_intercept_adoption::inventory::v1::{Category, GetItemRequest, Item, ListItemsRequest};
use tonic_intercept_adoption::orders::v1::order_service_client::OrderServiceClient;
use tonic_intercept_adoption::orders::v1::order_service_server::OrderServiceServer;
use tonic_intercept_adoption::orders::v1::{
    GetOrderRequest, Order, OrderLine, OrderStatus, PlaceOrderRequest, place_order_request,
};
use tonic_intercept_adoption::{Inventory, Orders};

fn item(sku: &str, name: &str, category: Category, units: i64) -> Item {
    Item {
        sku: sku.into(),
        name: name.into(),
        price: Some(Money::new("EUR", units)),
        quantity: 3,
        thumbnail: bytes::Bytes::from_static(b"\xff\xd8\xff"),
        attributes: BTreeMap::from([("colour".to_owned(), "red".to_owned())]),
        category: category.into(),
    }
}

fn stock() -> Vec<Item> {
    vec![
        item("b-1", "Dune", Category::Book, 12),
        item("t-1", "Hammer", Category::Tool, 20),
        item("b-2", "Emma", Category::Book, 9),
    ]
}

async fn serve() -> Channel {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(InventoryServiceServer::new(Inventory::new(stock())))
            .add_service(OrderServiceServer::new(Orders::default()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn get_item_returns_the_item_or_not_found() {
    let mut client = InventoryServiceClient::new(serve().await);
    let found = client
        .get_item(GetItemRequest { sku: "t-1".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found, item("t-1", "Hammer", Category::Tool, 20));

    let missing = client
        .get_item(GetItemRequest { sku: "x-9".into() })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(missing.message(), "no item x-9");
}

#[tokio::test]
async fn list_items_streams_in_sku_order_and_filters() {
    let mut client = InventoryServiceClient::new(serve().await);
    let all: Vec<String> = client
        .list_items(ListItemsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .map(|item| item.unwrap().sku)
        .collect()
        .await;
    assert_eq!(all, ["b-1", "b-2", "t-1"]);

    let books: Vec<Item> = client
        .list_items(ListItemsRequest {
            category: Category::Book.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(books.len(), 2);
    assert!(books.iter().all(|i| i.category() == Category::Book));
}

fn line(sku: &str, quantity: u32, currency: &str, units: i64) -> OrderLine {
    OrderLine {
        sku: sku.into(),
        quantity,
        unit_price: Some(Money::new(currency, units)),
    }
}

#[tokio::test]
async fn place_order_totals_the_lines_and_keeps_the_order() {
    let mut client = OrderServiceClient::new(serve().await);
    let placed = client
        .place_order(PlaceOrderRequest {
            customer_id: "c-7".into(),
            lines: vec![line("b-1", 2, "EUR", 12), line("t-1", 1, "EUR", 20)],
            note: bytes::Bytes::from_static(b"gift wrap"),
            payment: Some(place_order_request::Payment::CardToken("tok_1".into())),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(placed.id, "o-1");
    assert_eq!(placed.total, Some(Money::new("EUR", 44)));
    assert_eq!(placed.status(), OrderStatus::Placed);
    assert_eq!(&placed.note[..], b"gift wrap");

    let fetched = client
        .get_order(GetOrderRequest { id: "o-1".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, placed);

    let unknown = client
        .get_order(GetOrderRequest { id: "o-2".into() })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn place_order_refuses_empty_and_mixed_currency_orders() {
    let mut client = OrderServiceClient::new(serve().await);
    let empty = client
        .place_order(PlaceOrderRequest::default())
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert_eq!(empty.message(), "an order needs lines");

    let mixed = client
        .place_order(PlaceOrderRequest {
            lines: vec![line("b-1", 1, "EUR", 12), line("t-1", 1, "USD", 20)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(mixed.code(), Code::InvalidArgument);
    assert_eq!(mixed.message(), "lines in several currencies");
}

#[test]
fn messages_round_trip_through_serde_json() {
    let order = Order {
        id: "o-1".into(),
        customer_id: "c-7".into(),
        lines: vec![line("b-1", 2, "EUR", 12)],
        total: Some(Money::new("EUR", 24)),
        status: OrderStatus::Placed.into(),
        note: bytes::Bytes::from_static(b"\x00\x01"),
    };
    let json = serde_json::to_string(&order).unwrap();
    assert_eq!(
        json,
        r#"{"id":"o-1","customer_id":"c-7","lines":[{"sku":"b-1","quantity":2,"unit_price":{"currency_code":"EUR","units":12,"nanos":0}}],"total":{"currency_code":"EUR","units":24,"nanos":0},"status":1,"note":[0,1]}"#
    );
    assert_eq!(serde_json::from_str::<Order>(&json).unwrap(), order);

    let request = PlaceOrderRequest {
        payment: Some(place_order_request::Payment::InvoiceRef("inv-3".into())),
        ..Default::default()
    };
    let json = serde_json::to_string(&request).unwrap();
    assert_eq!(
        serde_json::from_str::<PlaceOrderRequest>(&json).unwrap(),
        request
    );

    let hammer = item("t-1", "Hammer", Category::Tool, 20);
    let json = serde_json::to_string(&hammer).unwrap();
    assert_eq!(serde_json::from_str::<Item>(&json).unwrap(), hammer);
}
