//! `tonic_intercept::server::Server`'s connection lifecycle on loopback: graceful drain
//! (GOAWAY, in-flight calls finish, new ones refused, health `NOT_SERVING`), the drain
//! bound, max connection idle, max connection age and its grace, and the peer address
//! seen by handlers.

mod common_serve;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common_serve::*;
use prost::Message;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_stream::StreamExt;
use tonic_intercept::server::Server;
use tonic_intercept::tonic_health::pb::HealthCheckRequest;
use tonic_intercept::tonic_health::pb::health_check_response::ServingStatus;
use tonic_intercept::tonic_health::pb::health_client::HealthClient;
use tonic_intercept_tests::pb::echo_service_client::EchoServiceClient;
use tonic_intercept_tests::pb::{EchoRequest, Summary};

const CLIENT_STREAM: &str = "/echo.v1.EchoService/ClientStream";

/// A gRPC length-prefixed message.
fn grpc_message(text: &str) -> Bytes {
    let body = EchoRequest { text: text.into() }.encode_to_vec();
    let mut out = BytesMut::new();
    out.put_u8(0);
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
    out.freeze()
}

/// A client-streaming call over the `h2` crate, left open after its first message.
struct InFlight {
    send: h2::SendStream<Bytes>,
    response: h2::client::ResponseFuture,
    connection: tokio::task::JoinHandle<Result<(), h2::Error>>,
}

/// Opens `ClientStream` with one message, and makes sure the server has read it (a PING
/// round trip after it) before returning.
async fn in_flight(addr: std::net::SocketAddr) -> InFlight {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, mut connection) = h2::client::handshake(tcp).await.unwrap();
    let mut ping_pong = connection.ping_pong().unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!("http://localhost{CLIENT_STREAM}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    send.send_data(grpc_message("one"), false).unwrap();
    ping_pong.ping(h2::Ping::opaque()).await.unwrap();
    InFlight {
        send,
        response,
        connection,
    }
}

impl InFlight {
    /// Sends `last`, ends the stream and reads the answer: grpc-status and the summary.
    async fn finish(mut self, last: &str) -> (String, Option<Summary>) {
        self.send.send_data(grpc_message(last), true).unwrap();
        let response = self.response.await.unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut bytes = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            body.flow_control().release_capacity(chunk.len()).unwrap();
            bytes.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await.unwrap().unwrap_or_default();
        let status = trailers
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let summary = (bytes.len() > 5).then(|| Summary::decode(&bytes[5..]).unwrap());
        (status, summary)
    }
}

/// On shutdown: health turns `NOT_SERVING` (a watcher sees it), GOAWAY goes out, the
/// listener is closed (new connections refused), and a call already in flight finishes
/// with all its messages before the server returns.
#[tokio::test]
async fn graceful_drain_finishes_in_flight_calls_and_refuses_new_ones() {
    let server = start(Server::builder().drain_timeout(Duration::from_secs(20))).await;
    let addr = server.addr;
    let mut watch = HealthClient::new(channel(addr).await)
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap().status;
    assert_eq!(first, ServingStatus::Serving as i32);
    let mut observer = Raw::connect(addr).await;
    let call = in_flight(addr).await;

    let stopped = server.begin_stop();

    let next = watch.next().await.unwrap().unwrap().status;
    assert_eq!(next, ServingStatus::NotServing as i32);
    // The watch is a call in flight too: end it so that the drain need not wait for it.
    drop(watch);
    let frames = observer.reader.read_until(|_| false).await;
    let goaway = frames.last().expect("a GOAWAY");
    assert_eq!(goaway.kind, GOAWAY);
    assert_eq!(goaway.goaway().1, NO_ERROR);
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    let (status, summary) = call.finish("two").await;
    assert_eq!(status, "0");
    let summary = summary.unwrap();
    assert_eq!(summary.received, 2);
    assert_eq!(summary.texts, ["one", "two"]);
    drop(observer);
    tokio::time::timeout(Duration::from_secs(20), stopped)
        .await
        .expect("the server returns once its calls finished")
        .unwrap()
        .unwrap();
}

/// A call that does not finish within the drain timeout is cut: the server returns and
/// the client's connection ends.
#[tokio::test]
async fn the_drain_is_bounded() {
    let server = start(Server::builder().drain_timeout(Duration::from_millis(200))).await;
    let call = in_flight(server.addr).await;
    let stopped = server.begin_stop();
    tokio::time::timeout(Duration::from_secs(20), stopped)
        .await
        .expect("the server returns after the drain timeout")
        .unwrap()
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(20), call.connection)
        .await
        .expect("the client's connection ends");
    drop(ended);
}

/// A connection without streams gets GOAWAY(NO_ERROR) after max connection idle, and is
/// closed after the grace even though this client never answers the PING of h2's
/// graceful shutdown; the server stays up for others.
#[tokio::test]
async fn idle_connections_get_goaway_then_are_closed() {
    let server = start(
        Server::builder()
            .max_connection_idle(Some(Duration::from_millis(200)))
            .max_connection_age_grace(Duration::from_millis(200)),
    )
    .await;
    let mut idle = Raw::connect(server.addr).await;
    let frames = idle.reader.read_until(|_| false).await;
    let goaway = frames.last().expect("a GOAWAY");
    assert_eq!(goaway.kind, GOAWAY);
    assert_eq!(goaway.goaway().1, NO_ERROR);
    let rest = idle.reader.read_until(|_| false).await;
    let end = tokio::time::timeout(Duration::from_secs(20), idle.reader.read_frame())
        .await
        .expect("closed after the grace");
    assert!(matches!(end, Ok(None) | Err(_)), "{rest:?} {end:?}");
    victim_is_served(server.addr).await;
    server.stop().await;
}

/// A connection older than max connection age gets GOAWAY even with a call open; once the
/// grace is over it is closed, and new connections are served.
#[tokio::test]
async fn old_connections_get_goaway_then_are_closed_after_the_grace() {
    let server = start(
        Server::builder()
            .max_connection_age(Some(Duration::from_millis(300)))
            .max_connection_age_grace(Duration::from_millis(300)),
    )
    .await;
    let mut old = Raw::connect(server.addr).await;
    // A call that stays open: HEADERS without END_STREAM.
    let block = grpc_request(CLIENT_STREAM, &[]);
    old.writer
        .write_all(&frame(HEADERS, END_HEADERS, 1, &block))
        .await
        .unwrap();
    let frames = old.reader.read_until(|_| false).await;
    let goaway = frames.last().expect("a GOAWAY");
    assert_eq!(goaway.kind, GOAWAY);
    assert_eq!(goaway.goaway().1, NO_ERROR);
    // The open stream keeps the connection past the GOAWAY until the grace ends; the
    // unanswered PING of h2's graceful shutdown does not hold it either.
    let rest = old.reader.read_until(|_| false).await;
    let end = tokio::time::timeout(Duration::from_secs(20), old.reader.read_frame())
        .await
        .expect("closed after the grace");
    assert!(matches!(end, Ok(None) | Err(_)), "{rest:?} {end:?}");
    victim_is_served(server.addr).await;
    server.stop().await;
}

/// Handlers see the peer's address (`Request::remote_addr`), as with tonic's server.
#[tokio::test]
async fn handlers_see_the_remote_address() {
    let server = start(Server::builder()).await;
    let who = EchoServiceClient::new(channel(server.addr).await)
        .unary(EchoRequest { text: "who".into() })
        .await
        .unwrap()
        .into_inner()
        .text;
    assert!(who.starts_with("peer=127.0.0.1:"), "{who}");
    assert!(who.ends_with(" certs=0"), "{who}");
    server.stop().await;
}
