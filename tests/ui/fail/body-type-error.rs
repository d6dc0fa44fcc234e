// A type error in a handler body under a valid `#[intercept]` must point at the user's
// line.

use pb::{EchoReply, EchoRequest, StreamRequest, Summary};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tonic_intercept_tests::pb;

struct Echo {
    rec: tonic_intercept_tests::Recorder,
}

#[tonic_intercept::intercept(public(*), limit(timeout_ms = 100), hook(self.rec: tonic_intercept_tests::Recorder))]
#[tonic::async_trait]
impl pb::echo_service_server::EchoService for Echo {
    async fn unary(&self, _request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let _seq: u32 = "no";
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
