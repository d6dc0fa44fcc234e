//! The value of an RPC's limits: what `#[intercept(limit(..))]` and the `.proto` declare.
//! It sits with the RPC model because a descriptor carries the `.proto`'s limits
//! ([`RpcPolicy::limits`]); `policy::limits` enforces them and is its public home.

use std::time::Duration;

use super::RpcPolicy;

/// The limits of one RPC, as `#[intercept(limit(...))]` declared them.
///
/// Built in a `const` by the macro; every field is optional.
///
/// ```
/// use std::time::Duration;
/// use tonic_intercept::Limits;
/// use tonic_intercept::limits::OnRateExceeded;
///
/// const LIST_USERS: Limits = Limits::new()
///     .max_messages_out(10_000)
///     .messages_per_second_out(500, 1, OnRateExceeded::Delay)
///     .timeout(Duration::from_secs(30));
/// assert_eq!(LIST_USERS.get_max_messages_out(), Some(10_000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    max_messages_in: Option<u64>,
    max_messages_out: Option<u64>,
    max_message_bytes: Option<u64>,
    max_total_bytes_in: Option<u64>,
    rate_in: Option<MessageRate>,
    rate_out: Option<MessageRate>,
    timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    measure_bytes: bool,
}

/// A token bucket: `per_second` messages a second, bursts of `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRate {
    /// Sustained messages per second.
    pub per_second: u32,
    /// How many messages may pass back to back before pacing starts.
    pub burst: u32,
    /// Wait (backpressure) or fail when a message comes too early.
    pub on_exceeded: OnRateExceeded,
}

/// What a stream does with a message that arrives faster than its rate allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnRateExceeded {
    /// Hold the message until the bucket has a token. Inbound, this stops reading, so
    /// HTTP/2 flow control slows the client down; outbound, it stops polling the producer.
    #[default]
    Delay,
    /// End the call with `RESOURCE_EXHAUSTED`.
    Reject,
}

impl Limits {
    /// No limits.
    pub const fn new() -> Self {
        Self {
            max_messages_in: None,
            max_messages_out: None,
            max_message_bytes: None,
            max_total_bytes_in: None,
            rate_in: None,
            rate_out: None,
            timeout: None,
            idle_timeout: None,
            measure_bytes: false,
        }
    }
    /// At most `n` request messages in one stream.
    pub const fn max_messages_in(mut self, n: u64) -> Self {
        self.max_messages_in = Some(n);
        self
    }
    /// At most `n` response messages in one stream.
    pub const fn max_messages_out(mut self, n: u64) -> Self {
        self.max_messages_out = Some(n);
        self
    }
    /// At most `n` encoded bytes per message, either way.
    ///
    /// `u64` like every byte count of the crate (the `.proto`'s `uint64`, `RpcPolicy`,
    /// `ClientPolicy`, [`Outcome`](crate::Outcome)), so a limit means the same on every
    /// target.
    pub const fn max_message_bytes(mut self, n: u64) -> Self {
        self.max_message_bytes = Some(n);
        self
    }
    /// At most `n` encoded bytes of request messages in one call, all messages together:
    /// a cap on a whole upload, where [`Limits::max_message_bytes`] caps each message.
    /// The message that would cross it ends the call with `RESOURCE_EXHAUSTED`.
    pub const fn max_total_bytes_in(mut self, n: u64) -> Self {
        self.max_total_bytes_in = Some(n);
        self
    }
    /// Paces request messages.
    pub const fn messages_per_second_in(
        mut self,
        per_second: u32,
        burst: u32,
        on_exceeded: OnRateExceeded,
    ) -> Self {
        self.rate_in = Some(MessageRate {
            per_second,
            burst,
            on_exceeded,
        });
        self
    }
    /// Paces response messages.
    pub const fn messages_per_second_out(
        mut self,
        per_second: u32,
        burst: u32,
        on_exceeded: OnRateExceeded,
    ) -> Self {
        self.rate_out = Some(MessageRate {
            per_second,
            burst,
            on_exceeded,
        });
        self
    }
    /// Ends the call with `DEADLINE_EXCEEDED` after `timeout` (or at the client's
    /// `grpc-timeout`, if earlier).
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Ends a stream with `DEADLINE_EXCEEDED` when no message moved (either way) for
    /// `idle`.
    pub const fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }
    /// Measures every message's encoded size, for [`CallOutcome`](crate::CallOutcome)'s byte
    /// counts, even without a byte limit (metrics turn this on).
    pub const fn measure_bytes(mut self) -> Self {
        self.measure_bytes = true;
        self
    }
    /// Applies what the `.proto` declared for the RPC (see [`RpcPolicy::limits`]) over
    /// these limits: a value from the `.proto` replaces one set for every RPC. Message
    /// rates from the `.proto` keep this value's burst (1 by default) and pacing.
    pub const fn with_policy(self, policy: &RpcPolicy) -> Self {
        self.overlaid(policy.limits())
    }

    /// These limits, with each value `over` sets in place of this one's. A message rate
    /// takes only `over`'s `per_second`: the `.proto`, where `over` comes from, declares
    /// no burst or pacing, so this value's stay (a burst of 1 and `Delay` where this sets
    /// no rate).
    const fn overlaid(self, over: &Limits) -> Self {
        Self {
            max_messages_in: or(over.max_messages_in, self.max_messages_in),
            max_messages_out: or(over.max_messages_out, self.max_messages_out),
            max_message_bytes: or(over.max_message_bytes, self.max_message_bytes),
            max_total_bytes_in: or(over.max_total_bytes_in, self.max_total_bytes_in),
            rate_in: rate_or(over.rate_in, self.rate_in),
            rate_out: rate_or(over.rate_out, self.rate_out),
            timeout: or(over.timeout, self.timeout),
            idle_timeout: or(over.idle_timeout, self.idle_timeout),
            measure_bytes: self.measure_bytes || over.measure_bytes,
        }
    }

    /// Whether any limit is set ([`Limits::measure_bytes`] is not a limit).
    pub const fn sets_any(&self) -> bool {
        self.max_messages_in.is_some()
            || self.max_messages_out.is_some()
            || self.max_message_bytes.is_some()
            || self.max_total_bytes_in.is_some()
            || self.rate_in.is_some()
            || self.rate_out.is_some()
            || self.timeout.is_some()
            || self.idle_timeout.is_some()
    }

    /// Whether messages are measured even without a byte limit (see
    /// [`Limits::measure_bytes`]).
    pub(crate) const fn get_measure_bytes(&self) -> bool {
        self.measure_bytes
    }

    /// See [`Limits::max_messages_in`].
    pub const fn get_max_messages_in(&self) -> Option<u64> {
        self.max_messages_in
    }
    /// See [`Limits::max_messages_out`].
    pub const fn get_max_messages_out(&self) -> Option<u64> {
        self.max_messages_out
    }
    /// See [`Limits::max_message_bytes`].
    pub const fn get_max_message_bytes(&self) -> Option<u64> {
        self.max_message_bytes
    }
    /// See [`Limits::max_total_bytes_in`].
    pub const fn get_max_total_bytes_in(&self) -> Option<u64> {
        self.max_total_bytes_in
    }
    /// See [`Limits::messages_per_second_in`].
    pub const fn get_messages_per_second_in(&self) -> Option<MessageRate> {
        self.rate_in
    }
    /// See [`Limits::messages_per_second_out`].
    pub const fn get_messages_per_second_out(&self) -> Option<MessageRate> {
        self.rate_out
    }
    /// See [`Limits::timeout`].
    pub const fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }
    /// See [`Limits::idle_timeout`].
    pub const fn get_idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// Renamed [`Limits::get_messages_per_second_in`]: every getter is `get_` and its
    /// builder's name.
    #[deprecated(note = "use `get_messages_per_second_in`")]
    #[doc(hidden)]
    pub const fn get_rate_in(&self) -> Option<MessageRate> {
        self.rate_in
    }
    /// Renamed [`Limits::get_messages_per_second_out`].
    #[deprecated(note = "use `get_messages_per_second_out`")]
    #[doc(hidden)]
    pub const fn get_rate_out(&self) -> Option<MessageRate> {
        self.rate_out
    }
}

/// `over` if set, else `base`.
const fn or<T: Copy>(over: Option<T>, base: Option<T>) -> Option<T> {
    match over {
        Some(_) => over,
        None => base,
    }
}

/// `over`'s rate, paced as `base` is (a burst of 1 and `Delay` if `base` sets no rate).
const fn rate_or(over: Option<MessageRate>, base: Option<MessageRate>) -> Option<MessageRate> {
    let Some(MessageRate { per_second, .. }) = over else {
        return base;
    };
    Some(match base {
        Some(r) => MessageRate { per_second, ..r },
        None => MessageRate {
            per_second,
            burst: 1,
            on_exceeded: OnRateExceeded::Delay,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proto_replaces_values_and_keeps_the_attributes_rate_shape() {
        let attribute = Limits::new()
            .max_messages_out(10)
            .max_message_bytes(64)
            .messages_per_second_out(5, 8, OnRateExceeded::Reject)
            .timeout(Duration::from_secs(1))
            .measure_bytes();
        let proto = RpcPolicy::new().with_limits(
            Limits::new()
                .max_messages_out(3)
                .messages_per_second_out(50, 1, OnRateExceeded::Delay)
                .messages_per_second_in(7, 1, OnRateExceeded::Delay)
                .idle_timeout(Duration::from_millis(200)),
        );
        let merged = attribute.with_policy(&proto);
        assert_eq!(merged.get_max_messages_out(), Some(3));
        assert_eq!(merged.get_max_message_bytes(), Some(64));
        assert_eq!(merged.get_max_messages_in(), None);
        // The `.proto`'s per-second value, the attribute's burst and pacing.
        assert_eq!(
            merged.get_messages_per_second_out(),
            Some(MessageRate {
                per_second: 50,
                burst: 8,
                on_exceeded: OnRateExceeded::Reject
            })
        );
        // No rate here: a burst of 1 and `Delay`.
        assert_eq!(
            merged.get_messages_per_second_in(),
            Some(MessageRate {
                per_second: 7,
                burst: 1,
                on_exceeded: OnRateExceeded::Delay
            })
        );
        assert_eq!(merged.get_timeout(), Some(Duration::from_secs(1)));
        assert_eq!(merged.get_idle_timeout(), Some(Duration::from_millis(200)));
        assert!(merged.get_measure_bytes());
        assert_eq!(attribute.with_policy(&RpcPolicy::new()), attribute);
    }

    #[test]
    fn measuring_is_not_a_limit() {
        assert!(!Limits::new().measure_bytes().sets_any());
        assert!(!RpcPolicy::new().public().declares_limits());
        let total = Limits::new().max_total_bytes_in(1);
        assert!(RpcPolicy::new().with_limits(total).declares_limits());
    }
}
