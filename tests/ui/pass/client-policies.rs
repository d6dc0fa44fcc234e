// Valid client policies: each setter on an RPC of the kind it needs, and hooks for
// exactly the RPCs called.

use std::time::Duration;

use tonic::Status;
use tonic_intercept::{ClientConfig, ClientHook, ClientPolicy, client::RetryPolicy, client::RetryThrottle};
use tonic_intercept_tests::pb::echo_service_intercept::{Bidi, Client, ClientStream, ServerStream, Unary};
use tonic_intercept_tests::pb::{EchoReply, EchoRequest};

// Declares no idempotency: retrying it is accepted explicitly.
const UNARY: ClientPolicy<Unary> =
    ClientPolicy::retry_non_idempotent(RetryPolicy::new()).deadline(Duration::from_secs(1));
// NO_SIDE_EFFECTS.
const SERVER_STREAM: ClientPolicy<ServerStream> =
    ClientPolicy::retry(RetryPolicy::new().max_attempts(4)).max_messages_received(100);
const CLIENT_STREAM: ClientPolicy<ClientStream> =
    ClientPolicy::new().max_messages_sent(10).max_message_bytes(1024);
// IDEMPOTENT.
const BIDI: ClientPolicy<Bidi> = ClientPolicy::retry(RetryPolicy::new()).replay_buffer(4096);

struct Audit;

impl ClientHook<Unary> for Audit {
    fn on_receive(&self, reply: &EchoReply) -> Result<(), Status> {
        let _ = reply;
        Ok(())
    }
}

async fn call(channel: tonic::transport::Channel) {
    let config = ClientConfig::new()
        .policy(UNARY)
        .policy(SERVER_STREAM)
        .policy(CLIENT_STREAM)
        .policy(BIDI)
        .throttle(RetryThrottle::new(10, 0.1))
        .hooks(Audit);
    let mut client = Client::with_config(channel, config);
    let _ = client.unary(EchoRequest::default()).await;
}

fn main() {
    let _ = call;
}
