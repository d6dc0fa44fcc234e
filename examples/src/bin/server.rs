//! Serves both services, with gRPC health and reflection, on the library's hardened
//! `Server` (stream, connection and handshake limits) until Ctrl-C (health turns
//! `NOT_SERVING`, clients get GOAWAY), then lets in-flight calls finish within 30 s;
//! serves their metrics at
//! `http://METRICS_ADDR/metrics` and logs each call to stderr.
//!
//! `cargo run -p tonic-intercept-examples --bin server [ADDR] [METRICS_ADDR]` (defaults
//! `127.0.0.1:50051` and `127.0.0.1:9090`).

use std::error::Error;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic_intercept_examples::{ADA_TOKEN, BOB_TOKEN, Services, demo_tokens, serve, serve_metrics};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // Each call's span and "finished call" event (and, at DEBUG, each message's size),
    // the handlers' own events; INFO for everything else (h2, hyper).
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(
            Targets::new()
                .with_target("tonic_intercept", Level::DEBUG)
                .with_default(Level::INFO),
        )
        .init();

    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .as_deref()
        .unwrap_or("127.0.0.1:50051")
        .parse()?;
    let metrics_addr: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:9090").parse()?;
    let listener = TcpListener::bind(addr).await?;
    let metrics_listener = TcpListener::bind(metrics_addr).await?;
    println!(
        "serving on {}; bearer tokens: {ADA_TOKEN} (ada), {BOB_TOKEN} (bob, a barista); \
         metrics at http://{}/metrics; Ctrl-C stops",
        listener.local_addr()?,
        metrics_listener.local_addr()?
    );

    let services = Services::new(demo_tokens());
    let (stop, mut stopping) = watch::channel(false);
    let metrics = tokio::spawn(serve_metrics(
        metrics_listener,
        services.registry.clone(),
        async move {
            let _ = stopping.wait_for(|&stop| stop).await;
        },
    ));
    let shutdown = async move {
        if let Err(e) = tokio::signal::ctrl_c().await {
            // Without a signal handler there is no way to be asked to stop: serve on.
            eprintln!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
        println!("shutting down: finishing in-flight calls");
        stop.send_replace(true);
    };
    serve(listener, services, shutdown).await?;
    metrics.await??;
    println!("stopped");
    Ok(())
}
