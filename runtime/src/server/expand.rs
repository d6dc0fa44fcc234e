//! What only the `#[intercept]` expansion calls, outside the call's [`Guard`]: the
//! `.proto` agreement checks evaluated in `const`s, the type checks that give a readable
//! error for a misplaced value (an idempotency store's is its own trait,
//! `IdempotencyStore`), the identity hand-over, and the stand-in service of the doc
//! examples.
//!
//! [`Guard`]: super::guard::Guard

use tonic::{Request, Status};

use crate::auth::{Roles, check_roles};
use crate::call::Call;
use crate::metrics::ServiceMetrics;
use crate::rpc::{IdempotencyLevel, RpcDescriptor, RpcKind, Service};

/// `roles(..)` outside a guard (an auth-only RPC): `PERMISSION_DENIED` without a role.
pub fn authorize<I: Roles + ?Sized>(
    call: &Call,
    identity: &I,
    required: &[&str],
) -> Result<(), Status> {
    check_roles(call, identity, required)
}

/// The message of a limit that disagrees with the `.proto`: `parts[0]`, `proto`,
/// `parts[1]`, `this`, `parts[2]`, written into `N` bytes; returns them and the length.
///
/// The compiler cannot format numbers in a `const` panic, so the expansion's agreement
/// check builds its message with this and panics at the user's key.
pub const fn proto_disagreement<const N: usize>(
    parts: [&str; 3],
    proto: u64,
    this: u64,
) -> ([u8; N], usize) {
    let mut out = [0u8; N];
    let mut at = 0;
    let mut part = 0;
    while part < 3 {
        let bytes = parts[part].as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            out[at] = bytes[i];
            at += 1;
            i += 1;
        }
        if part < 2 {
            let mut n = if part == 0 { proto } else { this };
            let mut digits = [0u8; 20];
            let mut len = 0;
            loop {
                digits[len] = b'0' + (n % 10) as u8;
                len += 1;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            while len > 0 {
                len -= 1;
                out[at] = digits[len];
                at += 1;
            }
        }
        part += 1;
    }
    (out, at)
}

/// Whether two role lists hold the same roles, in a `const` (attribute vs `.proto`).
pub const fn same_roles(a: &[&str], b: &[&str]) -> bool {
    const fn contains(list: &[&str], role: &str) -> bool {
        let mut i = 0;
        while i < list.len() {
            if eq(list[i].as_bytes(), role.as_bytes()) {
                return true;
            }
            i += 1;
        }
        false
    }
    const fn eq(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }
    let mut i = 0;
    while i < a.len() {
        if !contains(b, a[i]) {
            return false;
        }
        i += 1;
    }
    let mut j = 0;
    while j < b.len() {
        if !contains(a, b[j]) {
            return false;
        }
        j += 1;
    }
    true
}

/// `metrics(value)`: the value must be the metrics of this impl's service.
#[diagnostic::on_unimplemented(
    message = "`{Self}` are not the metrics of the service `{S}`",
    label = "metrics of another service",
    note = "create this service's with `ServerMetrics::service::<{S}>()`"
)]
pub trait MetricsOf<S> {
    /// The service's metrics, for the call's metrics hook.
    fn metrics(&self) -> ServiceMetrics<S>;
}

impl<S: Service> MetricsOf<S> for ServiceMetrics<S> {
    fn metrics(&self) -> ServiceMetrics<S> {
        self.clone()
    }
}

/// The service of the stand-in RPCs that `__doc_rpc!` defines for doc examples.
#[derive(Debug, Clone, Copy)]
pub struct DocService;

impl Service for DocService {
    const NAME: &'static str = "doc.v1.DocService";
    /// One slot, `Rpc::INDEX` 0, which every stand-in RPC claims.
    const RPCS: &'static [&'static RpcDescriptor] = &[&RpcDescriptor::new(
        "doc.v1.DocService",
        "Doc",
        "/doc.v1.DocService/Doc",
        RpcKind::Unary,
        IdempotencyLevel::Unknown,
        false,
    )];
}

/// Hands the verified identity to the handler through the request extensions.
///
/// `type Identity = ();` means the verifier only admits or refuses: nothing is stored,
/// which saves a map insertion per call. (A zero-sized marker type is still stored:
/// its presence means something.)
pub fn store_identity<T, I: Clone + Send + Sync + 'static>(request: &mut Request<T>, identity: I) {
    if std::any::TypeId::of::<I>() != std::any::TypeId::of::<()>() {
        request.extensions_mut().insert(identity);
    }
}
