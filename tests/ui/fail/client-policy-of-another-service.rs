// The echo client's config given a policy of a catalog RPC.

use tonic_intercept::{ClientConfig, ClientPolicy};
use tonic_intercept_tests::catalog_pb::catalog_service_intercept::GetItem;
use tonic_intercept_tests::pb::echo_service_intercept;

fn main() {
    let config = ClientConfig::<echo_service_intercept::Service>::new()
        .policy(ClientPolicy::<GetItem>::new());
    let _ = config;
}
