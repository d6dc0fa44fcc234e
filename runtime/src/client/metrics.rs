//! Prometheus metrics of a gRPC client: go-grpc-middleware's `grpc_client_*` families,
//! plus attempts, retries and why the client gave up retrying, with every series created
//! when the service is.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tonic::Code;

use super::retry::GiveUpReason;
use crate::metrics::{CodeLabels, Counters, Histograms, RpcLabels, add, handling_histogram};
use crate::rpc::{Rpc, RpcDescriptor, Service};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GaveUpLabels {
    grpc_type: &'static str,
    grpc_service: &'static str,
    grpc_method: &'static str,
    reason: &'static str,
}

/// The gRPC client metric families, registered once in a [`Registry`]; hand out
/// [`ClientServiceMetrics`] per service with [`service`](Self::service).
///
/// | family | labels | counts |
/// | --- | --- | --- |
/// | `grpc_client_started_total` | | calls started |
/// | `grpc_client_handled_total` | `grpc_code` | calls finished, by final status code |
/// | `grpc_client_handling_seconds` (histogram) | | call duration, start to final status, retries included |
/// | `grpc_client_msg_sent_total` | | request messages sent |
/// | `grpc_client_msg_received_total` | | response messages received |
/// | `grpc_client_attempts_total` | | attempts: one per call, plus one per retry |
/// | `grpc_client_retries_total` | | retries (attempts after the first) |
/// | `grpc_client_gave_up_total` | `reason` | calls that gave up after a failed attempt, by [`GiveUpReason::as_str`] |
///
/// Every series carries `grpc_type` (`unary`, `client_stream`, `server_stream`,
/// `bidi_stream`), `grpc_service` (`users.v1.UserService`) and `grpc_method` (`GetUser`).
/// The first five are go-grpc-middleware's (v2, `providers/prometheus`) client families,
/// with the same names, labels, `grpc_code` values ([`grpc_code_label`]) and histogram
/// buckets ([`HANDLING_SECONDS_BUCKETS`]) as on the server side ([`ServerMetrics`]).
///
/// `ClientMetrics` holds only handles to the families: clones share them. Register once
/// per registry; registering twice in one registry would expose every family twice. It
/// registers under other names than [`ServerMetrics`], so a process that is both server
/// and client can register both in one registry.
///
/// [`grpc_code_label`]: crate::grpc_code_label
/// [`HANDLING_SECONDS_BUCKETS`]: crate::HANDLING_SECONDS_BUCKETS
/// [`ServerMetrics`]: crate::ServerMetrics
///
/// ```
/// use tonic_intercept::prometheus_client::registry::Registry;
/// use tonic_intercept::client::ClientMetrics;
/// use tonic_intercept::metrics::render_metrics;
/// # tonic_intercept::__doc_service!(Users = "users.v1.UserService" { 0 => GetUser: Unary, 1 => ListUsers: ServerStreaming });
///
/// let mut registry = Registry::default();
/// let metrics = ClientMetrics::register(&mut registry);
/// // One per service the client calls, before calling: each creates its series at zero.
/// let users = metrics.service::<Users>();
///
/// let body = render_metrics(&registry);
/// assert!(body.contains(
///     r#"grpc_client_handled_total{grpc_type="server_stream",grpc_service="users.v1.UserService",grpc_method="ListUsers",grpc_code="Unavailable"} 0"#
/// ));
/// assert!(body.contains(
///     r#"grpc_client_gave_up_total{grpc_type="unary",grpc_service="users.v1.UserService",grpc_method="GetUser",reason="throttled"} 0"#
/// ));
/// # let _ = users;
/// ```
#[derive(Clone)]
pub struct ClientMetrics {
    started: Counters<RpcLabels>,
    handled: Counters<CodeLabels>,
    handling: Histograms,
    msg_sent: Counters<RpcLabels>,
    msg_received: Counters<RpcLabels>,
    attempts: Counters<RpcLabels>,
    retries: Counters<RpcLabels>,
    gave_up: Counters<GaveUpLabels>,
}

impl fmt::Debug for ClientMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientMetrics").finish_non_exhaustive()
    }
}

impl ClientMetrics {
    /// Registers the `grpc_client_*` families in `registry` (under its prefix, if it is a
    /// sub-registry) and returns handles to them.
    ///
    /// ```
    /// use tonic_intercept::client::ClientMetrics;
    /// use tonic_intercept::prometheus_client::registry::Registry;
    ///
    /// let mut registry = Registry::default();
    /// let metrics = ClientMetrics::register(&mut registry);
    /// # let _ = metrics;
    /// ```
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            started: Family::default(),
            handled: Family::default(),
            handling: Family::new_with_constructor(handling_histogram as fn() -> Histogram),
            msg_sent: Family::default(),
            msg_received: Family::default(),
            attempts: Family::default(),
            retries: Family::default(),
            gave_up: Family::default(),
        };
        // The encoder adds `_total` to counters, the unit (`_seconds`) to names, and a
        // final `.` to help texts.
        registry.register(
            "grpc_client_started",
            "Total number of RPCs started on the client",
            metrics.started.clone(),
        );
        registry.register(
            "grpc_client_handled",
            "Total number of RPCs completed by the client, regardless of success or failure",
            metrics.handled.clone(),
        );
        registry.register_with_unit(
            "grpc_client_handling",
            "Histogram of response latency (seconds) of the gRPC until it is finished by the \
             application",
            Unit::Seconds,
            metrics.handling.clone(),
        );
        registry.register(
            "grpc_client_msg_sent",
            "Total number of gRPC stream messages sent by the client",
            metrics.msg_sent.clone(),
        );
        registry.register(
            "grpc_client_msg_received",
            "Total number of RPC stream messages received by the client",
            metrics.msg_received.clone(),
        );
        registry.register(
            "grpc_client_attempts",
            "Total number of RPC attempts made by the client, first attempts and retries",
            metrics.attempts.clone(),
        );
        registry.register(
            "grpc_client_retries",
            "Total number of RPC attempts the client made after the first one",
            metrics.retries.clone(),
        );
        registry.register(
            "grpc_client_gave_up",
            "Total number of RPCs the client gave up on after a failed attempt, \
             by reason",
            metrics.gave_up.clone(),
        );
        metrics
    }

    /// The metrics of the service `S`: creates every series of every RPC of `S` at zero
    /// (each `grpc_code` of `handled`, each `reason` of `gave_up`, the histogram), so
    /// they are exported before the first call and a rate over them is never missing.
    ///
    /// The returned value keeps the series' handles in `.proto` order, so a call counts
    /// without hashing labels or taking the families' lock. Calling this again for the
    /// same service returns handles to the same series.
    ///
    /// ```
    /// use tonic_intercept::client::ClientMetrics;
    /// use tonic_intercept::prometheus_client::registry::Registry;
    /// # tonic_intercept::__doc_service!(Users = "users.v1.UserService" { 0 => GetUser: Unary });
    ///
    /// let metrics = ClientMetrics::register(&mut Registry::default());
    /// let users = metrics.service::<Users>();
    /// # let _ = users;
    /// ```
    pub fn service<S: Service>(&self) -> ClientServiceMetrics<S> {
        let series = S::RPCS.iter().map(|rpc| self.rpc_series(rpc)).collect();
        ClientServiceMetrics {
            series,
            _service: PhantomData,
        }
    }

    fn rpc_series(&self, rpc: &'static RpcDescriptor) -> RpcSeries {
        let labels = RpcLabels::of(rpc);
        let handled = labels.by_code(&self.handled);
        let gave_up = GiveUpReason::ALL.map(|reason| {
            self.gave_up.get_or_create_owned(&GaveUpLabels {
                grpc_type: labels.grpc_type,
                grpc_service: labels.grpc_service,
                grpc_method: labels.grpc_method,
                reason: reason.as_str(),
            })
        });
        RpcSeries {
            started: self.started.get_or_create_owned(&labels),
            handled,
            handling: self.handling.get_or_create_owned(&labels),
            msg_sent: self.msg_sent.get_or_create_owned(&labels),
            msg_received: self.msg_received.get_or_create_owned(&labels),
            attempts: self.attempts.get_or_create_owned(&labels),
            retries: self.retries.get_or_create_owned(&labels),
            gave_up,
        }
    }
}

/// The series of one RPC: handles into the families, shared with the registry.
#[derive(Debug)]
struct RpcSeries {
    started: Counter,
    handled: [Counter; 17],
    handling: Histogram,
    msg_sent: Counter,
    msg_received: Counter,
    attempts: Counter,
    retries: Counter,
    /// Aligned with [`GiveUpReason::ALL`].
    gave_up: [Counter; GiveUpReason::ALL.len()],
}

/// The client metrics of the service `S`, from [`ClientMetrics::service`]: what a client
/// interceptor records for each call of an RPC of `S`.
///
/// For one call of the RPC `R`, the interceptor calls:
///
/// 1. [`started::<R>`](Self::started) once, before the first attempt
///    (`grpc_client_started_total`, and the first `grpc_client_attempts_total`);
/// 2. [`retried::<R>`](Self::retried) before each attempt after the first
///    (`grpc_client_retries_total`, `grpc_client_attempts_total`);
/// 3. [`gave_up::<R>`](Self::gave_up) when a failed attempt is not retried,
///    with the [`GiveUpReason`] of a decision to give up
///    (`grpc_client_gave_up_total{reason}`);
/// 4. [`finished::<R>`](Self::finished) once, with the final status code, the time since
///    the call started (retries and backoff included) and the messages of the call
///    (`grpc_client_handled_total{grpc_code}`, `grpc_client_handling_seconds`,
///    `grpc_client_msg_sent_total`, `grpc_client_msg_received_total`).
///
/// The RPC is a type parameter bound by `R: Rpc<Service = S>`: recording an RPC of
/// another service does not compile, and the series is found by `R::INDEX` alone, without
/// hashing labels, locking or allocating. Messages are added once per call, when it ends.
///
/// Cloning is cheap (one `Arc`).
///
/// ```
/// use std::time::Duration;
/// use tonic::Code;
/// use tonic_intercept::prometheus_client::registry::Registry;
/// use tonic_intercept::client::{ClientMetrics, GiveUpReason};
/// use tonic_intercept::metrics::render_metrics;
/// # tonic_intercept::__doc_service!(Users = "users.v1.UserService" { 0 => GetUser: Unary });
///
/// let mut registry = Registry::default();
/// let users = ClientMetrics::register(&mut registry).service::<Users>();
///
/// // A call of `GetUser` failed with UNAVAILABLE, was retried once, and failed again
/// // on its last allowed attempt.
/// users.started::<GetUser>();
/// users.retried::<GetUser>();
/// users.gave_up::<GetUser>(GiveUpReason::AttemptsExhausted);
/// users.finished::<GetUser>(Code::Unavailable, Duration::from_millis(120), 2, 0);
///
/// let body = render_metrics(&registry);
/// let labels = r#"grpc_type="unary",grpc_service="users.v1.UserService",grpc_method="GetUser""#;
/// assert!(body.contains(&format!("grpc_client_attempts_total{{{labels}}} 2\n")));
/// assert!(body.contains(&format!("grpc_client_handled_total{{{labels},grpc_code=\"Unavailable\"}} 1\n")));
/// assert!(body.contains(&format!("grpc_client_gave_up_total{{{labels},reason=\"attempts_exhausted\"}} 1\n")));
/// ```
///
/// An RPC of another service is refused at compile time:
///
/// ```compile_fail
/// use tonic_intercept::client::ClientMetrics;
/// use tonic_intercept::prometheus_client::registry::Registry;
/// # tonic_intercept::__doc_service!(Users = "users.v1.UserService" { 0 => GetUser: Unary });
/// # mod orders { tonic_intercept::__doc_service!(Orders = "shop.v1.Orders" { 0 => Place: Unary }); }
///
/// let users = ClientMetrics::register(&mut Registry::default()).service::<Users>();
/// users.started::<orders::Place>();
/// ```
pub struct ClientServiceMetrics<S> {
    /// Indexed by `Rpc::INDEX`.
    series: Arc<[RpcSeries]>,
    _service: PhantomData<fn() -> S>,
}

impl<S> Clone for ClientServiceMetrics<S> {
    fn clone(&self) -> Self {
        Self {
            series: self.series.clone(),
            _service: PhantomData,
        }
    }
}

impl<S: Service> fmt::Debug for ClientServiceMetrics<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientServiceMetrics")
            .field("service", &S::NAME)
            .field("rpcs", &self.series.len())
            .finish()
    }
}

impl<S: Service> ClientServiceMetrics<S> {
    fn series<R: Rpc<Service = S>>(&self) -> Option<&RpcSeries> {
        self.series.get(R::INDEX)
    }

    /// Records that a call of `R` started: `grpc_client_started_total` and its first
    /// attempt in `grpc_client_attempts_total`.
    ///
    /// ```
    /// use tonic_intercept::client::ClientMetrics;
    /// use tonic_intercept::prometheus_client::registry::Registry;
    /// # tonic_intercept::__doc_service!(Users = "users.v1.UserService" { 0 => GetUser: Unary });
    ///
    /// let users = ClientMetrics::register(&mut Registry::default()).service::<Users>();
    /// users.started::<GetUser>();
    /// ```
    pub fn started<R: Rpc<Service = S>>(&self) {
        if let Some(series) = self.series::<R>() {
            series.started.inc();
            series.attempts.inc();
        }
    }

    /// Records that a call of `R` ended with `code`, `elapsed` after it started (all
    /// attempts and backoff included), having sent `messages_sent` request messages and
    /// received `messages_received` response messages.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tonic::Code;
    /// use tonic_intercept::client::ClientMetrics;
    /// use tonic_intercept::prometheus_client::registry::Registry;
    /// # tonic_intercept::__doc_service!(Users = "users.v1.UserService" { 0 => GetUser: Unary });
    ///
    /// let users = ClientMetrics::register(&mut Registry::default()).service::<Users>();
    /// users.started::<GetUser>();
    /// users.finished::<GetUser>(Code::Ok, Duration::from_millis(3), 1, 1);
    /// ```
    pub fn finished<R: Rpc<Service = S>>(
        &self,
        code: Code,
        elapsed: Duration,
        messages_sent: u64,
        messages_received: u64,
    ) {
        if let Some(series) = self.series::<R>() {
            // `Code` is a fieldless enum numbered as on the wire (0..=16).
            if let Some(counter) = series.handled.get(code as usize) {
                counter.inc();
            }
            series.handling.observe(elapsed.as_secs_f64());
            add(&series.msg_sent, messages_sent);
            add(&series.msg_received, messages_received);
        }
    }

    /// Records that a call of `R` is about to make another attempt after a failed one
    /// (after a decision to retry):
    /// `grpc_client_retries_total` and `grpc_client_attempts_total`.
    ///
    /// ```
    /// use tonic_intercept::client::ClientMetrics;
    /// use tonic_intercept::prometheus_client::registry::Registry;
    /// # tonic_intercept::__doc_service!(Users = "users.v1.UserService" { 0 => GetUser: Unary });
    ///
    /// let users = ClientMetrics::register(&mut Registry::default()).service::<Users>();
    /// users.started::<GetUser>();
    /// users.retried::<GetUser>();
    /// ```
    pub fn retried<R: Rpc<Service = S>>(&self) {
        if let Some(series) = self.series::<R>() {
            series.retries.inc();
            series.attempts.inc();
        }
    }

    /// Records that a call of `R` stopped retrying after a failed attempt, for `reason`
    /// (from a decision to give up):
    /// `grpc_client_gave_up_total{reason}`.
    ///
    /// ```
    /// use tonic_intercept::client::{ClientMetrics, GiveUpReason};
    /// use tonic_intercept::prometheus_client::registry::Registry;
    /// # tonic_intercept::__doc_service!(Users = "users.v1.UserService" { 0 => GetUser: Unary });
    ///
    /// let users = ClientMetrics::register(&mut Registry::default()).service::<Users>();
    /// users.started::<GetUser>();
    /// users.gave_up::<GetUser>(GiveUpReason::Throttled);
    /// ```
    pub fn gave_up<R: Rpc<Service = S>>(&self, reason: GiveUpReason) {
        if let Some(series) = self.series::<R>()
            && let Some(slot) = GiveUpReason::ALL.iter().position(|&r| r == reason)
        {
            series.gave_up[slot].inc();
        }
    }
}
