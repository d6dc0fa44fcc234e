//! Per-RPC limits and the per-direction bookkeeping that enforces them.

use std::time::Duration;

use tokio::time::Instant;
use tonic::Status;

use crate::rpc::{RpcDescriptor, RpcPolicy};

pub use crate::policy::admission::identity_key;

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
    /// Applies what the `.proto` declared for the RPC (see [`RpcPolicy`]) over these
    /// limits: a value from the `.proto` replaces one set for every RPC. Message rates
    /// from the `.proto` keep this value's burst (1 by default) and pacing.
    pub const fn with_policy(mut self, policy: &RpcPolicy) -> Self {
        if let Some(n) = policy.max_messages_in {
            self.max_messages_in = Some(n);
        }
        if let Some(n) = policy.max_messages_out {
            self.max_messages_out = Some(n);
        }
        if let Some(n) = policy.max_message_bytes {
            self.max_message_bytes = Some(n);
        }
        if let Some(n) = policy.max_total_bytes_in {
            self.max_total_bytes_in = Some(n);
        }
        if let Some(n) = policy.messages_per_second_in {
            self.rate_in = Some(with_rate(self.rate_in, n));
        }
        if let Some(n) = policy.messages_per_second_out {
            self.rate_out = Some(with_rate(self.rate_out, n));
        }
        if let Some(ms) = policy.timeout_ms {
            self.timeout = Some(Duration::from_millis(ms));
        }
        if let Some(ms) = policy.idle_timeout_ms {
            self.idle_timeout = Some(Duration::from_millis(ms));
        }
        self
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
    pub const fn get_rate_in(&self) -> Option<MessageRate> {
        self.rate_in
    }
    /// See [`Limits::messages_per_second_out`].
    pub const fn get_rate_out(&self) -> Option<MessageRate> {
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
}

const fn with_rate(rate: Option<MessageRate>, per_second: u32) -> MessageRate {
    match rate {
        Some(r) => MessageRate { per_second, ..r },
        None => MessageRate {
            per_second,
            burst: 1,
            on_exceeded: OnRateExceeded::Delay,
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    In,
    Out,
}

impl Dir {
    fn noun(self) -> &'static str {
        match self {
            Dir::In => "request",
            Dir::Out => "response",
        }
    }
}

/// Counting and limits for one direction of one call. Plain integers: no allocation.
#[derive(Debug)]
pub(crate) struct Meter {
    dir: Dir,
    max_messages: Option<u64>,
    max_bytes: Option<u64>,
    /// Inbound only: the cap on the bytes of all messages of the call.
    max_total: Option<u64>,
    /// Whether messages are measured: a byte limit or metrics ask for it.
    measure: bool,
    rate: Option<Bucket>,
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
}

/// What the rate limiter says about the message in hand.
pub(crate) enum Admit {
    Now,
    At(Instant),
}

impl Meter {
    pub(crate) fn new(dir: Dir, limits: &Limits) -> Self {
        let (max_messages, max_total, rate) = match dir {
            Dir::In => (
                limits.max_messages_in,
                limits.max_total_bytes_in,
                limits.rate_in,
            ),
            Dir::Out => (limits.max_messages_out, None, limits.rate_out),
        };
        Self {
            dir,
            max_messages,
            max_bytes: limits.max_message_bytes,
            max_total,
            measure: limits.measure_bytes
                || limits.max_message_bytes.is_some()
                || max_total.is_some(),
            rate: rate.map(Bucket::new),
            messages: 0,
            bytes: 0,
        }
    }

    /// Checks a message against the count and size limits; returns its size (zero
    /// when sizes are not measured) for [`Meter::record`], once every other policy
    /// has passed it too.
    ///
    /// Inlined into the stream wrappers' `poll`; the errors are built out of line, so
    /// the hot path is a few compares.
    #[inline(always)]
    pub(crate) fn check<M: prost::Message>(
        &self,
        rpc: &RpcDescriptor,
        message: &M,
    ) -> Result<u64, Status> {
        if let Some(max) = self.max_messages
            && self.messages >= max
        {
            return Err(too_many(rpc, max, self.dir));
        }
        // `encoded_len` walks the message: only a byte limit or metrics pay for it.
        if let Some(max) = self.max_bytes {
            let len = message.encoded_len() as u64;
            if len > max {
                return Err(too_large(rpc, len, max, self.dir));
            }
            Ok(len)
        } else if self.measure {
            Ok(message.encoded_len() as u64)
        } else {
            Ok(0)
        }
    }

    /// Checks the total of a call's request messages with this one (`len`, from
    /// [`Meter::check`]) against `max_total_bytes_in`. Separate from `check` so that a
    /// response stream, which has no total, pays nothing for it.
    #[inline(always)]
    pub(crate) fn check_total(&self, rpc: &RpcDescriptor, len: u64) -> Result<u64, Status> {
        // `bytes` counts the messages that passed, so this is the total with this one.
        if let Some(max) = self.max_total
            && self.bytes.saturating_add(len) > max
        {
            return Err(too_much(rpc, max, self.dir));
        }
        Ok(len)
    }

    /// Counts a message that passed every policy.
    #[inline]
    pub(crate) fn record(&mut self, bytes: u64) {
        self.messages += 1;
        self.bytes += bytes;
    }

    /// Asks the token bucket when the message may pass.
    #[inline]
    pub(crate) fn admit(&mut self, rpc: &RpcDescriptor) -> Result<Admit, Status> {
        let Some(rate) = &mut self.rate else {
            return Ok(Admit::Now);
        };
        match rate.take(Instant::now) {
            None => Ok(Admit::Now),
            Some(at) if rate.on_exceeded == OnRateExceeded::Delay => Ok(Admit::At(at)),
            Some(_) => Err(too_fast(rpc, rate.per_second, self.dir)),
        }
    }
}

#[cold]
#[inline(never)]
fn too_many(rpc: &RpcDescriptor, max: u64, dir: Dir) -> Status {
    Status::resource_exhausted(format!(
        "{}: more than {max} {} messages in one stream",
        rpc.method,
        dir.noun()
    ))
}

#[cold]
#[inline(never)]
fn too_large(rpc: &RpcDescriptor, len: u64, max: u64, dir: Dir) -> Status {
    Status::resource_exhausted(format!(
        "{}: {} message of {len} bytes exceeds the limit of {max} bytes",
        rpc.method,
        dir.noun()
    ))
}

#[cold]
#[inline(never)]
fn too_much(rpc: &RpcDescriptor, max: u64, dir: Dir) -> Status {
    Status::resource_exhausted(format!(
        "{}: more than {max} bytes of {} messages in one stream",
        rpc.method,
        dir.noun()
    ))
}

#[cold]
#[inline(never)]
fn too_fast(rpc: &RpcDescriptor, per_second: u32, dir: Dir) -> Status {
    Status::resource_exhausted(format!(
        "{}: more than {per_second} {} messages per second",
        rpc.method,
        dir.noun()
    ))
}

/// A token bucket that reads the clock only when it runs out of tokens: with a burst of
/// `b`, one clock read per `b` messages at most, which matters per streamed message.
#[derive(Debug)]
struct Bucket {
    per_second: u32,
    burst: u32,
    on_exceeded: OnRateExceeded,
    tokens: u32,
    /// The first message's time; times below are nanoseconds since it.
    base: Option<Instant>,
    /// Tokens have been credited for the time up to here.
    credited: u64,
}

const NANOS: u128 = 1_000_000_000;

impl Bucket {
    fn new(rate: MessageRate) -> Self {
        Self {
            per_second: rate.per_second.max(1),
            burst: rate.burst.max(1),
            on_exceeded: rate.on_exceeded,
            tokens: 0,
            base: None,
            credited: 0,
        }
    }

    /// Takes a token. `None`: the message passes now. `Some(t)`: it may pass at `t`
    /// (with `Delay` the token is already spoken for; with `Reject` nothing is taken).
    #[inline]
    fn take(&mut self, now: impl FnOnce() -> Instant) -> Option<Instant> {
        if self.tokens > 0 {
            self.tokens -= 1;
            return None;
        }
        self.refill(now())
    }

    /// Out of tokens: credit the time since the last refill, or say when to come back.
    #[inline(never)]
    fn refill(&mut self, now: Instant) -> Option<Instant> {
        let Some(base) = self.base else {
            self.base = Some(now);
            self.tokens = self.burst - 1;
            return None;
        };
        let elapsed = now.saturating_duration_since(base).as_nanos() as u64;
        let rate = u128::from(self.per_second);
        let earned = u128::from(elapsed.saturating_sub(self.credited)) * rate / NANOS;
        if earned >= 1 {
            if earned >= u128::from(self.burst) {
                self.tokens = self.burst - 1;
                self.credited = elapsed;
            } else {
                self.tokens = earned as u32 - 1;
                self.credited += (earned * NANOS / rate) as u64;
            }
            return None;
        }
        let next = self.credited + NANOS.div_ceil(rate) as u64;
        if self.on_exceeded == OnRateExceeded::Delay {
            self.credited = next;
        }
        Some(base + Duration::from_nanos(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(per_second: u32, burst: u32, on_exceeded: OnRateExceeded) -> Bucket {
        Bucket::new(MessageRate {
            per_second,
            burst,
            on_exceeded,
        })
    }

    #[test]
    fn paces_after_the_burst() {
        let mut b = bucket(10, 3, OnRateExceeded::Delay);
        let t0 = Instant::now();
        let at = |ms| move || t0 + Duration::from_millis(ms);
        assert_eq!(b.take(at(0)), None);
        assert_eq!(b.take(at(0)), None);
        assert_eq!(b.take(at(0)), None);
        // The fourth message waits one interval (100 ms), the fifth two.
        assert_eq!(b.take(at(0)), Some(t0 + Duration::from_millis(100)));
        assert_eq!(b.take(at(0)), Some(t0 + Duration::from_millis(200)));
        // After a quiet second the burst is back, and no more.
        assert_eq!(b.take(at(1_500)), None);
        assert_eq!(b.take(at(1_500)), None);
        assert_eq!(b.take(at(1_500)), None);
        assert_eq!(b.take(at(1_500)), Some(t0 + Duration::from_millis(1_600)));
    }

    #[test]
    fn reject_takes_no_token() {
        let mut b = bucket(10, 1, OnRateExceeded::Reject);
        let t0 = Instant::now();
        let at = |ms| move || t0 + Duration::from_millis(ms);
        assert_eq!(b.take(at(0)), None);
        assert!(b.take(at(0)).is_some());
        assert!(b.take(at(99)).is_some());
        assert_eq!(b.take(at(100)), None);
        assert!(b.take(at(150)).is_some());
        assert_eq!(b.take(at(200)), None);
    }

    #[test]
    fn reads_the_clock_once_per_burst() {
        let mut b = bucket(1_000_000, 100, OnRateExceeded::Delay);
        let t0 = Instant::now();
        let mut reads = 0;
        for i in 0..1_000u64 {
            b.take(|| {
                reads += 1;
                // 100 µs per message: ten times slower than the rate.
                t0 + Duration::from_micros(100 * i)
            });
        }
        assert_eq!(reads, 10);
    }

    #[test]
    fn sustains_the_rate_exactly() {
        let mut b = bucket(1_000, 1, OnRateExceeded::Delay);
        let t0 = Instant::now();
        let mut last = t0;
        for _ in 0..1_000 {
            if let Some(at) = b.take(|| t0) {
                last = at;
            }
        }
        // 1000 messages at 1000/s with a burst of 1: the last may pass at 999 ms.
        assert_eq!(last, t0 + Duration::from_millis(999));
    }
}
