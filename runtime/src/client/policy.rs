//! `ClientPolicy<R>`: what a client does for one RPC, checked against the `.proto`.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use crate::client::retry::RetryPolicy;
use crate::rpc::Rpc;

/// What a client sends before giving up on replaying a client stream: gRPC's default
/// `perRpcBufferLimit` (grpc-java), 1 MiB.
pub const DEFAULT_REPLAY_BUFFER: usize = 1 << 20;

/// A [`ClientPolicy`] without its type: what the client engine reads per call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Settings {
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) max_messages_sent: Option<u64>,
    pub(crate) max_messages_received: Option<u64>,
    pub(crate) max_message_bytes: Option<u64>,
    pub(crate) replay_buffer: usize,
}

impl Settings {
    pub(crate) const DEFAULT: Settings = Settings {
        retry: None,
        deadline: None,
        max_messages_sent: None,
        max_messages_received: None,
        max_message_bytes: None,
        replay_buffer: DEFAULT_REPLAY_BUFFER,
    };
}

/// An RPC the `.proto` declares safe to retry: `option idempotency_level = IDEMPOTENT;`
/// or `NO_SIDE_EFFECTS;`, which is what [`ClientPolicy::retry`] requires.
///
/// `tonic-intercept-build` implements it for exactly those generated RPC types (and
/// [`Rpc::DESCRIPTOR`]'s `idempotency` says the same); do not implement it by hand to
/// silence the error: [`ClientPolicy::retry_non_idempotent`] is the explicit way to retry
/// any other RPC.
///
/// ```
/// # mod pb { tonic_intercept::__doc_rpc!(GetUser, "users.v1.UserService", "GetUser", Unary, (), (), NoSideEffects); }
/// use tonic_intercept::client::IdempotentRpc;
/// fn retry_safe<R: IdempotentRpc>() {}
/// retry_safe::<pb::GetUser>();
/// ```
#[diagnostic::on_unimplemented(
    message = "`ClientPolicy::retry` needs an RPC the .proto declares idempotent, and `{Self}` is not",
    label = "this RPC has no `option idempotency_level = IDEMPOTENT` or `NO_SIDE_EFFECTS` in the .proto",
    note = "retrying an RPC may repeat the side effects of an attempt that failed after the server acted",
    note = "if repeating it is safe, declare it in its `rpc` block in the .proto: \
            `option idempotency_level = IDEMPOTENT;` (or `NO_SIDE_EFFECTS;` for a read)",
    note = "otherwise accept the risk deliberately: `ClientPolicy::retry_non_idempotent(..)`"
)]
pub trait IdempotentRpc: Rpc {}

/// A client policy for one RPC, typed by the generated per-RPC type `R`: retries, a
/// default deadline, and limits on the messages of its streams.
///
/// Each setter checks the `.proto` at compile time:
///
/// - [`ClientPolicy::retry`] only for an RPC declared `option idempotency_level =
///   IDEMPOTENT` or `NO_SIDE_EFFECTS` ([`IdempotencyLevel::is_retry_safe`]);
///   [`ClientPolicy::retry_non_idempotent`] is the explicit way to accept the risk;
/// - [`max_messages_sent`](ClientPolicy::max_messages_sent) and
///   [`replay_buffer`](ClientPolicy::replay_buffer) only for an RPC whose requests
///   stream, [`max_messages_received`](ClientPolicy::max_messages_received) only for one
///   whose responses stream.
///
/// Hand it to the generated client's config ([`ClientConfig::policy`]), which only
/// accepts the policies of its own service's RPCs.
///
/// ```
/// # mod pb {
/// #     tonic_intercept::__doc_rpc!(GetUser, "users.v1.UserService", "GetUser", Unary, (), (), NoSideEffects);
/// #     tonic_intercept::__doc_rpc!(CreateUser, "users.v1.UserService", "CreateUser", Unary, (), ());
/// # }
/// use std::time::Duration;
/// use tonic_intercept::ClientPolicy;
/// use tonic_intercept::client::RetryPolicy;
/// use pb::{CreateUser, GetUser};
///
/// // `GetUser` is declared `idempotency_level = NO_SIDE_EFFECTS`.
/// const GET_USER: ClientPolicy<GetUser> =
///     ClientPolicy::retry(RetryPolicy::new().max_attempts(4)).deadline(Duration::from_secs(2));
/// // `CreateUser` declares nothing: retrying it must be accepted explicitly.
/// const CREATE_USER: ClientPolicy<CreateUser> =
///     ClientPolicy::retry_non_idempotent(RetryPolicy::new().max_attempts(2));
///
/// assert_eq!(GET_USER.retry_policy().map(|p| p.attempts()), Some(4));
/// assert_eq!(GET_USER.default_deadline(), Some(Duration::from_secs(2)));
/// assert!(CREATE_USER.retries_non_idempotent());
/// ```
///
/// Retrying an RPC not declared idempotent with [`ClientPolicy::retry`] does not compile:
/// `R` must implement [`IdempotentRpc`], which the generated code implements only for
/// the RPCs the `.proto` declares `IDEMPOTENT` or `NO_SIDE_EFFECTS`. It is a trait bound,
/// so `cargo check` reports it at the `retry` call, in a `const`, a function or an
/// `async fn` alike:
///
/// ```compile_fail,E0277
/// # mod pb { tonic_intercept::__doc_rpc!(CreateUser, "users.v1.UserService", "CreateUser", Unary, (), ()); }
/// use tonic_intercept::ClientPolicy;
/// use tonic_intercept::client::RetryPolicy;
/// const CREATE_USER: ClientPolicy<pb::CreateUser> = ClientPolicy::retry(RetryPolicy::new());
/// ```
///
/// ```text
/// error[E0277]: `ClientPolicy::retry` needs an RPC the .proto declares idempotent, and `pb::CreateUser` is not
///   = note: if repeating it is safe, declare it in its `rpc` block in the .proto: `option idempotency_level = IDEMPOTENT;` (or `NO_SIDE_EFFECTS;` for a read)
///   = note: otherwise accept the risk deliberately: `ClientPolicy::retry_non_idempotent(..)`
/// ```
///
/// Nor does a stream limit on an RPC that does not stream that way:
///
/// ```compile_fail,E0080
/// # mod pb { tonic_intercept::__doc_rpc!(GetUser, "users.v1.UserService", "GetUser", Unary, (), (), NoSideEffects); }
/// use tonic_intercept::ClientPolicy;
/// const GET_USER: ClientPolicy<pb::GetUser> = ClientPolicy::new().max_messages_sent(10);
/// ```
///
/// The stream-kind checks are inline `const { assert!(..) }` blocks on `R::DESCRIPTOR`,
/// evaluated when the setter is instantiated for a concrete `R`. That is a
/// post-monomorphization error: `cargo build` and `cargo test` always report it, and so
/// does `cargo check` when the policy is a `const` item (as above, the recommended form);
/// `cargo check` skips it when the setter is only called from a function body, because
/// `check` does not instantiate function bodies.
///
/// [`IdempotencyLevel::is_retry_safe`]: crate::IdempotencyLevel::is_retry_safe
/// [`ClientConfig::policy`]: crate::ClientConfig::policy
pub struct ClientPolicy<R: Rpc> {
    pub(crate) settings: Settings,
    accepted_non_idempotent: bool,
    rpc: PhantomData<fn() -> R>,
}

impl<R: Rpc> ClientPolicy<R> {
    /// No retries, no default deadline, no limits: each call makes one attempt.
    ///
    /// ```
    /// # mod pb { tonic_intercept::__doc_rpc!(CreateUser, "users.v1.UserService", "CreateUser", Unary, (), ()); }
    /// let policy = tonic_intercept::ClientPolicy::<pb::CreateUser>::new();
    /// assert!(policy.retry_policy().is_none());
    /// ```
    pub const fn new() -> Self {
        Self {
            settings: Settings::DEFAULT,
            accepted_non_idempotent: false,
            rpc: PhantomData,
        }
    }

    /// Retries `R` with `policy`; does not compile unless `R` is declared
    /// `IDEMPOTENT` or `NO_SIDE_EFFECTS` in the `.proto` (the [`IdempotentRpc`] bound).
    ///
    /// ```
    /// # mod pb { tonic_intercept::__doc_rpc!(PutUser, "users.v1.UserService", "PutUser", Unary, (), (), Idempotent); }
    /// use tonic_intercept::ClientPolicy;
    /// use tonic_intercept::client::RetryPolicy;
    /// let policy = ClientPolicy::<pb::PutUser>::retry(RetryPolicy::new());
    /// assert!(!policy.retries_non_idempotent());
    /// ```
    pub const fn retry(policy: RetryPolicy) -> Self
    where
        R: IdempotentRpc,
    {
        // The bound is the rule; this keeps a hand-written `IdempotentRpc` impl honest
        // (generated code implements it exactly for the retry-safe descriptors).
        const {
            assert!(
                R::DESCRIPTOR.idempotency.is_retry_safe(),
                "tonic-intercept: `IdempotentRpc` is implemented for an RPC whose descriptor \
                 is not IDEMPOTENT or NO_SIDE_EFFECTS; remove that impl, or declare \
                 `option idempotency_level` in the .proto"
            )
        };
        let mut this = Self::new();
        this.settings.retry = Some(policy);
        this
    }

    /// Retries `R` with `policy` whatever its declared idempotency: the caller accepts
    /// that a retried attempt may repeat side effects the failed one already had.
    ///
    /// ```
    /// # mod pb { tonic_intercept::__doc_rpc!(CreateUser, "users.v1.UserService", "CreateUser", Unary, (), ()); }
    /// use tonic_intercept::ClientPolicy;
    /// use tonic_intercept::client::RetryPolicy;
    /// let policy = ClientPolicy::<pb::CreateUser>::retry_non_idempotent(RetryPolicy::new());
    /// assert!(policy.retry_policy().is_some());
    /// ```
    pub const fn retry_non_idempotent(policy: RetryPolicy) -> Self {
        let mut this = Self::new();
        this.settings.retry = Some(policy);
        this.accepted_non_idempotent = true;
        this
    }

    /// The deadline of a call that sets none itself (with `Request::set_timeout`): the
    /// call, every attempt and backoff included, ends with `DEADLINE_EXCEEDED` after it.
    /// Inside a handler the incoming call's deadline caps it ([`Deadline::current`]).
    ///
    /// ```
    /// # mod pb { tonic_intercept::__doc_rpc!(GetUser, "users.v1.UserService", "GetUser", Unary, (), ()); }
    /// use std::time::Duration;
    /// let policy = tonic_intercept::ClientPolicy::<pb::GetUser>::new().deadline(Duration::from_millis(300));
    /// assert_eq!(policy.default_deadline(), Some(Duration::from_millis(300)));
    /// ```
    ///
    /// [`Deadline::current`]: crate::Deadline::current
    pub const fn deadline(mut self, deadline: Duration) -> Self {
        self.settings.deadline = Some(deadline);
        self
    }

    /// At most `n` request messages per call: the next one cancels the call with
    /// `RESOURCE_EXHAUSTED`. Only for an RPC whose requests stream.
    ///
    /// ```
    /// # mod pb { tonic_intercept::__doc_rpc!(Upload, "users.v1.UserService", "Upload", ClientStreaming, (), ()); }
    /// let policy = tonic_intercept::ClientPolicy::<pb::Upload>::new().max_messages_sent(100);
    /// # let _ = policy;
    /// ```
    pub const fn max_messages_sent(mut self, n: u64) -> Self {
        const {
            assert!(
                R::DESCRIPTOR.kind.client_streams(),
                "tonic-intercept: `max_messages_sent` limits a request stream, and this RPC \
                 sends a single request message; remove it, or declare the request `stream` \
                 in the .proto"
            )
        };
        self.settings.max_messages_sent = Some(n);
        self
    }

    /// At most `n` response messages per call: the next one ends the stream with
    /// `RESOURCE_EXHAUSTED` and cancels the call. Only for an RPC whose responses stream.
    ///
    /// ```
    /// # mod pb { tonic_intercept::__doc_rpc!(ListUsers, "users.v1.UserService", "ListUsers", ServerStreaming, (), ()); }
    /// let policy = tonic_intercept::ClientPolicy::<pb::ListUsers>::new().max_messages_received(1_000);
    /// # let _ = policy;
    /// ```
    pub const fn max_messages_received(mut self, n: u64) -> Self {
        const {
            assert!(
                R::DESCRIPTOR.kind.server_streams(),
                "tonic-intercept: `max_messages_received` limits a response stream, and this RPC \
                 returns a single response message; remove it, or declare the response \
                 `stream` in the .proto"
            )
        };
        self.settings.max_messages_received = Some(n);
        self
    }

    /// At most `n` encoded bytes per message, either way: a larger request is not sent
    /// and a larger response is refused, with `RESOURCE_EXHAUSTED`.
    ///
    /// ```
    /// # mod pb { tonic_intercept::__doc_rpc!(GetUser, "users.v1.UserService", "GetUser", Unary, (), ()); }
    /// let policy = tonic_intercept::ClientPolicy::<pb::GetUser>::new().max_message_bytes(64 * 1024);
    /// # let _ = policy;
    /// ```
    pub const fn max_message_bytes(mut self, n: u64) -> Self {
        self.settings.max_message_bytes = Some(n);
        self
    }

    /// How many encoded bytes of a request stream are kept to replay on a retry (default
    /// [`DEFAULT_REPLAY_BUFFER`], 1 MiB). Past it the call is committed: the buffer is
    /// dropped and the call is not retried, as gRFC A6's `perRpcBufferLimit`. Only for
    /// an RPC whose requests stream.
    ///
    /// ```
    /// # mod pb { tonic_intercept::__doc_rpc!(Upload, "users.v1.UserService", "Upload", ClientStreaming, (), (), Idempotent); }
    /// use tonic_intercept::ClientPolicy;
    /// use tonic_intercept::client::RetryPolicy;
    /// let policy = ClientPolicy::<pb::Upload>::retry(RetryPolicy::new()).replay_buffer(64 * 1024);
    /// # let _ = policy;
    /// ```
    pub const fn replay_buffer(mut self, bytes: usize) -> Self {
        const {
            assert!(
                R::DESCRIPTOR.kind.client_streams(),
                "tonic-intercept: `replay_buffer` bounds a request stream kept for retries, and \
                 this RPC sends a single request message; remove it"
            )
        };
        self.settings.replay_buffer = bytes;
        self
    }

    /// The retry policy, if the RPC is retried.
    ///
    /// ```
    /// # mod pb { tonic_intercept::__doc_rpc!(GetUser, "users.v1.UserService", "GetUser", Unary, (), (), NoSideEffects); }
    /// use tonic_intercept::ClientPolicy;
    /// use tonic_intercept::client::RetryPolicy;
    /// let policy = ClientPolicy::<pb::GetUser>::retry(RetryPolicy::new().max_attempts(5));
    /// assert_eq!(policy.retry_policy().unwrap().attempts(), 5);
    /// ```
    pub const fn retry_policy(&self) -> Option<&RetryPolicy> {
        self.settings.retry.as_ref()
    }

    /// The default deadline, if set.
    ///
    /// ```
    /// # mod pb { tonic_intercept::__doc_rpc!(GetUser, "users.v1.UserService", "GetUser", Unary, (), ()); }
    /// assert_eq!(tonic_intercept::ClientPolicy::<pb::GetUser>::new().default_deadline(), None);
    /// ```
    pub const fn default_deadline(&self) -> Option<Duration> {
        self.settings.deadline
    }

    /// Whether this policy retries an RPC the `.proto` does not declare retry-safe (only
    /// possible through [`ClientPolicy::retry_non_idempotent`]); worth a log line.
    ///
    /// ```
    /// # mod pb { tonic_intercept::__doc_rpc!(GetUser, "users.v1.UserService", "GetUser", Unary, (), (), NoSideEffects); }
    /// use tonic_intercept::ClientPolicy;
    /// use tonic_intercept::client::RetryPolicy;
    /// // Accepting the risk on an RPC that is safe anyway retries nothing unsafe.
    /// let policy = ClientPolicy::<pb::GetUser>::retry_non_idempotent(RetryPolicy::new());
    /// assert!(!policy.retries_non_idempotent());
    /// ```
    pub const fn retries_non_idempotent(&self) -> bool {
        self.accepted_non_idempotent
            && self.settings.retry.is_some()
            && !R::DESCRIPTOR.idempotency.is_retry_safe()
    }
}

impl<R: Rpc> Default for ClientPolicy<R> {
    /// [`ClientPolicy::new`]: no retries.
    fn default() -> Self {
        Self::new()
    }
}

impl<R: Rpc> Clone for ClientPolicy<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R: Rpc> Copy for ClientPolicy<R> {}

impl<R: Rpc> fmt::Debug for ClientPolicy<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientPolicy")
            .field("rpc", &R::DESCRIPTOR.path)
            .field("settings", &self.settings)
            .field("accepted_non_idempotent", &self.accepted_non_idempotent)
            .finish()
    }
}
