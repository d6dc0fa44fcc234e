//! `ClientConfig`: everything a generated client applies to its calls, per service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Code, Status};

use crate::client::credentials::{TokenProvider, TokenSource};
use crate::client::metrics::ClientServiceMetrics;
use crate::client::policy::{ClientPolicy, Settings};
use crate::client::retry::{GiveUpReason, RetryThrottle};
use crate::rpc::{Rpc, RpcOf, Service};

/// Typed hooks on one RPC's client calls: every request message sent, every response
/// message received, and the end of the call.
///
/// The generated client's method for `R` needs `H: ClientHook<R>` when the config's
/// hooks are `H` (set with [`ClientConfig::hooks`]); the default `()` implements it for
/// every RPC. All methods have defaults, so an empty `impl` opts an RPC in:
///
/// ```
/// # mod pb { tonic_intercept::__doc_rpc!(GetUser, "users.v1.UserService", "GetUser", Unary, String, String); }
/// use tonic::Status;
/// use tonic_intercept::ClientHook;
/// use tonic_intercept::client::ClientOutcome;
///
/// struct RefuseEmpty;
///
/// impl ClientHook<pb::GetUser> for RefuseEmpty {
///     fn on_send(&self, name: &String) -> Result<(), Status> {
///         if name.is_empty() {
///             return Err(Status::invalid_argument("name is empty; not sent"));
///         }
///         Ok(())
///     }
///     fn on_finish(&self, outcome: &ClientOutcome) {
///         println!("GetUser: {:?} after {} attempt(s)", outcome.code, outcome.attempts);
///     }
/// }
/// ```
///
/// A message is seen once however many attempts send it; an error from a hook ends the
/// call with that status (a request that fails `on_send` is never sent; for a stream, the
/// call is cancelled).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a client hook for the RPC `{R}`",
    label = "this client's hooks do not implement `ClientHook<{R}>`",
    note = "implement `tonic_intercept::ClientHook<{R}>` for `{Self}` (an empty `impl` keeps \
            every default)"
)]
pub trait ClientHook<R: Rpc>: Send + Sync + 'static {
    /// Each request message, before it is sent.
    fn on_send(&self, message: &R::Request) -> Result<(), Status> {
        let _ = message;
        Ok(())
    }

    /// Each response message, before the application sees it.
    fn on_receive(&self, message: &R::Response) -> Result<(), Status> {
        let _ = message;
        Ok(())
    }

    /// Once, when the call ends (for a response stream: when it ends or is dropped).
    fn on_finish(&self, outcome: &ClientOutcome) {
        let _ = outcome;
    }
}

impl<R: Rpc> ClientHook<R> for () {}

impl<R: Rpc, H: ClientHook<R>> ClientHook<R> for Arc<H> {
    fn on_send(&self, message: &R::Request) -> Result<(), Status> {
        (**self).on_send(message)
    }
    fn on_receive(&self, message: &R::Response) -> Result<(), Status> {
        (**self).on_receive(message)
    }
    fn on_finish(&self, outcome: &ClientOutcome) {
        (**self).on_finish(outcome)
    }
}

/// How a client call ended, as seen by [`ClientHook::on_finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientOutcome {
    /// The status code the application got (`Cancelled` for a response stream dropped
    /// before its end).
    pub code: Code,
    /// Attempts made, the first included (so 1 also for a request that a hook or limit
    /// refused before it was sent, as `grpc_client_attempts_total` counts it).
    pub attempts: u32,
    /// Why the call was not retried again, when it failed under a retry policy.
    pub gave_up: Option<GiveUpReason>,
    /// Request messages sent (each counted once, however many attempts sent it).
    pub messages_sent: u64,
    /// Response messages the application received.
    pub messages_received: u64,
    /// From the call's start to its end.
    pub elapsed: Duration,
}

impl ClientOutcome {
    /// An outcome; for tests of hooks.
    ///
    /// ```
    /// let outcome = tonic_intercept::client::ClientOutcome::new(tonic::Code::Ok);
    /// assert_eq!(outcome.attempts, 1);
    /// ```
    pub const fn new(code: Code) -> Self {
        Self {
            code,
            attempts: 1,
            gave_up: None,
            messages_sent: 0,
            messages_received: 0,
            elapsed: Duration::ZERO,
        }
    }

    pub(crate) fn at(
        code: Code,
        attempts: u32,
        gave_up: Option<GiveUpReason>,
        sent: u64,
        received: u64,
        elapsed: Duration,
    ) -> Self {
        let mut outcome = ClientOutcome::new(code);
        outcome.attempts = attempts;
        outcome.gave_up = gave_up;
        outcome.messages_sent = sent;
        outcome.messages_received = received;
        outcome.elapsed = elapsed;
        outcome
    }
}

/// A [`TokenProvider`] without its source type, so one config field holds any of them.
pub(crate) trait CallCredentials: Send + Sync + 'static {
    /// The cached header, while it is fresh: the path of nearly every call.
    fn fresh(&self) -> Option<MetadataValue<Ascii>>;
    /// Waits for (or makes) a fetch; boxed, since it runs once per token lifetime.
    fn fetch(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<MetadataValue<Ascii>, Status>> + Send + '_>>;
}

impl<S: TokenSource> CallCredentials for TokenProvider<S> {
    fn fresh(&self) -> Option<MetadataValue<Ascii>> {
        TokenProvider::fresh(self)
    }
    fn fetch(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<MetadataValue<Ascii>, Status>> + Send + '_>> {
        Box::pin(self.token())
    }
}

/// What a generated client applies to the calls of service `S`: a [`ClientPolicy`] per
/// RPC, a default deadline, retry throttling, credentials, request ids, metrics and
/// typed hooks `H`.
///
/// ```
/// # mod pb {
/// #     tonic_intercept::__doc_rpc!(GetUser, "users.v1.UserService", "GetUser", Unary, (), (), NoSideEffects);
/// # }
/// use std::time::Duration;
/// use tonic_intercept::{ClientConfig, ClientPolicy};
/// use tonic_intercept::client::{RetryPolicy, RetryThrottle};
///
/// const GET_USER: ClientPolicy<pb::GetUser> =
///     ClientPolicy::retry(RetryPolicy::new().max_attempts(4)).deadline(Duration::from_millis(500));
///
/// let config = ClientConfig::new()
///     .policy(GET_USER)
///     .deadline(Duration::from_secs(5)) // every other RPC
///     .throttle(RetryThrottle::new(10, 0.1));
/// assert_eq!(config.deadline_of::<pb::GetUser>(), Some(Duration::from_millis(500)));
/// # let _: ClientConfig<tonic_intercept::__private::DocService> = config;
/// ```
///
/// Hand it to the generated client: `user_service_intercept::Client::with_config(channel,
/// config)`. A config is built once; the client shares it (an [`Arc`]) with its clones.
pub struct ClientConfig<S: Service, H = ()> {
    /// Indexed by `Rpc::INDEX`: one per RPC of `S`.
    pub(crate) settings: Box<[Settings]>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) throttle: RetryThrottle,
    pub(crate) credentials: Option<Arc<dyn CallCredentials>>,
    pub(crate) metrics: Option<ClientServiceMetrics<S>>,
    pub(crate) request_ids: bool,
    pub(crate) hooks: H,
}

impl<S: Service> ClientConfig<S> {
    /// No policy: one attempt per call, no deadline, no credentials, request ids on, no
    /// metrics, no hooks.
    pub fn new() -> Self {
        Self {
            settings: vec![Settings::DEFAULT; S::RPCS.len()].into_boxed_slice(),
            deadline: None,
            throttle: RetryThrottle::disabled(),
            credentials: None,
            metrics: None,
            request_ids: true,
            hooks: (),
        }
    }
}

impl<S: Service> Default for ClientConfig<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Service, H> ClientConfig<S, H> {
    /// The policy of RPC `R`; `R` must be an RPC of `S` (it does not compile otherwise).
    pub fn policy<R: RpcOf<S>>(mut self, policy: ClientPolicy<R>) -> Self {
        self.settings[R::INDEX] = policy.settings;
        self
    }

    /// The deadline of every call whose RPC policy and request set none.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The gRFC A6 retry throttle shared by every call of this config (and of any other
    /// config handed a clone of it): retries stop while too many calls fail. Every RPC
    /// of the service counts, those without a retry policy included (see
    /// [`RetryThrottle`] for what counts).
    pub fn throttle(mut self, throttle: RetryThrottle) -> Self {
        self.throttle = throttle;
        self
    }

    /// Sends `authorization: Bearer <token>` from `provider` on every call that does not
    /// carry an `authorization` header already. A failed fetch fails the call with its
    /// status, before anything is sent.
    pub fn credentials<Src: TokenSource>(mut self, provider: TokenProvider<Src>) -> Self {
        self.credentials = Some(Arc::new(provider));
        self
    }

    /// Whether calls without an `x-request-id` get one (default: yes). Inside a handler
    /// that `#[intercept]` wraps (any policy beyond `public` and `auth`), the incoming
    /// call's id is forwarded; otherwise a new random id is made. Every attempt of a call
    /// carries the same id.
    pub fn request_ids(mut self, on: bool) -> Self {
        self.request_ids = on;
        self
    }

    /// Records `grpc_client_*` metrics into `metrics`.
    pub fn metrics(mut self, metrics: ClientServiceMetrics<S>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Typed hooks: the client's method for RPC `R` then needs `H2: ClientHook<R>`.
    pub fn hooks<H2>(self, hooks: H2) -> ClientConfig<S, H2> {
        ClientConfig {
            settings: self.settings,
            deadline: self.deadline,
            throttle: self.throttle,
            credentials: self.credentials,
            metrics: self.metrics,
            request_ids: self.request_ids,
            hooks,
        }
    }

    /// The hooks.
    pub fn hook_set(&self) -> &H {
        &self.hooks
    }

    /// The retry throttle (to read its tokens, say).
    pub fn retry_throttle(&self) -> &RetryThrottle {
        &self.throttle
    }

    /// The deadline a call of `R` gets when its request sets none.
    pub fn deadline_of<R: RpcOf<S>>(&self) -> Option<Duration> {
        self.settings_of::<R>().deadline
    }

    pub(crate) fn settings_of<R: Rpc<Service = S>>(&self) -> Settings {
        let mut settings = self.settings[R::INDEX];
        settings.deadline = settings.deadline.or(self.deadline);
        settings
    }
}

impl<S: Service, H> fmt::Debug for ClientConfig<S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("service", &S::NAME)
            .field("settings", &self.settings)
            .field("deadline", &self.deadline)
            .field("throttle", &self.throttle)
            .field("credentials", &self.credentials.is_some())
            .field("request_ids", &self.request_ids)
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}
