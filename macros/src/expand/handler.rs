//! The handler: each RPC's body becomes the steps of its policies in the fixed order,
//! then the user's body, unchanged and with its spans.

use proc_macro2::Span;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{FnArg, Ident, ImplItemFn, ReturnType, Type};

use super::hooks::{has_adapter, members};
use super::values::{admission_expr, limits_expr};
use super::{Names, Shape, hooks_type, rpc_path, shape};
use crate::check::{self, Access, RpcPlan};
use crate::resolve::Service;

pub fn rewrite_handler(
    f: &mut ImplItemFn,
    plan: &RpcPlan,
    service: &Service,
    names: &Names,
    stream: Option<&Type>,
) {
    let full = match shape(plan) {
        Shape::Untouched => return,
        Shape::AuthOnly => false,
        Shape::Full => true,
    };
    // The guard's method that runs the handler and what follows it.
    let method = format_ident!("{}", plan.rpc.kind.call_method());

    let guard = Ident::new("__ti_guard", Span::mixed_site());
    let request = Ident::new("__ti_request", Span::mixed_site());
    let status = Ident::new("__ti_status", Span::mixed_site());
    let error = Ident::new("__ti_error", Span::mixed_site());
    let ret = Ident::new("__ti_ret", Span::mixed_site());
    let key = Ident::new("__ti_key", Span::mixed_site());
    let call = Ident::new("__ti_call", Span::mixed_site());

    // The handler's own request pattern is bound inside, after the policies.
    let Some(FnArg::Typed(arg)) = f.sig.inputs.iter_mut().nth(1) else {
        return;
    };
    let user_pat = std::mem::replace(&mut *arg.pat, syn::parse_quote!(#request));

    let rpc = rpc_path(service, plan);
    let policy = quote!(<#rpc as ::tonic_intercept::Rpc>::DESCRIPTOR.policy);
    let hooks = hooks_type(names, plan);
    let members = members(service, plan);
    let member_values = members.iter().map(|m| &m.value);
    let hooks_value = if has_adapter(plan) {
        quote!(#hooks(#(#member_values,)*))
    } else {
        quote!(())
    };
    let mut limits = limits_expr(&plan.limits);
    limits.extend(quote!(.with_policy(&#policy)));
    if plan.metrics.is_some() {
        limits.extend(quote!(.measure_bytes()));
    }
    let recover = plan.recover;

    // Where the steps find the call, and how they end it: an auth-only RPC has no guard.
    let (call_ref, reject) = if full {
        (quote!(#guard.call()), quote!(#guard.reject(#error)))
    } else {
        (quote!(&#call), quote!(#error.1))
    };
    let on_call = |index: usize| {
        let ty = &members[index].ty;
        let i = syn::Index::from(index);
        quote_spanned! {ty.span()=>
            if let ::core::result::Result::Err(#status) =
                <#ty as ::tonic_intercept::Hook<#rpc>>::on_call(&#guard.hooks().#i, #call_ref, #request.metadata()).await
            {
                let #error = (::tonic_intercept::Policy::Hook, #status);
                return ::core::result::Result::Err(#reject);
            }
        }
    };
    let observers = usize::from(plan.trace.is_some()) + usize::from(plan.metrics.is_some());
    let observe = (0..observers).map(on_call);
    let user_hooks = (observers..members.len()).map(on_call);

    let per_identity = plan.limits.is_set(check::PER_IDENTITY);
    // Idempotency keys are scoped to the caller: one client cannot replay another's
    // response by guessing its key.
    let scoped = plan.idempotency.is_some() && matches!(plan.access, Access::Auth { .. });
    let keyed = per_identity || scoped;
    let auth = match &plan.access {
        Access::Auth {
            verifier, general, ..
        } => {
            // The trait method is called directly on the user's expression: a verifier
            // lacking `Authenticate` is then one error, at that expression.
            let identity = Ident::new("__ti_identity", Span::mixed_site());
            let check = quote_spanned! {verifier.span()=>
                ::tonic_intercept::Authenticate::authenticate(&#verifier, #call_ref, #request.metadata())
            };
            let roles = plan.roles.map(|r| {
                let list = if r.roles.is_empty() {
                    quote!(#policy.roles)
                } else {
                    let list = &r.roles;
                    quote!(&[#(#list),*])
                };
                // Bound to a name spanned at `roles`, so an identity type without `Roles`
                // is reported there.
                let holder = Ident::new("identity_with_roles", r.kw.span());
                let authorize = quote_spanned! {r.kw.span()=>
                    ::tonic_intercept::__private::authorize(#call_ref, #holder, #list)
                };
                quote! {
                    let #holder = &#identity;
                    if let ::core::result::Result::Err(#status) = #authorize {
                        let #error = (::tonic_intercept::Policy::Roles, #status);
                        return ::core::result::Result::Err(#reject);
                    }
                }
            });
            let keep_key = keyed.then(|| {
                quote!(#key = ::core::option::Option::Some(::tonic_intercept::__private::identity_key(&#identity));)
            });
            let step = quote! {
                match #check.await {
                    ::core::result::Result::Ok(#identity) => {
                        #roles
                        #keep_key
                        ::tonic_intercept::__private::store_identity(&mut #request, #identity);
                    }
                    ::core::result::Result::Err(#status) => {
                        let #error = (::tonic_intercept::Policy::Auth, #status);
                        return ::core::result::Result::Err(#reject);
                    }
                }
            };
            // Auth for every non-public RPC stands aside for one the `.proto` makes public.
            if *general {
                quote!(if !#policy.public { #step })
            } else {
                step
            }
        }
        Access::Public | Access::FromProto => quote!(),
    };
    let key_slot = keyed
        .then(|| quote!(let mut #key: ::core::option::Option<u64> = ::core::option::Option::None;));

    let admission = if plan.limits.admits() {
        let config = admission_expr(&plan.limits);
        let identity = if per_identity {
            quote!(#key)
        } else {
            quote!(::core::option::Option::None)
        };
        quote! {
            static __TONIC_INTERCEPT_ADMISSION: ::tonic_intercept::__private::Admission =
                ::tonic_intercept::__private::Admission::new(#config);
            if let ::core::result::Result::Err(#error) = #guard.admit(&__TONIC_INTERCEPT_ADMISSION, #identity).await {
                return ::core::result::Result::Err(#reject);
            }
        }
    } else {
        quote!()
    };

    let admit = if !full {
        quote!()
    } else if plan.rpc.kind.streams_requests() {
        // Always wrapped: the limits a `.proto` declares apply to every guarded RPC,
        // whatever the attribute says.
        quote!(let #request = #guard.inbound(#request);)
    } else {
        quote! {
            if let ::core::result::Result::Err(#error) = #guard.admit_request(#request.get_ref()) {
                return ::core::result::Result::Err(#reject);
            }
        }
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

    if !full {
        // Nothing runs after the handler, so its body runs inline: no guard, no extra
        // future, and an early `return` in it is just that.
        let rebind = if auth.is_empty() {
            quote!()
        } else {
            quote!(let mut #request = #request;)
        };
        f.block = syn::parse_quote! {{
            let #call = ::tonic_intercept::Call::start(
                &<#rpc as ::tonic_intercept::Rpc>::DESCRIPTOR,
                &#request,
                ::core::option::Option::None,
            );
            #rebind
            #auth
            let #user_pat = #request;
            #body
        }};
        return;
    }

    let handler = quote! {
        async move {
            let #user_pat = #request;
            let #ret: #output = #body;
            #ret
        }
    };
    let run_handler = match plan.idempotency {
        Some(cache) => {
            let ticket = Ident::new("__ti_ticket", Span::mixed_site());
            let result = Ident::new("__ti_result", Span::mixed_site());
            let scope = if scoped {
                quote!(#key.unwrap_or(0))
            } else {
                quote!(0)
            };
            let begin = quote_spanned! {cache.span()=>
                ::tonic_intercept::__private::CacheOf::<#rpc>::cache(&#cache)
                    .begin_scoped(#guard.call(), #request.metadata(), #request.get_ref(), #scope)
            };
            quote! {
                let #ticket = match #begin {
                    ::core::result::Result::Ok(::tonic_intercept::__private::Begin::Bypass) => ::core::option::Option::None,
                    ::core::result::Result::Ok(::tonic_intercept::__private::Begin::Run(#ticket)) => ::core::option::Option::Some(#ticket),
                    ::core::result::Result::Ok(::tonic_intercept::__private::Begin::Replay(#ret)) => {
                        return #guard.replay(#ret);
                    }
                    ::core::result::Result::Err(#error) => {
                        return ::core::result::Result::Err(#reject);
                    }
                };
                let #result = #guard.#method(#handler).await;
                if let ::core::option::Option::Some(#ticket) = #ticket {
                    #ticket.complete(&#result);
                }
                #result
            }
        }
        None => quote!(#guard.#method(#handler).await),
    };
    let trace = plan
        .trace
        .as_ref()
        .map(|_| quote!(#guard.trace(#request.metadata());));
    let outcome = Ident::new("__ti_outcome", Span::mixed_site());
    let panic = Ident::new("__ti_panic", Span::mixed_site());

    f.block = syn::parse_quote! {{
        let mut #guard = ::tonic_intercept::__private::Guard::<#rpc, #hooks>::new(
            &#request,
            // Evaluated by the compiler: a call copies the result.
            const { #limits },
            #hooks_value,
            #recover,
        );
        #trace
        let #outcome = ::tonic_intercept::__private::run(#guard.span(), #recover, async {
            let mut #request = #request;
            #(#observe)*
            #key_slot
            #auth
            #admission
            #(#user_hooks)*
            #admit
            #run_handler
        })
        .await;
        match #outcome {
            ::core::result::Result::Ok(#ret) => #ret,
            ::core::result::Result::Err(#panic) => ::core::result::Result::Err(#guard.panicked(#panic)),
        }
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
