//! Protos and servers shared by the integration and compile-fail tests.
//!
//! The same `EchoService` is implemented by several types, each under a different
//! `#[intercept(...)]`, so each test serves exactly the policy it checks.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tonic_intercept::{Call, CallOutcome, Hook, Rpc, StaticTokens, intercept};

pub mod pb {
    tonic::include_proto!("echo.v1");
}

use pb::echo_service_intercept as rpc;
use pb::echo_service_server::{EchoService, EchoServiceServer};
use pb::{EchoReply, EchoRequest, StreamRequest, Summary};

/// The one valid token in these tests, and the identity it stands for.
pub const TOKEN: &str = "s3cret";
pub const USER: &str = "ada";

/// What handlers did, so tests can assert on work done (or not done) server-side.
#[derive(Debug, Default)]
pub struct Work {
    /// Replies a server-stream producer managed to hand over.
    pub produced: AtomicU64,
    /// Handler invocations.
    pub handled: AtomicU64,
    /// Signalled when a server-stream producer stops.
    pub producer_stopped: Notify,
}

/// A typed hook that writes down everything it sees.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    pub events: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.events.lock().unwrap())
    }
    fn push(&self, event: String) {
        self.events.lock().unwrap().push(event);
    }
}

fn finish(call: &Call, o: &CallOutcome) -> String {
    format!(
        "finish {} {:?} in={} out={}",
        call.rpc().method,
        o.code,
        o.messages_in,
        o.messages_out
    )
}

impl Hook<rpc::Unary> for Recorder {
    async fn on_call(&self, call: &Call, _: &tonic::metadata::MetadataMap) -> Result<(), Status> {
        self.push(format!("call {}", call.rpc().method));
        Ok(())
    }
    fn on_request(&self, _: &Call, request: &EchoRequest) -> Result<(), Status> {
        self.push(format!("request {}", request.text));
        if request.text == "forbidden" {
            return Err(Status::invalid_argument("text must not be `forbidden`"));
        }
        Ok(())
    }
    fn on_response(&self, _: &Call, reply: &EchoReply) -> Result<(), Status> {
        self.push(format!("response {}", reply.text));
        Ok(())
    }
    fn on_finish(&self, call: &Call, outcome: &CallOutcome) {
        self.push(finish(call, outcome));
    }
}

impl Hook<rpc::ServerStream> for Recorder {
    fn on_request(&self, _: &Call, request: &StreamRequest) -> Result<(), Status> {
        self.push(format!("request count={}", request.count));
        Ok(())
    }
    fn on_response(&self, _: &Call, reply: &EchoReply) -> Result<(), Status> {
        self.push(format!("response {}", reply.seq));
        Ok(())
    }
    fn on_finish(&self, call: &Call, outcome: &CallOutcome) {
        self.push(finish(call, outcome));
    }
}

impl Hook<rpc::ClientStream> for Recorder {
    fn on_request(&self, _: &Call, request: &EchoRequest) -> Result<(), Status> {
        self.push(format!("request {}", request.text));
        if request.text == "forbidden" {
            return Err(Status::invalid_argument("text must not be `forbidden`"));
        }
        Ok(())
    }
    fn on_response(&self, _: &Call, summary: &Summary) -> Result<(), Status> {
        self.push(format!("response received={}", summary.received));
        Ok(())
    }
    fn on_finish(&self, call: &Call, outcome: &CallOutcome) {
        self.push(finish(call, outcome));
    }
}

impl Hook<rpc::Bidi> for Recorder {
    fn on_request(&self, _: &Call, request: &EchoRequest) -> Result<(), Status> {
        self.push(format!("request {}", request.text));
        Ok(())
    }
    fn on_response(&self, _: &Call, reply: &EchoReply) -> Result<(), Status> {
        self.push(format!("response {}", reply.text));
        Ok(())
    }
    fn on_finish(&self, call: &Call, outcome: &CallOutcome) {
        self.push(finish(call, outcome));
    }
}

/// A hook for every RPC at once, generic over the RPC type.
#[derive(Debug, Clone, Default)]
pub struct Counter {
    pub finished: Arc<AtomicU64>,
}

impl<R: Rpc> Hook<R> for Counter {
    fn on_finish(&self, _: &Call, _: &CallOutcome) {
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
}

/// Records how long each call took, as its hook sees it.
#[derive(Debug, Clone, Default)]
pub struct Timer {
    pub durations: Arc<Mutex<Vec<Duration>>>,
}

impl<R: Rpc> Hook<R> for Timer {
    fn on_finish(&self, call: &Call, _: &CallOutcome) {
        self.durations.lock().unwrap().push(call.elapsed());
    }
}

/// Handler bodies, shared by every policy variant below.
pub mod handlers {
    use super::*;

    /// The verified identity `auth(..)` put in the request extensions.
    fn identity<T>(request: &Request<T>) -> String {
        request
            .extensions()
            .get::<String>()
            .cloned()
            .unwrap_or_else(|| "anonymous".into())
    }

    pub fn unary(
        work: &Work,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoReply>, Status> {
        work.handled.fetch_add(1, Ordering::SeqCst);
        let who = identity(&request);
        let text = request.into_inner().text;
        Ok(Response::new(EchoReply {
            text: format!("{text} from {who}"),
            seq: 0,
        }))
    }

    pub async fn slow_unary(
        work: &Work,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoReply>, Status> {
        tokio::time::sleep(Duration::from_secs(5)).await;
        unary(work, request)
    }

    pub fn server_stream(
        work: &Arc<Work>,
        request: Request<StreamRequest>,
    ) -> Result<Response<ReceiverStream<Result<EchoReply, Status>>>, Status> {
        work.handled.fetch_add(1, Ordering::SeqCst);
        let who = identity(&request);
        let StreamRequest {
            count,
            text,
            interval_ms,
        } = request.into_inner();
        let text = format!("{text} for {who}");
        let (tx, rx) = mpsc::channel(1);
        let work = work.clone();
        tokio::spawn(async move {
            for seq in 1..=u64::from(count) {
                if interval_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(interval_ms.into())).await;
                }
                let reply = EchoReply {
                    text: text.clone(),
                    seq,
                };
                if tx.send(Ok(reply)).await.is_err() {
                    break;
                }
                work.produced.fetch_add(1, Ordering::SeqCst);
            }
            work.producer_stopped.notify_one();
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    pub async fn client_stream<S>(work: &Work, requests: S) -> Result<Response<Summary>, Status>
    where
        S: Stream<Item = Result<EchoRequest, Status>>,
    {
        work.handled.fetch_add(1, Ordering::SeqCst);
        let mut requests = pin!(requests);
        let mut summary = Summary::default();
        while let Some(request) = requests.next().await {
            summary.received += 1;
            summary.texts.push(request?.text);
        }
        Ok(Response::new(summary))
    }

    pub fn bidi<S>(
        work: &Work,
        requests: S,
    ) -> Result<Response<ReceiverStream<Result<EchoReply, Status>>>, Status>
    where
        S: Stream<Item = Result<EchoRequest, Status>> + Send + 'static,
    {
        work.handled.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut requests = pin!(requests);
            let mut seq = 0;
            while let Some(request) = requests.next().await {
                seq += 1;
                let reply = request.map(|r| EchoReply { text: r.text, seq });
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

type Replies = ReceiverStream<Result<EchoReply, Status>>;

/// Auth for everything but `Unary`, limits on every stream, a recorder on every RPC.
#[derive(Debug)]
pub struct Guarded {
    pub tokens: StaticTokens<String>,
    pub recorder: Recorder,
    pub work: Arc<Work>,
}

impl Guarded {
    pub fn new() -> Self {
        Self {
            tokens: StaticTokens::new([(TOKEN, USER.to_string())]),
            recorder: Recorder::default(),
            work: Arc::default(),
        }
    }
}

impl Default for Guarded {
    fn default() -> Self {
        Self::new()
    }
}

#[intercept(
    public(Unary),
    auth(self.tokens),
    limit(ServerStream, max_messages_out = 5),
    limit(ClientStream, max_messages_in = 3, max_message_bytes = 64),
    limit(Bidi, max_messages_in = 4),
    hook(self.recorder: Recorder),
)]
#[tonic::async_trait]
impl pb::echo_service_server::EchoService for Guarded {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        handlers::unary(&self.work, request)
    }

    type ServerStreamStream = Replies;

    async fn server_stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        handlers::server_stream(&self.work, request)
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Summary>, Status> {
        handlers::client_stream(&self.work, request.into_inner()).await
    }

    type BidiStream = Replies;

    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        handlers::bidi(&self.work, request.into_inner())
    }
}

/// Rates and timeouts: responses paced, requests rejected when too fast, a deadline for
/// every RPC but `Bidi`.
#[derive(Debug, Default)]
pub struct Paced {
    pub work: Arc<Work>,
    pub timer: Timer,
}

/// `Paced` streams replies at this rate; a constant, shared with the tests.
pub const PACED_PER_SECOND: u32 = 20;

#[intercept(
    public(*),
    hook(self.timer: Timer, ServerStream),
    limit(timeout_ms = 300),
    limit(ServerStream, messages_per_second_out = PACED_PER_SECOND),
    limit(Bidi, timeout_ms = none),
    limit(ClientStream, messages_per_second_in = 2, burst = 2, on_rate_exceeded = reject),
)]
#[tonic::async_trait]
impl pb::echo_service_server::EchoService for Paced {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        handlers::slow_unary(&self.work, request).await
    }

    type ServerStreamStream = Replies;

    async fn server_stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        handlers::server_stream(&self.work, request)
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Summary>, Status> {
        handlers::client_stream(&self.work, request.into_inner()).await
    }

    type BidiStream = Replies;

    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        handlers::bidi(&self.work, request.into_inner())
    }
}

/// Serves `service` on an ephemeral loopback port until the test ends.
pub async fn serve<S: EchoService>(service: S) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EchoServiceServer::new(service))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

/// A client for a server started with [`serve`].
pub async fn client(
    addr: SocketAddr,
) -> pb::echo_service_client::EchoServiceClient<tonic::transport::Channel> {
    pb::echo_service_client::EchoServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

/// A request carrying the valid bearer token.
pub fn authed<T>(message: T) -> Request<T> {
    with_token(message, TOKEN)
}

/// A request carrying `token` as its bearer token.
pub fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// `proto/catalog/v1/catalog.proto`: policy declared in the `.proto` with
/// `tonic_intercept/v1/options.proto`.
pub mod catalog_pb {
    tonic::include_proto!("catalog.v1");
}

/// What a valid `EchoRequest` is, for `validate` in `#[intercept]`.
impl tonic_intercept::Validate for EchoRequest {
    fn validate(&self, violations: &mut tonic_intercept::validate::Violations) {
        if self.text.is_empty() {
            violations.field("text", "must not be empty");
        }
        if self.text.starts_with(' ') {
            violations.field("text", "must not start with a space");
        }
    }
}

/// `flaky.v1`: the fault-injecting service the client tests call.
pub mod flaky_pb {
    tonic::include_proto!("flaky.v1");
}

pub mod flaky;
