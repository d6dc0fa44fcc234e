//! Regression checks of the example handlers' streams, each against its own server:
//! a dropped subscription stops its producer, batch uploads count bad records instead of
//! failing, live updates answer one by one, and a chat is answered in order at its pace.

mod common;

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic_intercept_examples::coffee::{ChatMessage, Order, SubscribeRequest};
use tonic_intercept_examples::orders::{CHAT_PER_SECOND, Feed, SUBSCRIBE_PER_SECOND};
use tonic_intercept_examples::pb::{CreateUserRequest, UserUpdate};
use tonic_intercept_examples::{ADA_TOKEN, with_token};

use common::Served;

/// Waits (briefly) for every `Subscribe` producer task to end.
async fn producers_stopped(feed: &Feed) {
    tokio::time::timeout(Duration::from_secs(2), feed.all_stopped())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} Subscribe producer(s) still running after 2s",
                feed.running()
            )
        });
}

#[tokio::test]
async fn dropped_subscription_stops_producer() {
    const TAKE: u64 = 5;
    let mut served = Served::start().await;
    let feed = served.services.orders.feed();
    producers_stopped(feed).await;
    let before = feed.produced();
    let started = Instant::now();
    let request = with_token(
        SubscribeRequest {
            shop: "soho".into(),
        },
        ADA_TOKEN,
    );
    let stream = served.orders.subscribe(request).await.unwrap().into_inner();
    let taken: Vec<Order> = stream
        .take(TAKE as usize)
        .collect::<Result<_, _>>()
        .await
        .unwrap_or_else(|status| panic!("Subscribe: {status}"));
    // `take` consumed and dropped the stream: the client has hung up.
    assert!(
        taken.len() as u64 == TAKE,
        "Subscribe ended after {} orders",
        taken.len()
    );
    let minimum = Duration::from_secs(TAKE - 1) / SUBSCRIBE_PER_SECOND;
    assert!(
        started.elapsed() >= minimum,
        "Subscribe was not paced at {SUBSCRIBE_PER_SECOND}/s"
    );
    producers_stopped(feed).await;
    let produced = feed.produced() - before;
    // Besides what the client read: one order waiting in the channel, one held by the
    // pacing, and what was in flight on the connection.
    assert!(
        produced <= TAKE + 4,
        "the producer handed over {produced} orders for {TAKE} read: it kept working"
    );
    served.shutdown().await;
}

#[tokio::test]
async fn upload_counts_rejects() {
    let mut served = Served::start().await;
    let order = |drink: &str, quantity| Order {
        drink: drink.into(),
        quantity,
        ..Order::default()
    };
    let batch = [
        order("espresso", 2),
        order("", 1),
        order("cortado", 1),
        order("filter", 12),
        order("flat white", 3),
        order("mocha", 1),
    ];
    let request = with_token(tokio_stream::iter(batch), ADA_TOKEN);
    let summary = served
        .orders
        .upload_orders(request)
        .await
        .unwrap()
        .into_inner();
    assert!(
        (summary.accepted, summary.rejected) == (4, 2),
        "UploadOrders: expected 4 accepted and 2 rejected, got {summary:?}"
    );
    assert!(
        served.services.orders.uploaded() == 4,
        "UploadOrders stored {} orders, expected 4",
        served.services.orders.uploaded()
    );
    served.shutdown().await;
}

#[tokio::test]
async fn user_updates_answer_one_by_one() {
    let mut served = Served::start().await;
    // Users #1 to #4 to update.
    let records = (1..=4).map(|i| CreateUserRequest {
        name: format!("user{i}"),
        email: format!("user{i}@example.com"),
    });
    let request = with_token(tokio_stream::iter(records), ADA_TOKEN);
    let summary = served.users.import_users(request).await.unwrap();
    assert_eq!(summary.into_inner().accepted, 4);

    let (tx, rx) = mpsc::channel(1);
    let request = with_token(ReceiverStream::new(rx), ADA_TOKEN);
    let mut updated = served
        .users
        .user_updates(request)
        .await
        .unwrap()
        .into_inner();
    // One at a time: each update is answered before the next is sent.
    for id in 2..=4 {
        let update = UserUpdate {
            id,
            email: format!("renamed{id}@example.org"),
            ..UserUpdate::default()
        };
        tx.send(update)
            .await
            .expect("UserUpdates: the server hung up");
        let user = match updated.next().await {
            Some(Ok(user)) => user,
            Some(Err(status)) => panic!("UserUpdates #{id}: {status}"),
            None => panic!("UserUpdates ended before answering #{id}"),
        };
        assert!(
            user.id == id && user.email.starts_with("renamed") && user.updated_by == "ada",
            "UserUpdates #{id} answered {user:?}"
        );
    }
    let unknown = UserUpdate {
        id: 999,
        name: "Nobody".into(),
        ..UserUpdate::default()
    };
    tx.send(unknown)
        .await
        .expect("UserUpdates: the server hung up");
    let end = updated.next().await.transpose();
    assert_eq!(
        end.map(|_| ()).map_err(|status| status.code()),
        Err(Code::NotFound),
        "UserUpdates for an unknown user"
    );
    served.shutdown().await;
}

#[tokio::test]
async fn chat_answered_in_order_at_its_pace() {
    const LINES: u32 = 6;
    let mut served = Served::start().await;
    let (tx, rx) = mpsc::channel(LINES as usize);
    let started = Instant::now();
    let request = with_token(ReceiverStream::new(rx), ADA_TOKEN);
    let mut answers = served.orders.chat(request).await.unwrap().into_inner();
    let talker = tokio::spawn(async move {
        for i in 1..=LINES {
            let line = ChatMessage {
                from: "ada".into(),
                text: format!("line {i}"),
            };
            if tx.send(line).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    });
    let mut heard = Vec::new();
    while let Some(answer) = answers.next().await {
        heard.push(
            answer
                .unwrap_or_else(|status| panic!("Chat: {status}"))
                .text,
        );
    }
    let elapsed = started.elapsed();
    talker.await.expect("Chat sender");
    let expected: Vec<_> = (1..=LINES)
        .map(|i| format!("ada, you said: line {i}"))
        .collect();
    assert!(heard == expected, "Chat answered {heard:?}");
    let minimum = Duration::from_secs(u64::from(LINES - 1)) / CHAT_PER_SECOND;
    assert!(
        elapsed >= minimum,
        "Chat answered faster than {CHAT_PER_SECOND}/s"
    );
    served.shutdown().await;
}
