//! `coffee.v1.OrderService`: a live order feed, batch uploads and a chat with the barista.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tonic_intercept::{StaticTokens, intercept};

use crate::coffee::{ChatMessage, Order, SubscribeRequest, UploadSummary};
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

/// The order desk service.
#[derive(Debug, Clone)]
pub struct Orders {
    tokens: StaticTokens<Caller>,
    feed: Arc<Feed>,
    uploaded: Arc<Mutex<Vec<Order>>>,
}

impl Orders {
    /// An order desk accepting `tokens` for every RPC.
    pub fn new(tokens: StaticTokens<Caller>) -> Self {
        Self {
            tokens,
            feed: Arc::default(),
            uploaded: Arc::default(),
        }
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

fn counter_order(shop: &str, id: u64) -> Order {
    Order {
        id,
        shop: shop.to_owned(),
        drink: DRINKS[id as usize % DRINKS.len()].to_owned(),
        quantity: 1 + (id % 3) as u32,
    }
}

#[intercept(
    auth(self.tokens),
    limit(Subscribe, messages_per_second_out = SUBSCRIBE_PER_SECOND),
    limit(UploadOrders, max_messages_in = 500, max_message_bytes = 512, timeout_ms = 30_000),
    limit(Chat, max_messages_in = 100, max_message_bytes = 1_024, messages_per_second_out = CHAT_PER_SECOND, timeout_ms = 600_000),
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
        let caller = request
            .extensions()
            .get::<Caller>()
            .map_or_else(|| "someone".to_owned(), |caller| caller.name.clone());
        let answers = answer_each(request.into_inner(), move |line: ChatMessage| {
            Ok(ChatMessage {
                from: "barista".into(),
                text: format!("{caller}, you said: {}", line.text),
            })
        });
        Ok(Response::new(answers))
    }
}
