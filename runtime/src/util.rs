//! Small utilities the policies and the client share: random ids and jitter, the
//! process's hashing secret, and the text of a caught panic.

use std::any::Any;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::OnceLock;

use tonic::codegen::http::HeaderValue;

/// Uniform draws in `[0, 1)` for backoff jitter, from a xorshift64* generator.
///
/// Not cryptographic, and need not be: it only spreads retries apart. [`Jitter::new`]
/// seeds it from the standard library's per-process random hasher keys mixed with the
/// clock, so no dependency is needed; [`Jitter::seeded`] gives a reproducible sequence.
///
/// ```
/// # #![allow(deprecated)]
/// use tonic_intercept::Jitter;
/// let mut a = Jitter::seeded(7);
/// let mut b = Jitter::seeded(7);
/// let x = a.next_f64();
/// assert!((0.0..1.0).contains(&x));
/// assert_eq!(x, b.next_f64());
/// ```
#[derive(Debug, Clone)]
pub struct Jitter {
    state: u64,
}

impl Default for Jitter {
    /// [`Jitter::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl Jitter {
    /// A generator seeded from `RandomState` (random per process) and the clock.
    ///
    /// ```
    /// # #![allow(deprecated)]
    /// let x = tonic_intercept::Jitter::new().next_f64();
    /// assert!((0.0..1.0).contains(&x));
    /// ```
    pub fn new() -> Self {
        let mut hasher = std::hash::RandomState::new().build_hasher();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        hasher.write_u128(now.as_nanos());
        Self::seeded(hasher.finish())
    }

    /// A generator with a fixed seed (0 is replaced by a non-zero constant, since
    /// xorshift never leaves 0).
    ///
    /// ```
    /// # #![allow(deprecated)]
    /// let mut j = tonic_intercept::Jitter::seeded(0);
    /// assert_ne!(j.next_f64(), j.next_f64());
    /// ```
    pub const fn seeded(seed: u64) -> Self {
        Self {
            state: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
        }
    }

    /// The next draw, uniform in `[0, 1)` with 53 bits of precision.
    ///
    /// ```
    /// # #![allow(deprecated)]
    /// let mut j = tonic_intercept::Jitter::seeded(42);
    /// assert!((0..1000).map(|_| j.next_f64()).all(|x| (0.0..1.0).contains(&x)));
    /// ```
    pub fn next_f64(&mut self) -> f64 {
        let bits = self.next_u64() >> 11;
        bits as f64 / (1u64 << 53) as f64
    }

    /// The next 64 random bits (xorshift64*).
    ///
    /// ```
    /// # #![allow(deprecated)]
    /// let mut j = tonic_intercept::Jitter::seeded(42);
    /// assert_ne!(j.next_u64(), j.next_u64());
    /// ```
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

thread_local! {
    /// Random ids (request ids, trace span ids) without seeding a generator per id.
    static IDS: std::cell::RefCell<Jitter> = std::cell::RefCell::new(Jitter::new());
}

/// 64 random bits, never zero (W3C trace ids and span ids must not be all zeros).
pub(crate) fn random_nonzero_u64() -> u64 {
    IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        loop {
            let bits = ids.next_u64();
            if bits != 0 {
                return bits;
            }
        }
    })
}

/// A new request id: 128 random bits in lowercase hex, formatted on the stack.
pub(crate) fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = (u128::from(random_nonzero_u64()) << 64) | u128::from(random_nonzero_u64());
    let mut id = [0u8; 32];
    for (i, digit) in id.iter_mut().enumerate() {
        *digit = HEX[((bits >> (124 - 4 * i)) & 0xf) as usize];
    }
    let mut id = HeaderValue::from_bytes(&id).expect("hex digits are a valid header value");
    // A value used once: HPACK's "never indexed" literal spares the connection's header
    // table an insertion and an eviction per call.
    id.set_sensitive(true);
    id
}

/// The process's hashing secret: it keys `identity_key` (per-identity rates) and the
/// idempotency request hashes, so clients cannot craft collisions.
pub(crate) fn secret() -> &'static RandomState {
    static SECRET: OnceLock<RandomState> = OnceLock::new();
    SECRET.get_or_init(RandomState::new)
}

/// Logs a panic caught in a call of `rpc` (its path) at ERROR, with its message when it has one (`panic!`
/// with a string or a format).
pub(crate) fn log_panic(rpc: &str, payload: &(dyn Any + Send)) {
    let message = if let Some(message) = payload.downcast_ref::<&'static str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.as_str()
    } else {
        "Box<dyn Any>"
    };
    tracing::error!(rpc, panic = message, "panic in call");
}

#[cfg(test)]
#[allow(unreachable_pub)] // the stand-in RPC of `__doc_rpc!`
mod tests {
    use super::*;
    use crate::call::Call;
    use crate::rpc::Rpc;

    #[test]
    fn log_panic_logs_the_message() {
        use std::sync::{Arc, Mutex};

        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(data);
                Ok(data.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        crate::__doc_rpc!(Get, "test.v1.T", "Get", Unary, (), ());
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let call = Call::start(&<Get as Rpc>::DESCRIPTOR, &tonic::Request::new(()), None);
        tracing::subscriber::with_default(subscriber, || {
            log_panic(call.rpc().path, &"static text");
            log_panic(call.rpc().path, &format!("formatted {}", 42));
            log_panic(call.rpc().path, &7_u32);
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines.iter().all(|l| l.contains("ERROR")), "{out}");
        assert!(lines[0].contains(r#"panic="static text""#), "{out}");
        assert!(lines[1].contains(r#"panic="formatted 42""#), "{out}");
        assert!(lines[2].contains(r#"panic="Box<dyn Any>""#), "{out}");
        assert!(lines[0].contains(r#"rpc="/test.v1.T/Get""#), "{out}");
    }
}
