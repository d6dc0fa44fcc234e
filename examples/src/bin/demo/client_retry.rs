//! The generated `user_service_intercept::Client` under a `ClientConfig` that retries
//! `GetUser` (declared `NO_SIDE_EFFECTS` in the `.proto`) and says nothing of
//! `CreateUser`, with its own `grpc_client_*` metrics and a hook that sees each call end.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tonic::Code;
use tonic_intercept::prometheus_client::registry::Registry;
use tonic_intercept::{
    ClientConfig, ClientHook, ClientPolicy, Rpc, client::ClientMetrics, client::ClientOutcome,
    client::RetryPolicy, metrics::render_metrics,
};
use tonic_intercept_examples::pb::GetUserRequest;
use tonic_intercept_examples::pb::user_service_intercept::{self as users_rpc, GetUser};
use tonic_intercept_examples::{ADA_TOKEN, Services, with_token};

use crate::flaky::FlakyChannel;
use crate::support::{ensure, expect_code, labels, ok, record, series};

const USERS: &str = "users.v1.UserService";

/// Retries for `GetUser`, declared `NO_SIDE_EFFECTS` in the `.proto`, so `retry` compiles;
/// milliseconds of backoff, for the demo's sake.
const GET_USER_RETRIED: ClientPolicy<GetUser> = ClientPolicy::retry(
    RetryPolicy::new()
        .max_attempts(4)
        .initial_backoff(Duration::from_millis(10))
        .max_backoff(Duration::from_millis(40)),
);

/// A typed client hook on every RPC: keeps how the last call ended.
#[derive(Debug, Clone, Default)]
struct LastOutcome(Arc<Mutex<Option<ClientOutcome>>>);

impl LastOutcome {
    fn take(&self, what: &str) -> Result<ClientOutcome, String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| format!("{what}: the client hook saw no end of the call"))
    }
}

impl<R: Rpc> ClientHook<R> for LastOutcome {
    fn on_finish(&self, outcome: &ClientOutcome) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(*outcome);
    }
}

/// The configured client, over a channel that fails on demand.
pub(crate) struct Observed {
    users: users_rpc::Client<FlakyChannel, LastOutcome>,
    flaky: FlakyChannel,
    registry: Registry,
    last: LastOutcome,
}

impl Observed {
    pub(crate) fn new(flaky: &FlakyChannel) -> Self {
        let mut registry = Registry::default();
        let metrics = ClientMetrics::register(&mut registry).service::<users_rpc::Service>();
        let last = LastOutcome::default();
        let config = ClientConfig::new()
            .policy(GET_USER_RETRIED)
            .metrics(metrics)
            .hooks(last.clone());
        Self {
            users: users_rpc::Client::with_config(flaky.clone(), config),
            flaky: flaky.clone(),
            registry,
            last,
        }
    }

    /// Checks one `grpc_client_*` series of `method`; returns its line.
    fn expect(
        &self,
        name: &str,
        method: &str,
        extra: &str,
        expected: u64,
    ) -> Result<String, String> {
        let text = render_metrics(&self.registry);
        let labels = format!("{}{extra}", labels("unary", USERS, method));
        let (line, value) = series(&text, name, &labels)?;
        ensure!(
            value == expected,
            "client metrics: {line}: expected {expected}"
        );
        Ok(line.to_owned())
    }

    /// The client's series after both calls, each checked.
    pub(crate) fn shown(&self) -> Result<Vec<String>, String> {
        let mut shown = Vec::new();
        for (method, attempts, retries, code) in
            [("GetUser", 3, 2, "OK"), ("CreateUser", 1, 0, "Unavailable")]
        {
            shown.push(self.expect("grpc_client_attempts_total", method, "", attempts)?);
            shown.push(self.expect("grpc_client_retries_total", method, "", retries)?);
            let code = format!(r#",grpc_code="{code}""#);
            shown.push(self.expect("grpc_client_handled_total", method, &code, 1)?);
        }
        Ok(shown)
    }
}

pub(crate) async fn client_retries_through_failures(
    observed: &mut Observed,
) -> Result<String, String> {
    const FAILURES: u32 = 2;
    let before = observed.flaky.calls();
    observed.flaky.fail_next(FAILURES);
    let started = Instant::now();
    let request = with_token(GetUserRequest { id: 1 }, ADA_TOKEN);
    let user = ok(
        "GetUser through injected failures",
        observed.users.get_user(request).await,
    )?
    .into_inner();
    let elapsed = started.elapsed();
    ensure!(user.name == "Ada Lovelace", "GetUser #1 returned {user:?}");
    let outcome = observed.last.take("GetUser")?;
    let ran = observed.flaky.calls() - before;
    ensure!(
        outcome.code == Code::Ok && outcome.attempts == FAILURES + 1 && outcome.gave_up.is_none(),
        "GetUser after {FAILURES} failures: {outcome:?}, expected OK on attempt {}",
        FAILURES + 1
    );
    ensure!(
        ran == FAILURES + 1,
        "the GetUser attempts went out {ran} times for {} attempts",
        outcome.attempts
    );
    Ok(format!(
        "client: GetUser (NO_SIDE_EFFECTS, ClientPolicy::retry, 4 attempts) through {FAILURES} injected UNAVAILABLEs: OK on attempt {} after {} ms, {ran} attempts went out",
        outcome.attempts,
        elapsed.as_millis()
    ))
}

pub(crate) async fn no_retry_for_create_user(
    observed: &mut Observed,
    server: &Services,
) -> Result<String, String> {
    let (before, users) = (observed.flaky.calls(), server.users.count());
    observed.flaky.fail_next(1);
    let result = observed
        .users
        .create_user(record("Grace Hopper", "grace@example.com"))
        .await;
    expect_code(
        "CreateUser with an injected failure",
        result,
        Code::Unavailable,
    )?;
    let outcome = observed.last.take("CreateUser")?;
    let ran = observed.flaky.calls() - before;
    ensure!(
        outcome.attempts == 1 && ran == 1,
        "CreateUser made {} attempt(s), {ran} went out: expected 1",
        outcome.attempts
    );
    ensure!(
        server.users.count() == users,
        "a failed CreateUser stored a user"
    );
    Ok("client: CreateUser (no idempotency_level, so no ClientPolicy::retry) with an injected UNAVAILABLE: UNAVAILABLE after exactly 1 attempt; the client's metrics:".into())
}
