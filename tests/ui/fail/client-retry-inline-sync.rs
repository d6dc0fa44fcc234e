// A retry policy on `Unary`, which the `.proto` does not declare idempotent, inline in a
// plain function.

use tonic_intercept::{ClientConfig, ClientPolicy, client::RetryPolicy};
use tonic_intercept_tests::pb::echo_service_intercept::{Service, Unary};

fn config() -> ClientConfig<Service> {
    ClientConfig::new().policy(ClientPolicy::<Unary>::retry(RetryPolicy::new().max_attempts(2)))
}

fn main() {
    let _ = config();
}
