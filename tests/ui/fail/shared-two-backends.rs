// One RPC's shared rates are asked of one backend: the RPC's rate from a general
// `limit(.., shared = ..)` and its callers' rate from its own may not name two.

use pb::{EchoReply, EchoRequest, StreamRequest, Summary};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tonic_intercept_tests::pb;

struct Echo {
    tokens: tonic_intercept::StaticTokens<String>,
    fleet: std::sync::Arc<tonic_intercept::backend::RedisGcra>,
    payments: std::sync::Arc<tonic_intercept::backend::RedisGcra>,
}

#[tonic_intercept::intercept(
    auth(self.tokens),
    limit(calls_per_second = 100, shared = self.fleet),
    limit(Unary, calls_per_minute_per_identity = 5, shared = self.payments)
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

fn main() {}
