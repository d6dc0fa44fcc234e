//! The `#[intercept]` attribute of [tonic-intercept](https://docs.rs/tonic-intercept).
//!
//! Use it through `tonic_intercept::intercept`; its reference lives there. The macro is
//! four steps, each a plain function over `proc_macro2` tokens so that it can be
//! unit-tested (`expand::intercept` runs them):
//!
//! - `parse`: the arguments into a syntax tree, grammar only;
//! - `resolve`: the RPCs of the service from the impl, and each RPC name to one of them;
//! - `check`: one function per rule, every mistake collected in one `ctxt::Ctxt`, and
//!   the plan of each RPC;
//! - `expand`: the plan into code, by step: `handler` (the policies' steps around the
//!   user's body), `hooks` (the hooks adapter), `proto` (the `.proto` agreement
//!   asserts), `values` (limit values as runtime builder calls).

mod check;
mod ctxt;
mod expand;
mod parse;
mod resolve;

use proc_macro::TokenStream;

/// Wraps every RPC of a tonic service impl in typed, compile-checked policies.
///
/// Place it above `#[tonic::async_trait]` on `impl pb::x_server::X for T`; RPCs are named
/// as in the `.proto` (`ListUsers`). An entry without RPC names applies to every RPC.
///
/// ```text
/// #[intercept(
///     public(CreateUser),                  // no credentials; `public(*)` for all
///     auth(self.tokens),                   // every RPC not public: impl Authenticate
///     auth(self.admins, DeleteUser),       // these RPCs use this verifier instead
///     roles("admin", DeleteUser),          // PERMISSION_DENIED without one of the roles
///     roles(PurgeUsers),                   // the roles its .proto declares
///     limit(timeout_ms = 5_000),           // every RPC the keys fit
///     limit(ListUsers, max_messages_out = 10_000, messages_per_second_out = 500),
///     limit(ImportUsers, max_messages_in = 1_000, max_message_bytes = 4_096,
///           max_total_bytes_in = 1_048_576),
///     limit(Chat, messages_per_second_in = 20, burst = 5, on_rate_exceeded = reject,
///           idle_timeout_ms = 30_000),
///     limit(Subscribe, messages_per_second_out = FEED_RATE, timeout_ms = none),
///     limit(CreateUser, max_in_flight = 64, queue = 16, calls_per_second = 100,
///           calls_per_second_per_identity = 5),
///     limit(GetUser),                      // guarded: the limits of its .proto apply
///     validate(CreateUser),                // impl Validate for CreateUserRequest
///     idempotency(self.created, CreateUser), // replays by `idempotency-key`
///     metrics(self.metrics),               // ServiceMetrics<user_service_intercept::Service>
///     trace,                               // a span per call, events by status
///     recover,                             // a panic is INTERNAL for that call only
///     hook(self.audit: Audit, CreateUser), // impl Hook<CreateUser> for Audit
///     hook(Counter),                       // a unit struct, every RPC
/// )]
/// ```
///
/// Policies run in one fixed order, whatever the order of the entries: recovery,
/// tracing, metrics, deadline, auth, roles, concurrency and call rate, the hooks'
/// `on_call` (in declared order); then for each message: limits, validation, the hooks;
/// then the idempotency replay, and the handler.
///
/// A limit value is a number or a constant's path; `none` switches a limit set for every
/// RPC off for the RPCs named. Policy declared in the `.proto`
/// (`option (tonic_intercept.v1.rpc) = { .. }`) applies too: it wins over a `limit(..)`
/// for every RPC, and an RPC-specific value here must agree with it.
///
/// Compile errors, each pointing at the offending token: an RPC name that does not exist
/// (with the nearest one suggested), a stream limit on a side that does not stream, an
/// RPC neither public nor covered by `auth` (here or in its `.proto`), the same RPC or
/// key configured twice, an unknown entry or key (with the valid ones listed), a zero
/// limit, roles or a per-identity rate on a public RPC, `idempotency` on a streaming
/// RPC, a value that contradicts the `.proto`, a hook that does not implement
/// `Hook<Rpc>`, a message without `Validate`, an identity without `Roles`, a verifier
/// that does not implement `Authenticate`, metrics of another service, and the attribute
/// placed below `#[tonic::async_trait]` or on anything but a service impl.
///
/// Set `TONIC_INTERCEPT_DEBUG=1` while building to print the expansion.
#[proc_macro_attribute]
pub fn intercept(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::intercept(args.into(), item.into()).into()
}
