//! The live order feed behind `Subscribe`: a simulated counter takes an order every
//! few milliseconds, one producer task per subscriber, and [`Feed`] keeps count of the
//! tasks so one can see them stop when a subscriber goes away.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::coffee::Order;

/// How often the simulated counter takes an order: faster than `Subscribe` may stream.
const ORDER_EVERY: Duration = Duration::from_millis(20);

const DRINKS: [&str; 4] = ["espresso", "flat white", "cortado", "filter"];

/// Starts a producer task for one subscriber of `shop`: the orders the counter takes,
/// until the subscriber's stream is dropped or the feed closes.
pub(super) fn subscribe(feed: Arc<Feed>, shop: String) -> ReceiverStream<Result<Order, Status>> {
    let (tx, rx) = mpsc::channel(1);
    let producing = Producing::start(feed);
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
    ReceiverStream::new(rx)
}

fn counter_order(shop: &str, id: u64) -> Order {
    Order {
        id,
        shop: shop.to_owned(),
        drink: DRINKS[id as usize % DRINKS.len()].to_owned(),
        quantity: 1 + (id % 3) as u32,
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
