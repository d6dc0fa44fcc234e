//! Panic recovery: a panic in a handler, a hook or a response stream becomes `INTERNAL`
//! for that call only.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tonic::Status;
use tracing::Span;

use crate::call::Call;

/// Logs the panic (its text stays on the server) and builds the status the client sees.
#[cold]
#[inline(never)]
pub(crate) fn panicked(call: &Call, payload: &(dyn Any + Send)) -> Status {
    crate::util::log_panic(call.rpc().path, payload);
    Status::internal(format!("{}: internal error", call.rpc().method))
}

pin_project! {
    /// A call's whole future: entered in the call's span at every poll and, under
    /// `recover`, each poll caught so that a panic ends this call only.
    #[derive(Debug)]
    pub struct Run<F> {
        #[pin]
        future: F,
        span: Span,
        recover: bool,
    }
}

impl<F> Run<F> {
    pub(crate) fn new(future: F, span: Span, recover: bool) -> Self {
        Self {
            future,
            span,
            recover,
        }
    }
}

impl<F: Future> Future for Run<F> {
    /// `Err` carries a caught panic's payload.
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _span = this.span.enter();
        if !*this.recover {
            return this.future.poll(cx).map(Ok);
        }
        let future = this.future;
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(poll) => poll.map(Ok),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}
