//! The server side of one call: what a handler, an [`Authenticate`](crate::Authenticate)
//! or a [`Hook`](crate::Hook) sees of it, and the stream wrappers every message of a
//! streaming RPC passes through.
//!
//! [`Call`] is known when the call starts (the RPC, the peer, the deadline);
//! [`CallOutcome`] when it ends (the code, the counts, the [`PolicyKind`] that ended it,
//! if one did). [`Deadline::current`] gives a running handler its deadline. [`Inbound`]
//! wraps the request stream of a client-streaming or bidi handler, [`Outbound`] the
//! response stream of a server-streaming or bidi one.
//!
//! Inside, the folder holds the call's lifecycle, above the policies it runs: `guard` (a
//! call's policies from its start to its end), `stream` (the wrappers), `recover`
//! (panics) and `expand` (what only the `#[intercept]` expansion calls). The call
//! context itself (`src/call.rs`) sits below the policies, which all read it.

pub(crate) mod expand;
pub(crate) mod guard;
pub(crate) mod recover;
pub(crate) mod stream;

pub use crate::call::{Call, CallOutcome, Deadline, PolicyKind};
pub use stream::{Inbound, Outbound};
