// Every kind of policy on every kind of RPC: public and authenticated RPCs, limits for
// all RPCs and per RPC, a generic hook, a typed hook per RPC and an `Arc`'d hook.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tonic_intercept::{Call, Hook, CallOutcome, Rpc, StaticTokens, intercept};
use tonic_intercept_tests::{Recorder, pb};

use pb::echo_service_intercept::{Bidi, ClientStream, Unary};
use pb::echo_service_server::EchoServiceServer;
use pb::{EchoReply, EchoRequest, StreamRequest, Summary};

/// A hook for every RPC at once.
#[derive(Clone)]
struct Log;

impl<R: Rpc> Hook<R> for Log {
    fn on_finish(&self, call: &Call, outcome: &CallOutcome) {
        let _ = (call.rpc().method, outcome.code, outcome.messages_in);
    }
}

/// Refuses empty texts, for the RPCs whose requests are `EchoRequest`.
#[derive(Clone)]
struct NonEmpty;

fn non_empty(message: &EchoRequest) -> Result<(), Status> {
    if message.text.is_empty() {
        return Err(Status::invalid_argument("text must not be empty"));
    }
    Ok(())
}

impl Hook<Unary> for NonEmpty {
    fn on_request(&self, _call: &Call, message: &EchoRequest) -> Result<(), Status> {
        non_empty(message)
    }
}

impl Hook<ClientStream> for NonEmpty {
    fn on_request(&self, _call: &Call, message: &EchoRequest) -> Result<(), Status> {
        non_empty(message)
    }
}

impl Hook<Bidi> for NonEmpty {
    async fn on_call(
        &self,
        _call: &Call,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<(), Status> {
        match metadata.get("x-tenant") {
            Some(_) => Ok(()),
            None => Err(Status::failed_precondition("missing x-tenant")),
        }
    }
    fn on_request(&self, _call: &Call, message: &EchoRequest) -> Result<(), Status> {
        non_empty(message)
    }
    fn on_response(&self, _call: &Call, message: &EchoReply) -> Result<(), Status> {
        let _ = message.seq;
        Ok(())
    }
}

struct Echo {
    tokens: StaticTokens<String>,
    recorder: Recorder,
    checks: Arc<NonEmpty>,
}

#[intercept(
    hook(Log),
    public(Unary),
    auth(self.tokens),
    limit(max_message_bytes = 1024, timeout_ms = 5000),
    limit(ServerStream, max_messages_out = 5, messages_per_second_out = 10, burst = 2),
    limit(ClientStream, max_messages_in = 3, messages_per_second_in = 5, on_rate_exceeded = reject),
    limit(Bidi, max_messages_in = 4, max_messages_out = 4),
    hook(self.recorder: Recorder),
    hook(self.checks: Arc<NonEmpty>, Unary, ClientStream, Bidi),
)]
#[tonic::async_trait]
impl pb::echo_service_server::EchoService for Echo {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let text = request.into_inner().text;
        Ok(Response::new(EchoReply { text, seq: 0 }))
    }

    type ServerStreamStream = ReceiverStream<Result<EchoReply, Status>>;

    async fn server_stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        let who = request
            .extensions()
            .get::<String>()
            .cloned()
            .unwrap_or_default();
        let StreamRequest { count, text, .. } = request.into_inner();
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            for seq in 1..=u64::from(count) {
                let reply = EchoReply {
                    text: format!("{text} for {who}"),
                    seq,
                };
                if tx.send(Ok(reply)).await.is_err() {
                    break;
                }
            }
        });
        let stream: Self::ServerStreamStream = ReceiverStream::new(rx);
        Ok(Response::new(stream))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Summary>, Status> {
        let mut requests = request.into_inner();
        let mut summary = Summary::default();
        while let Some(message) = requests.next().await {
            summary.received += 1;
            summary.texts.push(message?.text);
        }
        Ok(Response::new(summary))
    }

    type BidiStream = ReceiverStream<Result<EchoReply, Status>>;

    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut seq = 0;
            while let Some(message) = requests.next().await {
                seq += 1;
                let reply = message.map(|m| EchoReply { text: m.text, seq });
                if tx.send(reply).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

fn main() {
    let _server = EchoServiceServer::new(Echo {
        tokens: StaticTokens::new([("s3cret", "ada".to_string())]),
        recorder: Recorder::default(),
        checks: Arc::new(NonEmpty),
    });
}
