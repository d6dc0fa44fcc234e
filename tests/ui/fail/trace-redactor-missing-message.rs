// `trace(..)` with a redactor that implements `Redact` for `EchoRequest` and `EchoReply`
// but not for `StreamRequest`, the request of `ServerStream`.

use std::fmt;

use pb::{EchoReply, EchoRequest, StreamRequest, Summary};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tonic_intercept::{trace::Redact, TraceCalls};
use tonic_intercept_tests::pb;

struct Echo {
    trace: TraceCalls<HideText>,
}

/// Logs the sequence number of replies, never any text.
#[derive(Debug, Clone)]
struct HideText;

impl Redact<EchoRequest> for HideText {
    fn redact(&self, _message: &EchoRequest, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        out.write_str("EchoRequest { .. }")
    }
}

impl Redact<EchoReply> for HideText {
    fn redact(&self, message: &EchoReply, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(out, "EchoReply {{ seq: {} }}", message.seq)
    }
}

impl Redact<Summary> for HideText {
    fn redact(&self, message: &Summary, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(out, "Summary {{ received: {} }}", message.received)
    }
}

#[tonic_intercept::intercept(public(*), trace(self.trace: TraceCalls<HideText>))]
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
