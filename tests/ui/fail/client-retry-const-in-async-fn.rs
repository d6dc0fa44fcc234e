// A retry policy on `Unary`, which the `.proto` does not declare idempotent, as a `const`
// inside an `async fn`.

use tonic_intercept::{ClientConfig, ClientPolicy, client::RetryPolicy};
use tonic_intercept_tests::pb::echo_service_intercept::{Client, Unary};
use tonic_intercept_tests::pb::EchoRequest;

async fn call(channel: tonic::transport::Channel) {
    const UNARY: ClientPolicy<Unary> = ClientPolicy::retry(RetryPolicy::new());
    let mut client = Client::with_config(channel, ClientConfig::new().policy(UNARY));
    let _ = client.unary(EchoRequest::default()).await;
}

fn main() {
    let _ = call;
}
