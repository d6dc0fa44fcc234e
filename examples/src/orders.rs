//! `coffee.v1.OrderService`: a live order feed, batch uploads, a chat with the barista,
//! and single orders placed (with idempotency keys) and cancelled (by baristas).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tonic_intercept::{
    Deadline, IdempotencyCache, StaticTokens, TraceCalls, Validate, intercept,
    metrics::ServiceMetrics, trace::LogSize, validate::Violations,
};

use crate::coffee::order_service_intercept as rpc;
use crate::coffee::{
    CancelOrderRequest, CancelOrderResponse, ChatMessage, Order, PlaceOrderRequest,
    SubscribeRequest, UploadSummary,
};
use crate::{Caller, answer_each};

mod desk;
mod feed;

use desk::Desk;
pub use desk::Placed;
pub use feed::Feed;

/// The most cups of one drink in one order.
pub const MAX_QUANTITY: u32 = 10;
/// How many orders a second `Subscribe` streams.
pub const SUBSCRIBE_PER_SECOND: u32 = 10;
/// How many lines a second the barista answers in `Chat`.
pub const CHAT_PER_SECOND: u32 = 10;
/// How long the barista waits in `Chat` for the next line, either way, before hanging up.
pub const CHAT_IDLE_MS: u64 = 1_000;
/// How many `Subscribe` feeds may be live at once: one per screen in the shop.
pub const MAX_LIVE_FEEDS: u32 = 4;
/// How many orders one person may place a second with `PlaceOrder` (in bursts of as
/// many); a faster client is told when to retry.
pub const PLACE_ORDER_PER_SECOND: u32 = 10;
/// How long a placed order is replayed to a retry with the same `idempotency-key`.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(600);
/// How many idempotency keys the desk remembers at most.
pub const IDEMPOTENCY_KEYS: usize = 10_000;
/// The drink whose machine is broken: `PlaceOrder` panics on it, a simulated bug that
/// `recover` turns into `INTERNAL` without taking the server down.
pub const UNICORN: &str = "unicorn frappuccino";
/// The id of the first order `PlaceOrder` takes.
pub const FIRST_PLACED_ID: u64 = 1_001;

/// The order desk service.
#[derive(Debug, Clone)]
pub struct Orders {
    tokens: StaticTokens<Caller>,
    feed: Arc<Feed>,
    uploaded: Arc<Mutex<Vec<Order>>>,
    desk: Arc<Desk>,
    placed_cache: IdempotencyCache<rpc::PlaceOrder>,
    trace: TraceCalls<LogSize>,
    metrics: ServiceMetrics<rpc::Service>,
}

impl Orders {
    /// An order desk accepting `tokens` for every RPC, counting its calls in `metrics`
    /// (from [`ServerMetrics::service`](tonic_intercept::ServerMetrics::service)).
    pub fn new(tokens: StaticTokens<Caller>, metrics: ServiceMetrics<rpc::Service>) -> Self {
        Self {
            tokens,
            feed: Arc::default(),
            uploaded: Arc::default(),
            desk: Arc::default(),
            placed_cache: IdempotencyCache::new(IDEMPOTENCY_TTL, IDEMPOTENCY_KEYS),
            // Each message's size at DEBUG: orders hold nothing secret, but sizes are enough.
            trace: TraceCalls::new().messages(LogSize),
            metrics,
        }
    }

    /// Every order `PlaceOrder` took, in order: what its handler did (a replayed or a
    /// refused call adds nothing).
    pub fn placed(&self) -> Vec<Placed> {
        self.desk.all()
    }

    /// How many orders `PlaceOrder` took.
    pub fn placed_count(&self) -> usize {
        self.desk.count()
    }

    /// The order `PlaceOrder` took with this id.
    pub fn placed_order(&self, id: u64) -> Option<Placed> {
        self.placed().into_iter().find(|p| p.order.id == id)
    }

    /// What the `Subscribe` producers did.
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// How many orders `UploadOrders` accepted so far.
    pub fn uploaded(&self) -> usize {
        self.uploaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// A `PlaceOrder` request that can be made: a drink, and 1 to [`MAX_QUANTITY`] cups.
impl Validate for PlaceOrderRequest {
    fn validate(&self, violations: &mut Violations) {
        if self.drink.trim().is_empty() {
            violations.field("drink", "must name a drink");
        }
        if !(1..=MAX_QUANTITY).contains(&self.quantity) {
            violations.field("quantity", format!("must be 1 to {MAX_QUANTITY}"));
        }
    }
}

fn caller_name<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<Caller>()
        .map_or_else(|| "someone".to_owned(), |caller| caller.name.clone())
}

// The `.proto` adds its own: `PlaceOrder` answers within 2 s (`timeout_ms: 2000`), and
// `CancelOrder` needs the `barista` role.
#[intercept(
    // A panic in a handler, hook or stream answers INTERNAL and the server serves on.
    recover,
    // Every call in its span, with a "finished call" event; message sizes at DEBUG.
    trace(self.trace: TraceCalls<LogSize>),
    metrics(self.metrics),
    auth(self.tokens),
    // The roles the `.proto` declares.
    roles(CancelOrder),
    validate(PlaceOrder),
    idempotency(self.placed_cache, PlaceOrder),
    limit(PlaceOrder, calls_per_second_per_identity = PLACE_ORDER_PER_SECOND),
    limit(Subscribe, messages_per_second_out = SUBSCRIBE_PER_SECOND, max_in_flight = MAX_LIVE_FEEDS),
    limit(UploadOrders, max_messages_in = 500, max_message_bytes = 512, timeout_ms = 30_000),
    limit(Chat, max_messages_in = 100, max_message_bytes = 1_024, messages_per_second_out = CHAT_PER_SECOND, timeout_ms = 600_000, idle_timeout_ms = CHAT_IDLE_MS),
)]
#[tonic::async_trait]
impl crate::coffee::order_service_server::OrderService for Orders {
    type SubscribeStream = ReceiverStream<Result<Order, Status>>;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let shop = request.into_inner().shop;
        Ok(Response::new(feed::subscribe(self.feed.clone(), shop)))
    }

    async fn upload_orders(
        &self,
        request: Request<Streaming<Order>>,
    ) -> Result<Response<UploadSummary>, Status> {
        let mut orders = request.into_inner();
        let mut accepted = Vec::new();
        let mut rejected = 0;
        while let Some(order) = orders.message().await? {
            if order.drink.trim().is_empty() || !(1..=MAX_QUANTITY).contains(&order.quantity) {
                rejected += 1;
            } else {
                accepted.push(order);
            }
        }
        let summary = UploadSummary {
            accepted: accepted.len() as u64,
            rejected,
        };
        self.uploaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(accepted);
        Ok(Response::new(summary))
    }

    type ChatStream = ReceiverStream<Result<ChatMessage, Status>>;

    async fn chat(
        &self,
        request: Request<Streaming<ChatMessage>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        let caller = caller_name(&request);
        let answers = answer_each(request.into_inner(), move |line: ChatMessage| {
            Ok(ChatMessage {
                from: "barista".into(),
                text: format!("{caller}, you said: {}", line.text),
            })
        });
        Ok(Response::new(answers))
    }
    async fn place_order(
        &self,
        request: Request<PlaceOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let time_left = Deadline::current().map(|d| d.remaining());
        let by = caller_name(&request);
        // Already valid here: `validate(PlaceOrder)` refused the rest.
        let request = request.into_inner();
        if request.drink == UNICORN {
            // A simulated bug. The client sees `INTERNAL: PlaceOrder: internal error`;
            // the text stays in the server's log.
            panic!("the {UNICORN} machine exploded: glitter in the steam wand (bug #4711)");
        }
        Ok(Response::new(self.desk.take(request, by, time_left)))
    }

    async fn cancel_order(
        &self,
        request: Request<CancelOrderRequest>,
    ) -> Result<Response<CancelOrderResponse>, Status> {
        let order = self.desk.cancel(request.into_inner().id)?;
        Ok(Response::new(CancelOrderResponse { order: Some(order) }))
    }
}
