//! `trace`: every call runs in its span and ends with a `finished call` event, logged at
//! a level that follows its code (a refusal at WARN).

use std::sync::{Arc, Mutex, PoisonError};

use crate::support::{Tally, ensure};

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

/// The server's log (INFO and up), as its `tracing` subscriber wrote it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    /// Installs a subscriber writing into the returned log, for the whole process.
    pub(crate) fn capture() -> Self {
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .finish();
        // Fails only if a subscriber is already installed; the log checks then fail.
        let _ = tracing::subscriber::set_global_default(subscriber);
        log
    }

    pub(crate) fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for Log {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
