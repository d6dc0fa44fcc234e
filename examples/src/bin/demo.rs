//! Serves both services in-process and shows each `#[intercept]` policy acting, one
//! checked line per scenario. Exits non-zero at the first expectation that fails.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_intercept_examples::coffee::order_service_client::OrderServiceClient;
use tonic_intercept_examples::coffee::{ChatMessage, Order, SubscribeRequest};
use tonic_intercept_examples::orders::{CHAT_PER_SECOND, Feed, SUBSCRIBE_PER_SECOND};
use tonic_intercept_examples::pb::user_service_client::UserServiceClient;
use tonic_intercept_examples::pb::{
    CreateUserRequest, GetUserRequest, ListUsersRequest, UserUpdate,
};
use tonic_intercept_examples::users::{
    IMPORT_USERS_MAX, LIST_USERS_MAX, LIST_USERS_PER_SECOND, MAX_RECORD_BYTES,
};
use tonic_intercept_examples::{ADA_TOKEN, Services, connect, demo_tokens, serve, with_token};

type Users = UserServiceClient<Channel>;
type Orders = OrderServiceClient<Channel>;

/// Fails the scenario with a message when `$cond` does not hold.
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err(format!($($message)+));
        }
    };
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("✘ {failure}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let started = Instant::now();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("local address: {e}"))?;
    let services = Services::new(demo_tokens());
    let server_side = services.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, services, async {
        let _ = stopped.await;
    }));
    println!("serving users.v1.UserService and coffee.v1.OrderService on {addr}");

    let (_, mut orders) = scenarios(addr, &server_side).await?;

    // A live feed is still open when the server is asked to stop.
    let live = ok(
        "Subscribe",
        orders.subscribe(subscribe_request("soho")).await,
    )?;
    let mut live = live.into_inner();
    ok("Subscribe", live.next().await.transpose())?;
    let _ = stop.send(());
    let mut end = Code::Ok;
    while let Some(order) = live.next().await {
        if let Err(status) = order {
            end = status.code();
        }
    }
    ensure!(
        end == Code::Unavailable,
        "a live Subscribe ended with {} at shutdown",
        code_name(end)
    );
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .map_err(|_| "the server did not shut down within 5s".to_owned())?
        .map_err(|e| format!("server task: {e}"))?
        .map_err(|e| format!("server: {e}"))?;
    println!(
        "✔ shutdown: the live Subscribe ended with UNAVAILABLE, server stopped gracefully; demo took {:.2}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs every scenario; returns the clients, still connected.
async fn scenarios(addr: SocketAddr, server: &Services) -> Result<(Users, Orders), String> {
    let (mut users, mut orders) = connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    pass(refused_without_token(&mut users).await?);
    pass(public_sign_up(&mut users).await?);
    pass(authenticated_lookup(&mut users).await?);
    pass(hook_refuses_empty_name(&mut users, server).await?);
    pass(import_counts_rejects(&mut users, server).await?);
    pass(import_over_max_messages(&mut users, server).await?);
    pass(import_over_max_bytes(&mut users).await?);
    for line in list_cut_and_paced(&mut users, server).await? {
        pass(line);
    }
    pass(dropped_subscription_stops_producer(&mut orders, server.orders.feed()).await?);
    pass(subscription_deadline(&mut orders, server.orders.feed()).await?);
    pass(upload_counts_rejects(&mut orders, server).await?);
    pass(user_updates(&mut users).await?);
    pass(chat(&mut orders).await?);
    Ok((users, orders))
}

fn pass(line: String) {
    println!("✔ {line}");
}

/// `ResourceExhausted` -> `RESOURCE_EXHAUSTED`, as gRPC spells codes.
fn code_name(code: Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

fn expect_code<T>(what: &str, result: Result<T, Status>, expected: Code) -> Result<(), String> {
    match result {
        Err(status) if status.code() == expected => Ok(()),
        Err(status) => Err(format!(
            "{what}: expected {}, got {}: {}",
            code_name(expected),
            code_name(status.code()),
            status.message()
        )),
        Ok(_) => Err(format!("{what}: expected {}, got OK", code_name(expected))),
    }
}

fn ok<T>(what: &str, result: Result<T, Status>) -> Result<T, String> {
    result.map_err(|status| {
        format!(
            "{what}: expected OK, got {}: {}",
            code_name(status.code()),
            status.message()
        )
    })
}

fn record(name: &str, email: &str) -> CreateUserRequest {
    CreateUserRequest {
        name: name.into(),
        email: email.into(),
    }
}

async fn refused_without_token(users: &mut Users) -> Result<String, String> {
    let anonymous = users.get_user(GetUserRequest { id: 1 }).await;
    expect_code("GetUser without a token", anonymous, Code::Unauthenticated)?;
    let forged = users
        .get_user(with_token(GetUserRequest { id: 1 }, "forged"))
        .await;
    expect_code("GetUser with a forged token", forged, Code::Unauthenticated)?;
    Ok("GetUser without a token, and with a forged one: UNAUTHENTICATED".into())
}

async fn public_sign_up(users: &mut Users) -> Result<String, String> {
    let request = record("Ada Lovelace", "ada@example.com");
    let user = ok("CreateUser", users.create_user(request).await)?.into_inner();
    Ok(format!(
        "CreateUser is public: user #{} {} signed up without a token",
        user.id, user.name
    ))
}

async fn authenticated_lookup(users: &mut Users) -> Result<String, String> {
    let request = with_token(GetUserRequest { id: 1 }, ADA_TOKEN);
    let user = ok("GetUser with a token", users.get_user(request).await)?.into_inner();
    ensure!(user.name == "Ada Lovelace", "GetUser #1 returned {user:?}");
    Ok(format!("GetUser with ada's token: #1 is {}", user.name))
}

async fn hook_refuses_empty_name(users: &mut Users, server: &Services) -> Result<String, String> {
    let before = server.users.count();
    let result = users.create_user(record("  ", "nobody@example.com")).await;
    expect_code(
        "CreateUser with an empty name",
        result,
        Code::InvalidArgument,
    )?;
    let log = server.users.audit().log();
    let refused = log.refused.load(std::sync::atomic::Ordering::Relaxed);
    ensure!(
        refused == 1,
        "the Audit hook counted {refused} refusals, expected 1"
    );
    ensure!(
        server.users.count() == before,
        "the handler ran: the directory grew"
    );
    Ok(
        "Audit hook refused CreateUser with an empty name: INVALID_ARGUMENT, handler skipped"
            .into(),
    )
}

async fn import_counts_rejects(users: &mut Users, server: &Services) -> Result<String, String> {
    let before = server.users.count();
    let batch: Vec<_> = (1..=64)
        .map(|i| match i {
            16 => record("", "anon@example.com"),
            32 => record("Grace", "grace-at-example.com"),
            48 => record("Edsger", "edsger@"),
            64 => record("\t", ""),
            _ => record(&format!("user{i:02}"), &format!("user{i:02}@example.com")),
        })
        .collect();
    let request = with_token(tokio_stream::iter(batch), ADA_TOKEN);
    let summary = ok("ImportUsers", users.import_users(request).await)?.into_inner();
    ensure!(
        (summary.accepted, summary.rejected) == (60, 4),
        "ImportUsers: expected 60 accepted and 4 rejected, got {summary:?}"
    );
    ensure!(
        server.users.count() == before + 60,
        "ImportUsers stored {} users, expected 60",
        server.users.count() - before
    );
    Ok(format!(
        "ImportUsers of 64 records: {} accepted, {} bad ones rejected without failing the batch",
        summary.accepted, summary.rejected
    ))
}

async fn import_over_max_messages(users: &mut Users, server: &Services) -> Result<String, String> {
    let before = server.users.count();
    let sent = IMPORT_USERS_MAX + 1;
    let batch: Vec<_> = (0..sent)
        .map(|i| record(&format!("bulk{i}"), &format!("bulk{i}@example.com")))
        .collect();
    let result = users
        .import_users(with_token(tokio_stream::iter(batch), ADA_TOKEN))
        .await;
    expect_code(
        "ImportUsers over max_messages_in",
        result,
        Code::ResourceExhausted,
    )?;
    ensure!(
        server.users.count() == before,
        "a refused batch stored users"
    );
    Ok(format!(
        "ImportUsers of {sent} records (max_messages_in = {IMPORT_USERS_MAX}): RESOURCE_EXHAUSTED, nothing stored"
    ))
}

async fn import_over_max_bytes(users: &mut Users) -> Result<String, String> {
    let huge = record(&"x".repeat(MAX_RECORD_BYTES), "huge@example.com");
    let size = prost::Message::encoded_len(&huge);
    let result = users
        .import_users(with_token(tokio_stream::iter([huge]), ADA_TOKEN))
        .await;
    expect_code(
        "ImportUsers over max_message_bytes",
        result,
        Code::ResourceExhausted,
    )?;
    Ok(format!(
        "ImportUsers record of {size} bytes (max_message_bytes = {MAX_RECORD_BYTES}): RESOURCE_EXHAUSTED"
    ))
}

async fn list_cut_and_paced(users: &mut Users, server: &Services) -> Result<[String; 2], String> {
    let stored = server.users.count();
    ensure!(
        stored as u64 > LIST_USERS_MAX,
        "only {stored} users stored: too few to reach the ListUsers limit"
    );
    let started = Instant::now();
    let request = with_token(ListUsersRequest::default(), ADA_TOKEN);
    let mut stream = ok("ListUsers", users.list_users(request).await)?.into_inner();
    let mut received = 0;
    let end = loop {
        match stream.next().await {
            Some(Ok(_)) => received += 1,
            Some(Err(status)) => break Some(status),
            None => break None,
        }
    };
    let elapsed = started.elapsed();
    let code = end.as_ref().map_or(Code::Ok, Status::code);
    ensure!(
        code == Code::ResourceExhausted && received == LIST_USERS_MAX,
        "ListUsers: expected RESOURCE_EXHAUSTED after {LIST_USERS_MAX} users, got {} after {received}",
        code_name(code)
    );
    // The first message passes at once, every later one waits its interval.
    let minimum = Duration::from_secs(received - 1) / LIST_USERS_PER_SECOND;
    ensure!(
        elapsed >= minimum,
        "ListUsers streamed {received} users in {elapsed:?}, faster than {LIST_USERS_PER_SECOND}/s allows"
    );
    Ok([
        format!("ListUsers cut at {received} of {stored} users: RESOURCE_EXHAUSTED"),
        format!(
            "ListUsers paced at {LIST_USERS_PER_SECOND}/s: {received} users took {:.2}s (the rate implies ≥ {:.2}s)",
            elapsed.as_secs_f64(),
            minimum.as_secs_f64()
        ),
    ])
}

fn subscribe_request(shop: &str) -> Request<SubscribeRequest> {
    with_token(SubscribeRequest { shop: shop.into() }, ADA_TOKEN)
}

/// Waits (briefly) for every `Subscribe` producer task to end.
async fn producers_stopped(feed: &Feed) -> Result<(), String> {
    tokio::time::timeout(Duration::from_secs(2), feed.all_stopped())
        .await
        .map_err(|_| {
            format!(
                "{} Subscribe producer(s) still running after 2s",
                feed.running()
            )
        })
}

async fn dropped_subscription_stops_producer(
    orders: &mut Orders,
    feed: &Feed,
) -> Result<String, String> {
    const TAKE: u64 = 5;
    producers_stopped(feed).await?;
    let before = feed.produced();
    let started = Instant::now();
    let stream = ok(
        "Subscribe",
        orders.subscribe(subscribe_request("soho")).await,
    )?
    .into_inner();
    let taken: Vec<Order> = stream
        .take(TAKE as usize)
        .collect::<Result<_, _>>()
        .await
        .map_err(|status| format!("Subscribe: {status}"))?;
    // `take` consumed and dropped the stream: the client has hung up.
    ensure!(
        taken.len() as u64 == TAKE,
        "Subscribe ended after {} orders",
        taken.len()
    );
    let minimum = Duration::from_secs(TAKE - 1) / SUBSCRIBE_PER_SECOND;
    ensure!(
        started.elapsed() >= minimum,
        "Subscribe was not paced at {SUBSCRIBE_PER_SECOND}/s"
    );
    producers_stopped(feed).await?;
    let produced = feed.produced() - before;
    // Besides what the client read: one order waiting in the channel, one held by the
    // pacing, and what was in flight on the connection.
    ensure!(
        produced <= TAKE + 4,
        "the producer handed over {produced} orders for {TAKE} read: it kept working"
    );
    Ok(format!(
        "Subscribe dropped after {TAKE} orders: server producer stopped after handing over {produced}"
    ))
}

async fn subscription_deadline(orders: &mut Orders, feed: &Feed) -> Result<String, String> {
    let timeout = Duration::from_millis(350);
    let mut request = subscribe_request("shoreditch");
    request.set_timeout(timeout);
    let started = Instant::now();
    let mut stream = ok("Subscribe", orders.subscribe(request).await)?.into_inner();
    let mut received = 0;
    let end = loop {
        match stream.next().await {
            Some(Ok(_)) => received += 1,
            Some(Err(status)) => break status.code(),
            None => break Code::Ok,
        }
    };
    let elapsed = started.elapsed();
    ensure!(
        end == Code::DeadlineExceeded,
        "Subscribe with a {timeout:?} grpc-timeout ended with {}",
        code_name(end)
    );
    producers_stopped(feed).await?;
    Ok(format!(
        "Subscribe with a {}ms grpc-timeout: DEADLINE_EXCEEDED after {received} orders ({:.2}s), producer stopped",
        timeout.as_millis(),
        elapsed.as_secs_f64()
    ))
}

async fn upload_counts_rejects(orders: &mut Orders, server: &Services) -> Result<String, String> {
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
    let summary = ok("UploadOrders", orders.upload_orders(request).await)?.into_inner();
    ensure!(
        (summary.accepted, summary.rejected) == (4, 2),
        "UploadOrders: expected 4 accepted and 2 rejected, got {summary:?}"
    );
    ensure!(
        server.orders.uploaded() == 4,
        "UploadOrders stored {} orders, expected 4",
        server.orders.uploaded()
    );
    Ok(format!(
        "UploadOrders of 6 orders: {} accepted, {} rejected (no drink, 12 cups)",
        summary.accepted, summary.rejected
    ))
}

async fn user_updates(users: &mut Users) -> Result<String, String> {
    let (tx, rx) = mpsc::channel(1);
    let request = with_token(ReceiverStream::new(rx), ADA_TOKEN);
    let mut updated = ok("UserUpdates", users.user_updates(request).await)?.into_inner();
    // One at a time: each update is answered before the next is sent.
    for id in 2..=4 {
        let update = UserUpdate {
            id,
            email: format!("renamed{id}@example.org"),
            ..UserUpdate::default()
        };
        tx.send(update)
            .await
            .map_err(|_| "UserUpdates: the server hung up")?;
        let user = match updated.next().await {
            Some(Ok(user)) => user,
            Some(Err(status)) => return Err(format!("UserUpdates #{id}: {status}")),
            None => return Err(format!("UserUpdates ended before answering #{id}")),
        };
        ensure!(
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
        .map_err(|_| "UserUpdates: the server hung up")?;
    let end = updated.next().await.transpose();
    expect_code("UserUpdates for an unknown user", end, Code::NotFound)?;
    Ok("UserUpdates (bidi): 3 updates answered one by one, by ada; an unknown user ends it: NOT_FOUND".into())
}

async fn chat(orders: &mut Orders) -> Result<String, String> {
    const LINES: u32 = 6;
    let (tx, rx) = mpsc::channel(LINES as usize);
    let started = Instant::now();
    let request = with_token(ReceiverStream::new(rx), ADA_TOKEN);
    let mut answers = ok("Chat", orders.chat(request).await)?.into_inner();
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
        started.elapsed()
    });
    let mut heard = Vec::new();
    while let Some(answer) = answers.next().await {
        heard.push(answer.map_err(|status| format!("Chat: {status}"))?.text);
    }
    let elapsed = started.elapsed();
    let talked = talker.await.map_err(|e| format!("Chat sender: {e}"))?;
    let expected: Vec<_> = (1..=LINES)
        .map(|i| format!("ada, you said: line {i}"))
        .collect();
    ensure!(heard == expected, "Chat answered {heard:?}");
    let minimum = Duration::from_secs(u64::from(LINES - 1)) / CHAT_PER_SECOND;
    ensure!(
        elapsed >= minimum,
        "Chat answered faster than {CHAT_PER_SECOND}/s"
    );
    Ok(format!(
        "Chat (bidi): {LINES} lines sent in {:.2}s, answered in order at {CHAT_PER_SECOND}/s by {:.2}s",
        talked.as_secs_f64(),
        elapsed.as_secs_f64()
    ))
}
