//! Serves both services until Ctrl-C, then lets in-flight calls finish.
//!
//! `cargo run -p tonic-intercept-examples --bin server [ADDR]` (default `127.0.0.1:50051`).

use std::error::Error;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tonic_intercept_examples::{ADA_TOKEN, BOB_TOKEN, Services, demo_tokens, serve};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:50051")
        .parse()?;
    let listener = TcpListener::bind(addr).await?;
    println!(
        "serving on {}; bearer tokens: {ADA_TOKEN} (ada), {BOB_TOKEN} (bob); Ctrl-C stops",
        listener.local_addr()?
    );
    let shutdown = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            // Without a signal handler there is no way to be asked to stop: serve on.
            eprintln!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
        println!("shutting down: finishing in-flight calls");
    };
    serve(listener, Services::new(demo_tokens()), shutdown).await?;
    println!("stopped");
    Ok(())
}
