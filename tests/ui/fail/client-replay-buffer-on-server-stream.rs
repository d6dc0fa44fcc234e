// A replay buffer on `ServerStream`, whose single request message needs none.

use tonic_intercept::{ClientConfig, ClientPolicy};
use tonic_intercept_tests::pb::echo_service_intercept::{self, ServerStream};

const SERVER_STREAM: ClientPolicy<ServerStream> = ClientPolicy::new().replay_buffer(4096);

fn main() {
    let config = ClientConfig::<echo_service_intercept::Service>::new().policy(SERVER_STREAM);
    let _ = config;
}
