//! Plugs the generator into prost-build, after tonic's own service generator.

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
    /// Whether tonic emits the server, which the `Edged` impl names.
    pub(crate) build_server: bool,
    /// Whether to emit the `<service>_intercept` module at all.
    pub(crate) intercept_types: bool,
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
        if self.build_server {
            // tonic-build's names: `{snake}_server::{Name}Server`.
            model.server = Some((
                format!("{}_server", naive_snake_case(&service.name)),
                format!("{}Server", service.name),
            ));
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
