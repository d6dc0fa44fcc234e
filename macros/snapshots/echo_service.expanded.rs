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
            ::tonic_intercept::Limits::new()
                .timeout(::tonic_intercept::__private::Duration::from_millis(2000)),
            true,
            __EchoEchoServiceUnaryHooks(::core::clone::Clone::clone(&self.recorder)),
        );
        if let ::core::result::Result::Err(__ti_status) = <Recorder as ::tonic_intercept::Hook<
            pb::echo_service_intercept::Unary,
        >>::on_call(&__ti_guard.hooks().0, __ti_guard.call(), __ti_request.metadata())
            .await
        {
            return ::core::result::Result::Err(__ti_guard.reject(__ti_status));
        }
        if let ::core::result::Result::Err(__ti_status) = __ti_guard
            .admit_request(__ti_request.get_ref())
        {
            return ::core::result::Result::Err(__ti_guard.reject(__ti_status));
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
    }
    type ServerStreamStream = ::tonic_intercept::Outbound<
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
            ::tonic_intercept::Limits::new()
                .max_messages_out(5)
                .messages_per_second_out(
                    100,
                    10,
                    ::tonic_intercept::OnRateExceeded::Delay,
                )
                .timeout(::tonic_intercept::__private::Duration::from_millis(2000)),
            true,
            (),
        );
        let mut __ti_request = __ti_request;
        match ::tonic_intercept::Authenticate::authenticate(
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
                return ::core::result::Result::Err(__ti_guard.reject(__ti_status));
            }
        }
        if let ::core::result::Result::Err(__ti_status) = __ti_guard
            .admit_request(__ti_request.get_ref())
        {
            return ::core::result::Result::Err(__ti_guard.reject(__ti_status));
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
            ::tonic_intercept::Limits::new()
                .max_messages_in(3)
                .max_message_bytes(64)
                .timeout(::tonic_intercept::__private::Duration::from_millis(2000)),
            true,
            __EchoEchoServiceClientStreamHooks(
                ::core::clone::Clone::clone(&self.recorder),
            ),
        );
        let mut __ti_request = __ti_request;
        match ::tonic_intercept::Authenticate::authenticate(
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
                return ::core::result::Result::Err(__ti_guard.reject(__ti_status));
            }
        }
        if let ::core::result::Result::Err(__ti_status) = <Recorder as ::tonic_intercept::Hook<
            pb::echo_service_intercept::ClientStream,
        >>::on_call(&__ti_guard.hooks().0, __ti_guard.call(), __ti_request.metadata())
            .await
        {
            return ::core::result::Result::Err(__ti_guard.reject(__ti_status));
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
    }
    type BidiStream = ::tonic_intercept::Outbound<
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
        let __ti_guard = ::tonic_intercept::__private::Guard::<
            pb::echo_service_intercept::Bidi,
            (),
        >::new(
            &__ti_request,
            ::tonic_intercept::Limits::new()
                .timeout(::tonic_intercept::__private::Duration::from_millis(2000)),
            true,
            (),
        );
        let mut __ti_request = __ti_request;
        match ::tonic_intercept::Authenticate::authenticate(
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
                return ::core::result::Result::Err(__ti_guard.reject(__ti_status));
            }
        }
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
    }
}
/// The hooks of `Unary`, in declared order.
#[doc(hidden)]
#[derive(Clone)]
pub struct __EchoEchoServiceUnaryHooks(Recorder);
#[automatically_derived]
impl ::tonic_intercept::Hooks<pb::echo_service_intercept::Unary>
for __EchoEchoServiceUnaryHooks {
    fn on_request(
        &self,
        call: &::tonic_intercept::Call,
        message: &<pb::echo_service_intercept::Unary as ::tonic_intercept::Rpc>::Request,
    ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
        <Recorder as ::tonic_intercept::Hook<
            pb::echo_service_intercept::Unary,
        >>::on_request(&self.0, call, message)?;
        ::core::result::Result::Ok(())
    }
    fn on_response(
        &self,
        call: &::tonic_intercept::Call,
        message: &<pb::echo_service_intercept::Unary as ::tonic_intercept::Rpc>::Response,
    ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
        <Recorder as ::tonic_intercept::Hook<
            pb::echo_service_intercept::Unary,
        >>::on_response(&self.0, call, message)?;
        ::core::result::Result::Ok(())
    }
    fn on_finish(
        &self,
        call: &::tonic_intercept::Call,
        outcome: &::tonic_intercept::Outcome,
    ) {
        <Recorder as ::tonic_intercept::Hook<
            pb::echo_service_intercept::Unary,
        >>::on_finish(&self.0, call, outcome);
    }
}
/// The hooks of `ClientStream`, in declared order.
#[doc(hidden)]
#[derive(Clone)]
pub struct __EchoEchoServiceClientStreamHooks(Recorder);
#[automatically_derived]
impl ::tonic_intercept::Hooks<pb::echo_service_intercept::ClientStream>
for __EchoEchoServiceClientStreamHooks {
    fn on_request(
        &self,
        call: &::tonic_intercept::Call,
        message: &<pb::echo_service_intercept::ClientStream as ::tonic_intercept::Rpc>::Request,
    ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
        <Recorder as ::tonic_intercept::Hook<
            pb::echo_service_intercept::ClientStream,
        >>::on_request(&self.0, call, message)?;
        ::core::result::Result::Ok(())
    }
    fn on_response(
        &self,
        call: &::tonic_intercept::Call,
        message: &<pb::echo_service_intercept::ClientStream as ::tonic_intercept::Rpc>::Response,
    ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
        <Recorder as ::tonic_intercept::Hook<
            pb::echo_service_intercept::ClientStream,
        >>::on_response(&self.0, call, message)?;
        ::core::result::Result::Ok(())
    }
    fn on_finish(
        &self,
        call: &::tonic_intercept::Call,
        outcome: &::tonic_intercept::Outcome,
    ) {
        <Recorder as ::tonic_intercept::Hook<
            pb::echo_service_intercept::ClientStream,
        >>::on_finish(&self.0, call, outcome);
    }
}
