//! What `#[intercept]` (tonic-intercept-macros) and the `build.rs` generator
//! (tonic-intercept-build) must agree on, written once: how generated items are named,
//! the four kinds of RPC, and the table of limit keys.
//!
//! This is an internal crate, pinned with `=` by both of its users (as `thiserror-impl`
//! and `serde_derive_internals` are), so the two always see the same table. It has no
//! dependency on `syn`: it deals in names and strings, and each user turns them into
//! tokens its own way.
//!
//! Adding a limit key: an entry in [`LIMIT_KEYS`], the runtime's `Limits` field, builder,
//! `get_<builder>` getter, merge line and enforcement (the runtime's `RpcPolicy` holds a
//! `Limits`, so it needs nothing), the `RpcPolicy` field in
//! `tonic_intercept/v1/options.proto` if the `.proto` may set it, and its docs and tests.
//! The macro and the generator read everything else from the entry.

#![warn(missing_docs, unreachable_pub)]

mod kind;
mod limits;
pub mod naming;

pub use kind::RpcKind;
pub use limits::{
    Fits, LIMIT_KEYS, LimitKey, Setter, ValueType, closest, limit_key, rate_shape_defaults,
    unary_alternatives,
};
