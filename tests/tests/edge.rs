//! The edge (`tonic_intercept::server::Edge`) in front of a real tonic server on
//! loopback: what a hostile or careless client sends before the handler runs, answered
//! with the spec's codes and counted once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::Bytes;
use tonic::codegen::http;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_intercept::metrics::ServiceMetrics;
use tonic_intercept::metrics::render_metrics;
use tonic_intercept::prometheus_client::registry::Registry;
use tonic_intercept::server::Edge;
use tonic_intercept::{ServerMetrics, intercept};
use tonic_intercept_tests::pb;
use tonic_intercept_tests::pb::echo_service_intercept as rpc;
use tonic_intercept_tests::pb::echo_service_server::EchoServiceServer;
use tonic_intercept_tests::pb::{EchoReply, EchoRequest, StreamRequest, Summary};

/// Every step of a test is bounded.
const BOUND: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Work {
    /// Handler invocations.
    handled: AtomicU64,
    /// Request messages the client-streaming handler received.
    received: AtomicU64,
    /// How the client-streaming handler's request stream ended: `Ok` when the client
    /// finished it, else the code it yielded.
    upload_ended: std::sync::Mutex<Option<Code>>,
}

#[derive(Debug)]
struct Edged {
    work: Arc<Work>,
    metrics: ServiceMetrics<rpc::Service>,
}

type Replies = ReceiverStream<Result<EchoReply, Status>>;

#[intercept(
    public(*),
    metrics(self.metrics),
    limit(Unary, timeout_ms = 200),
    limit(ClientStream, max_message_bytes = 256),
)]
#[tonic::async_trait]
impl pb::echo_service_server::EchoService for Edged {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        self.work.handled.fetch_add(1, Ordering::SeqCst);
        let text = request.into_inner().text;
        Ok(Response::new(EchoReply {
            text: text.len().to_string(),
            seq: 0,
        }))
    }

    type ServerStreamStream = Replies;

    async fn server_stream(
        &self,
        _request: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        self.work.handled.fetch_add(1, Ordering::SeqCst);
        let (_tx, rx) = tokio::sync::mpsc::channel(1);
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Summary>, Status> {
        self.work.handled.fetch_add(1, Ordering::SeqCst);
        let mut requests = request.into_inner();
        let mut summary = Summary::default();
        while let Some(message) = requests.next().await {
            let message = message.inspect_err(|status| {
                *self.work.upload_ended.lock().unwrap() = Some(status.code());
            })?;
            self.work.received.fetch_add(1, Ordering::SeqCst);
            summary.received += 1;
            summary.texts.push(message.text);
        }
        *self.work.upload_ended.lock().unwrap() = Some(Code::Ok);
        Ok(Response::new(summary))
    }

    type BidiStream = Replies;

    async fn bidi(
        &self,
        _request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        Err(Status::unimplemented("not in these tests"))
    }
}

struct Server {
    addr: SocketAddr,
    work: Arc<Work>,
    registry: Arc<Registry>,
}

impl Server {
    async fn start() -> Self {
        Self::start_with(|server| server).await
    }

    /// An edge without metrics: the `#[intercept]` metrics hook counts as without an edge.
    async fn start_uncounted() -> Self {
        Self::start_edge(|server| server, false).await
    }

    /// With the generated server configured by `configure` (tonic's own limits).
    async fn start_with(
        configure: impl FnOnce(EchoServiceServer<Edged>) -> EchoServiceServer<Edged>,
    ) -> Self {
        Self::start_edge(configure, true).await
    }

    async fn start_edge(
        configure: impl FnOnce(EchoServiceServer<Edged>) -> EchoServiceServer<Edged>,
        counted: bool,
    ) -> Self {
        let mut registry = Registry::default();
        let metrics = ServerMetrics::register(&mut registry);
        let work = Arc::new(Work::default());
        let service = Edged {
            work: work.clone(),
            metrics: metrics.service::<rpc::Service>(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service({
                    let edge = Edge::new(configure(EchoServiceServer::new(service)));
                    if counted {
                        edge.metrics(&metrics)
                    } else {
                        edge
                    }
                })
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        Self {
            addr,
            work,
            registry: Arc::new(registry),
        }
    }

    async fn client(
        &self,
    ) -> pb::echo_service_client::EchoServiceClient<tonic::transport::Channel> {
        pb::echo_service_client::EchoServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    /// Every `name{labels} value` line of the rendered metrics whose name is `name`.
    fn series(&self, name: &str) -> BTreeMap<String, u64> {
        let text = render_metrics(&self.registry);
        text.lines()
            .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{'))
            .filter_map(|rest| {
                let (labels, value) = rest.rsplit_once("} ")?;
                Some((labels.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    /// One series' value.
    fn metric(&self, name: &str, labels: &str) -> u64 {
        *self
            .series(name)
            .get(labels)
            .unwrap_or_else(|| panic!("no series {name}{{{labels}}}"))
    }

    fn handled(&self) -> u64 {
        self.work.handled.load(Ordering::SeqCst)
    }
}

fn labels(kind: &str, method: &str) -> String {
    format!(r#"grpc_type="{kind}",grpc_service="echo.v1.EchoService",grpc_method="{method}""#)
}

fn with_code(kind: &str, method: &str, code: &str) -> String {
    format!(r#"{},grpc_code="{code}""#, labels(kind, method))
}

fn with_policy(kind: &str, method: &str, policy: &str) -> String {
    format!(r#"{},policy="{policy}""#, labels(kind, method))
}

/// A gRPC message: the 5-byte length prefix and `payload`.
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An encoded `EchoRequest { text }`.
fn echo(text: &str) -> Vec<u8> {
    prost::Message::encode_to_vec(&EchoRequest { text: text.into() })
}

/// How a raw request sends its body.
enum Body {
    /// All of it with the headers.
    Now(Vec<u8>),
    /// After `delay`, then the end of the stream.
    Late(Duration, Vec<u8>),
    /// All of it with the headers, and the stream left open.
    Open(Vec<u8>),
}

/// The status of a raw HTTP/2 gRPC request: its `grpc-status` and `grpc-message`, from
/// trailers-only headers or from the trailers. The late part of a body is sent by a task
/// the caller awaits through the returned handle.
async fn raw(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> (Code, String, tokio::task::JoinHandle<()>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut send = send.ready().await.unwrap();
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (response, mut stream) = send.send_request(request.body(()).unwrap(), false).unwrap();
    let sender = match body {
        Body::Now(bytes) => {
            stream.send_data(Bytes::from(bytes), true).unwrap();
            tokio::spawn(async {})
        }
        Body::Open(bytes) => {
            stream.send_data(Bytes::from(bytes), false).unwrap();
            tokio::spawn(async move {
                // Keep the stream open until the answer came.
                tokio::time::sleep(BOUND).await;
                drop(stream);
            })
        }
        Body::Late(delay, bytes) => tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // The server may have answered and reset the stream already.
            let _ = stream.send_data(Bytes::from(bytes), true);
        }),
    };
    let response = tokio::time::timeout(BOUND, response)
        .await
        .expect("an answer in time")
        .unwrap();
    let (parts, mut body) = response.into_parts();
    let status_of = |map: &http::HeaderMap| {
        let status = Status::from_header_map(map)?;
        Some((status.code(), status.message().to_owned()))
    };
    let (code, message) = match status_of(&parts.headers) {
        Some(status) => status,
        None => {
            while let Some(chunk) = tokio::time::timeout(BOUND, body.data()).await.unwrap() {
                let _ = chunk;
            }
            let trailers = tokio::time::timeout(BOUND, body.trailers())
                .await
                .unwrap()
                .unwrap()
                .expect("trailers");
            status_of(&trailers).expect("a grpc-status")
        }
    };
    (code, message, sender)
}

/// Waits (bounded) until `done`.
async fn until(done: impl Fn() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(BOUND, wait).await.expect("in time");
}

const UNARY: &str = "/echo.v1.EchoService/Unary";
const SERVER_STREAM: &str = "/echo.v1.EchoService/ServerStream";
const CLIENT_STREAM: &str = "/echo.v1.EchoService/ClientStream";

#[tokio::test]
async fn a_body_after_the_deadline_is_deadline_exceeded_and_the_handler_never_runs() {
    let server = Server::start().await;
    // `Unary`'s `timeout_ms` is 200; its body comes at 400 ms.
    let (code, message, sender) = raw(
        server.addr,
        UNARY,
        &[],
        Body::Late(Duration::from_millis(400), framed(&echo("late"))),
    )
    .await;
    assert_eq!(
        (code, message.as_str()),
        (Code::DeadlineExceeded, "Unary: deadline exceeded")
    );
    tokio::time::timeout(BOUND, sender).await.unwrap().unwrap();
    assert_eq!(server.handled(), 0);

    // The client's `grpc-timeout` on an RPC without `timeout_ms`: the same.
    let (code, message, sender) = raw(
        server.addr,
        SERVER_STREAM,
        &[("grpc-timeout", "150m")],
        Body::Late(Duration::from_millis(400), framed(&[])),
    )
    .await;
    assert_eq!(
        (code, message.as_str()),
        (Code::DeadlineExceeded, "ServerStream: deadline exceeded")
    );
    tokio::time::timeout(BOUND, sender).await.unwrap().unwrap();
    assert_eq!(server.handled(), 0);

    let m = "grpc_server_handled_total";
    assert_eq!(
        server.metric(m, &with_code("unary", "Unary", "DeadlineExceeded")),
        1
    );
    assert_eq!(
        server.metric(
            m,
            &with_code("server_stream", "ServerStream", "DeadlineExceeded")
        ),
        1
    );
    let r = "grpc_server_rejected_total";
    assert_eq!(
        server.metric(r, &with_policy("unary", "Unary", "deadline")),
        1
    );
    assert_eq!(
        server.metric(r, &with_policy("server_stream", "ServerStream", "deadline")),
        1
    );
}

#[tokio::test]
async fn a_deadline_of_one_nanosecond_is_over_before_the_handler() {
    let server = Server::start().await;
    let (code, message, _) = raw(
        server.addr,
        UNARY,
        &[("grpc-timeout", "1n")],
        Body::Now(framed(&echo("hi"))),
    )
    .await;
    assert_eq!(
        (code, message.as_str()),
        (Code::DeadlineExceeded, "Unary: deadline exceeded")
    );
    assert_eq!(server.handled(), 0);
    let r = "grpc_server_rejected_total";
    assert_eq!(
        server.metric(r, &with_policy("unary", "Unary", "deadline")),
        1
    );
}

#[tokio::test]
async fn a_malformed_grpc_timeout_is_internal_and_counted() {
    let server = Server::start().await;
    for value in ["-1S", "abc", "99999999999H"] {
        let (code, message, _) = raw(
            server.addr,
            UNARY,
            &[("grpc-timeout", value)],
            Body::Now(framed(&echo("hi"))),
        )
        .await;
        assert_eq!(
            (code, message),
            (Code::Internal, format!("malformed grpc-timeout: {value}"))
        );
    }
    assert_eq!(server.handled(), 0);
    assert_eq!(
        server.metric(
            "grpc_server_rejected_total",
            &with_policy("unary", "Unary", "grpc_timeout")
        ),
        3
    );
    assert_eq!(
        server.metric(
            "grpc_server_handled_total",
            &with_code("unary", "Unary", "Internal")
        ),
        3
    );
}

#[tokio::test]
async fn oversized_messages_are_resource_exhausted_before_they_are_buffered() {
    let server = Server::start().await;
    // 5 MiB through tonic's own client: above tonic's 4 MiB default.
    let mut client = server.client().await;
    let five_mib = "x".repeat(5 << 20);
    let status = tokio::time::timeout(BOUND, client.unary(EchoRequest { text: five_mib }))
        .await
        .unwrap()
        .unwrap_err();
    let len = echo(&"x".repeat(5 << 20)).len();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        format!(
            "Unary: request message of {len} bytes exceeds the limit of 4194304 bytes, refused at its length prefix"
        )
    );

    // A prefix announcing 4 GiB - 1, and nothing behind it.
    let mut prefix = vec![0];
    prefix.extend_from_slice(&u32::MAX.to_be_bytes());
    let (code, message, _) = raw(server.addr, UNARY, &[], Body::Open(prefix)).await;
    assert_eq!(
        (code, message.as_str()),
        (
            Code::ResourceExhausted,
            "Unary: request message of 4294967295 bytes exceeds the limit of 4194304 bytes, refused at its length prefix"
        )
    );

    // `ClientStream` has `max_message_bytes = 256`: a 1 MiB prefix is refused at once,
    // after one valid message.
    let mut stream = framed(&echo("first"));
    stream.push(0);
    stream.extend_from_slice(&(1u32 << 20).to_be_bytes());
    stream.extend_from_slice(&[0; 64]);
    let (code, message, _) = raw(server.addr, CLIENT_STREAM, &[], Body::Open(stream)).await;
    assert_eq!(
        (code, message.as_str()),
        (
            Code::ResourceExhausted,
            "ClientStream: request message of 1048576 bytes exceeds the limit of 256 bytes, refused at its length prefix"
        )
    );
    // The prefix came in the same DATA frame as the first message: the whole frame is
    // refused, so the handler saw no message.
    assert_eq!(server.work.received.load(Ordering::SeqCst), 0);

    let m = "grpc_server_handled_total";
    assert_eq!(
        server.metric(m, &with_code("unary", "Unary", "ResourceExhausted")),
        2
    );
    assert_eq!(
        server.metric(m, &with_code("unary", "Unary", "OutOfRange")),
        0
    );
    assert_eq!(
        server.metric(
            m,
            &with_code("client_stream", "ClientStream", "ResourceExhausted")
        ),
        1
    );
    let r = "grpc_server_rejected_total";
    assert_eq!(server.metric(r, &with_policy("unary", "Unary", "limit")), 2);
    assert_eq!(
        server.metric(r, &with_policy("client_stream", "ClientStream", "limit")),
        1
    );
}

/// tonic's own `OUT_OF_RANGE` for a message over the generated server's
/// `max_decoding_message_size` (below the edge's limit here) goes out as the spec's
/// `RESOURCE_EXHAUSTED`, counted under `limit`.
#[tokio::test]
async fn tonics_out_of_range_for_an_oversized_message_is_resource_exhausted() {
    let server = Server::start_with(|server| server.max_decoding_message_size(1024)).await;
    let mut client = server.client().await;
    let status = tokio::time::timeout(
        BOUND,
        client.unary(EchoRequest {
            text: "x".repeat(2048),
        }),
    )
    .await
    .unwrap()
    .unwrap_err();
    let len = echo(&"x".repeat(2048)).len();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        format!(
            "Error, decoded message length too large: found {len} bytes, the limit is: 1024 bytes"
        )
    );
    assert_eq!(server.handled(), 0);
    let m = "grpc_server_handled_total";
    assert_eq!(
        server.metric(m, &with_code("unary", "Unary", "ResourceExhausted")),
        1
    );
    assert_eq!(
        server.metric(m, &with_code("unary", "Unary", "OutOfRange")),
        0
    );
    assert_eq!(
        server.metric(
            "grpc_server_rejected_total",
            &with_policy("unary", "Unary", "limit")
        ),
        1
    );
}

/// A small compressed message that decompresses past the generated server's limit:
/// tonic's `RESOURCE_EXHAUSTED`, counted under `limit` (the handler never sees it).
#[tokio::test]
async fn a_message_that_decompresses_past_the_limit_is_counted_as_limit() {
    use tonic::codec::CompressionEncoding::Gzip;
    let server = Server::start_with(|server| {
        server
            .accept_compressed(Gzip)
            .max_decoding_message_size(1024)
    })
    .await;
    let mut client = server.client().await.send_compressed(Gzip);
    let status = tokio::time::timeout(
        BOUND,
        client.unary(EchoRequest {
            text: "x".repeat(4096),
        }),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "Error decompressing: size limit, of 1024 bytes, exceeded while decompressing message"
    );
    assert_eq!(server.handled(), 0);
    assert_eq!(
        server.metric(
            "grpc_server_rejected_total",
            &with_policy("unary", "Unary", "limit")
        ),
        1
    );
    assert_eq!(
        server.metric(
            "grpc_server_handled_total",
            &with_code("unary", "Unary", "ResourceExhausted")
        ),
        1
    );
}

#[tokio::test]
async fn unknown_methods_and_undecodable_messages_are_counted() {
    let server = Server::start().await;
    let (code, _, _) = raw(
        server.addr,
        "/echo.v1.EchoService/Nope",
        &[],
        Body::Now(framed(&[])),
    )
    .await;
    assert_eq!(code, Code::Unimplemented);
    let (code, _, _) = raw(
        server.addr,
        "/echo.v1.EchoService/AlsoNope",
        &[],
        Body::Now(framed(&[])),
    )
    .await;
    assert_eq!(code, Code::Unimplemented);
    // Field 1 announced as a string of 100 bytes, with 1 byte behind it.
    let (code, message, _) = raw(server.addr, UNARY, &[], Body::Now(framed(&[0x0a, 100, 1]))).await;
    assert_eq!(code, Code::Internal);
    assert!(
        message.starts_with("failed to decode Protobuf message"),
        "{message}"
    );
    assert_eq!(server.handled(), 0);

    let unknown =
        r#"grpc_type="unknown",grpc_service="echo.v1.EchoService",grpc_method="<unknown>""#;
    assert_eq!(server.metric("grpc_server_started_total", unknown), 2);
    assert_eq!(
        server.metric(
            "grpc_server_handled_total",
            &format!(r#"{unknown},grpc_code="Unimplemented""#)
        ),
        2
    );
    assert_eq!(
        server.metric(
            "grpc_server_rejected_total",
            &format!(r#"{unknown},policy="unknown_method""#)
        ),
        2
    );
    assert_eq!(
        server.metric(
            "grpc_server_rejected_total",
            &with_policy("unary", "Unary", "decode")
        ),
        1
    );
    assert_eq!(
        server.metric(
            "grpc_server_handled_total",
            &with_code("unary", "Unary", "Internal")
        ),
        1
    );
}

#[tokio::test]
async fn without_edge_metrics_the_hook_counts_the_calls_it_sees() {
    let server = Server::start_uncounted().await;
    let mut client = server.client().await;
    client
        .unary(EchoRequest { text: "ok".into() })
        .await
        .unwrap();
    // Refused by the edge before a handler ran: the edge does not count, the hook never
    // saw it.
    let (code, _, _) = raw(
        server.addr,
        UNARY,
        &[("grpc-timeout", "abc")],
        Body::Now(vec![]),
    )
    .await;
    assert_eq!(code, Code::Internal);
    let unary = labels("unary", "Unary");
    assert_eq!(server.metric("grpc_server_started_total", &unary), 1);
    assert_eq!(
        server.metric(
            "grpc_server_handled_total",
            &with_code("unary", "Unary", "OK")
        ),
        1
    );
    assert_eq!(
        server.metric(
            "grpc_server_handled_total",
            &with_code("unary", "Unary", "Internal")
        ),
        0
    );
    let started = server.series("grpc_server_started_total");
    assert!(!started.keys().any(|labels| labels.contains("<unknown>")));
}

/// Every call of every scenario above, on one server: each `started` has exactly one
/// `handled`, whoever answered (the edge, tonic, the handler's guard or the handler).
#[tokio::test]
async fn every_started_call_is_handled_exactly_once() {
    let server = Server::start().await;
    let addr = server.addr;
    let mut client = server.client().await;
    let reply = client
        .unary(EchoRequest { text: "ok".into() })
        .await
        .unwrap();
    assert_eq!(reply.get_ref().text, "2");
    let summary = client
        .client_stream(tokio_stream::iter(vec![
            EchoRequest { text: "a".into() },
            EchoRequest { text: "b".into() },
        ]))
        .await
        .unwrap();
    assert_eq!(summary.get_ref().received, 2);
    let status = client
        .unary(EchoRequest {
            text: "x".repeat(5 << 20),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);

    let late = Body::Late(Duration::from_millis(400), framed(&echo("late")));
    let (code, _, sender) = raw(addr, UNARY, &[], late).await;
    assert_eq!(code, Code::DeadlineExceeded);
    tokio::time::timeout(BOUND, sender).await.unwrap().unwrap();
    let (code, _, _) = raw(
        addr,
        UNARY,
        &[("grpc-timeout", "1n")],
        Body::Now(framed(&[])),
    )
    .await;
    assert_eq!(code, Code::DeadlineExceeded);
    for value in ["-1S", "abc", "99999999999H"] {
        let (code, _, _) = raw(addr, UNARY, &[("grpc-timeout", value)], Body::Now(vec![])).await;
        assert_eq!(code, Code::Internal);
    }
    let mut prefix = vec![0];
    prefix.extend_from_slice(&u32::MAX.to_be_bytes());
    let (code, _, _) = raw(addr, CLIENT_STREAM, &[], Body::Open(prefix)).await;
    assert_eq!(code, Code::ResourceExhausted);
    let (code, _, _) = raw(addr, "/echo.v1.EchoService/Nope", &[], Body::Now(vec![])).await;
    assert_eq!(code, Code::Unimplemented);
    let (code, _, _) = raw(addr, UNARY, &[], Body::Now(framed(&[0x0a, 100, 1]))).await;
    assert_eq!(code, Code::Internal);
    // A bidi call the handler refuses itself.
    let status = client
        .bidi(tokio_stream::iter(Vec::<EchoRequest>::new()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);

    // A client that gives up on an upload that has no deadline, once the server has
    // started it: `CANCELLED`, once.
    let mut uploader = client.clone();
    let upload = tokio::spawn(async move {
        let _ = uploader
            .client_stream(tokio_stream::pending::<EchoRequest>())
            .await;
    });
    let client_stream = labels("client_stream", "ClientStream");
    until(|| server.metric("grpc_server_started_total", &client_stream) == 3).await;
    upload.abort();
    let canceled = with_code("client_stream", "ClientStream", "Canceled");
    until(|| server.metric("grpc_server_handled_total", &canceled) == 1).await;

    let started = server.series("grpc_server_started_total");
    let handled = server.series("grpc_server_handled_total");
    let mut sums: BTreeMap<String, u64> = BTreeMap::new();
    for (labels, value) in &handled {
        let method = labels.rsplit_once(",grpc_code=").unwrap().0.to_owned();
        *sums.entry(method).or_default() += value;
    }
    assert_eq!(started, sums);
    let expected: BTreeMap<String, u64> = [
        (labels("unary", "Unary"), 8),
        (labels("client_stream", "ClientStream"), 3),
        (labels("server_stream", "ServerStream"), 0),
        (labels("bidi_stream", "Bidi"), 1),
        (
            r#"grpc_type="unknown",grpc_service="echo.v1.EchoService",grpc_method="<unknown>""#
                .to_owned(),
            1,
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(started, expected);
    // The handler's own refusal is the handler's: no edge rule.
    assert_eq!(
        server.metric(
            "grpc_server_handled_total",
            &with_code("bidi_stream", "Bidi", "Unimplemented")
        ),
        1
    );
    // Messages stay the handler's count: the two of the successful upload.
    assert_eq!(
        server.metric(
            "grpc_server_msg_received_total",
            &labels("client_stream", "ClientStream")
        ),
        2
    );
}

/// tonic's decoder ends a request stream as if the client had finished it when the
/// client resets it (`RST_STREAM(CANCEL)`); behind the edge the handler sees `CANCELLED`
/// instead, so it does not take half an upload for a whole one, and the call is counted
/// `Canceled`, not `OK`.
#[tokio::test]
async fn an_upload_its_client_resets_ends_cancelled_not_finished() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let upload = tokio::spawn(async move {
        let _ = client.client_stream(ReceiverStream::new(rx)).await;
    });
    for text in ["a", "b"] {
        tx.send(EchoRequest { text: text.into() }).await.unwrap();
    }
    until(|| server.work.received.load(Ordering::SeqCst) == 2).await;
    // The client gives up: its call future is dropped, which resets the stream.
    upload.abort();
    until(|| server.work.upload_ended.lock().unwrap().is_some()).await;
    assert_eq!(
        *server.work.upload_ended.lock().unwrap(),
        Some(Code::Cancelled)
    );
    assert_eq!(server.work.received.load(Ordering::SeqCst), 2);
    let canceled = with_code("client_stream", "ClientStream", "Canceled");
    until(|| server.metric("grpc_server_handled_total", &canceled) == 1).await;
    assert_eq!(server.handled(), 1);
    assert_eq!(
        server.metric(
            "grpc_server_msg_received_total",
            &labels("client_stream", "ClientStream")
        ),
        2
    );
}
