//! One HTTP/2 connection: hyper's settings, the request extensions tonic's own server
//! inserts, max connection idle and age (with grace), and the graceful drain.

use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http_body::Frame;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tonic::body::Body;
use tonic::codegen::Bytes;
use tonic::codegen::http::{Request, Response};
use tonic::service::Routes;
use tonic::transport::server::TcpConnectInfo;

use super::accept::{Io, Shared};
use super::builder::Settings;

/// hyper's HTTP/2 connection builder, configured once per server.
pub(super) type Http2 = http2::Builder<TokioExecutor>;

pub(super) fn http2(settings: &Settings) -> Http2 {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(settings.max_concurrent_streams)
        .max_header_list_size(settings.max_header_list_size)
        .max_pending_accept_reset_streams(settings.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(settings.max_local_error_reset_streams)
        .keep_alive_interval(settings.keepalive_interval)
        .keep_alive_timeout(settings.keepalive_timeout);
    builder
}

/// The drain signals of the accept loop: `graceful` sends GOAWAY and lets calls finish,
/// `force` closes the connection.
#[derive(Debug)]
pub(super) struct Signals {
    pub(super) graceful: watch::Receiver<bool>,
    pub(super) force: watch::Receiver<bool>,
}

/// What tonic's own server inserts into each request's extensions, so that
/// `Request::remote_addr`, `local_addr` and `peer_certs` work.
#[derive(Debug, Clone)]
pub(super) enum ConnectInfo {
    Tcp(TcpConnectInfo),
    #[cfg(feature = "tls")]
    Tls(tonic::transport::server::TlsConnectInfo<TcpConnectInfo>),
    #[cfg(feature = "testing")]
    Memory(InMemoryConnectInfo),
}

/// In a request's extensions when the call came over an in-memory connection of
/// [`testing::InMemory`](crate::testing::InMemory) (feature `testing`), served by
/// [`Server`](super::Server) or by tonic's own server: there is no address, so
/// `Request::remote_addr` is `None` (and a per-peer call rate does not apply), and this
/// says which connection it was.
///
/// ```
/// # fn handler(request: tonic::Request<()>) {
/// use tonic_intercept::testing::InMemoryConnectInfo;
/// if let Some(info) = request.extensions().get::<InMemoryConnectInfo>() {
///     println!("in-memory connection #{}", info.connection());
/// }
/// # }
/// ```
#[cfg(feature = "testing")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InMemoryConnectInfo {
    connection: u64,
}

#[cfg(feature = "testing")]
impl InMemoryConnectInfo {
    pub(crate) fn new(connection: u64) -> Self {
        Self { connection }
    }

    /// The connection's number, from 1, in the order the [`InMemory`](crate::testing::InMemory)
    /// server's connector opened them.
    pub fn connection(&self) -> u64 {
        self.connection
    }
}

/// Serves one connection until it ends, its idle time or age runs out, or the server
/// drains.
pub(super) async fn serve(io: Io, info: ConnectInfo, shared: &Shared, mut signals: Signals) {
    let settings = &shared.settings;
    let activity = Arc::new(Activity::new());
    let service = ConnService {
        routes: shared.routes.clone(),
        info,
        activity: activity.clone(),
    };
    let mut conn = pin!(shared.http2.serve_connection(TokioIo::new(io), service));

    let far = || Instant::now() + Duration::from_secs(100 * 365 * 24 * 60 * 60);
    let idle_at = |now: Instant| {
        settings
            .max_connection_idle
            .map_or_else(far, |idle| now + idle)
    };
    let mut idle = pin!(tokio::time::sleep_until(idle_at(Instant::now())));
    let age = settings.max_connection_age.map(|age| {
        // ±10 % like grpc-go, so connections made together do not all go at once.
        let jitter = 0.9 + 0.2 * crate::util::Jitter::new().next_f64();
        age.mul_f64(jitter)
    });
    let mut age_timer: Pin<&mut Sleep> = pin!(tokio::time::sleep_until(
        age.map_or_else(far, |age| Instant::now() + age)
    ));
    let mut aged = false;
    let mut draining = false;

    loop {
        tokio::select! {
            done = &mut conn => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = signals.force.wait_for(|&f| f) => return,
            _ = signals.graceful.wait_for(|&g| g), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = &mut idle, if !draining => {
                // The streams count themselves (two atomic operations per call, no
                // wake-up of this task); the timer looks when it fires.
                let Some(idle_for) = settings.max_connection_idle else {
                    idle.as_mut().reset(far());
                    continue;
                };
                match activity.idle_since() {
                    None => {
                        idle.as_mut().reset(Instant::now() + idle_for);
                        continue;
                    }
                    Some(since) if since + idle_for > Instant::now() => {
                        idle.as_mut().reset(since + idle_for);
                        continue;
                    }
                    Some(_) => {}
                }
                // A client that never answers the graceful shutdown's PING would keep
                // the connection: it too is closed after the grace.
                tracing::debug!("max connection idle: GOAWAY");
                draining = true;
                conn.as_mut().graceful_shutdown();
                aged = true;
                age_timer.as_mut().reset(Instant::now() + settings.max_connection_age_grace);
            }
            () = &mut age_timer => {
                if aged {
                    tracing::debug!("max connection age grace over: closing");
                    return;
                }
                aged = true;
                if !draining {
                    tracing::debug!("max connection age: GOAWAY");
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                age_timer.as_mut().reset(Instant::now() + settings.max_connection_age_grace);
            }
        }
    }
}

/// The per-connection hyper service: tonic's routes, with the connection's info in the
/// request extensions and each stream counted while open (for max connection idle).
#[derive(Debug, Clone)]
struct ConnService {
    routes: Routes,
    info: ConnectInfo,
    activity: Arc<Activity>,
}

/// A connection's open streams, and since when it has had none, for max connection idle.
#[derive(Debug)]
struct Activity {
    /// What `idle_since` counts from.
    base: Instant,
    open: AtomicUsize,
    /// Nanoseconds from `base` to the end of the last stream (0: the connection's start).
    idle_since: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            open: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
        }
    }

    /// Since when the connection has had no open stream; `None` while one is open.
    fn idle_since(&self) -> Option<Instant> {
        if self.open.load(Ordering::Acquire) > 0 {
            return None;
        }
        let nanos = self.idle_since.load(Ordering::Acquire);
        Some(self.base + Duration::from_nanos(nanos))
    }
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let mut req = req.map(Body::new);
        // `auth::ClientCert` reads the client's certificates while the call is polled.
        #[cfg(feature = "mtls")]
        let mut peer_certs = None;
        match &self.info {
            ConnectInfo::Tcp(tcp) => {
                req.extensions_mut().insert(tcp.clone());
            }
            #[cfg(feature = "tls")]
            ConnectInfo::Tls(tls) => {
                req.extensions_mut().insert(tls.get_ref().clone());
                req.extensions_mut().insert(tls.clone());
                #[cfg(feature = "mtls")]
                {
                    peer_certs = tls.peer_certs();
                }
            }
            #[cfg(feature = "testing")]
            ConnectInfo::Memory(memory) => {
                req.extensions_mut().insert(*memory);
            }
        }
        let guard = StreamGuard::new(self.activity.clone());
        let mut routes = self.routes.clone();
        // `Routes` (an axum router) is always ready.
        let inner = tonic::codegen::Service::call(&mut routes, req);
        ResponseFuture {
            inner,
            guard: Some(guard),
            #[cfg(feature = "mtls")]
            peer_certs,
            #[cfg(not(feature = "mtls"))]
            peer_certs: (),
        }
    }
}

/// Counts one open stream until dropped; the last one to close notes the time.
#[derive(Debug)]
struct StreamGuard(Arc<Activity>);

impl StreamGuard {
    fn new(activity: Arc<Activity>) -> Self {
        activity.open.fetch_add(1, Ordering::AcqRel);
        Self(activity)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            let since = activity.base.elapsed().as_nanos();
            let since = u64::try_from(since).unwrap_or(u64::MAX);
            activity.idle_since.fetch_max(since, Ordering::AcqRel);
        }
    }
}

pin_project_lite::pin_project! {
    /// The routes' response, its body carrying the stream's guard.
    #[derive(Debug)]
    pub(super) struct ResponseFuture {
        #[pin]
        inner: <Routes as tonic::codegen::Service<Request<Body>>>::Future,
        guard: Option<StreamGuard>,
        peer_certs: PeerCerts,
    }
}

/// The client's certificates, made current while the call is polled (feature `mtls`).
#[cfg(feature = "mtls")]
type PeerCerts = Option<crate::policy::auth::PeerCerts>;
#[cfg(not(feature = "mtls"))]
type PeerCerts = ();

impl Future for ResponseFuture {
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        #[cfg(feature = "mtls")]
        let response = ready!(crate::policy::auth::peer_certs_scope(
            this.peer_certs,
            || this.inner.poll(cx)
        ))?;
        #[cfg(not(feature = "mtls"))]
        let response = ready!(this.inner.poll(cx))?;
        let guard = this.guard.take();
        Poll::Ready(Ok(response.map(|inner| TrackedBody {
            inner,
            _guard: guard,
        })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its stream counted as open until hyper drops it.
    #[derive(Debug)]
    pub(super) struct TrackedBody {
        #[pin]
        inner: Body,
        _guard: Option<StreamGuard>,
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
