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
//! Each `<service>_intercept` module also has `Service`, the service as a type
//! (`tonic_intercept::Service`), and `RPCS`, its descriptors in `.proto` order; each RPC
//! type knows its `Service` and its `INDEX` in `RPCS`.
//!
//! # Policy in the proto
//!
//! Limits and access rules can be declared next to the RPCs they govern, with the options
//! of `tonic_intercept/v1/options.proto`. Import it by that name: [`Builder::compile_protos`]
//! serves it from memory, so there is nothing to copy into your include directories.
//!
//! ```proto
//! syntax = "proto3";
//! package catalog.v1;
//!
//! import "tonic_intercept/v1/options.proto";
//!
//! service CatalogService {
//!   // The default of every RPC of the service.
//!   option (tonic_intercept.v1.service) = { timeout_ms: 5000 };
//!
//!   rpc GetItem(GetItemRequest) returns (Item) {
//!     option (tonic_intercept.v1.rpc) = { public: true };
//!   }
//!   rpc ListItems(ListItemsRequest) returns (stream Item) {
//!     option (tonic_intercept.v1.rpc) = {
//!       max_messages_out: 10000, messages_per_second: 500, timeout_ms: 2000, roles: ["admin"]
//!     };
//!   }
//!   rpc DeleteItem(DeleteItemRequest) returns (DeleteItemResponse) {
//!     option (tonic_intercept.v1.rpc) = { roles: ["admin"] };
//!   }
//! }
//! ```
//!
//! The keys of `RpcPolicy`: `public` (no authentication needed), `roles` (the caller needs
//! one of them), `max_messages_in` / `max_messages_out` (messages per stream),
//! `max_message_bytes` (per message, either way), `max_total_bytes_in` (all request
//! messages of a call together: a whole upload), `messages_per_second_in` /
//! `messages_per_second_out` (sustained rates), `messages_per_second` (the rate of the
//! streaming side: responses of a server-streaming RPC, requests of a client-streaming one,
//! both for bidi), `timeout_ms` (the whole call) and `idle_timeout_ms` (the wait for a
//! stream's next message; not for unary RPCs). The single-key form works too:
//! `option (tonic_intercept.v1.rpc).timeout_ms = 2000;`.
//!
//! The generator merges and checks them, and puts the result on each RPC's descriptor
//! (`ListItems::DESCRIPTOR.policy`, a `tonic_intercept::RpcPolicy`, whose limit keys are a
//! `tonic_intercept::Limits`, read with `policy.limits().get_max_messages_out()` and the
//! like):
//!
//! - an RPC's own keys override the service's `(tonic_intercept.v1.service)` key by key;
//! - `public` and `roles` go together: an RPC that sets either does not inherit the
//!   service's (so `public: false` opts one RPC out of a service-wide `public: true`);
//! - the service's stream keys apply only to the RPCs whose side streams, and are skipped
//!   elsewhere; on an RPC itself, a stream key whose side does not stream is an error.
//!
//! Mistakes fail the build with the `file:line:column` of the key, for instance:
//!
//! ```text
//! catalog/v1/catalog.proto:14:41: `max_messages_in` limits a stream of requests, but
//! `catalog.v1.CatalogService/GetItem` is unary: neither side streams; use
//! `max_message_bytes` or `timeout_ms`
//! ```
//!
//! The same goes for a limit of zero, `public: true` together with `roles`, and an empty
//! role name. Only [`Builder::compile_protos`] reads these options: a
//! `prost_types::FileDescriptorSet` has lost them, so [`Builder::compile_fds`] refuses files
//! that import the options file. Other toolchains compile the file like any other (its
//! text is [`OPTIONS_PROTO`]) and ignore the options.
//!
//! # Server reflection
//!
//! Each build also writes the encoded `google.protobuf.FileDescriptorSet` of the compiled
//! files, imports included (and, from [`Builder::compile_protos`], with their custom
//! options), to [`FILE_DESCRIPTOR_SET_NAME`] in the output directory, or where
//! [`Builder::file_descriptor_set_path`] says. Include it as a constant and hand it to
//! `tonic_intercept::server::reflection` to serve gRPC server reflection (what `grpcurl`
//! and Postman ask):
//!
//! ```text
//! pub const FILE_DESCRIPTOR_SET: &[u8] =
//!     tonic::include_file_descriptor_set!("file_descriptor_set");
//! ```
//!
//! A `build.rs` that compiles twice writes the same default file twice: give each call its
//! own [`Builder::file_descriptor_set_path`] (e.g.
//! `PathBuf::from(env::var("OUT_DIR")?).join("users.bin")`, then
//! `include_file_descriptor_set!("users")`).
//!
//! [tonic-intercept]: https://docs.rs/tonic-intercept

#![warn(missing_docs, unreachable_pub)]

mod generate;
mod model;
mod names;
mod policy;
mod protovalidate;
mod service_generator;
mod source;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use protox::file::{
    ChainFileResolver, File, FileResolver, GoogleFileResolver, IncludeFileResolver,
};

/// The text of `tonic_intercept/v1/options.proto`, the options that declare policy in a
/// `.proto` (see the [crate docs](crate#policy-in-the-proto)).
///
/// [`Builder::compile_protos`] serves it from memory, so Rust users need not copy it.
/// Write it out for other toolchains (`protoc`, `buf`) that compile the same `.proto`
/// files, at [`OPTIONS_PROTO_NAME`] under one of their include directories.
pub const OPTIONS_PROTO: &str = include_str!("../proto/tonic_intercept/v1/options.proto");

/// The name to import [`OPTIONS_PROTO`] by: `import "tonic_intercept/v1/options.proto";`.
pub const OPTIONS_PROTO_NAME: &str = "tonic_intercept/v1/options.proto";

/// The file, in the output directory, that the encoded `FileDescriptorSet` of the compiled
/// files is written to unless [`Builder::file_descriptor_set_path`] says otherwise:
/// `tonic::include_file_descriptor_set!("file_descriptor_set")` includes it.
pub const FILE_DESCRIPTOR_SET_NAME: &str = "file_descriptor_set.bin";

/// Serves [`OPTIONS_PROTO`] for exactly [`OPTIONS_PROTO_NAME`], ahead of the include
/// directories: the copy that matches this generator always wins.
#[derive(Debug)]
struct OptionsFile;

impl FileResolver for OptionsFile {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name == OPTIONS_PROTO_NAME {
            File::from_source(name, OPTIONS_PROTO)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

/// Starts a build configuration with tonic-build's defaults: client and server.
pub fn configure() -> Builder {
    Builder {
        build_client: true,
        build_server: true,
        out_dir: None,
        emit_rerun_if_changed: true,
        file_descriptor_set_path: None,
        intercept_types: true,
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
    file_descriptor_set_path: Option<PathBuf>,
    intercept_types: bool,
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

    /// Where to write the encoded `FileDescriptorSet` of the compiled files (default:
    /// [`FILE_DESCRIPTOR_SET_NAME`] in the output directory), as prost-build's option of
    /// the same name. See [Server reflection](crate#server-reflection).
    pub fn file_descriptor_set_path(mut self, path: impl AsRef<Path>) -> Self {
        self.file_descriptor_set_path = Some(path.as_ref().to_owned());
        self
    }

    /// Emit the `<service>_intercept` module of typed RPC types next to tonic's client and
    /// server (default `true`). Off, the output is plain prost messages and tonic code that
    /// does not name `tonic_intercept`: what the runtime itself checks in for the services it
    /// calls (Envoy's rate limit service).
    pub fn intercept_types(mut self, enable: bool) -> Self {
        self.intercept_types = enable;
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
    ///
    /// `import "tonic_intercept/v1/options.proto";` resolves without the file on disk, and
    /// the policy declared with it is merged, checked and put on the RPC descriptors (see
    /// [Policy in the proto](crate#policy-in-the-proto)).
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
        let mut resolver = ChainFileResolver::new();
        resolver.add(OptionsFile);
        protovalidate::add_resolver(&mut resolver);
        for include in includes {
            resolver.add(IncludeFileResolver::new(include.as_ref().to_owned()));
        }
        resolver.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler
            .include_source_info(true)
            .include_imports(true)
            .open_files(protos)
            .map_err(|e| Error::Proto(protox_message(&e)))?;

        let mut sources = source::Sources::default();
        for file in compiler.files() {
            if let Some(path) = file.path() {
                sources.on_disk(file.name(), path.to_owned());
            }
        }
        sources.in_memory(OPTIONS_PROTO_NAME, OPTIONS_PROTO);

        // Code for the files asked for and what they import, as before; not for the
        // options file (it only annotates descriptors) nor what only it imports.
        let generated = generated_files(&compiler);
        let mut fds = compiler.file_descriptor_set();
        fds.file.retain(|f| generated.contains(f.name()));
        names::check(&fds).map_err(Error::proto)?;

        let pool = compiler.descriptor_pool();
        let services: Vec<_> = pool
            .services()
            .filter(|s| generated.contains(s.parent_file().name()))
            .collect();
        let policies = policy::read(&pool, &services, &sources).map_err(Error::proto)?;
        // Every compiled file, imports included, with the custom options kept: what a
        // reflection client needs to resolve a file's dependencies.
        let encoded = compiler.encode_file_descriptor_set();
        self.generate(fds, policies, &encoded)
    }

    /// Generates code from an already compiled descriptor set.
    ///
    /// A `prost_types::FileDescriptorSet` has lost the custom options of its files, so
    /// policy declared with `tonic_intercept/v1/options.proto` cannot be read from it: a
    /// set whose files import that file is refused rather than generated without its
    /// policy. Use [`Builder::compile_protos`] for those.
    pub fn compile_fds(self, fds: prost_types::FileDescriptorSet) -> Result<(), Error> {
        if let Some(file) = fds
            .file
            .iter()
            .find(|f| f.dependency.iter().any(|d| d == OPTIONS_PROTO_NAME))
        {
            return Err(Error::Config(format!(
                "`{}` imports `{OPTIONS_PROTO_NAME}`, but its options are lost in a `prost_types::FileDescriptorSet`: \
                 compile the `.proto` files with `compile_protos` to apply the policy they declare",
                file.name()
            )));
        }
        names::check(&fds).map_err(Error::proto)?;
        let encoded = prost::Message::encode_to_vec(&fds);
        self.generate(fds, model::Policies::new(), &encoded)
    }

    fn generate(
        self,
        fds: prost_types::FileDescriptorSet,
        policies: model::Policies,
        encoded_fds: &[u8],
    ) -> Result<(), Error> {
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
        let fds_path = self
            .file_descriptor_set_path
            .unwrap_or_else(|| out_dir.join(FILE_DESCRIPTOR_SET_NAME));
        std::fs::write(&fds_path, encoded_fds).map_err(Error::Io)?;
        let tonic = tonic_prost_build::configure()
            .build_client(self.build_client)
            .build_server(self.build_server)
            .service_generator();
        let mut config = prost_build::Config::new();
        config.out_dir(&out_dir).service_generator(Box::new(
            service_generator::InterceptGenerator {
                tonic,
                policies,
                build_server: self.build_server,
                intercept_types: self.intercept_types,
                protovalidate: protovalidate::Plan::new(encoded_fds, &out_dir)?,
            },
        ));
        config.compile_fds(fds).map_err(Error::Io)
    }
}

/// protox puts `file:line:column` in its Debug form only; the cause (which key of an
/// option is wrong, say) and a hint are in its miette diagnostic.
fn protox_message(error: &protox::Error) -> String {
    use miette::Diagnostic;

    let mut message = format!("{error:?}");
    let mut cause = error.diagnostic_source();
    while let Some(diagnostic) = cause {
        let text = diagnostic.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = diagnostic.diagnostic_source();
    }
    if let Some(help) = error.help() {
        message.push_str(&format!(" (help: {help})"));
    }
    message
}

/// The files asked for and, transitively, what they import, except through the options
/// file (unless it was asked for itself).
fn generated_files(compiler: &protox::Compiler) -> HashSet<String> {
    let pool = compiler.descriptor_pool();
    let mut todo: Vec<String> = compiler
        .files()
        .filter(|f| !f.is_import())
        .map(|f| f.name().to_owned())
        .collect();
    let mut seen = HashSet::new();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(file) = pool.get_file_by_name(&name) else {
            continue;
        };
        todo.extend(
            file.dependencies()
                .map(|d| d.name().to_owned())
                .filter(|d| d != OPTIONS_PROTO_NAME && !protovalidate::is_served(d)),
        );
    }
    seen
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

impl Error {
    /// Several `file:line:column: message` lines, as one error.
    fn proto(messages: Vec<String>) -> Self {
        Error::Proto(messages.join("\n"))
    }
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
