//! `serve_metrics`: `GET /metrics` over HTTP/1.1, read with a hand-written client so the
//! check sees the bytes Prometheus would: every series at zero before the first call, the
//! OpenMetrics content type, `# EOF`, and a graceful stop.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;
use tonic_intercept::metrics::METRICS_CONTENT_TYPE;
use tonic_intercept_examples::pb::GetUserRequest;
use tonic_intercept_examples::serve_metrics;

use common::Served;

#[tokio::test]
async fn metrics_endpoint_serves_every_series_and_stops_gracefully() {
    let served = Served::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = listener.local_addr().unwrap();
    let metrics_server = tokio::spawn(serve_metrics(
        listener,
        served.services.registry.clone(),
        served.stopping(),
    ));

    // Before the first call: every series of the 10 RPCs is there, at zero, and each
    // service's one series for methods it does not have (counted by the server's edge).
    let (_, text) = http_get(metrics_addr, "/metrics").await.unwrap();
    let started: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("grpc_server_started_total{"))
        .collect();
    assert!(
        started.len() == 12
            && started.iter().all(|l| l.ends_with(" 0"))
            && started
                .iter()
                .filter(|l| l.contains(r#"grpc_method="<unknown>""#))
                .count()
                == 2,
        "before the first call /metrics has {} started series: {started:?}",
        started.len()
    );
    // Counters, histogram buckets, sums and counts: all there, all zero.
    let values: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let nonzero = values.iter().find(|l| {
        l.rsplit_once(' ')
            .and_then(|(_, v)| v.parse::<f64>().ok())
            .is_none_or(|v| v != 0.0)
    });
    assert!(nonzero.is_none(), "before the first call: {nonzero:?}");
    let place = labels("unary", "coffee.v1.OrderService", "PlaceOrder");
    series(
        &text,
        "grpc_server_handled_total",
        &format!(r#"{place},grpc_code="OK""#),
    )
    .unwrap();

    // One refused call, then the endpoint as Prometheus scrapes it.
    let mut users = served.users.clone();
    let refused = users.get_user(GetUserRequest { id: 1 }).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let (content_type, text) = http_get(metrics_addr, "/metrics").await.unwrap();
    assert!(
        content_type == METRICS_CONTENT_TYPE,
        "/metrics is served as {content_type:?}"
    );
    assert!(
        text.ends_with("# EOF\n"),
        "/metrics does not end with # EOF"
    );
    let get_user = labels("unary", "users.v1.UserService", "GetUser");
    let unauthenticated = format!(r#"{get_user},grpc_code="Unauthenticated""#);
    let (line, value) = series(&text, "grpc_server_handled_total", &unauthenticated).unwrap();
    assert_eq!(value, 1, "{line}");

    served.shutdown().await;
    tokio::time::timeout(Duration::from_secs(5), metrics_server)
        .await
        .expect("the metrics server did not shut down within 5s")
        .expect("metrics server task")
        .expect("metrics server");
}

/// `GET path` over HTTP/1.1 on a fresh connection: the `Content-Type` and the body.
async fn http_get(addr: SocketAddr, path: &str) -> Result<(String, String), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("GET http://{addr}{path}: no answer within 5s"))?
        .map_err(|e| format!("GET http://{addr}{path}: {e}"))?;
    let text = String::from_utf8(raw).map_err(|e| format!("GET {path}: not UTF-8: {e}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no end of headers in {text:?}"))?;
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("GET {path} answered {status}"));
    }
    let mut content_type = String::new();
    let mut chunked = false;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-type") {
                content_type = value.to_owned();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok((content_type, body))
}

/// The payload of a `Transfer-Encoding: chunked` body.
fn dechunk(mut rest: &str) -> Result<String, String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or("a truncated chunk")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("a chunk size: {e}"))?;
        if size == 0 {
            return Ok(body);
        }
        let chunk = after.get(..size).ok_or("a truncated chunk")?;
        body.push_str(chunk);
        rest = after
            .get(size..)
            .and_then(|r| r.strip_prefix("\r\n"))
            .ok_or("a chunk without its CRLF")?;
    }
}

fn labels(kind: &str, service: &str, method: &str) -> String {
    format!(r#"grpc_type="{kind}",grpc_service="{service}",grpc_method="{method}""#)
}

/// The line of one series, `name{labels} value`, and its value.
fn series<'a>(text: &'a str, name: &str, labels: &str) -> Result<(&'a str, u64), String> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|line| {
            let value = line.strip_prefix(&prefix)?.parse().ok()?;
            Some((line, value))
        })
        .ok_or_else(|| format!("/metrics has no series `{name}{{{labels}}}`"))
}
