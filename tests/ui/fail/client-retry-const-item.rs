// A retry policy on `Unary`, which the `.proto` does not declare idempotent, as a `const`
// item at module level.

use tonic_intercept::{ClientConfig, ClientPolicy, client::RetryPolicy};
use tonic_intercept_tests::pb::echo_service_intercept::{self, Unary};

const UNARY: ClientPolicy<Unary> = ClientPolicy::retry(RetryPolicy::new().max_attempts(3));

fn main() {
    let config = ClientConfig::<echo_service_intercept::Service>::new().policy(UNARY);
    let _ = config;
}
