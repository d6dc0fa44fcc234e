//! Pure functions from the model to tokens: no I/O, no formatting.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use tonic_intercept_spec::naming::upper_camel;
use tonic_intercept_spec::{Setter, rate_shape_defaults};

use crate::model::{Idempotency, Policy, RpcModel, ServiceModel};

/// The `<service>_intercept` module for one service.
pub(crate) fn service(model: &ServiceModel) -> TokenStream {
    let module = format_ident!("{}", model.module);
    let full_name = &model.full_name;
    let mut header = vec![
        format!(" Typed RPC types of `{full_name}` for `tonic-intercept`."),
        String::new(),
        " One type per RPC, each implementing `tonic_intercept::Rpc`; name them in".into(),
        " `#[intercept(...)]` and in `impl tonic_intercept::Hook<Rpc> for YourHook`.".into(),
    ];
    if !model.docs.is_empty() {
        header.push(String::new());
        header.extend(model.docs.iter().map(|l| format!(" {l}")));
    }
    let rpc_types = model
        .rpcs
        .iter()
        .map(|rpc| format_ident!("{}", rpc.type_name));
    let rpcs = model
        .rpcs
        .iter()
        .enumerate()
        .map(|(index, rpc)| self::rpc(model, index, rpc));
    let service_doc = format!(" `{full_name}`, as a type: the `Rpc::Service` of its RPCs.");
    let client = match model.client {
        true => client(model),
        false => TokenStream::new(),
    };
    let edged = edged(model);
    quote! {
        #(#[doc = #header])*
        pub mod #module {
            /// The fully qualified service name.
            pub const SERVICE_NAME: &str = #full_name;

            /// Every RPC of the service, in `.proto` order.
            pub const RPCS: &[&::tonic_intercept::__private::RpcDescriptor] = &[
                #(&<#rpc_types as ::tonic_intercept::__private::Rpc>::DESCRIPTOR,)*
            ];

            #[doc = #service_doc]
            #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
            pub struct Service;

            impl ::tonic_intercept::__private::Service for Service {
                const NAME: &'static str = #full_name;
                const RPCS: &'static [&'static ::tonic_intercept::__private::RpcDescriptor] = RPCS;
            }

            #client

            #edged

            #(#rpcs)*
        }
    }
}

/// `impl Edged for UserServiceServer<T>` where `T` has an `#[intercept]` impl: what lets
/// `tonic_intercept::server::Edge` wrap the server with each RPC's effective limits.
fn edged(model: &ServiceModel) -> TokenStream {
    let Some((module, server)) = &model.server else {
        return TokenStream::new();
    };
    let service_trait = format_ident!("{}", server.strip_suffix("Server").unwrap_or(server));
    let (module, server) = (format_ident!("{module}"), format_ident!("{server}"));
    let private = quote!(::tonic_intercept::__private);
    // tonic's server module's own attributes (a `#[cfg(feature = "server")]` say): the impl
    // names that module, so it exists exactly when the module does.
    let attrs = attributes(&model.server_mod_attributes);
    quote! {
        #(#attrs)*
        impl<T> #private::Edged for super::#module::#server<T>
        where
            T: super::#module::#service_trait + #private::Declared<Service>,
        {
            type Service = Service;
            const LIMITS: &'static [(&'static #private::RpcDescriptor, #private::Limits)] =
                <T as #private::Declared<Service>>::LIMITS;
            fn cap_decoding(self, limit: usize) -> Self {
                self.max_decoding_message_size(limit)
            }
        }
    }
}

/// `Client<T, H>`: the service's client with typed per-RPC policies, one method per RPC
/// named as tonic names it.
fn client(model: &ServiceModel) -> TokenStream {
    let full_name = &model.full_name;
    let doc = [
        format!(" A `{full_name}` client that applies a `tonic_intercept::ClientConfig`: per-RPC"),
        " retries, deadlines, limits and hooks, credentials, request ids and metrics.".to_owned(),
        String::new(),
        " Its methods are tonic's (same names, same arguments); a server- or bidi-streaming"
            .to_owned(),
        " method returns a `tonic_intercept::Responses` stream.".to_owned(),
    ];
    let methods = model
        .rpcs
        .iter()
        .map(|rpc| client_method(rpc, &model.proto_path));
    let tonic = quote!(::tonic_intercept::__private::tonic);
    // tonic's client module's own attributes, so the two clients come and go together.
    let attrs = attributes(&model.client_mod_attributes);
    quote! {
        #(#[doc = #doc])*
        #(#attrs)*
        pub struct Client<T, H = ()> {
            core: ::tonic_intercept::__private::ClientCore<Service, T, H>,
        }

        #(#attrs)*
        impl<T: ::core::clone::Clone, H> ::core::clone::Clone for Client<T, H> {
            fn clone(&self) -> Self {
                Self { core: self.core.clone() }
            }
        }

        #(#attrs)*
        impl<T: ::core::fmt::Debug, H> ::core::fmt::Debug for Client<T, H> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Debug::fmt(&self.core, f)
            }
        }

        #(#attrs)*
        impl<T: ::tonic_intercept::__private::Transport> Client<T> {
            /// A client without policies (`ClientConfig::new()`).
            pub fn new(inner: T) -> Self {
                Self::with_config(inner, ::tonic_intercept::__private::ClientConfig::new())
            }
        }

        #(#attrs)*
        impl<T: ::tonic_intercept::__private::Transport, H: Send + Sync + 'static> Client<T, H> {
            /// A client that applies `config` to its calls.
            pub fn with_config(inner: T, config: ::tonic_intercept::__private::ClientConfig<Service, H>) -> Self {
                Self { core: ::tonic_intercept::__private::ClientCore::new(inner, config) }
            }

            /// A client that applies `config`, sending to `origin` (see tonic's `Grpc::with_origin`).
            pub fn with_origin(
                inner: T,
                origin: #tonic::codegen::http::Uri,
                config: ::tonic_intercept::__private::ClientConfig<Service, H>,
            ) -> Self {
                Self { core: ::tonic_intercept::__private::ClientCore::with_origin(inner, origin, config) }
            }

            /// The config applied to every call.
            pub fn config(&self) -> &::tonic_intercept::__private::ClientConfig<Service, H> {
                self.core.config()
            }

            /// Compresses requests with `encoding`.
            #[must_use]
            pub fn send_compressed(self, encoding: #tonic::codec::CompressionEncoding) -> Self {
                Self { core: self.core.map_grpc(|grpc| grpc.send_compressed(encoding)) }
            }

            /// Accepts responses compressed with `encoding`.
            #[must_use]
            pub fn accept_compressed(self, encoding: #tonic::codec::CompressionEncoding) -> Self {
                Self { core: self.core.map_grpc(|grpc| grpc.accept_compressed(encoding)) }
            }

            /// Limits the size of a decoded response message (tonic's default: 4 MiB).
            #[must_use]
            pub fn max_decoding_message_size(self, limit: usize) -> Self {
                Self { core: self.core.map_grpc(|grpc| grpc.max_decoding_message_size(limit)) }
            }

            /// Limits the size of an encoded request message (tonic's default: `usize::MAX`).
            #[must_use]
            pub fn max_encoding_message_size(self, limit: usize) -> Self {
                Self { core: self.core.map_grpc(|grpc| grpc.max_encoding_message_size(limit)) }
            }

            #(#methods)*
        }
    }
}

/// Attributes written as source text (tonic-prost-build's `*_mod_attribute`), parsed as
/// tonic-build parses them.
fn attributes(texts: &[String]) -> Vec<syn::Attribute> {
    texts
        .iter()
        .flat_map(|text| {
            syn::parse_str::<syn::DeriveInput>(&format!("{text}\nstruct Fake;"))
                .unwrap_or_else(|e| panic!("`{text}` is not an attribute: {e}"))
                .attrs
        })
        .collect()
}

fn client_method(rpc: &RpcModel, proto_path: &str) -> TokenStream {
    let tonic = quote!(::tonic_intercept::__private::tonic);
    let name = format_ident!("{}", rpc.type_name);
    let method: syn::Ident =
        syn::parse_str(&rpc.method_name).unwrap_or_else(|_| format_ident!("r#{}", rpc.method_name));
    let request = rust_type(&rpc.request, proto_path);
    let response = rust_type(&rpc.response, proto_path);
    let doc = format!(
        " Calls `{}` under its `ClientPolicy<{}>`.",
        rpc.proto_name, rpc.type_name
    );
    let deprecated = rpc.deprecated.then(|| quote!(#[deprecated]));
    let streams_requests = rpc.kind.streams_requests();
    let (argument, into) = match streams_requests {
        false => (
            quote!(impl #tonic::IntoRequest<#request>),
            quote!(into_request),
        ),
        true => (
            quote!(impl #tonic::IntoStreamingRequest<Message = #request>),
            quote!(into_streaming_request),
        ),
    };
    let call = format_ident!("{}", rpc.kind.call_method());
    let turbofish = match streams_requests {
        false => quote!(::<#name>),
        true => quote!(::<#name, _>),
    };
    let output = match rpc.kind.streams_responses() {
        false => quote!(#response),
        true => quote!(::tonic_intercept::__private::Responses<#name, H>),
    };
    quote! {
        #[doc = #doc]
        #deprecated
        pub async fn #method(
            &mut self,
            request: #argument,
        ) -> ::core::result::Result<#tonic::Response<#output>, #tonic::Status>
        where
            H: ::tonic_intercept::__private::ClientHook<#name>,
        {
            self.core.#call #turbofish(request.#into()).await
        }
    }
}

fn rpc(service: &ServiceModel, index: usize, rpc: &RpcModel) -> TokenStream {
    let name = format_ident!("{}", rpc.type_name);
    let request = rust_type(&rpc.request, &service.proto_path);
    let response = rust_type(&rpc.response, &service.proto_path);
    let kind = format_ident!("{}", rpc.kind.runtime_variant());
    let idempotency = format_ident!(
        "{}",
        match rpc.idempotency {
            Idempotency::Unknown => "Unknown",
            Idempotency::NoSideEffects => "NoSideEffects",
            Idempotency::Idempotent => "Idempotent",
        }
    );
    let (service_name, method) = (&service.full_name, &rpc.proto_name);
    let path = format!("/{service_name}/{method}");
    let span_name = format!("{service_name}/{method}");
    let index = proc_macro2::Literal::usize_unsuffixed(index);
    let deprecated = rpc.deprecated;

    let stream = |side: bool, ty: &str| {
        if side {
            format!("stream {ty}")
        } else {
            ty.to_owned()
        }
    };
    let mut docs = vec![format!(
        " `rpc {}({}) returns ({})`",
        rpc.proto_name,
        stream(rpc.kind.streams_requests(), short(&rpc.request_proto)),
        stream(rpc.kind.streams_responses(), short(&rpc.response_proto)),
    )];
    if !rpc.docs.is_empty() {
        docs.push(String::new());
        docs.extend(rpc.docs.iter().map(|l| format!(" {l}")));
    }
    let policy = policy(&rpc.policy);
    if !rpc.policy.is_empty() {
        docs.push(String::new());
        docs.push(format!(
            " Policy from the `.proto`: `{}`.",
            policy_text(&rpc.policy)
        ));
    }

    let wrappers = stream_wrappers(rpc, &name);
    // `ClientPolicy::retry` is bounded on it: only the levels safe to retry.
    let idempotent = match rpc.idempotency {
        Idempotency::Unknown => TokenStream::new(),
        Idempotency::NoSideEffects | Idempotency::Idempotent => {
            quote!(impl ::tonic_intercept::__private::IdempotentRpc for #name {})
        }
    };
    quote! {
        #(#[doc = #docs])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct #name;

        impl ::tonic_intercept::__private::Rpc for #name {
            type Service = Service;
            type Request = #request;
            type Response = #response;
            const DESCRIPTOR: ::tonic_intercept::__private::RpcDescriptor = ::tonic_intercept::__private::RpcDescriptor::new(
                #service_name,
                #method,
                #path,
                ::tonic_intercept::__private::RpcKind::#kind,
                ::tonic_intercept::__private::IdempotencyLevel::#idempotency,
                #deprecated,
            )#policy;
            const INDEX: usize = #index;

            fn span(call: &::tonic_intercept::__private::Call) -> ::tonic_intercept::__private::tracing::Span {
                ::tonic_intercept::__private::rpc_span!(#span_name, call)
            }
        }

        impl ::tonic_intercept::__private::RpcOf<Service> for #name {}
        #idempotent

        #wrappers
    }
}

/// `.with_policy(..)` when the `.proto` declares one, nothing otherwise.
fn policy(policy: &Policy) -> TokenStream {
    if policy.is_empty() {
        return TokenStream::new();
    }
    let mut setters = TokenStream::new();
    if policy.public {
        setters.extend(quote!(.public()));
    }
    if !policy.roles.is_empty() {
        let roles = &policy.roles;
        setters.extend(quote!(.roles(&[#(#roles),*])));
    }
    if !policy.limits.is_empty() {
        let limits = limits(policy);
        setters.extend(quote!(.with_limits(#limits)));
    }
    quote!(.with_policy(::tonic_intercept::__private::RpcPolicy::new() #setters))
}

/// `Limits::new().<builder>(value)..`: each limit key the `.proto` sets, through the
/// runtime builder the spec table names. A rate is only a per-second value in the
/// `.proto`, so its burst and pacing are the table's defaults (the attribute's, where it
/// sets a rate, win in `Limits::with_policy`).
fn limits(policy: &Policy) -> TokenStream {
    let mut out = quote!(::tonic_intercept::__private::Limits::new());
    for &(key, value) in &policy.limits {
        let value = proc_macro2::Literal::u64_unsuffixed(value);
        // Every key on the descriptor has a `Limits` builder (the spec's tests check it).
        let builder = key.builder().expect("a `Limits` builder");
        let builder = format_ident!("{builder}");
        out.extend(match key.setter {
            Setter::LimitsMillis(_) => {
                quote!(.#builder(::tonic_intercept::__private::Duration::from_millis(#value)))
            }
            Setter::LimitsRate(_) => {
                let (burst, word) = rate_shape_defaults();
                let burst = proc_macro2::Literal::u64_unsuffixed(burst);
                let mode = format_ident!("{}", upper_camel(word));
                quote!(.#builder(#value, #burst, ::tonic_intercept::__private::OnRateExceeded::#mode))
            }
            _ => quote!(.#builder(#value)),
        });
    }
    out
}

/// The merged policy in the `.proto`'s own syntax, for the docs.
fn policy_text(policy: &Policy) -> String {
    let mut keys = Vec::new();
    if policy.public {
        keys.push("public: true".to_owned());
    }
    if !policy.roles.is_empty() {
        let roles: Vec<String> = policy.roles.iter().map(|r| format!("{r:?}")).collect();
        keys.push(format!("roles: [{}]", roles.join(", ")));
    }
    // Only keys with a `.proto` field are ever read into a `Policy`, in `RpcPolicy` order.
    keys.extend(
        policy
            .limits
            .iter()
            .filter_map(|(key, value)| key.proto_field.map(|field| format!("{field}: {value}"))),
    );
    format!("{{ {} }}", keys.join(", "))
}

/// Named stream types, so handlers and helpers can spell the wrapped streams.
fn stream_wrappers(rpc: &RpcModel, name: &syn::Ident) -> TokenStream {
    let mut out = TokenStream::new();
    if rpc.kind.streams_requests() {
        let alias = format_ident!("{}Requests", rpc.type_name);
        let doc = format!(
            " The request stream of `{}` after its policies.",
            rpc.proto_name
        );
        out.extend(quote! {
            #[doc = #doc]
            pub type #alias<H = ()> = ::tonic_intercept::__private::Inbound<#name, H>;
        });
    }
    if rpc.kind.streams_responses() {
        let alias = format_ident!("{}Responses", rpc.type_name);
        let doc = format!(
            " The response stream of `{}` after its policies, around the handler's stream `S`.",
            rpc.proto_name
        );
        out.extend(quote! {
            #[doc = #doc]
            pub type #alias<S, H = ()> = ::tonic_intercept::__private::Outbound<#name, S, H>;
        });
    }
    out
}

/// prost-build paths are relative to the package module; ours sits one level below it,
/// beside tonic's, and resolves them as tonic-prost-build does: under its `proto_path`
/// (`super` by default), except extern paths and the Rust types of well-known wrappers.
fn rust_type(path: &str, proto_path: &str) -> syn::Type {
    const NOT_PATHS: &[&str] = &["()", "bool", "i32", "i64", "u32", "u64", "f32", "f64"];
    let path = if path.starts_with("::") || path.starts_with("crate::") || NOT_PATHS.contains(&path)
    {
        path.to_owned()
    } else {
        format!("{proto_path}::{path}")
    };
    syn::parse_str(&path).unwrap_or_else(|e| panic!("prost-build gave the type `{path}`: {e}"))
}

fn short(proto_type: &str) -> &str {
    proto_type.rsplit('.').next().unwrap_or(proto_type)
}
