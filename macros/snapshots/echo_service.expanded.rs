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
            __EchoEchoServiceUnaryHooks(::core::clone::Clone::clone(&self.recorder)),
            false,
        );
        let __ti_outcome = ::tonic_intercept::__private::run(
                __ti_guard.span(),
                false,
                async {
                    let mut __ti_request = __ti_request;
                    if let ::core::result::Result::Err(__ti_status) = <Recorder as ::tonic_intercept::__private::Hook<
                        pb::echo_service_intercept::Unary,
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
                    if let ::core::result::Result::Err(__ti_error) = __ti_guard
                        .admit_request(__ti_request.get_ref())
                    {
                        return ::core::result::Result::Err(
                            __ti_guard.reject(__ti_error),
                        );
                    }
                    __ti_guard
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
    type ServerStreamStream = ::tonic_intercept::__private::Outbound<
        pb::echo_service_intercept::ServerStream,
        ReceiverStream<Result<EchoReply, Status>>,
        (),
    >;
    async fn server_stream(
        &self,
        __ti_request: Request<StreamRequest>,
    ) -> ::core::result::Result<
        ::tonic_intercept::__private::Response<Self::ServerStreamStream>,
        ::tonic_intercept::__private::Status,
    > {
        let mut __ti_guard = ::tonic_intercept::__private::Guard::<
            pb::echo_service_intercept::ServerStream,
            (),
        >::new(
            &__ti_request,
            const {
                <Self as ::tonic_intercept::__private::Declared<
                    <pb::echo_service_intercept::ServerStream as ::tonic_intercept::__private::Rpc>::Service,
                >>::LIMITS[1]
                    .1
            },
            (),
            false,
        );
        let __ti_outcome = ::tonic_intercept::__private::run(
                __ti_guard.span(),
                false,
                async {
                    let mut __ti_request = __ti_request;
                    if !<pb::echo_service_intercept::ServerStream as ::tonic_intercept::__private::Rpc>::DESCRIPTOR
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
                    if let ::core::result::Result::Err(__ti_error) = __ti_guard
                        .admit_request(__ti_request.get_ref())
                    {
                        return ::core::result::Result::Err(
                            __ti_guard.reject(__ti_error),
                        );
                    }
                    __ti_guard
                        .server_streaming(async move {
                            let request = __ti_request;
                            let __ti_ret: Result<
                                Response<ReceiverStream<Result<EchoReply, Status>>>,
                                Status,
                            > = {
                                let (_tx, rx) = tokio::sync::mpsc::channel(1);
                                Ok(Response::new(ReceiverStream::new(rx)))
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
            },
            __EchoEchoServiceClientStreamHooks(
                ::core::clone::Clone::clone(&self.recorder),
            ),
            false,
        );
        let __ti_outcome = ::tonic_intercept::__private::run(
                __ti_guard.span(),
                false,
                async {
                    let mut __ti_request = __ti_request;
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
                    if let ::core::result::Result::Err(__ti_status) = <Recorder as ::tonic_intercept::__private::Hook<
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
                    let __ti_request = __ti_guard.inbound(__ti_request);
                    __ti_guard
                        .client_streaming(async move {
                            let request = __ti_request;
                            let __ti_ret: Result<Response<Summary>, Status> = {
                                let mut requests = request.into_inner();
                                let mut received = 0;
                                while let Some(_) = requests.message().await? {
                                    received += 1;
                                }
                                Ok(Response::new(Summary { received, texts: vec![] }))
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
        (),
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
            (),
        >::new(
            &__ti_request,
            const {
                <Self as ::tonic_intercept::__private::Declared<
                    <pb::echo_service_intercept::Bidi as ::tonic_intercept::__private::Rpc>::Service,
                >>::LIMITS[3]
                    .1
            },
            (),
            false,
        );
        let __ti_outcome = ::tonic_intercept::__private::run(
                __ti_guard.span(),
                false,
                async {
                    let mut __ti_request = __ti_request;
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
pub struct __EchoEchoServiceUnaryHooks(Recorder);
#[automatically_derived]
impl ::tonic_intercept::__private::Hooks<pb::echo_service_intercept::Unary>
for __EchoEchoServiceUnaryHooks {
    fn on_request(
        &self,
        call: &::tonic_intercept::__private::Call,
        message: &<pb::echo_service_intercept::Unary as ::tonic_intercept::__private::Rpc>::Request,
    ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
        <Recorder as ::tonic_intercept::__private::Hook<
            pb::echo_service_intercept::Unary,
        >>::on_request(&self.0, call, message)?;
        ::core::result::Result::Ok(())
    }
    fn on_response(
        &self,
        call: &::tonic_intercept::__private::Call,
        message: &<pb::echo_service_intercept::Unary as ::tonic_intercept::__private::Rpc>::Response,
    ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
        <Recorder as ::tonic_intercept::__private::Hook<
            pb::echo_service_intercept::Unary,
        >>::on_response(&self.0, call, message)?;
        ::core::result::Result::Ok(())
    }
    fn on_finish(
        &self,
        call: &::tonic_intercept::__private::Call,
        outcome: &::tonic_intercept::__private::CallOutcome,
    ) {
        <Recorder as ::tonic_intercept::__private::Hook<
            pb::echo_service_intercept::Unary,
        >>::on_finish(&self.0, call, outcome);
    }
}
const _: () = ::core::assert!(
    < pb::echo_service_intercept::Unary as ::tonic_intercept::__private::Rpc >
    ::DESCRIPTOR.policy.roles.is_empty(),
    "`Unary` requires roles in its .proto options; enforce them with `roles(Unary)` (the verifier's identity must implement `tonic_intercept::Roles`)"
);
const _: () = ::core::assert!(
    < pb::echo_service_intercept::ServerStream as ::tonic_intercept::__private::Rpc >
    ::DESCRIPTOR.policy.roles.is_empty(),
    "`ServerStream` requires roles in its .proto options; enforce them with `roles(ServerStream)` (the verifier's identity must implement `tonic_intercept::Roles`)"
);
/// The observers and hooks of `ClientStream`, in the order they run.
#[doc(hidden)]
#[derive(Clone)]
pub struct __EchoEchoServiceClientStreamHooks(Recorder);
#[automatically_derived]
impl ::tonic_intercept::__private::Hooks<pb::echo_service_intercept::ClientStream>
for __EchoEchoServiceClientStreamHooks {
    fn on_request(
        &self,
        call: &::tonic_intercept::__private::Call,
        message: &<pb::echo_service_intercept::ClientStream as ::tonic_intercept::__private::Rpc>::Request,
    ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
        <Recorder as ::tonic_intercept::__private::Hook<
            pb::echo_service_intercept::ClientStream,
        >>::on_request(&self.0, call, message)?;
        ::core::result::Result::Ok(())
    }
    fn on_response(
        &self,
        call: &::tonic_intercept::__private::Call,
        message: &<pb::echo_service_intercept::ClientStream as ::tonic_intercept::__private::Rpc>::Response,
    ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
        <Recorder as ::tonic_intercept::__private::Hook<
            pb::echo_service_intercept::ClientStream,
        >>::on_response(&self.0, call, message)?;
        ::core::result::Result::Ok(())
    }
    fn on_finish(
        &self,
        call: &::tonic_intercept::__private::Call,
        outcome: &::tonic_intercept::__private::CallOutcome,
    ) {
        <Recorder as ::tonic_intercept::__private::Hook<
            pb::echo_service_intercept::ClientStream,
        >>::on_finish(&self.0, call, outcome);
    }
}
const _: () = ::core::assert!(
    < pb::echo_service_intercept::ClientStream as ::tonic_intercept::__private::Rpc >
    ::DESCRIPTOR.policy.roles.is_empty(),
    "`ClientStream` requires roles in its .proto options; enforce them with `roles(ClientStream)` (the verifier's identity must implement `tonic_intercept::Roles`)"
);
const _: () = ::core::assert!(
    < pb::echo_service_intercept::Bidi as ::tonic_intercept::__private::Rpc >
    ::DESCRIPTOR.policy.roles.is_empty(),
    "`Bidi` requires roles in its .proto options; enforce them with `roles(Bidi)` (the verifier's identity must implement `tonic_intercept::Roles`)"
);
const _: () = {
    #[allow(clippy::unnecessary_cast)]
    const _: () = {
        const __TONIC_INTERCEPT_PROTO: ::core::option::Option<u64> = match <pb::echo_service_intercept::ServerStream as ::tonic_intercept::__private::Rpc>::DESCRIPTOR
            .policy
            .limits()
            .get_max_messages_out()
        {
            ::core::option::Option::Some(v) => ::core::option::Option::Some(v as u64),
            ::core::option::Option::None => ::core::option::Option::None,
        };
        const __TONIC_INTERCEPT_THIS: u64 = (5) as u64;
        if let ::core::option::Option::Some(proto) = __TONIC_INTERCEPT_PROTO {
            if proto != __TONIC_INTERCEPT_THIS {
                let (bytes, len) = ::tonic_intercept::__private::proto_disagreement::<
                    221usize,
                >(
                    [
                        "`max_messages_out` of `ServerStream` differs from its .proto options: the .proto says ",
                        ", this says ",
                        "; the .proto is the RPC's contract: remove `max_messages_out` here or make it equal",
                    ],
                    proto,
                    __TONIC_INTERCEPT_THIS,
                );
                match ::core::str::from_utf8(bytes.split_at(len).0) {
                    ::core::result::Result::Ok(message) => ::core::panic!("{}", message),
                    ::core::result::Result::Err(_) => {
                        ::core::panic!(
                            "`max_messages_out` of `ServerStream` differs from the value its .proto options declare"
                        )
                    }
                }
            }
        }
    };
    #[allow(clippy::unnecessary_cast)]
    const _: () = {
        const __TONIC_INTERCEPT_PROTO: ::core::option::Option<u64> = match <pb::echo_service_intercept::ServerStream as ::tonic_intercept::__private::Rpc>::DESCRIPTOR
            .policy
            .limits()
            .get_messages_per_second_out()
        {
            ::core::option::Option::Some(v) => {
                ::core::option::Option::Some(v.per_second as u64)
            }
            ::core::option::Option::None => ::core::option::Option::None,
        };
        const __TONIC_INTERCEPT_THIS: u64 = (100) as u64;
        if let ::core::option::Option::Some(proto) = __TONIC_INTERCEPT_PROTO {
            if proto != __TONIC_INTERCEPT_THIS {
                let (bytes, len) = ::tonic_intercept::__private::proto_disagreement::<
                    235usize,
                >(
                    [
                        "`messages_per_second_out` of `ServerStream` differs from its .proto options: the .proto says ",
                        ", this says ",
                        "; the .proto is the RPC's contract: remove `messages_per_second_out` here or make it equal",
                    ],
                    proto,
                    __TONIC_INTERCEPT_THIS,
                );
                match ::core::str::from_utf8(bytes.split_at(len).0) {
                    ::core::result::Result::Ok(message) => ::core::panic!("{}", message),
                    ::core::result::Result::Err(_) => {
                        ::core::panic!(
                            "`messages_per_second_out` of `ServerStream` differs from the value its .proto options declare"
                        )
                    }
                }
            }
        }
    };
    #[allow(clippy::unnecessary_cast)]
    const _: () = {
        const __TONIC_INTERCEPT_PROTO: ::core::option::Option<u64> = match <pb::echo_service_intercept::ClientStream as ::tonic_intercept::__private::Rpc>::DESCRIPTOR
            .policy
            .limits()
            .get_max_messages_in()
        {
            ::core::option::Option::Some(v) => ::core::option::Option::Some(v as u64),
            ::core::option::Option::None => ::core::option::Option::None,
        };
        const __TONIC_INTERCEPT_THIS: u64 = (3) as u64;
        if let ::core::option::Option::Some(proto) = __TONIC_INTERCEPT_PROTO {
            if proto != __TONIC_INTERCEPT_THIS {
                let (bytes, len) = ::tonic_intercept::__private::proto_disagreement::<
                    219usize,
                >(
                    [
                        "`max_messages_in` of `ClientStream` differs from its .proto options: the .proto says ",
                        ", this says ",
                        "; the .proto is the RPC's contract: remove `max_messages_in` here or make it equal",
                    ],
                    proto,
                    __TONIC_INTERCEPT_THIS,
                );
                match ::core::str::from_utf8(bytes.split_at(len).0) {
                    ::core::result::Result::Ok(message) => ::core::panic!("{}", message),
                    ::core::result::Result::Err(_) => {
                        ::core::panic!(
                            "`max_messages_in` of `ClientStream` differs from the value its .proto options declare"
                        )
                    }
                }
            }
        }
    };
    #[allow(clippy::unnecessary_cast)]
    const _: () = {
        const __TONIC_INTERCEPT_PROTO: ::core::option::Option<u64> = match <pb::echo_service_intercept::ClientStream as ::tonic_intercept::__private::Rpc>::DESCRIPTOR
            .policy
            .limits()
            .get_max_message_bytes()
        {
            ::core::option::Option::Some(v) => ::core::option::Option::Some(v as u64),
            ::core::option::Option::None => ::core::option::Option::None,
        };
        const __TONIC_INTERCEPT_THIS: u64 = (64) as u64;
        if let ::core::option::Option::Some(proto) = __TONIC_INTERCEPT_PROTO {
            if proto != __TONIC_INTERCEPT_THIS {
                let (bytes, len) = ::tonic_intercept::__private::proto_disagreement::<
                    223usize,
                >(
                    [
                        "`max_message_bytes` of `ClientStream` differs from its .proto options: the .proto says ",
                        ", this says ",
                        "; the .proto is the RPC's contract: remove `max_message_bytes` here or make it equal",
                    ],
                    proto,
                    __TONIC_INTERCEPT_THIS,
                );
                match ::core::str::from_utf8(bytes.split_at(len).0) {
                    ::core::result::Result::Ok(message) => ::core::panic!("{}", message),
                    ::core::result::Result::Err(_) => {
                        ::core::panic!(
                            "`max_message_bytes` of `ClientStream` differs from the value its .proto options declare"
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
                .timeout(::tonic_intercept::__private::Duration::from_millis(2000))
                .with_policy(
                    &<pb::echo_service_intercept::Unary as ::tonic_intercept::__private::Rpc>::DESCRIPTOR
                        .policy,
                ),
        ),
        (
            &<pb::echo_service_intercept::ServerStream as ::tonic_intercept::__private::Rpc>::DESCRIPTOR,
            ::tonic_intercept::__private::Limits::new()
                .max_messages_out(5)
                .messages_per_second_out(
                    100,
                    10,
                    ::tonic_intercept::__private::OnRateExceeded::Delay,
                )
                .timeout(::tonic_intercept::__private::Duration::from_millis(2000))
                .with_policy(
                    &<pb::echo_service_intercept::ServerStream as ::tonic_intercept::__private::Rpc>::DESCRIPTOR
                        .policy,
                ),
        ),
        (
            &<pb::echo_service_intercept::ClientStream as ::tonic_intercept::__private::Rpc>::DESCRIPTOR,
            ::tonic_intercept::__private::Limits::new()
                .max_messages_in(3)
                .max_message_bytes(64)
                .timeout(::tonic_intercept::__private::Duration::from_millis(2000))
                .with_policy(
                    &<pb::echo_service_intercept::ClientStream as ::tonic_intercept::__private::Rpc>::DESCRIPTOR
                        .policy,
                ),
        ),
        (
            &<pb::echo_service_intercept::Bidi as ::tonic_intercept::__private::Rpc>::DESCRIPTOR,
            ::tonic_intercept::__private::Limits::new()
                .timeout(::tonic_intercept::__private::Duration::from_millis(2000))
                .with_policy(
                    &<pb::echo_service_intercept::Bidi as ::tonic_intercept::__private::Rpc>::DESCRIPTOR
                        .policy,
                ),
        ),
    ];
}
