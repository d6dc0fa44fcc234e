#[tonic::async_trait]
impl pb::echo_service_server::EchoService for Echo {
    async fn unary(
        &self,
        __ti_request: Request<EchoRequest>,
    ) -> Result<Response<EchoReply>, Status> {
        let mut __ti_guard = ::tonic_intercept::__private::Guard::<
            pb::echo_service_intercept::Unary,
            __EchoEchoServiceUnaryHooks,
        >::new(
            &__ti_request,
            const {
                <Self as ::tonic_intercept::__private::Declared<
                    <pb::echo_service_intercept::Unary as ::tonic_intercept::__private::Rpc>::Service,
                >>::LIMITS[0]
                    .1
            },
            __EchoEchoServiceUnaryHooks(),
            false,
        );
        let __ti_outcome = ::tonic_intercept::__private::run(
                __ti_guard.span(),
                false,
                async {
                    let mut __ti_request = __ti_request;
                    let mut __ti_key: ::core::option::Option<u64> = ::core::option::Option::None;
                    if !<pb::echo_service_intercept::Unary as ::tonic_intercept::__private::Rpc>::DESCRIPTOR
                        .policy
                        .public
                    {
                        match ::tonic_intercept::__private::Authenticate::authenticate(
                                &self.tokens,
                                __ti_guard.call(),
                                __ti_request.metadata(),
                            )
                            .await
                        {
                            ::core::result::Result::Ok(__ti_identity) => {
                                __ti_key = ::core::option::Option::Some(
                                    ::tonic_intercept::__private::identity_key(&__ti_identity),
                                );
                                ::tonic_intercept::__private::store_identity(
                                    &mut __ti_request,
                                    __ti_identity,
                                );
                            }
                            ::core::result::Result::Err(__ti_status) => {
                                let __ti_error = (
                                    ::tonic_intercept::__private::PolicyKind::Auth,
                                    __ti_status,
                                );
                                return ::core::result::Result::Err(
                                    __ti_guard.reject(__ti_error),
                                );
                            }
                        }
                    }
                    static __TONIC_INTERCEPT_ADMISSION: ::tonic_intercept::__private::Admission = ::tonic_intercept::__private::Admission::new(
                        ::tonic_intercept::__private::AdmissionConfig::new()
                            .max_in_flight(4)
                            .calls_per_second_per_identity(2)
                            .queue(1),
                    );
                    if let ::core::result::Result::Err(__ti_error) = __ti_guard
                        .admit(&__TONIC_INTERCEPT_ADMISSION, __ti_key)
                        .await
                    {
                        return ::core::result::Result::Err(
                            __ti_guard.reject(__ti_error),
                        );
                    }
                    if let ::core::result::Result::Err(__ti_error) = __ti_guard
                        .admit_request(__ti_request.get_ref())
                    {
                        return ::core::result::Result::Err(
                            __ti_guard.reject(__ti_error),
                        );
                    }
                    let __ti_ticket = match ::tonic_intercept::__private::idempotency_key(
                        __ti_guard.call(),
                        __ti_request.metadata(),
                    ) {
                        ::core::result::Result::Ok(::core::option::Option::None) => {
                            ::core::option::Option::None
                        }
                        ::core::result::Result::Ok(
                            ::core::option::Option::Some(__ti_idempotency_key),
                        ) => {
                            match ::tonic_intercept::__private::IdempotencyStore::<
                                pb::echo_service_intercept::Unary,
                            >::begin(
                                    &self.cache,
                                    __ti_guard.call(),
                                    __ti_idempotency_key,
                                    ::tonic_intercept::__private::IdempotencyScope::of_caller(
                                        &self.tokens,
                                        &__ti_request,
                                        __ti_key,
                                    ),
                                    __ti_request.get_ref(),
                                )
                                .await
                            {
                                ::core::result::Result::Ok(
                                    ::tonic_intercept::__private::Begin::Bypass,
                                ) => ::core::option::Option::None,
                                ::core::result::Result::Ok(
                                    ::tonic_intercept::__private::Begin::Run(__ti_ticket),
                                ) => ::core::option::Option::Some(__ti_ticket),
                                ::core::result::Result::Ok(
                                    ::tonic_intercept::__private::Begin::Replay(__ti_ret),
                                ) => {
                                    return __ti_guard.replay(__ti_ret);
                                }
                                ::core::result::Result::Err(__ti_error) => {
                                    return ::core::result::Result::Err(
                                        __ti_guard.reject(__ti_error),
                                    );
                                }
                            }
                        }
                        ::core::result::Result::Err(__ti_error) => {
                            return ::core::result::Result::Err(
                                __ti_guard.reject(__ti_error),
                            );
                        }
                    };
                    let __ti_result = __ti_guard
                        .unary(async move {
                            let request = __ti_request;
                            let __ti_ret: Result<Response<EchoReply>, Status> = {
                                Ok(
                                    Response::new(EchoReply {
                                        text: request.into_inner().text,
                                        seq: 0,
                                    }),
                                )
                            };
                            __ti_ret
                        })
                        .await;
                    if let ::core::option::Option::Some(__ti_ticket) = __ti_ticket {
                        ::tonic_intercept::__private::IdempotencyTicket::<
                            pb::echo_service_intercept::Unary,
                        >::complete(__ti_ticket, &__ti_result)
                            .await;
                    }
                    __ti_result
                },
            )
            .await;
        match __ti_outcome {
            ::core::result::Result::Ok(__ti_ret) => __ti_ret,
            ::core::result::Result::Err(__ti_panic) => {
                ::core::result::Result::Err(__ti_guard.panicked(__ti_panic))
            }
        }
    }
    type ServerStreamStream = ReceiverStream<Result<EchoReply, Status>>;
    async fn server_stream(
        &self,
        mut __ti_request: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        let __ti_call = ::tonic_intercept::__private::Call::unbounded(
            &<pb::echo_service_intercept::ServerStream as ::tonic_intercept::__private::Rpc>::DESCRIPTOR,
            &__ti_request,
        );
        if !<pb::echo_service_intercept::ServerStream as ::tonic_intercept::__private::Rpc>::DESCRIPTOR
            .policy
            .public
        {
            match ::tonic_intercept::__private::Authenticate::authenticate(
                    &self.tokens,
                    &__ti_call,
                    __ti_request.metadata(),
                )
                .await
            {
                ::core::result::Result::Ok(__ti_identity) => {
                    let identity_with_roles = &__ti_identity;
                    if let ::core::result::Result::Err(__ti_status) = ::tonic_intercept::__private::authorize(
                        &__ti_call,
                        identity_with_roles,
                        &["admin"],
                    ) {
                        let __ti_error = (
                            ::tonic_intercept::__private::PolicyKind::Roles,
                            __ti_status,
                        );
                        return ::core::result::Result::Err(__ti_error.1);
                    }
                    ::tonic_intercept::__private::store_identity(
                        &mut __ti_request,
                        __ti_identity,
                    );
                }
                ::core::result::Result::Err(__ti_status) => {
                    let __ti_error = (
                        ::tonic_intercept::__private::PolicyKind::Auth,
                        __ti_status,
                    );
                    return ::core::result::Result::Err(__ti_error.1);
                }
            }
        }
        let request = __ti_request;
        {
            let (_tx, rx) = tokio::sync::mpsc::channel(1);
            Ok(Response::new(ReceiverStream::new(rx)))
        }
    }
    async fn client_stream(
        &self,
        __ti_request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Summary>, Status> {
        let mut __ti_guard = ::tonic_intercept::__private::Guard::<
            pb::echo_service_intercept::ClientStream,
            __EchoEchoServiceClientStreamHooks,
        >::new(
            &__ti_request,
            const {
                <Self as ::tonic_intercept::__private::Declared<
                    <pb::echo_service_intercept::ClientStream as ::tonic_intercept::__private::Rpc>::Service,
                >>::LIMITS[2]
                    .1
                    .measure_bytes()
            },
            __EchoEchoServiceClientStreamHooks(
                ::tonic_intercept::__private::MetricsOf::<
                    pb::echo_service_intercept::Service,
                >::metrics(&self.metrics),
            ),
            false,
        );
        let __ti_outcome = ::tonic_intercept::__private::run(
                __ti_guard.span(),
                false,
                async {
                    let mut __ti_request = __ti_request;
                    if let ::core::result::Result::Err(__ti_status) = <::tonic_intercept::__private::ServiceMetrics<
                        pb::echo_service_intercept::Service,
                    > as ::tonic_intercept::__private::Hook<
                        pb::echo_service_intercept::ClientStream,
                    >>::on_call(
                            &__ti_guard.hooks().0,
                            __ti_guard.call(),
                            __ti_request.metadata(),
                        )
                        .await
                    {
                        let __ti_error = (
                            ::tonic_intercept::__private::PolicyKind::Hook,
                            __ti_status,
                        );
                        return ::core::result::Result::Err(
                            __ti_guard.reject(__ti_error),
                        );
                    }
                    if !<pb::echo_service_intercept::ClientStream as ::tonic_intercept::__private::Rpc>::DESCRIPTOR
                        .policy
                        .public
                    {
                        match ::tonic_intercept::__private::Authenticate::authenticate(
                                &self.tokens,
                                __ti_guard.call(),
                                __ti_request.metadata(),
                            )
                            .await
                        {
                            ::core::result::Result::Ok(__ti_identity) => {
                                ::tonic_intercept::__private::store_identity(
                                    &mut __ti_request,
                                    __ti_identity,
                                );
                            }
                            ::core::result::Result::Err(__ti_status) => {
                                let __ti_error = (
                                    ::tonic_intercept::__private::PolicyKind::Auth,
                                    __ti_status,
                                );
                                return ::core::result::Result::Err(
                                    __ti_guard.reject(__ti_error),
                                );
                            }
                        }
                    }
                    let __ti_request = __ti_guard.inbound(__ti_request);
                    __ti_guard
                        .client_streaming(async move {
                            let request = __ti_request;
                            let __ti_ret: Result<Response<Summary>, Status> = {
                                Err(Status::unimplemented("client_stream"))
                            };
                            __ti_ret
                        })
                        .await
                },
            )
            .await;
        match __ti_outcome {
            ::core::result::Result::Ok(__ti_ret) => __ti_ret,
            ::core::result::Result::Err(__ti_panic) => {
                ::core::result::Result::Err(__ti_guard.panicked(__ti_panic))
            }
        }
    }
    type BidiStream = ::tonic_intercept::__private::Outbound<
        pb::echo_service_intercept::Bidi,
        ReceiverStream<Result<EchoReply, Status>>,
        __EchoEchoServiceBidiHooks,
    >;
    async fn bidi(
        &self,
        __ti_request: Request<Streaming<EchoRequest>>,
    ) -> ::core::result::Result<
        ::tonic_intercept::__private::Response<Self::BidiStream>,
        ::tonic_intercept::__private::Status,
    > {
        let mut __ti_guard = ::tonic_intercept::__private::Guard::<
            pb::echo_service_intercept::Bidi,
            __EchoEchoServiceBidiHooks,
        >::new(
            &__ti_request,
            const {
                <Self as ::tonic_intercept::__private::Declared<
                    <pb::echo_service_intercept::Bidi as ::tonic_intercept::__private::Rpc>::Service,
                >>::LIMITS[3]
                    .1
            },
            __EchoEchoServiceBidiHooks(::core::clone::Clone::clone(&self.trace)),
            true,
        );
        __ti_guard.trace(__ti_request.metadata());
        let __ti_outcome = ::tonic_intercept::__private::run(
                __ti_guard.span(),
                true,
                async {
                    let mut __ti_request = __ti_request;
                    if let ::core::result::Result::Err(__ti_status) = <::tonic_intercept::__private::TraceCalls as ::tonic_intercept::__private::Hook<
                        pb::echo_service_intercept::Bidi,
                    >>::on_call(
                            &__ti_guard.hooks().0,
                            __ti_guard.call(),
                            __ti_request.metadata(),
                        )
                        .await
                    {
                        let __ti_error = (
                            ::tonic_intercept::__private::PolicyKind::Hook,
                            __ti_status,
                        );
                        return ::core::result::Result::Err(
                            __ti_guard.reject(__ti_error),
                        );
                    }
                    if !<pb::echo_service_intercept::Bidi as ::tonic_intercept::__private::Rpc>::DESCRIPTOR
                        .policy
                        .public
                    {
                        match ::tonic_intercept::__private::Authenticate::authenticate(
                                &self.tokens,
                                __ti_guard.call(),
                                __ti_request.metadata(),
                            )
                            .await
                        {
                            ::core::result::Result::Ok(__ti_identity) => {
                                ::tonic_intercept::__private::store_identity(
                                    &mut __ti_request,
                                    __ti_identity,
                                );
                            }
                            ::core::result::Result::Err(__ti_status) => {
                                let __ti_error = (
                                    ::tonic_intercept::__private::PolicyKind::Auth,
                                    __ti_status,
                                );
                                return ::core::result::Result::Err(
                                    __ti_guard.reject(__ti_error),
                                );
                            }
                        }
                    }
                    let __ti_request = __ti_guard.inbound(__ti_request);
                    __ti_guard
                        .bidi(async move {
                            let request = __ti_request;
                            let __ti_ret: Result<
                                Response<ReceiverStream<Result<EchoReply, Status>>>,
                                Status,
                            > = { Err(Status::unimplemented("bidi")) };
                            __ti_ret
                        })
                        .await
                },
            )
            .await;
        match __ti_outcome {
            ::core::result::Result::Ok(__ti_ret) => __ti_ret,
            ::core::result::Result::Err(__ti_panic) => {
                ::core::result::Result::Err(__ti_guard.panicked(__ti_panic))
            }
        }
    }
}
/// The observers and hooks of `Unary`, in the order they run.
#[doc(hidden)]
#[derive(Clone)]
pub struct __EchoEchoServiceUnaryHooks();
#[automatically_derived]
impl ::tonic_intercept::__private::Hooks<pb::echo_service_intercept::Unary>
for __EchoEchoServiceUnaryHooks {
    fn validate(
        &self,
        call: &::tonic_intercept::__private::Call,
        message: &<pb::echo_service_intercept::Unary as ::tonic_intercept::__private::Rpc>::Request,
    ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
        let validated = message;
        {
            #[allow(unused_imports)]
            use ::tonic_intercept::__private::{
                ValidateByHand as _, ValidateByRules as _, ValidateMissing as _,
            };
            (&&&::tonic_intercept::__private::ValidatePick(validated))
                .__tonic_intercept_validate(call)
        }
    }
    fn on_request(
        &self,
        call: &::tonic_intercept::__private::Call,
        message: &<pb::echo_service_intercept::Unary as ::tonic_intercept::__private::Rpc>::Request,
    ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
        ::core::result::Result::Ok(())
    }
    fn on_response(
        &self,
        call: &::tonic_intercept::__private::Call,
        message: &<pb::echo_service_intercept::Unary as ::tonic_intercept::__private::Rpc>::Response,
    ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
        ::core::result::Result::Ok(())
    }
    fn on_finish(
        &self,
        call: &::tonic_intercept::__private::Call,
        outcome: &::tonic_intercept::__private::CallOutcome,
    ) {}
}
const _: () = ::core::assert!(
    < pb::echo_service_intercept::Unary as ::tonic_intercept::__private::Rpc >
    ::DESCRIPTOR.policy.roles.is_empty(),
    "`Unary` requires roles in its .proto options; enforce them with `roles(Unary)` (the verifier's identity must implement `tonic_intercept::Roles`)"
);
const _: () = ::core::assert!(
    < pb::echo_service_intercept::ServerStream as ::tonic_intercept::__private::Rpc >
    ::DESCRIPTOR.policy.roles.is_empty() || ::tonic_intercept::__private::same_roles(<
    pb::echo_service_intercept::ServerStream as ::tonic_intercept::__private::Rpc >
    ::DESCRIPTOR.policy.roles, & ["admin"]),
    "the roles of `ServerStream` here differ from the `roles` its .proto declares; make them the same, or write `roles(ServerStream)` to take the .proto's"
);
const _: () = ::core::assert!(
    ! < pb::echo_service_intercept::ServerStream as ::tonic_intercept::__private::Rpc >
    ::DESCRIPTOR.policy.public,
    "`ServerStream` is public in its .proto options, so it has no identity whose roles `roles(..)` could check"
);
const _: () = ::core::assert!(
    ! < pb::echo_service_intercept::ServerStream as ::tonic_intercept::__private::Rpc >
    ::DESCRIPTOR.policy.declares_limits(),
    "`ServerStream` declares limits in its .proto options; name it in `limit(ServerStream)` so that #[intercept] enforces them"
);
/// The observers and hooks of `ClientStream`, in the order they run.
#[doc(hidden)]
#[derive(Clone)]
pub struct __EchoEchoServiceClientStreamHooks(
    ::tonic_intercept::__private::ServiceMetrics<pb::echo_service_intercept::Service>,
);
#[automatically_derived]
impl ::tonic_intercept::__private::Hooks<pb::echo_service_intercept::ClientStream>
for __EchoEchoServiceClientStreamHooks {
    fn on_request(
        &self,
        call: &::tonic_intercept::__private::Call,
        message: &<pb::echo_service_intercept::ClientStream as ::tonic_intercept::__private::Rpc>::Request,
    ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
        <::tonic_intercept::__private::ServiceMetrics<
            pb::echo_service_intercept::Service,
        > as ::tonic_intercept::__private::Hook<
            pb::echo_service_intercept::ClientStream,
        >>::on_request(&self.0, call, message)?;
        ::core::result::Result::Ok(())
    }
    fn on_response(
        &self,
        call: &::tonic_intercept::__private::Call,
        message: &<pb::echo_service_intercept::ClientStream as ::tonic_intercept::__private::Rpc>::Response,
    ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
        <::tonic_intercept::__private::ServiceMetrics<
            pb::echo_service_intercept::Service,
        > as ::tonic_intercept::__private::Hook<
            pb::echo_service_intercept::ClientStream,
        >>::on_response(&self.0, call, message)?;
        ::core::result::Result::Ok(())
    }
    fn on_finish(
        &self,
        call: &::tonic_intercept::__private::Call,
        outcome: &::tonic_intercept::__private::CallOutcome,
    ) {
        <::tonic_intercept::__private::ServiceMetrics<
            pb::echo_service_intercept::Service,
        > as ::tonic_intercept::__private::Hook<
            pb::echo_service_intercept::ClientStream,
        >>::on_finish(&self.0, call, outcome);
    }
}
const _: () = ::core::assert!(
    < pb::echo_service_intercept::ClientStream as ::tonic_intercept::__private::Rpc >
    ::DESCRIPTOR.policy.roles.is_empty(),
    "`ClientStream` requires roles in its .proto options; enforce them with `roles(ClientStream)` (the verifier's identity must implement `tonic_intercept::Roles`)"
);
/// The observers and hooks of `Bidi`, in the order they run.
#[doc(hidden)]
#[derive(Clone)]
pub struct __EchoEchoServiceBidiHooks(::tonic_intercept::__private::TraceCalls);
#[automatically_derived]
impl ::tonic_intercept::__private::Hooks<pb::echo_service_intercept::Bidi>
for __EchoEchoServiceBidiHooks {
    fn on_request(
        &self,
        call: &::tonic_intercept::__private::Call,
        message: &<pb::echo_service_intercept::Bidi as ::tonic_intercept::__private::Rpc>::Request,
    ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
        <::tonic_intercept::__private::TraceCalls as ::tonic_intercept::__private::Hook<
            pb::echo_service_intercept::Bidi,
        >>::on_request(&self.0, call, message)?;
        ::core::result::Result::Ok(())
    }
    fn on_response(
        &self,
        call: &::tonic_intercept::__private::Call,
        message: &<pb::echo_service_intercept::Bidi as ::tonic_intercept::__private::Rpc>::Response,
    ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
        <::tonic_intercept::__private::TraceCalls as ::tonic_intercept::__private::Hook<
            pb::echo_service_intercept::Bidi,
        >>::on_response(&self.0, call, message)?;
        ::core::result::Result::Ok(())
    }
    fn on_finish(
        &self,
        call: &::tonic_intercept::__private::Call,
        outcome: &::tonic_intercept::__private::CallOutcome,
    ) {
        <::tonic_intercept::__private::TraceCalls as ::tonic_intercept::__private::Hook<
            pb::echo_service_intercept::Bidi,
        >>::on_finish(&self.0, call, outcome);
    }
}
const _: () = ::core::assert!(
    < pb::echo_service_intercept::Bidi as ::tonic_intercept::__private::Rpc >
    ::DESCRIPTOR.policy.roles.is_empty(),
    "`Bidi` requires roles in its .proto options; enforce them with `roles(Bidi)` (the verifier's identity must implement `tonic_intercept::Roles`)"
);
const _: () = {
    #[allow(clippy::unnecessary_cast)]
    const _: () = {
        const __TONIC_INTERCEPT_PROTO: ::core::option::Option<u64> = match <pb::echo_service_intercept::ClientStream as ::tonic_intercept::__private::Rpc>::DESCRIPTOR
            .policy
            .limits()
            .get_messages_per_second_in()
        {
            ::core::option::Option::Some(v) => {
                ::core::option::Option::Some(v.per_second as u64)
            }
            ::core::option::Option::None => ::core::option::Option::None,
        };
        const __TONIC_INTERCEPT_THIS: u64 = (RATE) as u64;
        if let ::core::option::Option::Some(proto) = __TONIC_INTERCEPT_PROTO {
            if proto != __TONIC_INTERCEPT_THIS {
                let (bytes, len) = ::tonic_intercept::__private::proto_disagreement::<
                    233usize,
                >(
                    [
                        "`messages_per_second_in` of `ClientStream` differs from its .proto options: the .proto says ",
                        ", this says ",
                        "; the .proto is the RPC's contract: remove `messages_per_second_in` here or make it equal",
                    ],
                    proto,
                    __TONIC_INTERCEPT_THIS,
                );
                match ::core::str::from_utf8(bytes.split_at(len).0) {
                    ::core::result::Result::Ok(message) => ::core::panic!("{}", message),
                    ::core::result::Result::Err(_) => {
                        ::core::panic!(
                            "`messages_per_second_in` of `ClientStream` differs from the value its .proto options declare"
                        )
                    }
                }
            }
        }
    };
};
#[diagnostic::do_not_recommend]
impl ::tonic_intercept::__private::Declared<
    <pb::echo_service_intercept::Unary as ::tonic_intercept::__private::Rpc>::Service,
> for Echo {
    const LIMITS: &'static [(
        &'static ::tonic_intercept::__private::RpcDescriptor,
        ::tonic_intercept::__private::Limits,
    )] = &[
        (
            &<pb::echo_service_intercept::Unary as ::tonic_intercept::__private::Rpc>::DESCRIPTOR,
            ::tonic_intercept::__private::Limits::new()
                .with_policy(
                    &<pb::echo_service_intercept::Unary as ::tonic_intercept::__private::Rpc>::DESCRIPTOR
                        .policy,
                ),
        ),
        (
            &<pb::echo_service_intercept::ServerStream as ::tonic_intercept::__private::Rpc>::DESCRIPTOR,
            ::tonic_intercept::__private::Limits::new()
                .with_policy(
                    &<pb::echo_service_intercept::ServerStream as ::tonic_intercept::__private::Rpc>::DESCRIPTOR
                        .policy,
                ),
        ),
        (
            &<pb::echo_service_intercept::ClientStream as ::tonic_intercept::__private::Rpc>::DESCRIPTOR,
            ::tonic_intercept::__private::Limits::new()
                .messages_per_second_in(
                    {
                        const __TONIC_INTERCEPT_LIMIT: u32 = RATE;
                        const _: () = ::core::assert!(
                            __TONIC_INTERCEPT_LIMIT > 0,
                            "`messages_per_second_in` must be at least 1: a limit of zero would refuse everything; to leave it unlimited, remove the key"
                        );
                        __TONIC_INTERCEPT_LIMIT
                    },
                    3,
                    ::tonic_intercept::__private::OnRateExceeded::Reject,
                )
                .with_policy(
                    &<pb::echo_service_intercept::ClientStream as ::tonic_intercept::__private::Rpc>::DESCRIPTOR
                        .policy,
                ),
        ),
        (
            &<pb::echo_service_intercept::Bidi as ::tonic_intercept::__private::Rpc>::DESCRIPTOR,
            ::tonic_intercept::__private::Limits::new()
                .with_policy(
                    &<pb::echo_service_intercept::Bidi as ::tonic_intercept::__private::Rpc>::DESCRIPTOR
                        .policy,
                ),
        ),
    ];
}
