//! The desk's ledger: every order `PlaceOrder` took, and whether a barista cancelled it.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tonic::Status;

use super::FIRST_PLACED_ID;
use crate::coffee::{Order, PlaceOrderRequest};

/// An order taken by `PlaceOrder`, as the desk's ledger keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    /// The order, as answered.
    pub order: Order,
    /// Who placed it.
    pub by: String,
    /// How long the call had left when the handler took it: the earlier of the client's
    /// `grpc-timeout` and the `.proto`'s `timeout_ms`, read from the request's
    /// [`Deadline`](tonic_intercept::Deadline) extension.
    pub time_left: Option<Duration>,
    /// Whether a barista cancelled it.
    pub cancelled: bool,
}

#[derive(Debug, Default)]
pub(super) struct Desk(Mutex<Vec<Placed>>);

impl Desk {
    fn lock(&self) -> MutexGuard<'_, Vec<Placed>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the order down under the next id, and answers it.
    pub(super) fn take(
        &self,
        request: PlaceOrderRequest,
        by: String,
        time_left: Option<Duration>,
    ) -> Order {
        let PlaceOrderRequest {
            shop,
            drink,
            quantity,
        } = request;
        let mut placed = self.lock();
        let order = Order {
            id: FIRST_PLACED_ID + placed.len() as u64,
            shop,
            drink,
            quantity,
        };
        tracing::info!(
            id = order.id,
            by = by.as_str(),
            time_left_ms = time_left.map(|left| left.as_millis() as u64),
            "order placed"
        );
        placed.push(Placed {
            order: order.clone(),
            by,
            time_left,
            cancelled: false,
        });
        order
    }

    /// Marks order `id` cancelled, and answers it as it was placed.
    pub(super) fn cancel(&self, id: u64) -> Result<Order, Status> {
        let mut placed = self.lock();
        let placed = placed
            .iter_mut()
            .find(|placed| placed.order.id == id)
            .ok_or_else(|| Status::not_found(format!("no order #{id}")))?;
        if placed.cancelled {
            return Err(Status::failed_precondition(format!(
                "order #{id} is already cancelled"
            )));
        }
        placed.cancelled = true;
        Ok(placed.order.clone())
    }

    pub(super) fn all(&self) -> Vec<Placed> {
        self.lock().clone()
    }

    pub(super) fn count(&self) -> usize {
        self.lock().len()
    }
}
