//! Prometheus metrics: go-grpc-middleware's `grpc_server_*` families, plus what it lacks
//! (bytes, rejections by policy, panics), with every series created when the service is.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use crate::call::{Call, CallOutcome, PolicyKind};
use crate::policy::hook::Hook;
use crate::rpc::{Rpc, RpcDescriptor, Service};

/// The `Content-Type` of [`render_metrics`]'s output (OpenMetrics text 1.0.0); Prometheus
/// negotiates it by itself.
///
/// ```
/// assert!(tonic_intercept::metrics::METRICS_CONTENT_TYPE.starts_with("application/openmetrics-text"));
/// ```
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the `grpc_server_handling_seconds` buckets: the Go client's
/// `prometheus.DefBuckets`, which go-grpc-middleware uses, so existing dashboards' quantiles
/// read the same.
///
/// ```
/// assert_eq!(tonic_intercept::metrics::HANDLING_SECONDS_BUCKETS.last(), Some(&10.0));
/// ```
pub const HANDLING_SECONDS_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `grpc_code` label values, indexed by the numeric code: grpc-go's `codes.Code.String()`,
/// which go-grpc-middleware writes (`NotFound`, `Canceled`), so dashboards and alert rules
/// written for Go servers match.
const CODE_LABELS: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The `grpc_code` label of `code`, as grpc-go spells it, so that queries written for Go
/// servers match.
///
/// ```
/// assert_eq!(tonic_intercept::metrics::grpc_code_label(tonic::Code::NotFound), "NotFound");
/// assert_eq!(tonic_intercept::metrics::grpc_code_label(tonic::Code::Cancelled), "Canceled");
/// ```
pub fn grpc_code_label(code: tonic::Code) -> &'static str {
    CODE_LABELS.get(code as usize).copied().unwrap_or("Unknown")
}

/// Writes everything registered in `registry` as OpenMetrics text, ending with `# EOF`:
/// the body of a `/metrics` response, served with [`METRICS_CONTENT_TYPE`].
///
/// ```
/// use tonic_intercept::prometheus_client::registry::Registry;
/// use tonic_intercept::ServerMetrics;
/// use tonic_intercept::metrics::render_metrics;
/// # tonic_intercept::__doc_service!(Users = "users.v1.UserService" { 0 => GetUser: Unary });
///
/// let mut registry = Registry::default();
/// let metrics = ServerMetrics::register(&mut registry);
/// let _users = metrics.service::<Users>();
///
/// let body = render_metrics(&registry);
/// assert!(body.contains(
///     r#"grpc_server_started_total{grpc_type="unary",grpc_service="users.v1.UserService",grpc_method="GetUser"} 0"#
/// ));
/// assert!(body.ends_with("# EOF\n"));
/// ```
pub fn render_metrics(registry: &Registry) -> String {
    let mut body = String::new();
    // Writing to a `String` cannot fail, and the encoder fails only when its writer does.
    prometheus_client::encoding::text::encode(&mut body, registry)
        .expect("OpenMetrics text encoding into a String");
    body
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct RpcLabels {
    pub(crate) grpc_type: &'static str,
    pub(crate) grpc_service: &'static str,
    pub(crate) grpc_method: &'static str,
}

impl RpcLabels {
    /// The labels of every series of `rpc`, as dashboards expect them.
    pub(crate) fn of(rpc: &RpcDescriptor) -> Self {
        Self {
            grpc_type: rpc.kind.as_str(),
            grpc_service: rpc.service,
            grpc_method: rpc.method,
        }
    }

    /// One `handled` counter per status code, indexed by the code's number.
    pub(crate) fn by_code(&self, handled: &Counters<CodeLabels>) -> [Counter; 17] {
        CODE_LABELS.map(|grpc_code| {
            handled.get_or_create_owned(&CodeLabels {
                grpc_type: self.grpc_type,
                grpc_service: self.grpc_service,
                grpc_method: self.grpc_method,
                grpc_code,
            })
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct CodeLabels {
    pub(crate) grpc_type: &'static str,
    pub(crate) grpc_service: &'static str,
    pub(crate) grpc_method: &'static str,
    pub(crate) grpc_code: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PolicyLabels {
    grpc_type: &'static str,
    grpc_service: &'static str,
    grpc_method: &'static str,
    policy: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BackendLabels {
    grpc_type: &'static str,
    grpc_service: &'static str,
    grpc_method: &'static str,
    backend: &'static str,
}

pub(crate) type Counters<L> = Family<L, Counter>;
pub(crate) type Histograms = Family<RpcLabels, Histogram, fn() -> Histogram>;

pub(crate) fn handling_histogram() -> Histogram {
    Histogram::new(HANDLING_SECONDS_BUCKETS)
}

/// The gRPC server metric families, registered once in a [`Registry`]; hand out
/// [`ServiceMetrics`] per service with [`service`](Self::service).
///
/// | family | labels | counts |
/// | --- | --- | --- |
/// | `grpc_server_started_total` | | calls started |
/// | `grpc_server_handled_total` | `grpc_code` | calls finished, by status code |
/// | `grpc_server_handling_seconds` (histogram) | | call duration, start to status |
/// | `grpc_server_msg_received_total` | | request messages |
/// | `grpc_server_msg_sent_total` | | response messages |
/// | `grpc_server_msg_received_bytes_total` | | encoded bytes of request messages |
/// | `grpc_server_msg_sent_bytes_total` | | encoded bytes of response messages |
/// | `grpc_server_rejected_total` | `policy` | calls ended by a policy ([`PolicyKind::as_str`]) |
/// | `grpc_server_panics_total` | | panics caught ([`PolicyKind::Recovery`]) |
/// | `grpc_server_limit_backend_errors_total` | `backend` | calls decided without their shared call-rate backend ([`CallOutcome::decided_without`]); a series appears at its first error |
///
/// Every series carries `grpc_type` (`unary`, `client_stream`, `server_stream`,
/// `bidi_stream`), `grpc_service` (`users.v1.UserService`) and `grpc_method` (`GetUser`).
/// The first five are go-grpc-middleware's (v2, `providers/prometheus`), with the same
/// names, labels, `grpc_code` values (`OK`, `NotFound`, `Unauthenticated`: grpc-go's
/// spelling) and histogram buckets ([`HANDLING_SECONDS_BUCKETS`]), so dashboards made for
/// Go servers work unchanged. As there, the histogram has no `grpc_code` label.
///
/// `ServerMetrics` holds only handles to the families: clones share them. Register once
/// per registry; registering twice in one registry would expose every family twice.
///
/// ```
/// use tonic_intercept::prometheus_client::registry::Registry;
/// use tonic_intercept::ServerMetrics;
/// use tonic_intercept::metrics::render_metrics;
/// # tonic_intercept::__doc_service!(Users = "users.v1.UserService" { 0 => GetUser: Unary, 1 => ListUsers: ServerStreaming });
/// # tonic_intercept::__doc_service!(Orders = "shop.v1.Orders" { 0 => Place: Unary });
///
/// let mut registry = Registry::default();
/// let metrics = ServerMetrics::register(&mut registry);
/// // One per service, before serving: each creates its series at zero.
/// let users = metrics.service::<Users>();
/// let orders = metrics.service::<Orders>();
/// // Hand `users` and `orders` to `#[intercept]` as hooks of their services.
///
/// let body = render_metrics(&registry);
/// assert!(body.contains(
///     r#"grpc_server_handled_total{grpc_type="server_stream",grpc_service="users.v1.UserService",grpc_method="ListUsers",grpc_code="NotFound"} 0"#
/// ));
/// assert!(body.contains(
///     r#"grpc_server_rejected_total{grpc_type="unary",grpc_service="shop.v1.Orders",grpc_method="Place",policy="auth"} 0"#
/// ));
/// # let _ = (users, orders);
/// ```
#[derive(Clone)]
pub struct ServerMetrics {
    started: Counters<RpcLabels>,
    handled: Counters<CodeLabels>,
    handling: Histograms,
    msg_received: Counters<RpcLabels>,
    msg_sent: Counters<RpcLabels>,
    bytes_received: Counters<RpcLabels>,
    bytes_sent: Counters<RpcLabels>,
    rejected: Counters<PolicyLabels>,
    panics: Counters<RpcLabels>,
    backend_errors: Counters<BackendLabels>,
}

impl fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerMetrics").finish_non_exhaustive()
    }
}

impl ServerMetrics {
    /// Registers the `grpc_server_*` families in `registry` (under its prefix, if it is a
    /// sub-registry) and returns handles to them.
    ///
    /// ```
    /// use tonic_intercept::ServerMetrics;
    /// use tonic_intercept::prometheus_client::registry::Registry;
    ///
    /// let mut registry = Registry::default();
    /// let metrics = ServerMetrics::register(&mut registry);
    /// # let _ = metrics;
    /// ```
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            started: Family::default(),
            handled: Family::default(),
            handling: Family::new_with_constructor(handling_histogram as fn() -> Histogram),
            msg_received: Family::default(),
            msg_sent: Family::default(),
            bytes_received: Family::default(),
            bytes_sent: Family::default(),
            rejected: Family::default(),
            panics: Family::default(),
            backend_errors: Family::default(),
        };
        // The encoder adds `_total` to counters, the unit (`_seconds`, `_bytes`) to names,
        // and a final `.` to help texts.
        registry.register(
            "grpc_server_started",
            "Total number of RPCs started on the server",
            metrics.started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure",
            metrics.handled.clone(),
        );
        registry.register_with_unit(
            "grpc_server_handling",
            "Histogram of response latency (seconds) of gRPC that had been application-level \
             handled by the server",
            Unit::Seconds,
            metrics.handling.clone(),
        );
        registry.register(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server",
            metrics.msg_received.clone(),
        );
        registry.register(
            "grpc_server_msg_sent",
            "Total number of gRPC stream messages sent by the server",
            metrics.msg_sent.clone(),
        );
        registry.register_with_unit(
            "grpc_server_msg_received",
            "Total encoded bytes of RPC messages received on the server",
            Unit::Bytes,
            metrics.bytes_received.clone(),
        );
        registry.register_with_unit(
            "grpc_server_msg_sent",
            "Total encoded bytes of RPC messages sent by the server",
            Unit::Bytes,
            metrics.bytes_sent.clone(),
        );
        registry.register(
            "grpc_server_rejected",
            "Total number of RPCs ended by a policy (auth, limits, deadline, validation, hooks)",
            metrics.rejected.clone(),
        );
        registry.register(
            "grpc_server_panics",
            "Total number of panics caught in RPC handlers, hooks and streams",
            metrics.panics.clone(),
        );
        registry.register(
            "grpc_server_limit_backend_errors",
            "Total number of RPCs whose shared call-rate backend could not be asked in time, \
             decided by its failure policy instead",
            metrics.backend_errors.clone(),
        );
        metrics
    }

    /// The metrics of the service `S`: creates every series of every RPC of `S` at zero
    /// (each `grpc_code` of `handled`, each `policy` of `rejected`, the histogram), so
    /// they are exported before the first call and a rate over them is never missing.
    ///
    /// The returned value keeps the series' handles in `.proto` order, so a call counts
    /// without hashing labels or taking the families' lock. Calling this again for the
    /// same service returns handles to the same series.
    ///
    /// ```
    /// use tonic_intercept::ServerMetrics;
    /// use tonic_intercept::prometheus_client::registry::Registry;
    /// # tonic_intercept::__doc_service!(Users = "users.v1.UserService" { 0 => GetUser: Unary });
    ///
    /// let metrics = ServerMetrics::register(&mut Registry::default());
    /// let users = metrics.service::<Users>();
    /// # let _ = users;
    /// ```
    pub fn service<S: Service>(&self) -> ServiceMetrics<S> {
        let series = S::RPCS.iter().map(|rpc| self.rpc_series(rpc)).collect();
        ServiceMetrics {
            series,
            _service: PhantomData,
        }
    }

    /// The series an edge in front of the service `S` counts in (see [`EdgeMetrics`]).
    pub(crate) fn edge<S: Service>(&self) -> EdgeMetrics {
        let labels = RpcLabels {
            grpc_type: UNKNOWN_TYPE_LABEL,
            grpc_service: S::NAME,
            grpc_method: UNKNOWN_METHOD_LABEL,
        };
        EdgeMetrics {
            series: S::RPCS.iter().map(|rpc| self.rpc_series(rpc)).collect(),
            unknown: UnknownSeries {
                started: self.started.get_or_create_owned(&labels),
                handled: labels.by_code(&self.handled),
                handling: self.handling.get_or_create_owned(&labels),
                rejected: self.rejected.get_or_create_owned(&PolicyLabels {
                    grpc_type: labels.grpc_type,
                    grpc_service: labels.grpc_service,
                    grpc_method: labels.grpc_method,
                    policy: PolicyKind::UnknownMethod.as_str(),
                }),
            },
        }
    }

    fn rpc_series(&self, rpc: &'static RpcDescriptor) -> RpcSeries {
        let labels = RpcLabels::of(rpc);
        let handled = labels.by_code(&self.handled);
        let panics = self.panics.get_or_create_owned(&labels);
        // One counter per entry of `PolicyKind::ALL`; the slot of `Recovery` is the panics
        // counter, so a policy's counter is found by its position alone.
        let ended_by = PolicyKind::ALL
            .iter()
            .map(|&policy| match policy {
                PolicyKind::Recovery => panics.clone(),
                // Only the edge's one unknown-method series counts it: a detached counter
                // keeps the slots aligned without exporting a series that stays at zero.
                PolicyKind::UnknownMethod => Counter::default(),
                _ => self.rejected.get_or_create_owned(&PolicyLabels {
                    grpc_type: labels.grpc_type,
                    grpc_service: labels.grpc_service,
                    grpc_method: labels.grpc_method,
                    policy: policy.as_str(),
                }),
            })
            .collect();
        RpcSeries {
            backend_errors: self.backend_errors.clone(),
            labels: labels.clone(),
            started: self.started.get_or_create_owned(&labels),
            handled,
            handling: self.handling.get_or_create_owned(&labels),
            msg_received: self.msg_received.get_or_create_owned(&labels),
            msg_sent: self.msg_sent.get_or_create_owned(&labels),
            bytes_received: self.bytes_received.get_or_create_owned(&labels),
            bytes_sent: self.bytes_sent.get_or_create_owned(&labels),
            ended_by,
        }
    }
}

/// The series of one RPC: handles into the families, shared with the registry.
#[derive(Debug)]
struct RpcSeries {
    started: Counter,
    handled: [Counter; 17],
    handling: Histogram,
    msg_received: Counter,
    msg_sent: Counter,
    bytes_received: Counter,
    bytes_sent: Counter,
    /// Aligned with [`PolicyKind::ALL`].
    ended_by: Box<[Counter]>,
    /// The family, as a backend's name is known only at its first error.
    backend_errors: Counters<BackendLabels>,
    labels: RpcLabels,
}

impl RpcSeries {
    fn finish(&self, call: &Call, outcome: &CallOutcome) {
        // Behind an edge with metrics, the edge counts the end and the deadline (one
        // clock, one count); the messages and the handler's refusals stay here.
        let by_edge = call.counted_by_edge();
        if !by_edge {
            self.handled(outcome.code, call.elapsed());
        }
        add(&self.msg_received, outcome.messages_in);
        add(&self.msg_sent, outcome.messages_out);
        add(&self.bytes_received, outcome.bytes_in);
        add(&self.bytes_sent, outcome.bytes_out);
        if let Some(backend) = outcome.decided_without {
            self.backend_errors
                .get_or_create(&BackendLabels {
                    grpc_type: self.labels.grpc_type,
                    grpc_service: self.labels.grpc_service,
                    grpc_method: self.labels.grpc_method,
                    backend,
                })
                .inc();
        }
        match outcome.ended_by {
            Some(PolicyKind::Deadline) if by_edge => {}
            Some(policy) => self.rejected(policy),
            None => {}
        }
    }

    fn handled(&self, code: Code, elapsed: Duration) {
        // `Code` is a fieldless enum numbered as on the wire (0..=16).
        if let Some(counter) = self.handled.get(code as usize) {
            counter.inc();
        }
        self.handling.observe(elapsed.as_secs_f64());
    }

    fn rejected(&self, policy: PolicyKind) {
        if let Some(slot) = PolicyKind::ALL.iter().position(|&p| p == policy) {
            self.ended_by[slot].inc();
        }
    }
}

/// The `grpc_method` label of the calls whose path names no method of the service: one
/// fixed value, so a client cannot create series by inventing paths. `<` and `>` cannot
/// appear in a `.proto` method name, so it never collides with a real method.
pub const UNKNOWN_METHOD_LABEL: &str = "<unknown>";

/// The `grpc_type` label of those calls: their kind is not known.
pub const UNKNOWN_TYPE_LABEL: &str = "unknown";

/// The series an [`Edge`](crate::server::Edge) counts in: those of the service's RPCs
/// (shared with [`ServiceMetrics`]) and one for unknown methods.
#[derive(Debug)]
pub(crate) struct EdgeMetrics {
    /// Indexed by `Rpc::INDEX`.
    series: Box<[RpcSeries]>,
    unknown: UnknownSeries,
}

/// `started`, `handled` by code, the histogram and `rejected{policy="unknown_method"}`
/// of the unknown-method label.
#[derive(Debug)]
struct UnknownSeries {
    started: Counter,
    handled: [Counter; 17],
    handling: Histogram,
    rejected: Counter,
}

impl EdgeMetrics {
    /// The call of RPC `index` (`None`: an unknown method) started.
    pub(crate) fn started(&self, index: Option<usize>) {
        match index.and_then(|i| self.series.get(i)) {
            Some(series) => series.started.inc(),
            None => self.unknown.started.inc(),
        };
    }

    /// The call of RPC `index` ended with `code` after `elapsed`; `policy` when an edge
    /// rule (or the deadline) ended it.
    pub(crate) fn finished(
        &self,
        index: Option<usize>,
        code: Code,
        elapsed: Duration,
        policy: Option<PolicyKind>,
    ) {
        match index.and_then(|i| self.series.get(i)) {
            Some(series) => {
                series.handled(code, elapsed);
                if let Some(policy) = policy {
                    series.rejected(policy);
                }
            }
            None => {
                let unknown = &self.unknown;
                if let Some(counter) = unknown.handled.get(code as usize) {
                    counter.inc();
                }
                unknown.handling.observe(elapsed.as_secs_f64());
                if policy == Some(PolicyKind::UnknownMethod) {
                    unknown.rejected.inc();
                }
            }
        }
    }
}

pub(crate) fn add(counter: &Counter, n: u64) {
    if n != 0 {
        counter.inc_by(n);
    }
}

/// The metrics of the service `S`, from [`ServerMetrics::service`]: a [`Hook`] for every
/// RPC of `S`.
///
/// `on_call` counts `grpc_server_started_total`; `on_finish` counts the rest from the
/// [`CallOutcome`]: `grpc_server_handled_total{grpc_code}`, the duration in
/// `grpc_server_handling_seconds`, the messages and bytes, and
/// `grpc_server_rejected_total{policy}` or `grpc_server_panics_total` when a policy ended
/// the call ([`CallOutcome::ended_by`]).
///
/// Messages and bytes are added once per call, when it ends, not per message (unlike
/// go-grpc-middleware): nothing on the per-message hot path, but a long-lived stream's
/// messages show in `grpc_server_msg_*` only when the stream ends. Watch a stream's
/// progress in its handler if you need to.
///
/// `started` is counted in `on_call`: attach the metrics as the first hook so a call
/// rejected by an earlier step still counts as started (its `on_finish` always runs).
///
/// Behind an [`Edge`](crate::server::Edge) with [`metrics`](crate::server::Edge::metrics),
/// the edge counts `started`, `handled`, the histogram and the `deadline` rejections (it
/// sees every call, also those refused before a handler runs); this hook then counts
/// only the messages, the bytes, panics and the other policies' rejections, so each call
/// is counted once.
///
/// Cloning is cheap (one `Arc`). The service type parameter makes handing one service's
/// metrics to another a type error.
///
/// ```
/// use tonic::Code;
/// use tonic_intercept::prometheus_client::registry::Registry;
/// use tonic_intercept::{Call, CallOutcome, Hook, PolicyKind, ServerMetrics};
/// use tonic_intercept::metrics::render_metrics;
/// # tonic_intercept::__doc_service!(Users = "users.v1.UserService" { 0 => GetUser: Unary });
///
/// let mut registry = Registry::default();
/// let users = ServerMetrics::register(&mut registry).service::<Users>();
///
/// // What `#[intercept]` does for a call of `GetUser` refused by `auth(..)`:
/// let call = Call::start(&<GetUser as tonic_intercept::Rpc>::DESCRIPTOR, &tonic::Request::new(()), None);
/// let mut outcome = CallOutcome::new(Code::Unauthenticated);
/// outcome.ended_by = Some(PolicyKind::Auth);
/// Hook::<GetUser>::on_finish(&users, &call, &outcome);
///
/// let body = render_metrics(&registry);
/// assert!(body.contains(r#"grpc_server_handled_total{grpc_type="unary",grpc_service="users.v1.UserService",grpc_method="GetUser",grpc_code="Unauthenticated"} 1"#));
/// assert!(body.contains(r#"grpc_server_rejected_total{grpc_type="unary",grpc_service="users.v1.UserService",grpc_method="GetUser",policy="auth"} 1"#));
/// ```
pub struct ServiceMetrics<S> {
    /// Indexed by `Rpc::INDEX`.
    series: Arc<[RpcSeries]>,
    _service: PhantomData<fn() -> S>,
}

impl<S> Clone for ServiceMetrics<S> {
    fn clone(&self) -> Self {
        Self {
            series: self.series.clone(),
            _service: PhantomData,
        }
    }
}

impl<S: Service> fmt::Debug for ServiceMetrics<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceMetrics")
            .field("service", &S::NAME)
            .field("rpcs", &self.series.len())
            .finish()
    }
}

impl<S: Service, R: Rpc<Service = S>> Hook<R> for ServiceMetrics<S> {
    fn on_call(
        &self,
        call: &Call,
        _metadata: &MetadataMap,
    ) -> impl Future<Output = Result<(), Status>> + Send {
        if !call.counted_by_edge()
            && let Some(series) = self.series.get(R::INDEX)
        {
            series.started.inc();
        }
        std::future::ready(Ok(()))
    }

    fn on_finish(&self, call: &Call, outcome: &CallOutcome) {
        if let Some(series) = self.series.get(R::INDEX) {
            series.finish(call, outcome);
        }
    }
}

/// Defines a stand-in service with RPCs (`()` messages) for doc examples.
#[doc(hidden)]
#[macro_export]
macro_rules! __doc_service {
    ($svc:ident = $name:literal { $($index:literal => $rpc:ident: $kind:ident),* $(,)? }) => {
        #[derive(Debug, Clone, Copy)]
        pub struct $svc;
        impl $crate::__private::Service for $svc {
            const NAME: &'static str = $name;
            const RPCS: &'static [&'static $crate::__private::RpcDescriptor] =
                &[$(&<$rpc as $crate::__private::Rpc>::DESCRIPTOR),*];
        }
        $(
            #[derive(Debug, Clone, Copy)]
            pub struct $rpc;
            impl $crate::__private::Rpc for $rpc {
                type Service = $svc;
                type Request = ();
                type Response = ();
                const INDEX: usize = $index;
                const DESCRIPTOR: $crate::__private::RpcDescriptor = $crate::__private::RpcDescriptor::new(
                    $name,
                    stringify!($rpc),
                    concat!("/", $name, "/", stringify!($rpc)),
                    $crate::__private::RpcKind::$kind,
                    $crate::__private::IdempotencyLevel::Unknown,
                    false,
                );
            }
        )*
    };
}
