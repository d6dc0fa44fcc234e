//! `ClientConfig::credentials`: a `TokenProvider` fetches a token once, shares it among
//! concurrent calls, and puts it on every request.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tonic::Status;
use tonic::transport::Channel;
use tonic_intercept::{
    ClientConfig, client::BearerToken, client::TokenProvider, client::TokenSource,
};
use tonic_intercept_examples::ADA_TOKEN;
use tonic_intercept_examples::pb::GetUserRequest;
use tonic_intercept_examples::pb::user_service_intercept as users_rpc;

use crate::support::{ensure, ok};

/// Stands in for an OAuth token endpoint: hands out ada's token, valid for an hour,
/// after a round trip; counts its fetches.
#[derive(Debug, Default)]
struct TokenEndpoint {
    fetches: AtomicU32,
}

impl TokenSource for TokenEndpoint {
    async fn fetch(&self) -> Result<BearerToken, Status> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(BearerToken::expires_in(
            ADA_TOKEN,
            Duration::from_secs(3_600),
        ))
    }
}

pub(crate) async fn client_credentials(channel: &Channel) -> Result<String, String> {
    const AT_ONCE: u64 = 5;
    const AFTER: u64 = 3;
    // Refreshed 5 minutes before it expires.
    let provider = TokenProvider::new(TokenEndpoint::default(), Duration::from_secs(300));
    let config = ClientConfig::new().credentials(provider.clone());
    let users = users_rpc::Client::with_config(channel.clone(), config);
    // `GetUser` needs a token (`auth(self.tokens)`); none of these requests carries one.
    let mut calls = tokio::task::JoinSet::new();
    for id in 1..=AT_ONCE {
        let mut users = users.clone();
        calls.spawn(async move { users.get_user(GetUserRequest { id }).await });
    }
    while let Some(call) = calls.join_next().await {
        let result = call.map_err(|e| format!("a GetUser task: {e}"))?;
        ok("GetUser with the provider's token", result)?;
    }
    let mut users = users;
    for id in 1..=AFTER {
        ok(
            "GetUser with the cached token",
            users.get_user(GetUserRequest { id }).await,
        )?;
    }
    let fetches = provider.source().fetches.load(Ordering::SeqCst);
    ensure!(
        fetches == 1,
        "{} GetUser calls fetched the token {fetches} times",
        AT_ONCE + AFTER
    );
    Ok(format!(
        "client: ClientConfig::credentials(TokenProvider) over a token endpoint: {AT_ONCE} concurrent GetUser calls, then {AFTER} more, all authenticated by ada's token: {fetches} fetch"
    ))
}
