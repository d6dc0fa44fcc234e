//! A real server on `127.0.0.1:0` for each test.

#![allow(dead_code, reason = "each test file uses a part of it")]

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_intercept_examples::coffee::order_service_client::OrderServiceClient;
use tonic_intercept_examples::pb::user_service_client::UserServiceClient;
use tonic_intercept_examples::{Services, connect, demo_tokens, serve};

/// Both services served on loopback, clients connected to them.
pub(crate) struct Served {
    pub(crate) services: Services,
    /// Where it serves.
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) users: UserServiceClient<Channel>,
    pub(crate) orders: OrderServiceClient<Channel>,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Served {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let services = Services::new(demo_tokens());
        let (stop, stopping) = watch::channel(false);
        let server = tokio::spawn(serve(listener, services.clone(), stopped(stopping)));
        let (users, orders) = connect(addr).await.unwrap();
        Self {
            services,
            addr,
            users,
            orders,
            stop,
            server,
        }
    }

    /// Completes once `shutdown` starts: what a second server (`serve_metrics`) stops on.
    pub(crate) fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        stopped(self.stop.subscribe())
    }

    /// Stops the server; panics unless it stops gracefully within 5 s.
    pub(crate) async fn shutdown(self) {
        self.stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), self.server)
            .await
            .expect("the server did not shut down within 5s")
            .expect("server task")
            .expect("server");
    }
}

/// Completes once `true` is sent.
async fn stopped(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|&stop| stop).await;
}
