//! `limit(.., max_total_bytes_in = ..)` over real loopback TCP: the bytes of all request
//! messages of one call (a whole upload) are capped; the message that would cross the cap
//! ends the call with RESOURCE_EXHAUSTED, and an upload within it goes through.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tonic::{Code, Request, Response, Status, Streaming};
use tonic_intercept::intercept;
use tonic_intercept_tests::pb::{EchoReply, EchoRequest, StreamRequest, Summary};
use tonic_intercept_tests::{Work, client, handlers, pb, serve};

type Replies = tokio_stream::wrappers::ReceiverStream<Result<EchoReply, Status>>;

/// The cap of `ClientStream`, through a constant: two 12-byte messages fit, three do not.
const UPLOAD_BYTES: u64 = 30;

/// Upload caps on both RPCs whose requests stream.
#[derive(Debug, Default)]
struct Uploads {
    work: Arc<Work>,
}

#[intercept(
    public(*),
    limit(ClientStream, max_total_bytes_in = UPLOAD_BYTES),
    limit(Bidi, max_total_bytes_in = 20),
)]
#[tonic::async_trait]
impl pb::echo_service_server::EchoService for Uploads {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        handlers::unary(&self.work, request)
    }

    type ServerStreamStream = Replies;

    async fn server_stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        handlers::server_stream(&self.work, request)
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Summary>, Status> {
        handlers::client_stream(&self.work, request.into_inner()).await
    }

    type BidiStream = Replies;

    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        handlers::bidi(&self.work, request.into_inner())
    }
}

/// Ten letters: an `EchoRequest` of 12 encoded bytes (a tag, a length, the text).
const TEN: &str = "abcdefghij";

fn uploads(n: usize) -> impl tokio_stream::Stream<Item = EchoRequest> + Send + 'static {
    tokio_stream::iter(
        (0..n)
            .map(|_| EchoRequest { text: TEN.into() })
            .collect::<Vec<_>>(),
    )
}

#[tokio::test]
async fn an_upload_within_the_cap_goes_through() {
    let service = Uploads::default();
    let mut client = client(serve(service).await).await;
    let summary = client.client_stream(uploads(2)).await.unwrap().into_inner();
    assert_eq!(summary.received, 2);
    assert_eq!(summary.texts, [TEN, TEN]);
}

#[tokio::test]
async fn an_upload_over_the_cap_is_resource_exhausted() {
    let service = Uploads::default();
    let work = service.work.clone();
    let mut client = client(serve(service).await).await;
    let status = client.client_stream(uploads(3)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "ClientStream: more than 30 bytes of request messages in one stream"
    );
    // The handler ran and saw the stream fail at the third message.
    assert_eq!(work.handled.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_cap_ends_a_bidi_stream_after_the_messages_within_it() {
    let mut client = client(serve(Uploads::default()).await).await;
    let mut replies = client.bidi(uploads(3)).await.unwrap().into_inner();
    let first = replies.message().await.unwrap().unwrap();
    assert_eq!((first.text.as_str(), first.seq), (TEN, 1));
    let status = replies.message().await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "Bidi: more than 20 bytes of request messages in one stream"
    );
}
