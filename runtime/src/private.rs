//! The one door through which `#[intercept]` output and `tonic-intercept-build`'s
//! generated code reach this crate: re-exports only, no logic.
//!
//! Not public API: names here change without notice. Generated code uses absolute paths
//! (`::tonic_intercept::__private::...`), so a user's own item named like one of these
//! cannot capture them.

// The libraries generated code names, at the versions this crate was built with.
pub use std::time::Duration;
pub use tonic;
pub use tonic::{Response, Status};
pub use tracing;

// The RPC model that generated code implements.
pub use crate::rpc::{IdempotencyLevel, Rpc, RpcDescriptor, RpcKind, RpcOf, RpcPolicy, Service};

// The server call: its lifecycle, and what the expansion checks outside it.
pub use crate::call::{Call, CallOutcome, PolicyKind};
pub use crate::policy::hook::{Hook, Hooks};
pub use crate::server::edge::{Declared, Edged};
pub use crate::server::expand::{
    DocService, MetricsOf, authorize, proto_disagreement, same_roles, store_identity,
};
pub use crate::server::guard::{Guard, run};
pub use crate::server::stream::{Inbound, Outbound};

// The server policies' steps.
pub use crate::auth::{Authenticate, Roles};
pub use crate::idempotency::{
    Begin, IdempotencyStore, IdempotencyTicket, Scope as IdempotencyScope, Ticket,
    begin as idempotency_begin, read_key as idempotency_key,
};
pub use crate::limits::{Limits, OnRateExceeded};
pub use crate::metrics::ServiceMetrics;
pub use crate::policy::admission::{
    Admission, AdmissionConfig, AdmitShared, Admitted, SharedRates, identity_key, shared_identity,
};
pub use crate::trace::{TraceCalls, call_span};
pub use crate::validate::check as validate;
#[cfg(feature = "protovalidate")]
pub use crate::validate::protovalidate::{
    ProtoValidate, descriptor as proto_descriptor, prost_reflect::MessageDescriptor,
};
pub use crate::validate::{
    ByHand as ValidateByHand, ByRules as ValidateByRules, Missing as ValidateMissing,
    Pick as ValidatePick,
};

/// `rpc_span!("pkg.Service/Method", call)`: the span of one call, from `Rpc::span`.
pub use crate::__rpc_span as rpc_span;

// The generated client.
pub use crate::client::engine::ClientCore;
pub use crate::client::{ClientConfig, ClientHook, IdempotentRpc, Responses, Transport};
