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
//! # Switching from tonic-prost-build
//!
//! A `build.rs` written for tonic-prost-build switches by renaming the crate: every option
//! of `tonic_prost_build::Builder` is here with the same name and arguments, forwarded to
//! tonic-prost-build's service generator and to prost-build's `Config` in tonic-prost-build's
//! own order, so the prost and tonic code is byte for byte the same (checked by
//! `codegen/tests/same_as_tonic.rs` and `tests/adoption`). The `.proto` files are compiled
//! with protox instead of `protoc`. Beside tonic's modules, each service gets its
//! `<service>_intercept` module.
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // was: tonic_prost_build::configure()
//!     tonic_intercept_build::configure()
//!         .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
//!         .extern_path(".common.v1", "::common::v1")
//!         .bytes(".")
//!         .include_file("_includes.rs")
//!         .compile_protos(&["proto/orders/v1/orders.proto"], &["proto"])?;
//!     Ok(())
//! }
//! ```
//!
//! `tonic_prost_build::compile_protos(path)`, `compile_fds(set)`, `Config` and
//! `FileDescriptorSet` have their namesakes here too. [`Error`] converts into
//! `std::io::Error`, so `?` works in a `main` returning `std::io::Result<()>`, and
//! `compile_protos` has tonic-prost-build's signature (one path type for both lists), so
//! an empty list of includes needs no annotation either:
//!
//! ```no_run
//! fn main() -> std::io::Result<()> {
//!     tonic_intercept_build::configure().compile_protos(&["proto/users.proto"], &[])?;
//!     Ok(())
//! }
//! ```
//!
//! Every option of tonic-prost-build's `Builder` (0.14) and prost-build's `Config` (0.14),
//! and ours. "Config" means: set it on a `prost_build::Config` given to
//! [`Builder::compile_with_config`] or [`Builder::compile_fds_with_config`].
//!
//! | option | tonic-prost-build `Builder` | prost-build `Config` | tonic-intercept-build `Builder` | note |
//! |---|---|---|---|---|
//! | `configure()` / `Config::new()` | yes | yes | yes | our defaults are tonic-prost-build's |
//! | `build_client` | yes | - | yes | off also drops our typed `Client` |
//! | `build_server` | yes | - | yes | off also drops our `Edged` impl; neither client nor server: no service code, ours included |
//! | `build_transport` | yes | - | yes | passed to tonic |
//! | `out_dir` | yes | yes | yes | default `$OUT_DIR` |
//! | `extern_path` | yes | yes | yes | also for the RPC types' `Request`/`Response` |
//! | `field_attribute` | yes | yes | yes | |
//! | `message_attribute` | yes | yes | yes | |
//! | `enum_attribute` | yes | yes | yes | |
//! | `type_attribute` | yes | yes | yes | |
//! | `boxed` | yes | yes | yes | |
//! | `btree_map` | yes (one path per call) | yes (paths) | yes (one path per call) | tonic's signature |
//! | `bytes` | yes (one path per call) | yes (paths) | yes (one path per call) | tonic's signature |
//! | `server_mod_attribute` | yes | - | yes | on tonic's `<service>_server` module, and on our `Edged` impl (which names it), so a `#[cfg]` holds for both |
//! | `server_attribute` | yes | - | yes | on tonic's server struct |
//! | `trait_attribute` | yes | - | yes | on tonic's server trait |
//! | `client_mod_attribute` | yes | - | yes | on tonic's `<service>_client` module, and on our typed `Client` and its impls |
//! | `client_attribute` | yes | - | yes | on tonic's client struct |
//! | `proto_path` | yes | - | yes | our module resolves messages under it too |
//! | `compile_well_known_types` | yes | yes | yes | |
//! | `with_extended_rust_types` | yes | - | yes | tonic applies it from `compile_protos` only; we from every `compile_*` |
//! | `emit_package` | yes | - | yes | tonic-prost-build 0.14 ignores it (always emits the package); passed on |
//! | `file_descriptor_set_path` | yes | yes | yes | we always write the set (default `$OUT_DIR/file_descriptor_set.bin`), imports and custom options included |
//! | `skip_protoc_run` | yes | yes | yes | reads the set at `file_descriptor_set_path`; `.proto` policy is not read from it (as `compile_fds`) |
//! | `protoc_arg` | yes | yes | yes, ignored | protox compiles; a `cargo:warning` names each argument other than `--experimental_allow_proto3_optional` |
//! | `include_file` | yes | yes | yes | our modules come with their package's file |
//! | `emit_rerun_if_changed` | yes (prints nothing) | - | yes | prints `cargo:rerun-if-changed` for protos and includes (default `true`) |
//! | `disable_comments` | yes (services, methods) | yes (messages) | yes (services, methods) | also our module's docs; for messages: Config |
//! | `use_arc_self` | yes | - | yes | passed to tonic; `#[intercept]` is written for `&self` handlers |
//! | `generate_default_stubs` | yes | - | yes | passed to tonic |
//! | `codec_path` | yes | - | yes | another codec drops our typed `Client` (it encodes with prost) |
//! | `skip_debug` | yes | yes | yes | |
//! | `compile_protos` | yes (`protoc`) | yes (`protoc`) | yes (protox) | reads `tonic_intercept.v1` options; returns our [`Error`] |
//! | `compile_with_config` | yes | - | yes | the Config's own settings apply first, then the builder's |
//! | `compile_fds` | yes | yes | yes | refuses sets importing our options file (their policy is lost) |
//! | `compile_fds_with_config` | yes | - | yes | |
//! | `service_generator` | yes (`Builder`) | yes (`Config`, a setter) | yes (`Builder`) | ours: tonic's, then our module (without `.proto` policy); a Config's generator is replaced, as tonic-prost-build does |
//! | `intercept_types` | - | - | yes | off: plain prost + tonic |
//! | `skip_source_info` | - | yes | - | protoc only; comments off: `disable_comments` |
//! | `retain_enum_prefix` | - | yes | Config | |
//! | `default_package_filename` | - | yes | Config | |
//! | `enable_type_names` | - | yes | Config | |
//! | `type_name_domain` | - | yes | Config | |
//! | `prost_path` | - | yes | Config | |
//! | `prost_types_path` | - | yes | Config | |
//! | `format` | - | yes | Config | |
//! | `protoc_executable` | - | yes | - | no `protoc` |
//! | `load_fds` | - | yes | - | runs `protoc`; compile with `protox::compile` and use `compile_fds` |
//! | `generate` | - | yes | - | prost's in-memory entry (protoc plugins) |
//! | `compile_protos(path)`, `compile_fds(set)` (free functions) | yes | `prost_build::compile_*` | yes | |
//! | `Config`, `FileDescriptorSet`, `manual`, `TonicAttributes`, `TonicMethod`, `TonicService` (re-exports) | yes | - | yes | |
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
//! # protoc and buf
//!
//! The `protoc-gen-tonic-intercept` plugin writes the same files from a `protoc` or
//! `buf generate` run, the `tonic_intercept.v1` options included; its library half, and
//! the `buf.gen.yaml` to use, are in [`plugin`].
//!
//! [tonic-intercept]: https://docs.rs/tonic-intercept

#![warn(missing_docs, unreachable_pub)]

mod generate;
mod model;
mod names;
pub mod plugin;
mod policy;
mod protovalidate;
mod service_generator;
mod source;

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use protox::file::{
    ChainFileResolver, File, FileResolver, GoogleFileResolver, IncludeFileResolver,
};

/// prost-build's configuration, for [`Builder::compile_with_config`] (tonic-prost-build
/// re-exports it too).
pub use prost_build::Config;
/// A compiled set of `.proto` files, for [`Builder::compile_fds`].
pub use prost_types::FileDescriptorSet;
/// tonic's services without a `.proto`, re-exported as tonic-prost-build does.
pub use tonic_prost_build::{TonicAttributes, TonicMethod, TonicService, manual};

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

/// tonic-prost-build's default codec, the one the typed `Client` of `<service>_intercept`
/// speaks (`tonic_intercept`'s client engine encodes with prost).
const DEFAULT_CODEC_PATH: &str = "tonic_prost::ProstCodec";

/// tonic-prost-build's proto path: where its client and server find the messages, and where
/// the `<service>_intercept` module beside them does.
const DEFAULT_PROTO_PATH: &str = "super";

/// The request and response types that are not paths, by default and with
/// [`Builder::with_extended_rust_types`]: tonic-prost-build's own lists, which it reads from
/// its `NON_PATH_TYPE_ALLOWLIST` thread-local (the lists themselves are private to it).
const DEFAULT_NON_PATH_TYPES: &[&str] = &["()"];
const EXTENDED_NON_PATH_TYPES: &[&str] = &["()", "bool", "i32", "i64", "u32", "u64", "f32", "f64"];

/// The `protoc` arguments that mean nothing under protox, because protox already behaves so:
/// no note for them.
const PROTOC_ARGS_PROTOX_HONOURS: &[&str] = &["--experimental_allow_proto3_optional"];

/// Starts a build configuration with tonic-prost-build's defaults: client and server, the
/// transport helpers, messages under `super`, prost's codec.
pub fn configure() -> Builder {
    Builder {
        build_client: true,
        build_server: true,
        build_transport: true,
        tonic_attributes: Vec::new(),
        proto_path: DEFAULT_PROTO_PATH.to_owned(),
        compile_well_known_types: false,
        with_extended_rust_types: false,
        emit_package: true,
        disable_comments: BTreeSet::new(),
        use_arc_self: false,
        generate_default_stubs: false,
        codec_path: DEFAULT_CODEC_PATH.to_owned(),
        out_dir: None,
        extern_path: Vec::new(),
        field_attributes: Vec::new(),
        message_attributes: Vec::new(),
        enum_attributes: Vec::new(),
        type_attributes: Vec::new(),
        boxed: Vec::new(),
        btree_map: None,
        bytes: None,
        include_file: None,
        skip_debug: BTreeSet::new(),
        protoc_args: Vec::new(),
        file_descriptor_set_path: None,
        skip_protoc_run: false,
        emit_rerun_if_changed: true,
        intercept_types: true,
    }
}

/// Compiles one `.proto` file with the default configuration, searching imports in its own
/// directory: `tonic_prost_build::compile_protos`, with protox instead of `protoc`.
pub fn compile_protos(proto: impl AsRef<Path>) -> Result<(), Error> {
    let proto = proto.as_ref();
    let dir = proto.parent().ok_or_else(|| {
        Error::Config(format!(
            "`{}` has no parent directory to search imports in",
            proto.display()
        ))
    })?;
    configure().compile_protos(&[proto], &[dir])
}

/// Generates code from an already compiled descriptor set with the default configuration:
/// `tonic_prost_build::compile_fds`. See [`Builder::compile_fds`].
pub fn compile_fds(fds: FileDescriptorSet) -> Result<(), Error> {
    configure().compile_fds(fds)
}

/// Configures code generation; finish with [`Builder::compile_protos`] (or
/// [`Builder::compile_with_config`], [`Builder::compile_fds`],
/// [`Builder::compile_fds_with_config`]).
///
/// It has every option of `tonic_prost_build::Builder`, with the same names, arguments and
/// effect on the generated prost and tonic code (see
/// [Switching from tonic-prost-build](crate#switching-from-tonic-prost-build)), plus
/// [`Builder::intercept_types`].
#[derive(Debug, Clone)]
#[must_use = "a Builder does nothing until `compile_protos` is called"]
pub struct Builder {
    // tonic-prost-build's service generator.
    build_client: bool,
    build_server: bool,
    build_transport: bool,
    /// In call order; each kind keeps its own order, as in tonic's `Attributes`.
    tonic_attributes: Vec<(TonicAttribute, String, String)>,
    proto_path: String,
    compile_well_known_types: bool,
    with_extended_rust_types: bool,
    emit_package: bool,
    disable_comments: BTreeSet<String>,
    use_arc_self: bool,
    generate_default_stubs: bool,
    codec_path: String,
    // prost-build's `Config`, as tonic-prost-build passes them on.
    out_dir: Option<PathBuf>,
    extern_path: Vec<(String, String)>,
    field_attributes: Vec<(String, String)>,
    message_attributes: Vec<(String, String)>,
    enum_attributes: Vec<(String, String)>,
    type_attributes: Vec<(String, String)>,
    boxed: Vec<String>,
    btree_map: Option<Vec<String>>,
    bytes: Option<Vec<String>>,
    include_file: Option<PathBuf>,
    skip_debug: BTreeSet<String>,
    protoc_args: Vec<OsString>,
    file_descriptor_set_path: Option<PathBuf>,
    skip_protoc_run: bool,
    emit_rerun_if_changed: bool,
    // Ours.
    intercept_types: bool,
}

/// The five kinds of attribute tonic-prost-build puts on its service code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TonicAttribute {
    ServerMod,
    Server,
    Trait,
    ClientMod,
    Client,
}

/// How the descriptors came in. tonic-prost-build marks every message and enum
/// `#[allow(clippy::all)]` from `compile_protos` and `compile_with_config`, not from
/// `compile_fds` and `compile_fds_with_config`; so do we, to emit the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Protos,
    Fds,
}

impl Builder {
    /// Emit tonic clients (default `true`), and the typed `Client` of each
    /// `<service>_intercept` module: off, neither is emitted.
    pub fn build_client(mut self, enable: bool) -> Self {
        self.build_client = enable;
        self
    }

    /// Emit tonic servers (default `true`), and the `Edged` impl of each `<service>_intercept`
    /// module (what lets `tonic_intercept::server::Edge` wrap the server): off, neither is
    /// emitted.
    ///
    /// With neither clients nor servers, no service code is emitted at all, the
    /// `<service>_intercept` modules included (as tonic-prost-build emits none).
    pub fn build_server(mut self, enable: bool) -> Self {
        self.build_server = enable;
        self
    }

    /// Emit tonic's `connect` constructors on clients, which need tonic's `transport`
    /// feature (default `true`). Passed to tonic-prost-build.
    pub fn build_transport(mut self, enable: bool) -> Self {
        self.build_transport = enable;
        self
    }

    /// Where to write the generated files (default: `$OUT_DIR`).
    pub fn out_dir(mut self, out_dir: impl AsRef<Path>) -> Self {
        self.out_dir = Some(out_dir.as_ref().to_owned());
        self
    }

    /// Use the Rust type at `rust_path` for the Protobuf package or type at `proto_path`
    /// instead of generating it, e.g. `.extern_path(".common.v1", "::common::v1")`, for
    /// messages and for the RPCs' request and response types alike. Both paths fully
    /// qualified. `prost_build::Config::extern_path`.
    pub fn extern_path(mut self, proto_path: impl AsRef<str>, rust_path: impl AsRef<str>) -> Self {
        self.extern_path.push((
            proto_path.as_ref().to_owned(),
            rust_path.as_ref().to_owned(),
        ));
        self
    }

    /// Add `attribute` to the fields matched by `path`. `prost_build::Config::field_attribute`.
    pub fn field_attribute<P: AsRef<str>, A: AsRef<str>>(mut self, path: P, attribute: A) -> Self {
        self.field_attributes
            .push((path.as_ref().to_owned(), attribute.as_ref().to_owned()));
        self
    }

    /// Add `attribute` to the messages matched by `path`.
    /// `prost_build::Config::message_attribute`.
    pub fn message_attribute<P: AsRef<str>, A: AsRef<str>>(
        mut self,
        path: P,
        attribute: A,
    ) -> Self {
        self.message_attributes
            .push((path.as_ref().to_owned(), attribute.as_ref().to_owned()));
        self
    }

    /// Add `attribute` to the enums and oneofs matched by `path`.
    /// `prost_build::Config::enum_attribute`.
    pub fn enum_attribute<P: AsRef<str>, A: AsRef<str>>(mut self, path: P, attribute: A) -> Self {
        self.enum_attributes
            .push((path.as_ref().to_owned(), attribute.as_ref().to_owned()));
        self
    }

    /// Add `attribute` to the messages, enums and oneofs matched by `path`, e.g.
    /// `.type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")`.
    /// `prost_build::Config::type_attribute`.
    pub fn type_attribute<P: AsRef<str>, A: AsRef<str>>(mut self, path: P, attribute: A) -> Self {
        self.type_attributes
            .push((path.as_ref().to_owned(), attribute.as_ref().to_owned()));
        self
    }

    /// Box the field matched by `path`. `prost_build::Config::boxed`.
    pub fn boxed<P: AsRef<str>>(mut self, path: P) -> Self {
        self.boxed.push(path.as_ref().to_owned());
        self
    }

    /// Generate `BTreeMap` instead of `HashMap` for the map fields matched by `path` (`"."`
    /// for all); each call adds a path. `prost_build::Config::btree_map`.
    pub fn btree_map<P: AsRef<str>>(mut self, path: P) -> Self {
        self.btree_map
            .get_or_insert_with(Vec::new)
            .push(path.as_ref().to_owned());
        self
    }

    /// Generate `bytes::Bytes` instead of `Vec<u8>` for the `bytes` fields matched by `path`
    /// (`"."` for all); each call adds a path. `prost_build::Config::bytes`.
    pub fn bytes<P: AsRef<str>>(mut self, path: P) -> Self {
        self.bytes
            .get_or_insert_with(Vec::new)
            .push(path.as_ref().to_owned());
        self
    }

    /// Add `attribute` to the server modules (`<service>_server`) of the packages matched by
    /// `path`, e.g. `#[cfg(feature = "server")]`. Passed to tonic-prost-build, and put on the
    /// `Edged` impl of `<service>_intercept` too, which names the server.
    pub fn server_mod_attribute<P: AsRef<str>, A: AsRef<str>>(self, path: P, attribute: A) -> Self {
        self.tonic_attribute(TonicAttribute::ServerMod, path, attribute)
    }

    /// Add `attribute` to the server structs (`<Service>Server`) of the services matched by
    /// `path`. Passed to tonic-prost-build.
    pub fn server_attribute<P: AsRef<str>, A: AsRef<str>>(self, path: P, attribute: A) -> Self {
        self.tonic_attribute(TonicAttribute::Server, path, attribute)
    }

    /// Add `attribute` to the server traits of the services matched by `path`. Passed to
    /// tonic-prost-build.
    pub fn trait_attribute<P: AsRef<str>, A: AsRef<str>>(self, path: P, attribute: A) -> Self {
        self.tonic_attribute(TonicAttribute::Trait, path, attribute)
    }

    /// Add `attribute` to the client modules (`<service>_client`) of the packages matched by
    /// `path`. Passed to tonic-prost-build, and put on the typed `Client` of
    /// `<service>_intercept` (and its impls) too.
    pub fn client_mod_attribute<P: AsRef<str>, A: AsRef<str>>(self, path: P, attribute: A) -> Self {
        self.tonic_attribute(TonicAttribute::ClientMod, path, attribute)
    }

    /// Add `attribute` to the client structs (`<Service>Client`) of the services matched by
    /// `path`. Passed to tonic-prost-build.
    pub fn client_attribute<P: AsRef<str>, A: AsRef<str>>(self, path: P, attribute: A) -> Self {
        self.tonic_attribute(TonicAttribute::Client, path, attribute)
    }

    fn tonic_attribute(
        mut self,
        kind: TonicAttribute,
        path: impl AsRef<str>,
        attribute: impl AsRef<str>,
    ) -> Self {
        self.tonic_attributes.push((
            kind,
            path.as_ref().to_owned(),
            attribute.as_ref().to_owned(),
        ));
        self
    }

    /// The Rust path under which tonic's client and server, and the `<service>_intercept`
    /// module, find the messages (default `super`). Passed to tonic-prost-build.
    pub fn proto_path(mut self, proto_path: impl AsRef<str>) -> Self {
        self.proto_path = proto_path.as_ref().to_owned();
        self
    }

    /// Generate the well-known types (`google.protobuf.*`) instead of using `prost-types`.
    /// `prost_build::Config::compile_well_known_types`, and passed to tonic-prost-build.
    pub fn compile_well_known_types(mut self, enable: bool) -> Self {
        self.compile_well_known_types = enable;
        self
    }

    /// Let RPCs take and return the Rust types of the wrapper well-known types (`bool`,
    /// `i32`, ... for `google.protobuf.BoolValue`, ...), as tonic-prost-build's option of the
    /// same name. (tonic-prost-build applies it from `compile_protos` only; here from every
    /// `compile_*`.)
    pub fn with_extended_rust_types(mut self, enable: bool) -> Self {
        self.with_extended_rust_types = enable;
        self
    }

    /// Accepted and passed to tonic-prost-build, which in 0.14 always emits the package in
    /// the service and method names (`/pkg.Service/Method`) whatever this says; so does the
    /// `<service>_intercept` module, to stay in agreement with tonic's server.
    pub fn emit_package(mut self, enable: bool) -> Self {
        self.emit_package = enable;
        self
    }

    /// Where to write the encoded `FileDescriptorSet` of the compiled files (default:
    /// [`FILE_DESCRIPTOR_SET_NAME`] in the output directory), as prost-build's option of the
    /// same name. See [Server reflection](crate#server-reflection). With
    /// [`Builder::skip_protoc_run`], the set is read from there instead.
    pub fn file_descriptor_set_path(mut self, path: impl AsRef<Path>) -> Self {
        self.file_descriptor_set_path = Some(path.as_ref().to_owned());
        self
    }

    /// Compile nothing: read the encoded `FileDescriptorSet` at
    /// [`Builder::file_descriptor_set_path`] (made by another build step) and generate code
    /// for every file in it, as [`Builder::compile_fds`] does. The `protos` and `includes`
    /// given to `compile_protos` are then unused. `prost_build::Config::skip_protoc_run`.
    pub fn skip_protoc_run(mut self) -> Self {
        self.skip_protoc_run = true;
        self
    }

    /// Accepted for compatibility and ignored: the protos are compiled with protox, not
    /// `protoc`. An argument other than `--experimental_allow_proto3_optional` (which protox
    /// needs no flag for) is named in a `cargo:warning`.
    pub fn protoc_arg<A: AsRef<str>>(mut self, arg: A) -> Self {
        self.protoc_args.push(arg.as_ref().into());
        self
    }

    /// Also write a file, at `path` in the output directory, that `include!`s every generated
    /// file in its nested `pub mod`s: include that one file, e.g.
    /// `include!(concat!(env!("OUT_DIR"), "/_includes.rs"));`. The `<service>_intercept`
    /// modules come with their package. `prost_build::Config::include_file`.
    pub fn include_file(mut self, path: impl AsRef<Path>) -> Self {
        self.include_file = Some(path.as_ref().to_owned());
        self
    }

    /// Print `cargo:rerun-if-changed` for every proto file and include directory
    /// (default `true`), so that editing a `.proto` rebuilds the crate. (tonic-prost-build
    /// 0.14 accepts this option and prints nothing.)
    pub fn emit_rerun_if_changed(mut self, enable: bool) -> Self {
        self.emit_rerun_if_changed = enable;
        self
    }

    /// No doc comments for the services and methods named (`pkg.Service`,
    /// `pkg.Service.Method`), in tonic's code and in the `<service>_intercept` module. Passed
    /// to tonic-prost-build (which, like this, does not pass them to prost: for messages, set
    /// `disable_comments` on a `prost_build::Config` given to
    /// [`Builder::compile_with_config`]).
    pub fn disable_comments<I, S>(mut self, path: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.disable_comments
            .extend(path.into_iter().map(|s| s.as_ref().to_owned()));
        self
    }

    /// Server traits take `self: Arc<Self>` (default `false`). Passed to tonic-prost-build.
    /// `#[intercept]` is written for `&self` handlers.
    pub fn use_arc_self(mut self, enable: bool) -> Self {
        self.use_arc_self = enable;
        self
    }

    /// Give every method of the server traits a default body returning `UNIMPLEMENTED`
    /// (default `false`). Passed to tonic-prost-build.
    pub fn generate_default_stubs(mut self, enable: bool) -> Self {
        self.generate_default_stubs = enable;
        self
    }

    /// The codec of tonic's clients and servers (default `tonic_prost::ProstCodec`). Passed
    /// to tonic-prost-build. The typed `Client` of `<service>_intercept` encodes with prost,
    /// so with another codec it is not emitted (use tonic's client); the RPC types and the
    /// server side are unchanged.
    pub fn codec_path(mut self, path: impl AsRef<str>) -> Self {
        self.codec_path = path.as_ref().to_owned();
        self
    }

    /// No `Debug` derive for the messages matched (write your own).
    /// `prost_build::Config::skip_debug`.
    pub fn skip_debug<I, S>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.skip_debug
            .extend(paths.into_iter().map(|s| s.as_ref().to_owned()));
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

    /// Compiles `protos` (searched in `includes`) with protox, a pure-Rust protobuf
    /// compiler, so no `protoc` is needed, then generates code.
    ///
    /// A malformed `.proto` fails with its `file:line:column` and what is wrong.
    ///
    /// `import "tonic_intercept/v1/options.proto";` resolves without the file on disk, and
    /// the policy declared with it is merged, checked and put on the RPC descriptors (see
    /// [Policy in the proto](crate#policy-in-the-proto)).
    pub fn compile_protos<P: AsRef<Path>>(self, protos: &[P], includes: &[P]) -> Result<(), Error> {
        self.compile_with_config(Config::new(), protos, includes)
    }

    /// [`Builder::compile_protos`] on top of a `prost_build::Config` of yours: its settings
    /// (say `retain_enum_prefix`, `enable_type_names`, `prost_path`, `disable_comments` of
    /// messages) apply, then the builder's, as tonic-prost-build does. Its service generator
    /// is replaced, and what only concerns running `protoc` (`protoc_arg`,
    /// `protoc_executable`, `skip_protoc_run`, `file_descriptor_set_path`, `skip_source_info`)
    /// is not seen (prost keeps it private): set the last three on the builder.
    pub fn compile_with_config<P: AsRef<Path>>(
        self,
        config: Config,
        protos: &[P],
        includes: &[P],
    ) -> Result<(), Error> {
        if self.emit_rerun_if_changed {
            for path in protos.iter().map(AsRef::as_ref) {
                println!("cargo:rerun-if-changed={}", path.display());
            }
            for path in includes.iter().map(AsRef::as_ref) {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
        if self.skip_protoc_run {
            let fds = self.read_descriptor_set()?;
            check_no_options_import(&fds)?;
            names::check(&fds).map_err(Error::proto)?;
            return self.generate(fds, model::Policies::new(), None, config, Entry::Protos);
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

        let pool = compiler.descriptor_pool();
        let roots = compiler
            .files()
            .filter(|f| !f.is_import())
            .map(|f| f.name().to_owned());
        let (fds, policies) = checked(&pool, roots, &sources)?;
        // Every compiled file, imports included, with the custom options kept: what a
        // reflection client needs to resolve a file's dependencies.
        let encoded = compiler.encode_file_descriptor_set();
        self.generate(fds, policies, Some(&encoded), config, Entry::Protos)
    }

    /// Generates code from an already compiled descriptor set.
    ///
    /// A `prost_types::FileDescriptorSet` has lost the custom options of its files, so
    /// policy declared with `tonic_intercept/v1/options.proto` cannot be read from it: a
    /// set whose files import that file is refused rather than generated without its
    /// policy. Use [`Builder::compile_protos`] for those.
    pub fn compile_fds(self, fds: FileDescriptorSet) -> Result<(), Error> {
        self.compile_fds_with_config(fds, Config::new())
    }

    /// [`Builder::compile_fds`] on top of a `prost_build::Config` of yours, as
    /// [`Builder::compile_with_config`].
    pub fn compile_fds_with_config(
        self,
        fds: FileDescriptorSet,
        config: Config,
    ) -> Result<(), Error> {
        check_no_options_import(&fds)?;
        names::check(&fds).map_err(Error::proto)?;
        let encoded = prost::Message::encode_to_vec(&fds);
        self.generate(
            fds,
            model::Policies::new(),
            Some(&encoded),
            config,
            Entry::Fds,
        )
    }

    /// The service generator the `compile_*` methods give prost-build: tonic's client and
    /// server, then the `<service>_intercept` module, for a `prost_build::Config` you drive
    /// yourself (`config.service_generator(builder.service_generator())`). Policy declared in
    /// the `.proto` is not read on that path (prost-build's `Service` has lost the options):
    /// use [`Builder::compile_protos`] for it.
    pub fn service_generator(self) -> Box<dyn prost_build::ServiceGenerator> {
        self.intercept_generator(model::Policies::new(), protovalidate::Plan::default())
    }

    /// Writes the descriptor set (unless it was the input), then runs prost-build with
    /// [`Builder::prost_config`] and [`Builder::intercept_generator`].
    fn generate(
        self,
        fds: FileDescriptorSet,
        policies: model::Policies,
        encoded_fds: Option<&[u8]>,
        config: Config,
        entry: Entry,
    ) -> Result<(), Error> {
        let out_dir = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => std::env::var_os("OUT_DIR")
                .map(PathBuf::from)
                .ok_or_else(|| {
                    Error::Config(
                        "OUT_DIR is not set: call this from build.rs, or set `.out_dir(...)`"
                            .into(),
                    )
                })?,
        };
        // `ProtoValidate` impls for the messages with `buf.validate` rules (feature
        // `protovalidate`); none from a `prost_types` set, which has lost the rules.
        let protovalidate = match encoded_fds {
            Some(encoded) => protovalidate::Plan::new(encoded, &out_dir)?,
            None => protovalidate::Plan::default(),
        };
        if let Some(encoded) = encoded_fds {
            let fds_path = self
                .file_descriptor_set_path
                .clone()
                .unwrap_or_else(|| out_dir.join(FILE_DESCRIPTOR_SET_NAME));
            std::fs::write(&fds_path, encoded).map_err(Error::Io)?;
        }
        self.note_protoc_args();
        let mut config = self.config_for(config, entry, policies, protovalidate);
        config.out_dir(out_dir);
        let _types = NonPathTypes::set(self.with_extended_rust_types);
        config.compile_fds(fds).map_err(Error::Io)
    }

    /// prost-build's `Config` with every setting of the builder and our service generator
    /// holding `policies`: what [`Builder::compile_protos`] writes to files and [`plugin`]
    /// returns in memory.
    fn config_for(
        &self,
        config: Config,
        entry: Entry,
        policies: model::Policies,
        protovalidate: protovalidate::Plan,
    ) -> Config {
        let mut config = self.prost_config(config, entry);
        if self.build_client || self.build_server {
            config.service_generator(self.intercept_generator(policies, protovalidate));
        }
        config
    }

    /// The one place the builder's settings reach prost's `Config`, in tonic-prost-build's
    /// order (`Builder::compile_with_config` of 0.14), so that both emit the same bytes. The
    /// output directory is the caller's (`generate`), as in-memory generation has none.
    fn prost_config(&self, mut config: Config, entry: Entry) -> Config {
        if entry == Entry::Protos {
            config.type_attribute(".", "#[allow(clippy::all)]");
        }
        for (proto_path, rust_path) in &self.extern_path {
            config.extern_path(proto_path, rust_path);
        }
        for (path, attribute) in &self.field_attributes {
            config.field_attribute(path, attribute);
        }
        for (path, attribute) in &self.message_attributes {
            config.message_attribute(path, attribute);
        }
        for (path, attribute) in &self.enum_attributes {
            config.enum_attribute(path, attribute);
        }
        for (path, attribute) in &self.type_attributes {
            config.type_attribute(path, attribute);
        }
        for path in &self.boxed {
            config.boxed(path);
        }
        if let Some(paths) = &self.btree_map {
            config.btree_map(paths);
        }
        if let Some(paths) = &self.bytes {
            config.bytes(paths);
        }
        if self.compile_well_known_types {
            config.compile_well_known_types();
        }
        if let Some(path) = &self.include_file {
            config.include_file(path);
        }
        if !self.skip_debug.is_empty() {
            config.skip_debug(&self.skip_debug);
        }
        // `protoc_arg`, `file_descriptor_set_path` and `skip_protoc_run` concern compiling
        // the protos, which protox does here (`compile_with_config`, `generate`).
        config
    }

    /// tonic-prost-build's builder with the settings of its service generator.
    fn tonic_builder(&self) -> tonic_prost_build::Builder {
        let mut tonic = tonic_prost_build::configure()
            .build_client(self.build_client)
            .build_server(self.build_server)
            .build_transport(self.build_transport)
            .proto_path(&self.proto_path)
            .compile_well_known_types(self.compile_well_known_types)
            .emit_package(self.emit_package)
            .disable_comments(&self.disable_comments)
            .use_arc_self(self.use_arc_self)
            .generate_default_stubs(self.generate_default_stubs)
            .codec_path(&self.codec_path);
        for (kind, path, attribute) in &self.tonic_attributes {
            tonic = match kind {
                TonicAttribute::ServerMod => tonic.server_mod_attribute(path, attribute),
                TonicAttribute::Server => tonic.server_attribute(path, attribute),
                TonicAttribute::Trait => tonic.trait_attribute(path, attribute),
                TonicAttribute::ClientMod => tonic.client_mod_attribute(path, attribute),
                TonicAttribute::Client => tonic.client_attribute(path, attribute),
            };
        }
        tonic
    }

    /// tonic's service generator, then ours.
    fn intercept_generator(
        &self,
        policies: model::Policies,
        protovalidate: protovalidate::Plan,
    ) -> Box<dyn prost_build::ServiceGenerator> {
        Box::new(service_generator::InterceptGenerator {
            tonic: self.tonic_builder().service_generator(),
            policies,
            build_client: self.build_client && self.codec_path == DEFAULT_CODEC_PATH,
            build_server: self.build_server,
            intercept_types: self.intercept_types,
            protovalidate,
            proto_path: self.proto_path.clone(),
            disable_comments: self.disable_comments.clone(),
            server_mod_attributes: self.tonic_attributes_of(TonicAttribute::ServerMod),
            client_mod_attributes: self.tonic_attributes_of(TonicAttribute::ClientMod),
        })
    }

    /// The (pattern, attribute) pairs of one kind, in call order.
    fn tonic_attributes_of(&self, kind: TonicAttribute) -> Vec<(String, String)> {
        self.tonic_attributes
            .iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, path, attribute)| (path.clone(), attribute.clone()))
            .collect()
    }

    /// The set [`Builder::skip_protoc_run`] reads.
    fn read_descriptor_set(&self) -> Result<FileDescriptorSet, Error> {
        let path = self.file_descriptor_set_path.as_ref().ok_or_else(|| {
            Error::Config(
                "`skip_protoc_run` reads the set at `file_descriptor_set_path`: set it".into(),
            )
        })?;
        let bytes = std::fs::read(path).map_err(|e| {
            Error::Config(format!(
                "cannot read the descriptor set `{}`: {e}",
                path.display()
            ))
        })?;
        prost::Message::decode(&bytes[..]).map_err(|e| {
            Error::Proto(format!(
                "`{}` is not an encoded FileDescriptorSet: {e}",
                path.display()
            ))
        })
    }

    /// protox needs no `protoc` flag; say which ones are ignored, once per build.
    fn note_protoc_args(&self) {
        for arg in &self.protoc_args {
            if !PROTOC_ARGS_PROTOX_HONOURS.iter().any(|a| arg == *a) {
                println!(
                    "cargo:warning=tonic-intercept-build compiles with protox, not protoc: `protoc_arg({})` is ignored",
                    arg.to_string_lossy()
                );
            }
        }
    }
}

/// A set whose files import the options file has lost them: refused (see
/// [`Builder::compile_fds`]).
fn check_no_options_import(fds: &FileDescriptorSet) -> Result<(), Error> {
    match fds
        .file
        .iter()
        .find(|f| f.dependency.iter().any(|d| d == OPTIONS_PROTO_NAME))
    {
        Some(file) => Err(Error::Config(format!(
            "`{}` imports `{OPTIONS_PROTO_NAME}`, but its options are lost in a `prost_types::FileDescriptorSet`: \
             compile the `.proto` files with `compile_protos` to apply the policy they declare",
            file.name()
        ))),
        None => Ok(()),
    }
}

/// Sets tonic-prost-build's `NON_PATH_TYPE_ALLOWLIST` for one generation, and back to its
/// default when dropped, as its own `compile_with_config` does.
struct NonPathTypes;

impl NonPathTypes {
    fn set(extended: bool) -> Self {
        let types = if extended {
            EXTENDED_NON_PATH_TYPES
        } else {
            DEFAULT_NON_PATH_TYPES
        };
        tonic_prost_build::NON_PATH_TYPE_ALLOWLIST.set(types);
        NonPathTypes
    }
}

impl Drop for NonPathTypes {
    fn drop(&mut self) {
        tonic_prost_build::NON_PATH_TYPE_ALLOWLIST.set(DEFAULT_NON_PATH_TYPES);
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

/// What [`Builder::compile_protos`] and the [`plugin`] do between compiling and generating:
/// the files to generate code for (`roots`, the files asked for, and what they import),
/// checked for colliding names, and the policy their services declare, read and checked.
fn checked(
    pool: &protox::prost_reflect::DescriptorPool,
    roots: impl IntoIterator<Item = String>,
    sources: &source::Sources,
) -> Result<(prost_types::FileDescriptorSet, model::Policies), Error> {
    // Code for the files asked for and what they import, as before; not for the
    // options file (it only annotates descriptors) nor what only it imports.
    let generated = generated_files(pool, roots);
    // In the pool's (topological) order, as protox's own `file_descriptor_set`.
    let file = pool
        .files()
        .filter(|f| generated.contains(f.name()))
        .map(|f| f.file_descriptor_proto().clone())
        .collect();
    let fds = prost_types::FileDescriptorSet { file };
    names::check(&fds).map_err(Error::proto)?;
    let services: Vec<_> = pool
        .services()
        .filter(|s| generated.contains(s.parent_file().name()))
        .collect();
    let policies = policy::read(pool, &services, sources).map_err(Error::proto)?;
    Ok((fds, policies))
}

/// The files asked for and, transitively, what they import, except through the options
/// file (unless it was asked for itself).
fn generated_files(
    pool: &protox::prost_reflect::DescriptorPool,
    roots: impl IntoIterator<Item = String>,
) -> HashSet<String> {
    let mut todo: Vec<String> = roots.into_iter().collect();
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

/// So that `?` works in a `build.rs` whose `main` returns `std::io::Result<()>`, as
/// tonic-prost-build's `compile_protos` does.
impl From<Error> for std::io::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::Io(e) => e,
            other => std::io::Error::other(other),
        }
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
