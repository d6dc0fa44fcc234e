//! Panic recovery, deadlines and idle timeouts over real loopback TCP.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_intercept::{Call, CallOutcome, Deadline, Hook, PolicyKind, intercept};
use tonic_intercept_tests::pb::echo_service_intercept as rpc;
use tonic_intercept_tests::pb::{EchoReply, EchoRequest, StreamRequest, Summary};
use tonic_intercept_tests::{client, serve};

type Replies =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<EchoReply, Status>> + Send>>;

/// Remembers how each call ended, as the hooks see it.
#[derive(Clone, Default)]
struct Ends(Arc<std::sync::Mutex<Vec<End>>>);

/// A call's final code and the policy that decided it, if one did.
type End = (Code, Option<PolicyKind>);

impl Ends {
    fn take(&self) -> Vec<End> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

impl<R: tonic_intercept::Rpc> Hook<R> for Ends {
    fn on_finish(&self, _: &Call, outcome: &CallOutcome) {
        self.0
            .lock()
            .unwrap()
            .push((outcome.code, outcome.ended_by));
    }
}

/// Panics on demand in a hook (`text = "hook-panic"`); the handler panics on `"panic"`,
/// and `ServerStream`'s stream after its replies (unless `count` is 2: then it stalls).
#[derive(Clone, Default)]
struct PanicsOnDemand;

impl Hook<rpc::Unary> for PanicsOnDemand {
    fn on_request(&self, _: &Call, request: &EchoRequest) -> Result<(), Status> {
        if request.text == "hook-panic" {
            panic!("the hook broke: secret hook detail");
        }
        Ok(())
    }
}

struct Fragile {
    ends: Ends,
    handled: Arc<AtomicU64>,
}

#[intercept(
    public(*),
    recover,
    hook(PanicsOnDemand, Unary),
    hook(self.ends: Ends),
    limit(ServerStream, Bidi, idle_timeout_ms = 200),
)]
#[tonic::async_trait]
impl tonic_intercept_tests::pb::echo_service_server::EchoService for Fragile {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        self.handled.fetch_add(1, Ordering::SeqCst);
        let left = Deadline::current().map(|d| d.remaining());
        let text = request.into_inner().text;
        match text.as_str() {
            "panic" => panic!("the handler broke: secret handler detail"),
            "slow" => tokio::time::sleep(Duration::from_secs(5)).await,
            "deadline" => {
                let ms = left.map_or(u64::MAX, |d| d.as_millis() as u64);
                return Ok(Response::new(EchoReply { text, seq: ms }));
            }
            _ => {}
        }
        Ok(Response::new(EchoReply { text, seq: 0 }))
    }

    type ServerStreamStream = Replies;

    async fn server_stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        let StreamRequest { count, text, .. } = request.into_inner();
        let replies = tokio_stream::iter(1..=u64::from(count)).map(move |seq| {
            Ok(EchoReply {
                text: text.clone(),
                seq,
            })
        });
        // Two replies: then nothing, ever (idle). Otherwise: the replies, then a panic.
        let replies: Replies = if count == 2 {
            Box::pin(replies.chain(tokio_stream::pending()))
        } else {
            Box::pin(replies.chain(
                tokio_stream::once(()).map(|()| -> Result<EchoReply, Status> {
                    panic!("the stream broke: secret stream detail")
                }),
            ))
        };
        Ok(Response::new(replies))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Summary>, Status> {
        let mut requests = request.into_inner();
        let mut summary = Summary::default();
        while let Some(r) = requests.message().await? {
            summary.received += 1;
            summary.texts.push(r.text);
        }
        Ok(Response::new(summary))
    }

    type BidiStream = Replies;

    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        let requests = request.into_inner();
        let mut seq = 0;
        Ok(Response::new(Box::pin(requests.map(move |r| {
            seq += 1;
            r.map(|r| EchoReply { text: r.text, seq })
        }))))
    }
}

fn fragile() -> (Fragile, Ends, Arc<AtomicU64>) {
    let ends = Ends::default();
    let handled = Arc::new(AtomicU64::new(0));
    (
        Fragile {
            ends: ends.clone(),
            handled: handled.clone(),
        },
        ends,
        handled,
    )
}

fn echo(text: &str) -> EchoRequest {
    EchoRequest { text: text.into() }
}

#[tokio::test]
async fn a_handler_panic_is_internal_and_the_server_keeps_serving() {
    let (service, ends, handled) = fragile();
    let mut client = client(serve(service).await).await;

    let status = client.unary(echo("panic")).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    // The panic text stays on the server.
    assert_eq!(status.message(), "Unary: internal error");

    // Same connection, next call: served.
    let reply = client.unary(echo("after")).await.unwrap().into_inner();
    assert_eq!(reply.text, "after");
    assert_eq!(handled.load(Ordering::SeqCst), 2);
    assert_eq!(
        ends.take(),
        [
            (Code::Internal, Some(PolicyKind::Recovery)),
            (Code::Ok, None)
        ]
    );
}

#[tokio::test]
async fn a_hook_panic_is_internal_and_the_handler_never_runs() {
    let (service, ends, handled) = fragile();
    let mut client = client(serve(service).await).await;

    let status = client.unary(echo("hook-panic")).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert!(!status.message().contains("secret"));
    assert_eq!(handled.load(Ordering::SeqCst), 0);
    assert_eq!(ends.take(), [(Code::Internal, Some(PolicyKind::Recovery))]);
}

#[tokio::test]
async fn a_stream_panic_ends_that_stream_only_after_what_it_sent() {
    let (service, ends, _) = fragile();
    let mut client = client(serve(service).await).await;

    let request = StreamRequest {
        count: 3,
        text: "tick".into(),
        interval_ms: 0,
    };
    let mut stream = client.server_stream(request).await.unwrap().into_inner();
    let mut seqs = Vec::new();
    let status = loop {
        match stream.message().await {
            Ok(Some(reply)) => seqs.push(reply.seq),
            Ok(None) => panic!("the stream should end with an error"),
            Err(status) => break status,
        }
    };
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(status.message(), "ServerStream: internal error");

    // Other calls are unaffected.
    assert_eq!(
        client
            .unary(echo("still here"))
            .await
            .unwrap()
            .into_inner()
            .text,
        "still here"
    );
    assert_eq!(
        ends.take(),
        [
            (Code::Internal, Some(PolicyKind::Recovery)),
            (Code::Ok, None)
        ]
    );
}

#[tokio::test]
async fn client_timeout_ends_the_call_with_deadline_exceeded() {
    let (service, ends, _) = fragile();
    let mut client = client(serve(service).await).await;

    let mut request = Request::new(echo("slow"));
    request.set_timeout(Duration::from_millis(150));
    let status = client.unary(request).await.unwrap_err();
    // tonic's client runs its own timer for the `grpc-timeout` it sends and reports a
    // local CANCELLED ("Timeout expired") when it fires; the server's timer fires at the
    // same 150 ms and its DEADLINE_EXCEEDED can arrive first on a loaded machine (seen
    // once in CI while other builds ran). Both orders are the same event; each is
    // checked exactly, by who answered.
    match status.code() {
        Code::Cancelled => assert_eq!(status.message(), "Timeout expired", "{status:?}"),
        Code::DeadlineExceeded => {
            assert_eq!(status.message(), "Unary: deadline exceeded", "{status:?}")
        }
        _ => panic!("neither the client's timer nor the server's deadline: {status:?}"),
    }
    // The server ended the call with DEADLINE_EXCEEDED (its own timer, not tonic's,
    // which would have dropped the call: `Cancelled, None`).
    let ended = async {
        loop {
            let seen = ends.take();
            if !seen.is_empty() {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let ended = tokio::time::timeout(Duration::from_secs(2), ended)
        .await
        .unwrap();
    assert_eq!(
        ended,
        [(Code::DeadlineExceeded, Some(PolicyKind::Deadline))]
    );
}

#[tokio::test]
async fn server_timeout_is_deadline_exceeded_for_the_client() {
    let ends = Ends::default();
    let mut client = client(serve(Capped { ends: ends.clone() }).await).await;
    let status = client.unary(echo("slow")).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(status.message(), "Unary: deadline exceeded");
    assert_eq!(
        ends.take(),
        [(Code::DeadlineExceeded, Some(PolicyKind::Deadline))]
    );
}

/// A 100 ms server-side cap on `Unary`, whose handler takes 5 s.
struct Capped {
    ends: Ends,
}

#[intercept(public(*), hook(self.ends: Ends, Unary), limit(Unary, timeout_ms = 100))]
#[tonic::async_trait]
impl tonic_intercept_tests::pb::echo_service_server::EchoService for Capped {
    async fn unary(&self, _: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Err(Status::internal("unreachable: the cap ends the call first"))
    }

    type ServerStreamStream = Replies;

    async fn server_stream(
        &self,
        _: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        Err(Status::unimplemented("not here"))
    }

    async fn client_stream(
        &self,
        _: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Summary>, Status> {
        Err(Status::unimplemented("not here"))
    }

    type BidiStream = Replies;

    async fn bidi(
        &self,
        _: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        Err(Status::unimplemented("not here"))
    }
}

#[tokio::test]
async fn the_handler_sees_the_remaining_deadline() {
    let (service, _, _) = fragile();
    let mut client = client(serve(service).await).await;

    let mut request = Request::new(echo("deadline"));
    request.set_timeout(Duration::from_millis(800));
    let left_ms = client.unary(request).await.unwrap().into_inner().seq;
    assert!(
        (500..800).contains(&left_ms),
        "{left_ms} ms left of an 800 ms deadline"
    );

    // Without a deadline there is none to see.
    let left_ms = client
        .unary(echo("deadline"))
        .await
        .unwrap()
        .into_inner()
        .seq;
    assert_eq!(left_ms, u64::MAX);
}

#[tokio::test]
async fn an_idle_response_stream_is_cut() {
    let (service, ends, _) = fragile();
    let mut client = client(serve(service).await).await;

    // Two replies, then the producer stalls: cut 200 ms after the last reply.
    let request = StreamRequest {
        count: 2,
        text: "tick".into(),
        interval_ms: 0,
    };
    let mut stream = client.server_stream(request).await.unwrap().into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().seq, 1);
    assert_eq!(stream.message().await.unwrap().unwrap().seq, 2);
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(
        status.message(),
        "ServerStream: no message for 200 ms (idle timeout)"
    );
    assert_eq!(
        ends.take(),
        [(Code::DeadlineExceeded, Some(PolicyKind::IdleTimeout))]
    );
}

#[tokio::test]
async fn a_silent_bidi_client_is_cut_and_a_chatty_one_is_not() {
    let (service, ends, _) = fragile();
    let mut client = client(serve(service).await).await;

    // Chatty: a message every 100 ms for 600 ms, well past the 200 ms idle timeout.
    let chatty = tokio_stream::iter(0..6)
        .throttle(Duration::from_millis(100))
        .map(|i| echo(&format!("m{i}")));
    let replies = client.bidi(chatty).await.unwrap().into_inner();
    let replies: Vec<_> = replies.collect().await;
    assert_eq!(replies.len(), 6);
    assert!(replies.iter().all(Result::is_ok));

    // Silent: one message, then nothing while the request stream stays open.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(echo("hello")).await.unwrap();
    let mut replies = client
        .bidi(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replies.message().await.unwrap().unwrap().text, "hello");
    let status = replies.message().await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(
        status.message(),
        "Bidi: no message for 200 ms (idle timeout)"
    );
    drop(tx);
    assert_eq!(
        ends.take(),
        [
            (Code::Ok, None),
            (Code::DeadlineExceeded, Some(PolicyKind::IdleTimeout))
        ]
    );
}
