//! The `Call` and metadata a policy receives, built without a server.

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::Duration;

use tonic::Status;
use tonic::metadata::MetadataValue;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, BinaryMetadataKey, MetadataMap};
use tonic::transport::server::TcpConnectInfo;

use crate::auth::{Authenticate, Roles, check_roles};
use crate::call::{Call, CallOutcome};
use crate::policy::hook::Hook;
use crate::rpc::Rpc;
use crate::validate::{Validate, check};

/// Builds the [`Call`] and the metadata that a call of the RPC `R` hands to its
/// [`Authenticate`] verifier, its [`Hook`]s and its [`Validate`] check, to unit-test them
/// without a server.
///
/// [`build`](Self::build) makes them the way the server does, from a `tonic::Request`
/// carrying what a client sends and what the transport adds: [`Call::start`] reads the
/// client address from the connection info tonic's server inserts, the client's deadline
/// from `grpc-timeout`, caps it at the RPC's own timeout, and starts the clock now (with
/// a paused tokio clock, deterministically). Only what you set is there: no
/// `content-type`, `te` or `user-agent`, which a real client sends too.
///
/// ```
/// # tonic_intercept::__doc_rpc!(GetUser, "users.v1.UserService", "GetUser", Unary, (), ());
/// use std::time::Duration;
/// use tonic::Code;
/// use tonic_intercept::StaticTokens;
/// use tonic_intercept::auth::Principal;
/// use tonic_intercept::testing::CallBuilder;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let tokens = StaticTokens::new([("s3cret", Principal::new("ada").with_roles(["admin"]))]);
///
/// let call = CallBuilder::<GetUser>::new()
///     .bearer("s3cret")
///     .remote_addr("10.0.0.7:50000".parse().unwrap())
///     .timeout(Duration::from_millis(500))
///     .build();
/// let ada = call.authenticate(&tokens).await.unwrap();
/// assert_eq!(ada.name, "ada");
/// assert_eq!(call.call().peer(), Some("10.0.0.7:50000".parse().unwrap()));
/// // The server's deadline is 1 ms ahead of the client's (`Call`'s docs say why).
/// assert_eq!(call.call().remaining(), Some(Duration::from_millis(499)));
///
/// let status = CallBuilder::<GetUser>::new().bearer("wrong").build()
///     .authenticate(&tokens).await.unwrap_err();
/// assert_eq!(status.code(), Code::Unauthenticated);
/// assert_eq!(status.message(), "invalid bearer token");
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a CallBuilder does nothing until `build`"]
pub struct CallBuilder<R> {
    request: tonic::Request<()>,
    rpc_timeout: Option<Duration>,
    auth_only: bool,
    _rpc: PhantomData<fn() -> R>,
}

impl<R: Rpc> Default for CallBuilder<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R: Rpc> CallBuilder<R> {
    /// A call of `R` without metadata, client address or deadline.
    pub fn new() -> Self {
        Self {
            request: tonic::Request::new(()),
            rpc_timeout: None,
            auth_only: false,
            _rpc: PhantomData,
        }
    }

    /// Adds an ASCII metadata entry (appended: a key may repeat).
    ///
    /// # Panics
    ///
    /// When `key` is not a valid ASCII metadata key (lowercase, not ending in `-bin`) or
    /// `value` not a valid header value.
    pub fn metadata(mut self, key: &str, value: &str) -> Self {
        let key = AsciiMetadataKey::from_bytes(key.as_bytes())
            .unwrap_or_else(|_| panic!("`{key}` is not an ASCII metadata key"));
        let value = AsciiMetadataValue::try_from(value)
            .unwrap_or_else(|_| panic!("`{value}` is not a metadata value"));
        self.request.metadata_mut().append(key, value);
        self
    }

    /// Adds a binary metadata entry; `key` ends in `-bin`.
    ///
    /// # Panics
    ///
    /// When `key` is not a valid binary metadata key.
    pub fn metadata_bin(mut self, key: &str, value: &[u8]) -> Self {
        let key = BinaryMetadataKey::from_bytes(key.as_bytes())
            .unwrap_or_else(|_| panic!("`{key}` is not a binary metadata key (`-bin`)"));
        self.request
            .metadata_mut()
            .append_bin(key, MetadataValue::from_bytes(value));
        self
    }

    /// `authorization: Bearer <token>`, what [`auth::bearer_token`](crate::auth::bearer_token)
    /// reads.
    pub fn bearer(self, token: &str) -> Self {
        self.metadata("authorization", &format!("Bearer {token}"))
    }

    /// The client's address, as tonic's server records it for `Request::remote_addr`
    /// ([`Call::peer`]; the per-peer call rate's key).
    pub fn remote_addr(mut self, addr: SocketAddr) -> Self {
        self.request.extensions_mut().insert(TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(addr),
        });
        self
    }

    /// The client's deadline, `timeout` from now: the `grpc-timeout` header, written as
    /// `tonic::Request::set_timeout` writes it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.request.set_timeout(timeout);
        self
    }

    /// The RPC's own timeout (`timeout_ms` in `#[intercept(limit(..))]` or the `.proto`),
    /// which caps the client's deadline.
    pub fn rpc_timeout(mut self, timeout: Duration) -> Self {
        self.rpc_timeout = Some(timeout);
        self
    }

    /// The call as an RPC with no policy but `auth(..)` (and `roles(..)`) receives it:
    /// tonic serves such an RPC as it is, so its [`Call`] has no deadline
    /// ([`Call::unbounded`]) whatever `grpc-timeout` says.
    pub fn auth_only(mut self) -> Self {
        self.auth_only = true;
        self
    }

    /// The call, started now.
    pub fn build(self) -> TestCall<R> {
        let descriptor = &R::DESCRIPTOR;
        let call = if self.auth_only {
            Call::unbounded(descriptor, &self.request)
        } else {
            Call::start(descriptor, &self.request, self.rpc_timeout)
        };
        TestCall {
            call,
            request: self.request,
            _rpc: PhantomData,
        }
    }

    /// The request a handler would receive with `message`: this metadata, client address
    /// and `grpc-timeout`. Calling an `#[intercept]` handler with it runs the RPC's
    /// policies without a server (no edge: the clock starts at the handler).
    pub fn request<M>(self, message: M) -> tonic::Request<M> {
        let (metadata, extensions, ()) = self.request.into_parts();
        tonic::Request::from_parts(metadata, extensions, message)
    }
}

/// One call of the RPC `R` built by [`CallBuilder`]: its [`Call`] and metadata, and the
/// policies' entry points run on them as the server runs them.
#[derive(Debug)]
pub struct TestCall<R> {
    call: Call,
    request: tonic::Request<()>,
    _rpc: PhantomData<fn() -> R>,
}

impl<R: Rpc> TestCall<R> {
    /// The call, as policies receive it.
    pub fn call(&self) -> &Call {
        &self.call
    }

    /// The metadata, as `authenticate` and `on_call` receive it.
    pub fn metadata(&self) -> &MetadataMap {
        self.request.metadata()
    }

    /// Runs `verifier` as `auth(..)` does: the identity, or the status the call ends with.
    ///
    /// # Errors
    ///
    /// The verifier's refusal.
    pub async fn authenticate<A: Authenticate + ?Sized>(
        &self,
        verifier: &A,
    ) -> Result<A::Identity, Status> {
        verifier.authenticate(&self.call, self.metadata()).await
    }

    /// [`authenticate`](Self::authenticate), then `roles(..)`: the identity must hold one
    /// of `roles` (none: any identity), else `PERMISSION_DENIED` with the server's
    /// message.
    ///
    /// # Errors
    ///
    /// The verifier's refusal, or `PERMISSION_DENIED`.
    pub async fn authorize<A>(&self, verifier: &A, roles: &[&str]) -> Result<A::Identity, Status>
    where
        A: Authenticate + ?Sized,
        A::Identity: Roles,
    {
        let identity = self.authenticate(verifier).await?;
        check_roles(&self.call, &identity, roles)?;
        Ok(identity)
    }

    /// Runs `hook`'s [`on_call`](Hook::on_call).
    ///
    /// # Errors
    ///
    /// The hook's refusal.
    pub async fn on_call<H: Hook<R>>(&self, hook: &H) -> Result<(), Status> {
        hook.on_call(&self.call, self.metadata()).await
    }

    /// Runs `hook`'s [`on_request`](Hook::on_request) on a request message.
    ///
    /// # Errors
    ///
    /// The hook's refusal.
    pub fn on_request<H: Hook<R>>(&self, hook: &H, message: &R::Request) -> Result<(), Status> {
        hook.on_request(&self.call, message)
    }

    /// Runs `hook`'s [`on_response`](Hook::on_response) on a response message.
    ///
    /// # Errors
    ///
    /// The hook's refusal.
    pub fn on_response<H: Hook<R>>(&self, hook: &H, message: &R::Response) -> Result<(), Status> {
        hook.on_response(&self.call, message)
    }

    /// Runs `hook`'s [`on_finish`](Hook::on_finish) with `outcome`
    /// ([`CallOutcome::new`] and its public fields).
    pub fn on_finish<H: Hook<R>>(&self, hook: &H, outcome: &CallOutcome) {
        hook.on_finish(&self.call, outcome);
    }

    /// Validates a request message as `validate(..)` does: `Ok`, or the
    /// `INVALID_ARGUMENT` status the call ends with (its message and its
    /// `google.rpc.BadRequest` details).
    ///
    /// # Errors
    ///
    /// The violations, as that status.
    pub fn validate(&self, message: &R::Request) -> Result<(), Status>
    where
        R::Request: Validate,
    {
        check(&self.call, message)
    }
}
