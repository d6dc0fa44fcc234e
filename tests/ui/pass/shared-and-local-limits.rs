// Shared call rates beside local limits: a general shared rate, one RPC's own local and
// shared `limit(..)`, a per-identity rate named by the identity's `Display`, and a
// backend of the user's own that takes over the general rate for one RPC.

use std::future::Future;
use std::time::Duration;

use pb::{EchoReply, EchoRequest, StreamRequest, Summary};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tonic_intercept_tests::pb;

use tonic_intercept::backend::{BackendError, Decision, RateBackend, RateKey, RateLimit};

/// Admits everything: a backend of the user's own.
struct Always;

impl RateBackend for Always {
    fn name(&self) -> &'static str {
        "always"
    }

    fn check(
        &self,
        _key: &RateKey,
        _limit: RateLimit,
    ) -> impl Future<Output = Result<Decision, BackendError>> + Send {
        std::future::ready(Ok(Decision::Allowed {
            remaining: 1,
            reset_after: Duration::ZERO,
        }))
    }
}

struct Echo {
    tokens: tonic_intercept::StaticTokens<String>,
    rates: std::sync::Arc<tonic_intercept::backend::RedisGcra>,
    always: Always,
}

#[tonic_intercept::intercept(
    auth(self.tokens),
    limit(calls_per_minute = 600, shared = self.rates),
    limit(Unary, max_in_flight = 4, calls_per_second_per_peer = 10),
    limit(Unary, calls_per_second = 100, call_burst = 20, calls_per_minute_per_identity = 5, shared = self.rates),
    limit(ServerStream, calls_per_minute = 60, calls_per_second_per_identity = 2, shared = self.always)
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
