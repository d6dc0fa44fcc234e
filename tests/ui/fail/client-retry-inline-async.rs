// A retry policy on `Unary`, which the `.proto` does not declare idempotent, inline in
// `.policy(..)` inside `async fn main`, as a user following the README writes it.

use tonic_intercept::{ClientConfig, ClientPolicy, client::RetryPolicy};
use tonic_intercept_tests::pb::echo_service_intercept::{Client, Unary};
use tonic_intercept_tests::pb::EchoRequest;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let channel = tonic::transport::Channel::from_static("http://127.0.0.1:50051").connect_lazy();
    let config = ClientConfig::new().policy(ClientPolicy::<Unary>::retry(RetryPolicy::new()));
    let mut client = Client::with_config(channel, config);
    client.unary(EchoRequest::default()).await?;
    Ok(())
}
