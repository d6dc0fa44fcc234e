//! Policy declared in the `.proto` with `tonic_intercept/v1/options.proto`: read from
//! protox's descriptor pool (prost-types drops extensions), checked, and merged.

use protox::prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, MessageDescriptor, MethodDescriptor,
    ServiceDescriptor,
};
use tonic_intercept_spec::{Fits, LIMIT_KEYS, LimitKey, RpcKind, limit_key};

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
    /// The limit keys that are set, in the table's order, by their `.proto` field.
    limits: Vec<(&'static LimitKey, u64)>,
}

impl Declared {
    fn read(message: &DynamicMessage) -> Self {
        let field = |name: &str| {
            message
                .has_field_by_name(name)
                .then(|| message.get_field_by_name(name))
                .flatten()
        };
        let limits = LIMIT_KEYS
            .iter()
            .filter_map(|key| {
                let value = field(key.proto_field?)?;
                // `uint32` or `uint64`, as the table's value type (a test checks they agree).
                let value = value.as_u64().or_else(|| value.as_u32().map(u64::from))?;
                Some((key, value))
            })
            .collect();
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
            limits,
        }
    }

    /// The value of `key`, if it is set.
    fn get(&self, key: &LimitKey) -> Option<u64> {
        self.limits
            .iter()
            .find(|(k, _)| k.name == key.name)
            .map(|&(_, v)| v)
    }

    /// The value of `key`, or of the key it defaults to (`messages_per_second` for the
    /// rates), if either is set.
    fn get_or_default(&self, key: &LimitKey) -> Option<u64> {
        self.get(key).or_else(|| {
            key.proto_default
                .and_then(limit_key)
                .and_then(|default| self.get(default))
        })
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
    let Some(fields) = rpc_ext.kind().as_message().cloned() else {
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
                fields: &fields,
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
                    fields: &fields,
                    option: [path.as_slice(), &[rpc_ext.number() as i32]].concat(),
                    target: format!("`{}/{}`", service.full_name(), method.name()),
                };
                check_common(own, &at, &mut errors);
                check_fits(own, &method, &at, &mut errors);
            }
            let kind =
                RpcKind::from_streaming(method.is_client_streaming(), method.is_server_streaming());
            let policy = merge(default.as_ref(), own.as_ref(), kind);
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
    /// `RpcPolicy`, whose field numbers locate a key written as a field option.
    fields: &'a MessageDescriptor,
    /// Source-info path of the option, ending with the extension's number.
    option: Vec<i32>,
    /// What the option is on, for the message: ``service `a.v1.S` `` or `` `a.v1.S/Get` ``.
    target: String,
}

impl At<'_> {
    fn error(&self, key: &str, what: String) -> String {
        let number = self
            .fields
            .get_field_by_name(key)
            .map_or(0, |f| f.number() as i32);
        let place = source::option_key(self.file, self.sources, &self.option, key, number);
        source::message(self.file, place, &what)
    }
}

/// Mistakes in any `RpcPolicy`, on a service or an RPC.
fn check_common(policy: &Declared, at: &At<'_>, errors: &mut Vec<String>) {
    for &(key, value) in &policy.limits {
        if value == 0 {
            let key = key.name;
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
    let kind = RpcKind::from_streaming(method.is_client_streaming(), method.is_server_streaming());
    for &(key, _) in &policy.limits {
        if key.fits(kind) {
            continue;
        }
        let (side, limits) = match key.fits {
            Fits::AnyRpc => continue,
            Fits::RequestStream => ("requests", "a stream of requests"),
            Fits::ResponseStream => ("responses", "a stream of responses"),
            Fits::AnyStream => (
                "messages on the streaming side(s)",
                "messages on the streaming side(s)",
            ),
        };
        let why = if kind.streams() {
            let hint = match key.counterpart().filter(|k| k.proto_field.is_some()) {
                Some(counterpart) => format!("; did you mean `{}`?", counterpart.name),
                None => String::new(),
            };
            format!("its {side} do not stream{hint} (`max_message_bytes` limits single messages)")
        } else {
            format!(
                "neither side streams; use {}",
                tonic_intercept_spec::unary_alternatives()
            )
        };
        errors.push(at.error(
            key.name,
            format!(
                "`{}` limits {limits}, but {} is {}: {why}",
                key.name,
                at.target,
                kind.describe()
            ),
        ));
    }
}

/// The RPC's own keys override the service default key by key (a key's `.proto` default,
/// `messages_per_second` for the rates, counts as set where it is written); `public` and
/// `roles` go together; default stream keys apply only where the side streams.
fn merge(default: Option<&Declared>, own: Option<&Declared>, kind: RpcKind) -> Policy {
    let empty = Declared::default();
    let (default, own) = (default.unwrap_or(&empty), own.unwrap_or(&empty));
    let access = if own.public.is_some() || !own.roles.is_empty() {
        own
    } else {
        default
    };
    let limits = LIMIT_KEYS
        .iter()
        .filter(|key| key.on_descriptor() && key.fits(kind))
        .filter_map(|key| {
            let value = own
                .get_or_default(key)
                .or_else(|| default.get_or_default(key))?;
            Some((key, value))
        })
        .collect();
    Policy {
        public: access.public.unwrap_or(false),
        roles: access.roles.clone(),
        limits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(set: &[(&str, u64)]) -> Vec<(&'static LimitKey, u64)> {
        set.iter()
            .map(|&(name, value)| (limit_key(name).expect("a limit key"), value))
            .collect()
    }

    #[test]
    fn rpc_keys_win_and_default_stream_keys_apply_where_they_fit() {
        let default = Declared {
            roles: vec!["user".into()],
            limits: keys(&[
                ("max_messages_in", 5),
                ("max_messages_out", 6),
                ("messages_per_second", 100),
                ("timeout_ms", 5000),
            ]),
            ..Declared::default()
        };
        let unary = merge(Some(&default), None, RpcKind::Unary);
        assert_eq!(
            unary,
            Policy {
                roles: vec!["user".into()],
                limits: keys(&[("timeout_ms", 5000)]),
                ..Policy::default()
            }
        );
        let own = Declared {
            public: Some(true),
            limits: keys(&[("messages_per_second", 7), ("timeout_ms", 10)]),
            ..Declared::default()
        };
        let server = merge(Some(&default), Some(&own), RpcKind::ServerStreaming);
        assert_eq!(
            server,
            Policy {
                public: true,
                limits: keys(&[
                    ("max_messages_out", 6),
                    ("messages_per_second_out", 7),
                    ("timeout_ms", 10),
                ]),
                ..Policy::default()
            }
        );
        let explicit = Declared {
            limits: keys(&[("messages_per_second_in", 3)]),
            ..Declared::default()
        };
        let bidi = merge(Some(&default), Some(&explicit), RpcKind::BidiStreaming);
        let get = |name| {
            bidi.limits
                .iter()
                .find(|(k, _)| k.name == name)
                .map(|&(_, v)| v)
        };
        assert_eq!(get("messages_per_second_in"), Some(3));
        assert_eq!(get("messages_per_second_out"), Some(100));
        assert_eq!(bidi.roles, ["user"]);
    }

    /// The table and `options.proto` describe the same keys: every `.proto` field of the
    /// table is a field of `RpcPolicy` of the table's type, and every field of `RpcPolicy`
    /// but `public` and `roles` is in the table.
    #[test]
    fn the_limit_table_agrees_with_options_proto() {
        use protox::prost_reflect::Kind;

        let mut resolver = protox::file::ChainFileResolver::new();
        resolver.add(crate::OptionsFile);
        resolver.add(protox::file::GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.open_file(crate::OPTIONS_PROTO_NAME).unwrap();
        let pool = compiler.descriptor_pool();
        let policy = pool
            .get_message_by_name("tonic_intercept.v1.RpcPolicy")
            .unwrap();
        for key in LIMIT_KEYS {
            let Some(name) = key.proto_field else {
                continue;
            };
            let field = policy
                .get_field_by_name(name)
                .unwrap_or_else(|| panic!("`{name}` is not a field of RpcPolicy"));
            let expected = match key.value.rust_type() {
                Some("u32") => Kind::Uint32,
                Some("u64") => Kind::Uint64,
                other => panic!("`{name}`: a .proto field holds a number, not {other:?}"),
            };
            assert_eq!(field.kind(), expected, "{name}");
            assert!(field.supports_presence(), "`{name}` must be `optional`");
        }
        for field in policy.fields() {
            let name = field.name();
            assert!(
                matches!(name, "public" | "roles")
                    || LIMIT_KEYS.iter().any(|k| k.proto_field == Some(name)),
                "RpcPolicy.{name} is not in LIMIT_KEYS"
            );
        }
    }
}
