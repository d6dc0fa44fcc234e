//! The names this crate reads and writes on the wire, and the formats it parses.
//!
//! Every header name lives here, so a reader (or a proxy's configuration) finds them in
//! one place: the request id, the trace context, the server's retry pushback, the
//! idempotency key and its replay marker, and gRPC's own `grpc-timeout` and
//! `grpc-previous-rpc-attempts`.

use std::time::Duration;

use tonic::Status;
use tonic::codegen::http::HeaderName;
use tonic::metadata::MetadataMap;

/// The request id header: kept across a call's attempts and forwarded by the client from
/// the incoming call.
pub const REQUEST_ID: &str = "x-request-id";

/// The W3C trace context header, read on incoming calls and continued on outgoing ones.
pub const TRACEPARENT: &str = "traceparent";

/// The response trailer that tells a client when to retry (gRFC A6), in milliseconds.
pub const RETRY_PUSHBACK: &str = "grpc-retry-pushback-ms";

/// On a call refused by a shared call rate: how many more calls its bucket admits now
/// (`0`), as Envoy's rate limit filter writes it.
pub const RATELIMIT_REMAINING: &str = "x-ratelimit-remaining";

/// On a call refused by a shared call rate: seconds until its bucket is full again, as
/// Envoy's rate limit filter writes it.
pub const RATELIMIT_RESET: &str = "x-ratelimit-reset";

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

/// Reads the `grpc-timeout` header, ignoring a malformed value (what a client and a call
/// without the edge do; the edge refuses it, see [`parse_grpc_timeout`]).
pub(crate) fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.as_ref().get(GRPC_TIMEOUT)?;
    parse_grpc_timeout(value.as_bytes()).ok()
}

/// A `grpc-timeout` value that is not 1 to 8 ASCII digits followed by a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MalformedTimeout;

/// Parses a `grpc-timeout` value as the gRPC over HTTP/2 spec defines it: 1 to 8 ASCII
/// digits, then a unit (`H`, `M`, `S`, `m`, `u`, `n`). Anything else is malformed.
pub(crate) fn parse_grpc_timeout(value: &[u8]) -> Result<Duration, MalformedTimeout> {
    let Some((&unit, digits)) = value.split_last() else {
        return Err(MalformedTimeout);
    };
    if digits.is_empty() || digits.len() > 8 {
        return Err(MalformedTimeout);
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(MalformedTimeout);
        }
        n = n * 10 + u64::from(d - b'0');
    }
    // At most 99,999,999 of a unit: even in hours this fits a `Duration`.
    Ok(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(MalformedTimeout),
    })
}

/// Follows the 5-byte length prefixes of a gRPC message stream (a compressed flag, then
/// a big-endian `u32` length) across DATA chunks of any size, and refuses a message
/// whose prefix announces more than `max` bytes before any of it is buffered.
///
/// Per chunk it does a few comparisons per message boundary and nothing per byte of a
/// message; it never allocates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PrefixMeter {
    max: u64,
    /// Bytes of the current message still to skip; `None` while reading a prefix.
    body_left: u64,
    /// Prefix bytes read so far (0 to 4) while `body_left` is 0.
    header: [u8; 5],
    have: u8,
}

impl PrefixMeter {
    /// A meter that refuses a message of more than `max` bytes.
    pub(crate) const fn new(max: u64) -> Self {
        Self {
            max,
            body_left: 0,
            header: [0; 5],
            have: 0,
        }
    }

    /// The largest message it lets through.
    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// Follows `chunk`; `Err(len)` with the announced length of the first message longer
    /// than the limit.
    #[inline]
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), u64> {
        let mut at = 0;
        loop {
            let rest = chunk.len() - at;
            if self.body_left > 0 {
                if self.body_left >= rest as u64 {
                    self.body_left -= rest as u64;
                    return Ok(());
                }
                at += self.body_left as usize;
                self.body_left = 0;
                continue;
            }
            if rest == 0 {
                return Ok(());
            }
            // A whole prefix in this chunk (the usual case): read it in place.
            if self.have == 0
                && let Some(&[_, a, b, c, d]) = chunk.get(at..at + 5)
            {
                at += 5;
                self.announce(u32::from_be_bytes([a, b, c, d]))?;
                continue;
            }
            // A prefix split across chunks.
            self.header[usize::from(self.have)] = chunk[at];
            self.have += 1;
            at += 1;
            if self.have == 5 {
                self.have = 0;
                let [_, a, b, c, d] = self.header;
                self.announce(u32::from_be_bytes([a, b, c, d]))?;
            }
        }
    }

    fn announce(&mut self, len: u32) -> Result<(), u64> {
        let len = u64::from(len);
        if len > self.max {
            return Err(len);
        }
        self.body_left = len;
        Ok(())
    }
}

/// The end of the message a request stream yields when its client reset it: tonic would
/// end the stream as if the client had finished it (see `server::edge::EdgeBody`).
pub(crate) const CLIENT_CANCELLED: &str = "the client cancelled the call";

/// What a request stream yields when its client reset it (`RST_STREAM(CANCEL)`) before
/// its deadline: `ABORTED`, since tonic's decoder swallows a `CANCELLED` from the body.
pub(crate) fn client_cancelled(method: &str) -> Status {
    Status::aborted(format!("{method}: {CLIENT_CANCELLED}"))
}

/// Whether `status` is [`client_cancelled`]'s.
pub(crate) fn is_client_cancelled(status: &Status) -> bool {
    status.code() == tonic::Code::Aborted && status.message().ends_with(CLIENT_CANCELLED)
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
        assert_eq!(
            parse("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        for bad in [
            "-1S",
            "abc",
            "99999999999H",
            "1",
            "",
            "+1S",
            "1s",
            " 1S",
            "1.5S",
        ] {
            assert_eq!(
                parse_grpc_timeout(bad.as_bytes()),
                Err(MalformedTimeout),
                "{bad:?}"
            );
        }
    }

    fn prefix(flag: u8, len: u32) -> Vec<u8> {
        let mut v = vec![flag];
        v.extend_from_slice(&len.to_be_bytes());
        v
    }

    #[test]
    fn prefixes_are_followed_across_chunks() {
        let mut stream = prefix(0, 3);
        stream.extend_from_slice(b"abc");
        stream.extend(prefix(1, 10));
        stream.extend_from_slice(&[7; 10]);
        stream.extend(prefix(0, 0));
        stream.extend(prefix(0, 11));
        // Every split of the stream into two chunks, and byte by byte.
        for cut in 0..=stream.len() {
            let mut meter = PrefixMeter::new(10);
            assert_eq!(
                meter.feed(&stream[..cut]).and(meter.feed(&stream[cut..])),
                Err(11)
            );
        }
        let mut meter = PrefixMeter::new(10);
        let fed: Result<Vec<()>, u64> = stream.iter().map(|b| meter.feed(&[*b])).collect();
        assert_eq!(fed, Err(11));
        let mut meter = PrefixMeter::new(11);
        assert_eq!(meter.feed(&stream), Ok(()));
        let mut meter = PrefixMeter::new(4 << 20);
        assert_eq!(meter.feed(&prefix(0, u32::MAX)), Err(u64::from(u32::MAX)));
    }
}
