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

use crate::attr::Args;
use crate::check::{self, Limits, RpcPlan, Step};
use crate::service::Service;

/// `#[intercept(args)] item`: the whole macro, callable from unit tests.
pub fn intercept(args: TokenStream, item: TokenStream) -> TokenStream {
    let Ok(item_impl) = syn::parse2::<ItemImpl>(item.clone()) else {
        let error = syn::Error::new(
            Span::call_site(),
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
                rewrite_handler(f, plan, service, stream);
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
                    let hooks = hooks_type(plan);
                    let user = &t.ty;
                    t.ty = syn::parse_quote!(::tonic_intercept::Outbound<#rpc, #user, #hooks>);
                }
            }
            _ => {}
        }
    }
    quote!(#item)
}

fn rewrite_handler(f: &mut ImplItemFn, plan: &RpcPlan, service: &Service, stream: Option<&Type>) {
    let method = match (shape(plan), plan.rpc.client_streaming, plan.rpc.server_streaming) {
        (Shape::Untouched, ..) => return,
        (Shape::AuthOnly, ..) => "passthrough",
        (Shape::Full, false, false) => "unary",
        (Shape::Full, false, true) => "server_streaming",
        (Shape::Full, true, false) => "client_streaming",
        (Shape::Full, true, true) => "bidi",
    };
    let method = format_ident!("{method}");
    let full = matches!(shape(plan), Shape::Full);

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
    let hooks = hooks_type(plan);
    let hook_values = plan.hooks.iter().map(|h| {
        let value = &h.value;
        quote_spanned!(value.span()=> ::core::clone::Clone::clone(&#value))
    });
    let hook_checks = plan.hooks.iter().map(|h| {
        let ty = &h.ty;
        quote_spanned!(ty.span()=> const _: () = ::tonic_intercept::__private::assert_hook::<#rpc, #ty>();)
    });
    let limits = limits_expr(&plan.limits);
    let limits_first = plan.limits_first;

    let steps = plan.steps.iter().map(|step| match step {
        Step::Auth(verifier) => quote_spanned! {verifier.span()=>
            if let ::core::result::Result::Err(#status) =
                ::tonic_intercept::__private::authenticate(&#verifier, #guard.call(), &mut #request).await
            {
                return ::core::result::Result::Err(#guard.reject(#status));
            }
        },
        Step::Hook(i) => {
            let index = syn::Index::from(*i);
            let ty = &plan.hooks[*i].ty;
            quote_spanned! {ty.span()=>
                if let ::core::result::Result::Err(#status) =
                    ::tonic_intercept::Hook::<#rpc>::on_call(&#guard.hooks().#index, #guard.call(), #request.metadata()).await
                {
                    return ::core::result::Result::Err(#guard.reject(#status));
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
    let guard_mut = if admit.is_empty() { quote!() } else { quote!(mut) };

    // Inside the body, the user's stream type is the one they wrote, not the wrapper.
    let mut output = match &f.sig.output {
        ReturnType::Type(_, ty) => (**ty).clone(),
        ReturnType::Default => syn::parse_quote!(()),
    };
    let mut body = f.block.clone();
    if let (Some(stream), Shape::Full) = (stream, shape(plan)) {
        let mut unwrap = SelfStream {
            name: format!("{}Stream", plan.rpc.name),
            user: stream.clone(),
        };
        unwrap.visit_type_mut(&mut output);
        unwrap.visit_block_mut(&mut body);
    }

    f.block = syn::parse_quote! {{
        #(#hook_checks)*
        let #guard_mut #guard = ::tonic_intercept::__private::Guard::<#rpc, #hooks>::new(
            &#request,
            #limits,
            #limits_first,
            (#(#hook_values,)*),
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

fn hooks_type(plan: &RpcPlan) -> TokenStream {
    let types = plan.hooks.iter().map(|h| &h.ty);
    quote!((#(#types,)*))
}

fn limits_expr(limits: &Limits) -> TokenStream {
    let int = |v: &syn::LitInt| Literal::u64_unsuffixed(v.base10_parse().unwrap_or(0));
    let mut out = quote!(::tonic_intercept::Limits::new());
    if let Some(v) = &limits.max_messages_in {
        let v = int(v);
        out.extend(quote!(.max_messages_in(#v)));
    }
    if let Some(v) = &limits.max_messages_out {
        let v = int(v);
        out.extend(quote!(.max_messages_out(#v)));
    }
    if let Some(v) = &limits.max_message_bytes {
        let v = int(v);
        out.extend(quote!(.max_message_bytes(#v)));
    }
    let burst = limits.burst.as_ref().map_or(Literal::u64_unsuffixed(1), int);
    let mode = match &limits.reject_when_too_fast {
        Some(w) if w == "reject" => quote!(Reject),
        _ => quote!(Delay),
    };
    if let Some(v) = &limits.messages_per_second_in {
        let v = int(v);
        out.extend(quote!(.messages_per_second_in(#v, #burst, ::tonic_intercept::OnRateExceeded::#mode)));
    }
    if let Some(v) = &limits.messages_per_second_out {
        let v = int(v);
        out.extend(quote!(.messages_per_second_out(#v, #burst, ::tonic_intercept::OnRateExceeded::#mode)));
    }
    if let Some(v) = &limits.timeout_ms {
        let v = int(v);
        out.extend(quote!(.timeout(::tonic_intercept::__private::Duration::from_millis(#v))));
    }
    out
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
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots/echo_service.expanded.rs");
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
