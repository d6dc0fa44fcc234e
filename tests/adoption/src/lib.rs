//! A realistic existing tonic service, as a team has it before it adopts tonic-intercept:
//! two packages (`inventory.v1` with a server-streaming RPC, `orders.v1`), serde derives on
//! every message, `bytes` fields, the shared `common.v1` types of another crate of the
//! workspace (`adoption-common`) through `extern_path`, and one `_includes.rs`.
//!
//! The switch took exactly this:
//! - `Cargo.toml`: `tonic-prost-build` became `tonic-intercept-build` in
//!   `[build-dependencies]`, and `tonic-intercept` joined `[dependencies]`;
//! - `build.rs`: `tonic_prost_build::configure()` became `tonic_intercept_build::configure()`
//!   (the other options are unchanged);
//! - on each service impl, `#[tonic_intercept::intercept(..)]` lines: `public(*)` (the
//!   service has no authentication) and policies that need no field of the service struct
//!   (`limit(..)`, `trace`, `recover`). `auth(self.tokens)` or `metrics(self.metrics)` would
//!   add a field.
//!
//! Nothing else changed: the handlers, the servers and the tests in `tests/service.rs` are
//! plain tonic, `tests/same_as_tonic.rs` checks that the generated prost and tonic code is
//! byte for byte what tonic-prost-build emits, and `tests/switched.rs` shows the policies at
//! work.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

// `pub mod inventory { pub mod v1 { .. } }` and `pub mod orders { pub mod v1 { .. } }`.
include!(concat!(env!("OUT_DIR"), "/_includes.rs"));

use adoption_common::common::v1::Money;
use inventory::v1::{Category, GetItemRequest, Item, ListItemsRequest};
use orders::v1::{GetOrderRequest, Order, OrderStatus, PlaceOrderRequest};

/// The stock, by SKU.
#[derive(Debug)]
pub struct Inventory {
    items: BTreeMap<String, Item>,
}

impl Inventory {
    /// A shop with the given items.
    pub fn new(items: impl IntoIterator<Item = Item>) -> Self {
        Inventory {
            items: items.into_iter().map(|i| (i.sku.clone(), i)).collect(),
        }
    }
}

#[tonic_intercept::intercept(
    public(*), // the service had no authentication, and keeps none
    limit(timeout_ms = 5_000),
    limit(ListItems, max_messages_out = 10_000),
    trace,
    recover,
)]
#[tonic::async_trait]
impl inventory::v1::inventory_service_server::InventoryService for Inventory {
    async fn get_item(&self, request: Request<GetItemRequest>) -> Result<Response<Item>, Status> {
        let sku = request.into_inner().sku;
        match self.items.get(&sku) {
            Some(item) => Ok(Response::new(item.clone())),
            None => Err(Status::not_found(format!("no item {sku}"))),
        }
    }

    type ListItemsStream = ReceiverStream<Result<Item, Status>>;

    async fn list_items(
        &self,
        request: Request<ListItemsRequest>,
    ) -> Result<Response<Self::ListItemsStream>, Status> {
        let category = request.into_inner().category();
        let items: Vec<Item> = self
            .items
            .values()
            .filter(|i| category == Category::Unspecified || i.category() == category)
            .cloned()
            .collect();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            for item in items {
                if tx.send(Ok(item)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The orders taken, in memory.
#[derive(Debug, Default)]
pub struct Orders {
    next_id: AtomicU64,
    orders: Mutex<BTreeMap<String, Order>>,
}

#[tonic_intercept::intercept(
    public(*),
    limit(timeout_ms = 2_000, max_message_bytes = 65_536),
    recover,
)]
#[tonic::async_trait]
impl orders::v1::order_service_server::OrderService for Orders {
    async fn place_order(
        &self,
        request: Request<PlaceOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let request = request.into_inner();
        let Some(first) = request.lines.first() else {
            return Err(Status::invalid_argument("an order needs lines"));
        };
        let currency = first
            .unit_price
            .as_ref()
            .map(|p| p.currency_code.clone())
            .unwrap_or_default();
        let mut units = 0;
        for line in &request.lines {
            let price = line.unit_price.clone().unwrap_or_default();
            if price.currency_code != currency {
                return Err(Status::invalid_argument("lines in several currencies"));
            }
            units += price.units * i64::from(line.quantity);
        }
        let id = format!("o-{}", self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        let order = Order {
            id: id.clone(),
            customer_id: request.customer_id,
            lines: request.lines,
            total: Some(Money::new(&currency, units)),
            status: OrderStatus::Placed.into(),
            note: request.note,
        };
        self.orders.lock().unwrap().insert(id, order.clone());
        Ok(Response::new(order))
    }

    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let id = request.into_inner().id;
        match self.orders.lock().unwrap().get(&id) {
            Some(order) => Ok(Response::new(order.clone())),
            None => Err(Status::not_found(format!("no order {id}"))),
        }
    }
}
