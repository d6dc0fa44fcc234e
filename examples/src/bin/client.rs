//! Calls every RPC of a running `server` once and prints what came back.
//!
//! `cargo run -p tonic-intercept-examples --bin client [ADDR]` (default `127.0.0.1:50051`).

use std::error::Error;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::Status;
use tonic_intercept_examples::coffee::{
    CancelOrderRequest, ChatMessage, Order, PlaceOrderRequest, SubscribeRequest,
};
use tonic_intercept_examples::pb::{
    CreateUserRequest, GetUserRequest, ListUsersRequest, UserUpdate,
};
use tonic_intercept_examples::{ADA_TOKEN, BOB_TOKEN, connect, with_token};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:50051")
        .parse()?;
    let (mut users, mut orders) = connect(addr).await?;

    let sign_up = CreateUserRequest {
        name: "Ada Lovelace".into(),
        email: "ada@example.com".into(),
    };
    let created = users.create_user(sign_up).await.map(|r| r.into_inner());
    show("CreateUser (no token)", &created);
    let id = created.map_or(1, |user| user.id);

    show(
        "GetUser (no token)",
        &users.get_user(GetUserRequest { id }).await,
    );
    let found = users
        .get_user(with_token(GetUserRequest { id }, ADA_TOKEN))
        .await;
    show("GetUser", &found.map(|r| r.into_inner()));

    let batch = (1..=5).map(|i| CreateUserRequest {
        name: if i == 3 {
            String::new()
        } else {
            format!("user{i}")
        },
        email: format!("user{i}@example.com"),
    });
    let request = with_token(tokio_stream::iter(batch), ADA_TOKEN);
    show(
        "ImportUsers",
        &users.import_users(request).await.map(|r| r.into_inner()),
    );

    let request = with_token(ListUsersRequest::default(), ADA_TOKEN);
    match users.list_users(request).await {
        Ok(response) => {
            let listed: Vec<_> = response.into_inner().collect().await;
            let names: Vec<_> = listed.iter().flatten().map(|u| u.name.as_str()).collect();
            println!("ListUsers: {} users {names:?}", names.len());
            if let Some(Err(status)) = listed.last() {
                println!(
                    "ListUsers ended with {:?}: {}",
                    status.code(),
                    status.message()
                );
            }
        }
        Err(status) => show::<()>("ListUsers", &Err(status)),
    }

    let update = UserUpdate {
        id,
        email: "ada@example.org".into(),
        ..UserUpdate::default()
    };
    let request = with_token(tokio_stream::iter([update]), ADA_TOKEN);
    match users.user_updates(request).await {
        Ok(response) => {
            let updated: Vec<_> = response.into_inner().collect().await;
            println!("UserUpdates: {updated:?}");
        }
        Err(status) => show::<()>("UserUpdates", &Err(status)),
    }

    let request = with_token(
        SubscribeRequest {
            shop: "soho".into(),
        },
        ADA_TOKEN,
    );
    match orders.subscribe(request).await {
        Ok(response) => {
            let live: Vec<_> = response.into_inner().take(3).collect().await;
            println!("Subscribe (first 3, then hang up): {live:?}");
        }
        Err(status) => show::<()>("Subscribe", &Err(status)),
    }

    let batch = [("espresso", 2), ("", 1), ("cortado", 11)].map(|(drink, quantity)| Order {
        drink: drink.into(),
        quantity,
        ..Order::default()
    });
    let request = with_token(tokio_stream::iter(batch), ADA_TOKEN);
    show(
        "UploadOrders",
        &orders.upload_orders(request).await.map(|r| r.into_inner()),
    );

    // Placed with an idempotency key: running the client again gets the same order back
    // (for 10 minutes) instead of a second one.
    let order = PlaceOrderRequest {
        shop: "soho".into(),
        drink: "flat white".into(),
        quantity: 1,
    };
    let mut request = with_token(order, ADA_TOKEN);
    request
        .metadata_mut()
        .insert("idempotency-key", "client-example-order-1".parse()?);
    let placed = orders.place_order(request).await;
    let replayed = placed
        .as_ref()
        .is_ok_and(|r| r.metadata().contains_key("idempotency-replayed"));
    let placed = placed.map(|r| r.into_inner());
    show(
        if replayed {
            "PlaceOrder (replayed)"
        } else {
            "PlaceOrder"
        },
        &placed,
    );
    if let Ok(order) = placed {
        let cancel = || CancelOrderRequest { id: order.id };
        show(
            "CancelOrder by ada",
            &orders.cancel_order(with_token(cancel(), ADA_TOKEN)).await,
        );
        show(
            "CancelOrder by bob",
            &orders
                .cancel_order(with_token(cancel(), BOB_TOKEN))
                .await
                .map(|r| r.into_inner()),
        );
    }

    let lines = ["a flat white, please", "oat milk", "thanks!"].map(|text| ChatMessage {
        from: "ada".into(),
        text: text.into(),
    });
    let lines = tokio_stream::iter(lines).throttle(Duration::from_millis(50));
    match orders.chat(with_token(lines, ADA_TOKEN)).await {
        Ok(response) => {
            let mut answers = response.into_inner();
            while let Some(answer) = answers.next().await {
                match answer {
                    Ok(answer) => println!("Chat: {}: {}", answer.from, answer.text),
                    Err(status) => show::<()>("Chat", &Err(status)),
                }
            }
        }
        Err(status) => show::<()>("Chat", &Err(status)),
    }
    Ok(())
}

fn show<T: Debug>(what: &str, result: &Result<T, Status>) {
    match result {
        Ok(value) => println!("{what}: {value:?}"),
        Err(status) => println!("{what}: {:?}: {}", status.code(), status.message()),
    }
}
