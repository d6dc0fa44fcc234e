//! The server policies: what each step of an intercepted call checks. `auth`, `limits`,
//! `idempotency` and `validate` are public modules (re-exported at the root);
//! `admission` (concurrency and call rates) and `hook` are reached through the root and
//! `__private`.

pub(crate) mod admission;
pub mod auth;
pub mod backend;
pub(crate) mod hook;
pub mod idempotency;
pub mod limits;
pub mod validate;
