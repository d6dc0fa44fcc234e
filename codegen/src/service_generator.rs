//! Plugs the generator into prost-build, after tonic's own service generator.

use std::collections::BTreeSet;

use prost_build::{Service, ServiceGenerator};

use tonic_intercept_spec::naming::naive_snake_case;

use crate::generate;
use crate::model::{Policies, ServiceModel};

/// Emits tonic's client and server for each service, then our module beside them.
pub(crate) struct InterceptGenerator {
    pub(crate) tonic: Box<dyn ServiceGenerator>,
    /// Read from the `.proto` before generation, since prost-build's `Service` has lost
    /// the custom options.
    pub(crate) policies: Policies,
    /// Whether to emit our typed `Client` (tonic emits its client, and with prost's codec).
    pub(crate) build_client: bool,
    /// Whether tonic emits the server, which the `Edged` impl names.
    pub(crate) build_server: bool,
    /// Whether to emit the `<service>_intercept` module at all.
    pub(crate) intercept_types: bool,
    /// tonic's `proto_path`: where the messages are, seen from a sibling of its modules.
    pub(crate) proto_path: String,
    /// tonic's `disable_comments`: `pkg.Service` and `pkg.Service.Method` without docs.
    pub(crate) disable_comments: BTreeSet<String>,
    /// tonic's `server_mod_attribute`s and `client_mod_attribute`s: (package pattern,
    /// attribute).
    pub(crate) server_mod_attributes: Vec<(String, String)>,
    pub(crate) client_mod_attributes: Vec<(String, String)>,
    /// The `ProtoValidate` impls for messages with `buf.validate` rules (feature
    /// `protovalidate`), appended to their package's file.
    pub(crate) protovalidate: crate::protovalidate::Plan,
}

impl ServiceGenerator for InterceptGenerator {
    fn generate(&mut self, service: Service, buf: &mut String) {
        if !self.intercept_types {
            self.tonic.generate(service, buf);
            return;
        }
        let mut model = ServiceModel::from_prost(&service, &self.policies);
        model.client = self.build_client;
        model.proto_path = self.proto_path.clone();
        model.server_mod_attributes = matching(&self.server_mod_attributes, &service.package);
        model.client_mod_attributes = matching(&self.client_mod_attributes, &service.package);
        if self.build_server {
            // tonic-build's names: `{snake}_server::{Name}Server`.
            model.server = Some((
                format!("{}_server", naive_snake_case(&service.name)),
                format!("{}Server", service.name),
            ));
        }
        // tonic matches `disable_comments` on these exact names.
        if self.disable_comments.contains(&model.full_name) {
            model.docs.clear();
        }
        for rpc in &mut model.rpcs {
            let name = format!("{}.{}", model.full_name, rpc.proto_name);
            if self.disable_comments.contains(&name) {
                rpc.docs.clear();
            }
        }
        self.tonic.generate(service, buf);
        buf.push('\n');
        buf.push_str(&crate::format(generate::service(&model)));
    }

    fn finalize(&mut self, buf: &mut String) {
        self.tonic.finalize(buf);
    }

    fn finalize_package(&mut self, package: &str, buf: &mut String) {
        self.tonic.finalize_package(package, buf);
        self.protovalidate.emit(package, buf);
    }
}

/// The attributes whose pattern matches `package`, in order: tonic-build's rule for module
/// attributes (its `match_name`, private to it): `.` matches all, otherwise the whole name or
/// a `.`-separated suffix; a pattern starting with `.` matches a prefix of segments.
fn matching(attributes: &[(String, String)], package: &str) -> Vec<String> {
    attributes
        .iter()
        .filter(|(pattern, _)| matches(pattern, package))
        .map(|(_, attribute)| attribute.clone())
        .collect()
}

fn matches(pattern: &str, path: &str) -> bool {
    if pattern.is_empty() {
        return false;
    }
    if pattern == "." || pattern == path {
        return true;
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let path: Vec<&str> = path.split('.').collect();
    if pattern.len() > path.len() {
        false
    } else if pattern[0].is_empty() {
        pattern[..] == path[..pattern.len()]
    } else {
        pattern[..] == path[path.len() - pattern.len()..]
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn module_attribute_patterns_match_as_tonic_build_does() {
        assert!(matches(".", "shop.v1"));
        assert!(matches("shop.v1", "shop.v1"));
        assert!(matches("v1", "shop.v1"));
        assert!(matches(".shop", ".shop.v1"));
        assert!(!matches("", "shop.v1"));
        assert!(!matches("shop", "shop.v1"));
        assert!(!matches("op.v1", "shop.v1"));
        assert!(!matches("a.shop.v1", "shop.v1"));
    }
}
