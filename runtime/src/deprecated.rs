//! The root names of 0.1 that moved into a module or were renamed, kept for one release.
//!
//! `#[deprecated]` has no effect on a `pub use`, so types are aliases (which also carry
//! enum variants and struct literals), unit structs add a constant of the same name,
//! functions are forwarding wrappers, and traits (which cannot be aliased on stable)
//! stay plain re-exports.
#![allow(missing_docs, non_upper_case_globals)]

use prometheus_client::registry::Registry;
use tonic::Status;
use tonic::metadata::MetadataMap;

macro_rules! moved_type {
    ($($old:ident $(<$($p:ident $(= $d:ty)?),*>)? => $new:ty, $note:literal;)*) => {$(
        #[doc(hidden)]
        #[deprecated(note = $note)]
        pub type $old $(<$($p $(= $d)?),*>)? = $new;
    )*};
}

moved_type! {
    Outcome => crate::server::CallOutcome, "use `tonic_intercept::server::CallOutcome`";
    Policy => crate::server::PolicyKind, "use `tonic_intercept::server::PolicyKind`";
    Inbound<R, H> => crate::server::Inbound<R, H>, "use `tonic_intercept::server::Inbound`";
    Outbound<R, S, H> => crate::server::Outbound<R, S, H>, "use `tonic_intercept::server::Outbound`";
    Rate => crate::limits::MessageRate, "use `tonic_intercept::limits::MessageRate`";
    OnRateExceeded => crate::limits::OnRateExceeded, "use `tonic_intercept::limits::OnRateExceeded`";
    Principal => crate::auth::Principal, "use `tonic_intercept::auth::Principal`";
    Violations => crate::validate::Violations, "use `tonic_intercept::validate::Violations`";
    ServiceMetrics<S> => crate::metrics::ServiceMetrics<S>, "use `tonic_intercept::metrics::ServiceMetrics`";
    LogDebug => crate::trace::LogDebug, "use `tonic_intercept::trace::LogDebug`";
    LogSize => crate::trace::LogSize, "use `tonic_intercept::trace::LogSize`";
    NoMessages => crate::trace::NoMessages, "use `tonic_intercept::trace::NoMessages`";
    ClientOutcome => crate::client::ClientOutcome, "use `tonic_intercept::client::ClientOutcome`";
    ClientMetrics => crate::client::ClientMetrics, "use `tonic_intercept::client::ClientMetrics`";
    ClientServiceMetrics<S> => crate::client::ClientServiceMetrics<S>, "use `tonic_intercept::client::ClientServiceMetrics`";
    Responses<R, H = ()> => crate::client::Responses<R, H>, "use `tonic_intercept::client::Responses`";
    RetryPolicy => crate::client::RetryPolicy, "use `tonic_intercept::client::RetryPolicy`";
    RetryThrottle => crate::client::RetryThrottle, "use `tonic_intercept::client::RetryThrottle`";
    Token => crate::client::BearerToken, "use `tonic_intercept::client::BearerToken`";
    TokenProvider<S> => crate::client::TokenProvider<S>, "use `tonic_intercept::client::TokenProvider`";
    Reason => crate::client::GiveUpReason, "use `tonic_intercept::client::GiveUpReason`";
    Decision => crate::client::retry::RetryDecision, "retry internals are no longer public";
    Pushback => crate::client::retry::Pushback, "retry internals are no longer public";
    Jitter => crate::util::Jitter, "retry internals are no longer public";
}

// Unit structs are also values.
#[doc(hidden)]
#[deprecated(note = "use `tonic_intercept::trace::LogDebug`")]
pub const LogDebug: crate::trace::LogDebug = crate::trace::LogDebug;
#[doc(hidden)]
#[deprecated(note = "use `tonic_intercept::trace::LogSize`")]
pub const LogSize: crate::trace::LogSize = crate::trace::LogSize;
#[doc(hidden)]
#[deprecated(note = "use `tonic_intercept::trace::NoMessages`")]
pub const NoMessages: crate::trace::NoMessages = crate::trace::NoMessages;

// Traits cannot be aliased: plain re-exports (hidden, not deprecated).
pub use crate::client::TokenSource;
pub use crate::trace::Redact;

macro_rules! moved_const {
    ($($old:ident: $ty:ty => $new:path, $note:literal;)*) => {$(
        #[doc(hidden)]
        #[deprecated(note = $note)]
        pub const $old: $ty = $new;
    )*};
}

moved_const! {
    REQUEST_ID: &str => crate::wire::REQUEST_ID, "use `tonic_intercept::wire::REQUEST_ID`";
    RETRY_PUSHBACK: &str => crate::wire::RETRY_PUSHBACK, "use `tonic_intercept::wire::RETRY_PUSHBACK`";
    IDEMPOTENCY_KEY: &str => crate::wire::IDEMPOTENCY_KEY, "use `tonic_intercept::wire::IDEMPOTENCY_KEY`";
    IDEMPOTENCY_REPLAYED: &str => crate::wire::IDEMPOTENCY_REPLAYED, "use `tonic_intercept::wire::IDEMPOTENCY_REPLAYED`";
    MAX_KEY_LEN: usize => crate::idempotency::MAX_KEY_LEN, "use `tonic_intercept::idempotency::MAX_KEY_LEN`";
    DEFAULT_REPLAY_BUFFER: usize => crate::client::DEFAULT_REPLAY_BUFFER, "use `tonic_intercept::client::DEFAULT_REPLAY_BUFFER`";
    MAX_ATTEMPTS_CAP: u32 => crate::client::MAX_ATTEMPTS_CAP, "use `tonic_intercept::client::MAX_ATTEMPTS_CAP`";
    HANDLING_SECONDS_BUCKETS: [f64; 11] => crate::metrics::HANDLING_SECONDS_BUCKETS, "use `tonic_intercept::metrics::HANDLING_SECONDS_BUCKETS`";
    METRICS_CONTENT_TYPE: &str => crate::metrics::METRICS_CONTENT_TYPE, "use `tonic_intercept::metrics::METRICS_CONTENT_TYPE`";
}

#[doc(hidden)]
#[deprecated(note = "use `tonic_intercept::metrics::grpc_code_label`")]
pub fn grpc_code_label(code: tonic::Code) -> &'static str {
    crate::metrics::grpc_code_label(code)
}

#[doc(hidden)]
#[deprecated(note = "use `tonic_intercept::metrics::render_metrics`")]
pub fn render_metrics(registry: &Registry) -> String {
    crate::metrics::render_metrics(registry)
}

#[doc(hidden)]
#[deprecated(note = "use `tonic_intercept::trace::default_code_level`")]
pub fn default_code_level(code: tonic::Code) -> tracing::Level {
    crate::trace::default_code_level(code)
}

#[doc(hidden)]
#[deprecated(note = "use `tonic_intercept::auth::bearer_token`")]
pub fn bearer_token(metadata: &MetadataMap) -> Result<&str, Status> {
    crate::auth::bearer_token(metadata)
}

#[doc(hidden)]
#[deprecated(note = "use `tonic_intercept::limits::identity_key`")]
pub fn identity_key<I: std::hash::Hash + ?Sized>(identity: &I) -> u64 {
    crate::limits::identity_key(identity)
}

#[doc(hidden)]
#[deprecated(note = "retry internals are no longer public; the client reads pushback itself")]
pub fn pushback(metadata: &MetadataMap) -> crate::client::retry::Pushback {
    crate::client::retry::pushback(metadata)
}
