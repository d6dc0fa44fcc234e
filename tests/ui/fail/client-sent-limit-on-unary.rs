// A limit on the request stream of `Unary`, which sends a single request message.

use tonic_intercept::{ClientConfig, ClientPolicy};
use tonic_intercept_tests::pb::echo_service_intercept::{self, Unary};

const UNARY: ClientPolicy<Unary> = ClientPolicy::new().max_messages_sent(10);

fn main() {
    let config = ClientConfig::<echo_service_intercept::Service>::new().policy(UNARY);
    let _ = config;
}
