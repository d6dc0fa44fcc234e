//! What the hardened-server tests share: a plain echo service served by
//! `tonic_intercept::server::Server` on loopback, a victim client, and a raw HTTP/2
//! client that writes frames byte by byte.
#![allow(dead_code, unreachable_pub)]

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use tonic_intercept::server::{HealthServices, Server};
use tonic_intercept::tonic_health::pb::HealthCheckRequest;
use tonic_intercept::tonic_health::pb::health_check_response::ServingStatus;
use tonic_intercept::tonic_health::pb::health_client::HealthClient;
use tonic_intercept_tests::pb::echo_service_client::EchoServiceClient;
use tonic_intercept_tests::pb::echo_service_server::EchoServiceServer;
use tonic_intercept_tests::pb::{EchoReply, EchoRequest, StreamRequest, Summary};

/// `EchoService` without any policy but its edge; `Unary` answers the peer it saw.
#[derive(Debug, Default, Clone)]
pub struct Plain;

type Empty = tokio_stream::Empty<Result<EchoReply, Status>>;

#[tonic_intercept::intercept(public(*))]
#[tonic::async_trait]
impl tonic_intercept_tests::pb::echo_service_server::EchoService for Plain {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let peer = request.remote_addr().map(|a| a.to_string());
        let certs = request.peer_certs().map_or(0, |certs| certs.len());
        let text = request.into_inner().text;
        let text = match text.as_str() {
            "who" => format!(
                "peer={} certs={certs}",
                peer.unwrap_or_else(|| "none".into())
            ),
            _ => text,
        };
        Ok(Response::new(EchoReply { text, seq: 0 }))
    }

    type ServerStreamStream = Empty;

    async fn server_stream(
        &self,
        _request: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        Ok(Response::new(tokio_stream::empty()))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Summary>, Status> {
        let mut stream = request.into_inner();
        let mut texts = Vec::new();
        while let Some(message) = stream.next().await {
            texts.push(message?.text);
        }
        Ok(Response::new(Summary {
            received: texts.len() as u64,
            texts,
        }))
    }

    type BidiStream = Empty;

    async fn bidi(
        &self,
        _request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        Ok(Response::new(tokio_stream::empty()))
    }
}

/// A server running on loopback until stopped.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<io::Result<()>>,
}

/// Serves [`Plain`] and health with `server`'s settings on 127.0.0.1.
pub async fn start(server: Server) -> Running {
    start_echo(server.add_service(EchoServiceServer::new(Plain))).await
}

/// Serves `server`, which has an `EchoService` added, and health on 127.0.0.1.
pub async fn start_echo(server: Server) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = server.with_health(HealthServices::new().serving_named("echo.v1.EchoService"));
    let task = tokio::spawn(server.serve_with_shutdown(listener, async {
        let _ = stopped.await;
    }));
    Running { addr, stop, task }
}

impl Running {
    /// Stops the server; panics unless it stops within 40 s.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(40), self.task)
            .await
            .expect("the server stops")
            .expect("server task")
            .expect("server");
    }

    /// Starts the drain and hands back the server's task.
    pub fn begin_stop(self) -> JoinHandle<io::Result<()>> {
        let _ = self.stop.send(());
        self.task
    }
}

/// A channel to `addr` over plaintext HTTP/2.
pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A well-behaved client on its own connection: health answers `SERVING` and `Unary`
/// echoes.
pub async fn victim_is_served(addr: SocketAddr) {
    let call = async {
        let channel = channel(addr).await;
        let status = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32);
        let reply = EchoServiceClient::new(channel)
            .unary(EchoRequest {
                text: "victim".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.text, "victim");
    };
    tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the victim is served");
}

/// Open file descriptors of this process (client and server ends alike).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, the resident set now; `VmHWM`, its
/// peak).
pub fn vm_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// Resets `VmHWM` to the current `VmRSS` (writing 5 to `/proc/self/clear_refs`, Linux
/// 4.0+), so that the peak measured next is this test's; `false` where the kernel does not
/// let it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

// ----- raw HTTP/2 -----

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub const NO_ERROR: u32 = 0x0;
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const CANCEL: u32 = 0x8;
pub const REFUSED_STREAM: u32 = 0x7;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One HTTP/2 frame: 9-byte header (24-bit length, type, flags, 31-bit stream id), then
/// the payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK block of literal fields without indexing (no Huffman): names and values
/// under 127 bytes.
pub fn hpack(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        assert!(name.len() < 127 && value.len() < 127);
        out.push(0x00);
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.push(value.len() as u8);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// The fields of a gRPC request to `path`, then `extra`.
pub fn grpc_request(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut fields = vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ];
    fields.extend_from_slice(extra);
    hpack(&fields)
}

/// A frame as read back.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// `(last stream id, error code)` of a GOAWAY.
    pub fn goaway(&self) -> (u32, u32) {
        assert_eq!(self.kind, GOAWAY);
        let p = &self.payload;
        (
            u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff,
            u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        )
    }

    /// The error code of a RST_STREAM.
    pub fn reset_code(&self) -> u32 {
        assert_eq!(self.kind, RST_STREAM);
        let p = &self.payload;
        u32::from_be_bytes([p[0], p[1], p[2], p[3]])
    }

    /// The `(id, value)` entries of a SETTINGS frame.
    pub fn settings(&self) -> Vec<(u16, u32)> {
        assert_eq!(self.kind, SETTINGS);
        self.payload
            .chunks(6)
            .map(|c| {
                (
                    u16::from_be_bytes([c[0], c[1]]),
                    u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                )
            })
            .collect()
    }
}

/// A raw HTTP/2 client connection, split so that writing and reading can overlap.
#[derive(Debug)]
pub struct Raw {
    pub reader: Reader,
    pub writer: OwnedWriteHalf,
    /// The server's first SETTINGS.
    pub settings: Vec<(u16, u32)>,
}

impl Raw {
    /// Connects, sends the preface and an empty SETTINGS, reads the server's SETTINGS and
    /// acknowledges it (so that its limits apply from the next frame on).
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (reader, mut writer) = stream.into_split();
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        writer.write_all(&hello).await.unwrap();
        let mut raw = Raw {
            reader: Reader(reader),
            writer,
            settings: Vec::new(),
        };
        loop {
            let f = raw
                .reader
                .read_frame()
                .await
                .unwrap()
                .expect("the server's SETTINGS");
            if f.kind == SETTINGS && f.flags & ACK == 0 {
                raw.settings = f.settings();
                break;
            }
        }
        raw.writer
            .write_all(&frame(SETTINGS, ACK, 0, &[]))
            .await
            .unwrap();
        raw
    }
}

/// The reading half of a [`Raw`] connection.
#[derive(Debug)]
pub struct Reader(OwnedReadHalf);

impl Reader {
    /// The next frame, `None` at the end of the connection (EOF or reset).
    pub async fn read_frame(&mut self) -> io::Result<Option<Frame>> {
        let mut head = [0u8; 9];
        match self.0.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        self.0.read_exact(&mut payload).await?;
        Ok(Some(Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        }))
    }

    /// Reads frames until a GOAWAY, the end of the connection, or `stop` says so,
    /// bounded by 30 s; returns every frame read.
    pub async fn read_until(&mut self, mut stop: impl FnMut(&Frame) -> bool) -> Vec<Frame> {
        let read = async {
            let mut frames = Vec::new();
            while let Some(f) = self.read_frame().await.unwrap() {
                let done = f.kind == GOAWAY || stop(&f);
                frames.push(f);
                if done {
                    break;
                }
            }
            frames
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("the server answers within 30 s")
    }
}
