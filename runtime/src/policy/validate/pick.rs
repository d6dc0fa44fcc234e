//! Which validation `validate(Rpc)` runs for a request message, chosen at compile time
//! for the concrete message type by autoref specialization (method resolution tries each
//! receiver in turn, the first whose impl applies wins):
//!
//! 1. the message's hand-written [`Validate`] impl, whenever there is one;
//! 2. else, with the `protovalidate` feature, the `buf.validate` rules of its `.proto`
//!    (`ProtoValidate`, which `tonic-intercept-build` implements only for messages that
//!    carry rules);
//! 3. else the call needs `M: Validate`, which fails to compile with the message of a
//!    missing [`Validate`] impl, at the RPC's name in `validate(..)`.
//!
//! The expansion calls `(&&&Pick(message)).__tonic_intercept_validate(call)` with the
//! three traits in scope; the message type is concrete there (the `Hooks` impl is not
//! generic), which is what autoref specialization needs.

use tonic::Status;

use super::{Validate, check};
use crate::call::Call;

/// A request message on its way to the validation that fits it.
#[doc(hidden)] // reached through `__private`
#[derive(Debug)]
pub struct Pick<'a, M>(pub &'a M);

/// 1. A hand-written [`Validate`] impl: the first receiver tried, so it always wins.
#[doc(hidden)]
pub trait ByHand {
    /// Validates the message with its [`Validate`] impl.
    fn __tonic_intercept_validate(&self, call: &Call) -> Result<(), Status>;
}

impl<M: Validate> ByHand for &&Pick<'_, M> {
    #[inline]
    fn __tonic_intercept_validate(&self, call: &Call) -> Result<(), Status> {
        check(call, self.0)
    }
}

/// 2. The `.proto`'s `buf.validate` rules (feature `protovalidate`).
#[doc(hidden)]
pub trait ByRules {
    /// Validates the message with the rules of its `.proto`.
    fn __tonic_intercept_validate(&self, call: &Call) -> Result<(), Status>;
}

#[cfg(feature = "protovalidate")]
impl<M: super::protovalidate::ProtoValidate> ByRules for &Pick<'_, M> {
    #[inline]
    fn __tonic_intercept_validate(&self, call: &Call) -> Result<(), Status> {
        super::protovalidate::check(call, self.0)
    }
}

/// 3. Neither: the bound `M: Validate` on the method is what reports the mistake.
#[doc(hidden)]
pub trait Missing<M> {
    /// Requires a [`Validate`] impl, which the message lacks.
    fn __tonic_intercept_validate(&self, call: &Call) -> Result<(), Status>
    where
        M: Validate;
}

impl<M> Missing<M> for Pick<'_, M> {
    #[inline]
    fn __tonic_intercept_validate(&self, call: &Call) -> Result<(), Status>
    where
        M: Validate,
    {
        check(call, self.0)
    }
}
