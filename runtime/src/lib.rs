//! Typed, per-RPC, compile-checked interceptors for [tonic] gRPC services.
//!
//! `tonic-intercept-build` (in your `build.rs`) emits, next to prost's messages and
//! tonic's client and server, one type per RPC implementing [`Rpc`]. The
//! [`#[intercept]`](macro@intercept) attribute on your service impl then wraps every RPC
//! in the policies you declare (auth with a public allowlist, per-RPC limits on stream
//! length, message size, message rate and time, and typed [`Hook`]s) and the compiler
//! rejects policies that cannot be right: an RPC name that does not exist, a stream
//! limit on a unary RPC, an RPC that no auth rule covers.
//!
//! ```ignore
//! use tonic_intercept::intercept;
//!
//! #[intercept(
//!     public(CreateUser),
//!     auth(self.tokens),
//!     limit(ListUsers, max_messages_out = 10_000, messages_per_second_out = 500),
//!     hook(self.audit: Audit, CreateUser),
//! )]
//! #[tonic::async_trait]
//! impl pb::user_service_server::UserService for Users { /* your handlers */ }
//! ```
//!
//! See the README for the full `#[intercept]` reference and the generated code.

mod auth;
mod call;
mod hook;
mod limits;
mod rpc;
mod stream;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use auth::{Authenticate, StaticTokens, bearer_token};
pub use call::{Call, Outcome};
pub use hook::{Hook, Hooks};
pub use limits::{Limits, OnRateExceeded, Rate};
pub use rpc::{IdempotencyLevel, Rpc, RpcDescriptor, RpcKind};
pub use stream::{Inbound, Outbound};

pub use tonic_intercept_macros::intercept;
