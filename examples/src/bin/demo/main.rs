//! A checked tour: serves both example services in-process and shows each `#[intercept]`
//! policy acting, one checked line per scenario; then the generated client's policies
//! (retries through injected failures, none for a non-idempotent RPC, a deadline, call
//! credentials); then the server's metrics, checked against what the demo did. Exits
//! non-zero at the first expectation that fails.
//!
//! Each policy has its module here: open the one you want and read the calls a user
//! writes. What is only a regression check lives in `examples/tests/`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_intercept_examples::{Services, channel, connect, demo_tokens, serve};

mod admission;
mod auth;
mod client_credentials;
mod client_deadline;
mod client_retry;
mod deadlines;
mod flaky;
mod hook;
mod idempotency;
mod limits;
mod metrics;
mod recover;
mod support;
mod trace;
mod validate;

use support::{Tally, code_name, ensure, ok, pass, subscribe_request};
use trace::Log;

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
    recover::quiet_simulated_panics();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("local address: {e}"))?;
    let services = Services::new(demo_tokens());
    let server = services.clone();
    let (stop, mut stopping) = watch::channel(false);
    let stopped = async move {
        let _ = stopping.wait_for(|&stop| stop).await;
    };
    let serving = tokio::spawn(serve(listener, services, stopped));
    println!("serving users.v1.UserService and coffee.v1.OrderService on {addr}");
    let (mut users, mut orders) = connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let server = &server;
    let feed = server.orders.feed();

    // Who may call what, and what a hook and the limits refuse.
    pass(auth::refused_without_token(&mut users).await?);
    pass(auth::public_sign_up(&mut users).await?);
    pass(auth::authenticated_lookup(&mut users).await?);
    pass(hook::hook_refuses_empty_name(&mut users, server).await?);
    pass(limits::import_counts_rejects(&mut users, server).await?);
    pass(limits::import_over_max_messages(&mut users, server).await?);
    pass(limits::import_over_max_bytes(&mut users).await?);
    for line in limits::list_cut_and_paced(&mut users, server).await? {
        pass(line);
    }
    pass(deadlines::subscription_deadline(&mut orders, feed).await?);

    // The order desk's policies, then the observers.
    let mut tally = Tally::default();
    let tally = &mut tally;
    pass(admission::sign_ups_per_address(addr, server, tally).await?);
    pass(admission::order_rate_per_identity(&mut orders, server, tally).await?);
    pass(idempotency::idempotent_retry(&mut orders, server, tally).await?);
    pass(validate::invalid_order(&mut orders, server, tally).await?);
    pass(auth::cancel_needs_barista(&mut orders, server, tally).await?);
    pass(recover::panic_recovered(&mut orders, server, &log, tally).await?);
    pass(deadlines::handler_sees_deadline(&mut orders, server, tally).await?);
    pass(admission::live_feeds_in_flight(&mut orders, feed).await?);
    pass(deadlines::quiet_chat_cut(&mut orders).await?);
    pass(trace::calls_traced(&log, tally)?);

    // The generated client, under a `ClientConfig`, over a channel that fails on demand.
    let channel = channel(addr).await.map_err(|e| format!("connect: {e}"))?;
    let flaky = flaky::FlakyChannel::new(channel.clone());
    let mut observed = client_retry::Observed::new(&flaky);
    pass(client_retry::client_retries_through_failures(&mut observed).await?);
    pass(client_retry::no_retry_for_create_user(&mut observed, server).await?);
    for line in observed.shown()? {
        println!("    {line}");
    }
    pass(client_deadline::client_deadline(&flaky).await?);
    pass(client_credentials::client_credentials(&channel).await?);
    let (line, shown) = metrics::metrics_after_run(server, tally)?;
    pass(line);
    for series in shown {
        println!("    {series}");
    }

    // Shutdown: a live feed is still open when the server is asked to stop.
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
    tokio::time::timeout(Duration::from_secs(5), serving)
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
