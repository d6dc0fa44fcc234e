//! From a checked plan to the rewritten impl block.
//!
//! Each RPC with policies keeps its signature; its body becomes the steps of its policies
//! in the fixed order (see `check::RpcPlan`), then the user's body, unchanged and with
//! its spans, inside an `async move` block whose result goes through the runtime's
//! `Guard`. What the `.proto` declares is checked against the attribute by `const`
//! assertions beside the impl. Everything the output names in the runtime goes through
//! `::tonic_intercept::__private`.
//!
//! By step: `handler` (the policies' steps around the user's body), `hooks` (the hooks
//! adapter type beside the impl), `proto` (the `.proto` agreement asserts), `values`
//! (limit values as the runtime's builder calls, from the limit-key table).

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Ident, ImplItem, ItemImpl, Type};

mod handler;
mod hooks;
mod proto;
mod values;

use crate::check::{self, Access, RpcPlan};
use crate::ctxt::Ctxt;
use crate::parse::Args;
use crate::resolve::{self, Service};

/// `#[intercept(args)] item`: the whole macro, callable from unit tests.
pub(crate) fn intercept(args: TokenStream, item: TokenStream) -> TokenStream {
    let Ok(item_impl) = syn::parse2::<ItemImpl>(item.clone()) else {
        let error = syn::Error::new_spanned(
            &item,
            "#[intercept] goes on the impl of a tonic service trait: `impl pb::user_service_server::UserService for MyService`",
        );
        return with_error(item, error);
    };
    match parse_resolve_check_expand(args, &item_impl) {
        Ok(tokens) => {
            if std::env::var_os("TONIC_INTERCEPT_DEBUG").is_some() {
                eprintln!("{}", pretty(&tokens));
            }
            tokens
        }
        Err(error) => with_error(item, error),
    }
}

/// The pipeline. Parsing and reading the service stop at their first error (nothing
/// after them could be trusted); name resolution and the rules report every mistake.
fn parse_resolve_check_expand(args: TokenStream, item: &ItemImpl) -> syn::Result<TokenStream> {
    let args = syn::parse2::<Args>(args)?;
    let service = Service::read(item)?;
    let cx = Ctxt::default();
    let ids = resolve::rpc_names(&cx, &args, &service);
    let plan = check::check(&cx, &args, &service, &ids);
    cx.check()?;
    Ok(expand(&plan.rpcs, &service, item.clone()))
}

/// On error the user's item goes out unchanged beside the errors, so there is no
/// cascade of follow-on errors and IDEs keep working.
fn with_error(item: TokenStream, error: syn::Error) -> TokenStream {
    let errors = error.to_compile_error();
    quote!(#item #errors)
}

/// The expansion as readable Rust, for `TONIC_INTERCEPT_DEBUG` and snapshot tests.
pub(crate) fn pretty(tokens: &TokenStream) -> String {
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(_) => tokens.to_string(),
    }
}

enum Shape {
    /// Nothing to do (public, or left to the `.proto`, with no other policy).
    Untouched,
    /// Only call-start steps (auth, roles): nothing per message, streams pass through.
    AuthOnly,
    Full,
}

fn shape(plan: &RpcPlan) -> Shape {
    if !plan.hooks.is_empty()
        || !plan.limits.is_empty()
        || plan.named_in_limit
        || plan.metrics.is_some()
        || plan.trace.is_some()
        || plan.recover
        || plan.validate.is_some()
        || plan.idempotency.is_some()
    {
        Shape::Full
    } else if matches!(plan.access, Access::Auth { .. }) {
        Shape::AuthOnly
    } else {
        Shape::Untouched
    }
}

fn expand(plans: &[RpcPlan], service: &Service, mut item: ItemImpl) -> TokenStream {
    // The stream types as the user wrote them, before they are wrapped below.
    let user_streams: Vec<(Ident, Type)> = item
        .items
        .iter()
        .filter_map(|i| match i {
            ImplItem::Type(t) => Some((t.ident.clone(), t.ty.clone())),
            _ => None,
        })
        .collect();
    let self_name = match &*item.self_ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
    .unwrap_or_else(|| "Service".into());
    let names = Names {
        self_name,
        service: service.name.to_string(),
    };
    let mut beside = TokenStream::new();
    let mut agreements = Vec::new();
    for plan in plans {
        beside.extend(hooks::hooks_adapter(&names, service, plan));
        let (checks, value_agreements) = proto::proto_checks(service, plan);
        beside.extend(checks);
        agreements.extend(value_agreements);
    }
    beside.extend(proto::agreements(&agreements));
    beside.extend(declared(plans, service, &item));
    for impl_item in &mut item.items {
        match impl_item {
            ImplItem::Fn(f) => {
                let Some(plan) = plans.iter().find(|p| p.rpc.ident == f.sig.ident) else {
                    continue;
                };
                let stream_name = format!("{}Stream", plan.rpc.name);
                let stream = user_streams
                    .iter()
                    .find(|(name, _)| *name == stream_name)
                    .map(|(_, ty)| ty);
                handler::rewrite_handler(f, plan, service, &names, stream);
            }
            ImplItem::Type(t) => {
                let Some(plan) = plans.iter().find(|p| {
                    p.rpc.kind.streams_responses() && t.ident == format!("{}Stream", p.rpc.name)
                }) else {
                    continue;
                };
                if let Shape::Full = shape(plan) {
                    let rpc = rpc_path(service, plan);
                    let hooks = hooks_type(&names, plan);
                    let user = &t.ty;
                    t.ty = syn::parse_quote!(::tonic_intercept::__private::Outbound<#rpc, #user, #hooks>);
                }
            }
            _ => {}
        }
    }
    quote!(#item #beside)
}

/// `impl Declared<Service> for Self`: each RPC's effective limits (the attribute's with
/// the `.proto`'s over them), evaluated by the compiler, in the impl's order, for the
/// guards (see `Steps::declared`) and `tonic_intercept::server::Edge`.
fn declared(plans: &[RpcPlan], service: &Service, item: &ItemImpl) -> TokenStream {
    let private = quote!(::tonic_intercept::__private);
    let Some(first) = service.rpcs.first() else {
        return TokenStream::new();
    };
    let service_type = declared_service(service, first);
    let entries = service.rpcs.iter().map(|rpc| {
        let ty = rpc_type(service, rpc);
        let limits = match plans.iter().find(|p| p.rpc.name == rpc.name) {
            Some(plan) => values::limits_expr(&plan.limits),
            None => quote!(#private::Limits::new()),
        };
        quote! {
            (
                &<#ty as #private::Rpc>::DESCRIPTOR,
                #limits.with_policy(&<#ty as #private::Rpc>::DESCRIPTOR.policy),
            )
        }
    });
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let self_ty = &item.self_ty;
    quote! {
        // Not listed among "other types" when an `Edge` is built around an impl without
        // `#[intercept]`: the message says what to do.
        #[diagnostic::do_not_recommend]
        impl #impl_generics #private::Declared<#service_type> for #self_ty #where_clause {
            const LIMITS: &'static [(&'static #private::RpcDescriptor, #private::Limits)] = &[
                #(#entries),*
            ];
        }
    }
}

/// The service type `Declared` is implemented for: the `Rpc::Service` of the impl's RPCs.
fn declared_service(service: &Service, first: &resolve::RpcMethod) -> TokenStream {
    let ty = rpc_type(service, first);
    quote!(<#ty as ::tonic_intercept::__private::Rpc>::Service)
}

/// `pb::user_service_intercept::GetUser`
fn rpc_type(service: &Service, rpc: &resolve::RpcMethod) -> TokenStream {
    let module = &service.rpc_module;
    let name = Ident::new(&rpc.name, rpc.ident.span());
    quote!(#module::#name)
}

/// Names of the items generated beside the impl.
struct Names {
    self_name: String,
    service: String,
}

impl Names {
    fn hooks(&self, plan: &RpcPlan) -> Ident {
        format_ident!("__{}{}{}Hooks", self.self_name, self.service, plan.rpc.name)
    }
}

fn rpc_path(service: &Service, plan: &RpcPlan) -> TokenStream {
    let module = &service.rpc_module;
    let name = Ident::new(&plan.rpc.name, plan.rpc.ident.span());
    quote!(#module::#name)
}

fn hooks_type(names: &Names, plan: &RpcPlan) -> TokenStream {
    if !hooks::has_adapter(plan) {
        quote!(())
    } else {
        let name = names.hooks(plan);
        quote!(#name)
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    /// The expansion of a representative attribute, checked in so that a change to the
    /// macro shows up as a readable diff. `UPDATE_SNAPSHOTS=1` rewrites it.
    /// Compares an expansion with its checked-in snapshot in `macros/snapshots/`;
    /// `UPDATE_SNAPSHOTS=1` rewrites the file instead.
    fn matches_snapshot(file: &str, expanded: &str) {
        let path = format!("{}/snapshots/{file}", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, expanded).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            expected == expanded,
            "the expansion differs from {path}; review it and rerun with UPDATE_SNAPSHOTS=1:\n{expanded}"
        );
    }

    #[test]
    fn expansion_snapshot() {
        let args = quote! {
            public(Unary),
            auth(self.tokens),
            limit(timeout_ms = 2_000),
            limit(ServerStream, max_messages_out = 5, messages_per_second_out = 100, burst = 10),
            limit(ClientStream, max_messages_in = 3, max_message_bytes = 64),
            hook(self.recorder: Recorder, Unary, ClientStream),
        };
        let item = quote! {
            #[tonic::async_trait]
            impl pb::echo_service_server::EchoService for Echo {
                async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
                    Ok(Response::new(EchoReply { text: request.into_inner().text, seq: 0 }))
                }

                type ServerStreamStream = ReceiverStream<Result<EchoReply, Status>>;

                async fn server_stream(&self, request: Request<StreamRequest>) -> Result<Response<Self::ServerStreamStream>, Status> {
                    let (_tx, rx) = tokio::sync::mpsc::channel(1);
                    Ok(Response::new(ReceiverStream::new(rx)))
                }

                async fn client_stream(&self, request: Request<Streaming<EchoRequest>>) -> Result<Response<Summary>, Status> {
                    let mut requests = request.into_inner();
                    let mut received = 0;
                    while let Some(_) = requests.message().await? {
                        received += 1;
                    }
                    Ok(Response::new(Summary { received, texts: vec![] }))
                }

                type BidiStream = ReceiverStream<Result<EchoReply, Status>>;

                async fn bidi(&self, request: Request<Streaming<EchoRequest>>) -> Result<Response<Self::BidiStream>, Status> {
                    Err(Status::unimplemented("bidi"))
                }
            }
        };
        matches_snapshot(
            "echo_service.expanded.rs",
            &super::pretty(&super::intercept(args, item)),
        );
    }

    /// The policies the first snapshot leaves out: an auth-only RPC (inline body, roles),
    /// idempotency scoped by identity, admission with a per-identity rate, a rate from a
    /// constant with its shaping keys, metrics, tracing, recovery and validation.
    #[test]
    fn expansion_snapshot_other_policies() {
        let args = quote! {
            auth(self.tokens),
            roles("admin", ServerStream),
            idempotency(self.cache, Unary),
            limit(Unary, max_in_flight = 4, calls_per_second_per_identity = 2, queue = 1),
            limit(ClientStream, messages_per_second_in = RATE, on_rate_exceeded = reject, burst = 3),
            metrics(self.metrics, ClientStream),
            trace(self.trace, Bidi),
            recover(Bidi),
            validate(Unary),
        };
        let item = quote! {
            #[tonic::async_trait]
            impl pb::echo_service_server::EchoService for Echo {
                async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
                    Ok(Response::new(EchoReply { text: request.into_inner().text, seq: 0 }))
                }

                type ServerStreamStream = ReceiverStream<Result<EchoReply, Status>>;

                async fn server_stream(&self, request: Request<StreamRequest>) -> Result<Response<Self::ServerStreamStream>, Status> {
                    let (_tx, rx) = tokio::sync::mpsc::channel(1);
                    Ok(Response::new(ReceiverStream::new(rx)))
                }

                async fn client_stream(&self, request: Request<Streaming<EchoRequest>>) -> Result<Response<Summary>, Status> {
                    Err(Status::unimplemented("client_stream"))
                }

                type BidiStream = ReceiverStream<Result<EchoReply, Status>>;

                async fn bidi(&self, request: Request<Streaming<EchoRequest>>) -> Result<Response<Self::BidiStream>, Status> {
                    Err(Status::unimplemented("bidi"))
                }
            }
        };
        matches_snapshot(
            "echo_service_other_policies.expanded.rs",
            &super::pretty(&super::intercept(args, item)),
        );
    }
}
