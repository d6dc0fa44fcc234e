//! Serving in memory: a [`Server`] (or tonic's own server) over `tokio::io::duplex`
//! pipes, and the tonic [`Channel`]s connected to it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http::Uri;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};

use crate::server::serve::{InMemoryConnectInfo, MemoryConnection, Server};

/// The capacity of each direction of an in-memory connection's pipe: 64 KiB, one HTTP/2
/// default window (a writer waits while the reader is that far behind, as on a socket).
pub const PIPE_CAPACITY: usize = 64 * 1024;

/// Connections opened and not yet accepted by the server, like a listen backlog.
const BACKLOG: usize = 128;

/// A server running in memory, the way grpc-go tests use `bufconn`: no port, no socket,
/// the same HTTP/2 and gRPC stack as over TCP.
///
/// [`serve`](Self::serve) runs the hardened [`Server`], so everything it applies over TCP
/// applies here: the edge of each `#[intercept]` service (deadlines from `grpc-timeout`,
/// length prefixes, unknown methods, the edge's metrics), every policy, the connection
/// settings (`max_connections`, `max_concurrent_streams`, header size, the handshake
/// timeout on the HTTP/2 preface, idle and age), health, reflection and the graceful
/// drain. What does not apply is what needs a socket: TCP options, TLS (the connections
/// are plaintext HTTP/2), and the client address (`Request::remote_addr` is `None`, so a
/// per-peer call rate does not apply; handlers find an [`InMemoryConnectInfo`] instead).
/// [`serve_router`](Self::serve_router) runs tonic's own server instead, for a service
/// that does not use [`Server`].
///
/// Each [`channel`](Self::channel) is a new connection (a new pipe): make as many as a
/// test needs. [`shutdown`](Self::shutdown) drains the server and waits for it. Dropping
/// an `InMemory` without calling it leaves the server running while a channel to it
/// lives; it stops when the last one is dropped.
///
/// ```
/// use tonic_intercept::server::{HealthServices, Server};
/// use tonic_intercept::testing::InMemory;
/// use tonic_intercept::tonic_health::pb::HealthCheckRequest;
/// use tonic_intercept::tonic_health::pb::health_client::HealthClient;
/// use tonic_intercept::tonic_health::ServingStatus;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // `.add_service(UserServiceServer::new(users))` as in `main`, with its policies.
/// let server = InMemory::serve(Server::builder().with_health(HealthServices::new())).await?;
///
/// let mut health = HealthClient::new(server.channel());
/// let reply = health.check(HealthCheckRequest::default()).await?.into_inner();
/// assert_eq!(reply.status, ServingStatus::Serving as i32);
///
/// server.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "dropping an `InMemory` does not stop its server: call `shutdown`"]
pub struct InMemory {
    connector: Connector,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<io::Result<()>>,
}

impl InMemory {
    /// Serves `server` in memory: sets it up (health `SERVING`, reflection) and spawns
    /// its accept loop on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// When health or reflection cannot be set up, as
    /// [`Server::serve_with_shutdown`] would fail.
    pub async fn serve(server: Server) -> io::Result<Self> {
        let (connector, incoming) = Connector::new();
        let (shutdown, signal) = oneshot::channel();
        let serving = server.serve_in_memory(incoming, stop(signal)).await?;
        let task = tokio::spawn(async move {
            serving.await;
            Ok(())
        });
        Ok(Self {
            connector,
            shutdown,
            task,
        })
    }

    /// Serves a tonic router (`tonic::transport::Server::builder().add_service(..)`) in
    /// memory with tonic's own server, on the current tokio runtime: for services that do
    /// not use [`Server`]. Handlers find an [`InMemoryConnectInfo`] in their requests'
    /// extensions here too.
    pub fn serve_router(router: tonic::transport::server::Router) -> Self {
        let (connector, incoming) = Connector::new();
        let (shutdown, signal) = oneshot::channel();
        let incoming = ReceiverStream::new(incoming)
            .map(|(stream, info)| Ok::<_, io::Error>(MemoryStream { stream, info }));
        let task = tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(incoming, stop(signal))
                .await
                .map_err(io::Error::other)
        });
        Self {
            connector,
            shutdown,
            task,
        }
    }

    /// [`serve_router`](Self::serve_router) for tonic [`Routes`](tonic::service::Routes).
    pub fn serve_routes(routes: tonic::service::Routes) -> Self {
        Self::serve_router(tonic::transport::Server::builder().add_routes(routes))
    }

    /// A channel over a new in-memory connection, opened at its first call (tonic's
    /// `connect_lazy`): infallible; once the server has shut down, its calls fail with
    /// `UNAVAILABLE`. Needs a tokio runtime, as any tonic `Channel` does.
    pub fn channel(&self) -> Channel {
        Self::endpoint().connect_with_connector_lazy(self.connector())
    }

    /// A channel over a new in-memory connection, opened now (its HTTP/2 handshake
    /// done).
    ///
    /// # Errors
    ///
    /// When the server has shut down.
    pub async fn connect(&self) -> Result<Channel, tonic::transport::Error> {
        Self::endpoint()
            .connect_with_connector(self.connector())
            .await
    }

    /// The endpoint the channels use, `http://in-memory` (the `:authority` handlers
    /// see): configure it (timeouts, user agent, window sizes) and connect it with
    /// [`connector`](Self::connector).
    pub fn endpoint() -> Endpoint {
        Endpoint::from_static("http://in-memory")
    }

    /// What opens the in-memory connections, for `Endpoint::connect_with_connector`:
    /// each connection it opens is a new pipe to this server.
    pub fn connector(&self) -> Connector {
        self.connector.clone()
    }

    /// Shuts the server down gracefully and waits for it, as
    /// [`Server::serve_with_shutdown`]'s signal does over TCP: no new connection is
    /// accepted, health turns `NOT_SERVING`, every connection gets GOAWAY, calls in flight
    /// finish within the drain timeout.
    ///
    /// # Errors
    ///
    /// What tonic's server returned, for [`serve_router`](Self::serve_router); `Server`
    /// itself does not fail once serving. A panic of the server task is resumed here.
    pub async fn shutdown(self) -> io::Result<()> {
        let _ = self.shutdown.send(());
        match self.task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(io::Error::other(e)),
        }
    }
}

/// The server's shutdown signal: `shutdown` sent; a dropped handle is no signal.
async fn stop(signal: oneshot::Receiver<()>) {
    if signal.await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Opens in-memory connections to an [`InMemory`] server: a tower service from `Uri` to
/// a pipe, for `tonic::transport::Endpoint::connect_with_connector` (the URI is not
/// read). Cheap to clone; each connection it opens is numbered from 1
/// ([`InMemoryConnectInfo::connection`]).
///
/// A connection fails with `ConnectionRefused` once the server has shut down.
#[derive(Debug, Clone)]
pub struct Connector {
    incoming: mpsc::Sender<MemoryConnection>,
    opened: Arc<AtomicU64>,
}

impl Connector {
    fn new() -> (Self, mpsc::Receiver<MemoryConnection>) {
        let (incoming, accept) = mpsc::channel(BACKLOG);
        let connector = Self {
            incoming,
            opened: Arc::new(AtomicU64::new(0)),
        };
        (connector, accept)
    }
}

// By hand rather than `tower::service_fn`: a named, cloneable type users can keep, and
// no dependency on `tower` for it.
impl tonic::codegen::Service<Uri> for Connector {
    type Response = TokioIo<DuplexStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let incoming = self.incoming.clone();
        let number = self.opened.fetch_add(1, Ordering::Relaxed) + 1;
        Box::pin(async move {
            let (client, server) = tokio::io::duplex(PIPE_CAPACITY);
            incoming
                .send((server, InMemoryConnectInfo::new(number)))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        "the in-memory server has shut down",
                    )
                })?;
            Ok(TokioIo::new(client))
        })
    }
}

/// The server's half of a pipe, for tonic's server: its connect info is an
/// [`InMemoryConnectInfo`] (tonic's own for a bare `DuplexStream` is `()`).
#[derive(Debug)]
struct MemoryStream {
    stream: DuplexStream,
    info: InMemoryConnectInfo,
}

impl Connected for MemoryStream {
    type ConnectInfo = InMemoryConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info
    }
}

impl AsyncRead for MemoryStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for MemoryStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
