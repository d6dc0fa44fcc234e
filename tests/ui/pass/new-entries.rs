// Every entry beside `public`, `auth`, `limit` and `hook`, each on the RPCs it fits:
// roles (listed here), metrics, tracing (default and with a redactor), recovery,
// validation, idempotency, call admission (concurrency, call rate, per identity, queue),
// an idle timeout, and `limit(Rpc)` with no keys.

use std::time::Duration;

use pb::echo_service_intercept as rpc;
use pb::echo_service_server::EchoServiceServer;
use pb::{EchoReply, EchoRequest, StreamRequest, Summary};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tonic_intercept::prometheus_client::registry::Registry;
use tonic_intercept::{IdempotencyCache, trace::LogSize, auth::Principal, ServerMetrics, metrics::ServiceMetrics, StaticTokens, TraceCalls};
use tonic_intercept_tests::pb;

struct Echo {
    tokens: StaticTokens<Principal>,
    metrics: ServiceMetrics<rpc::Service>,
    trace: TraceCalls<LogSize>,
    cache: IdempotencyCache<rpc::Unary>,
}

#[tonic_intercept::intercept(
    public(ClientStream),
    auth(self.tokens),
    roles("writer", Unary),
    roles("reader", "writer", ServerStream, Bidi),
    metrics(self.metrics),
    trace(self.trace: TraceCalls<LogSize>, Unary, ServerStream),
    trace(TraceCalls::new(), Bidi),
    recover(Unary, Bidi),
    validate(Unary, ClientStream, Bidi),
    idempotency(self.cache, Unary),
    limit(Unary, max_in_flight = 10, queue = 5, calls_per_second_per_identity = 3),
    limit(ServerStream, calls_per_second = 100, call_burst = 10, queue = 20),
    limit(Bidi, idle_timeout_ms = 1_000),
    limit(ClientStream),
)]
#[tonic::async_trait]
impl pb::echo_service_server::EchoService for Echo {
    async fn unary(&self, _request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        Err(Status::unimplemented("unary"))
    }

    type ServerStreamStream = ReceiverStream<Result<EchoReply, Status>>;

    async fn server_stream(
        &self,
        _request: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        Err(Status::unimplemented("server_stream"))
    }

    async fn client_stream(
        &self,
        _request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Summary>, Status> {
        Err(Status::unimplemented("client_stream"))
    }

    type BidiStream = ReceiverStream<Result<EchoReply, Status>>;

    async fn bidi(
        &self,
        _request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        Err(Status::unimplemented("bidi"))
    }
}

fn main() {
    let mut registry = Registry::default();
    let _server = EchoServiceServer::new(Echo {
        tokens: StaticTokens::new([("s3cret", Principal::new("ada").with_roles(["writer"]))]),
        metrics: ServerMetrics::register(&mut registry).service::<rpc::Service>(),
        trace: TraceCalls::new().messages(LogSize),
        cache: IdempotencyCache::new(Duration::from_secs(60), 1_000),
    });
}
