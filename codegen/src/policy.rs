//! Policy declared in the `.proto` with `tonic_intercept/v1/options.proto`: read from
//! protox's descriptor pool (prost-types drops extensions), checked, and merged.

use protox::prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, MethodDescriptor, ServiceDescriptor,
};

use crate::model::{Policies, Policy};
use crate::source::{self, Sources};

/// `extend google.protobuf.MethodOptions { RpcPolicy rpc = 51871; }`
const RPC_EXTENSION: &str = "tonic_intercept.v1.rpc";
/// `extend google.protobuf.ServiceOptions { RpcPolicy service = 51871; }`
const SERVICE_EXTENSION: &str = "tonic_intercept.v1.service";

/// `FileDescriptorProto.service`, `ServiceDescriptorProto.options`,
/// `MethodDescriptorProto.options`: the source-info path of an option.
const SERVICE_OPTIONS: i32 = 3;
const METHOD_OPTIONS: i32 = 4;

/// One `RpcPolicy` message as written, before merging.
#[derive(Debug, Default)]
struct Declared {
    public: Option<bool>,
    roles: Vec<String>,
    max_messages_in: Option<u64>,
    max_messages_out: Option<u64>,
    max_message_bytes: Option<u64>,
    messages_per_second_in: Option<u32>,
    messages_per_second_out: Option<u32>,
    messages_per_second: Option<u32>,
    timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
}

impl Declared {
    fn read(message: &DynamicMessage) -> Self {
        let field = |name: &str| {
            message
                .has_field_by_name(name)
                .then(|| message.get_field_by_name(name))
                .flatten()
        };
        let u64_of = |name: &str| field(name).and_then(|v| v.as_u64());
        let u32_of = |name: &str| field(name).and_then(|v| v.as_u32());
        Self {
            public: field("public").and_then(|v| v.as_bool()),
            roles: field("roles")
                .and_then(|v| {
                    v.as_list().map(|roles| {
                        roles
                            .iter()
                            .filter_map(|r| r.as_str().map(str::to_owned))
                            .collect()
                    })
                })
                .unwrap_or_default(),
            max_messages_in: u64_of("max_messages_in"),
            max_messages_out: u64_of("max_messages_out"),
            max_message_bytes: u64_of("max_message_bytes"),
            messages_per_second_in: u32_of("messages_per_second_in"),
            messages_per_second_out: u32_of("messages_per_second_out"),
            messages_per_second: u32_of("messages_per_second"),
            timeout_ms: u64_of("timeout_ms"),
            idle_timeout_ms: u64_of("idle_timeout_ms"),
        }
    }

    /// The numeric keys that are set, with their values.
    fn limits(&self) -> Vec<(&'static str, u64)> {
        let wide = |v: Option<u32>| v.map(u64::from);
        [
            ("max_messages_in", self.max_messages_in),
            ("max_messages_out", self.max_messages_out),
            ("max_message_bytes", self.max_message_bytes),
            ("messages_per_second_in", wide(self.messages_per_second_in)),
            (
                "messages_per_second_out",
                wide(self.messages_per_second_out),
            ),
            ("messages_per_second", wide(self.messages_per_second)),
            ("timeout_ms", self.timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
        ]
        .into_iter()
        .filter_map(|(key, v)| v.map(|v| (key, v)))
        .collect()
    }
}

/// Which side of an RPC a key needs to be streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Nothing,
    RequestStream,
    ResponseStream,
    AnyStream,
}

fn needs(key: &str) -> Needs {
    match key {
        "max_messages_in" | "messages_per_second_in" => Needs::RequestStream,
        "max_messages_out" | "messages_per_second_out" => Needs::ResponseStream,
        "messages_per_second" => Needs::AnyStream,
        _ => Needs::Nothing,
    }
}

/// Reads, checks and merges the policy of every RPC of `services`.
///
/// Every misuse is reported, one `file:line:column: message` per entry.
pub(crate) fn read(
    pool: &DescriptorPool,
    services: &[ServiceDescriptor],
    sources: &Sources,
) -> Result<Policies, Vec<String>> {
    let mut policies = Policies::new();
    // Without the import, nobody can have declared anything.
    let (Some(rpc_ext), Some(service_ext)) = (
        pool.get_extension_by_name(RPC_EXTENSION),
        pool.get_extension_by_name(SERVICE_EXTENSION),
    ) else {
        return Ok(policies);
    };
    let mut errors = Vec::new();
    for service in services {
        let path = [service.path(), &[SERVICE_OPTIONS]].concat();
        let default = declared(&service.options(), &service_ext);
        if let Some(default) = &default {
            let at = At {
                file: service.parent_file_descriptor_proto(),
                sources,
                option: [path.as_slice(), &[service_ext.number() as i32]].concat(),
                target: format!("service `{}`", service.full_name()),
            };
            check_common(default, &at, &mut errors);
        }
        let mut rpcs = std::collections::HashMap::new();
        for method in service.methods() {
            let own = declared(&method.options(), &rpc_ext);
            if let Some(own) = &own {
                let path = [method.path(), &[METHOD_OPTIONS]].concat();
                let at = At {
                    file: service.parent_file_descriptor_proto(),
                    sources,
                    option: [path.as_slice(), &[rpc_ext.number() as i32]].concat(),
                    target: format!("`{}/{}`", service.full_name(), method.name()),
                };
                check_common(own, &at, &mut errors);
                check_fits(own, &method, &at, &mut errors);
            }
            let policy = merge(
                default.as_ref(),
                own.as_ref(),
                method.is_client_streaming(),
                method.is_server_streaming(),
            );
            if !policy.is_empty() {
                rpcs.insert(method.name().to_owned(), policy);
            }
        }
        if !rpcs.is_empty() {
            policies.insert(service.full_name().to_owned(), rpcs);
        }
    }
    if errors.is_empty() {
        Ok(policies)
    } else {
        Err(errors)
    }
}

fn declared(options: &DynamicMessage, ext: &ExtensionDescriptor) -> Option<Declared> {
    if !options.has_extension(ext) {
        return None;
    }
    options.get_extension(ext).as_message().map(Declared::read)
}

/// Where an option is, to point errors at its keys.
struct At<'a> {
    file: &'a prost_types::FileDescriptorProto,
    sources: &'a Sources,
    /// Source-info path of the option, ending with the extension's number.
    option: Vec<i32>,
    /// What the option is on, for the message: ``service `a.v1.S` `` or `` `a.v1.S/Get` ``.
    target: String,
}

impl At<'_> {
    fn error(&self, key: &str, what: String) -> String {
        let place = source::option_key(self.file, self.sources, &self.option, key, key_number(key));
        source::message(self.file, place, &what)
    }
}

/// The field numbers of `RpcPolicy` in `options.proto`.
fn key_number(key: &str) -> i32 {
    match key {
        "public" => 1,
        "roles" => 2,
        "max_messages_in" => 3,
        "max_messages_out" => 4,
        "max_message_bytes" => 5,
        "messages_per_second_in" => 6,
        "messages_per_second_out" => 7,
        "messages_per_second" => 8,
        "timeout_ms" => 9,
        "idle_timeout_ms" => 10,
        _ => 0,
    }
}

/// Mistakes in any `RpcPolicy`, on a service or an RPC.
fn check_common(policy: &Declared, at: &At<'_>, errors: &mut Vec<String>) {
    for (key, value) in policy.limits() {
        if value == 0 {
            errors.push(at.error(
                key,
                format!(
                    "`{key}: 0` on {}: a limit must be at least 1, since zero would refuse everything; to leave it unlimited, remove the key",
                    at.target
                ),
            ));
        }
    }
    if policy.public == Some(true) && !policy.roles.is_empty() {
        errors.push(at.error(
            "public",
            format!(
                "`public: true` and `roles` on {} contradict each other: a public RPC is callable without authentication, so it cannot require a role; remove `public` or `roles`",
                at.target
            ),
        ));
    }
    if policy.roles.iter().any(|r| r.trim().is_empty()) {
        errors.push(at.error(
            "roles",
            format!(
                "`roles` on {} contains an empty role name, which no caller can hold; remove it or name the role",
                at.target
            ),
        ));
    }
}

/// A stream key on an RPC whose side does not stream can never act: it is a mistake about
/// the RPC, so it is refused rather than ignored (a service default is only skipped).
fn check_fits(policy: &Declared, method: &MethodDescriptor, at: &At<'_>, errors: &mut Vec<String>) {
    let (requests, responses) = (method.is_client_streaming(), method.is_server_streaming());
    let kind = match (requests, responses) {
        (false, false) => "unary",
        (false, true) => "server-streaming",
        (true, false) => "client-streaming",
        (true, true) => "bidi-streaming",
    };
    for (key, _) in policy.limits() {
        let (side, fits) = match needs(key) {
            Needs::Nothing => continue,
            Needs::RequestStream => ("requests", requests),
            Needs::ResponseStream => ("responses", responses),
            Needs::AnyStream => ("messages on the streaming side(s)", requests || responses),
        };
        if fits {
            continue;
        }
        let why = if requests || responses {
            let counterpart = if side == "requests" {
                key.replace("_in", "_out")
            } else {
                key.replace("_out", "_in")
            };
            format!(
                "its {side} do not stream; did you mean `{counterpart}`? (`max_message_bytes` limits single messages)"
            )
        } else {
            "neither side streams; use `max_message_bytes` or `timeout_ms`".to_owned()
        };
        let limits = if needs(key) == Needs::AnyStream {
            side.to_owned()
        } else {
            format!("a stream of {side}")
        };
        errors.push(at.error(
            key,
            format!(
                "`{key}` limits {limits}, but {} is {kind}: {why}",
                at.target
            ),
        ));
    }
}

/// The RPC's own keys override the service default key by key; `public` and `roles` go
/// together; default stream keys apply only where the side streams.
fn merge(
    default: Option<&Declared>,
    own: Option<&Declared>,
    requests_stream: bool,
    responses_stream: bool,
) -> Policy {
    let empty = Declared::default();
    let (default, own) = (default.unwrap_or(&empty), own.unwrap_or(&empty));
    let access = if own.public.is_some() || !own.roles.is_empty() {
        own
    } else {
        default
    };
    let when = |streams: bool, v: Option<u64>| v.filter(|_| streams);
    let rate = |streams: bool, own_side: Option<u32>, default_side: Option<u32>| {
        own_side
            .or(own.messages_per_second)
            .or(default_side)
            .or(default.messages_per_second)
            .filter(|_| streams)
    };
    Policy {
        public: access.public.unwrap_or(false),
        roles: access.roles.clone(),
        max_messages_in: when(
            requests_stream,
            own.max_messages_in.or(default.max_messages_in),
        ),
        max_messages_out: when(
            responses_stream,
            own.max_messages_out.or(default.max_messages_out),
        ),
        max_message_bytes: own.max_message_bytes.or(default.max_message_bytes),
        messages_per_second_in: rate(
            requests_stream,
            own.messages_per_second_in,
            default.messages_per_second_in,
        ),
        messages_per_second_out: rate(
            responses_stream,
            own.messages_per_second_out,
            default.messages_per_second_out,
        ),
        timeout_ms: own.timeout_ms.or(default.timeout_ms),
        idle_timeout_ms: own.idle_timeout_ms.or(default.idle_timeout_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_keys_win_and_default_stream_keys_apply_where_they_fit() {
        let default = Declared {
            roles: vec!["user".into()],
            max_messages_in: Some(5),
            max_messages_out: Some(6),
            messages_per_second: Some(100),
            timeout_ms: Some(5000),
            ..Declared::default()
        };
        let unary = merge(Some(&default), None, false, false);
        assert_eq!(
            unary,
            Policy {
                roles: vec!["user".into()],
                timeout_ms: Some(5000),
                ..Policy::default()
            }
        );
        let own = Declared {
            public: Some(true),
            messages_per_second: Some(7),
            timeout_ms: Some(10),
            ..Declared::default()
        };
        let server = merge(Some(&default), Some(&own), false, true);
        assert_eq!(
            server,
            Policy {
                public: true,
                max_messages_out: Some(6),
                messages_per_second_out: Some(7),
                timeout_ms: Some(10),
                ..Policy::default()
            }
        );
        let explicit = Declared {
            messages_per_second_in: Some(3),
            ..Declared::default()
        };
        let bidi = merge(Some(&default), Some(&explicit), true, true);
        assert_eq!(bidi.messages_per_second_in, Some(3));
        assert_eq!(bidi.messages_per_second_out, Some(100));
        assert_eq!(bidi.roles, ["user"]);
    }
}
