//! The protoc / buf plugin half: the same code as [`Builder::compile_protos`], from a
//! `google.protobuf.compiler.CodeGeneratorRequest` instead of `.proto` files on disk.
//!
//! The `protoc-gen-tonic-intercept` binary is a thin wrapper around [`respond`]: it reads
//! the request on stdin and writes the response on stdout. This module is its library,
//! for tools that drive code generation themselves.
//!
//! # Output
//!
//! One file per protobuf package that has a file in the request's `file_to_generate`,
//! named as prost-build and `protoc-gen-prost` name them: `<package>.rs`
//! (`catalog.v1.rs`), `_.rs` for files without a package. Each holds what the `build.rs`
//! path writes for that package, byte for byte: prost's messages, tonic's client and
//! server, and the `<service>_intercept` module, with the `(tonic_intercept.v1.rpc)` and
//! `(tonic_intercept.v1.service)` options of the request merged, checked and put on the
//! RPC descriptors. Code is generated from every file of the package that the request
//! holds (as `protoc-gen-prost` does), so one request per package, or `strategy: all`
//! under buf, gives each package one complete file.
//!
//! `tonic_intercept/v1/options.proto` itself is never generated (it only annotates
//! descriptors), even when buf lists it among the files to generate because it lives in
//! the module.
//!
//! # Parameters
//!
//! A comma-separated list, as `protoc --tonic-intercept_opt=build_client=false,file_descriptor_set`
//! or the `opt:` list of `buf.gen.yaml` pass it. A flag written alone means `true`.
//!
//! | parameter | default | effect |
//! |---|---|---|
//! | `build_client=<bool>` | `true` | emit tonic's clients ([`Builder::build_client`]) |
//! | `build_server=<bool>` | `true` | emit tonic's servers ([`Builder::build_server`]) |
//! | `intercept_types=<bool>` | `true` | emit the `<service>_intercept` modules ([`Builder::intercept_types`]) |
//! | `file_descriptor_set[=<bool>]` | `false` | also emit [`FILE_DESCRIPTOR_SET_NAME`], the encoded `FileDescriptorSet` of every file in the request, options kept, for server reflection |
//! | `include_file=<name>` | none | also emit `<name>`, which nests each package's file in `pub mod`s (`catalog.v1.rs` is included in `pub mod catalog { pub mod v1 { .. } }`), as prost-build's `include_file` does |
//!
//!
//! The [`Builder`](crate::Builder)'s code options are parameters of the same name, as
//! protoc-gen-prost spells them: flags (`build_transport`, `compile_well_known_types`,
//! `generate_default_stubs`, `use_arc_self`, `with_extended_rust_types`), a proto path
//! (`boxed`, `btree_map`, `bytes`, `skip_debug`, `disable_comments`), a Rust path
//! (`proto_path`, `codec_path`), or a proto path and a value (`extern_path=.common.v1=::common::v1`,
//! `type_attribute`, `message_attribute`, `enum_attribute`, `field_attribute` and tonic's
//! `server_mod_attribute`, `server_attribute`, `trait_attribute`, `client_mod_attribute`,
//! `client_attribute`). A comma inside a value is written `\,`:
//! `type_attribute=.=#[derive(serde::Serialize\, serde::Deserialize)]`.
//!
//! An unknown parameter, a flag that is not `true` or `false`, or a missing value is an error.
//!
//! `include_file` and `file_descriptor_set` describe the whole request: under buf, use
//! `strategy: all`. buf's default, `strategy: directory`, sends one request per
//! directory, so each would write its own file of that name and buf keeps the first.
//!
//! # Including the code
//!
//! With `include_file=mod.rs` and `out: src/gen`, `mod gen;` in `src/lib.rs` brings in
//! every package: `gen::catalog::v1::catalog_service_intercept::GetItem`. Without it,
//! include each file where its package should live:
//!
//! ```text
//! pub mod catalog {
//!     pub mod v1 {
//!         include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/gen/catalog.v1.rs"));
//!     }
//! }
//! ```
//!
//! With `file_descriptor_set`, the set to hand to `tonic_intercept::server::reflection` is
//!
//! ```text
//! pub const FILE_DESCRIPTOR_SET: &[u8] =
//!     include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/gen/file_descriptor_set.bin"));
//! ```
//!
//! # buf
//!
//! ```yaml
//! # buf.gen.yaml
//! version: v2
//! plugins:
//!   - local: protoc-gen-tonic-intercept
//!     out: src/gen
//!     # One request for the whole module: one complete file per package, one include file.
//!     strategy: all
//!     opt:
//!       - include_file=mod.rs
//!       - file_descriptor_set
//! ```
//!
//! `buf generate` then needs `tonic_intercept/v1/options.proto` in the module (or in a
//! dependency) for the files that import it. The policy is read with that copy, so a copy
//! that declares a key this plugin does not know (a newer copy) is refused rather than its
//! key ignored; an older copy is fine. The binary prints the copy that matches it:
//! `protoc-gen-tonic-intercept --print-options-proto > proto/tonic_intercept/v1/options.proto`
//! (its text is also [`OPTIONS_PROTO`]). With `protoc`, put the same file under an
//! include directory (`-I`).
//!
//! # Errors
//!
//! A request that cannot be decoded, a bad parameter, colliding generated names or a
//! policy option that is wrong are reported in the response's `error` field, one
//! `file:line:column: message` line per mistake (as [`Builder::compile_protos`] words
//! them), and no files are written. protoc sends source info only for the files to
//! generate; for the others the line reads `file: message`. The request carries no source
//! text, so a wrong key inside `option (tonic_intercept.v1.rpc) = { .. }` is located where
//! the compiler's source info puts it: at the key under buf, whose compiler records each
//! key, as the `build.rs` path (which reads the text) does; at the `option` statement under
//! protoc, which records only the statement.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use prost::Message;
//! use prost_types::compiler::CodeGeneratorRequest;
//!
//! // A request as protoc would send it, built here with protox.
//! let dir = std::env::temp_dir().join(format!("plugin-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! std::fs::write(
//!     dir.join("echo.proto"),
//!     "syntax = \"proto3\";\npackage echo.v1;\nmessage Ping {}\n\
//!      service Echo { rpc Say(Ping) returns (Ping); }\n",
//! )?;
//! let fds = protox::compile(["echo.proto"], [&dir])?;
//! let request = CodeGeneratorRequest {
//!     file_to_generate: vec!["echo.proto".into()],
//!     parameter: Some("build_client=false".into()),
//!     proto_file: fds.file,
//!     ..Default::default()
//! };
//!
//! let files = tonic_intercept_build::plugin::generate(&request.encode_to_vec())?;
//! assert_eq!(files.len(), 1);
//! assert_eq!(files[0].name, "echo.v1.rs");
//! let code = String::from_utf8(files[0].content.clone())?;
//! assert!(code.contains("pub mod echo_server"));
//! assert!(code.contains("pub mod echo_intercept"));
//! assert!(!code.contains("pub mod echo_client"));
//! # Ok(())
//! # }
//! ```
//!
//! [`Builder::compile_protos`]: crate::Builder::compile_protos
//! [`Builder::build_client`]: crate::Builder::build_client
//! [`Builder::build_server`]: crate::Builder::build_server
//! [`Builder::intercept_types`]: crate::Builder::intercept_types
//! [`FILE_DESCRIPTOR_SET_NAME`]: crate::FILE_DESCRIPTOR_SET_NAME
//! [`OPTIONS_PROTO`]: crate::OPTIONS_PROTO

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use prost::Message;
use prost_build::Module;
use protox::prost_reflect::DescriptorPool;

use crate::{Config, Entry, Error, FILE_DESCRIPTOR_SET_NAME, OPTIONS_PROTO_NAME};

/// `CodeGeneratorResponse.Feature.FEATURE_PROTO3_OPTIONAL`: prost generates `optional`
/// fields of proto3, so protoc may send them.
const FEATURE_PROTO3_OPTIONAL: u64 = 1;

/// The parameters [`generate`] accepts, for messages.
const KNOWN: &str = "build_client, build_server, build_transport, intercept_types, \
    file_descriptor_set, include_file, compile_well_known_types, generate_default_stubs, \
    use_arc_self, with_extended_rust_types, boxed, btree_map, bytes, skip_debug, \
    disable_comments, proto_path, codec_path, extern_path, type_attribute, message_attribute, \
    enum_attribute, field_attribute, server_mod_attribute, server_attribute, trait_attribute, \
    client_mod_attribute, client_attribute";

/// One file of the response, its name relative to the plugin's output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// E.g. `catalog.v1.rs`, `mod.rs`, `file_descriptor_set.bin`.
    pub name: String,
    /// UTF-8 Rust code, except for the encoded `FileDescriptorSet`.
    pub content: Vec<u8>,
}

/// Handles one plugin invocation: `request` is an encoded `CodeGeneratorRequest`, the
/// result an encoded `CodeGeneratorResponse`, either with the files of [`generate`] or
/// with its error in the `error` field. It never fails, as protoc expects of a plugin
/// (a failing plugin is a crash to protoc, not an error in the `.proto`).
pub fn respond(request: &[u8]) -> Vec<u8> {
    let outcome = std::panic::catch_unwind(|| generate(request));
    let response = match outcome {
        Ok(Ok(files)) => Response {
            error: None,
            supported_features: Some(FEATURE_PROTO3_OPTIONAL),
            file: files
                .into_iter()
                .map(|f| ResponseFile {
                    name: Some(f.name),
                    insertion_point: None,
                    content: Some(f.content),
                })
                .collect(),
        },
        Ok(Err(error)) => Response::failed(message(&error)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            Response::failed(format!(
                "protoc-gen-tonic-intercept: internal error, please report it: {what}"
            ))
        }
    };
    response.encode_to_vec()
}

/// Generates the files for an encoded `CodeGeneratorRequest`: see the [module
/// docs](self) for what is generated, the parameters and the errors.
pub fn generate(request: &[u8]) -> Result<Vec<GeneratedFile>, Error> {
    let request = RawRequest::decode(request).map_err(|e| {
        Error::Proto(format!(
            "the input is not a CodeGeneratorRequest ({e}); this program is a protoc plugin: run it through `protoc --tonic-intercept_out=..` or `buf generate`"
        ))
    })?;
    let parameters = Parameters::parse(request.parameter.as_deref().unwrap_or_default())?;
    // The files as their raw bytes, re-framed as a `FileDescriptorSet`: decoding them into
    // `prost_types` would drop the custom options; prost-reflect keeps them.
    let set = RawSet {
        file: request.proto_file,
    }
    .encode_to_vec();
    let pool = DescriptorPool::decode(set.as_slice())
        .map_err(|e| Error::Proto(format!("the request's descriptors are invalid: {e}")))?;

    check_options_copy(&pool)?;

    let mut roots = Vec::new();
    for name in &request.file_to_generate {
        if pool.get_file_by_name(name).is_none() {
            return Err(Error::Proto(format!(
                "`{name}` is to be generated but the request has no descriptor for it"
            )));
        }
        if name != OPTIONS_PROTO_NAME {
            roots.push(name.clone());
        }
    }
    // Nothing to generate (buf's request for the directory of options.proto alone, under
    // its default `strategy: directory`): no include file nor descriptor set either.
    if roots.is_empty() {
        return Ok(Vec::new());
    }
    // The packages to write: those of the files asked for.
    let wanted: HashSet<Module> = roots
        .iter()
        .filter_map(|name| pool.get_file_by_name(name))
        .map(|file| Module::from_protobuf_package_name(file.package_name()))
        .collect();

    // No source text travels in a request: errors are located by source info only.
    let (fds, policies) = crate::checked(&pool, roots, &crate::source::Sources::default())?;
    let Parameters {
        builder,
        file_descriptor_set,
        include_file: include_file_name,
    } = parameters;
    let _types = crate::NonPathTypes::set(builder.with_extended_rust_types);
    let requests = fds
        .file
        .into_iter()
        .map(|file| (Module::from_protobuf_package_name(file.package()), file))
        .collect();
    let mut generated = builder
        .config_for(
            Config::new(),
            Entry::Protos,
            policies,
            crate::protovalidate::Plan::default(),
        )
        .generate(requests)
        .map_err(|e| Error::Proto(e.to_string()))?;

    // By file name, so that the response does not depend on hashing.
    let modules: BTreeMap<String, Module> = wanted
        .into_iter()
        .filter(|module| generated.contains_key(module))
        .map(|module| (module.to_file_name_or("_"), module))
        .collect();
    let mut files = Vec::new();
    if let Some(name) = &include_file_name {
        files.push(GeneratedFile {
            name: name.clone(),
            content: include_file(&modules).into_bytes(),
        });
    }
    for (name, module) in modules {
        let content = generated.remove(&module).unwrap_or_default();
        files.push(GeneratedFile {
            name,
            content: content.into_bytes(),
        });
    }
    if file_descriptor_set {
        files.push(GeneratedFile {
            name: FILE_DESCRIPTOR_SET_NAME.to_owned(),
            content: set,
        });
    }
    Ok(files)
}

/// The request's `tonic_intercept/v1/options.proto` is the user's copy (the `build.rs`
/// path always compiles its own): a key that this plugin does not know would be ignored,
/// policy silently lost, so a copy that declares one (a newer copy with an older plugin)
/// is refused. An older copy, a subset, is fine.
fn check_options_copy(pool: &DescriptorPool) -> Result<(), Error> {
    const POLICY: &str = "tonic_intercept.v1.RpcPolicy";
    let Some(theirs) = pool.get_message_by_name(POLICY) else {
        return Ok(());
    };
    let mut resolver = protox::file::ChainFileResolver::new();
    resolver.add(crate::OptionsFile);
    resolver.add(protox::file::GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler
        .open_file(OPTIONS_PROTO_NAME)
        .expect("the bundled options.proto compiles");
    let own = compiler.descriptor_pool();
    let ours = own
        .get_message_by_name(POLICY)
        .expect("the bundled options.proto declares RpcPolicy");
    let mut differences = Vec::new();
    for field in theirs.fields() {
        let same = ours.get_field_by_name(field.name()).is_some_and(|o| {
            o.number() == field.number()
                && o.kind() == field.kind()
                && o.cardinality() == field.cardinality()
        });
        if !same {
            differences.push(format!(
                "`RpcPolicy.{}` (field {})",
                field.name(),
                field.number()
            ));
        }
    }
    for name in ["tonic_intercept.v1.rpc", "tonic_intercept.v1.service"] {
        let number = |pool: &DescriptorPool| pool.get_extension_by_name(name).map(|e| e.number());
        if let Some(theirs) = number(pool).filter(|&n| Some(n) != number(&own)) {
            differences.push(format!("`({name})` (extension {theirs})"));
        }
    }
    if differences.is_empty() {
        return Ok(());
    }
    Err(Error::Proto(format!(
        "{OPTIONS_PROTO_NAME}: this copy declares {}, which protoc-gen-tonic-intercept {} does not know, so policy written with it would be ignored; \
         use the copy that `protoc-gen-tonic-intercept --print-options-proto` prints, or a newer plugin",
        differences.join(", "),
        env!("CARGO_PKG_VERSION"),
    )))
}

/// The text for the response's `error` field: the lines `file:line:column: message`, as
/// protoc prints them after `--tonic-intercept_out:`.
fn message(error: &Error) -> String {
    match error {
        Error::Proto(message) | Error::Config(message) => message.clone(),
        Error::Io(e) => e.to_string(),
    }
}

/// Every module's file included in its nested `pub mod`s (`a.b.rs` in `pub mod a { pub mod
/// b { .. } }`), as prost-build's `include_file` writes it with an explicit output directory.
fn include_file(modules: &BTreeMap<String, Module>) -> String {
    let mut sorted: Vec<(Vec<&str>, &str)> = modules
        .iter()
        .map(|(file, module)| (module.parts().collect(), file.as_str()))
        .collect();
    sorted.sort();
    let mut out = String::from("// This file is @generated by protoc-gen-tonic-intercept.\n");
    let mut stack: Vec<&str> = Vec::new();
    let indent = |depth: usize| "    ".repeat(depth);
    for (parts, file) in sorted {
        while !parts.starts_with(&stack) {
            stack.pop();
            let _ = writeln!(out, "{}}}", indent(stack.len()));
        }
        while stack.len() < parts.len() {
            let part = parts[stack.len()];
            let _ = writeln!(out, "{}pub mod {part} {{", indent(stack.len()));
            stack.push(part);
        }
        let _ = writeln!(out, "{}include!(\"{file}\");", indent(stack.len()));
    }
    while !stack.is_empty() {
        stack.pop();
        let _ = writeln!(out, "{}}}", indent(stack.len()));
    }
    out
}

/// The parsed `parameter` string: the [`Builder`](crate::Builder) the files are generated
/// with, and the plugin's own two outputs.
#[derive(Debug)]
struct Parameters {
    builder: crate::Builder,
    file_descriptor_set: bool,
    include_file: Option<String>,
}

impl Parameters {
    fn parse(text: &str) -> Result<Self, Error> {
        let mut builder = crate::configure().emit_rerun_if_changed(false);
        let mut file_descriptor_set = false;
        let mut include_file = None;
        let mut errors = Vec::new();
        for entry in split_entries(text) {
            let entry = entry.as_str();
            let (name, value) = match entry.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim())),
                None => (entry, None),
            };
            let flag = |errors: &mut Vec<String>| match value {
                None | Some("true") => Some(true),
                Some("false") => Some(false),
                Some(other) => {
                    errors.push(format!(
                        "parameter `{entry}`: `{name}` is `true` or `false`, not `{other}`"
                    ));
                    None
                }
            };
            let path = |errors: &mut Vec<String>| match value.filter(|v| !v.is_empty()) {
                Some(path) => Some(path.to_owned()),
                None => {
                    errors.push(format!(
                        "parameter `{entry}`: `{name}` needs a value, e.g. `{name}=.my.package`"
                    ));
                    None
                }
            };
            let pair = |errors: &mut Vec<String>| match value
                .and_then(|v| v.split_once('='))
                .filter(|(p, a)| !p.is_empty() && !a.is_empty())
            {
                Some((path, second)) => Some((path.to_owned(), second.to_owned())),
                None => {
                    errors.push(format!(
                            "parameter `{entry}`: `{name}` needs `<proto path>=<value>`, e.g. `{name}=.my.package.Message=..`"
                        ));
                    None
                }
            };
            builder = match name {
                "build_client" => apply(builder, flag(&mut errors), |b, on| b.build_client(on)),
                "build_server" => apply(builder, flag(&mut errors), |b, on| b.build_server(on)),
                "build_transport" => {
                    apply(builder, flag(&mut errors), |b, on| b.build_transport(on))
                }
                "intercept_types" => {
                    apply(builder, flag(&mut errors), |b, on| b.intercept_types(on))
                }
                "compile_well_known_types" => apply(builder, flag(&mut errors), |b, on| {
                    b.compile_well_known_types(on)
                }),
                "generate_default_stubs" => apply(builder, flag(&mut errors), |b, on| {
                    b.generate_default_stubs(on)
                }),
                "use_arc_self" => apply(builder, flag(&mut errors), |b, on| b.use_arc_self(on)),
                "with_extended_rust_types" => apply(builder, flag(&mut errors), |b, on| {
                    b.with_extended_rust_types(on)
                }),
                "file_descriptor_set" => {
                    file_descriptor_set = flag(&mut errors).unwrap_or(file_descriptor_set);
                    builder
                }
                "include_file" => {
                    match value.filter(|v| !v.is_empty()) {
                        Some(file) if is_relative_path(file) => include_file = Some(file.to_owned()),
                        _ => errors.push(format!(
                            "parameter `{entry}`: `include_file` needs a relative file name, e.g. `include_file=mod.rs`"
                        )),
                    }
                    builder
                }
                "boxed" => apply(builder, path(&mut errors), |b, p| b.boxed(p)),
                "btree_map" => apply(builder, path(&mut errors), |b, p| b.btree_map(p)),
                "bytes" => apply(builder, path(&mut errors), |b, p| b.bytes(p)),
                "skip_debug" => apply(builder, path(&mut errors), |b, p| b.skip_debug([p])),
                "disable_comments" => {
                    apply(builder, path(&mut errors), |b, p| b.disable_comments([p]))
                }
                "proto_path" => apply(builder, path(&mut errors), |b, p| b.proto_path(p)),
                "codec_path" => apply(builder, path(&mut errors), |b, p| b.codec_path(p)),
                "extern_path" => apply(builder, pair(&mut errors), |b, (p, r)| b.extern_path(p, r)),
                "type_attribute" => apply(builder, pair(&mut errors), |b, (p, a)| {
                    b.type_attribute(p, a)
                }),
                "message_attribute" => apply(builder, pair(&mut errors), |b, (p, a)| {
                    b.message_attribute(p, a)
                }),
                "enum_attribute" => apply(builder, pair(&mut errors), |b, (p, a)| {
                    b.enum_attribute(p, a)
                }),
                "field_attribute" => apply(builder, pair(&mut errors), |b, (p, a)| {
                    b.field_attribute(p, a)
                }),
                "server_mod_attribute" => apply(builder, pair(&mut errors), |b, (p, a)| {
                    b.server_mod_attribute(p, a)
                }),
                "server_attribute" => apply(builder, pair(&mut errors), |b, (p, a)| {
                    b.server_attribute(p, a)
                }),
                "trait_attribute" => apply(builder, pair(&mut errors), |b, (p, a)| {
                    b.trait_attribute(p, a)
                }),
                "client_mod_attribute" => apply(builder, pair(&mut errors), |b, (p, a)| {
                    b.client_mod_attribute(p, a)
                }),
                "client_attribute" => apply(builder, pair(&mut errors), |b, (p, a)| {
                    b.client_attribute(p, a)
                }),
                _ => {
                    errors.push(format!(
                        "unknown parameter `{entry}`; protoc-gen-tonic-intercept knows {KNOWN}"
                    ));
                    builder
                }
            };
        }
        if errors.is_empty() {
            Ok(Parameters {
                builder,
                file_descriptor_set,
                include_file,
            })
        } else {
            Err(Error::Config(errors.join("\n")))
        }
    }
}

/// `builder` with one setting, if its value parsed.
fn apply<T>(
    builder: crate::Builder,
    value: Option<T>,
    set: impl FnOnce(crate::Builder, T) -> crate::Builder,
) -> crate::Builder {
    match value {
        Some(value) => set(builder, value),
        None => builder,
    }
}

/// The parameter string's entries: split at commas, except a comma escaped as `\,` (an
/// attribute such as `#[derive(A\, B)]`), as protoc-gen-prost reads it.
fn split_entries(text: &str) -> Vec<String> {
    let mut entries = vec![String::new()];
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                chars.next();
                entries.last_mut().expect("never empty").push(',');
            }
            ',' => entries.push(String::new()),
            c => entries.last_mut().expect("never empty").push(c),
        }
    }
    entries
        .into_iter()
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect()
}

/// A name under the output directory: not absolute, no `..`.
fn is_relative_path(name: &str) -> bool {
    let path = std::path::Path::new(name);
    path.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// `CodeGeneratorRequest`, with the files kept as their encoded bytes.
#[derive(Clone, PartialEq, Message)]
struct RawRequest {
    #[prost(string, repeated, tag = "1")]
    file_to_generate: Vec<String>,
    #[prost(string, optional, tag = "2")]
    parameter: Option<String>,
    #[prost(bytes = "vec", repeated, tag = "15")]
    proto_file: Vec<Vec<u8>>,
}

/// `FileDescriptorSet`, its files as encoded bytes.
#[derive(Clone, PartialEq, Message)]
struct RawSet {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file: Vec<Vec<u8>>,
}

/// `CodeGeneratorResponse`, with `File.content` as bytes (the wire form of a proto2
/// `string` is the same), so that the encoded descriptor set can be a file of its own.
#[derive(Clone, PartialEq, Message)]
struct Response {
    #[prost(string, optional, tag = "1")]
    error: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    supported_features: Option<u64>,
    #[prost(message, repeated, tag = "15")]
    file: Vec<ResponseFile>,
}

impl Response {
    fn failed(error: String) -> Self {
        Response {
            error: Some(error),
            supported_features: Some(FEATURE_PROTO3_OPTIONAL),
            file: Vec::new(),
        }
    }
}

/// `CodeGeneratorResponse.File`.
#[derive(Clone, PartialEq, Message)]
struct ResponseFile {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    insertion_point: Option<String>,
    #[prost(bytes = "vec", optional, tag = "15")]
    content: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse_flags_values_and_refuse_unknown_ones() {
        let p = Parameters::parse(
            " build_client=false, file_descriptor_set,intercept_types=true,include_file=mod.rs,\
             bytes=.,extern_path=.common.v1=::common::v1,\
             type_attribute=.=#[derive(serde::Serialize\\, serde::Deserialize)]",
        )
        .unwrap();
        assert!(p.file_descriptor_set);
        assert_eq!(p.include_file.as_deref(), Some("mod.rs"));
        let expected = crate::configure()
            .emit_rerun_if_changed(false)
            .build_client(false)
            .intercept_types(true)
            .bytes(".")
            .extern_path(".common.v1", "::common::v1")
            .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]");
        assert_eq!(format!("{:?}", p.builder), format!("{expected:?}"));
        let Err(Error::Config(message)) = Parameters::parse(
            "bogus=.,build_server=no,include_file=../x.rs,bytes,type_attribute=.Foo",
        ) else {
            panic!("accepted");
        };
        assert_eq!(
            message.lines().collect::<Vec<_>>(),
            [
                format!("unknown parameter `bogus=.`; protoc-gen-tonic-intercept knows {KNOWN}")
                    .as_str(),
                "parameter `build_server=no`: `build_server` is `true` or `false`, not `no`",
                "parameter `include_file=../x.rs`: `include_file` needs a relative file name, e.g. `include_file=mod.rs`",
                "parameter `bytes`: `bytes` needs a value, e.g. `bytes=.my.package`",
                "parameter `type_attribute=.Foo`: `type_attribute` needs `<proto path>=<value>`, e.g. `type_attribute=.my.package.Message=..`",
            ]
        );
    }

    /// `KNOWN`, the list the error names, and the parser's arms are two lists: every name
    /// listed must parse (with a value of the right shape), so they cannot drift apart.
    #[test]
    fn every_known_parameter_parses() {
        for name in KNOWN.split(',').map(str::trim) {
            let accepted = [
                name.to_owned(),
                format!("{name}=.a"),
                format!("{name}=.a=b"),
            ]
            .iter()
            .any(|entry| Parameters::parse(entry).is_ok());
            assert!(accepted, "`{name}` is listed in KNOWN but does not parse");
        }
        assert!(KNOWN.split(',').count() >= 27);
    }

    #[test]
    fn include_file_nests_packages() {
        let modules: BTreeMap<String, Module> = ["a.v1", "a.v2", "b", ""]
            .into_iter()
            .map(|p| {
                let m = Module::from_protobuf_package_name(p);
                (m.to_file_name_or("_"), m)
            })
            .collect();
        assert_eq!(
            include_file(&modules),
            "// This file is @generated by protoc-gen-tonic-intercept.\n\
             include!(\"_.rs\");\n\
             pub mod a {\n    pub mod v1 {\n        include!(\"a.v1.rs\");\n    }\n\
             \x20   pub mod v2 {\n        include!(\"a.v2.rs\");\n    }\n}\n\
             pub mod b {\n    include!(\"b.rs\");\n}\n"
        );
    }
}
