//! Hostile clients whose harm is memory, in a test binary of their own so that its
//! resident set is theirs: 1,000 streams each announcing a 4 MiB message against an RPC
//! capped at 256 bytes, and a flood of the example's public `CreateUser`. After each, a
//! victim client on another connection is served.
//!
//! The tests run one at a time (`SERIAL`): the resident set is the process's.

mod common_serve;

use std::future::poll_fn;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common_serve::*;
use tokio::sync::Notify;
use tokio_stream::StreamExt;
use tonic::codegen::http;
use tonic::transport::Endpoint;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_intercept::ServerMetrics;
use tonic_intercept::metrics::render_metrics;
use tonic_intercept::prometheus_client::registry::Registry;
use tonic_intercept::server::Server;
use tonic_intercept::wire::RETRY_PUSHBACK;
use tonic_intercept_examples::pb::CreateUserRequest;
use tonic_intercept_examples::pb::user_service_client::UserServiceClient;
use tonic_intercept_examples::users::CREATE_USER_PER_PEER_PER_SECOND;
use tonic_intercept_examples::{Services, demo_tokens};
use tonic_intercept_tests::pb::echo_service_server::EchoServiceServer;
use tonic_intercept_tests::pb::{EchoReply, EchoRequest, StreamRequest, Summary};

/// One test at a time in this binary: each measures the process's resident set.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CLIENT_STREAM: &str = "/echo.v1.EchoService/ClientStream";
const MIB: u64 = 1024 * 1024;

/// What a hostile upload announces in its length prefix: 4 MiB, tonic's default
/// `max_decoding_message_size` (and the edge's default), so that without the 256-byte
/// cap the message is accepted and buffered.
const ANNOUNCED: u32 = 4 * 1024 * 1024;
/// What each hostile stream sends of its body (at most; flow control permitting): 128 KiB,
/// within hyper's 1 MiB stream window, so that nothing but the cap keeps it out.
const SENT_PER_STREAM: usize = 128 * 1024;
const CONNECTIONS: usize = 10;
/// Within the server's 128 concurrent streams per connection.
const STREAMS_PER_CONNECTION: usize = 100;
const STREAMS: usize = CONNECTIONS * STREAMS_PER_CONNECTION;

/// The bound on the resident set's growth while 1,000 hostile streams are open.
///
/// Without the cap, tonic's decoder reserves the announced 4 MiB for each stream at the
/// length prefix and keeps every byte of the body it reads until the message is whole.
/// Flow control does not stop it: hyper's windows are 1 MiB per stream and 1 MiB per
/// connection, and the connection's is handed back as tonic reads. The 128 KiB of each of
/// the 1,000 streams are then held, 1,000 × 128 KiB = 125 MiB, for as long as the client
/// keeps the streams open (the uncapped half of the test measures it: ~130 MiB).
///
/// With the cap, the edge refuses each stream at its first DATA frame and the rest of
/// its body is dropped as it comes: what h2 holds at once is bounded by the connection
/// windows, 10 × 1 MiB, whatever each stream sends. Add the state of 1,000 calls on both
/// ends of the connections (client and server share this process: tasks, h2 streams,
/// tonic's per-call state), measured at ~10 MiB for 1,000 streams sending no body at all,
/// and the capped case needs ~22 MiB (measured: 21.7 MiB with 64 KiB a stream, 21.8 MiB
/// with 128 KiB and 256 KiB: it does not grow with what the client sends). 48 MiB is
/// twice that, and under half the uncapped case's.
const RSS_BOUND: u64 = 48 * MIB;

/// The first frame of each hostile body (prefix announcing [`ANNOUNCED`] bytes) and
/// [`SENT_PER_STREAM`] bytes of the body, shared by every stream (`Bytes` slices, so the
/// client side holds it once).
static UPLOAD: LazyLock<Bytes> = LazyLock::new(|| {
    let mut upload = vec![0u8];
    upload.extend_from_slice(&ANNOUNCED.to_be_bytes());
    upload.resize(5 + SENT_PER_STREAM, b'x');
    Bytes::from(upload)
});

/// Request messages the `ClientStream` handler received, of either service below.
#[derive(Debug, Default)]
struct Received(AtomicU64);

/// `EchoService` with `ClientStream` capped at 256 bytes a message.
#[derive(Debug, Clone)]
struct Capped(Arc<Received>);

/// The same service without a cap of its own: tonic's and the edge's default, 4 MiB.
#[derive(Debug, Clone)]
struct Uncapped(Arc<Received>);

type Empty = tokio_stream::Empty<Result<EchoReply, Status>>;

async fn echo(request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
    Ok(Response::new(EchoReply {
        text: request.into_inner().text,
        seq: 0,
    }))
}

async fn upload(
    received: &Received,
    mut stream: impl tokio_stream::Stream<Item = Result<EchoRequest, Status>> + Unpin,
) -> Result<Response<Summary>, Status> {
    let mut summary = Summary::default();
    while let Some(message) = stream.next().await {
        summary.texts.push(message?.text);
        summary.received += 1;
        received.0.fetch_add(1, Ordering::SeqCst);
    }
    Ok(Response::new(summary))
}

#[tonic_intercept::intercept(public(*), limit(ClientStream, max_message_bytes = 256))]
#[tonic::async_trait]
impl tonic_intercept_tests::pb::echo_service_server::EchoService for Capped {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        echo(request).await
    }

    type ServerStreamStream = Empty;

    async fn server_stream(
        &self,
        _request: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        Ok(Response::new(tokio_stream::empty()))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Summary>, Status> {
        upload(&self.0, request.into_inner()).await
    }

    type BidiStream = Empty;

    async fn bidi(
        &self,
        _request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        Ok(Response::new(tokio_stream::empty()))
    }
}

#[tonic_intercept::intercept(public(*))]
#[tonic::async_trait]
impl tonic_intercept_tests::pb::echo_service_server::EchoService for Uncapped {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        echo(request).await
    }

    type ServerStreamStream = Empty;

    async fn server_stream(
        &self,
        _request: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        Ok(Response::new(tokio_stream::empty()))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Summary>, Status> {
        upload(&self.0, request.into_inner()).await
    }

    type BidiStream = Empty;

    async fn bidi(
        &self,
        _request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        Ok(Response::new(tokio_stream::empty()))
    }
}

/// One hostile stream, still open.
struct Hostile {
    /// The request body's sending half: dropping it resets the stream.
    _body: h2::SendStream<Bytes>,
    /// Bytes of [`UPLOAD`] the server's flow control let through.
    sent: usize,
    /// The answer, if one was awaited.
    status: Option<(Code, String)>,
}

/// A raw HTTP/2 connection to `addr` (the `h2` crate: it keeps to the server's flow
/// control windows, which a hand-written client would have to track).
async fn h2_connect(
    addr: SocketAddr,
) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (send, driver)
}

/// Opens a `ClientStream` call, sends [`UPLOAD`] as far as the server's windows allow
/// (never waiting for more window than is granted: the server answering or resetting the
/// stream ends it), and, with `answer`, waits for the status.
async fn hostile_stream(
    send: h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    answer: bool,
) -> Hostile {
    let mut send = send.ready().await.unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{CLIENT_STREAM}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut body) = send.send_request(request, false).unwrap();
    let pump = async {
        let mut sent = 0;
        while sent < UPLOAD.len() {
            body.reserve_capacity(UPLOAD.len() - sent);
            match poll_fn(|cx| body.poll_capacity(cx)).await {
                Some(Ok(0)) => continue,
                Some(Ok(granted)) => {
                    let n = granted.min(UPLOAD.len() - sent);
                    if body.send_data(UPLOAD.slice(sent..sent + n), false).is_err() {
                        break;
                    }
                    sent += n;
                }
                // Reset or closed by the server.
                Some(Err(_)) | None => break,
            }
        }
        sent
    };
    let status = async {
        if !answer {
            return None;
        }
        let response = response.await.unwrap();
        let (parts, mut body) = response.into_parts();
        if let Some(status) = Status::from_header_map(&parts.headers) {
            return Some((status.code(), status.message().to_owned()));
        }
        while let Some(chunk) = body.data().await {
            chunk.unwrap();
        }
        let trailers = body.trailers().await.unwrap().expect("trailers");
        let status = Status::from_header_map(&trailers).expect("a grpc-status");
        Some((status.code(), status.message().to_owned()))
    };
    let (sent, status) = tokio::join!(pump, status);
    Hostile {
        _body: body,
        sent,
        status,
    }
}

/// 1,000 hostile streams over 10 connections against `addr`, all at once; bounded by
/// 20 s. Hands back the connections' drivers (the connections close when they end) and
/// the streams, still open.
async fn hostile_uploads(
    addr: SocketAddr,
    answer: bool,
) -> (Vec<tokio::task::JoinHandle<()>>, Vec<Hostile>) {
    let run = async {
        let mut drivers = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..CONNECTIONS {
            let (send, driver) = h2_connect(addr).await;
            drivers.push(driver);
            for _ in 0..STREAMS_PER_CONNECTION {
                tasks.push(tokio::spawn(hostile_stream(send.clone(), addr, answer)));
            }
        }
        let mut streams = Vec::new();
        for task in tasks {
            streams.push(task.await.unwrap());
        }
        (drivers, streams)
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("1,000 hostile streams within 20 s")
}

/// The value of the series `name{..}` whose labels include every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> u64 {
    let prefix = format!("{name}{{");
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with(&prefix) && labels.iter().all(|l| line.contains(l)))
        .collect();
    assert_eq!(lines.len(), 1, "{name} {labels:?}: {lines:?}");
    lines[0].rsplit_once(' ').unwrap().1.parse().unwrap()
}

/// Waits (up to 10 s) until open fds are back within `slack` of `baseline`.
async fn fds_return(baseline: usize, slack: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_fds() > baseline + slack && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fds = open_fds();
    assert!(fds <= baseline + slack, "{fds} fds > {baseline} + {slack}");
}

/// 1,000 streams (10 connections × 100) each announce a 4 MiB message to `ClientStream`,
/// capped at 256 bytes, and send up to 128 KiB of it: every stream is answered
/// `RESOURCE_EXHAUSTED` at its length prefix, the handler receives no message, the
/// edge counts 1,000 refusals under `limit`, and the resident set grows by less than
/// [`RSS_BOUND`]. The same streams against the same RPC without the cap (4 MiB, the
/// default) grow it past the bound: the cap is what keeps memory down. The file
/// descriptors come back once the connections close, and a victim is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_streams_announcing_4_mib_hold_no_memory_against_a_256_byte_cap() {
    let _serial = SERIAL.lock().await;
    LazyLock::force(&UPLOAD);

    // Capped.
    let mut registry = Registry::default();
    let metrics = ServerMetrics::register(&mut registry);
    let received = Arc::new(Received::default());
    let server = start_echo(
        Server::builder()
            .metrics(&metrics)
            .add_service(EchoServiceServer::new(Capped(received.clone()))),
    )
    .await;
    let fds = open_fds();
    let hwm = reset_peak_rss();
    let before = vm_bytes("VmRSS");
    // Where `VmHWM` cannot be reset, the peak is sampled (every 2 ms) instead.
    let sampled = Arc::new(AtomicU64::new(before));
    let sampler = tokio::spawn({
        let sampled = sampled.clone();
        async move {
            loop {
                sampled.fetch_max(vm_bytes("VmRSS"), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let started = Instant::now();
    let (drivers, streams) = hostile_uploads(server.addr, true).await;
    let took = started.elapsed();
    sampler.abort();
    let mut peak = sampled.load(Ordering::SeqCst).max(vm_bytes("VmRSS"));
    if hwm {
        peak = peak.max(vm_bytes("VmHWM"));
    }
    let after = vm_bytes("VmRSS");
    let growth = peak.saturating_sub(before);
    eprintln!(
        "capped: VmRSS before {before}, after {after}, peak {peak} (VmHWM reset: {hwm}): \
         growth {:.1} MiB; \
         {} bytes sent in all; {took:?}",
        growth as f64 / MIB as f64,
        streams.iter().map(|s| s.sent).sum::<usize>(),
    );

    let expected = format!(
        "ClientStream: request message of {ANNOUNCED} bytes exceeds the limit of 256 bytes, \
         refused at its length prefix"
    );
    assert_eq!(streams.len(), STREAMS);
    for stream in &streams {
        assert_eq!(
            stream.status,
            Some((Code::ResourceExhausted, expected.clone()))
        );
    }
    assert_eq!(received.0.load(Ordering::SeqCst), 0);
    assert!(
        growth < RSS_BOUND,
        "capped: the resident set grew by {growth} bytes (bound {RSS_BOUND})"
    );
    let text = render_metrics(&registry);
    let rpc = r#"grpc_method="ClientStream""#;
    assert_eq!(metric(&text, "grpc_server_started_total", &[rpc]), 1_000);
    assert_eq!(
        metric(
            &text,
            "grpc_server_handled_total",
            &[rpc, r#"grpc_code="ResourceExhausted""#]
        ),
        1_000
    );
    assert_eq!(
        metric(
            &text,
            "grpc_server_rejected_total",
            &[rpc, r#"policy="limit""#]
        ),
        1_000
    );

    // The connections close: both ends' descriptors come back.
    drop(streams);
    for driver in drivers {
        driver.abort();
    }
    fds_return(fds, 8).await;
    victim_is_served(server.addr).await;
    server.stop().await;

    // Uncapped: the same streams hold what they sent, for as long as they stay open.
    let received = Arc::new(Received::default());
    let server = start_echo(
        Server::builder().add_service(EchoServiceServer::new(Uncapped(received.clone()))),
    )
    .await;
    let fds = open_fds();
    let before = vm_bytes("VmRSS");
    let started = Instant::now();
    let (drivers, streams) = hostile_uploads(server.addr, false).await;
    let sent: usize = streams.iter().map(|s| s.sent).sum();
    assert_eq!(
        sent,
        STREAMS * UPLOAD.len(),
        "flow control let every byte through"
    );
    // The server may still be reading: wait (up to 10 s) for the growth to pass the bound.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut growth = 0;
    while Instant::now() < deadline {
        growth = vm_bytes("VmRSS").saturating_sub(before);
        if growth > RSS_BOUND {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "uncapped: VmRSS before {before}, growth {:.1} MiB; {sent} bytes sent; {:?}",
        growth as f64 / MIB as f64,
        started.elapsed()
    );
    assert!(
        growth > RSS_BOUND,
        "uncapped: the resident set grew by {growth} bytes only (bound {RSS_BOUND})"
    );
    assert_eq!(received.0.load(Ordering::SeqCst), 0);
    victim_is_served(server.addr).await;
    drop(streams);
    for driver in drivers {
        driver.abort();
    }
    fds_return(fds, 8).await;
    server.stop().await;
}

fn record(i: usize) -> CreateUserRequest {
    CreateUserRequest {
        name: format!("user {i}"),
        email: format!("user{i}@example.com"),
    }
}

/// How many `CreateUser` calls the flood sends at least; it goes on until the victim
/// is served, up to [`FLOOD_MAX`].
const FLOOD: usize = 3_000;
const FLOOD_MAX: usize = 30_000;
const FLOOD_CONCURRENCY: usize = 8;

/// The example server's public `CreateUser`, flooded from one address (8 calls at a
/// time, at least 3,000): every call is admitted or refused `RESOURCE_EXHAUSTED` with
/// `grpc-retry-pushback-ms` and its exact message; the admitted ones are bounded by the
/// per-peer rate over the flood's measured duration; `/metrics` counts every call, and
/// the directory holds exactly the admitted users. A victim from another loopback
/// address signs up during the flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_create_user_is_refused_past_the_per_peer_rate() {
    let _serial = SERIAL.lock().await;
    let services = Services::new(demo_tokens());
    let health = services.health().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic_intercept_examples::server(services.clone(), health).serve_with_shutdown(
            listener,
            async {
                let _ = stopped.await;
            },
        ),
    );
    let before = vm_bytes("VmRSS");

    let flooder = UserServiceClient::new(channel(addr).await);
    let next = Arc::new(AtomicUsize::new(0));
    let admitted = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let first_refusal = Arc::new(Notify::new());
    let victim_served = Arc::new(AtomicBool::new(false));
    let rate = CREATE_USER_PER_PEER_PER_SECOND as u64;
    let per_token_ms = 1_000 / rate;

    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..FLOOD_CONCURRENCY {
        let mut client = flooder.clone();
        let (next, admitted, refused) = (next.clone(), admitted.clone(), refused.clone());
        let (first_refusal, victim_served) = (first_refusal.clone(), victim_served.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= FLOOD_MAX || (i >= FLOOD && victim_served.load(Ordering::SeqCst)) {
                    next.fetch_sub(1, Ordering::SeqCst);
                    break;
                }
                let call =
                    tokio::time::timeout(Duration::from_secs(10), client.create_user(record(i)));
                match call.await.expect("an answer within 10 s") {
                    Ok(_) => {
                        admitted.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(status) => {
                        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                        let ms: u64 = status
                            .metadata()
                            .get(RETRY_PUSHBACK)
                            .expect("grpc-retry-pushback-ms")
                            .to_str()
                            .unwrap()
                            .parse()
                            .unwrap();
                        // The next token of a 5-a-second bucket is at most 200 ms away.
                        assert!((1..=per_token_ms).contains(&ms), "{ms}");
                        assert_eq!(
                            status.message(),
                            format!(
                                "CreateUser: more than {rate} calls per second per peer address \
                                 (calls_per_second_per_peer); retry in {ms} ms"
                            )
                        );
                        refused.fetch_add(1, Ordering::SeqCst);
                        first_refusal.notify_one();
                    }
                }
            }
        }));
    }

    // The victim, from 127.0.0.2, once the flood is being refused.
    let victim = async {
        tokio::time::timeout(Duration::from_secs(10), first_refusal.notified())
            .await
            .expect("the flood is refused");
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .local_address(Some(Ipv4Addr::new(127, 0, 0, 2).into()))
            .connect()
            .await
            .unwrap();
        let user = UserServiceClient::new(channel)
            .create_user(record(1_000_000))
            .await
            .expect("the victim signs up")
            .into_inner();
        assert_eq!(user.name, "user 1000000");
        let in_flood = next.load(Ordering::SeqCst);
        victim_served.store(true, Ordering::SeqCst);
        in_flood
    };
    let served_after = tokio::time::timeout(Duration::from_secs(15), victim)
        .await
        .expect("the victim is served within 15 s");
    for worker in workers {
        tokio::time::timeout(Duration::from_secs(20), worker)
            .await
            .expect("the flood ends")
            .unwrap();
    }
    let elapsed = started.elapsed();
    let sent = next.load(Ordering::SeqCst);
    let admitted = admitted.load(Ordering::SeqCst);
    let refused = refused.load(Ordering::SeqCst);
    eprintln!(
        "flood: {sent} calls in {elapsed:?}, {admitted} admitted, {refused} refused; the victim \
         was served after call {served_after}; VmRSS {before} -> {}",
        vm_bytes("VmRSS")
    );

    assert!((FLOOD..FLOOD_MAX).contains(&sent), "{sent}");
    assert_eq!(admitted + refused, sent);
    // A full bucket of 5 at the start, then one call every 200 ms at most.
    let burst = rate;
    let bound = burst + (elapsed.as_secs_f64() * rate as f64).ceil() as u64;
    assert!(admitted as u64 >= burst, "{admitted}");
    assert!(
        admitted as u64 <= bound,
        "{admitted} admitted in {elapsed:?} (bound {bound})"
    );
    // The directory holds the admitted users and the victim.
    assert_eq!(services.users.count(), admitted + 1);

    // /metrics: the flood and the victim's call, each counted once.
    let text = services.render_metrics();
    let rpc = r#"grpc_method="CreateUser""#;
    let handled = |code: &str| {
        metric(
            &text,
            "grpc_server_handled_total",
            &[rpc, &format!(r#"grpc_code="{code}""#)],
        )
    };
    assert_eq!(
        metric(&text, "grpc_server_started_total", &[rpc]),
        sent as u64 + 1
    );
    assert_eq!(handled("OK"), admitted as u64 + 1);
    assert_eq!(handled("ResourceExhausted"), refused as u64);
    assert_eq!(
        metric(
            &text,
            "grpc_server_rejected_total",
            &[rpc, r#"policy="call_rate""#]
        ),
        refused as u64
    );

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}
