//! Clients that stop reading a response stream: the call still ends at its deadline
//! (`timeout_ms`) or idle timeout (`idle_timeout_ms`), its producer stops and its
//! `max_in_flight` slot frees, although hyper no longer polls the response body (the
//! client's HTTP/2 window is closed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_intercept::metrics::{ServerMetrics, ServiceMetrics, render_metrics};
use tonic_intercept::prometheus_client::registry::Registry;
use tonic_intercept::{Call, CallOutcome, Hook, PolicyKind, intercept};
use tonic_intercept_tests::pb::echo_service_client::EchoServiceClient;
use tonic_intercept_tests::pb::echo_service_intercept as rpc;
use tonic_intercept_tests::pb::{EchoReply, EchoRequest, StreamRequest, Summary};
use tonic_intercept_tests::serve;

/// How a call ended, as the hooks see it: `(method, code, ended_by)`.
type End = (&'static str, Code, Option<PolicyKind>);

/// Every call's end.
#[derive(Clone, Default)]
struct Ends(Arc<std::sync::Mutex<Vec<End>>>);

impl Ends {
    fn get(&self) -> Vec<End> {
        self.0.lock().unwrap().clone()
    }
}

impl<R: tonic_intercept::Rpc> Hook<R> for Ends {
    fn on_finish(&self, call: &Call, outcome: &CallOutcome) {
        self.0
            .lock()
            .unwrap()
            .push((call.rpc().method, outcome.code, outcome.ended_by));
    }
}

/// What the producers did.
#[derive(Default)]
struct Producers {
    /// Producers that began sending.
    started: AtomicU64,
    /// Producers whose `send` failed: the call's stream was dropped.
    stopped: AtomicU64,
}

struct Unread {
    ends: Ends,
    producers: Arc<Producers>,
    metrics: ServiceMetrics<rpc::Service>,
}

type Replies = ReceiverStream<Result<EchoReply, Status>>;

/// Sends `count` replies (`0`: until `send` fails) through a channel of one.
fn produce(producers: &Arc<Producers>, count: u64) -> Replies {
    let (tx, rx) = mpsc::channel(1);
    let producers = producers.clone();
    tokio::spawn(async move {
        producers.started.fetch_add(1, Ordering::SeqCst);
        let mut seq = 0;
        while count == 0 || seq < count {
            seq += 1;
            let reply = EchoReply {
                text: "x".into(),
                seq,
            };
            if tx.send(Ok(reply)).await.is_err() {
                producers.stopped.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

#[intercept(
    public(*),
    hook(self.ends: Ends),
    metrics(self.metrics),
    limit(ServerStream, timeout_ms = 300, max_in_flight = 2),
    limit(Bidi, idle_timeout_ms = 300, max_in_flight = 2),
)]
#[tonic::async_trait]
impl tonic_intercept_tests::pb::echo_service_server::EchoService for Unread {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let text = request.into_inner().text;
        Ok(Response::new(EchoReply { text, seq: 0 }))
    }

    type ServerStreamStream = Replies;

    async fn server_stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        let count = u64::from(request.into_inner().count);
        Ok(Response::new(produce(&self.producers, count)))
    }

    async fn client_stream(
        &self,
        _request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Summary>, Status> {
        Ok(Response::new(Summary::default()))
    }

    type BidiStream = Replies;

    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        // The first request says how many replies: a number, or "forever".
        let mut requests = request.into_inner();
        let first = requests.message().await?.unwrap_or_default();
        let count = first.text.parse().unwrap_or(0);
        Ok(Response::new(produce(&self.producers, count)))
    }
}

struct Env {
    ends: Ends,
    producers: Arc<Producers>,
    registry: Arc<Registry>,
}

impl Env {
    fn metric(&self, name: &str, labels: &str) -> String {
        let text = render_metrics(&self.registry);
        let prefix = format!("{name}{{{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no series `{prefix}` in\n{text}"))
            .to_string()
    }
}

async fn start() -> (std::net::SocketAddr, Env) {
    let mut registry = Registry::default();
    let metrics = ServerMetrics::register(&mut registry).service::<rpc::Service>();
    let env = Env {
        ends: Ends::default(),
        producers: Arc::new(Producers::default()),
        registry: Arc::new(registry),
    };
    let service = Unread {
        ends: env.ends.clone(),
        producers: env.producers.clone(),
        metrics,
    };
    (serve(service).await, env)
}

/// A client on its own connection whose stream windows hold 64 bytes: a response it
/// does not read soon fills its window, and the server can send no more.
async fn tiny_window_client(addr: std::net::SocketAddr) -> EchoServiceClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .initial_stream_window_size(64)
        .connect()
        .await
        .unwrap();
    EchoServiceClient::new(channel)
}

async fn normal_client(addr: std::net::SocketAddr) -> EchoServiceClient<Channel> {
    EchoServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

/// Waits (bounded) until `done`.
async fn until(what: &str, done: impl Fn() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .unwrap_or_else(|_| panic!("still not {what}"));
}

const SERVER_STREAM: &str =
    r#"grpc_type="server_stream",grpc_service="echo.v1.EchoService",grpc_method="ServerStream""#;
const BIDI: &str =
    r#"grpc_type="bidi_stream",grpc_service="echo.v1.EchoService",grpc_method="Bidi""#;

/// Reads a response stream to its end: the replies, then the status.
async fn drain(mut stream: Streaming<EchoReply>) -> (u64, Status) {
    let mut n = 0;
    loop {
        match stream.message().await {
            Ok(Some(_)) => n += 1,
            Ok(None) => return (n, Status::ok("")),
            Err(status) => return (n, status),
        }
    }
}

#[tokio::test]
async fn an_unread_server_stream_ends_at_its_deadline_and_frees_its_slot() {
    let (addr, env) = start().await;
    let forever = || StreamRequest {
        count: 0,
        text: String::new(),
        interval_ms: 0,
    };

    // Two clients open a never-ending stream each and never read it: both slots taken.
    let mut unread = Vec::new();
    for _ in 0..2 {
        let mut client = tiny_window_client(addr).await;
        let response = client.server_stream(forever()).await.unwrap();
        unread.push((client, response.into_inner()));
    }
    until("both producers started", || {
        env.producers.started.load(Ordering::SeqCst) == 2
    })
    .await;
    let status = normal_client(addr)
        .await
        .server_stream(forever())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);

    // At the deadline the server ends both calls itself: their producers see `send`
    // fail, although the clients still hold the streams and read nothing.
    until("both producers stopped", || {
        env.producers.stopped.load(Ordering::SeqCst) == 2
    })
    .await;
    until("both calls reported", || env.ends.get().len() == 3).await;
    assert_eq!(
        env.ends.get(),
        [
            (
                "ServerStream",
                Code::ResourceExhausted,
                Some(PolicyKind::Concurrency)
            ),
            (
                "ServerStream",
                Code::DeadlineExceeded,
                Some(PolicyKind::Deadline)
            ),
            (
                "ServerStream",
                Code::DeadlineExceeded,
                Some(PolicyKind::Deadline)
            ),
        ]
    );

    // The slots are free: a new call is admitted and served in full.
    let stream = normal_client(addr)
        .await
        .server_stream(StreamRequest {
            count: 3,
            text: String::new(),
            interval_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let (replies, status) = drain(stream).await;
    assert_eq!((replies, status.code()), (3, Code::Ok));

    // A client that reads again gets what was sent, then the deadline's status.
    let (_client, stream) = unread.pop().unwrap();
    let (_, status) = drain(stream).await;
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(status.message(), "ServerStream: deadline exceeded");

    // Each call reported once; the metrics agree.
    let ends = env.ends.get();
    assert_eq!(ends.len(), 4);
    assert_eq!(ends[3], ("ServerStream", Code::Ok, None));
    assert_eq!(env.metric("grpc_server_started_total", SERVER_STREAM), "4");
    for (code, n) in [
        ("OK", "1"),
        ("DeadlineExceeded", "2"),
        ("ResourceExhausted", "1"),
    ] {
        let labels = format!(r#"{SERVER_STREAM},grpc_code="{code}""#);
        assert_eq!(
            env.metric("grpc_server_handled_total", &labels),
            n,
            "{code}"
        );
    }
    for (policy, n) in [("deadline", "2"), ("concurrency", "1")] {
        let labels = format!(r#"{SERVER_STREAM},policy="{policy}""#);
        assert_eq!(
            env.metric("grpc_server_rejected_total", &labels),
            n,
            "{policy}"
        );
    }
}

#[tokio::test]
async fn a_bidi_stream_read_twice_then_not_ends_at_its_idle_timeout() {
    let (addr, env) = start().await;

    // Two clients read two replies each, then stop reading (their request side stays
    // open and quiet).
    let mut unread = Vec::new();
    for _ in 0..2 {
        let mut client = tiny_window_client(addr).await;
        let (tx, rx) = mpsc::channel(1);
        tx.send(EchoRequest {
            text: "forever".into(),
        })
        .await
        .unwrap();
        let mut stream = client
            .bidi(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        for seq in 1..=2 {
            assert_eq!(stream.message().await.unwrap().unwrap().seq, seq);
        }
        unread.push((client, tx, stream));
    }
    let status = normal_client(addr)
        .await
        .bidi(tokio_stream::iter([EchoRequest { text: "1".into() }]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);

    // Blocked on the clients' windows, no message moves: the idle timeout ends both.
    until("both producers stopped", || {
        env.producers.stopped.load(Ordering::SeqCst) == 2
    })
    .await;
    until("both calls reported", || env.ends.get().len() == 3).await;
    assert_eq!(
        env.ends.get(),
        [
            (
                "Bidi",
                Code::ResourceExhausted,
                Some(PolicyKind::Concurrency)
            ),
            (
                "Bidi",
                Code::DeadlineExceeded,
                Some(PolicyKind::IdleTimeout)
            ),
            (
                "Bidi",
                Code::DeadlineExceeded,
                Some(PolicyKind::IdleTimeout)
            ),
        ]
    );

    // The slots are free again.
    let stream = normal_client(addr)
        .await
        .bidi(tokio_stream::iter([EchoRequest { text: "3".into() }]))
        .await
        .unwrap()
        .into_inner();
    let (replies, status) = drain(stream).await;
    assert_eq!((replies, status.code()), (3, Code::Ok));

    // Reading again, a client gets the rest of what was sent and the idle status.
    let (_client, _tx, stream) = unread.pop().unwrap();
    let (_, status) = drain(stream).await;
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(
        status.message(),
        "Bidi: no message for 300 ms (idle timeout)"
    );

    assert_eq!(env.metric("grpc_server_started_total", BIDI), "4");
    for (code, n) in [
        ("OK", "1"),
        ("DeadlineExceeded", "2"),
        ("ResourceExhausted", "1"),
    ] {
        let labels = format!(r#"{BIDI},grpc_code="{code}""#);
        assert_eq!(
            env.metric("grpc_server_handled_total", &labels),
            n,
            "{code}"
        );
    }
    let labels = format!(r#"{BIDI},policy="idle_timeout""#);
    assert_eq!(env.metric("grpc_server_rejected_total", &labels), "2");
}
