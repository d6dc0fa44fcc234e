//! Hostile clients against `tonic_intercept::server::Server`, with raw HTTP/2 frames
//! over loopback; after each, a victim client on another connection is still served.

mod common_serve;

use std::time::Duration;

use common_serve::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic_intercept::server::Server;

const UNARY: &str = "/echo.v1.EchoService/Unary";

/// HEADERS then RST_STREAM(CANCEL), stream after stream (CVE-2023-44487): h2 counts the
/// streams reset before the server accepted them, and the 21st (past the default of 20)
/// gets GOAWAY ENHANCE_YOUR_CALM.
#[tokio::test]
async fn rapid_reset_is_answered_with_goaway_enhance_your_calm() {
    assert_eq!(Server::DEFAULT_MAX_PENDING_ACCEPT_RESET_STREAMS, 20);
    let server = start(Server::builder()).await;
    let mut raw = Raw::connect(server.addr).await;

    let mut burst = Vec::new();
    for i in 0..21u32 {
        let id = 2 * i + 1;
        burst.extend(frame(HEADERS, END_HEADERS, id, &grpc_request(UNARY, &[])));
        burst.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    raw.writer.write_all(&burst).await.unwrap();
    let frames = raw.reader.read_until(|_| false).await;
    let goaway = frames.last().expect("a GOAWAY");
    assert_eq!(goaway.kind, GOAWAY, "{frames:?}");
    assert_eq!(goaway.goaway().1, ENHANCE_YOUR_CALM);

    victim_is_served(server.addr).await;
    server.stop().await;
}

/// Requests the server must reset (END_STREAM on HEADERS with `content-length: 1`, a
/// malformed request per RFC 9113 §8.1.1), one more than the cap of 1,024: the server
/// answers RST_STREAM (PROTOCOL_ERROR, then REFUSED_STREAM once the reset streams fill
/// the concurrent-stream slots), then GOAWAY ENHANCE_YOUR_CALM no later than the
/// 1,025th stream (tonic's own server resets forever). With the cap raised, the same
/// 1,025 streams are each reset and the connection stays.
#[tokio::test]
async fn forced_local_resets_end_in_goaway_at_the_cap() {
    let cap = Server::DEFAULT_MAX_LOCAL_ERROR_RESET_STREAMS;
    assert_eq!(cap, 1024);
    let bad = cap as u32 + 1;
    let burst: Vec<u8> = (0..bad)
        .flat_map(|i| {
            let block = grpc_request(UNARY, &[("content-length", "1")]);
            frame(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1, &block)
        })
        .collect();

    let server = start(Server::builder()).await;
    let raw = Raw::connect(server.addr).await;
    let (mut reader, mut writer) = (raw.reader, raw.writer);
    let sent = burst.clone();
    let write = tokio::spawn(async move {
        let _ = writer.write_all(&sent).await;
        writer
    });
    let frames = reader.read_until(|_| false).await;
    let resets: Vec<u32> = frames
        .iter()
        .filter(|f| f.kind == RST_STREAM)
        .map(|f| f.reset_code())
        .collect();
    // h2 keeps a locally reset stream counted against the 128 concurrent streams for a
    // while, so 128 are reset PROTOCOL_ERROR and the others refused; both
    // count towards the cap. Measured (h2 0.4.20): 128 + 768 RST_STREAMs, GOAWAY with
    // last stream 1893.
    let protocol_errors = resets.iter().filter(|&&c| c == PROTOCOL_ERROR).count();
    assert_eq!(protocol_errors, 128);
    let refused = resets.iter().filter(|&&c| c == REFUSED_STREAM).count();
    assert_eq!(protocol_errors + refused, resets.len());
    assert!(resets.len() <= cap, "{}", resets.len());
    let (last_stream, code) = frames.last().unwrap().goaway();
    assert_eq!(code, ENHANCE_YOUR_CALM);
    assert!(last_stream < 2 * bad + 1, "{last_stream}");
    drop(write.await.unwrap());
    victim_is_served(server.addr).await;
    server.stop().await;

    let server = start(Server::builder().max_local_error_reset_streams(2 * cap)).await;
    let raw = Raw::connect(server.addr).await;
    let (mut reader, mut writer) = (raw.reader, raw.writer);
    let write = tokio::spawn(async move {
        writer.write_all(&burst).await.unwrap();
        writer
    });
    let mut resets = 0;
    let frames = reader
        .read_until(|f| {
            if f.kind == RST_STREAM {
                assert!([PROTOCOL_ERROR, REFUSED_STREAM].contains(&f.reset_code()));
                resets += 1;
            }
            resets == bad
        })
        .await;
    assert_eq!(resets, 1025);
    assert!(frames.iter().all(|f| f.kind != GOAWAY));
    let writer = write.await.unwrap();
    victim_is_served(server.addr).await;
    drop((reader, writer));
    server.stop().await;
}

/// 10,000 streams on one connection: SETTINGS_MAX_CONCURRENT_STREAMS is advertised at
/// 128; 128 streams are open and the other 9,872 are refused with REFUSED_STREAM. Each
/// refusal counts towards the local-reset cap (h2), raised here to let all 9,872 through.
#[tokio::test]
async fn ten_thousand_streams_on_one_connection_are_refused_past_the_advertised_limit() {
    assert_eq!(Server::DEFAULT_MAX_CONCURRENT_STREAMS, 128);
    let server = start(Server::builder().max_local_error_reset_streams(20_000)).await;
    let mut raw = Raw::connect(server.addr).await;
    assert!(
        raw.settings
            .contains(&(SETTINGS_MAX_CONCURRENT_STREAMS, 128)),
        "{:?}",
        raw.settings
    );
    assert!(
        raw.settings
            .contains(&(SETTINGS_MAX_HEADER_LIST_SIZE, 16 * 1024)),
        "{:?}",
        raw.settings
    );

    let streams = 10_000u32;
    let mut burst = Vec::new();
    for i in 0..streams {
        burst.extend(frame(
            HEADERS,
            END_HEADERS,
            2 * i + 1,
            &grpc_request(UNARY, &[]),
        ));
    }
    let mut writer = raw.writer;
    let write = tokio::spawn(async move {
        writer.write_all(&burst).await.unwrap();
        writer
    });
    let mut refused = 0;
    let frames = raw
        .reader
        .read_until(|f| {
            if f.kind == RST_STREAM {
                assert_eq!(f.reset_code(), REFUSED_STREAM);
                refused += 1;
            }
            refused == streams - 128
        })
        .await;
    assert_eq!(refused, 9_872);
    assert!(frames.iter().all(|f| f.kind != GOAWAY));
    // The refused ones are the last 9,872: the first 128 streams are the open ones.
    let first_refused = frames
        .iter()
        .filter(|f| f.kind == RST_STREAM)
        .map(|f| f.stream)
        .min()
        .unwrap();
    assert_eq!(first_refused, 2 * 128 + 1);
    raw.writer = write.await.unwrap();

    victim_is_served(server.addr).await;
    drop(raw);
    server.stop().await;
}

/// HEADERS without END_HEADERS followed by CONTINUATION frames: with a 16 KiB header
/// list and 16 KiB frames, h2 accepts 5 CONTINUATIONs of one block; the 6th gets
/// GOAWAY ENHANCE_YOUR_CALM.
#[tokio::test]
async fn continuation_flood_is_answered_with_goaway() {
    let server = start(Server::builder()).await;
    let mut raw = Raw::connect(server.addr).await;

    let mut burst = frame(HEADERS, 0, 1, &grpc_request(UNARY, &[]));
    for i in 0..6 {
        let field = format!("x-flood-{i}");
        burst.extend(frame(CONTINUATION, 0, 1, &hpack(&[(&field, "a")])));
    }
    raw.writer.write_all(&burst).await.unwrap();
    let frames = raw.reader.read_until(|_| false).await;
    let goaway = frames.last().expect("a GOAWAY");
    assert_eq!(goaway.kind, GOAWAY, "{frames:?}");
    assert_eq!(goaway.goaway(), (0, ENHANCE_YOUR_CALM));

    victim_is_served(server.addr).await;
    server.stop().await;
}

/// Connections that send nothing, or half a preface, are closed after the handshake
/// timeout; the file descriptors come back.
#[tokio::test]
async fn silent_connections_are_closed_after_the_handshake_timeout() {
    let baseline = open_fds();
    let server = start(Server::builder().handshake_timeout(Duration::from_millis(300))).await;

    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    silent.push(half);

    for stream in &mut silent {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf))
            .await
            .expect("closed by the server");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    drop(silent);
    victim_is_served(server.addr).await;
    server.stop().await;
    // Every socket of both ends is closed again (a generous margin for the runtime).
    assert!(
        open_fds() <= baseline + 8,
        "{} > {baseline} + 8",
        open_fds()
    );
}

/// Up to the connection cap the server accepts; past it, new clients wait in the listen
/// backlog (no file descriptor on the server side), and are served once the cap frees.
#[tokio::test]
async fn connections_past_the_cap_wait_and_are_served_once_it_frees() {
    let server = start(
        Server::builder()
            .max_connections(4)
            .handshake_timeout(Duration::from_secs(2)),
    )
    .await;
    let baseline = open_fds();

    let mut held = Vec::new();
    for _ in 0..4 {
        // Raw::connect returns once the server's SETTINGS arrived: accepted.
        held.push(Raw::connect(server.addr).await);
    }
    let mut waiting = Vec::new();
    // 100: within the smallest listen backlog met (128).
    for _ in 0..100 {
        waiting.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // 4 held (both ends) and 100 clients: had the server accepted the 100, it would hold
    // 100 descriptors more.
    let fds = open_fds();
    assert!(
        fds <= baseline + 2 * 4 + 100 + 16,
        "{fds} fds, baseline {baseline}"
    );

    // A client past the cap is not served while the cap is full.
    let victim = tokio::spawn(victim_is_served(server.addr));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!victim.is_finished());

    // Free the cap: the waiting clients leave, two held connections close.
    drop(waiting);
    held.truncate(2);
    victim.await.unwrap();
    drop(held);
    server.stop().await;
}
