//! `auth(self.tokens)` with `public(CreateUser)` on the user directory, and the
//! `.proto`'s `roles: ["barista"]` on `CancelOrder`: who may call what.

use tonic::Code;
use tonic_intercept_examples::coffee::CancelOrderRequest;
use tonic_intercept_examples::pb::GetUserRequest;
use tonic_intercept_examples::{ADA_TOKEN, BARISTA, BOB_TOKEN, Services, with_token};

use crate::support::{Orders, Tally, Users, ensure, expect_code, ok, record};

/// No token, or one the server does not know: refused before the handler runs.
pub(crate) async fn refused_without_token(users: &mut Users) -> Result<String, String> {
    let anonymous = users.get_user(GetUserRequest { id: 1 }).await;
    expect_code("GetUser without a token", anonymous, Code::Unauthenticated)?;
    let forged = users
        .get_user(with_token(GetUserRequest { id: 1 }, "forged"))
        .await;
    expect_code("GetUser with a forged token", forged, Code::Unauthenticated)?;
    Ok("GetUser without a token, and with a forged one: UNAUTHENTICATED".into())
}

/// `public(CreateUser)`: signing up needs no account.
pub(crate) async fn public_sign_up(users: &mut Users) -> Result<String, String> {
    let request = record("Ada Lovelace", "ada@example.com");
    let user = ok("CreateUser", users.create_user(request).await)?.into_inner();
    Ok(format!(
        "CreateUser is public: user #{} {} signed up without a token",
        user.id, user.name
    ))
}

/// A known bearer token: the call goes through.
pub(crate) async fn authenticated_lookup(users: &mut Users) -> Result<String, String> {
    let request = with_token(GetUserRequest { id: 1 }, ADA_TOKEN);
    let user = ok("GetUser with a token", users.get_user(request).await)?.into_inner();
    ensure!(user.name == "Ada Lovelace", "GetUser #1 returned {user:?}");
    Ok(format!("GetUser with ada's token: #1 is {}", user.name))
}

/// `roles(CancelOrder)`: ada is authenticated but no barista; bob is.
pub(crate) async fn cancel_needs_barista(
    orders: &mut Orders,
    server: &Services,
    tally: &mut Tally,
) -> Result<String, String> {
    // One of ada's orders from her burst: she changed her mind.
    let id = server
        .orders
        .placed()
        .iter()
        .rev()
        .find(|p| p.by == "ada" && !p.cancelled)
        .map(|p| p.order.id)
        .ok_or("ada has no open order")?;
    let cancel = |token| with_token(CancelOrderRequest { id }, token);
    let cancelled = |server: &Services| server.orders.placed_order(id).map(|p| p.cancelled);

    let denied = orders.cancel_order(cancel(ADA_TOKEN)).await;
    tally.record("CancelOrder", &denied);
    let message = denied.as_ref().err().map(|s| s.message().to_owned());
    expect_code("CancelOrder by ada", denied, Code::PermissionDenied)?;
    ensure!(
        cancelled(server) == Some(false),
        "ada's refused CancelOrder changed order #{id}"
    );

    let done = orders.cancel_order(cancel(BOB_TOKEN)).await;
    tally.record("CancelOrder", &done);
    let done = ok("CancelOrder by bob", done)?.into_inner();
    ensure!(
        done.order.as_ref().map(|o| o.id) == Some(id) && cancelled(server) == Some(true),
        "bob's CancelOrder answered {done:?}; the desk has {:?}",
        server.orders.placed_order(id)
    );
    Ok(format!(
        "CancelOrder of ada's order #{id} (roles: [\"{BARISTA}\"] in the .proto): by ada PERMISSION_DENIED ({}); by bob, a barista, OK",
        message.unwrap_or_default()
    ))
}
