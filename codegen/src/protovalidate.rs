//! Validation from the `.proto` (feature `protovalidate`): serves
//! `buf/validate/validate.proto` to protox from memory, finds the messages that carry
//! `buf.validate` rules, and implements the runtime's `ProtoValidate` for them, so that
//! `#[intercept(validate(Rpc))]` checks them with prost-protovalidate where no
//! hand-written `Validate` impl exists.
//!
//! The file served is the one `prost-protovalidate-types` (the types crate of
//! prost-protovalidate, which the runtime validates with) is built from, taken from its
//! descriptor pool: the generator and the validator read the same schema.
//!
//! Without the feature every hook here is a no-op.

use std::path::Path;

use protox::file::ChainFileResolver;

/// The name to import the protovalidate options by.
#[cfg_attr(not(feature = "protovalidate"), allow(dead_code))]
pub(crate) const VALIDATE_PROTO_NAME: &str = "buf/validate/validate.proto";

/// The file, next to the generated `.rs` files, holding the encoded `FileDescriptorSet`
/// (custom options kept) that the emitted `ProtoValidate` impls read their descriptors
/// from; `include_bytes!`d relative to the generated file.
#[cfg_attr(not(feature = "protovalidate"), allow(dead_code))]
pub(crate) const DESCRIPTORS_FILE: &str = "tonic_intercept_protovalidate.bin";

/// Adds the in-memory `buf/validate/validate.proto` to the resolver, ahead of the include
/// directories (the copy the validator was built from wins).
pub(crate) fn add_resolver(resolver: &mut ChainFileResolver) {
    #[cfg(feature = "protovalidate")]
    resolver.add(imp::ValidateFile);
    let _ = resolver;
}

/// Whether `name` is served from memory here: like the options file, it only annotates
/// descriptors, so no code is generated for it nor for what only it imports.
pub(crate) fn is_served(name: &str) -> bool {
    cfg!(feature = "protovalidate") && name == VALIDATE_PROTO_NAME
}

/// The `ProtoValidate` impls to emit, by protobuf package.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    #[cfg(feature = "protovalidate")]
    by_package: std::collections::BTreeMap<String, Vec<imp::Validated>>,
}

impl Plan {
    /// Reads the rules from `encoded_fds` (a `FileDescriptorSet` with its custom options)
    /// and, when some message carries rules, writes the set to [`DESCRIPTORS_FILE`] in
    /// `out_dir`.
    pub(crate) fn new(encoded_fds: &[u8], out_dir: &Path) -> Result<Self, crate::Error> {
        #[cfg(feature = "protovalidate")]
        {
            imp::plan(encoded_fds, out_dir)
        }
        #[cfg(not(feature = "protovalidate"))]
        {
            let _ = (encoded_fds, out_dir);
            Ok(Self::default())
        }
    }

    /// Appends the impls for the messages of `package` to its generated file.
    pub(crate) fn emit(&self, package: &str, buf: &mut String) {
        #[cfg(feature = "protovalidate")]
        if let Some(messages) = self.by_package.get(package) {
            buf.push('\n');
            buf.push_str(&crate::format(imp::impls(messages)));
        }
        let _ = (package, buf);
    }
}

#[cfg(feature = "protovalidate")]
mod imp {
    use std::collections::{BTreeMap, HashMap};
    use std::path::Path;

    use heck::{ToSnakeCase, ToUpperCamelCase};
    use proc_macro2::TokenStream;
    use protox::file::{File, FileResolver};
    use protox::prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor};
    use quote::quote;

    use super::{DESCRIPTORS_FILE, Plan, VALIDATE_PROTO_NAME};

    /// Serves `buf/validate/validate.proto` from prost-protovalidate-types' pool.
    #[derive(Debug)]
    pub(super) struct ValidateFile;

    impl FileResolver for ValidateFile {
        fn open_file(&self, name: &str) -> Result<File, protox::Error> {
            if name != VALIDATE_PROTO_NAME {
                return Err(protox::Error::file_not_found(name));
            }
            let file = prost_protovalidate_types::DESCRIPTOR_POOL
                .get_file_by_name(VALIDATE_PROTO_NAME)
                .ok_or_else(|| protox::Error::file_not_found(name))?;
            Ok(File::from_file_descriptor_proto(
                file.file_descriptor_proto().clone(),
            ))
        }
    }

    /// A message with rules: its full protobuf name and its Rust path in its package's
    /// module.
    #[derive(Debug)]
    pub(super) struct Validated {
        full_name: String,
        path: String,
    }

    pub(super) fn plan(encoded_fds: &[u8], out_dir: &Path) -> Result<Plan, crate::Error> {
        let pool = DescriptorPool::decode(encoded_fds)
            .map_err(|e| crate::Error::Config(format!("reading the descriptors: {e}")))?;
        let mut memo = HashMap::new();
        let mut by_package: BTreeMap<String, Vec<Validated>> = BTreeMap::new();
        for message in pool.all_messages() {
            if message.is_map_entry()
                || message.parent_file().name() == VALIDATE_PROTO_NAME
                || !has_rules(&message, &mut memo)
            {
                continue;
            }
            by_package
                .entry(message.package_name().to_owned())
                .or_default()
                .push(Validated {
                    full_name: message.full_name().to_owned(),
                    path: rust_path(&message),
                });
        }
        if !by_package.is_empty() {
            std::fs::write(out_dir.join(DESCRIPTORS_FILE), encoded_fds)
                .map_err(crate::Error::Io)?;
        }
        Ok(Plan { by_package })
    }

    /// Whether `options` sets a `buf.validate` extension.
    fn annotated(options: &DynamicMessage) -> bool {
        options
            .extensions()
            .any(|(ext, _)| ext.full_name().starts_with("buf.validate."))
    }

    /// Whether validating `message` checks anything: rules on it, its oneofs, its fields,
    /// or (transitively) a message one of its fields holds. A cycle counts as no rules
    /// until a member is found to have some.
    fn has_rules(message: &MessageDescriptor, memo: &mut HashMap<String, bool>) -> bool {
        if let Some(&known) = memo.get(message.full_name()) {
            return known;
        }
        memo.insert(message.full_name().to_owned(), false);
        let found = annotated(&message.options())
            || message.oneofs().any(|o| annotated(&o.options()))
            || message.fields().any(|field| {
                annotated(&field.options())
                    || match field.kind() {
                        Kind::Message(inner) => has_rules(&inner, memo),
                        _ => false,
                    }
            });
        memo.insert(message.full_name().to_owned(), found);
        found
    }

    /// prost-build's path of `message` inside its package's module: `Outer`, or
    /// `outer::Inner` for a nested message.
    fn rust_path(message: &MessageDescriptor) -> String {
        let mut parts = vec![sanitize(message.name().to_upper_camel_case())];
        let mut parent = message.parent_message();
        while let Some(outer) = parent {
            parts.push(sanitize(outer.name().to_snake_case()));
            parent = outer.parent_message();
        }
        parts.reverse();
        parts.join("::")
    }

    /// prost-build's identifier rules (`ident.rs`): raw identifiers for keywords, a `_`
    /// suffix for those that cannot be raw, a `_` prefix before a digit.
    fn sanitize(ident: String) -> String {
        match ident.as_str() {
            "as" | "break" | "const" | "continue" | "else" | "enum" | "false" | "fn" | "for"
            | "if" | "impl" | "in" | "let" | "loop" | "match" | "mod" | "move" | "mut" | "pub"
            | "ref" | "return" | "static" | "struct" | "trait" | "true" | "type" | "unsafe"
            | "use" | "where" | "while" | "dyn" | "abstract" | "become" | "box" | "do"
            | "final" | "macro" | "override" | "priv" | "typeof" | "unsized" | "virtual"
            | "yield" | "async" | "await" | "try" | "gen" => format!("r#{ident}"),
            "_" | "super" | "self" | "Self" | "extern" | "crate" => format!("{ident}_"),
            s if s.starts_with(|c: char| c.is_numeric()) => format!("_{ident}"),
            _ => ident,
        }
    }

    pub(super) fn impls(messages: &[Validated]) -> TokenStream {
        let impls = messages.iter().map(|m| {
            let ty: syn::Path = syn::parse_str(&m.path).expect("a message's Rust path parses");
            let name = &m.full_name;
            let doc = format!(" `{name}` carries `buf.validate` rules: `validate(..)` checks them.");
            quote! {
                #[doc = #doc]
                impl ::tonic_intercept::__private::ProtoValidate for #ty {
                    fn descriptor() -> &'static ::tonic_intercept::__private::MessageDescriptor {
                        static DESCRIPTOR: ::std::sync::OnceLock<::tonic_intercept::__private::MessageDescriptor> =
                            ::std::sync::OnceLock::new();
                        DESCRIPTOR.get_or_init(|| {
                            ::tonic_intercept::__private::proto_descriptor(TONIC_INTERCEPT_PROTOVALIDATE, #name)
                        })
                    }
                }
            }
        });
        quote! {
            /// The descriptors, `buf.validate` rules included, of the messages below.
            #[doc(hidden)]
            static TONIC_INTERCEPT_PROTOVALIDATE: &[u8] = include_bytes!(#DESCRIPTORS_FILE);
            #(#impls)*
        }
    }
}
