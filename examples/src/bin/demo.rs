//! Serves both services in-process and shows each `#[intercept]` policy acting, one
//! checked line per scenario; then the generated client's policies (retries through
//! injected failures, none for a non-idempotent RPC, a deadline, call credentials); then
//! reads the server's `/metrics` over HTTP and checks that they counted what the demo
//! did. Exits non-zero at the first expectation that fails.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tonic_intercept::prometheus_client::registry::Registry;
use tonic_intercept::tonic_types::StatusExt;
use tonic_intercept::{
    ClientConfig, ClientHook, ClientMetrics, ClientOutcome, ClientPolicy, IDEMPOTENCY_KEY,
    IDEMPOTENCY_REPLAYED, METRICS_CONTENT_TYPE, RETRY_PUSHBACK, RetryPolicy, Rpc, Token,
    TokenProvider, TokenSource, render_metrics,
};
use tonic_intercept_examples::coffee::order_service_client::OrderServiceClient;
use tonic_intercept_examples::coffee::{
    CancelOrderRequest, ChatMessage, Order, PlaceOrderRequest, SubscribeRequest,
};
use tonic_intercept_examples::orders::{
    CHAT_IDLE_MS, CHAT_PER_SECOND, Feed, MAX_LIVE_FEEDS, MAX_QUANTITY, PLACE_ORDER_PER_SECOND,
    SUBSCRIBE_PER_SECOND, UNICORN,
};
use tonic_intercept_examples::pb::user_service_client::UserServiceClient;
use tonic_intercept_examples::pb::user_service_intercept::{self as users_rpc, GetUser};
use tonic_intercept_examples::pb::{
    CreateUserRequest, GetUserRequest, ListUsersRequest, UserUpdate,
};
use tonic_intercept_examples::users::{
    IMPORT_USERS_MAX, LIST_USERS_MAX, LIST_USERS_PER_SECOND, MAX_RECORD_BYTES,
};
use tonic_intercept_examples::{
    ADA_TOKEN, BARISTA, BOB_TOKEN, Services, channel, connect, demo_tokens, serve, serve_metrics,
    with_token,
};

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
    let log = Log::capture();
    quiet_simulated_panics();
    let bind = || async {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("local address: {e}"))?;
        Ok::<_, String>((listener, addr))
    };
    let (listener, addr) = bind().await?;
    let (metrics_listener, metrics_addr) = bind().await?;
    let services = Services::new(demo_tokens());
    let server_side = services.clone();
    let (stop, stopped) = watch::channel(false);
    let stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|&stop| stop).await;
        }
    };
    let metrics_server = tokio::spawn(serve_metrics(
        metrics_listener,
        services.registry.clone(),
        stopped(),
    ));
    let server = tokio::spawn(serve(listener, services, stopped()));
    println!(
        "serving users.v1.UserService and coffee.v1.OrderService on {addr}, metrics at http://{metrics_addr}/metrics"
    );

    pass(metrics_before_first_call(metrics_addr).await?);
    let demo = Demo {
        server: server_side,
        log,
        metrics_addr,
        tally: Tally::default(),
    };
    let (_, mut orders) = scenarios(addr, demo).await?;

    // A live feed is still open when the server is asked to stop.
    let live = ok(
        "Subscribe",
        orders.subscribe(subscribe_request("soho")).await,
    )?;
    let mut live = live.into_inner();
    ok("Subscribe", live.next().await.transpose())?;
    stop.send_replace(true);
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
    tokio::time::timeout(Duration::from_secs(5), metrics_server)
        .await
        .map_err(|_| "the metrics server did not shut down within 5s".to_owned())?
        .map_err(|e| format!("metrics server task: {e}"))?
        .map_err(|e| format!("metrics server: {e}"))?;
    println!(
        "✔ shutdown: the live Subscribe ended with UNAVAILABLE, server stopped gracefully; demo took {:.2}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The server side that scenarios check against, and what the demo's calls should have
/// left in the log and the metrics.
struct Demo {
    server: Services,
    log: Log,
    metrics_addr: SocketAddr,
    tally: Tally,
}

/// Runs every scenario; returns the clients, still connected.
async fn scenarios(addr: SocketAddr, mut demo: Demo) -> Result<(Users, Orders), String> {
    let server = &demo.server;
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

    // Policies of the new RPCs, then the observers.
    let tally = &mut demo.tally;
    pass(order_rate_per_identity(&mut orders, server, tally).await?);
    pass(idempotent_retry(&mut orders, server, tally).await?);
    pass(invalid_order(&mut orders, server, tally).await?);
    pass(cancel_needs_barista(&mut orders, server, tally).await?);
    pass(panic_recovered(&mut orders, server, &demo.log, tally).await?);
    pass(handler_sees_deadline(&mut orders, server, tally).await?);
    pass(live_feeds_in_flight(&mut orders, server.orders.feed()).await?);
    pass(quiet_chat_cut(&mut orders).await?);
    pass(calls_traced(&demo.log, &demo.tally)?);

    // The generated client, under a `ClientConfig`.
    let channel = channel(addr).await.map_err(|e| format!("connect: {e}"))?;
    let (line, mut observed) = client_retries_through_failures(&channel, server).await?;
    pass(line);
    pass(no_retry_for_create_user(&mut observed, server).await?);
    for line in observed.shown()? {
        println!("    {line}");
    }
    pass(client_deadline(&channel, server).await?);
    pass(client_credentials(&channel).await?);
    let (line, shown) = metrics_after_run(demo.metrics_addr, &demo.tally).await?;
    pass(line);
    for series in shown {
        println!("    {series}");
    }
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

// ---------------------------------------------------------------------------------------
// Recovery, tracing, metrics, validation, idempotency, roles, call admission, deadlines.
// ---------------------------------------------------------------------------------------

/// What the demo's calls of `PlaceOrder` and `CancelOrder` ended with, by method and
/// code: what the server's log and metrics must show.
#[derive(Debug, Default)]
struct Tally(BTreeMap<(&'static str, i32), u64>);

impl Tally {
    fn record<T>(&mut self, method: &'static str, result: &Result<T, Status>) {
        let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
        *self.0.entry((method, code as i32)).or_default() += 1;
    }

    fn count(&self, method: &str, code: Code) -> u64 {
        self.0
            .iter()
            .filter(|((m, c), _)| *m == method && *c == code as i32)
            .map(|(_, n)| n)
            .sum()
    }

    fn calls(&self, method: &str) -> u64 {
        self.0
            .iter()
            .filter(|((m, _), _)| *m == method)
            .map(|(_, n)| n)
            .sum()
    }
}

/// The server's log (INFO and up), as its `tracing` subscriber wrote it.
#[derive(Debug, Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    /// Installs a subscriber writing into the returned log, for the whole process.
    fn capture() -> Self {
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .finish();
        // Fails only if a subscriber is already installed; the log checks then fail.
        let _ = tracing::subscriber::set_global_default(subscriber);
        log
    }

    fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for Log {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The unicorn order's panic is expected: keep the default panic message (stderr) for
/// every other panic only. The server logs it anyway, and the demo checks that it does.
fn quiet_simulated_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.payload_as_str().is_some_and(|m| m.contains(UNICORN)) {
            default(info);
        }
    }));
}

fn order(drink: &str, quantity: u32, token: &str) -> Request<PlaceOrderRequest> {
    let order = PlaceOrderRequest {
        shop: "soho".into(),
        drink: drink.into(),
        quantity,
    };
    with_token(order, token)
}

async fn place(
    orders: &mut Orders,
    tally: &mut Tally,
    request: Request<PlaceOrderRequest>,
) -> Result<Response<Order>, Status> {
    let result = orders.place_order(request).await;
    tally.record("PlaceOrder", &result);
    result
}

/// The `grpc-retry-pushback-ms` trailer of a refusal, in milliseconds.
fn pushback(status: &Status) -> Result<u64, String> {
    status
        .metadata()
        .get(RETRY_PUSHBACK)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {RETRY_PUSHBACK} on {status:?}"))
}

async fn order_rate_per_identity(
    orders: &mut Orders,
    server: &Services,
    tally: &mut Tally,
) -> Result<String, String> {
    const RATE: u32 = PLACE_ORDER_PER_SECOND;
    let before = server.orders.placed_count();
    // Ada's first orders: her bucket is full, RATE orders pass back to back.
    let started = Instant::now();
    let mut admitted = 0;
    let refused = loop {
        ensure!(
            admitted <= 3 * RATE,
            "{admitted} orders in a burst, none refused"
        );
        match place(orders, tally, order("espresso", 1, ADA_TOKEN)).await {
            Ok(_) => admitted += 1,
            Err(status) => break status,
        }
    };
    let burst = started.elapsed();
    ensure!(
        refused.code() == Code::ResourceExhausted,
        "ada's burst ended with {}: {}",
        code_name(refused.code()),
        refused.message()
    );
    let wait = pushback(&refused)?;
    // A token comes back every 1/RATE s.
    ensure!(
        (1..=1_000 / u64::from(RATE)).contains(&wait),
        "pushback of {wait} ms for a rate of {RATE}/s"
    );
    // A slow burst may have earned a token or two while it ran.
    let earned = (burst.as_secs_f64() * f64::from(RATE)).ceil() as u32;
    ensure!(
        (RATE..=RATE + earned).contains(&admitted),
        "ada placed {admitted} orders in {burst:?} at {RATE}/s"
    );
    // Bob has a bucket of his own.
    let bob = place(orders, tally, order("cortado", 1, BOB_TOKEN)).await;
    ok("bob's order during ada's refusal", bob)?;
    tokio::time::sleep(Duration::from_millis(wait + 5)).await;
    let again = place(orders, tally, order("espresso", 1, ADA_TOKEN)).await;
    ok("ada's order after the pushback", again)?;
    let placed = server.orders.placed_count() - before;
    ensure!(
        placed == admitted as usize + 2,
        "the desk took {placed} orders, expected {}",
        admitted + 2
    );
    Ok(format!(
        "PlaceOrder at {RATE}/s per person: ada's burst placed {admitted}, the next got RESOURCE_EXHAUSTED with {RETRY_PUSHBACK}: {wait}; bob was served meanwhile, ada again after {wait} ms"
    ))
}

async fn idempotent_retry(
    orders: &mut Orders,
    server: &Services,
    tally: &mut Tally,
) -> Result<String, String> {
    const KEY: &str = "till-3-order-0042";
    let keyed = |quantity| {
        let mut request = order("flat white", quantity, BOB_TOKEN);
        let key = KEY.parse().expect("a valid key");
        request.metadata_mut().insert(IDEMPOTENCY_KEY, key);
        request
    };
    let before = server.orders.placed_count();
    let first = ok(
        "PlaceOrder with a key",
        place(orders, tally, keyed(2)).await,
    )?;
    // The response was lost, say: the till retries with the same key.
    let retry = ok("its retry", place(orders, tally, keyed(2)).await)?;
    let replayed = retry
        .metadata()
        .get(IDEMPOTENCY_REPLAYED)
        .and_then(|v| v.to_str().ok());
    ensure!(
        first.metadata().get(IDEMPOTENCY_REPLAYED).is_none() && replayed == Some("true"),
        "{IDEMPOTENCY_REPLAYED}: {:?} on the first answer, {replayed:?} on the retry",
        first.metadata().get(IDEMPOTENCY_REPLAYED)
    );
    let (first, retry) = (first.into_inner(), retry.into_inner());
    ensure!(
        first == retry,
        "the retry answered {retry:?}, the first call {first:?}"
    );
    let ran = server.orders.placed_count() - before;
    ensure!(ran == 1, "the handler ran {ran} times for one key");
    // The same key for another order is a client bug, not a retry.
    let other = place(orders, tally, keyed(3)).await;
    expect_code(
        "the same key with another order",
        other,
        Code::InvalidArgument,
    )?;
    ensure!(
        server.orders.placed_count() == before + 1,
        "the handler ran for a reused key"
    );
    Ok(format!(
        "PlaceOrder retried with {IDEMPOTENCY_KEY}: {KEY}: the same order #{} back ({IDEMPOTENCY_REPLAYED}: true), handler ran once; the key with another order: INVALID_ARGUMENT",
        first.id
    ))
}

async fn invalid_order(
    orders: &mut Orders,
    server: &Services,
    tally: &mut Tally,
) -> Result<String, String> {
    let before = server.orders.placed_count();
    let cups = MAX_QUANTITY + 2;
    let status = match place(orders, tally, order("  ", cups, BOB_TOKEN)).await {
        Ok(_) => return Err("an invalid order was placed".into()),
        Err(status) => status,
    };
    ensure!(
        status.code() == Code::InvalidArgument,
        "an invalid order answered {}: {}",
        code_name(status.code()),
        status.message()
    );
    let details = status
        .get_details_bad_request()
        .ok_or_else(|| format!("no google.rpc.BadRequest in {status:?}"))?;
    let violations: Vec<String> = details
        .field_violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect();
    let expected = [
        "drink: must name a drink".to_owned(),
        format!("quantity: must be 1 to {MAX_QUANTITY}"),
    ];
    ensure!(
        violations == expected,
        "field violations {violations:?}, expected {expected:?}"
    );
    ensure!(
        server.orders.placed_count() == before,
        "the handler ran for an invalid order"
    );
    Ok(format!(
        "PlaceOrder of {cups} cups of nothing: INVALID_ARGUMENT with google.rpc.BadRequest [{}], handler never ran",
        violations.join("; ")
    ))
}

async fn cancel_needs_barista(
    orders: &mut Orders,
    server: &Services,
    tally: &mut Tally,
) -> Result<String, String> {
    // One of ada's orders from her burst: she changed her mind.
    let id = server
        .orders
        .placed()
        .iter()
        .rev()
        .find(|p| p.by == "ada" && !p.cancelled)
        .map(|p| p.order.id)
        .ok_or("ada has no open order")?;
    let cancel = |token| with_token(CancelOrderRequest { id }, token);
    let cancelled = |server: &Services| server.orders.placed_order(id).map(|p| p.cancelled);

    let denied = orders.cancel_order(cancel(ADA_TOKEN)).await;
    tally.record("CancelOrder", &denied);
    let message = denied.as_ref().err().map(|s| s.message().to_owned());
    expect_code("CancelOrder by ada", denied, Code::PermissionDenied)?;
    ensure!(
        cancelled(server) == Some(false),
        "ada's refused CancelOrder changed order #{id}"
    );

    let done = orders.cancel_order(cancel(BOB_TOKEN)).await;
    tally.record("CancelOrder", &done);
    let done = ok("CancelOrder by bob", done)?.into_inner();
    ensure!(
        done.order.as_ref().map(|o| o.id) == Some(id) && cancelled(server) == Some(true),
        "bob's CancelOrder answered {done:?}; the desk has {:?}",
        server.orders.placed_order(id)
    );
    Ok(format!(
        "CancelOrder of ada's order #{id} (roles: [\"{BARISTA}\"] in the .proto): by ada PERMISSION_DENIED ({}); by bob, a barista, OK",
        message.unwrap_or_default()
    ))
}

async fn panic_recovered(
    orders: &mut Orders,
    server: &Services,
    log: &Log,
    tally: &mut Tally,
) -> Result<String, String> {
    let before = server.orders.placed_count();
    let status = match place(orders, tally, order(UNICORN, 1, BOB_TOKEN)).await {
        Ok(_) => return Err(format!("the {UNICORN} was served")),
        Err(status) => status,
    };
    ensure!(
        status.code() == Code::Internal && status.message() == "PlaceOrder: internal error",
        "the panicking order answered {}: {}",
        code_name(status.code()),
        status.message()
    );
    // The client learns nothing of the bug; the server's log has all of it.
    let logged = log
        .text()
        .lines()
        .any(|l| l.contains("ERROR") && l.contains("panic in call") && l.contains("glitter"));
    ensure!(logged, "the server log has no ERROR with the panic's text");
    // Same client, same connection.
    let next = ok(
        "the next order",
        place(orders, tally, order("espresso", 1, BOB_TOKEN)).await,
    )?;
    ensure!(
        server.orders.placed_count() == before + 1,
        "the desk took {} orders, expected 1",
        server.orders.placed_count() - before
    );
    Ok(format!(
        "PlaceOrder of a {UNICORN} panicked: INTERNAL \"{}\", the panic's text only in the server's log; the next order on the same connection: #{}",
        status.message(),
        next.into_inner().id
    ))
}

async fn handler_sees_deadline(
    orders: &mut Orders,
    server: &Services,
    tally: &mut Tally,
) -> Result<String, String> {
    const PROTO_TIMEOUT: Duration = Duration::from_millis(2_000);
    let client_timeout = Duration::from_millis(800);
    let time_left = |server: &Services, order: Order| {
        server
            .orders
            .placed_order(order.id)
            .and_then(|p| p.time_left)
            .ok_or_else(|| format!("the handler of order #{} saw no deadline", order.id))
    };
    let mut request = order("filter", 1, BOB_TOKEN);
    request.set_timeout(client_timeout);
    let placed = ok(
        "PlaceOrder with a timeout",
        place(orders, tally, request).await,
    )?;
    let with_client = time_left(server, placed.into_inner())?;
    ensure!(
        with_client <= client_timeout && with_client > client_timeout / 2,
        "{with_client:?} left of the client's {client_timeout:?}"
    );
    let placed = ok(
        "PlaceOrder without a timeout",
        place(orders, tally, order("filter", 1, BOB_TOKEN)).await,
    )?;
    let from_proto = time_left(server, placed.into_inner())?;
    ensure!(
        from_proto <= PROTO_TIMEOUT && from_proto > PROTO_TIMEOUT / 2,
        "{from_proto:?} left of the .proto's {PROTO_TIMEOUT:?}"
    );
    Ok(format!(
        "PlaceOrder's handler reads its Deadline: {} ms left of the client's {} ms grpc-timeout; without one, {} ms of the .proto's timeout_ms: {}",
        with_client.as_millis(),
        client_timeout.as_millis(),
        from_proto.as_millis(),
        PROTO_TIMEOUT.as_millis()
    ))
}

async fn live_feeds_in_flight(orders: &mut Orders, feed: &Feed) -> Result<String, String> {
    producers_stopped(feed).await?;
    let mut screens = Vec::new();
    for i in 1..=MAX_LIVE_FEEDS {
        let request = subscribe_request(&format!("screen {i}"));
        screens.push(ok("Subscribe", orders.subscribe(request).await)?.into_inner());
    }
    let refused = match orders
        .subscribe(subscribe_request("one screen too many"))
        .await
    {
        Ok(_) => return Err(format!("a feed beyond max_in_flight = {MAX_LIVE_FEEDS}")),
        Err(status) => status,
    };
    ensure!(
        refused.code() == Code::ResourceExhausted,
        "Subscribe beyond max_in_flight answered {}: {}",
        code_name(refused.code()),
        refused.message()
    );
    let wait = pushback(&refused)?;
    // One screen hangs up: its producer stops, and its slot is free.
    drop(screens.pop());
    let freed = async {
        while feed.running() >= MAX_LIVE_FEEDS as usize {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(2), freed)
        .await
        .map_err(|_| "a dropped feed's producer kept running".to_owned())?;
    let again = orders.subscribe(subscribe_request("screen 4 again")).await;
    screens.push(ok("Subscribe after a screen hung up", again)?.into_inner());
    drop(screens);
    producers_stopped(feed).await?;
    Ok(format!(
        "Subscribe with {MAX_LIVE_FEEDS} feeds live (max_in_flight = {MAX_LIVE_FEEDS}): the next RESOURCE_EXHAUSTED ({RETRY_PUSHBACK}: {wait}); once one hung up, admitted"
    ))
}

async fn quiet_chat_cut(orders: &mut Orders) -> Result<String, String> {
    let (tx, rx) = mpsc::channel(1);
    let hello = ChatMessage {
        from: "ada".into(),
        text: "hmm, let me think".into(),
    };
    tx.send(hello)
        .await
        .map_err(|_| "Chat: the request stream closed")?;
    let request = with_token(ReceiverStream::new(rx), ADA_TOKEN);
    let mut answers = ok("Chat", orders.chat(request).await)?.into_inner();
    ok("Chat", answers.next().await.transpose())?;
    // Then ada says nothing, and keeps the stream open.
    let silent = Instant::now();
    let end = answers.next().await.transpose();
    let waited = silent.elapsed();
    let message = end.as_ref().err().map(|s| s.message().to_owned());
    expect_code("a silent Chat", end, Code::DeadlineExceeded)?;
    ensure!(
        waited >= Duration::from_millis(CHAT_IDLE_MS) - Duration::from_millis(150),
        "the silent Chat was cut after {waited:?}, before its idle timeout"
    );
    drop(tx);
    Ok(format!(
        "Chat silent after one line: DEADLINE_EXCEEDED after {:.2}s (\"{}\")",
        waited.as_secs_f64(),
        message.unwrap_or_default()
    ))
}

fn calls_traced(log: &Log, tally: &Tally) -> Result<String, String> {
    let text = log.text();
    let finished: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("coffee.v1.OrderService/PlaceOrder{") && l.contains("finished call"))
        .collect();
    let calls = tally.calls("PlaceOrder");
    ensure!(
        finished.len() as u64 == calls,
        "the log has {} `finished call` events of PlaceOrder, for {calls} calls",
        finished.len()
    );
    let denied = text
        .lines()
        .find(|l| {
            l.contains("OrderService/CancelOrder{") && l.contains("grpc.code=\"PermissionDenied\"")
        })
        .ok_or("no `finished call` event of ada's CancelOrder")?;
    ensure!(
        denied.contains("WARN"),
        "a PERMISSION_DENIED was logged below WARN: {denied}"
    );
    // Without its timestamp.
    let denied = denied
        .split_once(' ')
        .map_or(denied, |(_, rest)| rest)
        .trim();
    Ok(format!(
        "trace: each call ran in its span and logged `finished call`, {calls} for PlaceOrder; ada's CancelOrder:\n    {denied}"
    ))
}

// ---------------------------------------------------------------------------------------
// Client side: the generated `user_service_intercept::Client` under a `ClientConfig`.
// ---------------------------------------------------------------------------------------

const USERS: &str = "users.v1.UserService";

/// Retries for `GetUser`, declared `NO_SIDE_EFFECTS` in the `.proto`, so `retry` compiles;
/// milliseconds of backoff, for the demo's sake.
const GET_USER_RETRIED: ClientPolicy<GetUser> = ClientPolicy::retry(
    RetryPolicy::new()
        .max_attempts(4)
        .initial_backoff(Duration::from_millis(10))
        .max_backoff(Duration::from_millis(40)),
);

/// A typed client hook on every RPC: keeps how the last call ended.
#[derive(Debug, Clone, Default)]
struct LastOutcome(Arc<Mutex<Option<ClientOutcome>>>);

impl LastOutcome {
    fn take(&self, what: &str) -> Result<ClientOutcome, String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| format!("{what}: the client hook saw no end of the call"))
    }
}

impl<R: Rpc> ClientHook<R> for LastOutcome {
    fn on_finish(&self, outcome: &ClientOutcome) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(*outcome);
    }
}

/// A client whose config retries `GetUser` and says nothing of `CreateUser`, with its
/// own `grpc_client_*` metrics and a hook that sees each call's end.
struct Observed {
    users: users_rpc::Client<Channel, LastOutcome>,
    registry: Registry,
    last: LastOutcome,
}

impl Observed {
    fn new(channel: &Channel) -> Self {
        let mut registry = Registry::default();
        let metrics = ClientMetrics::register(&mut registry).service::<users_rpc::Service>();
        let last = LastOutcome::default();
        let config = ClientConfig::new()
            .policy(GET_USER_RETRIED)
            .metrics(metrics)
            .hooks(last.clone());
        Self {
            users: users_rpc::Client::with_config(channel.clone(), config),
            registry,
            last,
        }
    }

    /// Checks one `grpc_client_*` series of `method`; returns its line.
    fn expect(
        &self,
        name: &str,
        method: &str,
        extra: &str,
        expected: u64,
    ) -> Result<String, String> {
        let text = render_metrics(&self.registry);
        let labels = format!("{}{extra}", labels("unary", USERS, method));
        let (line, value) = series(&text, name, &labels)?;
        ensure!(
            value == expected,
            "client metrics: {line}: expected {expected}"
        );
        Ok(line.to_owned())
    }

    /// The client's series after both calls, each checked.
    fn shown(&self) -> Result<Vec<String>, String> {
        let mut shown = Vec::new();
        for (method, attempts, retries, code) in
            [("GetUser", 3, 2, "OK"), ("CreateUser", 1, 0, "Unavailable")]
        {
            shown.push(self.expect("grpc_client_attempts_total", method, "", attempts)?);
            shown.push(self.expect("grpc_client_retries_total", method, "", retries)?);
            let code = format!(r#",grpc_code="{code}""#);
            shown.push(self.expect("grpc_client_handled_total", method, &code, 1)?);
        }
        Ok(shown)
    }
}

async fn client_retries_through_failures(
    channel: &Channel,
    server: &Services,
) -> Result<(String, Observed), String> {
    const FAILURES: u32 = 2;
    let mut observed = Observed::new(channel);
    let fault = &server.users.faults().get_user;
    let before = fault.calls();
    fault.fail_next(FAILURES);
    let started = Instant::now();
    let request = with_token(GetUserRequest { id: 1 }, ADA_TOKEN);
    let user = ok(
        "GetUser through injected failures",
        observed.users.get_user(request).await,
    )?
    .into_inner();
    let elapsed = started.elapsed();
    ensure!(user.name == "Ada Lovelace", "GetUser #1 returned {user:?}");
    let outcome = observed.last.take("GetUser")?;
    let ran = fault.calls() - before;
    ensure!(
        outcome.code == Code::Ok && outcome.attempts == FAILURES + 1 && outcome.gave_up.is_none(),
        "GetUser after {FAILURES} failures: {outcome:?}, expected OK on attempt {}",
        FAILURES + 1
    );
    ensure!(
        ran == FAILURES + 1,
        "the GetUser handler ran {ran} times for {} attempts",
        outcome.attempts
    );
    Ok((
        format!(
            "client: GetUser (NO_SIDE_EFFECTS, ClientPolicy::retry, 4 attempts) through {FAILURES} injected UNAVAILABLEs: OK on attempt {} after {} ms, the handler ran {ran} times",
            outcome.attempts,
            elapsed.as_millis()
        ),
        observed,
    ))
}

async fn no_retry_for_create_user(
    observed: &mut Observed,
    server: &Services,
) -> Result<String, String> {
    let fault = &server.users.faults().create_user;
    let (before, users) = (fault.calls(), server.users.count());
    fault.fail_next(1);
    let result = observed
        .users
        .create_user(record("Grace Hopper", "grace@example.com"))
        .await;
    expect_code(
        "CreateUser with an injected failure",
        result,
        Code::Unavailable,
    )?;
    let outcome = observed.last.take("CreateUser")?;
    let ran = fault.calls() - before;
    ensure!(
        outcome.attempts == 1 && ran == 1,
        "CreateUser made {} attempt(s), its handler ran {ran} times: expected 1",
        outcome.attempts
    );
    ensure!(
        server.users.count() == users,
        "a failed CreateUser stored a user"
    );
    Ok("client: CreateUser (no idempotency_level, so no ClientPolicy::retry) with an injected UNAVAILABLE: UNAVAILABLE after exactly 1 attempt; the client's metrics:".into())
}

async fn client_deadline(channel: &Channel, server: &Services) -> Result<String, String> {
    const DEADLINE: Duration = Duration::from_millis(100);
    const GET_USER: ClientPolicy<GetUser> = ClientPolicy::new().deadline(DEADLINE);
    let slow = Duration::from_millis(400);
    let fault = &server.users.faults().get_user;
    let config = ClientConfig::new().policy(GET_USER);
    let mut users = users_rpc::Client::with_config(channel.clone(), config);
    let request = || with_token(GetUserRequest { id: 1 }, ADA_TOKEN);

    fault.slow_next(slow);
    let started = Instant::now();
    let result = users.get_user(request()).await;
    let waited = started.elapsed();
    let message = result.as_ref().err().map(|s| s.message().to_owned());
    expect_code(
        "GetUser slower than its deadline",
        result,
        Code::DeadlineExceeded,
    )?;
    ensure!(
        waited >= DEADLINE && waited < slow,
        "GetUser with a {DEADLINE:?} deadline ended after {waited:?}"
    );

    // The request's own timeout wins over the policy's default.
    let patient = Duration::from_millis(150);
    fault.slow_next(patient);
    let mut request = request();
    request.set_timeout(Duration::from_secs(2));
    let started = Instant::now();
    ok(
        "GetUser with its own timeout",
        users.get_user(request).await,
    )?;
    let took = started.elapsed();
    ensure!(took >= patient, "the slowed GetUser answered in {took:?}");
    Ok(format!(
        "client: GetUser under ClientPolicy::deadline({} ms) against a handler taking {} ms: DEADLINE_EXCEEDED after {} ms (\"{}\"); with Request::set_timeout(2 s) instead, a {} ms handler: OK",
        DEADLINE.as_millis(),
        slow.as_millis(),
        waited.as_millis(),
        message.unwrap_or_default(),
        patient.as_millis()
    ))
}

/// Stands in for an OAuth token endpoint: hands out ada's token, valid for an hour,
/// after a round trip; counts its fetches.
#[derive(Debug, Default)]
struct TokenEndpoint {
    fetches: AtomicU32,
}

impl TokenSource for TokenEndpoint {
    async fn fetch(&self) -> Result<Token, Status> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(Token::expires_in(ADA_TOKEN, Duration::from_secs(3_600)))
    }
}

async fn client_credentials(channel: &Channel) -> Result<String, String> {
    const AT_ONCE: u64 = 5;
    const AFTER: u64 = 3;
    // Refreshed 5 minutes before it expires.
    let provider = TokenProvider::new(TokenEndpoint::default(), Duration::from_secs(300));
    let config = ClientConfig::new().credentials(provider.clone());
    let users = users_rpc::Client::with_config(channel.clone(), config);
    // `GetUser` needs a token (`auth(self.tokens)`); none of these requests carries one.
    let mut calls = tokio::task::JoinSet::new();
    for id in 1..=AT_ONCE {
        let mut users = users.clone();
        calls.spawn(async move { users.get_user(GetUserRequest { id }).await });
    }
    while let Some(call) = calls.join_next().await {
        let result = call.map_err(|e| format!("a GetUser task: {e}"))?;
        ok("GetUser with the provider's token", result)?;
    }
    let mut users = users;
    for id in 1..=AFTER {
        ok(
            "GetUser with the cached token",
            users.get_user(GetUserRequest { id }).await,
        )?;
    }
    let fetches = provider.source().fetches.load(Ordering::SeqCst);
    ensure!(
        fetches == 1,
        "{} GetUser calls fetched the token {fetches} times",
        AT_ONCE + AFTER
    );
    Ok(format!(
        "client: ClientConfig::credentials(TokenProvider) over a token endpoint: {AT_ONCE} concurrent GetUser calls, then {AFTER} more, all authenticated by ada's token: {fetches} fetch"
    ))
}

// ---------------------------------------------------------------------------------------
// `/metrics`
// ---------------------------------------------------------------------------------------

/// `GET path` over HTTP/1.1 on a fresh connection: the `Content-Type` and the body.
async fn http_get(addr: SocketAddr, path: &str) -> Result<(String, String), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("GET http://{addr}{path}: no answer within 5s"))?
        .map_err(|e| format!("GET http://{addr}{path}: {e}"))?;
    let text = String::from_utf8(raw).map_err(|e| format!("GET {path}: not UTF-8: {e}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no end of headers in {text:?}"))?;
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    ensure!(
        status.starts_with("HTTP/1.1 200"),
        "GET {path} answered {status}"
    );
    let mut content_type = String::new();
    let mut chunked = false;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-type") {
                content_type = value.to_owned();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok((content_type, body))
}

/// The payload of a `Transfer-Encoding: chunked` body.
fn dechunk(mut rest: &str) -> Result<String, String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or("a truncated chunk")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("a chunk size: {e}"))?;
        if size == 0 {
            return Ok(body);
        }
        let chunk = after.get(..size).ok_or("a truncated chunk")?;
        body.push_str(chunk);
        rest = after
            .get(size..)
            .and_then(|r| r.strip_prefix("\r\n"))
            .ok_or("a chunk without its CRLF")?;
    }
}

fn labels(kind: &str, service: &str, method: &str) -> String {
    format!(r#"grpc_type="{kind}",grpc_service="{service}",grpc_method="{method}""#)
}

/// The line of one series, `name{labels} value`, and its value.
fn series<'a>(text: &'a str, name: &str, labels: &str) -> Result<(&'a str, u64), String> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|line| {
            let value = line.strip_prefix(&prefix)?.parse().ok()?;
            Some((line, value))
        })
        .ok_or_else(|| format!("/metrics has no series `{name}{{{labels}}}`"))
}

async fn metrics_before_first_call(addr: SocketAddr) -> Result<String, String> {
    let (_, text) = http_get(addr, "/metrics").await?;
    let started: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("grpc_server_started_total{"))
        .collect();
    ensure!(
        started.len() == 10 && started.iter().all(|l| l.ends_with(" 0")),
        "before the first call /metrics has {} started series: {started:?}",
        started.len()
    );
    // Counters, histogram buckets, sums and counts: all there, all zero.
    let values: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let nonzero = values.iter().find(|l| {
        l.rsplit_once(' ')
            .and_then(|(_, v)| v.parse::<f64>().ok())
            .is_none_or(|v| v != 0.0)
    });
    ensure!(nonzero.is_none(), "before the first call: {nonzero:?}");
    let count = values.len();
    let place = labels("unary", "coffee.v1.OrderService", "PlaceOrder");
    let (never, _) = series(
        &text,
        "grpc_server_handled_total",
        &format!(r#"{place},grpc_code="OK""#),
    )?;
    Ok(format!(
        "GET /metrics before the first call: {count} series of 10 RPCs, every one at zero, e.g. {never}"
    ))
}

async fn metrics_after_run(
    addr: SocketAddr,
    tally: &Tally,
) -> Result<(String, Vec<String>), String> {
    let (content_type, text) = http_get(addr, "/metrics").await?;
    ensure!(
        content_type == METRICS_CONTENT_TYPE,
        "/metrics is served as {content_type:?}"
    );
    ensure!(
        text.ends_with("# EOF\n"),
        "/metrics does not end with # EOF"
    );
    let mut shown = Vec::new();
    let mut expect = |name: &str, labels: &str, expected: u64, show: bool| {
        let (line, value) = series(&text, name, labels)?;
        ensure!(value == expected, "{line}: expected {expected}");
        if show {
            shown.push(line.to_owned());
        }
        Ok::<_, String>(())
    };

    let orders = "coffee.v1.OrderService";
    let place = labels("unary", orders, "PlaceOrder");
    let calls = tally.calls("PlaceOrder");
    expect("grpc_server_started_total", &place, calls, true)?;
    expect("grpc_server_handling_seconds_count", &place, calls, false)?;
    // Every code, zeros included, as the demo saw them.
    for code in (0..=16).map(Code::from_i32) {
        let n = tally.count("PlaceOrder", code);
        let code_labels = format!(
            r#"{place},grpc_code="{}""#,
            tonic_intercept::grpc_code_label(code)
        );
        let show = matches!(code, Code::Ok | Code::ResourceExhausted);
        expect("grpc_server_handled_total", &code_labels, n, show)?;
    }
    for (policy, n) in [
        ("call_rate", 1),
        ("idempotency", 1),
        ("validation", 1),
        ("auth", 0),
    ] {
        let policy_labels = format!(r#"{place},policy="{policy}""#);
        expect(
            "grpc_server_rejected_total",
            &policy_labels,
            n,
            policy == "validation",
        )?;
    }
    expect("grpc_server_panics_total", &place, 1, true)?;

    let cancel = labels("unary", orders, "CancelOrder");
    for code in [Code::Ok, Code::PermissionDenied] {
        let code_labels = format!(
            r#"{cancel},grpc_code="{}""#,
            tonic_intercept::grpc_code_label(code)
        );
        let n = tally.count("CancelOrder", code);
        expect(
            "grpc_server_handled_total",
            &code_labels,
            n,
            code != Code::Ok,
        )?;
    }
    let roles = format!(r#"{cancel},policy="roles""#);
    expect("grpc_server_rejected_total", &roles, 1, false)?;
    let subscribe = format!(
        r#"{},policy="concurrency""#,
        labels("server_stream", orders, "Subscribe")
    );
    expect("grpc_server_rejected_total", &subscribe, 1, false)?;
    let chat = format!(
        r#"{},policy="idle_timeout""#,
        labels("bidi_stream", orders, "Chat")
    );
    expect("grpc_server_rejected_total", &chat, 1, false)?;

    // The user directory: refused lookups, the sign-ups, the oversized imports.
    let users = "users.v1.UserService";
    let get_user = labels("unary", users, "GetUser");
    let unauthenticated = format!(r#"{get_user},grpc_code="Unauthenticated""#);
    expect("grpc_server_handled_total", &unauthenticated, 2, true)?;
    let create_user = labels("unary", users, "CreateUser");
    for (code, n) in [("OK", 1), ("InvalidArgument", 1)] {
        let code_labels = format!(r#"{create_user},grpc_code="{code}""#);
        expect("grpc_server_handled_total", &code_labels, n, false)?;
    }
    let import = format!(
        r#"{},policy="limit""#,
        labels("client_stream", users, "ImportUsers")
    );
    expect("grpc_server_rejected_total", &import, 2, false)?;
    // The generated client's scenarios, as the server saw them: two failed attempts of
    // GetUser before the one that passed, one of CreateUser.
    for (method, n) in [(&get_user, 2), (&create_user, 1)] {
        let code_labels = format!(r#"{method},grpc_code="Unavailable""#);
        expect("grpc_server_handled_total", &code_labels, n, false)?;
    }

    Ok((
        format!(
            "GET /metrics after the run: {calls} PlaceOrder calls counted by code and refusing policy, 1 panic, the refusals of every other RPC; for instance:"
        ),
        shown,
    ))
}
