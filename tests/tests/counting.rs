//! Counting that matches the wire: a message is counted (hooks, `CallOutcome`,
//! metrics) when it is handed on, not while a pacer holds it; and a client that gives
//! up at its deadline is recorded as `DEADLINE_EXCEEDED` whether its reset or the
//! server's timer comes first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_intercept::metrics::{ServerMetrics, ServiceMetrics, render_metrics};
use tonic_intercept::prometheus_client::registry::Registry;
use tonic_intercept::{Call, CallOutcome, Hook, PolicyKind, intercept};
use tonic_intercept_tests::pb::echo_service_intercept as rpc;
use tonic_intercept_tests::pb::{EchoReply, EchoRequest, StreamRequest, Summary};
use tonic_intercept_tests::{client, serve};

/// One finished call as the hooks saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct End {
    method: &'static str,
    code: Code,
    ended_by: Option<PolicyKind>,
    messages_in: u64,
    messages_out: u64,
}

/// Records each call's end, and counts the messages the hooks were shown.
#[derive(Clone, Default)]
struct Seen {
    ends: Arc<std::sync::Mutex<Vec<End>>>,
    requests: Arc<AtomicU64>,
    responses: Arc<AtomicU64>,
}

impl Seen {
    fn ends(&self) -> Vec<End> {
        self.ends.lock().unwrap().clone()
    }
}

impl Hook<rpc::ServerStream> for Seen {
    fn on_response(&self, _: &Call, _: &EchoReply) -> Result<(), Status> {
        self.responses.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn on_finish(&self, call: &Call, outcome: &CallOutcome) {
        self.end(call, outcome);
    }
}

impl Hook<rpc::ClientStream> for Seen {
    fn on_request(&self, _: &Call, _: &EchoRequest) -> Result<(), Status> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn on_finish(&self, call: &Call, outcome: &CallOutcome) {
        self.end(call, outcome);
    }
}

impl Hook<rpc::Unary> for Seen {
    fn on_finish(&self, call: &Call, outcome: &CallOutcome) {
        self.end(call, outcome);
    }
}

impl Hook<rpc::Bidi> for Seen {
    fn on_finish(&self, call: &Call, outcome: &CallOutcome) {
        self.end(call, outcome);
    }
}

impl Seen {
    fn end(&self, call: &Call, outcome: &CallOutcome) {
        self.ends.lock().unwrap().push(End {
            method: call.rpc().method,
            code: outcome.code,
            ended_by: outcome.ended_by,
            messages_in: outcome.messages_in,
            messages_out: outcome.messages_out,
        });
    }
}

struct Counted {
    seen: Seen,
    /// Signalled when the client-stream handler has read three messages.
    read_three: Arc<Notify>,
    metrics: ServiceMetrics<rpc::Service>,
}

type Replies =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<EchoReply, Status>> + Send>>;

#[intercept(
    public(*),
    hook(self.seen: Seen),
    metrics(self.metrics),
    limit(ServerStream, messages_per_second_out = 10),
    limit(ClientStream, messages_per_second_in = 10, timeout_ms = 2000),
)]
#[tonic::async_trait]
impl tonic_intercept_tests::pb::echo_service_server::EchoService for Counted {
    /// Never answers: the client gives up.
    async fn unary(&self, _: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        std::future::pending().await
    }

    type ServerStreamStream = Replies;

    /// Endless replies, paced at 10 a second by the policy.
    async fn server_stream(
        &self,
        _: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        let replies = tokio_stream::iter(1..).map(|seq| {
            Ok(EchoReply {
                text: "x".into(),
                seq,
            })
        });
        Ok(Response::new(Box::pin(replies)))
    }

    /// Reads three messages, says so, then keeps reading (the pacer holds the fourth).
    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Summary>, Status> {
        let mut requests = request.into_inner();
        let mut summary = Summary::default();
        while let Some(r) = requests.message().await? {
            summary.received += 1;
            summary.texts.push(r.text);
            if summary.received == 3 {
                self.read_three.notify_one();
            }
        }
        Ok(Response::new(summary))
    }

    type BidiStream = Replies;

    /// One reply, then nothing: the call lasts until its deadline or the client leaves.
    async fn bidi(
        &self,
        _: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        let one = tokio_stream::once(Ok(EchoReply {
            text: "x".into(),
            seq: 1,
        }));
        Ok(Response::new(Box::pin(one.chain(tokio_stream::pending()))))
    }
}

struct Env {
    seen: Seen,
    read_three: Arc<Notify>,
    registry: Arc<Registry>,
    addr: std::net::SocketAddr,
}

impl Env {
    async fn start() -> Self {
        let mut registry = Registry::default();
        let metrics = ServerMetrics::register(&mut registry).service::<rpc::Service>();
        let seen = Seen::default();
        let read_three = Arc::new(Notify::new());
        let addr = serve(Counted {
            seen: seen.clone(),
            read_three: read_three.clone(),
            metrics,
        })
        .await;
        Self {
            seen,
            read_three,
            registry: Arc::new(registry),
            addr,
        }
    }

    fn metric(&self, name: &str, labels: &str) -> String {
        let text = render_metrics(&self.registry);
        let prefix = format!("{name}{{{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no series `{prefix}` in\n{text}"))
            .to_string()
    }

    /// Waits (bounded) until the hooks have seen `n` calls end; returns them.
    async fn ends(&self, n: usize) -> Vec<End> {
        let wait = async {
            while self.seen.ends().len() < n {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .expect("the calls end");
        self.seen.ends()
    }
}

fn end(method: &'static str, code: Code, ended_by: Option<PolicyKind>, inn: u64, out: u64) -> End {
    End {
        method,
        code,
        ended_by,
        messages_in: inn,
        messages_out: out,
    }
}

const SERVER_STREAM: &str =
    r#"grpc_type="server_stream",grpc_service="echo.v1.EchoService",grpc_method="ServerStream""#;
const CLIENT_STREAM: &str =
    r#"grpc_type="client_stream",grpc_service="echo.v1.EchoService",grpc_method="ClientStream""#;

#[tokio::test]
async fn a_paced_server_stream_cancelled_after_three_counts_three() {
    let env = Env::start().await;
    let mut client = client(env.addr).await;
    let mut stream = client
        .server_stream(StreamRequest::default())
        .await
        .unwrap()
        .into_inner();
    for seq in 1..=3 {
        assert_eq!(stream.message().await.unwrap().unwrap().seq, seq);
    }
    // The pacer now holds the fourth message for 100 ms; the client leaves.
    drop(stream);

    let ends = env.ends(1).await;
    assert_eq!(ends, [end("ServerStream", Code::Cancelled, None, 1, 3)]);
    assert_eq!(env.seen.responses.load(Ordering::SeqCst), 3);
    assert_eq!(env.metric("grpc_server_msg_sent_total", SERVER_STREAM), "3");
}

#[tokio::test]
async fn a_paced_client_stream_cancelled_after_three_counts_three() {
    let env = Env::start().await;
    let mut client = client(env.addr).await;
    let requests = tokio_stream::iter((0..10).map(|i| EchoRequest {
        text: i.to_string(),
    }));
    let read_three = env.read_three.notified();
    tokio::select! {
        result = client.client_stream(requests) => panic!("the call ended: {result:?}"),
        () = read_three => {}
    }
    // The call's future is dropped: the client resets the stream while the pacer holds
    // the fourth message.

    let ends = env.ends(1).await;
    assert_eq!(ends, [end("ClientStream", Code::Cancelled, None, 3, 0)]);
    assert_eq!(env.seen.requests.load(Ordering::SeqCst), 3);
    assert_eq!(
        env.metric("grpc_server_msg_received_total", CLIENT_STREAM),
        "3"
    );
}

/// A bidi call whose client sends `grpc-timeout`, closes its side at once (so that
/// dropping the response stream resets the HTTP/2 stream) and reads the one reply.
async fn bidi_with_timeout(env: &Env, timeout: Duration) -> (Instant, Streaming<EchoReply>) {
    let mut client = client(env.addr).await;
    let started = Instant::now();
    let mut request = Request::new(tokio_stream::iter(Vec::<EchoRequest>::new()));
    request.set_timeout(timeout);
    let mut stream = client.bidi(request).await.unwrap().into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().seq, 1);
    (started, stream)
}

#[tokio::test]
async fn a_client_that_resets_at_its_deadline_first_is_recorded_deadline_exceeded() {
    let env = Env::start().await;
    // Like grpcio: the timeout sent is rounded up (1010 ms), the client's own timer
    // fires at 1000 ms and resets the stream, before the server's timer.
    let (started, stream) = bidi_with_timeout(&env, Duration::from_millis(1010)).await;
    tokio::time::sleep_until(started + Duration::from_millis(1000)).await;
    drop(stream);
    let ends = env.ends(1).await;
    assert_eq!(
        ends,
        [end(
            "Bidi",
            Code::DeadlineExceeded,
            Some(PolicyKind::Deadline),
            0,
            1
        )]
    );
}

#[tokio::test]
async fn the_servers_timer_first_is_recorded_deadline_exceeded_and_sent() {
    let env = Env::start().await;
    let (_, mut stream) = bidi_with_timeout(&env, Duration::from_millis(300)).await;
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(status.message(), "Bidi: deadline exceeded");
    let ends = env.ends(1).await;
    assert_eq!(
        ends,
        [end(
            "Bidi",
            Code::DeadlineExceeded,
            Some(PolicyKind::Deadline),
            0,
            1
        )]
    );
}

#[tokio::test]
async fn a_cancel_well_before_the_deadline_is_cancelled() {
    let env = Env::start().await;
    let (_, stream) = bidi_with_timeout(&env, Duration::from_secs(10)).await;
    drop(stream);
    let ends = env.ends(1).await;
    assert_eq!(ends, [end("Bidi", Code::Cancelled, None, 0, 1)]);
}

#[tokio::test]
async fn a_unary_client_that_resets_at_its_deadline_is_recorded_deadline_exceeded() {
    let env = Env::start().await;
    let mut client = client(env.addr).await;
    let started = Instant::now();
    let mut request = Request::new(EchoRequest::default());
    request.set_timeout(Duration::from_millis(1010));
    let outcome =
        tokio::time::timeout_at(started + Duration::from_millis(1000), client.unary(request)).await;
    assert!(outcome.is_err(), "the handler never answers");
    let ends = env.ends(1).await;
    assert_eq!(
        ends,
        [end(
            "Unary",
            Code::DeadlineExceeded,
            Some(PolicyKind::Deadline),
            1,
            0
        )]
    );
}

#[tokio::test]
async fn a_client_stream_handler_waiting_forever_for_a_message_ends_at_the_deadline() {
    let env = Env::start().await;
    let mut client = client(env.addr).await;
    // One message, then the client keeps its side open and sends nothing more; the
    // RPC's `timeout_ms` (2 s) covers the handler's wait for the next one. (With only
    // the client's `grpc-timeout`, tonic's own timer can still answer first: the edge's
    // part of issue 11.)
    let requests =
        tokio_stream::iter([EchoRequest { text: "0".into() }]).chain(tokio_stream::pending());
    let status = client.client_stream(requests).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(status.message(), "ClientStream: deadline exceeded");
    let ends = env.ends(1).await;
    assert_eq!(
        ends,
        [end(
            "ClientStream",
            Code::DeadlineExceeded,
            Some(PolicyKind::Deadline),
            1,
            0
        )]
    );
}
