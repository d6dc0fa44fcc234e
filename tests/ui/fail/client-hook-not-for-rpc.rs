// Client hooks that implement `ClientHook<Unary>` only, used to call `ServerStream`.

use tonic::Status;
use tonic_intercept::{ClientConfig, ClientHook};
use tonic_intercept_tests::pb::echo_service_intercept::{Client, Unary};
use tonic_intercept_tests::pb::{EchoRequest, StreamRequest};

struct CountSent;

impl ClientHook<Unary> for CountSent {
    fn on_send(&self, _: &EchoRequest) -> Result<(), Status> {
        Ok(())
    }
}

async fn call(channel: tonic::transport::Channel) {
    let mut client = Client::with_config(channel, ClientConfig::new().hooks(CountSent));
    let _ = client.unary(EchoRequest::default()).await;
    let _ = client.server_stream(StreamRequest::default()).await;
}

fn main() {
    let _ = call;
}
