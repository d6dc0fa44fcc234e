//! What the generator knows about a service, read once from prost-build's description.

use std::collections::HashMap;

use prost_build::{Comments, Method, Service};

/// A service as the generator sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServiceModel {
    /// `users.v1.UserService`.
    pub(crate) full_name: String,
    /// The module tonic-intercept-build emits, e.g. `user_service_intercept`.
    pub(crate) module: String,
    pub(crate) docs: Vec<String>,
    pub(crate) rpcs: Vec<RpcModel>,
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
    pub(crate) client_streaming: bool,
    pub(crate) server_streaming: bool,
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
    pub(crate) max_messages_in: Option<u64>,
    pub(crate) max_messages_out: Option<u64>,
    pub(crate) max_message_bytes: Option<u64>,
    pub(crate) messages_per_second_in: Option<u32>,
    pub(crate) messages_per_second_out: Option<u32>,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) idle_timeout_ms: Option<u64>,
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
            module: format!("{}_intercept", naive_snake_case(&service.name)),
            docs: docs(&service.comments),
            rpcs: service
                .methods
                .iter()
                .map(|method| RpcModel::from_prost(method, policy(method)))
                .collect(),
            full_name,
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
            client_streaming: method.client_streaming,
            server_streaming: method.server_streaming,
            idempotency,
            deprecated: method.options.deprecated.unwrap_or(false),
            policy,
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match (self.client_streaming, self.server_streaming) {
            (false, false) => "Unary",
            (false, true) => "ServerStreaming",
            (true, false) => "ClientStreaming",
            (true, true) => "Bidi",
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

/// `list_users` (tonic's method name, maybe `r#type`) to `ListUsers`. `#[intercept]` does
/// the same to the handler's name, so the two always agree.
pub(crate) fn upper_camel(snake: &str) -> String {
    snake
        .trim_start_matches("r#")
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            first.into_iter().chain(chars).collect::<String>()
        })
        .collect()
}

/// tonic-build's own rule for module names (`naive_snake_case`), so our module sits
/// beside `<name>_server` with the same stem.
pub(crate) fn naive_snake_case(name: &str) -> String {
    let mut s = String::new();
    let mut it = name.chars().peekable();
    while let Some(x) = it.next() {
        s.push(x.to_ascii_lowercase());
        if let Some(y) = it.peek()
            && y.is_uppercase()
        {
            s.push('_');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_agree_with_tonic() {
        assert_eq!(upper_camel("list_users"), "ListUsers");
        assert_eq!(upper_camel("r#type"), "Type");
        assert_eq!(upper_camel("get_v2_user"), "GetV2User");
        assert_eq!(naive_snake_case("UserService"), "user_service");
        assert_eq!(naive_snake_case("ABCService"), "a_b_c_service");
    }
}
