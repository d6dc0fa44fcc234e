//! `idempotency(self.placed_cache, PlaceOrder)`: a retry with the same `idempotency-key`
//! gets the first answer back instead of placing a second order.

use tonic::Code;
use tonic_intercept::{wire::IDEMPOTENCY_KEY, wire::IDEMPOTENCY_REPLAYED};
use tonic_intercept_examples::{BOB_TOKEN, Services};

use crate::support::{Orders, Tally, ensure, expect_code, ok, order, place};

pub(crate) async fn idempotent_retry(
    orders: &mut Orders,
    server: &Services,
    tally: &mut Tally,
) -> Result<String, String> {
    const KEY: &str = "till-3-order-0042";
    let keyed = |quantity| {
        let mut request = order("flat white", quantity, BOB_TOKEN);
        let key = KEY.parse().expect("a valid key");
        request.metadata_mut().insert(IDEMPOTENCY_KEY, key);
        request
    };
    let before = server.orders.placed_count();
    let first = ok(
        "PlaceOrder with a key",
        place(orders, tally, keyed(2)).await,
    )?;
    // The response was lost, say: the till retries with the same key.
    let retry = ok("its retry", place(orders, tally, keyed(2)).await)?;
    let replayed = retry
        .metadata()
        .get(IDEMPOTENCY_REPLAYED)
        .and_then(|v| v.to_str().ok());
    ensure!(
        first.metadata().get(IDEMPOTENCY_REPLAYED).is_none() && replayed == Some("true"),
        "{IDEMPOTENCY_REPLAYED}: {:?} on the first answer, {replayed:?} on the retry",
        first.metadata().get(IDEMPOTENCY_REPLAYED)
    );
    let (first, retry) = (first.into_inner(), retry.into_inner());
    ensure!(
        first == retry,
        "the retry answered {retry:?}, the first call {first:?}"
    );
    let ran = server.orders.placed_count() - before;
    ensure!(ran == 1, "the handler ran {ran} times for one key");
    // The same key for another order is a client bug, not a retry.
    let other = place(orders, tally, keyed(3)).await;
    expect_code(
        "the same key with another order",
        other,
        Code::InvalidArgument,
    )?;
    ensure!(
        server.orders.placed_count() == before + 1,
        "the handler ran for a reused key"
    );
    Ok(format!(
        "PlaceOrder retried with {IDEMPOTENCY_KEY}: {KEY}: the same order #{} back ({IDEMPOTENCY_REPLAYED}: true), handler ran once; the key with another order: INVALID_ARGUMENT",
        first.id
    ))
}
