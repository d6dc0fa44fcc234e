//! `recover`: a panic in `PlaceOrder` (the simulated bug of the `UNICORN` drink) answers
//! `INTERNAL`, logs the panic on the server, and the server serves on.

use tonic::Code;
use tonic_intercept_examples::orders::UNICORN;
use tonic_intercept_examples::{BOB_TOKEN, Services};

use crate::trace::Log;

use crate::support::{Orders, Tally, code_name, ensure, ok, order, place};

pub(crate) async fn panic_recovered(
    orders: &mut Orders,
    server: &Services,
    log: &Log,
    tally: &mut Tally,
) -> Result<String, String> {
    let before = server.orders.placed_count();
    let status = match place(orders, tally, order(UNICORN, 1, BOB_TOKEN)).await {
        Ok(_) => return Err(format!("the {UNICORN} was served")),
        Err(status) => status,
    };
    ensure!(
        status.code() == Code::Internal && status.message() == "PlaceOrder: internal error",
        "the panicking order answered {}: {}",
        code_name(status.code()),
        status.message()
    );
    // The client learns nothing of the bug; the server's log has all of it.
    let logged = log
        .text()
        .lines()
        .any(|l| l.contains("ERROR") && l.contains("panic in call") && l.contains("glitter"));
    ensure!(logged, "the server log has no ERROR with the panic's text");
    // Same client, same connection.
    let next = ok(
        "the next order",
        place(orders, tally, order("espresso", 1, BOB_TOKEN)).await,
    )?;
    ensure!(
        server.orders.placed_count() == before + 1,
        "the desk took {} orders, expected 1",
        server.orders.placed_count() - before
    );
    Ok(format!(
        "PlaceOrder of a {UNICORN} panicked: INTERNAL \"{}\", the panic's text only in the server's log; the next order on the same connection: #{}",
        status.message(),
        next.into_inner().id
    ))
}

/// The unicorn order's panic is expected: keep the default panic message (stderr) for
/// every other panic only. The server logs it anyway, and the demo checks that it does.
pub(crate) fn quiet_simulated_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.payload_as_str().is_some_and(|m| m.contains(UNICORN)) {
            default(info);
        }
    }));
}
