//! `validate(PlaceOrder)`: `impl Validate for PlaceOrderRequest` refuses an order that
//! cannot be made, with every field's problem in a `google.rpc.BadRequest`.

use tonic::Code;
use tonic_intercept::tonic_types::StatusExt;
use tonic_intercept_examples::orders::MAX_QUANTITY;
use tonic_intercept_examples::{BOB_TOKEN, Services};

use crate::support::{Orders, Tally, code_name, ensure, order, place};

pub(crate) async fn invalid_order(
    orders: &mut Orders,
    server: &Services,
    tally: &mut Tally,
) -> Result<String, String> {
    let before = server.orders.placed_count();
    let cups = MAX_QUANTITY + 2;
    let status = match place(orders, tally, order("  ", cups, BOB_TOKEN)).await {
        Ok(_) => return Err("an invalid order was placed".into()),
        Err(status) => status,
    };
    ensure!(
        status.code() == Code::InvalidArgument,
        "an invalid order answered {}: {}",
        code_name(status.code()),
        status.message()
    );
    let details = status
        .get_details_bad_request()
        .ok_or_else(|| format!("no google.rpc.BadRequest in {status:?}"))?;
    let violations: Vec<String> = details
        .field_violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect();
    let expected = [
        "drink: must name a drink".to_owned(),
        format!("quantity: must be 1 to {MAX_QUANTITY}"),
    ];
    ensure!(
        violations == expected,
        "field violations {violations:?}, expected {expected:?}"
    );
    ensure!(
        server.orders.placed_count() == before,
        "the handler ran for an invalid order"
    );
    Ok(format!(
        "PlaceOrder of {cups} cups of nothing: INVALID_ARGUMENT with google.rpc.BadRequest [{}], handler never ran",
        violations.join("; ")
    ))
}
