// The service trait imported by name: `#[intercept]` then looks for the RPC types in
// `echo_service_intercept`, which must be in scope beside it.

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tonic_intercept_tests::pb;

use pb::echo_service_intercept;
use pb::echo_service_server::EchoService;
use pb::{EchoReply, EchoRequest, StreamRequest, Summary};

struct Echo {
    tokens: tonic_intercept::StaticTokens<String>,
}

#[tonic_intercept::intercept(
    public(Unary),
    auth(self.tokens),
    limit(ServerStream, max_messages_out = 3),
)]
#[tonic::async_trait]
impl EchoService for Echo {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        Ok(Response::new(EchoReply {
            text: request.into_inner().text,
            seq: 0,
        }))
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
    let _server = pb::echo_service_server::EchoServiceServer::new(Echo {
        tokens: tonic_intercept::StaticTokens::new([("s3cret", "ada".to_string())]),
    });
}
