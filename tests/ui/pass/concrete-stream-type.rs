// A handler may name its own stream type in its signature instead of
// `Self::ServerStreamStream`; the wrapped associated type still fits.

use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tonic_intercept_tests::{Counter, pb};

use pb::{EchoReply, EchoRequest, StreamRequest, Summary};

#[derive(Default)]
struct Echo {
    counter: Counter,
}

#[tonic_intercept::intercept(
    public(*),
    limit(ServerStream, max_messages_out = 10),
    limit(Bidi, max_messages_out = 10),
    hook(self.counter: Counter, ServerStream, Bidi),
)]
#[tonic::async_trait]
impl pb::echo_service_server::EchoService for Echo {
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
    ) -> Result<Response<ReceiverStream<Result<EchoReply, Status>>>, Status> {
        let (_tx, rx) = tokio::sync::mpsc::channel(1);
        Ok(Response::new(ReceiverStream::new(rx)))
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
        _request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<ReceiverStream<Result<EchoReply, Status>>>, Status> {
        let (_tx, rx) = tokio::sync::mpsc::channel(1);
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

fn main() {
    let _server = pb::echo_service_server::EchoServiceServer::new(Echo::default());
}
