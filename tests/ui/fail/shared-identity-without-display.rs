// A shared per-identity rate names the caller in the backend by its `Display` form,
// the same on every replica; an identity without one is refused at the backend.

use pb::{EchoReply, EchoRequest, StreamRequest, Summary};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tonic_intercept_tests::pb;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Who(u64);

struct Echo {
    tokens: tonic_intercept::StaticTokens<Who>,
    rates: std::sync::Arc<tonic_intercept::backend::RedisGcra>,
}

#[tonic_intercept::intercept(
    auth(self.tokens),
    limit(Unary, calls_per_minute_per_identity = 5, shared = self.rates)
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
