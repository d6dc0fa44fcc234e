//! What the generator knows about a service, read once from prost-build's description.

use std::collections::HashMap;

use prost_build::{Comments, Method, Service};
use tonic_intercept_spec::naming::{intercept_module, upper_camel};
use tonic_intercept_spec::{LimitKey, RpcKind};

/// A service as the generator sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServiceModel {
    /// `users.v1.UserService`.
    pub(crate) full_name: String,
    /// The module tonic-intercept-build emits, e.g. `user_service_intercept`.
    pub(crate) module: String,
    pub(crate) docs: Vec<String>,
    pub(crate) rpcs: Vec<RpcModel>,
    /// tonic's server, when it is generated: its module and type, e.g.
    /// `user_service_server` and `UserServiceServer`.
    pub(crate) server: Option<(String, String)>,
    /// Whether to emit the typed `Client` (tonic-prost-build's `build_client`).
    pub(crate) client: bool,
    /// Where the messages are, seen from the module (tonic-prost-build's `proto_path`).
    pub(crate) proto_path: String,
    /// The attributes of tonic's server module, as source text, for the `Edged` impl.
    pub(crate) server_mod_attributes: Vec<String>,
    /// The attributes of tonic's client module, as source text, for the typed `Client`.
    pub(crate) client_mod_attributes: Vec<String>,
}

/// One RPC of a service.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RpcModel {
    /// The generated type, e.g. `ListUsers`: the UpperCamel form of tonic's method name,
    /// which is also what `#[intercept]` computes from the handler's name.
    pub(crate) type_name: String,
    /// As written in the `.proto`.
    pub(crate) proto_name: String,
    /// tonic's client method name (prost-build's snake case, `r#` for a keyword).
    pub(crate) method_name: String,
    pub(crate) docs: Vec<String>,
    /// Rust paths relative to the package module, as prost-build gives them.
    pub(crate) request: String,
    pub(crate) response: String,
    pub(crate) request_proto: String,
    pub(crate) response_proto: String,
    pub(crate) kind: RpcKind,
    pub(crate) idempotency: Idempotency,
    pub(crate) deprecated: bool,
    /// `option (tonic_intercept.v1.rpc)` merged over the service's default.
    pub(crate) policy: Policy,
}

/// The policy declared in the `.proto` for one RPC, already merged and checked: stream
/// keys are set only where the RPC's side streams, `public` and `roles` never both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Policy {
    pub(crate) public: bool,
    pub(crate) roles: Vec<String>,
    /// The limit keys that land on the descriptor ([`LimitKey::on_descriptor`]) and are
    /// set, in the table's order (`RpcPolicy`'s), with their values.
    pub(crate) limits: Vec<(&'static LimitKey, u64)>,
}

impl Policy {
    /// Nothing declared: the descriptor keeps `RpcPolicy::new()`.
    pub(crate) fn is_empty(&self) -> bool {
        *self == Policy::default()
    }
}

/// Merged policies by service (`users.v1.UserService`), then RPC (`ListUsers`, as written
/// in the `.proto`). RPCs without any policy are absent.
pub(crate) type Policies = HashMap<String, HashMap<String, Policy>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    Unknown,
    NoSideEffects,
    Idempotent,
}

impl ServiceModel {
    pub(crate) fn from_prost(service: &Service, policies: &Policies) -> Self {
        let full_name = if service.package.is_empty() {
            service.proto_name.clone()
        } else {
            format!("{}.{}", service.package, service.proto_name)
        };
        let policies = policies.get(&full_name);
        let policy = |method: &Method| {
            policies
                .and_then(|p| p.get(&method.proto_name))
                .cloned()
                .unwrap_or_default()
        };
        Self {
            module: intercept_module(&service.name),
            docs: docs(&service.comments),
            rpcs: service
                .methods
                .iter()
                .map(|method| RpcModel::from_prost(method, policy(method)))
                .collect(),
            full_name,
            server: None,
            client: true,
            proto_path: "super".to_owned(),
            server_mod_attributes: Vec::new(),
            client_mod_attributes: Vec::new(),
        }
    }
}

impl RpcModel {
    fn from_prost(method: &Method, policy: Policy) -> Self {
        let idempotency = match method.options.idempotency_level {
            Some(1) => Idempotency::NoSideEffects,
            Some(2) => Idempotency::Idempotent,
            _ => Idempotency::Unknown,
        };
        Self {
            type_name: upper_camel(&method.name),
            proto_name: method.proto_name.clone(),
            method_name: method.name.clone(),
            docs: docs(&method.comments),
            request: method.input_type.clone(),
            response: method.output_type.clone(),
            request_proto: method.input_proto_type.clone(),
            response_proto: method.output_proto_type.clone(),
            kind: RpcKind::from_streaming(method.client_streaming, method.server_streaming),
            idempotency,
            deprecated: method.options.deprecated.unwrap_or(false),
            policy,
        }
    }
}

fn docs(comments: &Comments) -> Vec<String> {
    comments
        .leading
        .iter()
        .chain(&comments.trailing)
        .flat_map(|c| c.lines())
        .map(|l| l.trim_end().to_owned())
        .collect()
}
