//! `trace`: every call runs in its span and ends with a `finished call` event, logged at
//! a level that follows its code (a refusal at WARN).

use crate::support::{Log, Tally, ensure};

pub(crate) fn calls_traced(log: &Log, tally: &Tally) -> Result<String, String> {
    let text = log.text();
    let finished: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("coffee.v1.OrderService/PlaceOrder{") && l.contains("finished call"))
        .collect();
    let calls = tally.calls("PlaceOrder");
    ensure!(
        finished.len() as u64 == calls,
        "the log has {} `finished call` events of PlaceOrder, for {calls} calls",
        finished.len()
    );
    let denied = text
        .lines()
        .find(|l| {
            l.contains("OrderService/CancelOrder{") && l.contains("grpc.code=\"PermissionDenied\"")
        })
        .ok_or("no `finished call` event of ada's CancelOrder")?;
    ensure!(
        denied.contains("WARN"),
        "a PERMISSION_DENIED was logged below WARN: {denied}"
    );
    // Without its timestamp.
    let denied = denied
        .split_once(' ')
        .map_or(denied, |(_, rest)| rest)
        .trim();
    Ok(format!(
        "trace: each call ran in its span and logged `finished call`, {calls} for PlaceOrder; ada's CancelOrder:\n    {denied}"
    ))
}
