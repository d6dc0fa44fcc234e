//! The names this crate reads and writes on the wire, and the formats it parses.
//!
//! Every header name lives here, so a reader (or a proxy's configuration) finds them in
//! one place: the request id, the trace context, the server's retry pushback, the
//! idempotency key and its replay marker, and gRPC's own `grpc-timeout` and
//! `grpc-previous-rpc-attempts`.

use std::time::Duration;

use tonic::codegen::http::HeaderName;
use tonic::metadata::MetadataMap;

/// The request id header: kept across a call's attempts and forwarded by the client from
/// the incoming call.
pub const REQUEST_ID: &str = "x-request-id";

/// The W3C trace context header, read on incoming calls and continued on outgoing ones.
pub const TRACEPARENT: &str = "traceparent";

/// The response trailer that tells a client when to retry (gRFC A6), in milliseconds.
pub const RETRY_PUSHBACK: &str = "grpc-retry-pushback-ms";

/// The request metadata that carries a call's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The response metadata set (to `true`) on a replayed response.
pub const IDEMPOTENCY_REPLAYED: &str = "idempotency-replayed";

/// The header gRFC A6 puts on each retry: how many attempts came before it.
pub(crate) const PREVIOUS_ATTEMPTS: &str = "grpc-previous-rpc-attempts";

/// gRPC's deadline header.
pub(crate) const GRPC_TIMEOUT: &str = "grpc-timeout";

/// Header names built once: a lookup by `&str` parses the name on every call.
pub(crate) static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static(REQUEST_ID);
pub(crate) static TRACEPARENT_HEADER: HeaderName = HeaderName::from_static(TRACEPARENT);

/// Parses the `grpc-timeout` header: 1 to 8 digits and a unit (H, M, S, m, u, n).
pub(crate) fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.get(GRPC_TIMEOUT)?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Option<Duration> {
        let mut m = MetadataMap::new();
        m.insert("grpc-timeout", v.parse().unwrap());
        grpc_timeout(&m)
    }

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("150m"), Some(Duration::from_millis(150)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(parse("12x"), None);
        assert_eq!(parse("S"), None);
        assert_eq!(parse("123456789S"), None);
    }
}
