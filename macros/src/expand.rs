//! From a checked plan to the rewritten impl block.
//!
//! Each RPC with policies keeps its signature; its body becomes the steps of its policies
//! in declared order, then the user's body, unchanged and with its spans, inside an
//! `async move` block whose result goes through the runtime's `Guard`. Everything the
//! output names in the runtime goes through `::tonic_intercept::__private`.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, ReturnType, Type};

use crate::attr::{Args, LimitValue};
use crate::check::{self, Limits, RpcPlan, Step};
use crate::service::Service;

/// `#[intercept(args)] item`: the whole macro, callable from unit tests.
pub fn intercept(args: TokenStream, item: TokenStream) -> TokenStream {
    let Ok(item_impl) = syn::parse2::<ItemImpl>(item.clone()) else {
        let error = syn::Error::new_spanned(
            &item,
            "#[intercept] goes on the impl of a tonic service trait: `impl pb::user_service_server::UserService for MyService`",
        );
        return with_error(item, error);
    };
    let expanded = syn::parse2::<Args>(args).and_then(|args| {
        let service = Service::read(&item_impl)?;
        let plan = check::check(&args, &service)?;
        Ok(expand(&plan.rpcs, &service, item_impl.clone()))
    });
    match expanded {
        Ok(tokens) => {
            if std::env::var_os("TONIC_INTERCEPT_DEBUG").is_some() {
                eprintln!("{}", pretty(&tokens));
            }
            tokens
        }
        Err(error) => with_error(item, error),
    }
}

/// On error the user's item goes out unchanged beside the errors, so there is no
/// cascade of follow-on errors and IDEs keep working.
fn with_error(item: TokenStream, error: syn::Error) -> TokenStream {
    let errors = error.to_compile_error();
    quote!(#item #errors)
}

/// The expansion as readable Rust, for `TONIC_INTERCEPT_DEBUG` and snapshot tests.
pub fn pretty(tokens: &TokenStream) -> String {
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(_) => tokens.to_string(),
    }
}

enum Shape {
    Untouched,
    /// Only call-start steps (auth): nothing per message, streams pass through as they are.
    AuthOnly,
    Full,
}

fn shape(plan: &RpcPlan) -> Shape {
    if !plan.hooks.is_empty() || !plan.limits.is_empty() {
        Shape::Full
    } else if !plan.steps.is_empty() {
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
    let adapters = plans
        .iter()
        .map(|plan| hooks_adapter(&names, service, plan));
    let adapters: TokenStream = adapters.collect();
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
                rewrite_handler(f, plan, service, &names, stream);
            }
            ImplItem::Type(t) => {
                let Some(plan) = plans
                    .iter()
                    .find(|p| p.rpc.server_streaming && t.ident == format!("{}Stream", p.rpc.name))
                else {
                    continue;
                };
                if let Shape::Full = shape(plan) {
                    let rpc = rpc_path(service, plan);
                    let hooks = hooks_type(&names, plan);
                    let user = &t.ty;
                    t.ty = syn::parse_quote!(::tonic_intercept::Outbound<#rpc, #user, #hooks>);
                }
            }
            _ => {}
        }
    }
    quote!(#item #adapters)
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

/// The hooks of one RPC as one concrete type implementing `Hooks<Rpc>`, calling each
/// hook in declared order.
///
/// A concrete type, not a tuple, so that a hook lacking `Hook<Rpc>` fails only inside
/// this impl, at the hook's own tokens, with one message (rustc merges the identical
/// errors); the types that carry the adapter (`Guard`, `Outbound`) stay well-formed and
/// report nothing.
fn hooks_adapter(names: &Names, service: &Service, plan: &RpcPlan) -> TokenStream {
    if plan.hooks.is_empty() {
        return TokenStream::new();
    }
    let name = names.hooks(plan);
    let rpc = rpc_path(service, plan);
    let types = plan.hooks.iter().map(|h| &h.ty);
    let call = |method: &str, args: TokenStream, index: usize| {
        let ty = &plan.hooks[index].ty;
        let method = format_ident!("{method}");
        let i = syn::Index::from(index);
        quote_spanned!(ty.span()=> <#ty as ::tonic_intercept::Hook<#rpc>>::#method(&self.#i, #args))
    };
    let n = plan.hooks.len();
    let requests = (0..n).map(|i| call("on_request", quote!(call, message), i));
    let responses = (0..n).map(|i| call("on_response", quote!(call, message), i));
    let finishes = (0..n)
        .rev()
        .map(|i| call("on_finish", quote!(call, outcome), i));
    let doc = format!(" The hooks of `{}`, in declared order.", plan.rpc.name);
    quote! {
        #[doc = #doc]
        #[doc(hidden)]
        #[derive(Clone)]
        pub struct #name(#(#types,)*);

        #[automatically_derived]
        impl ::tonic_intercept::Hooks<#rpc> for #name {
            fn on_request(
                &self,
                call: &::tonic_intercept::Call,
                message: &<#rpc as ::tonic_intercept::Rpc>::Request,
            ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
                #(#requests?;)*
                ::core::result::Result::Ok(())
            }

            fn on_response(
                &self,
                call: &::tonic_intercept::Call,
                message: &<#rpc as ::tonic_intercept::Rpc>::Response,
            ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
                #(#responses?;)*
                ::core::result::Result::Ok(())
            }

            fn on_finish(&self, call: &::tonic_intercept::Call, outcome: &::tonic_intercept::Outcome) {
                #(#finishes;)*
            }
        }
    }
}

fn rewrite_handler(
    f: &mut ImplItemFn,
    plan: &RpcPlan,
    service: &Service,
    names: &Names,
    stream: Option<&Type>,
) {
    let (full, auth_only) = match shape(plan) {
        Shape::Untouched => return,
        Shape::AuthOnly => (false, true),
        Shape::Full => (true, false),
    };
    // The guard's method that runs the handler and what follows it.
    let method = format_ident!(
        "{}",
        match (plan.rpc.client_streaming, plan.rpc.server_streaming) {
            (false, false) => "unary",
            (false, true) => "server_streaming",
            (true, false) => "client_streaming",
            (true, true) => "bidi",
        }
    );

    let guard = Ident::new("__ti_guard", Span::mixed_site());
    let request = Ident::new("__ti_request", Span::mixed_site());
    let status = Ident::new("__ti_status", Span::mixed_site());
    let ret = Ident::new("__ti_ret", Span::mixed_site());

    // The handler's own request pattern is bound inside, after the policies.
    let Some(FnArg::Typed(arg)) = f.sig.inputs.iter_mut().nth(1) else {
        return;
    };
    let user_pat = std::mem::replace(&mut *arg.pat, syn::parse_quote!(#request));

    let rpc = rpc_path(service, plan);
    let hooks = hooks_type(names, plan);
    let hook_values = plan.hooks.iter().map(|h| {
        let value = &h.value;
        quote_spanned!(value.span()=> ::core::clone::Clone::clone(&#value))
    });
    let hooks_value = if plan.hooks.is_empty() {
        quote!(())
    } else {
        quote!(#hooks(#(#hook_values,)*))
    };
    let limits = limits_expr(&plan.limits);
    let limits_first = plan.limits_first;

    let call = Ident::new("__ti_call", Span::mixed_site());
    // Where the steps find the call, and how they end it: an auth-only RPC has no guard.
    let (call_ref, reject) = if auth_only {
        (quote!(&#call), quote!(#status))
    } else {
        (quote!(#guard.call()), quote!(#guard.reject(#status)))
    };
    let steps = plan.steps.iter().map(|step| match step {
        Step::Auth(verifier) => {
            // The trait method is called directly on the user's expression: a verifier
            // lacking `Authenticate` is then one error, at that expression.
            let identity = Ident::new("__ti_identity", Span::mixed_site());
            let check = quote_spanned! {verifier.span()=>
                ::tonic_intercept::Authenticate::authenticate(&#verifier, #call_ref, #request.metadata())
            };
            quote! {
                match #check.await {
                    ::core::result::Result::Ok(#identity) => {
                        ::tonic_intercept::__private::store_identity(&mut #request, #identity);
                    }
                    ::core::result::Result::Err(#status) => {
                        return ::core::result::Result::Err(#reject);
                    }
                }
            }
        }
        Step::Hook(i) => {
            let index = syn::Index::from(*i);
            let ty = &plan.hooks[*i].ty;
            quote_spanned! {ty.span()=>
                if let ::core::result::Result::Err(#status) =
                    <#ty as ::tonic_intercept::Hook<#rpc>>::on_call(&#guard.hooks().#index, #call_ref, #request.metadata()).await
                {
                    return ::core::result::Result::Err(#reject);
                }
            }
        }
    });
    let needs_mut = plan.steps.iter().any(|s| matches!(s, Step::Auth(_)));
    let rebind = if needs_mut {
        quote!(let mut #request = #request;)
    } else {
        quote!()
    };

    let admit = if !full {
        quote!()
    } else if plan.rpc.client_streaming {
        if !plan.hooks.is_empty() || plan.limits.checks_requests() {
            quote!(let #request = #guard.inbound(#request);)
        } else {
            quote!()
        }
    } else {
        quote! {
            if let ::core::result::Result::Err(#status) = #guard.admit_request(#request.get_ref()) {
                return ::core::result::Result::Err(#guard.reject(#status));
            }
        }
    };
    let guard_mut = if admit.is_empty() {
        quote!()
    } else {
        quote!(mut)
    };

    // Inside the body, the user's stream type is the one they wrote, not the wrapper.
    let mut output = match &f.sig.output {
        ReturnType::Type(_, ty) => (**ty).clone(),
        ReturnType::Default => syn::parse_quote!(()),
    };
    let mut body = f.block.clone();
    if let (Some(stream), true) = (stream, full) {
        let name = format_ident!("{}Stream", plan.rpc.name);
        let mut unwrap = SelfStream {
            name: name.to_string(),
            user: stream.clone(),
        };
        unwrap.visit_type_mut(&mut output);
        unwrap.visit_block_mut(&mut body);
        // The handler may spell its return type with its own stream type, which no
        // longer is `Self::<Rpc>Stream`: the signature takes the trait's own form.
        f.sig.output = syn::parse_quote! {
            -> ::core::result::Result<
                ::tonic_intercept::__private::Response<Self::#name>,
                ::tonic_intercept::__private::Status,
            >
        };
    }

    if auth_only {
        // Nothing runs after the handler, so its body runs inline: no guard, no extra
        // future, and an early `return` in it is just that.
        f.block = syn::parse_quote! {{
            let #call = ::tonic_intercept::Call::start(
                &<#rpc as ::tonic_intercept::Rpc>::DESCRIPTOR,
                &#request,
                ::core::option::Option::None,
            );
            #rebind
            #(#steps)*
            let #user_pat = #request;
            #body
        }};
        return;
    }

    f.block = syn::parse_quote! {{
        let #guard_mut #guard = ::tonic_intercept::__private::Guard::<#rpc, #hooks>::new(
            &#request,
            #limits,
            #limits_first,
            #hooks_value,
        );
        #rebind
        #(#steps)*
        #admit
        #guard.#method(async move {
            let #user_pat = #request;
            let #ret: #output = #body;
            #ret
        })
        .await
    }};
}

/// `Self::ListUsersStream` -> the user's own stream type.
struct SelfStream {
    name: String,
    user: Type,
}

impl VisitMut for SelfStream {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::Path(p) = ty
            && p.qself.is_none()
            && p.path.segments.len() == 2
            && p.path.segments[0].ident == "Self"
            && p.path.segments[1].ident == self.name
        {
            *ty = self.user.clone();
            return;
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }
}

fn rpc_path(service: &Service, plan: &RpcPlan) -> TokenStream {
    let module = &service.rpc_module;
    let name = Ident::new(&plan.rpc.name, plan.rpc.ident.span());
    quote!(#module::#name)
}

fn hooks_type(names: &Names, plan: &RpcPlan) -> TokenStream {
    if plan.hooks.is_empty() {
        quote!(())
    } else {
        let name = names.hooks(plan);
        quote!(#name)
    }
}

fn limits_expr(limits: &Limits) -> TokenStream {
    let mut out = quote!(::tonic_intercept::Limits::new());
    let set = |out: &mut TokenStream,
               setter: &str,
               key: &str,
               value: &Option<LimitValue>,
               ty: TokenStream| {
        if let Some(value) = value {
            let setter = format_ident!("{setter}");
            let value = limit_value(key, value, ty);
            out.extend(quote!(.#setter(#value)));
        }
    };
    set(
        &mut out,
        "max_messages_in",
        "max_messages_in",
        &limits.max_messages_in,
        quote!(u64),
    );
    set(
        &mut out,
        "max_messages_out",
        "max_messages_out",
        &limits.max_messages_out,
        quote!(u64),
    );
    set(
        &mut out,
        "max_message_bytes",
        "max_message_bytes",
        &limits.max_message_bytes,
        quote!(usize),
    );
    let burst = match &limits.burst {
        Some(value) => limit_value("burst", value, quote!(u32)),
        None => quote!(1),
    };
    let mode = if limits.reject_when_too_fast {
        quote!(Reject)
    } else {
        quote!(Delay)
    };
    for (key, value) in [
        ("messages_per_second_in", &limits.messages_per_second_in),
        ("messages_per_second_out", &limits.messages_per_second_out),
    ] {
        if let Some(value) = value {
            let setter = format_ident!("{key}");
            let value = limit_value(key, value, quote!(u32));
            out.extend(quote!(.#setter(#value, #burst, ::tonic_intercept::OnRateExceeded::#mode)));
        }
    }
    if let Some(value) = &limits.timeout_ms {
        let value = limit_value("timeout_ms", value, quote!(u64));
        out.extend(quote!(.timeout(::tonic_intercept::__private::Duration::from_millis(#value))));
    }
    out
}

/// A literal as is; a constant through a `const` of the key's type that asserts it is at
/// least 1, spanned at the user's path so both a wrong type and a zero point there.
fn limit_value(key: &str, value: &LimitValue, ty: TokenStream) -> TokenStream {
    match value {
        LimitValue::Int(v) => {
            let v = Literal::u64_unsuffixed(v.base10_parse().unwrap_or(0));
            quote!(#v)
        }
        LimitValue::Path(path) => {
            let message =
                format!("`{key}` must be at least 1: a limit of zero would refuse everything");
            // Item names are not hygienic: this one must not be a name users write.
            quote_spanned! {path.span()=> {
                const __TONIC_INTERCEPT_LIMIT: #ty = #path;
                const _: () = ::core::assert!(__TONIC_INTERCEPT_LIMIT > 0, #message);
                __TONIC_INTERCEPT_LIMIT
            }}
        }
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    /// The expansion of a representative attribute, checked in so that a change to the
    /// macro shows up as a readable diff. `UPDATE_SNAPSHOTS=1` rewrites it.
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
        let expanded = super::pretty(&super::intercept(args, item));
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/snapshots/echo_service.expanded.rs"
        );
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(path, &expanded).unwrap();
        }
        let expected = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            expected == expanded,
            "the expansion differs from {path}; review it and rerun with UPDATE_SNAPSHOTS=1:\n{expanded}"
        );
    }
}
