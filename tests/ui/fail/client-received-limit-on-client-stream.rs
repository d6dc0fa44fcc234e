// A limit on the response stream of `ClientStream`, which returns a single response.

use tonic_intercept::{ClientConfig, ClientPolicy};
use tonic_intercept_tests::pb::echo_service_intercept::{self, ClientStream};

const CLIENT_STREAM: ClientPolicy<ClientStream> = ClientPolicy::new().max_messages_received(10);

fn main() {
    let config = ClientConfig::<echo_service_intercept::Service>::new().policy(CLIENT_STREAM);
    let _ = config;
}
