//! The fault-injecting `flaky.v1.FlakyService`: each request's [`Fault`] decides how the
//! server answers, and the server counts and records every attempt, so client tests can
//! assert what was retried, when, and with which metadata.
//!
//! Attempts are counted per [`Fault::key`]: the first `fail_attempts` attempts of a key
//! fail with `code` (`0` counts as `UNAVAILABLE`), after `stall_ms` if set, with
//! `grpc-retry-pushback-ms` when `pushback` is set (`pushback_ms`, or `-1` when it is
//! negative). The other attempts succeed:
//!
//! - `Get`, `Put`, `Create`: one [`Reply`] with the attempt number, `value`, and the
//!   metadata the server saw;
//! - `Watch`: `messages` replies numbered 1.. in `value`; a failing attempt sends
//!   `fail_after` of them, then fails (with `fail_after` 0, before its response headers:
//!   a Trailers-Only response, the one failure gRFC A6 retries);
//! - `Upload`: the first message carries the fault; a failing attempt fails after reading
//!   only that message, the others reply with how many messages arrived (`received`) and
//!   the sum of their `value`s, and record how their request stream ended
//!   ([`Flaky::upload_ends`]);
//! - `Chat`: the first message carries the fault; a failing attempt fails before sending
//!   response headers (a trailers-only response), the others echo each message's `value`.
//!
//! Time is read from tokio's clock, so tests with paused time measure exact gaps.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::flaky_pb::flaky_service_server::{FlakyService, FlakyServiceServer};
use crate::flaky_pb::{Fault, Reply};

/// A stream of replies, as `Watch` and `Chat` return them.
pub type Replies = Pin<Box<dyn Stream<Item = Result<Reply, Status>> + Send + 'static>>;

/// What the server saw on one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Which attempt of its key this was (1-based).
    pub attempt: u32,
    /// When it arrived, on tokio's clock.
    pub at: Instant,
    /// `x-request-id`, empty when absent (as every field below).
    pub request_id: String,
    /// `authorization`.
    pub authorization: String,
    /// `traceparent`.
    pub traceparent: String,
    /// `grpc-timeout`, as sent (`"300000u"`).
    pub grpc_timeout: String,
    /// `grpc-previous-rpc-attempts`.
    pub previous_attempts: String,
}

impl Seen {
    fn of(attempt: u32, metadata: &MetadataMap) -> Self {
        let get = |key: &str| {
            metadata
                .get(key)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        Self {
            attempt,
            at: Instant::now(),
            request_id: get("x-request-id"),
            authorization: get("authorization"),
            traceparent: get("traceparent"),
            grpc_timeout: get("grpc-timeout"),
            previous_attempts: get("grpc-previous-rpc-attempts"),
        }
    }

    /// The reply of a successful attempt.
    fn reply(&self, value: u64) -> Reply {
        Reply {
            attempt: self.attempt,
            value,
            request_id: self.request_id.clone(),
            authorization: self.authorization.clone(),
            traceparent: self.traceparent.clone(),
            grpc_timeout: self.grpc_timeout.clone(),
            previous_attempts: self.previous_attempts.clone(),
            received: 0,
        }
    }
}

/// How the server saw the request stream of an `Upload` attempt it did not fail itself
/// end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamEnd {
    /// Messages read, the first one (with the fault) included.
    pub received: u64,
    /// `OK` at the client's half-close; otherwise the error reading the stream gave
    /// (`CANCELLED` when the client reset it), or `CANCELLED` when the handler was dropped
    /// before the stream ended.
    pub code: Code,
}

#[derive(Debug, Default)]
struct State {
    /// Every attempt of each key, in arrival order.
    attempts: Mutex<HashMap<String, Vec<Seen>>>,
    /// How each `Upload` request stream of each key ended.
    upload_ends: Mutex<HashMap<String, Vec<StreamEnd>>>,
    /// Notified at each new entry of `upload_ends`.
    upload_ended: Notify,
}

/// Records how an `Upload` request stream ended, also when the handler is dropped first.
struct UploadEnd<'a> {
    state: &'a State,
    key: String,
    end: StreamEnd,
}

impl Drop for UploadEnd<'_> {
    fn drop(&mut self) {
        let key = std::mem::take(&mut self.key);
        lock(&self.state.upload_ends)
            .entry(key)
            .or_default()
            .push(self.end);
        self.state.upload_ended.notify_waiters();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The fault-injecting server. Clones share its state: keep one to read the attempts
/// while the server runs.
#[derive(Debug, Clone, Default)]
pub struct Flaky {
    state: Arc<State>,
}

impl Flaky {
    /// A server that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves a new `Flaky` on an ephemeral loopback port, and a channel connected to it.
    pub async fn start() -> (Self, Channel) {
        let flaky = Self::new();
        let addr = serve(flaky.clone()).await;
        (flaky, connect(addr).await)
    }

    /// Attempts made with `key` so far.
    pub fn attempts(&self, key: &str) -> u32 {
        lock(&self.state.attempts)
            .get(key)
            .map_or(0, |seen| seen.len() as u32)
    }

    /// What the server saw on each attempt made with `key`, in order.
    pub fn seen(&self, key: &str) -> Vec<Seen> {
        lock(&self.state.attempts)
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    /// How the first `count` `Upload` request streams of `key` ended, as the server read
    /// them (attempts the server failed itself are not included); waits until there are
    /// that many, since the server may read the end after the client returned.
    pub async fn upload_ends(&self, key: &str, count: usize) -> Vec<StreamEnd> {
        loop {
            // Registered before the check, so no end is missed in between.
            let ended = self.state.upload_ended.notified();
            if let Some(ends) = lock(&self.state.upload_ends).get(key)
                && ends.len() >= count
            {
                return ends[..count].to_vec();
            }
            ended.await;
        }
    }

    /// Counts and records one attempt of `key`.
    fn begin(&self, key: &str, metadata: &MetadataMap) -> Seen {
        let mut attempts = lock(&self.state.attempts);
        let seen = attempts.entry(key.to_owned()).or_default();
        let attempt = Seen::of(seen.len() as u32 + 1, metadata);
        seen.push(attempt.clone());
        attempt
    }

    async fn unary(&self, request: Request<Fault>) -> Result<Response<Reply>, Status> {
        let seen = self.begin(&request.get_ref().key, request.metadata());
        let fault = request.into_inner();
        if fails(&fault, seen.attempt) {
            return Err(failure(&fault, seen.attempt).await);
        }
        Ok(Response::new(seen.reply(fault.value)))
    }
}

/// Whether attempt `attempt` of the fault's key fails.
fn fails(fault: &Fault, attempt: u32) -> bool {
    attempt <= fault.fail_attempts
}

/// The status a failing attempt ends with, after the fault's stall.
async fn failure(fault: &Fault, attempt: u32) -> Status {
    if fault.stall_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.stall_ms)).await;
    }
    let code = match Code::from_i32(fault.code) {
        Code::Ok => Code::Unavailable,
        code => code,
    };
    let mut metadata = MetadataMap::new();
    if fault.pushback {
        metadata.insert(
            tonic_intercept::wire::RETRY_PUSHBACK,
            MetadataValue::from(fault.pushback_ms.max(-1)),
        );
    }
    Status::with_metadata(
        code,
        format!("injected failure of attempt {attempt} of `{}`", fault.key),
        metadata,
    )
}

#[tonic::async_trait]
impl FlakyService for Flaky {
    async fn get(&self, request: Request<Fault>) -> Result<Response<Reply>, Status> {
        self.unary(request).await
    }

    async fn put(&self, request: Request<Fault>) -> Result<Response<Reply>, Status> {
        self.unary(request).await
    }

    async fn create(&self, request: Request<Fault>) -> Result<Response<Reply>, Status> {
        self.unary(request).await
    }

    type WatchStream = Replies;

    async fn watch(&self, request: Request<Fault>) -> Result<Response<Replies>, Status> {
        let seen = self.begin(&request.get_ref().key, request.metadata());
        let fault = request.into_inner();
        let failing = fails(&fault, seen.attempt);
        if failing && fault.fail_after == 0 {
            // Before any response header: a Trailers-Only response.
            return Err(failure(&fault, seen.attempt).await);
        }
        let count = if failing {
            fault.fail_after
        } else {
            fault.messages
        };
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            for n in 1..=u64::from(count) {
                if tx.send(Ok(seen.reply(n))).await.is_err() {
                    return;
                }
            }
            if failing {
                let _ = tx.send(Err(failure(&fault, seen.attempt).await)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn upload(&self, request: Request<Streaming<Fault>>) -> Result<Response<Reply>, Status> {
        let (metadata, _, mut requests) = request.into_parts();
        let Some(fault) = requests.message().await? else {
            return Err(Status::invalid_argument(
                "Upload: no message carried a fault",
            ));
        };
        let seen = self.begin(&fault.key, &metadata);
        if fails(&fault, seen.attempt) {
            return Err(failure(&fault, seen.attempt).await);
        }
        let mut end = UploadEnd {
            state: &self.state,
            key: fault.key.clone(),
            end: StreamEnd {
                received: 1,
                code: Code::Cancelled,
            },
        };
        let mut sum = fault.value;
        let status = loop {
            match requests.message().await {
                Ok(Some(message)) => {
                    end.end.received += 1;
                    sum += message.value;
                }
                Ok(None) => break None,
                Err(status) => break Some(status),
            }
        };
        end.end.code = status.as_ref().map_or(Code::Ok, Status::code);
        let received = end.end.received;
        drop(end);
        if let Some(status) = status {
            return Err(status);
        }
        let mut reply = seen.reply(sum);
        reply.received = received;
        Ok(Response::new(reply))
    }

    type ChatStream = Replies;

    async fn chat(&self, request: Request<Streaming<Fault>>) -> Result<Response<Replies>, Status> {
        let (metadata, _, mut requests) = request.into_parts();
        let Some(fault) = requests.message().await? else {
            return Err(Status::invalid_argument("Chat: no message carried a fault"));
        };
        let seen = self.begin(&fault.key, &metadata);
        if fails(&fault, seen.attempt) {
            // Before any response header: a trailers-only response.
            return Err(failure(&fault, seen.attempt).await);
        }
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            if tx.send(Ok(seen.reply(fault.value))).await.is_err() {
                return;
            }
            loop {
                let reply = match requests.message().await {
                    Ok(Some(message)) => Ok(seen.reply(message.value)),
                    Ok(None) => return,
                    Err(status) => Err(status),
                };
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Serves any `FlakyService` (a [`Flaky`], or a relay in front of one) on an ephemeral
/// loopback port until the test ends.
pub async fn serve<S: FlakyService>(service: S) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(FlakyServiceServer::new(service))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

/// A channel connected to a server started with [`serve`].
pub async fn connect(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}
