//! `ClientPolicy::deadline`: the generated client gives up on a slow `GetUser`, unless
//! the request sets its own timeout.

use std::time::{Duration, Instant};

use tonic::Code;
use tonic_intercept::{ClientConfig, ClientPolicy};
use tonic_intercept_examples::pb::GetUserRequest;
use tonic_intercept_examples::pb::user_service_intercept::{self as users_rpc, GetUser};
use tonic_intercept_examples::{ADA_TOKEN, with_token};

use crate::flaky::FlakyChannel;
use crate::support::{ensure, expect_code, ok};

pub(crate) async fn client_deadline(flaky: &FlakyChannel) -> Result<String, String> {
    const DEADLINE: Duration = Duration::from_millis(100);
    const GET_USER: ClientPolicy<GetUser> = ClientPolicy::new().deadline(DEADLINE);
    let slow = Duration::from_millis(400);
    let config = ClientConfig::new().policy(GET_USER);
    let mut users = users_rpc::Client::with_config(flaky.clone(), config);
    let request = || with_token(GetUserRequest { id: 1 }, ADA_TOKEN);

    flaky.slow_next(slow);
    let started = Instant::now();
    let result = users.get_user(request()).await;
    let waited = started.elapsed();
    let message = result.as_ref().err().map(|s| s.message().to_owned());
    expect_code(
        "GetUser slower than its deadline",
        result,
        Code::DeadlineExceeded,
    )?;
    ensure!(
        waited >= DEADLINE && waited < slow,
        "GetUser with a {DEADLINE:?} deadline ended after {waited:?}"
    );

    // The request's own timeout wins over the policy's default.
    let patient = Duration::from_millis(150);
    flaky.slow_next(patient);
    let mut request = request();
    request.set_timeout(Duration::from_secs(2));
    let started = Instant::now();
    ok(
        "GetUser with its own timeout",
        users.get_user(request).await,
    )?;
    let took = started.elapsed();
    ensure!(took >= patient, "the slowed GetUser answered in {took:?}");
    Ok(format!(
        "client: GetUser under ClientPolicy::deadline({} ms) against a backend taking {} ms: DEADLINE_EXCEEDED after {} ms (\"{}\"); with Request::set_timeout(2 s) instead, a {} ms backend: OK",
        DEADLINE.as_millis(),
        slow.as_millis(),
        waited.as_millis(),
        message.unwrap_or_default(),
        patient.as_millis()
    ))
}
