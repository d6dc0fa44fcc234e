// `Edge` wraps only the server of an impl with `#[intercept]`: the attribute declares each
// RPC's limits, which the edge enforces before the handler.

use tonic::{Request, Response, Status, Streaming};
use tonic_intercept::server::Edge;
use tonic_intercept_tests::pb::echo_service_server::{EchoService, EchoServiceServer};
use tonic_intercept_tests::pb::{EchoReply, EchoRequest, StreamRequest, Summary};

type Replies = tokio_stream::wrappers::ReceiverStream<Result<EchoReply, Status>>;

struct Plain;

#[tonic::async_trait]
impl EchoService for Plain {
    async fn unary(&self, _: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        Err(Status::unimplemented(""))
    }
    type ServerStreamStream = Replies;
    async fn server_stream(
        &self,
        _: Request<StreamRequest>,
    ) -> Result<Response<Replies>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn client_stream(
        &self,
        _: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Summary>, Status> {
        Err(Status::unimplemented(""))
    }
    type BidiStream = Replies;
    async fn bidi(&self, _: Request<Streaming<EchoRequest>>) -> Result<Response<Replies>, Status> {
        Err(Status::unimplemented(""))
    }
}

fn main() {
    let _ = Edge::new(EchoServiceServer::new(Plain));
}
