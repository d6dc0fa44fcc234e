// Limits from constants, and `none` exempting one RPC from a limit set for all.

use pb::{EchoReply, EchoRequest, StreamRequest, Summary};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tonic_intercept_tests::pb;

struct Echo;

mod limits {
    pub const LIST_MAX: u64 = 10;
    pub const PER_SECOND: u32 = 5;
}

#[tonic_intercept::intercept(
    public(*),
    limit(timeout_ms = 2_000, max_message_bytes = 1_024),
    limit(ServerStream, max_messages_out = limits::LIST_MAX, messages_per_second_out = self::limits::PER_SECOND),
    limit(Bidi, timeout_ms = none, max_message_bytes = none),
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
