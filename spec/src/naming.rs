//! Names of generated items, exactly as prost-build and tonic-build form theirs: the
//! generator emits `<service>_intercept::<Rpc>` from the `.proto`, and `#[intercept]`
//! finds the same path from the user's impl of tonic's server trait.

use heck::{ToSnakeCase, ToUpperCamelCase};

/// `list_users` (tonic's method name, maybe a raw identifier `r#type`) to `ListUsers`:
/// the generated RPC type. `#[intercept]` applies it to the handler's name, the generator
/// to prost-build's method name, so both arrive at the same type.
pub fn upper_camel(snake: &str) -> String {
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

/// tonic-build's rule for module names (its `naive_snake_case`): `UserService` to
/// `user_service`, `ABCService` to `a_b_c_service`. Not heck's snake case, which would
/// give `abc_service`.
pub fn naive_snake_case(name: &str) -> String {
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

/// prost-build's Rust name of a service written `proto_name` in the `.proto`
/// (heck's UpperCamel case): `user_service` to `UserService`.
pub fn rust_service_name(proto_name: &str) -> String {
    proto_name.to_upper_camel_case()
}

/// prost-build's (and so tonic's) method name of an RPC written `proto_name`, without the
/// `r#` it adds to keywords: `ListUsers` to `list_users`.
pub fn method_name(proto_name: &str) -> String {
    proto_name.to_snake_case()
}

/// The module the generator emits for a service whose Rust name (tonic's trait) is
/// `rust_service`: `UserService` to `user_service_intercept`, beside tonic's
/// `user_service_server` and `user_service_client`.
pub fn intercept_module(rust_service: &str) -> String {
    format!("{}{INTERCEPT_SUFFIX}", naive_snake_case(rust_service))
}

/// The intercept module beside tonic's server module `server_module`:
/// `user_service_server` to `user_service_intercept`; `None` if the name is not a
/// tonic server module.
pub fn intercept_module_of_server(server_module: &str) -> Option<String> {
    let stem = server_module.strip_suffix(SERVER_SUFFIX)?;
    (!stem.is_empty()).then(|| format!("{stem}{INTERCEPT_SUFFIX}"))
}

const INTERCEPT_SUFFIX: &str = "_intercept";
const SERVER_SUFFIX: &str = "_server";

/// The type generated for an RPC written `proto_name` in the `.proto`: prost-build's
/// method name in UpperCamel case, which is what [`upper_camel`] makes of the handler's
/// name.
pub fn rpc_type_name(proto_name: &str) -> String {
    upper_camel(&method_name(proto_name))
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

    #[test]
    fn type_names_follow_prost_and_tonic() {
        assert_eq!(rpc_type_name("ListUsers"), "ListUsers");
        assert_eq!(rpc_type_name("service"), "Service");
        assert_eq!(rpc_type_name("SERVICE"), "Service");
        assert_eq!(rpc_type_name("GetV2User"), "GetV2User");
        assert_eq!(rpc_type_name("Self"), "Self");
    }

    #[test]
    fn the_module_is_the_same_from_the_proto_and_from_the_impl() {
        for (proto, module) in [
            ("UserService", "user_service_intercept"),
            ("user_service", "user_service_intercept"),
            // prost-build names the trait `AbcService` first.
            ("ABCService", "abc_service_intercept"),
            ("Echo", "echo_intercept"),
        ] {
            let rust = rust_service_name(proto);
            assert_eq!(intercept_module(&rust), module);
            let server = format!("{}_server", naive_snake_case(&rust));
            assert_eq!(intercept_module_of_server(&server).as_deref(), Some(module));
        }
        assert_eq!(intercept_module_of_server("pb"), None);
        assert_eq!(intercept_module_of_server("_server"), None);
    }

    #[test]
    fn the_handler_and_the_proto_name_the_same_type() {
        for proto in ["ListUsers", "GetV2User", "Type", "service"] {
            assert_eq!(upper_camel(&method_name(proto)), rpc_type_name(proto));
        }
        assert_eq!(method_name("ListUsers"), "list_users");
    }
}
