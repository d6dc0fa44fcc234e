//! [`EnvoyRls`]: call rates kept by an Envoy rate limit service (envoyproxy/ratelimit,
//! Kuadrant's Limitador, or any server of `envoy.service.ratelimit.v3.RateLimitService`),
//! asked over tonic with `ShouldRateLimit`. The behaviour is documented on [`EnvoyRls`].

mod pb;

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use self::pb::envoy::config::core::v3::HeaderValue;
use self::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use self::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
    Entry, RateLimitOverride,
};
use self::pb::envoy::service::ratelimit::v3::rate_limit_response::{Code, DescriptorStatus};
use self::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use self::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use self::pb::envoy::r#type::v3::RateLimitUnit;
use super::local::{DenyCache, Failures};
use super::{BackendError, Decision, FailurePolicy, RateBackend, RateKey, RateLimit};

/// The domain, descriptor entries, budget and failure policy of an [`EnvoyRls`].
///
/// ```
/// use std::time::Duration;
/// use tonic_intercept::backend::{EnvoyRlsConfig, FailurePolicy};
///
/// let config = EnvoyRlsConfig::new("users")
///     .budget(Duration::from_millis(50))
///     .failure_policy(FailurePolicy::FallbackLocal)
///     .entry("cluster", "eu-west-1");
/// assert_eq!(config.domain, "users");
/// assert_eq!(config.connect_timeout, Duration::from_secs(1));
/// assert_eq!(config.entries, [("cluster".into(), "eu-west-1".into())]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnvoyRlsConfig {
    /// The `domain` of every request: the service's namespace of limits (a domain of
    /// envoyproxy/ratelimit's configuration, a Limitador namespace).
    pub domain: Cow<'static, str>,
    /// Static descriptor entries sent after `rpc` and `identity`, in order. Default none.
    pub entries: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    /// The longest a check may take, connecting included; past it the failure policy
    /// decides. Default 20 ms: the `timeout` Envoy's own rate limit filter defaults to,
    /// so a team moving a limit from Envoy to the service keeps its latency bound.
    pub budget: Duration,
    /// How long one connection attempt may take. Default 1 s: an attempt goes on in the
    /// background after the check that started it has been decided by the failure policy,
    /// so it may outlast the budget without holding any call.
    pub connect_timeout: Duration,
    /// What a check does when the service fails or is slower than the budget. Default
    /// [`FailurePolicy::FailOpen`], as Envoy.
    pub failure_policy: FailurePolicy,
    /// How many refused keys are remembered locally (refused again without a round trip
    /// until their `retry_after`), and how many keys the fallback buckets hold. Default
    /// 10 000.
    pub deny_cache_capacity: usize,
    /// Whether to send the declared rate as the descriptor's `limit` override (when its
    /// period is a second, a minute, an hour or a day). Default `true`; turn it off to
    /// let the service's configuration alone decide.
    pub limit_override: bool,
}

impl EnvoyRlsConfig {
    /// The defaults for `domain`: no static entries, 20 ms budget, 1 s connect timeout,
    /// fail open, 10 000 cached denials, the declared rate sent as the limit override.
    pub const fn new(domain: &'static str) -> Self {
        Self {
            domain: Cow::Borrowed(domain),
            entries: Vec::new(),
            budget: Duration::from_millis(20),
            connect_timeout: Duration::from_secs(1),
            failure_policy: FailurePolicy::FailOpen,
            deny_cache_capacity: 10_000,
            limit_override: true,
        }
    }

    /// Appends a static descriptor entry `(key, value)`, sent with every check after
    /// `rpc` and `identity`.
    pub fn entry(
        mut self,
        key: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.entries.push((key.into(), value.into()));
        self
    }

    /// Sets [`budget`](Self::budget).
    pub const fn budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub const fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`failure_policy`](Self::failure_policy).
    pub const fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }

    /// Sets [`deny_cache_capacity`](Self::deny_cache_capacity).
    pub const fn deny_cache_capacity(mut self, capacity: usize) -> Self {
        self.deny_cache_capacity = capacity;
        self
    }

    /// Sets [`limit_override`](Self::limit_override).
    pub const fn limit_override(mut self, enable: bool) -> Self {
        self.limit_override = enable;
        self
    }
}

/// Call rates kept by an Envoy rate limit service: one `ShouldRateLimit` per admitted
/// call, over a tonic [`Channel`].
///
/// Each replica builds its own `EnvoyRls`; all replicas pointed at one service share its
/// counters.
///
/// # What is sent
///
/// One `RateLimitRequest` per check: the configured `domain`, `hits_addend = 1` and one
/// descriptor whose entries are, in this order:
///
/// 1. `("rpc", "<package.Service/Method>")`, the RPC ([`RateKey::rpc`]);
/// 2. `("identity", "<caller>")`, only for a per-identity key ([`RateKey::identity`]);
/// 3. the static entries of the configuration ([`EnvoyRlsConfig::entry`]), in the order
///    they were added (a cluster, a tenant, a tier...).
///
/// The service matches the entries against its own configuration (a domain's descriptors
/// in envoyproxy/ratelimit, CEL conditions on `descriptors[0]` in Limitador).
///
/// The rate declared in the code goes along as the descriptor's `limit` override
/// (`requests_per_unit` = [`RateLimit::per_period`], `unit` from [`RateLimit::period`])
/// when the period is exactly a second, a minute, an hour or a day, and
/// [`EnvoyRlsConfig::limit_override`] is on (the default). envoyproxy/ratelimit then uses
/// it instead of the limit of its configuration (the descriptor must still match one of
/// its keys); Limitador ignores overrides and always applies its own limits. Both count
/// in fixed windows: the burst of a [`RateLimit`] has no equivalent and is not sent.
///
/// # What comes back
///
/// - `OK` -> [`Decision::Allowed`] with `remaining` = the descriptor's `limit_remaining`
///   and `reset_after` = its `duration_until_reset`. A service that sends no descriptor
///   status (Limitador's) is read through the `x-ratelimit-remaining` and
///   `x-ratelimit-reset` entries of `response_headers_to_add` when it sends them; with
///   neither, `remaining` is `u32::MAX` (no limit is known) and `reset_after` zero.
/// - `OVER_LIMIT` -> [`Decision::Denied`] with `retry_after` (the refusal's
///   `grpc-retry-pushback-ms`) and `reset_after` = the `duration_until_reset` of the
///   over-limit descriptor: in a fixed window, the first instant a call can pass. Without
///   it (Limitador's server sends none), `x-ratelimit-reset` (whole seconds, at least 1),
///   and failing that the declared [`RateLimit::period`] (the longest a window of that
///   rate can last).
/// - `UNKNOWN`, a gRPC error, an unreachable service or no answer within
///   [`EnvoyRlsConfig::budget`] -> the [`FailurePolicy`], counted by
///   [`EnvoyRls::errors`].
///
/// # What is shared and what is local
///
/// Shared (in the service): the counters, hence the number of calls a caller may start
/// across all replicas, and the limits themselves when the service's configuration sets
/// them. Local (in each replica): the connection, the cache of refusals (a refused key is
/// refused again without a round trip until its `retry_after`: a fixed window cannot
/// admit it earlier, so nothing is lost), the failure policy with its fallback buckets,
/// and the counters [`EnvoyRls::errors`] and [`EnvoyRls::round_trips`].
///
/// # When the service fails
///
/// As Envoy's rate limit filter (`failure_mode_deny: false`): fail open by default, each
/// call admitted as [`Decision::Unchecked`]. [`FailurePolicy::FailClosed`] refuses with a
/// [`BackendError`] (a server answers `UNAVAILABLE`); [`FailurePolicy::FallbackLocal`]
/// decides with an in-process GCRA bucket of the declared rate (per replica). Every
/// decision taken without the service is counted ([`EnvoyRls::errors`]) and traced with
/// `tracing::warn!`, at most once a second. A check never takes longer than the budget
/// (default 20 ms, Envoy's own default for its rate limit service calls); the connection
/// is made lazily and, once started, goes on in the background past a check's budget.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use tonic_intercept::backend::{EnvoyRls, EnvoyRlsConfig, RateBackend, RateKey, RateLimit};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let rls = EnvoyRls::new(
///     "http://127.0.0.1:8081",
///     EnvoyRlsConfig::new("users").entry("cluster", "eu-west-1"),
/// )?;
/// let key = RateKey::per_identity("users.v1.UserService/GetUser", "alice");
/// let limit = RateLimit::new(5, Duration::from_secs(60));
/// // Sends domain "users", descriptor [rpc, identity, cluster], override 5 per MINUTE.
/// let decision = rls.check(&key, limit).await?;
/// println!("{decision:?}, {} round trips", rls.round_trips());
/// # Ok(()) }
/// ```
pub struct EnvoyRls {
    client: RateLimitServiceClient<Channel>,
    config: EnvoyRlsConfig,
    /// `config.entries` as protobuf, cloned into each request.
    entries: Vec<Entry>,
    denials: DenyCache,
    failures: Failures,
    round_trips: AtomicU64,
}

impl fmt::Debug for EnvoyRls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvoyRls")
            .field("config", &self.config)
            .field("errors", &self.errors())
            .field("round_trips", &self.round_trips())
            .finish_non_exhaustive()
    }
}

impl EnvoyRls {
    /// The key of the descriptor entry that names the RPC: `("rpc", "package.Service/Method")`.
    pub const RPC_ENTRY: &'static str = "rpc";

    /// The key of the descriptor entry that names the caller of a per-identity limit:
    /// `("identity", "<caller>")`.
    pub const IDENTITY_ENTRY: &'static str = "identity";

    /// A backend on the rate limit service at `uri` (`http://host:port`). Connects lazily,
    /// on the first check, with [`EnvoyRlsConfig::connect_timeout`], and reconnects by
    /// itself after the service comes back. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// When `uri` is not a valid URI.
    pub fn new(
        uri: impl Into<String>,
        config: EnvoyRlsConfig,
    ) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(uri.into())?
            .connect_timeout(config.connect_timeout)
            .connect_lazy();
        Ok(Self::with_channel(channel, config))
    }

    /// A backend on an existing channel (TLS, a load-balanced channel, ...); its own
    /// timeouts apply, [`EnvoyRlsConfig::connect_timeout`] is not used.
    pub fn with_channel(channel: Channel, config: EnvoyRlsConfig) -> Self {
        let entries = config
            .entries
            .iter()
            .map(|(key, value)| Entry {
                key: key.to_string(),
                value: value.to_string(),
            })
            .collect();
        Self {
            client: RateLimitServiceClient::new(channel),
            entries,
            denials: DenyCache::new(config.deny_cache_capacity),
            failures: Failures::new(config.failure_policy, config.deny_cache_capacity),
            round_trips: AtomicU64::new(0),
            config,
        }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &EnvoyRlsConfig {
        &self.config
    }

    /// How many decisions were taken without the service (an error, an `UNKNOWN` answer
    /// or a timeout), under any failure policy.
    pub fn errors(&self) -> u64 {
        self.failures.count()
    }

    /// How many checks went to the service (one `ShouldRateLimit` each; a denial served
    /// from the local cache is not one).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// The request for one call of `key` at rate `limit`.
    fn request(&self, key: &RateKey, limit: RateLimit) -> RateLimitRequest {
        let mut entries = Vec::with_capacity(2 + self.entries.len());
        entries.push(Entry {
            key: Self::RPC_ENTRY.to_owned(),
            value: key.rpc().to_owned(),
        });
        if let Some(identity) = key.identity() {
            entries.push(Entry {
                key: Self::IDENTITY_ENTRY.to_owned(),
                value: identity.to_owned(),
            });
        }
        entries.extend(self.entries.iter().cloned());
        let limit = if self.config.limit_override {
            limit_override(limit)
        } else {
            None
        };
        RateLimitRequest {
            domain: self.config.domain.to_string(),
            descriptors: vec![RateLimitDescriptor {
                entries,
                limit,
                hits_addend: None,
            }],
            hits_addend: 1,
        }
    }

    /// One `ShouldRateLimit`, bounded by the budget.
    async fn ask(
        &self,
        key: &RateKey,
        limit: RateLimit,
    ) -> Result<RateLimitResponse, BackendError> {
        let request = self.request(key, limit);
        let mut client = self.client.clone();
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let budget = self.config.budget;
        match tokio::time::timeout(budget, client.should_rate_limit(request)).await {
            Err(_) => Err(BackendError::Timeout(budget)),
            Ok(Err(status)) => Err(BackendError::Failed(format!(
                "ShouldRateLimit: {:?}: {}",
                status.code(),
                status.message()
            ))),
            Ok(Ok(response)) => Ok(response.into_inner()),
        }
    }

    /// Reads the service's answer.
    fn decide(
        &self,
        key: &RateKey,
        limit: RateLimit,
        now: Instant,
        response: &RateLimitResponse,
    ) -> Result<Decision, BackendError> {
        match Code::try_from(response.overall_code) {
            Ok(Code::Ok) => {
                let status = response.statuses.first();
                let remaining = status
                    .filter(|s| s.current_limit.is_some())
                    .map(|s| s.limit_remaining)
                    .or_else(|| header(response, "x-ratelimit-remaining")?.parse().ok())
                    .unwrap_or(u32::MAX);
                let reset_after = status
                    .and_then(until_reset)
                    .or_else(|| reset_header(response))
                    .unwrap_or(Duration::ZERO);
                Ok(Decision::Allowed {
                    remaining,
                    reset_after,
                })
            }
            Ok(Code::OverLimit) => {
                let over = Code::OverLimit as i32;
                let retry_after = response
                    .statuses
                    .iter()
                    .find(|s| s.code == over)
                    .and_then(until_reset)
                    // Whole seconds: a window in its last second still refuses for one.
                    .or_else(|| Some(reset_header(response)?.max(Duration::from_secs(1))))
                    .unwrap_or(limit.period);
                if !retry_after.is_zero() {
                    self.denials.remember(key, now, retry_after, retry_after);
                }
                Ok(Decision::Denied {
                    retry_after,
                    reset_after: retry_after,
                })
            }
            Ok(Code::Unknown) | Err(_) => self.failures.decide(
                "the rate limit service",
                key,
                limit,
                BackendError::Failed(format!(
                    "ShouldRateLimit answered overall_code {} (neither OK nor OVER_LIMIT)",
                    response.overall_code
                )),
            ),
        }
    }
}

/// The declared rate as a descriptor override, when its period is one unit of Envoy's.
fn limit_override(limit: RateLimit) -> Option<RateLimitOverride> {
    if limit.period.subsec_nanos() != 0 {
        return None;
    }
    let unit = match limit.period.as_secs() {
        1 => RateLimitUnit::Second,
        60 => RateLimitUnit::Minute,
        3_600 => RateLimitUnit::Hour,
        86_400 => RateLimitUnit::Day,
        _ => return None,
    };
    Some(RateLimitOverride {
        requests_per_unit: limit.per_period,
        unit: unit as i32,
    })
}

/// A descriptor's `duration_until_reset` (a negative one as none).
fn until_reset(status: &DescriptorStatus) -> Option<Duration> {
    Duration::try_from(status.duration_until_reset?).ok()
}

/// `x-ratelimit-reset` (seconds) among the headers the service asks to add.
fn reset_header(response: &RateLimitResponse) -> Option<Duration> {
    header(response, "x-ratelimit-reset")?
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// The value of `name` (any case) in `response_headers_to_add`.
fn header<'a>(response: &'a RateLimitResponse, name: &str) -> Option<&'a str> {
    let HeaderValue {
        value, raw_value, ..
    } = response
        .response_headers_to_add
        .iter()
        .find(|h| h.key.eq_ignore_ascii_case(name))?;
    if value.is_empty() {
        std::str::from_utf8(raw_value).ok()
    } else {
        Some(value.as_str())
    }
    .map(str::trim)
}

impl RateBackend for EnvoyRls {
    fn name(&self) -> &'static str {
        "envoy_rls"
    }

    async fn check(&self, key: &RateKey, limit: RateLimit) -> Result<Decision, BackendError> {
        let now = Instant::now();
        if let Some(denied) = self.denials.cached(key, now) {
            return Ok(denied);
        }
        match self.ask(key, limit).await {
            Ok(response) => self.decide(key, limit, now, &response),
            Err(error) => self
                .failures
                .decide("the rate limit service", key, limit, error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_only_for_envoy_units() {
        let minute = limit_override(RateLimit::new(5, Duration::from_secs(60)).burst(2));
        assert_eq!(
            minute,
            Some(RateLimitOverride {
                requests_per_unit: 5,
                unit: RateLimitUnit::Minute as i32
            })
        );
        assert_eq!(
            limit_override(RateLimit::per_second(3)).map(|o| o.unit),
            Some(RateLimitUnit::Second as i32)
        );
        assert_eq!(
            limit_override(RateLimit::new(1, Duration::from_secs(86_400))).map(|o| o.unit),
            Some(RateLimitUnit::Day as i32)
        );
        assert_eq!(
            limit_override(RateLimit::new(5, Duration::from_secs(30))),
            None
        );
        assert_eq!(
            limit_override(RateLimit::new(5, Duration::from_millis(1_500))),
            None
        );
    }

    #[test]
    fn headers_are_read_in_any_case() {
        let response = RateLimitResponse {
            response_headers_to_add: vec![
                HeaderValue {
                    key: "X-RateLimit-Reset".into(),
                    value: " 42".into(),
                    raw_value: Vec::new(),
                },
                HeaderValue {
                    key: "x-ratelimit-remaining".into(),
                    value: String::new(),
                    raw_value: b"7".to_vec(),
                },
            ],
            ..RateLimitResponse::default()
        };
        assert_eq!(reset_header(&response), Some(Duration::from_secs(42)));
        assert_eq!(header(&response, "X-RATELIMIT-REMAINING"), Some("7"));
        assert_eq!(header(&response, "x-ratelimit-limit"), None);
    }
}
