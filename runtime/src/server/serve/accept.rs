//! The accept loop: the connection cap, backing off when out of file descriptors, the
//! handshake timeout (TLS and the HTTP/2 preface), and the drain on shutdown.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tonic::service::Routes;
use tonic::transport::server::TcpConnectInfo;

use super::builder::Settings;
use super::connection::{self, ConnectInfo, Signals};

/// What every connection of one server shares.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) routes: Routes,
    pub(super) settings: Settings,
    pub(super) http2: connection::Http2,
    #[cfg(feature = "tls")]
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl Shared {
    pub(super) fn new(
        routes: Routes,
        settings: Settings,
        #[cfg(feature = "tls")] tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    ) -> Self {
        Self {
            http2: connection::http2(&settings),
            routes,
            settings,
            #[cfg(feature = "tls")]
            tls,
        }
    }
}

/// The accept loop's pause after an accept error: `min`, doubling up to `max`, reset by a
/// successful accept (grpc-go's `Server.Serve`: 5 ms doubling to 1 s).
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    last: Option<Duration>,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            last: None,
        }
    }

    /// The next pause.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let next = match self.last {
            None => self.min,
            Some(last) => last.saturating_mul(2).min(self.max),
        };
        self.last = Some(next);
        next
    }

    pub(crate) fn reset(&mut self) {
        self.last = None;
    }
}

/// Errors of `accept` that concern only the connection being accepted (the client gave
/// up before we took it): accept the next one at once.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Out of file descriptors, memory or buffers: what the accept loop must not spin on.
pub(crate) fn is_resource_exhausted(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS)
        )
    }
    #[cfg(not(unix))]
    {
        e.kind() == io::ErrorKind::OutOfMemory
    }
}

/// The connection of a `testing::InMemory` client: the server's half of a duplex pipe,
/// and what handlers find in their requests' extensions.
#[cfg(feature = "testing")]
pub(crate) type MemoryConnection = (tokio::io::DuplexStream, connection::InMemoryConnectInfo);

/// Where connections come from: a TCP listener, or (feature `testing`) the in-memory
/// connections of `testing::InMemory`.
#[derive(Debug)]
pub(super) enum Listener {
    Tcp(TcpListener),
    #[cfg(feature = "testing")]
    Memory(mpsc::Receiver<MemoryConnection>),
}

/// A connection as accepted, before its handshake.
#[derive(Debug)]
enum Accepted {
    Tcp(TcpStream),
    #[cfg(feature = "testing")]
    Memory(MemoryConnection),
}

impl Listener {
    /// The next connection; `None` when no more can come (every in-memory connector is
    /// gone).
    async fn accept(&mut self) -> Option<io::Result<Accepted>> {
        match self {
            Self::Tcp(listener) => Some(listener.accept().await.map(|(s, _)| Accepted::Tcp(s))),
            #[cfg(feature = "testing")]
            Self::Memory(incoming) => incoming.recv().await.map(|c| Ok(Accepted::Memory(c))),
        }
    }
}

/// Accepts until `signal` completes, then drains (see `Server::serve_with_shutdown`).
pub(super) async fn serve(
    mut listener: Listener,
    shared: Arc<Shared>,
    signal: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(shared.settings.max_connections));
    let (graceful_tx, graceful_rx) = watch::channel(false);
    let (force_tx, force_rx) = watch::channel(false);
    // Every connection task holds a sender; `recv` returns `None` once all have ended.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let (min, max) = shared.settings.accept_backoff;
    let mut backoff = Backoff::new(min, max);
    let mut signal = pin!(signal);
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut signal => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            () = &mut signal => break,
            accepted = listener.accept() => match accepted {
                Some(accepted) => accepted,
                None => break,
            },
        };
        let stream = match accepted {
            Ok(stream) => {
                backoff.reset();
                stream
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // EMFILE and friends, or anything else: pause instead of spinning.
                let delay = backoff.next_delay();
                if is_resource_exhausted(&e) {
                    tracing::warn!(error = %e, ?delay, "accept: out of resources, backing off");
                } else {
                    tracing::warn!(error = %e, ?delay, "accept failed, backing off");
                }
                tokio::select! {
                    biased;
                    () = &mut signal => break,
                    () = tokio::time::sleep(delay) => continue,
                }
            }
        };
        let shared = shared.clone();
        let signals = Signals {
            graceful: graceful_rx.clone(),
            force: force_rx.clone(),
        };
        let alive = alive_tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _alive = alive;
            run_connection(stream, &shared, signals).await;
        });
    }
    // Stop accepting: the kernel refuses new clients from here on.
    drop(listener);
    drop(alive_tx);
    graceful_tx.send_replace(true);
    let drained = tokio::time::timeout(shared.settings.drain_timeout, alive_rx.recv()).await;
    if drained.is_err() {
        tracing::debug!("drain timeout: closing the connections left");
        force_tx.send_replace(true);
        let _ = alive_rx.recv().await;
    }
}

async fn run_connection(accepted: Accepted, shared: &Shared, mut signals: Signals) {
    let settings = &shared.settings;
    let handshake = async {
        match accepted {
            Accepted::Tcp(stream) => {
                configure_tcp(&stream, settings);
                let tcp = TcpConnectInfo {
                    local_addr: stream.local_addr().ok(),
                    remote_addr: stream.peer_addr().ok(),
                };
                handshake(stream, tcp, shared).await
            }
            // No socket, no TLS: plaintext HTTP/2 over the pipe, its preface checked and
            // timed like a TCP connection's.
            #[cfg(feature = "testing")]
            Accepted::Memory((stream, info)) => {
                preface(Transport::Memory(stream), ConnectInfo::Memory(info)).await
            }
        }
    };
    let handshake = tokio::time::timeout(settings.handshake_timeout, handshake);
    let (io, info) = tokio::select! {
        biased;
        _ = signals.force.wait_for(|&f| f) => return,
        _ = signals.graceful.wait_for(|&g| g) => return,
        done = handshake => match done {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("handshake timeout");
                return;
            }
        },
    };
    connection::serve(io, info, shared, signals).await;
}

fn configure_tcp(stream: &TcpStream, settings: &Settings) {
    if let Err(e) = stream.set_nodelay(settings.tcp_nodelay) {
        tracing::debug!(error = %e, "TCP_NODELAY");
    }
    if let Some(idle) = settings.tcp_keepalive {
        let keepalive = socket2::TcpKeepalive::new().with_time(idle);
        if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive) {
            tracing::debug!(error = %e, "TCP keepalive");
        }
    }
}

/// The client's connection preface, then the header of its first frame (a `SETTINGS`).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const PREFIX_LEN: usize = PREFACE.len() + 9;
const FRAME_TYPE_SETTINGS: u8 = 0x4;

async fn handshake(
    stream: TcpStream,
    tcp: TcpConnectInfo,
    shared: &Shared,
) -> io::Result<(Io, ConnectInfo)> {
    #[cfg(feature = "tls")]
    let (io, info) = match &shared.tls {
        None => (Transport::Plain(stream), ConnectInfo::Tcp(tcp)),
        Some(config) => {
            use tonic::transport::server::Connected;
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            let tls = acceptor.accept(stream).await?;
            let info = tls.connect_info();
            (Transport::Tls(Box::new(tls)), ConnectInfo::Tls(info))
        }
    };
    #[cfg(not(feature = "tls"))]
    let (io, info) = {
        let _ = shared;
        (Transport::Plain(stream), ConnectInfo::Tcp(tcp))
    };
    preface(io, info).await
}

/// Reads and checks the client's HTTP/2 preface and first frame header.
async fn preface(mut io: Transport, info: ConnectInfo) -> io::Result<(Io, ConnectInfo)> {
    let mut prefix = [0u8; PREFIX_LEN];
    io.read_exact(&mut prefix).await?;
    if &prefix[..PREFACE.len()] != PREFACE || prefix[PREFACE.len() + 3] != FRAME_TYPE_SETTINGS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an HTTP/2 connection preface",
        ));
    }
    Ok((
        Io {
            prefix,
            read: 0,
            inner: io,
        },
        info,
    ))
}

#[derive(Debug)]
enum Transport {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    #[cfg(feature = "testing")]
    Memory(tokio::io::DuplexStream),
}

/// One accepted connection after its handshake: the bytes already read (the preface and
/// its first frame header) are handed to hyper again first.
#[derive(Debug)]
pub(super) struct Io {
    prefix: [u8; PREFIX_LEN],
    read: usize,
    inner: Transport,
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            #[cfg(feature = "testing")]
            Self::Memory(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            #[cfg(feature = "testing")]
            Self::Memory(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            #[cfg(feature = "testing")]
            Self::Memory(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.is_write_vectored(),
            #[cfg(feature = "testing")]
            Self::Memory(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            #[cfg(feature = "testing")]
            Self::Memory(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            #[cfg(feature = "testing")]
            Self::Memory(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read < PREFIX_LEN {
            let n = (PREFIX_LEN - this.read).min(buf.remaining());
            buf.put_slice(&this.prefix[this.read..this.read + n]);
            this.read += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_5_ms_to_1_s_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_secs(1));
        let delays: Vec<u128> = (0..10).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(5));
    }

    #[test]
    fn emfile_enfile_enomem_enobufs_are_resource_exhaustion() {
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::ENOBUFS] {
            assert!(is_resource_exhausted(&io::Error::from_raw_os_error(code)));
        }
        assert!(!is_resource_exhausted(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
        assert!(is_connection_error(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
        assert!(!is_connection_error(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
    }
}
