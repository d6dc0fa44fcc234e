//! `coffee.v1.OrderService`: a live order feed, batch uploads, a chat with the barista,
//! and single orders placed (with idempotency keys) and cancelled (by baristas).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tonic_intercept::{
    Deadline, IdempotencyCache, LogSize, ServiceMetrics, StaticTokens, TraceCalls, Validate,
    Violations, intercept,
};

use crate::coffee::order_service_intercept as rpc;
use crate::coffee::{
    CancelOrderRequest, CancelOrderResponse, ChatMessage, Order, PlaceOrderRequest,
    SubscribeRequest, UploadSummary,
};
use crate::{Caller, answer_each};

/// How often the simulated counter takes an order: faster than `Subscribe` may stream.
const ORDER_EVERY: Duration = Duration::from_millis(20);

const DRINKS: [&str; 4] = ["espresso", "flat white", "cortado", "filter"];

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
    desk: Arc<Mutex<Vec<Placed>>>,
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
        self.desk
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many orders `PlaceOrder` took.
    pub fn placed_count(&self) -> usize {
        self.desk
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
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

/// Bookkeeping of the `Subscribe` producer tasks, so one can see them stop.
#[derive(Debug)]
pub struct Feed {
    produced: AtomicU64,
    running: watch::Sender<usize>,
    closing: watch::Sender<bool>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            produced: AtomicU64::new(0),
            running: watch::Sender::new(0),
            closing: watch::Sender::new(false),
        }
    }
}

impl Feed {
    /// Orders handed to subscribers' streams so far, over all subscriptions.
    pub fn produced(&self) -> u64 {
        self.produced.load(Ordering::SeqCst)
    }

    /// Producer tasks still running.
    pub fn running(&self) -> usize {
        *self.running.borrow()
    }

    /// Ends every live subscription, now and from now on, with `UNAVAILABLE`: a live
    /// feed never ends by itself, so a graceful shutdown would wait for it forever.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Waits until no producer task is running.
    pub async fn all_stopped(&self) {
        let mut running = self.running.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = running.wait_for(|&n| n == 0).await;
    }
}

/// Counts a producer task as running until it is dropped, even by a panic.
struct Producing(Arc<Feed>);

impl Producing {
    fn start(feed: Arc<Feed>) -> Self {
        feed.running.send_modify(|n| *n += 1);
        Self(feed)
    }
}

impl Drop for Producing {
    fn drop(&mut self) {
        self.0.running.send_modify(|n| *n -= 1);
    }
}

/// An order taken by `PlaceOrder`, as the desk's ledger keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    /// The order, as answered.
    pub order: Order,
    /// Who placed it.
    pub by: String,
    /// How long the call had left when the handler took it: the earlier of the client's
    /// `grpc-timeout` and the `.proto`'s `timeout_ms`, read from the request's
    /// [`Deadline`] extension.
    pub time_left: Option<Duration>,
    /// Whether a barista cancelled it.
    pub cancelled: bool,
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

fn counter_order(shop: &str, id: u64) -> Order {
    Order {
        id,
        shop: shop.to_owned(),
        drink: DRINKS[id as usize % DRINKS.len()].to_owned(),
        quantity: 1 + (id % 3) as u32,
    }
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
        let (tx, rx) = mpsc::channel(1);
        let producing = Producing::start(self.feed.clone());
        tokio::spawn(async move {
            let feed = &producing.0;
            let mut closing = feed.closing.subscribe();
            let mut ticks = tokio::time::interval(ORDER_EVERY);
            for id in 1.. {
                let closed = tokio::select! {
                    _ = ticks.tick() => false,
                    _ = closing.wait_for(|&closing| closing) => true,
                };
                if closed {
                    let _ = tx
                        .send(Err(Status::unavailable("the server is shutting down")))
                        .await;
                    break;
                }
                // Fails once the subscriber's stream is dropped: the client hung up, a
                // limit or the deadline ended the call.
                if tx.send(Ok(counter_order(&shop, id))).await.is_err() {
                    break;
                }
                feed.produced.fetch_add(1, Ordering::SeqCst);
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
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
        let PlaceOrderRequest {
            shop,
            drink,
            quantity,
        } = request.into_inner();
        if drink == UNICORN {
            // A simulated bug. The client sees `INTERNAL: PlaceOrder: internal error`;
            // the text stays in the server's log.
            panic!("the {UNICORN} machine exploded: glitter in the steam wand (bug #4711)");
        }
        let mut desk = self.desk.lock().unwrap_or_else(PoisonError::into_inner);
        let order = Order {
            id: FIRST_PLACED_ID + desk.len() as u64,
            shop,
            drink,
            quantity,
        };
        tracing::info!(
            id = order.id,
            by = by.as_str(),
            time_left_ms = time_left.map(|left| left.as_millis() as u64),
            "order placed"
        );
        desk.push(Placed {
            order: order.clone(),
            by,
            time_left,
            cancelled: false,
        });
        Ok(Response::new(order))
    }

    async fn cancel_order(
        &self,
        request: Request<CancelOrderRequest>,
    ) -> Result<Response<CancelOrderResponse>, Status> {
        let id = request.into_inner().id;
        let mut desk = self.desk.lock().unwrap_or_else(PoisonError::into_inner);
        let placed = desk
            .iter_mut()
            .find(|placed| placed.order.id == id)
            .ok_or_else(|| Status::not_found(format!("no order #{id}")))?;
        if placed.cancelled {
            return Err(Status::failed_precondition(format!(
                "order #{id} is already cancelled"
            )));
        }
        placed.cancelled = true;
        Ok(Response::new(CancelOrderResponse {
            order: Some(placed.order.clone()),
        }))
    }
}
