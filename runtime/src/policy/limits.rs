//! Per-RPC limits and the per-direction bookkeeping that enforces them.
//!
//! The value, [`Limits`], is defined with the RPC model (a descriptor carries the
//! `.proto`'s limits); this module enforces it.

use std::time::Duration;

use tokio::time::Instant;
use tonic::Status;

use crate::rpc::RpcDescriptor;

pub use crate::policy::admission::identity_key;
pub use crate::rpc::limits::{Limits, MessageRate, OnRateExceeded};

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
                limits.get_max_messages_in(),
                limits.get_max_total_bytes_in(),
                limits.get_messages_per_second_in(),
            ),
            Dir::Out => (
                limits.get_max_messages_out(),
                None,
                limits.get_messages_per_second_out(),
            ),
        };
        let max_bytes = limits.get_max_message_bytes();
        Self {
            dir,
            max_messages,
            max_bytes,
            max_total,
            measure: limits.get_measure_bytes() || max_bytes.is_some() || max_total.is_some(),
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
