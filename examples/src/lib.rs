//! A user directory and a coffee bar's order desk, served with `#[intercept]` policies.
//!
//! [`serve`] runs both services on one listener (with health and reflection) and [`serve_metrics`] their Prometheus
//! metrics over HTTP; the `server`, `client` and `demo` binaries build on them. The
//! policies are on the service impls in [`users`] and [`orders`]: panic recovery, call
//! tracing and metrics, auth with a public allowlist and roles, validation, idempotency
//! keys, call rates and concurrency, stream and message limits, deadlines and idle
//! timeouts, and a typed [`Audit`](users::Audit) hook.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use tonic::{Request, Status};
use tonic_intercept::prometheus_client::registry::Registry;
use tonic_intercept::server::{Health, HealthServices, Server};
use tonic_intercept::tonic_health::pb::health_server::HealthServer;
use tonic_intercept::tonic_health::server::HealthService;
use tonic_intercept::{ServerMetrics, StaticTokens};

mod callers;
pub mod fleet;
pub mod orders;
pub mod redis_process;
pub mod users;

pub use callers::{ADA_TOKEN, BARISTA, BOB_TOKEN, Caller, demo_tokens};

/// The encoded `FileDescriptorSet` of `users.v1` and `coffee.v1` (and what they import),
/// as `build.rs` wrote it: what [`serve`]'s reflection services describe.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("file_descriptor_set");

/// Messages, client, server and RPC types of `users.v1`.
pub mod pb {
    tonic::include_proto!("users.v1");
}

/// Messages, client, server and RPC types of `coffee.v1`.
pub mod coffee {
    tonic::include_proto!("coffee.v1");
}

/// Messages, client, server and RPC types of `fleet.v1` (the replicas of [`fleet`]).
pub mod checkout {
    tonic::include_proto!("fleet.v1");
}

use coffee::order_service_client::OrderServiceClient;
use coffee::order_service_server::OrderServiceServer;
use orders::Orders;
use pb::user_service_client::UserServiceClient;
use pb::user_service_server::UserServiceServer;
use users::Users;

/// Both services, ready to serve, and the registry of their metrics; clone what you want
/// to observe before serving.
#[derive(Debug, Clone)]
pub struct Services {
    /// `users.v1.UserService`.
    pub users: Users,
    /// `coffee.v1.OrderService`.
    pub orders: Orders,
    /// The `grpc_server_*` metrics of both services; serve it with [`serve_metrics`].
    pub registry: Arc<Registry>,
    /// The same metrics, for the server's edge ([`Server::metrics`]): it counts every
    /// call from its request headers, also those refused before a handler runs.
    pub metrics: ServerMetrics,
}

impl Services {
    /// Both services, accepting `tokens`, with their metrics registered at zero.
    pub fn new(tokens: StaticTokens<Caller>) -> Self {
        let mut registry = Registry::default();
        let metrics = ServerMetrics::register(&mut registry);
        Self {
            users: Users::new(tokens.clone(), metrics.service()),
            orders: Orders::new(tokens, metrics.service()),
            registry: Arc::new(registry),
            metrics,
        }
    }

    /// The `grpc.health.v1.Health` service for both services, `SERVING`, and the handle
    /// that flips them: hand both to [`serve_with_health`].
    pub async fn health(&self) -> (Health, HealthServer<HealthService>) {
        HealthServices::new()
            .serving::<pb::user_service_intercept::Service>()
            .serving::<coffee::order_service_intercept::Service>()
            .build()
            .await
    }

    /// The metrics as OpenMetrics text, what `GET /metrics` answers.
    pub fn render_metrics(&self) -> String {
        tonic_intercept::metrics::render_metrics(&self.registry)
    }
}

/// Serves `GET /metrics` (the `grpc_server_*` series of `registry`, as Prometheus scrapes
/// them) over HTTP/1.1 on `listener` until `shutdown` completes.
///
/// # Errors
///
/// When the listener fails.
pub async fn serve_metrics(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::header::CONTENT_TYPE;

    let metrics = move || {
        let body = tonic_intercept::metrics::render_metrics(&registry);
        async move {
            (
                [(CONTENT_TYPE, tonic_intercept::metrics::METRICS_CONTENT_TYPE)],
                body,
            )
        }
    };
    let app = axum::Router::new().route("/metrics", axum::routing::get(metrics));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves both services on `listener` until `shutdown` completes, then lets in-flight
/// calls finish before returning; live `Subscribe` feeds end with `UNAVAILABLE`.
///
/// Next to them it serves `grpc.health.v1.Health` ([`Services::health`]; `NOT_SERVING`
/// once `shutdown` completes) and server reflection v1 and v1alpha over
/// [`FILE_DESCRIPTOR_SET`]: `grpcurl -plaintext ADDR list` works.
///
/// # Errors
///
/// When the server cannot be set up.
pub async fn serve(
    listener: TcpListener,
    services: Services,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let health = services.health().await;
    serve_with_health(listener, services, health, shutdown).await
}

/// [`serve`] with a health service built by the caller, who keeps the [`Health`] handle
/// to flip its statuses while serving. The statuses turn `NOT_SERVING` once `shutdown`
/// completes, before in-flight calls finish.
///
/// # Errors
///
/// When the server cannot be set up.
pub async fn serve_with_health(
    listener: TcpListener,
    services: Services,
    health: (Health, HealthServer<HealthService>),
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let orders = services.orders.clone();
    server(services, health)
        .serve_with_shutdown(listener, async move {
            shutdown.await;
            orders.feed().close();
        })
        .await
}

/// The hardened [`Server`] that [`serve`] runs, ready for more settings (e.g. TLS with
/// the runtime's `tls` feature): both services with gzip, `health`, reflection over
/// [`FILE_DESCRIPTOR_SET`], HTTP/2 pings every 30 s (10 s to answer) and TCP keepalive
/// after 60 s, every other setting at its hardened default. Close `orders.feed()` when
/// shutdown begins, as [`serve_with_health`] does, so that `Subscribe` feeds end.
pub fn server(
    services: Services,
    (health, health_service): (Health, HealthServer<HealthService>),
) -> Server {
    let users = UserServiceServer::new(services.users)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    let orders = OrderServiceServer::new(services.orders)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    Server::builder()
        .metrics(&services.metrics)
        .http2_keepalive(Some(Duration::from_secs(30)), Duration::from_secs(10))
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .add_service(users)
        .add_service(orders)
        .with_health_service(health, health_service)
        .with_reflection(&[FILE_DESCRIPTOR_SET])
        .expect("the descriptor sets written by build.rs and tonic-health are consistent")
}

/// Clients for both services on one connection to `addr`, sending and accepting gzip.
///
/// # Errors
///
/// When no connection can be made to `addr`.
pub async fn connect(
    addr: SocketAddr,
) -> Result<(UserServiceClient<Channel>, OrderServiceClient<Channel>), tonic::transport::Error> {
    let channel = channel(addr).await?;
    let users = UserServiceClient::new(channel.clone())
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let orders = OrderServiceClient::new(channel)
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    Ok((users, orders))
}

/// A connection to `addr`, for any client: tonic's or the generated
/// `<service>_intercept::Client`.
///
/// # Errors
///
/// When no connection can be made to `addr`.
pub async fn channel(addr: SocketAddr) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(format!("http://{addr}"))
        .expect("a socket address is a valid URI")
        .connect()
        .await
}

/// A request carrying `authorization: Bearer <token>`.
pub fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .expect("a token is valid metadata");
    request.metadata_mut().insert("authorization", value);
    request
}

/// Answers each message of a request stream from a task, until the client stops
/// sending, an answer fails, or the client goes away (the send then fails).
fn answer_each<S, T, U, F>(mut requests: S, mut answer: F) -> ReceiverStream<Result<U, Status>>
where
    S: Stream<Item = Result<T, Status>> + Unpin + Send + 'static,
    T: Send + 'static,
    U: Send + 'static,
    F: FnMut(T) -> Result<U, Status> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let reply = request.and_then(&mut answer);
            let failed = reply.is_err();
            if tx.send(reply).await.is_err() || failed {
                break;
            }
        }
    });
    ReceiverStream::new(rx)
}
