//! The server policies: what each step of an intercepted call checks.

pub(crate) mod admission;
pub(crate) mod auth;
pub(crate) mod hook;
pub(crate) mod idempotency;
pub(crate) mod limits;
pub(crate) mod validate;
