//! Tracing: the span of each call (with the caller's W3C trace context), and the
//! [`TraceCalls`] hook that logs calls and, if asked, their messages through a typed
//! redactor.

use std::fmt;

use tonic::metadata::MetadataMap;
use tonic::{Code, Status};
use tracing::{Level, Span};

use crate::call::{Call, CallOutcome};
use crate::metrics::grpc_code_label;
use crate::policy::hook::Hook;
use crate::rpc::Rpc;

/// Emits an event at a level known only at run time: `tracing`'s macros need a constant
/// level (it is part of the callsite), so this picks one of five callsites.
macro_rules! event_at {
    ($level:expr, $($rest:tt)+) => {{
        let level: Level = $level;
        if level == Level::ERROR {
            tracing::error!($($rest)+)
        } else if level == Level::WARN {
            tracing::warn!($($rest)+)
        } else if level == Level::INFO {
            tracing::info!($($rest)+)
        } else if level == Level::DEBUG {
            tracing::debug!($($rest)+)
        } else {
            tracing::trace!($($rest)+)
        }
    }};
}

/// The span of one call of `R`; `#[intercept]` creates it when the call starts and enters
/// it while the handler, the hooks and the response stream run.
///
/// The span is `R`'s own (named `users.v1.UserService/GetUser`, with the fields listed on
/// [`TraceCalls`]). This fills in `client.address` (the peer's IP) and, when the request
/// carries a valid W3C `traceparent` header, `trace_id` and `parent_span_id`. A missing
/// or malformed `traceparent` is ignored: tracing never fails a call.
///
/// With the `opentelemetry` feature the span is also made a child of the caller's span
/// (`traceparent` and `tracestate`, read by OpenTelemetry's `TraceContextPropagator`), so
/// a `tracing-opentelemetry` layer exports it in the caller's trace.
#[doc(hidden)]
pub fn call_span<R: Rpc>(call: &Call, metadata: &MetadataMap) -> Span {
    let span = R::span(call);
    if span.is_disabled() {
        return span;
    }
    if let Some(peer) = call.peer() {
        span.record("client.address", tracing::field::display(peer.ip()));
    }
    let headers: &tonic::codegen::http::HeaderMap = metadata.as_ref();
    let traceparent = headers
        .get(&crate::wire::TRACEPARENT_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(TraceParent::parse);
    if let Some(parent) = traceparent {
        span.record("trace_id", parent.trace_id);
        span.record("parent_span_id", parent.parent_id);
        #[cfg(feature = "opentelemetry")]
        otel::set_parent(&span, metadata);
    }
    span
}

/// A valid W3C `traceparent` header, borrowed from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TraceParent<'a> {
    trace_id: &'a str,
    parent_id: &'a str,
}

impl<'a> TraceParent<'a> {
    /// `<version>-<trace-id>-<parent-id>-<flags>` in lowercase hex (2, 32, 16, 2 digits).
    /// Version `ff` and all-zero ids are invalid; version `00` has nothing after the flags,
    /// and a later version may add fields after another `-`.
    fn parse(value: &'a str) -> Option<Self> {
        let b = value.as_bytes();
        if b.len() < 55 || !value.is_ascii() {
            return None;
        }
        let hex = |range: std::ops::Range<usize>| {
            b[range]
                .iter()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        };
        let dashes = b[2] == b'-' && b[35] == b'-' && b[52] == b'-';
        if !dashes || !hex(0..2) || !hex(3..35) || !hex(36..52) || !hex(53..55) {
            return None;
        }
        let version = &value[..2];
        let rest_ok = match version {
            "ff" => false,
            "00" => b.len() == 55,
            _ => b.len() == 55 || b[55] == b'-',
        };
        let (trace_id, parent_id) = (&value[3..35], &value[36..52]);
        let zero = |id: &str| id.bytes().all(|c| c == b'0');
        if !rest_ok || zero(trace_id) || zero(parent_id) {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
        })
    }
}

#[cfg(feature = "opentelemetry")]
mod otel {
    use opentelemetry::propagation::{Extractor, TextMapPropagator};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tonic::metadata::{KeyRef, MetadataMap};
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    struct Headers<'a>(&'a MetadataMap);

    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key)?.to_str().ok()
        }

        fn keys(&self) -> Vec<&str> {
            self.0
                .keys()
                .filter_map(|key| match key {
                    KeyRef::Ascii(key) => Some(key.as_str()),
                    KeyRef::Binary(_) => None,
                })
                .collect()
        }
    }

    /// The current span's W3C `traceparent`, when it belongs to a valid trace.
    pub(super) fn current_traceparent() -> Option<tonic::codegen::http::HeaderValue> {
        use opentelemetry::trace::TraceContextExt;
        let context = Span::current().context();
        let span = context.span();
        let span_context = span.span_context();
        if !span_context.is_valid() {
            return None;
        }
        let value = format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        );
        tonic::codegen::http::HeaderValue::try_from(value).ok()
    }

    /// Makes `span` a child of the caller's span, read from `traceparent`/`tracestate`.
    pub(super) fn set_parent(span: &Span, metadata: &MetadataMap) {
        let parent = TraceContextPropagator::new()
            .extract_with_context(&opentelemetry::Context::new(), &Headers(metadata));
        // Fails only without an OpenTelemetry layer (nothing to parent), or once the span
        // has started (not yet: it was just created). Either way the call goes on.
        let _ = span.set_parent(parent);
    }
}

/// The `traceparent` of an outgoing call: with the `opentelemetry` feature, the current
/// span's context when it has one; otherwise the incoming call's trace, with a new
/// parent id (this hop), and no header outside any trace.
pub(crate) fn outgoing_traceparent(
    incoming: Option<&crate::call::Incoming>,
) -> Option<tonic::codegen::http::HeaderValue> {
    #[cfg(feature = "opentelemetry")]
    if let Some(header) = otel::current_traceparent() {
        return Some(header);
    }
    let value = incoming?.traceparent.as_ref()?.to_str().ok()?;
    let parent = TraceParent::parse(value)?;
    let flags = &value[53..55];
    let span_id = crate::util::random_nonzero_u64();
    let value = format!("00-{}-{span_id:016x}-{flags}", parent.trace_id);
    tonic::codegen::http::HeaderValue::try_from(value).ok()
}

/// Decides what of a message of type `M` may be logged by [`TraceCalls::messages`].
///
/// Implement it per message type, so the compiler checks that every message of the RPCs
/// you log has been looked at: a redactor that does not implement `Redact<M>` for one of
/// an RPC's messages is not a hook for that RPC. Ready-made: [`LogSize`] (the encoded
/// size only) and [`LogDebug`] (everything, for services without secrets).
///
/// ```
/// use std::fmt;
/// use tonic_intercept::trace::Redact;
/// # #[derive(Clone, PartialEq, prost::Message)]
/// # pub struct LoginRequest { #[prost(string, tag = "1")] pub user: String, #[prost(string, tag = "2")] pub password: String }
///
/// /// Logs who logs in, never the password.
/// #[derive(Debug, Clone)]
/// struct HidePasswords;
///
/// impl Redact<LoginRequest> for HidePasswords {
///     fn redact(&self, message: &LoginRequest, out: &mut fmt::Formatter<'_>) -> fmt::Result {
///         write!(out, "LoginRequest {{ user: {:?}, password: <redacted> }}", message.user)
///     }
/// }
/// ```
pub trait Redact<M: ?Sized> {
    /// `false` emits no message events at all (as [`NoMessages`] does); the check is a
    /// constant, so it costs nothing.
    const LOGS: bool = true;

    /// Writes what of `message` may be logged. Called only when the event is enabled.
    fn redact(&self, message: &M, out: &mut fmt::Formatter<'_>) -> fmt::Result;
}

/// No message events: the default of [`TraceCalls`].
///
/// ```
/// use tonic_intercept::TraceCalls;
/// use tonic_intercept::trace::NoMessages;
/// let _: TraceCalls<NoMessages> = TraceCalls::new();
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMessages;

impl<M: ?Sized> Redact<M> for NoMessages {
    const LOGS: bool = false;

    fn redact(&self, _: &M, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

/// Logs each message's encoded size (`42 bytes`) and nothing of its content.
///
/// ```
/// use tonic_intercept::TraceCalls;
/// use tonic_intercept::trace::LogSize;
/// let trace = TraceCalls::new().messages(LogSize);
/// # let _ = trace;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSize;

impl<M: prost::Message> Redact<M> for LogSize {
    fn redact(&self, message: &M, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(out, "{} bytes", message.encoded_len())
    }
}

/// Logs each message in full with its `Debug` form: only for services whose messages hold
/// nothing sensitive.
///
/// ```
/// use tonic_intercept::TraceCalls;
/// use tonic_intercept::trace::LogDebug;
/// let trace = TraceCalls::new().messages(LogDebug);
/// # let _ = trace;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LogDebug;

impl<M: fmt::Debug + ?Sized> Redact<M> for LogDebug {
    fn redact(&self, message: &M, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(out, "{message:?}")
    }
}

/// A message as its redactor shows it, formatted only if a subscriber records it.
struct Shown<'a, X, M: ?Sized>(&'a X, &'a M);

impl<X: Redact<M>, M: ?Sized> fmt::Display for Shown<'_, X, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.redact(self.1, f)
    }
}

/// The level of the "finished call" event that go-grpc-middleware's logging uses
/// (`DefaultServerCodeToLevel`): INFO for `OK` and the client's mistakes, WARN for
/// refusals and limits, ERROR for server faults.
///
/// | level | codes |
/// | --- | --- |
/// | INFO | `Ok`, `Cancelled`, `InvalidArgument`, `NotFound`, `AlreadyExists`, `Unauthenticated` |
/// | WARN | `DeadlineExceeded`, `PermissionDenied`, `ResourceExhausted`, `FailedPrecondition`, `Aborted`, `OutOfRange` |
/// | ERROR | `Unknown`, `Unimplemented`, `Internal`, `Unavailable`, `DataLoss` |
///
/// ```
/// use tonic::Code;
/// use tracing::Level;
/// assert_eq!(tonic_intercept::trace::default_code_level(Code::NotFound), Level::INFO);
/// assert_eq!(tonic_intercept::trace::default_code_level(Code::Internal), Level::ERROR);
/// ```
pub fn default_code_level(code: Code) -> Level {
    match code {
        Code::Ok
        | Code::Cancelled
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::Unauthenticated => Level::INFO,
        Code::DeadlineExceeded
        | Code::PermissionDenied
        | Code::ResourceExhausted
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::OutOfRange => Level::WARN,
        Code::Unknown
        | Code::Unimplemented
        | Code::Internal
        | Code::Unavailable
        | Code::DataLoss => Level::ERROR,
    }
}

/// A [`Hook`] for every RPC that logs each call in its span: a "started call" event, then
/// the outcome recorded on the span and a "finished call" event at a level chosen by the
/// status code; and, if asked ([`messages`](Self::messages)), each message as a redactor
/// shows it.
///
/// # The call's span
///
/// `#[intercept]` runs every call in a span named after its RPC
/// (`users.v1.UserService/GetUser`, level INFO), with the
/// OpenTelemetry RPC fields, whether or not `TraceCalls` is attached:
///
/// | field | value |
/// | --- | --- |
/// | `otel.name`, `otel.kind` | the span name, `server` |
/// | `rpc.system`, `rpc.service`, `rpc.method` | `grpc`, `users.v1.UserService`, `GetUser` |
/// | `client.address` | the peer's IP, when the transport knows it |
/// | `trace_id`, `parent_span_id` | from a valid W3C `traceparent` header |
///
/// `TraceCalls` records the rest when the call ends: `rpc.grpc.status_code` (the numeric
/// code, as OpenTelemetry specifies), `duration_ms`, `messages_in`, `messages_out`,
/// `bytes_in`, `bytes_out`, `ended_by` (the [`PolicyKind`](crate::PolicyKind) that ended the
/// call, if one did) and `decided_without` (the shared call-rate backend its failure policy
/// stood in for, if one did: `redis`).
///
/// # Events
///
/// | message | level | fields |
/// | --- | --- | --- |
/// | `started call` | [`start_level`](Self::start_level), DEBUG by default | |
/// | `finished call` | [`finish_level`](Self::finish_level)`(code)`, [`default_code_level`] by default | `grpc.code` (`NotFound`), `duration_ms` |
/// | `received message`, `sent message` | DEBUG, only with [`messages`](Self::messages) | `content`: the message as the redactor shows it |
///
/// A message event formats nothing and allocates nothing when DEBUG is disabled for it.
///
/// ```
/// use tonic::Code;
/// use tracing::Level;
/// use tonic_intercept::TraceCalls;
/// use tonic_intercept::trace::LogSize;
///
/// // Quiet successes, loud failures, and the size of each message.
/// let trace = TraceCalls::new()
///     .start_level(Level::TRACE)
///     .finish_level(|code| match code {
///         Code::Ok => Level::DEBUG,
///         code => tonic_intercept::trace::default_code_level(code),
///     })
///     .messages(LogSize);
/// # let _ = trace;
/// ```
#[derive(Clone, Copy)]
pub struct TraceCalls<X = NoMessages> {
    start_level: Level,
    finish_level: fn(Code) -> Level,
    messages: X,
}

impl<X: fmt::Debug> fmt::Debug for TraceCalls<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceCalls")
            .field("start_level", &self.start_level)
            .field("messages", &self.messages)
            .finish_non_exhaustive()
    }
}

impl TraceCalls {
    /// Start events at DEBUG, finish events by [`default_code_level`], no message events.
    ///
    /// ```
    /// let trace = tonic_intercept::TraceCalls::new();
    /// # let _ = trace;
    /// ```
    pub fn new() -> Self {
        Self {
            start_level: Level::DEBUG,
            finish_level: default_code_level,
            messages: NoMessages,
        }
    }
}

impl Default for TraceCalls {
    fn default() -> Self {
        Self::new()
    }
}

impl<X> TraceCalls<X> {
    /// The level of the "started call" event.
    ///
    /// ```
    /// let trace = tonic_intercept::TraceCalls::new().start_level(tracing::Level::INFO);
    /// # let _ = trace;
    /// ```
    pub fn start_level(mut self, level: Level) -> Self {
        self.start_level = level;
        self
    }

    /// The level of the "finished call" event, chosen from the status code.
    ///
    /// ```
    /// use tonic::Code;
    /// use tracing::Level;
    /// // Everything at INFO but server faults.
    /// let trace = tonic_intercept::TraceCalls::new().finish_level(|code| match code {
    ///     Code::Internal | Code::Unknown | Code::DataLoss => Level::ERROR,
    ///     _ => Level::INFO,
    /// });
    /// # let _ = trace;
    /// ```
    pub fn finish_level(mut self, level: fn(Code) -> Level) -> Self {
        self.finish_level = level;
        self
    }

    /// Logs each request and response message at DEBUG ("received message", "sent
    /// message") as `redactor` shows it: [`LogSize`], [`LogDebug`] or your own
    /// [`Redact`] implementation.
    ///
    /// ```
    /// use tonic_intercept::{Hook, TraceCalls};
    /// use tonic_intercept::trace::LogDebug;
    /// # tonic_intercept::__doc_rpc!(GetUser, "users.v1.UserService", "GetUser", Unary, (), ());
    ///
    /// fn hooks_get_user(_: impl Hook<GetUser>) {}
    /// hooks_get_user(TraceCalls::new().messages(LogDebug));
    /// ```
    pub fn messages<Y>(self, redactor: Y) -> TraceCalls<Y> {
        TraceCalls {
            start_level: self.start_level,
            finish_level: self.finish_level,
            messages: redactor,
        }
    }
}

impl<R, X> Hook<R> for TraceCalls<X>
where
    R: Rpc,
    X: Redact<R::Request> + Redact<R::Response> + Clone + Send + Sync + 'static,
{
    fn on_call(
        &self,
        _call: &Call,
        _metadata: &MetadataMap,
    ) -> impl Future<Output = Result<(), Status>> + Send {
        event_at!(self.start_level, "started call");
        std::future::ready(Ok(()))
    }

    fn on_request(&self, _call: &Call, message: &R::Request) -> Result<(), Status> {
        if <X as Redact<R::Request>>::LOGS {
            tracing::debug!(content = %Shown(&self.messages, message), "received message");
        }
        Ok(())
    }

    fn on_response(&self, _call: &Call, message: &R::Response) -> Result<(), Status> {
        if <X as Redact<R::Response>>::LOGS {
            tracing::debug!(content = %Shown(&self.messages, message), "sent message");
        }
        Ok(())
    }

    fn on_finish(&self, call: &Call, outcome: &CallOutcome) {
        let level = (self.finish_level)(outcome.code);
        let span = Span::current();
        // Nothing records the span or the event: skip the clock read and the records.
        if span.is_disabled() && !tracing::level_enabled!(level) {
            return;
        }
        let duration_ms = call.elapsed().as_secs_f64() * 1e3;
        if !span.is_disabled() {
            span.record("rpc.grpc.status_code", outcome.code as i64);
            span.record("duration_ms", duration_ms);
            span.record("messages_in", outcome.messages_in);
            span.record("messages_out", outcome.messages_out);
            span.record("bytes_in", outcome.bytes_in);
            span.record("bytes_out", outcome.bytes_out);
            if let Some(policy) = outcome.ended_by {
                span.record("ended_by", policy.as_str());
            }
            if let Some(backend) = outcome.decided_without {
                span.record("decided_without", backend);
            }
        }
        event_at!(
            level,
            grpc.code = grpc_code_label(outcome.code),
            duration_ms,
            "finished call"
        );
    }
}

/// The span of one call of an RPC; generated code calls it from `Rpc::span` with the
/// RPC's full name, because a span's name is fixed where it is declared.
///
/// Field names follow the OpenTelemetry RPC conventions; the empty ones are recorded as
/// the call goes (`TraceCalls`). Generated code reaches it as `__private::rpc_span!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __rpc_span {
    ($name:literal, $call:expr) => {{
        let call: &$crate::__private::Call = $call;
        $crate::__private::tracing::info_span!(
            $name,
            otel.name = $name,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = call.rpc().service,
            rpc.method = call.rpc().method,
            rpc.grpc.status_code = $crate::__private::tracing::field::Empty,
            client.address = $crate::__private::tracing::field::Empty,
            trace_id = $crate::__private::tracing::field::Empty,
            parent_span_id = $crate::__private::tracing::field::Empty,
            duration_ms = $crate::__private::tracing::field::Empty,
            messages_in = $crate::__private::tracing::field::Empty,
            messages_out = $crate::__private::tracing::field::Empty,
            bytes_in = $crate::__private::tracing::field::Empty,
            bytes_out = $crate::__private::tracing::field::Empty,
            ended_by = $crate::__private::tracing::field::Empty,
            decided_without = $crate::__private::tracing::field::Empty,
        )
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_valid() {
        assert_eq!(
            TraceParent::parse(VALID),
            Some(TraceParent {
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
                parent_id: "00f067aa0ba902b7",
            })
        );
        // A later version may append fields.
        let v2 = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes";
        assert!(TraceParent::parse(v2).is_some());
        assert!(TraceParent::parse(&v2[..55]).is_some());
    }

    #[test]
    fn traceparent_invalid() {
        for bad in [
            "",
            "garbage",
            // all-zero trace id, all-zero parent id
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // version ff, uppercase hex, non-hex
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            // wrong lengths and separators
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // version 00 has nothing after the flags; later versions need a dash
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            // non-ASCII where a boundary would fall
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn code_levels_match_go() {
        use Code::*;
        for (code, level) in [
            (Ok, Level::INFO),
            (Cancelled, Level::INFO),
            (Unauthenticated, Level::INFO),
            (DeadlineExceeded, Level::WARN),
            (OutOfRange, Level::WARN),
            (Unknown, Level::ERROR),
            (DataLoss, Level::ERROR),
        ] {
            assert_eq!(default_code_level(code), level, "{code:?}");
        }
    }
}
