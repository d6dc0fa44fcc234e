//! One client call from start to end: outgoing metadata, the deadline, attempts,
//! retries, and the report of its end.

use std::sync::Arc;

use tokio::time::Instant;
use tonic::client::Grpc;
use tonic::codegen::http::HeaderMap;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::{Body, Bytes, StdError};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Extensions, GrpcMethod, Request, Response, Status};
use tonic_prost::ProstCodec;

use crate::call::Incoming;
use crate::client::config::{ClientConfig, ClientHook};
use crate::client::head::{Head, ResponseHead};
use crate::client::policy::Settings;
use crate::client::retry::{
    BackoffStep, GiveUpReason, Pushback, RetryDecision, counts_as_failure, pushback,
};
use crate::client::stream::{AttemptStream, Responses, SendCounts, Sending, Tail};
use crate::rpc::{Rpc, RpcOf, Service};
use crate::util::{Jitter, new_request_id};
use crate::wire::{PREVIOUS_ATTEMPTS, REQUEST_ID_HEADER, TRACEPARENT_HEADER, grpc_timeout};

/// What a generated client holds: tonic's `Grpc` and the shared config.
///
/// The transport is wrapped in `Head`, which marks each response whose head was not gRPC
/// Response-Headers, gRFC A6's commit point.
pub struct ClientCore<S: Service, T, H> {
    grpc: Grpc<Head<T>>,
    config: Arc<ClientConfig<S, H>>,
}

impl<S: Service, T: Clone, H> Clone for ClientCore<S, T, H> {
    fn clone(&self) -> Self {
        Self {
            grpc: self.grpc.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: Service, T: std::fmt::Debug, H> std::fmt::Debug for ClientCore<S, T, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("service", &S::NAME)
            .field("grpc", &self.grpc)
            .field("config", &self.config)
            .finish()
    }
}

/// What a generated client sends its calls through: a tonic `Channel`, or any
/// `GrpcService` tonic's own generated clients accept.
pub trait Transport:
    tonic::client::GrpcService<
        tonic::body::Body,
        Error: Into<StdError>,
        ResponseBody: Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
    >
{
}

impl<T> Transport for T
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
}

impl<S, T, H> ClientCore<S, T, H>
where
    S: Service,
    H: Send + Sync + 'static,
    T: Transport,
{
    /// A client sending through `inner` (a tonic `Channel`, say) with `config`.
    pub fn new(inner: T, config: ClientConfig<S, H>) -> Self {
        Self {
            grpc: Grpc::new(Head::new(inner)),
            config: Arc::new(config),
        }
    }

    /// [`new`](Self::new) with the URI authority and scheme every request gets.
    pub fn with_origin(
        inner: T,
        origin: tonic::codegen::http::Uri,
        config: ClientConfig<S, H>,
    ) -> Self {
        Self {
            grpc: Grpc::with_origin(Head::new(inner), origin),
            config: Arc::new(config),
        }
    }

    /// The config every call applies.
    pub fn config(&self) -> &ClientConfig<S, H> {
        &self.config
    }

    /// Changes tonic's `Grpc` (compression, message size limits) for every later call.
    pub fn map_grpc(mut self, f: impl FnOnce(Grpc<Head<T>>) -> Grpc<Head<T>>) -> Self {
        self.grpc = f(self.grpc);
        self
    }

    /// A unary call of `R`, with retries, deadline, metadata, hooks and metrics; committed
    /// (no more retries) when the response headers arrive (gRFC A6).
    pub async fn unary<R>(
        &mut self,
        request: Request<R::Request>,
    ) -> Result<Response<R::Response>, Status>
    where
        R: RpcOf<S>,
        R::Request: Clone + Sync,
        R::Response: Sync + Default,
        H: ClientHook<R>,
    {
        let mut call = Attempts::<R, H>::start(&self.config, request.metadata());
        let (metadata, _, message) = request.into_parts();
        let result = async {
            let metadata = call.outgoing(metadata).await?;
            call.send(&message)?;
            let mut original = Some((metadata, message));
            loop {
                let (metadata, message) = call.next_payload(&mut original);
                let request = call.request(metadata, message);
                let grpc = &mut self.grpc;
                let mut committed = false;
                let headers = &mut committed;
                // tonic's `Grpc::unary` is `server_streaming` followed by reading the one
                // message: the same on the wire, with the response head seen in between.
                let attempt = async move {
                    ready(grpc).await?;
                    let response = grpc
                        .server_streaming(request, path::<R>(), ProstCodec::default())
                        .await?;
                    *headers = ResponseHead::committed(&response);
                    single(response).await
                };
                let result = call.attempt(attempt).await;
                match result {
                    Ok(response) => {
                        call.receive(response.get_ref())?;
                        return Ok(response);
                    }
                    Err(status) => call.retry_or_give_up(status, committed).await?,
                }
            }
        }
        .await;
        call.end(result)
    }

    /// A server-streaming call of `R`: committed (no more retries) when the response
    /// headers arrive (gRFC A6).
    pub async fn server_streaming<R>(
        &mut self,
        request: Request<R::Request>,
    ) -> Result<Response<Responses<R, H>>, Status>
    where
        R: RpcOf<S>,
        R::Request: Clone + Sync,
        R::Response: Sync + Default,
        H: ClientHook<R>,
    {
        let mut call = Attempts::<R, H>::start(&self.config, request.metadata());
        let (metadata, _, message) = request.into_parts();
        let result = async {
            let metadata = call.outgoing(metadata).await?;
            call.send(&message)?;
            let mut original = Some((metadata, message));
            loop {
                let (metadata, message) = call.next_payload(&mut original);
                let request = call.request(metadata, message);
                let grpc = &mut self.grpc;
                let attempt = async move {
                    ready(grpc).await?;
                    let response = grpc
                        .server_streaming(request, path::<R>(), ProstCodec::default())
                        .await?;
                    uncommitted_failure(response).await
                };
                match call.attempt(attempt).await {
                    Ok(committed) => return Ok(committed),
                    Err(status) => call.retry_or_give_up(status, false).await?,
                }
            }
        }
        .await;
        match result {
            Ok((response, first)) => Ok(call.stream(response, first)),
            Err(status) => call.end(Err(status)),
        }
    }

    /// A client-streaming call of `R`: the request stream is replayed on a retry from a
    /// bounded buffer; committed (no more retries) when the response headers arrive or
    /// the stream outgrows the buffer (gRFC A6).
    pub async fn client_streaming<R, St>(
        &mut self,
        request: Request<St>,
    ) -> Result<Response<R::Response>, Status>
    where
        R: RpcOf<S>,
        R::Request: Clone + Sync,
        R::Response: Sync + Default,
        H: ClientHook<R>,
        St: tokio_stream::Stream<Item = R::Request> + Send + 'static,
    {
        let mut call = Attempts::<R, H>::start(&self.config, request.metadata());
        let (metadata, _, source) = request.into_parts();
        let result = async {
            let metadata = call.outgoing(metadata).await?;
            let sending =
                Sending::<R, St, H>::new(source, &self.config, call.settings, call.counts.clone());
            loop {
                let request = call.streamed_request(&metadata, &sending);
                let grpc = &mut self.grpc;
                let mut committed = false;
                let headers = &mut committed;
                // tonic's `Grpc::client_streaming` is `streaming` followed by reading the
                // one message: the same on the wire, with the response head seen between.
                let attempt = async move {
                    ready(grpc).await?;
                    let response = grpc
                        .streaming(request, path::<R>(), ProstCodec::default())
                        .await?;
                    *headers = ResponseHead::committed(&response);
                    single(response).await
                };
                let result = call.attempt(call.counts.or_violation(attempt)).await;
                match result {
                    Ok(response) => {
                        call.receive(response.get_ref())?;
                        return Ok(response);
                    }
                    Err(status) => call.retry_sent(status, committed, &sending).await?,
                }
            }
        }
        .await;
        call.end(result)
    }

    /// A bidi call of `R`: committed (no more retries) when the response headers arrive
    /// (gRFC A6).
    pub async fn bidi<R, St>(
        &mut self,
        request: Request<St>,
    ) -> Result<Response<Responses<R, H>>, Status>
    where
        R: RpcOf<S>,
        R::Request: Clone + Sync,
        R::Response: Sync + Default,
        H: ClientHook<R>,
        St: tokio_stream::Stream<Item = R::Request> + Send + 'static,
    {
        let mut call = Attempts::<R, H>::start(&self.config, request.metadata());
        let (metadata, _, source) = request.into_parts();
        let result = async {
            let metadata = call.outgoing(metadata).await?;
            let sending =
                Sending::<R, St, H>::new(source, &self.config, call.settings, call.counts.clone());
            loop {
                let request = call.streamed_request(&metadata, &sending);
                let grpc = &mut self.grpc;
                let attempt = async move {
                    ready(grpc).await?;
                    let response = grpc
                        .streaming(request, path::<R>(), ProstCodec::default())
                        .await?;
                    uncommitted_failure(response).await
                };
                match call.attempt(call.counts.or_violation(attempt)).await {
                    Ok(committed) => return Ok(committed),
                    Err(status) => call.retry_sent(status, false, &sending).await?,
                }
            }
        }
        .await;
        match result {
            Ok((response, first)) => Ok(call.stream(response, first)),
            Err(status) => call.end(Err(status)),
        }
    }
}

/// The one message of a unary or client-streaming response, then its trailers: what
/// tonic's `Grpc::client_streaming` does after `streaming`, to the letter.
async fn single<M>(response: Response<tonic::Streaming<M>>) -> Result<Response<M>, Status> {
    let (mut parts, mut body, extensions) = response.into_parts();
    let message = body
        .message()
        .await
        .map_err(|mut status| {
            merge(status.metadata_mut(), parts.clone());
            status
        })?
        .ok_or_else(|| Status::internal("Missing response message."))?;
    if let Some(trailers) = body.trailers().await? {
        merge(&mut parts, trailers);
    }
    Ok(Response::from_parts(parts, message, extensions))
}

/// tonic's `MetadataMap::merge` (crate-private there): `from`'s entries added to `into`'s.
fn merge(into: &mut MetadataMap, from: MetadataMap) {
    let headers: &mut HeaderMap = into.as_mut();
    headers.extend(from.into_headers());
}

/// A response stream whose head arrived: committed when the head was Response-Headers.
/// When it was not (a proxy's non-gRPC answer), its first item says how the attempt
/// failed, and a failure there is an uncommitted one, retried like a Trailers-Only
/// response; a message there (a server answering gRPC under another HTTP status)
/// commits it, and is handed to the application first.
async fn uncommitted_failure<M>(
    mut response: Response<tonic::Streaming<M>>,
) -> Result<(Response<tonic::Streaming<M>>, Option<Option<M>>), Status> {
    if ResponseHead::committed(&response) {
        return Ok((response, None));
    }
    let first = response.get_mut().message().await?;
    Ok((response, Some(first)))
}

async fn ready<T: Transport>(grpc: &mut Grpc<T>) -> Result<(), Status> {
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("service was not ready: {}", e.into())))
}

fn path<R: Rpc>() -> PathAndQuery {
    PathAndQuery::from_static(R::DESCRIPTOR.path)
}

/// The state of one call across its attempts.
pub(crate) struct Attempts<'c, R: Rpc, H> {
    config: &'c Arc<ClientConfig<R::Service, H>>,
    pub(crate) settings: Settings,
    pub(crate) counts: Arc<SendCounts>,
    started: Instant,
    deadline: Option<Instant>,
    attempt: u32,
    gave_up: Option<GiveUpReason>,
    jitter: Option<Jitter>,
    backoff: BackoffStep,
}

impl<'c, R, H> Attempts<'c, R, H>
where
    R: Rpc,
    H: ClientHook<R>,
{
    fn start(config: &'c Arc<ClientConfig<R::Service, H>>, metadata: &MetadataMap) -> Self {
        let settings = config.settings_of::<R>();
        let started = Instant::now();
        // The earliest of: the request's own timeout, the RPC's default, the deadline of
        // the incoming call this one is made for.
        let own = grpc_timeout(metadata).or(settings.deadline);
        let incoming = Incoming::current().and_then(|incoming| incoming.deadline);
        let deadline = [own.map(|d| started + d), incoming]
            .into_iter()
            .flatten()
            .min();
        if let Some(metrics) = &config.metrics {
            metrics.started::<R>();
        }
        Self {
            config,
            settings,
            counts: Arc::new(SendCounts::default()),
            started,
            deadline,
            attempt: 1,
            gave_up: None,
            jitter: None,
            backoff: BackoffStep::default(),
        }
    }

    /// The call's metadata, once for all attempts: credentials, request id, trace parent.
    async fn outgoing(&self, mut metadata: MetadataMap) -> Result<MetadataMap, Status> {
        if let Some(credentials) = &self.config.credentials
            && !metadata.contains_key("authorization")
        {
            let header = match credentials.fresh() {
                Some(header) => header,
                None => credentials.fetch().await?,
            };
            metadata.insert("authorization", header);
        }
        let incoming = Incoming::current();
        let headers: &mut HeaderMap = metadata.as_mut();
        if self.config.request_ids && !headers.contains_key(&REQUEST_ID_HEADER) {
            let id = incoming
                .as_ref()
                .and_then(|incoming| incoming.request_id.clone())
                .unwrap_or_else(new_request_id);
            headers.insert(REQUEST_ID_HEADER.clone(), id);
        }
        if !headers.contains_key(&TRACEPARENT_HEADER)
            && let Some(traceparent) = crate::trace::outgoing_traceparent(incoming.as_ref())
        {
            headers.insert(TRACEPARENT_HEADER.clone(), traceparent);
        }
        Ok(metadata)
    }

    /// This attempt's request and message: clones while another attempt may follow, the
    /// originals for the last one.
    fn next_payload<M: Clone>(&self, original: &mut Option<(MetadataMap, M)>) -> (MetadataMap, M) {
        let more = self
            .settings
            .retry
            .is_some_and(|retry| self.attempt < retry.attempts());
        match (more, original.as_ref()) {
            (true, Some((metadata, message))) => (metadata.clone(), message.clone()),
            _ => original.take().expect("an attempt after the last one"),
        }
    }

    /// One attempt's request: the deadline left, the attempt count, tonic's method tag.
    fn request<M>(&self, metadata: MetadataMap, message: M) -> Request<M> {
        let mut extensions = Extensions::new();
        extensions.insert(GrpcMethod::new(R::DESCRIPTOR.service, R::DESCRIPTOR.method));
        let mut request = Request::from_parts(metadata, extensions, message);
        if let Some(deadline) = self.attempt_deadline() {
            request.set_timeout(deadline.saturating_duration_since(Instant::now()));
        }
        if self.attempt > 1 {
            request
                .metadata_mut()
                .insert(PREVIOUS_ATTEMPTS, MetadataValue::from(self.attempt - 1));
        }
        request
    }

    /// The next attempt of a streamed request: the replay, then the rest of the source.
    fn streamed_request<St>(
        &self,
        metadata: &MetadataMap,
        sending: &Sending<R, St, H>,
    ) -> Request<AttemptStream<R, St, H>>
    where
        R::Request: Clone,
        St: tokio_stream::Stream<Item = R::Request> + Send + 'static,
    {
        let mut request = self.request(metadata.clone(), sending.attempt());
        self.counts.arm(&mut request);
        request
    }

    /// The single request message through the limits and hooks, once for all attempts.
    fn send(&self, message: &R::Request) -> Result<(), Status> {
        self.counts
            .send::<R, H>(&self.config.hooks, &self.settings, message)
    }

    /// The single response message through the limits and hooks.
    fn receive(&self, message: &R::Response) -> Result<(), Status> {
        self.counts
            .receive::<R, H>(&self.config.hooks, &self.settings, message)
    }

    /// After a failed attempt of a streamed request: resets its stream, then retries
    /// unless the response headers arrived (`headers`) or what was sent can no longer be
    /// replayed.
    async fn retry_sent<St>(
        &mut self,
        status: Status,
        headers: bool,
        sending: &Sending<R, St, H>,
    ) -> Result<(), Status>
    where
        R::Request: Clone,
        St: tokio_stream::Stream<Item = R::Request> + Send + 'static,
    {
        self.counts.cancel_attempt();
        let committed = headers || self.counts.violated() || sending.committed();
        self.retry_or_give_up(status, committed).await
    }

    /// The earlier of the call's deadline and this attempt's timeout.
    fn attempt_deadline(&self) -> Option<Instant> {
        let per_attempt = self
            .settings
            .retry
            .and_then(|retry| retry.attempt_timeout())
            .map(|timeout| Instant::now() + timeout);
        [self.deadline, per_attempt].into_iter().flatten().min()
    }

    /// Runs one attempt until it ends or its deadline passes.
    async fn attempt<T>(
        &self,
        attempt: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let Some(at) = self.attempt_deadline() else {
            return attempt.await;
        };
        let expired = || match Some(at) == self.deadline {
            true => self.deadline_exceeded(),
            false => Status::deadline_exceeded(format!(
                "{}: attempt {} timed out",
                R::DESCRIPTOR.method,
                self.attempt
            )),
        };
        match tokio::time::timeout_at(at, attempt).await {
            // tonic's `Channel` runs its own timer for the `grpc-timeout` the attempt
            // carries, and reports its expiry as a local `CANCELLED` ("Timeout expired"),
            // often in the same timer tick as ours: that is this deadline too.
            Ok(Err(status)) if status.code() == Code::Cancelled && Instant::now() >= at => {
                Err(expired())
            }
            Ok(result) => result,
            Err(_) => Err(expired()),
        }
    }

    fn deadline_exceeded(&self) -> Status {
        Status::deadline_exceeded(format!(
            "{}: deadline exceeded after {} attempt(s)",
            R::DESCRIPTOR.method,
            self.attempt
        ))
    }

    /// After a failed attempt: waits the backoff and returns `Ok` to try again, or
    /// returns the status the call ends with. `committed`: the response headers arrived
    /// (or more: see `RetryPolicy::decide`).
    async fn retry_or_give_up(&mut self, status: Status, committed: bool) -> Result<(), Status> {
        let Some(retry) = self.settings.retry else {
            // No retry policy, so no retryable code: only a pushback saying not to retry
            // counts against the throttle (see `counts_as_failure`).
            if counts_as_failure(None, status.code(), pushback(status.metadata())) {
                self.config.throttle.on_failure();
            }
            return Err(status);
        };
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return Err(self.give_up(GiveUpReason::Deadline, status));
        }
        let random = self.jitter.get_or_insert_with(Jitter::new).next_f64();
        match retry.decide(
            self.attempt,
            self.backoff.get(),
            &status,
            committed,
            &self.config.throttle,
            random,
        ) {
            RetryDecision::GiveUp(reason) => Err(self.give_up(reason, status)),
            RetryDecision::RetryAfter(wait) => {
                let pushed = matches!(pushback(status.metadata()), Pushback::RetryAfter(_));
                let resume = Instant::now() + wait;
                if self.deadline.is_some_and(|deadline| resume >= deadline) {
                    return Err(self.give_up(GiveUpReason::Deadline, status));
                }
                tracing::info!(
                    target: "tonic_intercept::client",
                    rpc = R::DESCRIPTOR.path,
                    attempt = self.attempt,
                    code = ?status.code(),
                    grpc.message = status.message(),
                    backoff_ms = wait.as_millis() as u64,
                    pushback = pushed,
                    "retrying"
                );
                if let Some(metrics) = &self.config.metrics {
                    metrics.retried::<R>();
                }
                tokio::time::sleep_until(resume).await;
                self.attempt += 1;
                self.backoff.advance(pushed);
                Ok(())
            }
        }
    }

    fn give_up(&mut self, reason: GiveUpReason, status: Status) -> Status {
        tracing::debug!(
            target: "tonic_intercept::client",
            rpc = R::DESCRIPTOR.path,
            attempts = self.attempt,
            code = ?status.code(),
            %reason,
            "not retrying"
        );
        if let Some(metrics) = &self.config.metrics {
            metrics.gave_up::<R>(reason);
        }
        self.gave_up = Some(reason);
        if reason == GiveUpReason::Deadline {
            return self.deadline_exceeded();
        }
        status
    }

    /// Ends a call that returns a single response.
    fn end<T>(&self, result: Result<T, Status>) -> Result<T, Status> {
        let code = match &result {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        };
        self.tail().finish(code);
        result
    }

    fn tail(&self) -> Tail<R, H> {
        Tail {
            config: Arc::clone(self.config),
            counts: Arc::clone(&self.counts),
            started: self.started,
            attempts: self.attempt,
            gave_up: self.gave_up,
            settings: self.settings,
        }
    }

    /// Hands a committed streaming call to its response stream, which reports its end.
    fn stream(
        &self,
        response: Response<tonic::Streaming<R::Response>>,
        first: Option<Option<R::Response>>,
    ) -> Response<Responses<R, H>> {
        let deadline = self.deadline;
        let tail = self.tail();
        response.map(|inner| Responses::new(inner, first, deadline, tail))
    }
}
