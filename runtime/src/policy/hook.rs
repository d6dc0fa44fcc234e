//! Typed hooks: user code that sees an RPC's messages by type.

use std::future::Future;
use std::sync::Arc;

use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::call::{Call, CallOutcome};
use crate::rpc::Rpc;

/// Typed hooks for the RPC `R`.
///
/// Implement `Hook<ListUsers>` (the type `tonic-intercept-build` generated for
/// `rpc ListUsers`) and name the hook in `#[intercept(hook(...))]`: it then sees the call
/// start with its metadata, every request and response message as
/// `&ListUsersRequest` / `&User`, and the final status. Returning `Err(status)` from
/// `on_call`, `on_request` or `on_response` ends the call with that status
/// (`Status::invalid_argument(..)` for a bad message).
///
/// `on_call` is async: it runs once, before the handler. The per-message hooks are
/// synchronous on purpose: they run inside the stream's `poll`, on the hot path, and a
/// synchronous call there needs no allocation and no stored future. Do async work per
/// message in the handler.
///
/// One type may implement `Hook<R>` for several RPCs, or for every RPC with a generic
/// impl (`impl<R: Rpc> Hook<R> for Log`), using [`Call::rpc`] to tell them apart.
///
/// ```
/// use tonic::Status;
/// use tonic_intercept::{Call, Hook};
/// # #[derive(Clone, PartialEq, prost::Message)] pub struct CreateUserRequest { #[prost(string, tag = "1")] pub name: String }
/// # #[derive(Clone, PartialEq, prost::Message)] pub struct User {}
/// # tonic_intercept::__doc_rpc!(CreateUser, "users.v1.UserService", "CreateUser", Unary, CreateUserRequest, User);
///
/// #[derive(Clone)]
/// struct RejectEmptyNames;
///
/// impl Hook<CreateUser> for RejectEmptyNames {
///     fn on_request(&self, _call: &Call, request: &CreateUserRequest) -> Result<(), Status> {
///         if request.name.is_empty() {
///             return Err(Status::invalid_argument("name must not be empty"));
///         }
///         Ok(())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a hook for the RPC `{R}`",
    label = "this hook does not implement `Hook<{R}>`",
    note = "implement `tonic_intercept::Hook<{R}>` for `{Self}`, or remove `{R}` from this `hook(...)` entry"
)]
pub trait Hook<R: Rpc>: Clone + Send + Sync + 'static {
    /// Runs when the call starts, after the steps declared before this hook.
    fn on_call(
        &self,
        call: &Call,
        metadata: &MetadataMap,
    ) -> impl Future<Output = Result<(), Status>> + Send {
        let _ = (call, metadata);
        async { Ok(()) }
    }

    /// Sees each request message before the handler does.
    fn on_request(&self, call: &Call, message: &R::Request) -> Result<(), Status> {
        let _ = (call, message);
        Ok(())
    }

    /// Sees each response message before it is sent.
    fn on_response(&self, call: &Call, message: &R::Response) -> Result<(), Status> {
        let _ = (call, message);
        Ok(())
    }

    /// Sees how the call ended. Called exactly once per call, also for calls rejected
    /// before the hook's `on_call` ran, so a hook can count rejections.
    fn on_finish(&self, call: &Call, outcome: &CallOutcome) {
        let _ = (call, outcome);
    }
}

impl<R: Rpc, H: Hook<R>> Hook<R> for Arc<H> {
    fn on_call(
        &self,
        call: &Call,
        metadata: &MetadataMap,
    ) -> impl Future<Output = Result<(), Status>> + Send {
        (**self).on_call(call, metadata)
    }
    fn on_request(&self, call: &Call, message: &R::Request) -> Result<(), Status> {
        (**self).on_request(call, message)
    }
    fn on_response(&self, call: &Call, message: &R::Response) -> Result<(), Status> {
        (**self).on_response(call, message)
    }
    fn on_finish(&self, call: &Call, outcome: &CallOutcome) {
        (**self).on_finish(call, outcome)
    }
}

/// All the hooks of one RPC, run in declared order.
///
/// `()` is "no hooks". For an RPC with hooks, `#[intercept]` generates a small struct
/// holding them that implements this trait by calling each [`Hook`] in turn, so the
/// order is plain to read in `cargo expand`.
pub trait Hooks<R: Rpc>: Clone + Send + Sync + 'static {
    /// Validates a request message (`validate` in `#[intercept]`); runs before
    /// `on_request`.
    fn validate(&self, call: &Call, message: &R::Request) -> Result<(), Status> {
        let _ = (call, message);
        Ok(())
    }
    /// `on_request` of each hook, in order; the first error wins.
    fn on_request(&self, call: &Call, message: &R::Request) -> Result<(), Status>;
    /// `on_response` of each hook, in order; the first error wins.
    fn on_response(&self, call: &Call, message: &R::Response) -> Result<(), Status>;
    /// `on_finish` of each hook, last declared first (the onion unwinds).
    fn on_finish(&self, call: &Call, outcome: &CallOutcome);
}

impl<R: Rpc> Hooks<R> for () {
    fn on_request(&self, _: &Call, _: &R::Request) -> Result<(), Status> {
        Ok(())
    }
    fn on_response(&self, _: &Call, _: &R::Response) -> Result<(), Status> {
        Ok(())
    }
    fn on_finish(&self, _: &Call, _: &CallOutcome) {}
}
