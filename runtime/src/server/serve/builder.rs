//! The builder: the settings with their defaults, the services, health, reflection, TLS.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::{Request, Response};
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthService;

use super::accept;
use crate::metrics::ServerMetrics;
use crate::server::edge::{Edge, EdgeBody, Edged};
use crate::server::health::{Health, HealthServices};
use crate::server::reflection::{
    HEALTH_FILE_DESCRIPTOR_SET, HEALTH_SERVICE_NAME, reflection, reflection_of,
};

/// A hardened gRPC server over HTTP/2 (and TLS): tonic's routing and services, with the
/// library's own accept loop and hyper connection settings. See the
/// [module docs](crate::server::serve) for the defaults and where each comes from.
///
/// ```no_run
/// # tonic_intercept::__doc_server!();
/// use pb::user_service_server::UserServiceServer;
/// use tonic_intercept::ServerMetrics;
/// use tonic_intercept::prometheus_client::registry::Registry;
/// use tonic_intercept::server::{HealthServices, Server};
///
/// # async fn run(users: Users) -> Result<(), Box<dyn std::error::Error>> {
/// let mut registry = Registry::default();
/// let metrics = ServerMetrics::register(&mut registry);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:50051").await?;
/// // `Users` implements `UserService` under `#[intercept(..)]`.
/// Server::builder()
///     .metrics(&metrics)
///     .add_service(UserServiceServer::new(users))
///     .with_health(HealthServices::new().serving::<pb::user_service_intercept::Service>())
///     .serve_with_shutdown(listener, async {
///         let _ = tokio::signal::ctrl_c().await;
///     })
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a Server does nothing until `serve` is awaited"]
pub struct Server {
    routes: Routes,
    intercepted: Vec<AddIntercepted>,
    metrics: Option<ServerMetrics>,
    pub(super) settings: Settings,
    health: Option<HealthSource>,
    reflection: Option<Vec<&'static [u8]>>,
    /// The names of the services added, which reflection lists.
    served: Vec<&'static str>,
    #[cfg(feature = "tls")]
    pub(super) tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

/// Adds one `#[intercept]` service behind its edge, once the metrics are known.
#[derive(Clone)]
struct AddIntercepted(Arc<AddToRoutes>);

/// Adds a service to the routes, with the server's metrics if it has some.
type AddToRoutes = dyn Fn(Routes, Option<&ServerMetrics>) -> Routes + Send + Sync;

impl std::fmt::Debug for AddIntercepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AddIntercepted")
    }
}

#[derive(Debug, Clone)]
enum HealthSource {
    Builder(HealthServices),
    Built(Health, HealthServer<HealthService>),
}

/// Every number the server runs with; [`Server`]'s methods set them.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) max_concurrent_streams: u32,
    pub(super) handshake_timeout: Duration,
    pub(super) max_connections: usize,
    pub(super) accept_backoff: (Duration, Duration),
    pub(super) max_header_list_size: u32,
    pub(super) keepalive_interval: Option<Duration>,
    pub(super) keepalive_timeout: Duration,
    pub(super) max_connection_idle: Option<Duration>,
    pub(super) max_connection_age: Option<Duration>,
    pub(super) max_connection_age_grace: Duration,
    pub(super) max_pending_accept_reset_streams: usize,
    pub(super) max_local_error_reset_streams: usize,
    pub(super) tcp_nodelay: bool,
    pub(super) tcp_keepalive: Option<Duration>,
    pub(super) drain_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_concurrent_streams: Server::DEFAULT_MAX_CONCURRENT_STREAMS,
            handshake_timeout: Server::DEFAULT_HANDSHAKE_TIMEOUT,
            max_connections: Server::DEFAULT_MAX_CONNECTIONS,
            accept_backoff: (
                Server::DEFAULT_ACCEPT_BACKOFF_MIN,
                Server::DEFAULT_ACCEPT_BACKOFF_MAX,
            ),
            max_header_list_size: Server::DEFAULT_MAX_HEADER_LIST_SIZE,
            keepalive_interval: Some(Server::DEFAULT_KEEPALIVE_INTERVAL),
            keepalive_timeout: Server::DEFAULT_KEEPALIVE_TIMEOUT,
            max_connection_idle: Some(Server::DEFAULT_MAX_CONNECTION_IDLE),
            max_connection_age: None,
            max_connection_age_grace: Server::DEFAULT_MAX_CONNECTION_AGE_GRACE,
            max_pending_accept_reset_streams: Server::DEFAULT_MAX_PENDING_ACCEPT_RESET_STREAMS,
            max_local_error_reset_streams: Server::DEFAULT_MAX_LOCAL_ERROR_RESET_STREAMS,
            tcp_nodelay: true,
            tcp_keepalive: Some(Server::DEFAULT_TCP_KEEPALIVE),
            drain_timeout: Server::DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

impl Default for Server {
    fn default() -> Self {
        Self::builder()
    }
}

impl Server {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` advertised on each connection: 128, nginx's
    /// `http2_max_concurrent_streams`.
    pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 128;
    /// From accept to the client's HTTP/2 preface and first `SETTINGS` frame (TLS
    /// handshake included): 10 s.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Open connections at most: 10,000; past it the server stops accepting until one
    /// closes.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
    /// First pause of the accept loop after `EMFILE`/`ENFILE`/`ENOMEM`/`ENOBUFS`: 5 ms
    /// (grpc-go `Server.Serve`).
    pub const DEFAULT_ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
    /// Longest pause of the accept loop, doubling from the first: 1 s (grpc-go).
    pub const DEFAULT_ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`: 16 KiB, hyper's default.
    pub const DEFAULT_MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
    /// An HTTP/2 PING after this long without a frame from the client: 2 h (grpc-go
    /// `keepalive.ServerParameters.Time`).
    pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2 * 60 * 60);
    /// The connection is closed when a PING is not answered within: 20 s (grpc-go
    /// `keepalive.ServerParameters.Timeout`).
    pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
    /// A connection without an open stream for this long is sent GOAWAY: 1 h, Envoy's
    /// `idle_timeout` (grpc-go's `MaxConnectionIdle` is infinite by default).
    pub const DEFAULT_MAX_CONNECTION_IDLE: Duration = Duration::from_secs(60 * 60);
    /// How long calls may go on after a connection reached its maximum age and was sent
    /// GOAWAY: 30 s.
    pub const DEFAULT_MAX_CONNECTION_AGE_GRACE: Duration = Duration::from_secs(30);
    /// Streams the client may reset before the server accepted them (rapid reset,
    /// CVE-2023-44487), then GOAWAY `ENHANCE_YOUR_CALM`: 20, h2's default.
    pub const DEFAULT_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
    /// Streams the server may reset because of the client's errors ("MadeYouReset",
    /// CVE-2025-8671), then GOAWAY `ENHANCE_YOUR_CALM`: 1,024, h2's and hyper's default,
    /// which tonic's own `Server` switches off unless told.
    pub const DEFAULT_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;
    /// TCP keepalive probes after this long idle: 15 s, Go's `net` default, which
    /// grpc-go's listeners use.
    pub const DEFAULT_TCP_KEEPALIVE: Duration = Duration::from_secs(15);
    /// On shutdown, in-flight calls get this long to finish before their connections are
    /// closed: 30 s, Kubernetes' default `terminationGracePeriodSeconds`.
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

    /// A server with no service and every default of the table in the
    /// [module docs](crate::server::serve).
    pub fn builder() -> Self {
        Self {
            routes: Routes::default(),
            intercepted: Vec::new(),
            metrics: None,
            settings: Settings::default(),
            health: None,
            reflection: None,
            served: Vec::new(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Adds the generated server of an `#[intercept]` impl (`UserServiceServer::new(users)`,
    /// with its compression settings) behind its [`Edge`]: each call is owned from its
    /// request headers (one clock and deadline, `grpc-timeout` checked, messages capped at
    /// their length prefix) and, with [`metrics`](Self::metrics), counted, including the
    /// calls refused before a handler runs.
    pub fn add_service<S, F>(mut self, service: S) -> Self
    where
        S: Edged
            + Service<
                Request<EdgeBody<Body>>,
                Response = Response<Body>,
                Error = Infallible,
                Future = F,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
    {
        self.served.push(S::NAME);
        self.intercepted
            .push(AddIntercepted(Arc::new(move |routes, metrics| {
                let edge = Edge::new(service.clone());
                routes.add_service(match metrics {
                    Some(metrics) => edge.metrics(metrics),
                    None => edge,
                })
            })));
        self
    }

    /// Adds a tonic service as it is, without an edge, like
    /// `tonic::transport::Server::add_service`: a service without `#[intercept]`, or an
    /// [`Edge`] you configured yourself. Its calls are not in the edge's metrics.
    pub fn add_tonic_service<S>(mut self, service: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.served.push(S::NAME);
        self.routes = self.routes.add_service(service);
        self
    }

    /// Counts every call of the services added with [`add_service`](Self::add_service)
    /// in `metrics`, at their edge (see [`Edge::metrics`]); the order of the calls does
    /// not matter.
    pub fn metrics(mut self, metrics: &ServerMetrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }

    /// Serves `grpc.health.v1.Health` from `health` (built when serving): `SERVING` at
    /// start, `NOT_SERVING` as soon as shutdown begins. Health is outside every
    /// `#[intercept]` policy: no auth, no limit.
    pub fn with_health(mut self, health: HealthServices) -> Self {
        self.health = Some(HealthSource::Builder(health));
        self
    }

    /// [`with_health`](Self::with_health) with a health service built by the caller,
    /// who keeps a clone of the [`Health`] handle to flip statuses while serving; the
    /// server still turns them `NOT_SERVING` when shutdown begins.
    pub fn with_health_service(
        mut self,
        health: Health,
        service: HealthServer<HealthService>,
    ) -> Self {
        self.health = Some(HealthSource::Built(health, service));
        self
    }

    /// Serves server reflection, v1 and v1alpha, over `encoded_sets` (what
    /// tonic-intercept-build writes, `tonic::include_file_descriptor_set!`); with health
    /// on, health's own descriptors are added. It lists the services this server serves
    /// (those added, health, reflection itself), not every service of the sets: a set
    /// may describe more than one server serves. Reflection shows the schema to anyone
    /// who reaches the server, outside auth: whether to serve it is your choice.
    ///
    /// # Errors
    ///
    /// When a set cannot be decoded or the sets are inconsistent.
    pub fn with_reflection(
        mut self,
        encoded_sets: &[&'static [u8]],
    ) -> Result<Self, tonic_reflection::server::Error> {
        reflection(encoded_sets)?;
        self.reflection = Some(encoded_sets.to_vec());
        Ok(self)
    }

    /// Serves TLS (and mutual TLS, when `config` verifies client certificates) with
    /// rustls; ALPN is set to `h2` when `config` names no protocol. The TLS handshake
    /// counts towards the handshake timeout. Handlers see the client's certificates with
    /// `Request::peer_certs`.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, mut config: tokio_rustls::rustls::ServerConfig) -> Self {
        if config.alpn_protocols.is_empty() {
            config.alpn_protocols = vec![b"h2".to_vec()];
        }
        self.tls = Some(Arc::new(config));
        self
    }

    /// `SETTINGS_MAX_CONCURRENT_STREAMS` per connection; streams beyond it are refused
    /// with `REFUSED_STREAM`.
    pub fn max_concurrent_streams(mut self, max: u32) -> Self {
        self.settings.max_concurrent_streams = max;
        self
    }

    /// How long a new connection may take to complete the TLS handshake (if any) and
    /// send the HTTP/2 preface and its first `SETTINGS` frame; then it is closed.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.settings.handshake_timeout = timeout;
        self
    }

    /// Open connections at most (at least 1): at the cap the server stops accepting, so
    /// new clients wait in the listen backlog until a connection closes.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.settings.max_connections = max.max(1);
        self
    }

    /// The accept loop's pause after running out of file descriptors or memory: `min`
    /// first, doubling up to `max`, back to `min` after a successful accept.
    pub fn accept_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.settings.accept_backoff = (min, max.max(min));
        self
    }

    /// `SETTINGS_MAX_HEADER_LIST_SIZE`, enforced on each request's headers (also bounds
    /// a `CONTINUATION` flood).
    pub fn max_header_list_size(mut self, max: u32) -> Self {
        self.settings.max_header_list_size = max;
        self
    }

    /// HTTP/2 keepalive: a PING after `interval` without frames from the client (`None`:
    /// never), the connection closed if it is not answered within `timeout`.
    pub fn http2_keepalive(mut self, interval: Option<Duration>, timeout: Duration) -> Self {
        self.settings.keepalive_interval = interval;
        self.settings.keepalive_timeout = timeout;
        self
    }

    /// GOAWAY to a connection without an open stream for `idle` (grpc-go's
    /// `MaxConnectionIdle`), closed after the
    /// [grace](Self::max_connection_age_grace) if the client does not close it; `None`:
    /// never.
    pub fn max_connection_idle(mut self, idle: Option<Duration>) -> Self {
        self.settings.max_connection_idle = idle;
        self
    }

    /// GOAWAY to a connection once it is `age` old, ±10 % jitter (grpc-go's
    /// `MaxConnectionAge`); `None` (the default): never. Its calls then have
    /// [`max_connection_age_grace`](Self::max_connection_age_grace) to finish.
    pub fn max_connection_age(mut self, age: Option<Duration>) -> Self {
        self.settings.max_connection_age = age;
        self
    }

    /// How long calls may go on after the maximum age's (or idle time's) GOAWAY before
    /// the connection is closed (grpc-go's `MaxConnectionAgeGrace`).
    pub fn max_connection_age_grace(mut self, grace: Duration) -> Self {
        self.settings.max_connection_age_grace = grace;
        self
    }

    /// Streams a client may reset before the server accepted them, then GOAWAY
    /// `ENHANCE_YOUR_CALM` (rapid reset, CVE-2023-44487).
    pub fn max_pending_accept_reset_streams(mut self, max: usize) -> Self {
        self.settings.max_pending_accept_reset_streams = max;
        self
    }

    /// Streams the server may reset for the client's protocol errors, then GOAWAY
    /// `ENHANCE_YOUR_CALM` ("MadeYouReset").
    pub fn max_local_error_reset_streams(mut self, max: usize) -> Self {
        self.settings.max_local_error_reset_streams = max;
        self
    }

    /// `TCP_NODELAY` on accepted sockets.
    pub fn tcp_nodelay(mut self, on: bool) -> Self {
        self.settings.tcp_nodelay = on;
        self
    }

    /// TCP keepalive on accepted sockets, probing after `idle`; `None`: off.
    pub fn tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.settings.tcp_keepalive = idle;
        self
    }

    /// On shutdown, how long in-flight calls get to finish after the GOAWAY before their
    /// connections are closed.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.settings.drain_timeout = timeout;
        self
    }

    /// Serves on `listener` until the listener fails for good; see
    /// [`serve_with_shutdown`](Self::serve_with_shutdown).
    ///
    /// # Errors
    ///
    /// When health or reflection cannot be set up.
    pub async fn serve(self, listener: TcpListener) -> io::Result<()> {
        self.serve_with_shutdown(listener, std::future::pending())
            .await
    }

    /// Serves on `listener` until `signal` completes, then drains: stops accepting
    /// (the listener is closed), turns health `NOT_SERVING`, sends GOAWAY on every
    /// connection, lets in-flight calls finish within the drain timeout, then closes
    /// what is left and returns.
    ///
    /// # Errors
    ///
    /// When health or reflection cannot be set up.
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let (shared, health) = self.prepare().await?;
        let signal = not_serving_after(signal, health);
        accept::serve(accept::Listener::Tcp(listener), Arc::new(shared), signal).await;
        Ok(())
    }

    /// For [`testing::InMemory`](crate::testing::InMemory): sets the server up like
    /// [`serve_with_shutdown`](Self::serve_with_shutdown) (the same routes, edges,
    /// settings, health and reflection), and returns the future that serves the
    /// connections of `incoming` until `signal` completes, then drains. TLS, if set, is not
    /// used: the connections are plaintext HTTP/2.
    #[cfg(feature = "testing")]
    pub(crate) async fn serve_in_memory(
        self,
        incoming: tokio::sync::mpsc::Receiver<accept::MemoryConnection>,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<impl Future<Output = ()> + Send + 'static> {
        let (shared, health) = self.prepare().await?;
        let signal = not_serving_after(signal, health);
        Ok(accept::serve(
            accept::Listener::Memory(incoming),
            Arc::new(shared),
            signal,
        ))
    }

    /// The routes with every service, health turned `SERVING`, and what each connection
    /// shares; the health handle, to turn `NOT_SERVING` on shutdown.
    async fn prepare(self) -> io::Result<(accept::Shared, Option<Health>)> {
        let mut routes = self.routes;
        for add in &self.intercepted {
            routes = (add.0)(routes, self.metrics.as_ref());
        }
        let health = match self.health {
            None => None,
            Some(HealthSource::Builder(builder)) => {
                let (health, service) = builder.build().await;
                routes = routes.add_service(service);
                Some(health)
            }
            Some(HealthSource::Built(health, service)) => {
                routes = routes.add_service(service);
                Some(health)
            }
        };
        if let Some(mut sets) = self.reflection {
            if health.is_some() && !sets.contains(&HEALTH_FILE_DESCRIPTOR_SET) {
                sets.push(HEALTH_FILE_DESCRIPTOR_SET);
            }
            let mut served = self.served;
            if health.is_some() {
                served.push(HEALTH_SERVICE_NAME);
            }
            let (v1, v1alpha) = reflection_of(&sets, Some(&served))
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            routes = routes.add_service(v1).add_service(v1alpha);
        }
        if let Some(health) = &health {
            health.set_serving().await;
        }
        let shared = accept::Shared::new(
            routes.prepare(),
            self.settings,
            #[cfg(feature = "tls")]
            self.tls,
        );
        Ok((shared, health))
    }
}

/// `signal`, then health turned `NOT_SERVING`: the accept loop's shutdown signal.
async fn not_serving_after(signal: impl Future<Output = ()>, health: Option<Health>) {
    signal.await;
    if let Some(health) = health {
        health.set_not_serving().await;
    }
}
