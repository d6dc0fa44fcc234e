//! The types each `<service>_intercept` module declares must not collide: checked before
//! anything is written, so a collision is a build error naming the RPC, not a rustc error
//! in generated code.

use prost_types::FileDescriptorSet;
use tonic_intercept_spec::RpcKind;
use tonic_intercept_spec::naming::{intercept_module, rpc_type_name, rust_service_name};

use crate::source;

/// `FileDescriptorProto.service`, `ServiceDescriptorProto.method`, `MethodDescriptorProto.name`.
const SERVICE: i32 = 6;
const METHOD: i32 = 2;
const NAME: i32 = 1;

/// One `file:line:column: message` per collision.
pub(crate) fn check(fds: &FileDescriptorSet) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    for file in &fds.file {
        for (s, service) in file.service.iter().enumerate() {
            let full_name = match file.package() {
                "" => service.name().to_owned(),
                package => format!("{package}.{}", service.name()),
            };
            // tonic's `UserService` becomes `user_service_intercept`, like `user_service_server`.
            let module = intercept_module(&rust_service_name(service.name()));
            // (type, what declares it)
            let mut taken: Vec<(String, String)> = vec![
                ("Service".into(), "the service itself".into()),
                ("Client".into(), "the service's client".into()),
            ];
            for (m, method) in service.method.iter().enumerate() {
                let ty = rpc_type_name(method.name());
                let here = |what: String| {
                    let path = [SERVICE, s as i32, METHOD, m as i32, NAME];
                    source::message(file, source::start(file, &path), &what)
                };
                if ty == "Self" {
                    errors.push(here(format!(
                        "`rpc {}` of `{full_name}` would generate the type `Self`, which Rust reserves; rename the RPC",
                        method.name()
                    )));
                    continue;
                }
                // (type, what it is for in the message, what it is for later collisions)
                let rpc = format!("`rpc {}`", method.name());
                let mut declares = vec![(ty.clone(), String::new(), rpc.clone())];
                let kind =
                    RpcKind::from_streaming(method.client_streaming(), method.server_streaming());
                if kind.streams_requests() {
                    declares.push((
                        format!("{ty}Requests"),
                        " for its request stream".to_owned(),
                        format!("the request stream of {rpc}"),
                    ));
                }
                if kind.streams_responses() {
                    declares.push((
                        format!("{ty}Responses"),
                        " for its response stream".to_owned(),
                        format!("the response stream of {rpc}"),
                    ));
                }
                for (name, role, what) in declares {
                    if let Some((_, first)) = taken.iter().find(|(t, _)| *t == name) {
                        let fix = if first.starts_with("the service") {
                            "rename the RPC"
                        } else {
                            "rename one of the RPCs"
                        };
                        errors.push(here(format!(
                            "{rpc} of `{full_name}` would generate the type `{module}::{name}`{role}, which `{module}` already declares for {first}; {fix}"
                        )));
                    } else {
                        taken.push((name, what));
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
