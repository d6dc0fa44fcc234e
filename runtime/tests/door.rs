//! The `__private` door: every path that generated and expanded code will name once the
//! generators switch to it compiles from outside the crate, and the spans it opens are
//! those of `__rpc_span!`.

use tonic_intercept::__private as door;

#[derive(Debug, Clone, Copy)]
struct Echo;

#[derive(Debug, Clone, Copy)]
struct Ping;

impl door::Service for Echo {
    const NAME: &'static str = "echo.v1.Echo";
    const RPCS: &'static [&'static door::RpcDescriptor] = &[&<Ping as door::Rpc>::DESCRIPTOR];
}

impl door::Rpc for Ping {
    type Service = Echo;
    type Request = ();
    type Response = ();
    const DESCRIPTOR: door::RpcDescriptor = door::RpcDescriptor::new(
        "echo.v1.Echo",
        "Ping",
        "/echo.v1.Echo/Ping",
        door::RpcKind::Unary,
        door::IdempotencyLevel::NoSideEffects,
        false,
    )
    .with_policy(door::RpcPolicy::new().public());
    const INDEX: usize = 0;
    fn span(call: &door::Call) -> door::tracing::Span {
        door::rpc_span!("echo.v1.Echo/Ping", call)
    }
}

impl door::RpcOf<Echo> for Ping {}
impl door::IdempotentRpc for Ping {}

/// What `#[intercept]` declares for the edge, and what the generated server passes on.
struct Handler;

impl door::Declared<Echo> for Handler {
    const LIMITS: &'static [(&'static door::RpcDescriptor, door::Limits)] = &[(
        &<Ping as door::Rpc>::DESCRIPTOR,
        door::Limits::new().max_message_bytes(64),
    )];
}

struct Server<T>(T);

impl<T: door::Declared<Echo>> door::Edged for Server<T> {
    type Service = Echo;
    const LIMITS: &'static [(&'static door::RpcDescriptor, door::Limits)] = T::LIMITS;
    fn cap_decoding(self, _limit: usize) -> Self {
        self
    }
}

/// The generated client's bound, by its documented name.
fn takes_transport<T: tonic_intercept::client::Transport>(_: &T) {}

#[test]
fn generated_code_paths_compile_through_the_door() {
    // Names the expansion uses in signatures and `match`es.
    let _: fn(door::PolicyKind) -> &'static str = door::PolicyKind::as_str;
    let _ = door::CallOutcome::new(tonic::Code::Ok);
    let _ = door::OnRateExceeded::Delay;
    let _: door::Duration = door::Duration::from_millis(1);
    let _ = door::Limits::new().timeout(door::Duration::from_millis(5));
    let _ = door::TraceCalls::new();
    let _: Option<door::Status> = None;
    let _: Option<door::Response<()>> = None;
    let _: Option<door::ServiceMetrics<Echo>> = None;
    let _: Option<door::ClientConfig<Echo>> = Some(door::ClientConfig::new());
    const _: bool = door::proto_disagreement::<8>(["a", "b", "c"], 3, 5).1 == 5
        && door::same_roles(&["a"], &["a"]);
    let _ = door::identity_key("alice");
    assert_eq!(door::shared_identity(&7), "7");
    static SHARED: door::SharedRates =
        door::SharedRates::new(door::AdmissionConfig::new().calls_per_minute(5));
    assert_eq!(SHARED.per_rpc().map(|l| l.per_period), Some(5));
    fn _admits_shared<B: door::AdmitShared>(_: &B) {}
    fn _roles<I: door::Roles>(_: &I) {}
    fn _authenticates<A: door::Authenticate>(_: &A) {}
    fn _hooks<R: door::Rpc, H: door::Hooks<R> + door::Hook<R>>(_: &H) {}
    fn _client_hooks<R: door::Rpc, H: door::ClientHook<R>>(_: &H) {}
    let _: Option<door::Responses<Ping>> = None;
    // What `ClientPolicy::retry` is bounded on, implemented for the retry-safe RPCs.
    let retried =
        tonic_intercept::ClientPolicy::<Ping>::retry(tonic_intercept::client::RetryPolicy::new());
    assert!(!retried.retries_non_idempotent());
    let _: Option<door::Inbound<Ping, ()>> = None;
    type Replies = tokio_stream::Empty<Result<(), door::Status>>;
    let _: Option<door::Outbound<Ping, Replies, ()>> = None;
    let _: fn(&door::DocService) = |_| {};
    let _ = takes_transport::<tonic::transport::Channel>;
    let declared = <Server<Handler> as door::Edged>::LIMITS;
    assert_eq!(declared[0].1.get_max_message_bytes(), Some(64));

    let call = door::Call::start(
        &<Ping as door::Rpc>::DESCRIPTOR,
        &tonic::Request::new(()),
        None,
    );
    // `validate(..)`: the expansion's autoref pick; a hand-written impl is found first.
    {
        // As the expansion does: all three in scope, the one that applies is used.
        #[allow(unused_imports)]
        use door::{ValidateByHand as _, ValidateByRules as _, ValidateMissing as _};
        struct Named(&'static str);
        impl tonic_intercept::Validate for Named {
            fn validate(&self, v: &mut tonic_intercept::validate::Violations) {
                if self.0.is_empty() {
                    v.field("name", "must not be empty");
                }
            }
        }
        assert!(
            (&&&door::ValidatePick(&Named("a")))
                .__tonic_intercept_validate(&call)
                .is_ok()
        );
        let refused = (&&&door::ValidatePick(&Named(""))).__tonic_intercept_validate(&call);
        assert_eq!(refused.unwrap_err().code(), tonic::Code::InvalidArgument);
        assert!(door::validate(&call, &Named("b")).is_ok());
    }
    // What tonic-intercept-build emits for a message with `buf.validate` rules.
    #[cfg(feature = "protovalidate")]
    {
        fn _rules<M: door::ProtoValidate>() -> &'static door::MessageDescriptor {
            M::descriptor()
        }
        let _: fn(&'static [u8], &str) -> door::MessageDescriptor = door::proto_descriptor;
    }
    let cache = tonic_intercept::IdempotencyCache::<Ping>::new(door::Duration::from_secs(1), 4);
    let metadata = tonic::metadata::MetadataMap::new();
    assert!(matches!(
        door::idempotency_begin(&cache, &call, &metadata, &(), 0),
        Ok(door::Begin::Bypass)
    ));
    // The expansion's path: the key read and checked, then the store and its ticket.
    assert!(matches!(door::idempotency_key(&call, &metadata), Ok(None)));
    let request = tonic::Request::new(());
    let verifier = tonic_intercept::StaticTokens::new([("t", ())]);
    let scope = door::IdempotencyScope::of_caller(&verifier, &request, Some(1));
    assert_eq!(scope.local(), 1);
    assert!(door::IdempotencyScope::GLOBAL.is_global());
    let begin = door::IdempotencyStore::<Ping>::begin(&cache, &call, "k", scope, &());
    let Some(Ok(door::Begin::Run(ticket))) = now(begin) else {
        panic!("the first call with a key runs");
    };
    let _: &door::Ticket<Ping> = &ticket;
    let result = Ok(door::Response::new(()));
    let done = door::IdempotencyTicket::<Ping>::complete(ticket, &result);
    assert_eq!(now(done), Some(()));
    let again = door::IdempotencyStore::<Ping>::begin(&cache, &call, "k", scope, &());
    assert!(matches!(now(again), Some(Ok(door::Begin::Replay(_)))));
}

/// The output of a future that is ready at its first poll (the in-process cache's).
fn now<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

#[test]
fn rpc_span_through_the_door_names_the_rpc() {
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let call = door::Call::start(
            &<Ping as door::Rpc>::DESCRIPTOR,
            &tonic::Request::new(()),
            None,
        );
        let span = <Ping as door::Rpc>::span(&call);
        assert_eq!(span.metadata().map(|m| m.name()), Some("echo.v1.Echo/Ping"));
    });
}
