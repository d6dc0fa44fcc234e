//! `max_total_bytes_in`: a cap on the encoded bytes of all request messages of one call
//! (a whole upload), next to `max_message_bytes`, which caps each message. Driven through
//! the server guard on a real `tonic::Streaming`, as generated handlers are.

use prost::Message;
use tonic::codec::Codec;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_intercept::__private::Guard;
use tonic_intercept::{Limits, RpcPolicy};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunk {
    #[prost(string, tag = "1")]
    pub data: String,
}

tonic_intercept::__doc_rpc!(
    Upload,
    "files.v1.Files",
    "Upload",
    ClientStreaming,
    Chunk,
    Chunk
);

/// A request body of gRPC frames, one per chunk. http-body implements `Body` for
/// `String`; short ASCII chunks make frames (a zero flag, a length below 128, a tag and
/// a length byte) that are valid UTF-8, so no extra body crate is needed.
fn requests(chunks: &[&str]) -> Streaming<Chunk> {
    let mut body = Vec::new();
    for chunk in chunks {
        let message = Chunk {
            data: (*chunk).to_owned(),
        }
        .encode_to_vec();
        assert!(message.len() < 128, "keep test chunks short");
        body.push(0);
        body.extend((message.len() as u32).to_be_bytes());
        body.extend(message);
    }
    let body = String::from_utf8(body).expect("short ASCII chunks frame as UTF-8");
    let decoder = tonic_prost::ProstCodec::<Chunk, Chunk>::default().decoder();
    Streaming::new_request(decoder, body, None, None)
}

/// Runs an upload through the guard; the handler reads every chunk and answers with
/// their concatenation, or fails with what the stream refused.
async fn upload(limits: Limits, chunks: &[&str]) -> Result<String, Status> {
    let request = Request::new(requests(chunks));
    let mut guard = Guard::<Upload, ()>::new(&request, limits, (), false);
    let mut inbound = guard.inbound(request).into_inner();
    let response = guard
        .client_streaming(async move {
            let mut all = String::new();
            while let Some(chunk) = inbound.message().await? {
                all.push_str(&chunk.data);
            }
            Ok(Response::new(Chunk { data: all }))
        })
        .await?;
    Ok(response.into_inner().data)
}

/// Each chunk of ten letters encodes to 12 bytes (a tag, a length, the letters).
const TEN: &str = "abcdefghij";

#[tokio::test]
async fn an_upload_at_the_cap_passes() {
    let limits = Limits::new().max_total_bytes_in(36);
    assert_eq!(limits.get_max_total_bytes_in(), Some(36));
    let all = upload(limits, &[TEN, TEN, TEN]).await.unwrap();
    assert_eq!(all.len(), 30);
}

#[tokio::test]
async fn the_message_that_crosses_the_cap_ends_the_call() {
    let status = upload(Limits::new().max_total_bytes_in(35), &[TEN, TEN, TEN])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "Upload: more than 35 bytes of request messages in one stream"
    );
}

#[tokio::test]
async fn each_message_may_be_under_max_message_bytes_and_the_total_over() {
    let limits = Limits::new().max_message_bytes(12).max_total_bytes_in(24);
    let status = upload(limits, &[TEN, TEN, TEN]).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "Upload: more than 24 bytes of request messages in one stream"
    );
    // A single message over its own limit is still refused as such.
    let limits = Limits::new().max_message_bytes(11).max_total_bytes_in(100);
    let status = upload(limits, &[TEN]).await.unwrap_err();
    assert_eq!(
        status.message(),
        "Upload: request message of 12 bytes exceeds the limit of 11 bytes"
    );
}

#[tokio::test]
async fn the_proto_declares_it_through_the_rpc_policy() {
    const POLICY: RpcPolicy = RpcPolicy::new().with_limits(Limits::new().max_total_bytes_in(24));
    assert_eq!(POLICY.limits().get_max_total_bytes_in(), Some(24));
    assert!(POLICY.declares_limits());
    // The `.proto`'s value replaces one set for every RPC.
    let limits = Limits::new().max_total_bytes_in(1_000).with_policy(&POLICY);
    assert_eq!(limits.get_max_total_bytes_in(), Some(24));
    let status = upload(limits, &[TEN, TEN, TEN]).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(upload(limits, &[TEN, TEN]).await.unwrap().len(), 20);
}
