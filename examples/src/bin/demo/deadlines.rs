//! Deadlines: a client's `grpc-timeout` ends a live `Subscribe`; `PlaceOrder`'s handler
//! reads the earlier of the client's timeout and the `.proto`'s `timeout_ms` from its
//! `Deadline`; `idle_timeout_ms` cuts a `Chat` where the client went quiet.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic_intercept_examples::coffee::{ChatMessage, Order};
use tonic_intercept_examples::orders::{CHAT_IDLE_MS, Feed};
use tonic_intercept_examples::{ADA_TOKEN, BOB_TOKEN, Services, with_token};

use crate::support::{
    Orders, Tally, code_name, ensure, expect_code, ok, order, place, producers_stopped,
    subscribe_request,
};

pub(crate) async fn subscription_deadline(
    orders: &mut Orders,
    feed: &Feed,
) -> Result<String, String> {
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

pub(crate) async fn handler_sees_deadline(
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

pub(crate) async fn quiet_chat_cut(orders: &mut Orders) -> Result<String, String> {
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
