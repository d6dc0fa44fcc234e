//! Every policy, served in memory (`tonic_intercept::testing::InMemory`): accept and
//! reject paths, exact codes and counts.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_intercept::testing::InMemory;
use tonic_intercept_tests::pb::echo_service_client::EchoServiceClient;
use tonic_intercept_tests::pb::echo_service_server::{EchoService, EchoServiceServer};
use tonic_intercept_tests::pb::{EchoReply, EchoRequest, StreamRequest};
use tonic_intercept_tests::{Guarded, PACED_PER_SECOND, Paced, authed, with_token};

/// A client of `service`, served in memory by tonic's own server, as before the move
/// from TCP (these tests are about the policies themselves; the hardened server's edge,
/// which refuses an oversized message at its length prefix already, is `edge.rs`'s and
/// `testing.rs`'s). The server runs as long as the client's channel does.
fn connect<S: EchoService>(service: S) -> EchoServiceClient<Channel> {
    let router = tonic::transport::Server::builder().add_service(EchoServiceServer::new(service));
    EchoServiceClient::new(InMemory::serve_router(router).channel())
}

fn echo(text: &str) -> EchoRequest {
    EchoRequest { text: text.into() }
}

fn texts(texts: &[&str]) -> impl tokio_stream::Stream<Item = EchoRequest> + Send + 'static {
    tokio_stream::iter(texts.iter().map(|t| echo(t)).collect::<Vec<_>>())
}

fn stream_request(count: u32) -> StreamRequest {
    StreamRequest {
        count,
        text: "tick".into(),
        interval_ms: 0,
    }
}

/// Reads a response stream to its end: the messages, then the final status.
async fn drain(mut stream: tonic::Streaming<EchoReply>) -> (Vec<EchoReply>, Result<(), Status>) {
    let mut replies = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(reply)) => replies.push(reply),
            Ok(None) => return (replies, Ok(())),
            Err(status) => return (replies, Err(status)),
        }
    }
}

// ---- auth ----

#[tokio::test]
async fn public_rpc_needs_no_token() {
    let service = Guarded::new();
    let recorder = service.recorder.clone();
    let mut client = connect(service);

    let reply = client.unary(echo("hi")).await.unwrap().into_inner();
    assert_eq!(reply.text, "hi from anonymous");
    assert_eq!(
        recorder.take(),
        [
            "call Unary",
            "request hi",
            "response hi from anonymous",
            "finish Unary Ok in=1 out=1"
        ]
    );
}

#[tokio::test]
async fn missing_token_is_unauthenticated_and_handler_never_runs() {
    let service = Guarded::new();
    let (work, recorder) = (service.work.clone(), service.recorder.clone());
    let mut client = connect(service);

    let status = client.server_stream(stream_request(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(work.handled.load(Ordering::SeqCst), 0);
    // The hook was declared after auth, so it never saw the call start, but it sees the end.
    assert_eq!(
        recorder.take(),
        ["finish ServerStream Unauthenticated in=0 out=0"]
    );
}

#[tokio::test]
async fn wrong_token_is_unauthenticated() {
    let mut client = connect(Guarded::new());
    let status = client
        .client_stream(with_token(texts(&["a"]), "wrong"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "invalid bearer token");

    let mut request = Request::new(texts(&["a"]));
    request
        .metadata_mut()
        .insert("authorization", "Basic abc".parse().unwrap());
    let status = client.bidi(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        status.message(),
        "`authorization` metadata must be `Bearer <token>`"
    );
}

#[tokio::test]
async fn valid_token_reaches_handler_with_identity() {
    let service = Guarded::new();
    let work = service.work.clone();
    let mut client = connect(service);

    let (replies, end) = drain(
        client
            .server_stream(authed(stream_request(2)))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert_eq!(end.map_err(|s| s.code()), Ok(()));
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0].text, "tick for ada");
    assert_eq!(work.handled.load(Ordering::SeqCst), 1);

    // The identity reaches a unary handler through the request extensions; Unary is
    // public, so a token there is not verified and no identity is attached.
    let reply = client.unary(authed(echo("hi"))).await.unwrap().into_inner();
    assert_eq!(reply.text, "hi from anonymous");
}

// ---- limits: exactly N passes, N + 1 is cut ----

#[tokio::test]
async fn server_stream_at_limit_passes() {
    let service = Guarded::new();
    let recorder = service.recorder.clone();
    let mut client = connect(service);

    let (replies, end) = drain(
        client
            .server_stream(authed(stream_request(5)))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert_eq!(end.map_err(|s| s.code()), Ok(()));
    assert_eq!(
        replies.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let events = recorder.take();
    assert_eq!(events.first().map(String::as_str), Some("request count=5"));
    assert_eq!(
        events.last().map(String::as_str),
        Some("finish ServerStream Ok in=1 out=5")
    );
}

#[tokio::test]
async fn server_stream_over_limit_is_cut_with_resource_exhausted() {
    let service = Guarded::new();
    let recorder = service.recorder.clone();
    let mut client = connect(service);

    let (replies, end) = drain(
        client
            .server_stream(authed(stream_request(6)))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    let status = end.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "ServerStream: more than 5 response messages in one stream"
    );
    assert_eq!(replies.len(), 5);
    assert_eq!(
        recorder.take().last().map(String::as_str),
        Some("finish ServerStream ResourceExhausted in=1 out=5")
    );
}

#[tokio::test]
async fn client_stream_at_limit_passes_and_over_limit_fails() {
    let service = Guarded::new();
    let recorder = service.recorder.clone();
    let mut client = connect(service);

    let summary = client
        .client_stream(authed(texts(&["a", "b", "c"])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.received, 3);
    assert_eq!(summary.texts, ["a", "b", "c"]);
    assert_eq!(
        recorder.take(),
        [
            "request a",
            "request b",
            "request c",
            "response received=3",
            "finish ClientStream Ok in=3 out=1"
        ]
    );

    let status = client
        .client_stream(authed(texts(&["a", "b", "c", "d"])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "ClientStream: more than 3 request messages in one stream"
    );
    assert_eq!(
        recorder.take().last().map(String::as_str),
        Some("finish ClientStream ResourceExhausted in=3 out=0")
    );
}

#[tokio::test]
async fn message_bytes_limit_applies_both_ways() {
    let mut client = connect(Guarded::new());
    let one = |len: usize| authed(tokio_stream::iter(vec![echo(&"x".repeat(len))]));

    // 60 characters: the request encodes to 62 bytes, the summary echoing it to 64,
    // exactly the limit.
    let summary = client.client_stream(one(60)).await.unwrap().into_inner();
    assert_eq!(summary.received, 1);

    // 62 characters: the request is exactly at the limit, the response is not.
    let status = client.client_stream(one(62)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "ClientStream: response message of 66 bytes exceeds the limit of 64 bytes"
    );

    // 63 characters: the request itself is over.
    let status = client.client_stream(one(63)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "ClientStream: request message of 65 bytes exceeds the limit of 64 bytes"
    );
}

#[tokio::test]
async fn bidi_at_limit_and_over_limit() {
    let mut client = connect(Guarded::new());

    let (replies, end) = drain(
        client
            .bidi(authed(texts(&["1", "2", "3", "4"])))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert_eq!(end.map_err(|s| s.code()), Ok(()));
    assert_eq!(
        replies.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
        ["1", "2", "3", "4"]
    );

    let (replies, end) = drain(
        client
            .bidi(authed(texts(&["1", "2", "3", "4", "5"])))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    // What the handler echoed before the fifth message arrived still goes out.
    assert_eq!(replies.len(), 4);
    let status = end.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "Bidi: more than 4 request messages in one stream"
    );
}

// ---- hooks ----

#[tokio::test]
async fn hook_rejects_with_invalid_argument_before_handler() {
    let service = Guarded::new();
    let (work, recorder) = (service.work.clone(), service.recorder.clone());
    let mut client = connect(service);

    let status = client.unary(echo("forbidden")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "text must not be `forbidden`");
    assert_eq!(work.handled.load(Ordering::SeqCst), 0);
    assert_eq!(
        recorder.take(),
        [
            "call Unary",
            "request forbidden",
            "finish Unary InvalidArgument in=0 out=0"
        ]
    );
}

#[tokio::test]
async fn hook_rejection_inside_client_stream_ends_the_call() {
    let service = Guarded::new();
    let recorder = service.recorder.clone();
    let mut client = connect(service);

    let status = client
        .client_stream(authed(texts(&["a", "forbidden", "c"])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        recorder.take(),
        [
            "request a",
            "request forbidden",
            "finish ClientStream InvalidArgument in=1 out=0"
        ]
    );
}

// ---- cancellation ----

#[tokio::test]
async fn dropped_server_stream_stops_the_producer() {
    let service = Guarded::new();
    let (work, recorder) = (service.work.clone(), service.recorder.clone());
    let mut client = connect(service);

    // Four replies 200 ms apart (under the limit of 5); the client leaves after two.
    let request = StreamRequest {
        count: 4,
        text: "tick".into(),
        interval_ms: 200,
    };
    let stopped = work.producer_stopped.notified();
    let mut stream = client
        .server_stream(authed(request))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    stream.message().await.unwrap().unwrap();
    drop(stream);

    tokio::time::timeout(Duration::from_secs(2), stopped)
        .await
        .expect("the producer stops within 2 s of the client leaving");
    // Two were read; the third may have been handed over as the client left, the fourth
    // never is. `Cancelled` shows the stop came from the client leaving, not the limit.
    let produced = work.produced.load(Ordering::SeqCst);
    assert!((2..=3).contains(&produced), "produced {produced}");
    let finish = recorder.take().pop().unwrap();
    assert!(
        finish.starts_with("finish ServerStream Cancelled in=1 out="),
        "{finish}"
    );
}

// ---- rates and deadlines ----

#[tokio::test]
async fn outbound_rate_delays_without_dropping() {
    let service = Paced::default();
    let timer = service.timer.clone();
    let mut client = connect(service);
    let started = std::time::Instant::now();
    let (replies, end) = drain(
        client
            .server_stream(stream_request(5))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert_eq!(end.map_err(|s| s.code()), Ok(()));
    assert_eq!(replies.len(), 5);
    // 20 messages a second with a burst of 1: the fifth leaves no sooner than 4 × 50 ms.
    // A lower bound only; a slow machine can only make it longer.
    assert_eq!(PACED_PER_SECOND, 20);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    // The hook saw the call's whole duration, pacing included.
    let durations = timer.durations.lock().unwrap().clone();
    assert_eq!(durations.len(), 1);
    assert!(durations[0] >= Duration::from_millis(200), "{durations:?}");
}

#[tokio::test]
async fn inbound_rate_rejects_a_burst() {
    let mut client = connect(Paced::default());
    // Burst 2: two back-to-back messages pass, the third is too early.
    let summary = client
        .client_stream(texts(&["a", "b"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.received, 2);
    let status = client
        .client_stream(texts(&["a", "b", "c"]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "ClientStream: more than 2 request messages per second"
    );
}

#[tokio::test]
async fn timeout_ends_a_slow_unary_call_with_deadline_exceeded() {
    let mut client = connect(Paced::default());
    let status = client.unary(echo("slow")).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(status.message(), "Unary: deadline exceeded");
}

#[tokio::test]
async fn timeout_cuts_a_long_stream_with_deadline_exceeded() {
    let service = Paced::default();
    let work = service.work.clone();
    let mut client = connect(service);
    let request = StreamRequest {
        count: 1000,
        text: "tick".into(),
        interval_ms: 0,
    };
    let stopped = work.producer_stopped.notified();
    let (replies, end) = drain(client.server_stream(request).await.unwrap().into_inner()).await;
    assert_eq!(end.unwrap_err().code(), Code::DeadlineExceeded);
    // Paced at 20/s (the first at once) with a 300 ms deadline: at most 7, far from 1000.
    assert!(replies.len() <= 7, "{} replies", replies.len());
    tokio::time::timeout(Duration::from_secs(2), stopped)
        .await
        .expect("the producer stops once the deadline cuts the stream");
}

#[tokio::test]
async fn server_keeps_serving_after_rejections() {
    let mut client = connect(Guarded::new());
    for _ in 0..3 {
        assert_eq!(
            client
                .server_stream(stream_request(1))
                .await
                .unwrap_err()
                .code(),
            Code::Unauthenticated
        );
        assert_eq!(
            client.unary(echo("forbidden")).await.unwrap_err().code(),
            Code::InvalidArgument
        );
    }
    assert_eq!(
        client.unary(echo("still")).await.unwrap().into_inner().text,
        "still from anonymous"
    );
}

#[tokio::test]
async fn timeout_none_exempts_one_rpc_from_the_general_timeout() {
    let mut client = connect(Paced::default());
    // Three messages 200 ms apart: the call lives past the general 300 ms timeout,
    // which `limit(Bidi, timeout_ms = none)` switched off for this RPC.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        for text in ["a", "b", "c"] {
            tokio::time::sleep(Duration::from_millis(200)).await;
            tx.send(echo(text)).await.unwrap();
        }
    });
    let replies = client
        .bidi(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let (replies, end) = drain(replies).await;
    assert_eq!(end.map_err(|s| s.code()), Ok(()));
    assert_eq!(
        replies.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
}
