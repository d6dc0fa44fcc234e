//! The `build.rs` half of [tonic-intercept]: compiles `.proto` files without `protoc` and
//! emits prost messages, tonic clients and servers, and one typed RPC type per method.
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), tonic_intercept_build::Error> {
//!     tonic_intercept_build::configure()
//!         .compile_protos(&["proto/users/v1/users.proto"], &["proto"])
//! }
//! ```
//!
//! Then, in the crate, `tonic::include_proto!("users.v1")` brings in the messages,
//! `user_service_server`, `user_service_client` and `user_service_intercept`, the module
//! with one type per RPC (`user_service_intercept::ListUsers`) that `#[intercept]` and
//! typed hooks use.
//!
//! [tonic-intercept]: https://docs.rs/tonic-intercept

mod generate;
mod model;
mod service_generator;

use std::fmt;
use std::path::{Path, PathBuf};

/// Starts a build configuration with tonic-build's defaults: client and server.
pub fn configure() -> Builder {
    Builder {
        build_client: true,
        build_server: true,
        out_dir: None,
        emit_rerun_if_changed: true,
    }
}

/// Configures code generation; finish with [`Builder::compile_protos`] or
/// [`Builder::compile_fds`].
#[derive(Debug, Clone)]
#[must_use = "a Builder does nothing until `compile_protos` is called"]
pub struct Builder {
    build_client: bool,
    build_server: bool,
    out_dir: Option<PathBuf>,
    emit_rerun_if_changed: bool,
}

impl Builder {
    /// Emit tonic clients (default `true`).
    pub fn build_client(mut self, enable: bool) -> Self {
        self.build_client = enable;
        self
    }

    /// Emit tonic servers (default `true`).
    pub fn build_server(mut self, enable: bool) -> Self {
        self.build_server = enable;
        self
    }

    /// Where to write the generated files (default: `$OUT_DIR`).
    pub fn out_dir(mut self, out_dir: impl AsRef<Path>) -> Self {
        self.out_dir = Some(out_dir.as_ref().to_owned());
        self
    }

    /// Print `cargo:rerun-if-changed` for every proto file and include directory
    /// (default `true`), so that editing a `.proto` rebuilds the crate.
    pub fn emit_rerun_if_changed(mut self, enable: bool) -> Self {
        self.emit_rerun_if_changed = enable;
        self
    }

    /// Compiles `protos` (searched in `includes`) with protox, a pure-Rust protobuf
    /// compiler, so no `protoc` is needed, then generates code.
    ///
    /// A malformed `.proto` fails with its `file:line:column` and what is wrong.
    pub fn compile_protos(
        self,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<(), Error> {
        if self.emit_rerun_if_changed {
            for path in protos.iter().map(AsRef::as_ref) {
                println!("cargo:rerun-if-changed={}", path.display());
            }
            for path in includes.iter().map(AsRef::as_ref) {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
        let fds = protox::compile(protos, includes)
            // protox puts `file:line:column` in its Debug form only.
            .map_err(|e| Error::Proto(format!("{e:?}")))?;
        self.compile_fds(fds)
    }

    /// Generates code from an already compiled descriptor set.
    pub fn compile_fds(self, fds: prost_types::FileDescriptorSet) -> Result<(), Error> {
        let out_dir = match self.out_dir {
            Some(dir) => dir,
            None => std::env::var_os("OUT_DIR")
                .map(PathBuf::from)
                .ok_or_else(|| {
                    Error::Config(
                        "OUT_DIR is not set: call this from build.rs, or set `.out_dir(...)`"
                            .into(),
                    )
                })?,
        };
        let tonic = tonic_prost_build::configure()
            .build_client(self.build_client)
            .build_server(self.build_server)
            .service_generator();
        let mut config = prost_build::Config::new();
        config
            .out_dir(out_dir)
            .service_generator(Box::new(service_generator::InterceptGenerator { tonic }));
        config.compile_fds(fds).map_err(Error::Io)
    }
}

/// Formats generated tokens the way users will read them.
pub(crate) fn format(tokens: proc_macro2::TokenStream) -> String {
    let file: syn::File = syn::parse2(tokens).expect("generated code is a valid Rust file");
    prettyplease::unparse(&file)
}

/// Why code generation failed.
///
/// Its `Debug` output is its message, so `fn main() -> Result<(), Error>` in `build.rs`
/// prints a readable error rather than a struct dump.
#[non_exhaustive]
pub enum Error {
    /// A `.proto` file could not be read or compiled; the message has `file:line:column`.
    Proto(String),
    /// Writing the generated files failed.
    Io(std::io::Error),
    /// The builder was used outside `build.rs` without an output directory.
    Config(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Proto(msg) => write!(f, "tonic-intercept-build: cannot compile proto: {msg}"),
            Error::Io(e) => write!(f, "tonic-intercept-build: cannot write generated code: {e}"),
            Error::Config(msg) => write!(f, "tonic-intercept-build: {msg}"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}
