//! Typed validation of request messages, answered with the standard
//! `google.rpc.BadRequest` error details.

use std::fmt::Write as _;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::call::Call;

mod pick;
#[cfg(feature = "protovalidate")]
pub mod protovalidate;

#[doc(hidden)] // reached through `__private`
pub use pick::{ByHand, ByRules, Missing, Pick};

/// Checks a message and records what is wrong with it, field by field.
///
/// Implement it for a request message and name the RPC in `#[intercept(validate(...))]`:
/// each inbound message is checked before the hooks and the handler see it, and a message
/// with violations ends the call with `INVALID_ARGUMENT`, a readable message
/// (`CreateUser: 2 invalid fields: name: must not be empty; email: must contain @`) and
/// every violation in the status details as a `google.rpc.BadRequest`, which clients
/// decode with [`tonic_types::StatusExt::get_details_bad_request`].
///
/// With the feature `protovalidate`, a message whose `.proto` carries `buf.validate` rules
/// needs no impl: `validate(..)` checks those rules (`tonic_intercept::validate::protovalidate`),
/// and an impl written here still wins over them.
///
/// ```
/// use tonic_intercept::Validate;
/// use tonic_intercept::validate::Violations;
/// # #[derive(Clone, PartialEq, prost::Message)]
/// # pub struct Address { #[prost(string, tag = "1")] pub zip: String }
/// # #[derive(Clone, PartialEq, prost::Message)]
/// # pub struct CreateUserRequest {
/// #     #[prost(string, tag = "1")] pub name: String,
/// #     #[prost(string, tag = "2")] pub email: String,
/// #     #[prost(message, optional, tag = "3")] pub address: Option<Address>,
/// # }
///
/// impl Validate for Address {
///     fn validate(&self, violations: &mut Violations) {
///         if self.zip.len() != 5 {
///             violations.field("zip", "must have 5 digits");
///         }
///     }
/// }
///
/// impl Validate for CreateUserRequest {
///     fn validate(&self, violations: &mut Violations) {
///         if self.name.is_empty() {
///             violations.field("name", "must not be empty");
///         }
///         if !self.email.contains('@') {
///             violations.field("email", "must contain @");
///         }
///         // Violations of the address are reported as `address.zip`.
///         violations.nested("address", &self.address);
///     }
/// }
///
/// let request = CreateUserRequest {
///     name: String::new(),
///     email: "ada@example.com".into(),
///     address: Some(Address { zip: "123".into() }),
/// };
/// let mut violations = Violations::new();
/// request.validate(&mut violations);
/// let found: Vec<_> = violations.iter().collect();
/// assert_eq!(found, [("name", "must not be empty"), ("address.zip", "must have 5 digits")]);
/// ```
#[cfg_attr(
    not(feature = "protovalidate"),
    diagnostic::on_unimplemented(
        message = "`{Self}` does not implement `tonic_intercept::Validate`",
        label = "this message cannot be validated",
        note = "implement `tonic_intercept::Validate` for `{Self}` or remove `validate` for this RPC"
    )
)]
#[cfg_attr(
    feature = "protovalidate",
    diagnostic::on_unimplemented(
        message = "`{Self}` does not implement `tonic_intercept::Validate`",
        label = "this message cannot be validated",
        note = "implement `tonic_intercept::Validate` for `{Self}`, give it `buf.validate` rules in its `.proto` (built with tonic-intercept-build's feature `protovalidate`), or remove `validate` for this RPC"
    )
)]
pub trait Validate {
    /// Records each problem of `self` in `violations`; records nothing when `self` is
    /// valid.
    fn validate(&self, violations: &mut Violations);
}

/// An absent optional message is valid; a present one is checked.
impl<T: Validate> Validate for Option<T> {
    fn validate(&self, violations: &mut Violations) {
        if let Some(message) = self {
            message.validate(violations);
        }
    }
}

impl<T: Validate + ?Sized> Validate for Box<T> {
    fn validate(&self, violations: &mut Violations) {
        (**self).validate(violations);
    }
}

impl<T: Validate + ?Sized> Validate for &T {
    fn validate(&self, violations: &mut Violations) {
        (**self).validate(violations);
    }
}

/// The problems found in one message: `(field, description)` pairs, in the order they were
/// recorded.
///
/// A field is a path of dot-separated field names, with indexes into repeated fields
/// (`email_addresses[1].email`), as `google.rpc.BadRequest.FieldViolation.field` defines
/// it. Record paths directly (`violations.field("address.zip", ...)`) or let
/// [`nested`](Self::nested), [`each`](Self::each) and [`scope`](Self::scope) build them.
///
/// Empty until something is recorded, and allocation-free until then: validating a valid
/// message allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct Violations {
    list: Vec<FieldViolation>,
}

impl Violations {
    /// No violations.
    pub const fn new() -> Self {
        Self { list: Vec::new() }
    }

    /// Records that `field` is invalid, and why.
    pub fn field(&mut self, field: impl Into<String>, description: impl Into<String>) -> &mut Self {
        self.list.push(FieldViolation::new(field, description));
        self
    }

    /// Validates a nested message, recording its violations under `field`
    /// (`address` + `zip` = `address.zip`). With an `Option`, an absent message is valid.
    pub fn nested<M: Validate + ?Sized>(&mut self, field: &str, message: &M) -> &mut Self {
        self.scope(field, |violations| message.validate(violations))
    }

    /// Validates each message of a repeated field, recording violations under
    /// `field[index]` (`email_addresses[1].email`).
    pub fn each<M: Validate>(&mut self, field: &str, messages: &[M]) -> &mut Self {
        for (index, message) in messages.iter().enumerate() {
            let start = self.list.len();
            message.validate(self);
            if self.list.len() > start {
                self.prefix_from(start, &format!("{field}[{index}]"));
            }
        }
        self
    }

    /// Runs `f`, recording what it records under `prefix`: `scope("address", |v| {
    /// v.field("zip", ..); })` records `address.zip`. A violation recorded with an empty
    /// field inside names `prefix` itself.
    pub fn scope(&mut self, prefix: &str, f: impl FnOnce(&mut Violations)) -> &mut Self {
        let start = self.list.len();
        f(self);
        self.prefix_from(start, prefix);
        self
    }

    fn prefix_from(&mut self, start: usize, prefix: &str) {
        if prefix.is_empty() {
            return;
        }
        for violation in &mut self.list[start..] {
            let inner = std::mem::take(&mut violation.field);
            violation.field = if inner.is_empty() {
                prefix.to_owned()
            } else if inner.starts_with('[') {
                format!("{prefix}{inner}")
            } else {
                format!("{prefix}.{inner}")
            };
        }
    }

    /// Whether nothing was recorded: the message is valid.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many violations were recorded.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The recorded `(field, description)` pairs, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.list
            .iter()
            .map(|v| (v.field.as_str(), v.description.as_str()))
    }

    /// The `INVALID_ARGUMENT` status for these violations, for `rpc` (a method name such
    /// as `CreateUser`): a readable message listing the first few, and all of them as a
    /// `google.rpc.BadRequest` in the details.
    pub fn into_status(self, rpc: &str) -> Status {
        let mut message = String::with_capacity(64);
        let n = self.list.len();
        let _ = write!(
            message,
            "{rpc}: {n} invalid field{}: ",
            if n == 1 { "" } else { "s" }
        );
        for (i, v) in self.list.iter().take(MESSAGE_VIOLATIONS).enumerate() {
            if i > 0 {
                message.push_str("; ");
            }
            if !v.field.is_empty() {
                message.push_str(&v.field);
                message.push_str(": ");
            }
            message.push_str(&v.description);
        }
        if n > MESSAGE_VIOLATIONS {
            let _ = write!(message, "; and {} more", n - MESSAGE_VIOLATIONS);
        }
        Status::with_error_details(
            Code::InvalidArgument,
            message,
            ErrorDetails::with_bad_request(self.list),
        )
    }
}

/// How many violations the status message spells out; the details carry all of them.
const MESSAGE_VIOLATIONS: usize = 10;

/// Validates one inbound message of `call`: `Ok` when it is valid (without allocating),
/// else `INVALID_ARGUMENT` with the violations as `google.rpc.BadRequest` details. The
/// policy that ends the call is [`PolicyKind::Validation`](crate::PolicyKind::Validation).
#[doc(hidden)] // reached through `__private::validate`
#[inline]
pub fn check<M: Validate>(call: &Call, message: &M) -> Result<(), Status> {
    let mut violations = Violations::new();
    message.validate(&mut violations);
    if violations.is_empty() {
        Ok(())
    } else {
        Err(rejected(call, violations))
    }
}

#[cold]
#[inline(never)]
fn rejected(call: &Call, violations: Violations) -> Status {
    violations.into_status(call.rpc().method)
}
