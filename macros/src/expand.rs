//! From a checked plan to the rewritten impl block.
//!
//! Each RPC with policies keeps its signature; its body becomes the steps of its policies
//! in the fixed order (see `check::RpcPlan`), then the user's body, unchanged and with
//! its spans, inside an `async move` block whose result goes through the runtime's
//! `Guard`. What the `.proto` declares is checked against the attribute by `const`
//! assertions beside the impl. Everything the output names in the runtime goes through
//! `::tonic_intercept::__private`.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, ReturnType, Type};

use crate::attr::{Args, LimitValue};
use crate::check::{self, Access, Limits, RpcPlan};
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
    for plan in plans {
        beside.extend(hooks_adapter(&names, service, plan));
        beside.extend(proto_checks(service, plan));
    }
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
    quote!(#item #beside)
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

/// The observers and hooks of one RPC, in the order they run: the tracing hook, the
/// metrics, then the user's hooks as declared.
struct Member {
    ty: TokenStream,
    value: TokenStream,
}

fn members(service: &Service, plan: &RpcPlan) -> Vec<Member> {
    let mut members = Vec::new();
    if let Some(trace) = plan.trace {
        let ty = match &trace.ty {
            Some(ty) => quote!(#ty),
            None => quote_spanned!(trace.kw.span()=> ::tonic_intercept::TraceCalls),
        };
        let value = match &trace.value {
            Some(value) => {
                quote_spanned!(value.span()=> ::core::clone::Clone::clone(&#value))
            }
            None => quote_spanned!(trace.kw.span()=> ::tonic_intercept::TraceCalls::new()),
        };
        members.push(Member { ty, value });
    }
    if let Some(metrics) = plan.metrics {
        let module = &service.rpc_module;
        members.push(Member {
            ty: quote!(::tonic_intercept::ServiceMetrics<#module::Service>),
            value: quote_spanned!(metrics.span()=>
                ::tonic_intercept::__private::MetricsOf::<#module::Service>::metrics(&#metrics)
            ),
        });
    }
    for hook in &plan.hooks {
        let (ty, value) = (&hook.ty, &hook.value);
        members.push(Member {
            ty: quote!(#ty),
            value: quote_spanned!(value.span()=> ::core::clone::Clone::clone(&#value)),
        });
    }
    members
}

fn has_adapter(plan: &RpcPlan) -> bool {
    !plan.hooks.is_empty()
        || plan.trace.is_some()
        || plan.metrics.is_some()
        || plan.validate.is_some()
}

/// The hooks of one RPC as one concrete type implementing `Hooks<Rpc>`, calling each
/// in order.
///
/// A concrete type, not a tuple, so that a hook lacking `Hook<Rpc>` fails only inside
/// this impl, at the hook's own tokens, with one message (rustc merges the identical
/// errors); the types that carry the adapter (`Guard`, `Outbound`) stay well-formed and
/// report nothing.
fn hooks_adapter(names: &Names, service: &Service, plan: &RpcPlan) -> TokenStream {
    if !has_adapter(plan) {
        return TokenStream::new();
    }
    let name = names.hooks(plan);
    let rpc = rpc_path(service, plan);
    let members = members(service, plan);
    let types = members.iter().map(|m| &m.ty);
    let call = |method: &str, args: TokenStream, index: usize| {
        let ty = &members[index].ty;
        let method = format_ident!("{method}");
        let i = syn::Index::from(index);
        quote_spanned!(ty.span()=> <#ty as ::tonic_intercept::Hook<#rpc>>::#method(&self.#i, #args))
    };
    let n = members.len();
    let requests = (0..n).map(|i| call("on_request", quote!(call, message), i));
    let responses = (0..n).map(|i| call("on_response", quote!(call, message), i));
    let finishes = (0..n)
        .rev()
        .map(|i| call("on_finish", quote!(call, outcome), i));
    let validate = if let Some(at) = plan.validate {
        // The message is bound to a name spanned at `validate`, so a message type
        // without `Validate` is reported there.
        let validated = Ident::new("validated", at);
        let check = quote!(::tonic_intercept::__private::validate(call, #validated));
        quote! {
            fn validate(
                &self,
                call: &::tonic_intercept::Call,
                message: &<#rpc as ::tonic_intercept::Rpc>::Request,
            ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
                let #validated = message;
                #check
            }
        }
    } else {
        quote!()
    };
    let doc = format!(
        " The observers and hooks of `{}`, in the order they run.",
        plan.rpc.name
    );
    quote! {
        #[doc = #doc]
        #[doc(hidden)]
        #[derive(Clone)]
        pub struct #name(#(#types,)*);

        #[automatically_derived]
        impl ::tonic_intercept::Hooks<#rpc> for #name {
            #validate

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

/// What the `.proto` declares must agree with the attribute. The generated constants are
/// only visible to the compiler, so these are `const` assertions, each spanned at the
/// user's token that it is about.
fn proto_checks(service: &Service, plan: &RpcPlan) -> TokenStream {
    let rpc = rpc_path(service, plan);
    let policy = quote!(<#rpc as ::tonic_intercept::Rpc>::DESCRIPTOR.policy);
    let name = &plan.rpc.name;
    let mut checks = Vec::new();
    let mut agreements = Vec::new();
    let mut assert = |span: Span, cond: TokenStream, message: String| {
        checks.push(quote_spanned! {span=>
            const _: () = ::core::assert!(#cond, #message);
        });
    };
    let handler = plan.rpc.ident.span();
    match &plan.access {
        Access::FromProto => assert(
            handler,
            quote!(#policy.public),
            format!(
                "RPC `{name}` is neither public nor covered by auth; add it to `public(..)`, or add `auth(<verifier>)` (every non-public RPC) or `auth(<verifier>, {name})`, or declare `public: true` in its .proto options"
            ),
        ),
        Access::Auth {
            general: false, at, ..
        } => assert(
            *at,
            quote!(!#policy.public),
            format!(
                "`{name}` is public in its .proto options, but `auth(.., {name})` covers it; remove `{name}` from this `auth(..)` or `public: true` from the .proto"
            ),
        ),
        Access::Public | Access::Auth { general: true, .. } => {}
    }
    // Where a `roles(..)` entry names this RPC, or its keyword.
    let roles_at = |roles: &crate::attr::Roles| {
        roles
            .rpcs
            .iter()
            .find(|i| **i == plan.rpc.name)
            .map_or_else(|| roles.kw.span(), Ident::span)
    };
    match plan.roles {
        Some(roles) if roles.roles.is_empty() => assert(
            roles_at(roles),
            quote!(!#policy.roles.is_empty()),
            format!(
                "`roles({name})` takes the roles from the .proto, but the .proto declares no `roles` for `{name}`; list them here, `roles(\"admin\", {name})`, or declare them in the .proto"
            ),
        ),
        Some(roles) => {
            let list = &roles.roles;
            assert(
                roles_at(roles),
                quote!(#policy.roles.is_empty() || ::tonic_intercept::__private::same_roles(#policy.roles, &[#(#list),*])),
                format!(
                    "the roles of `{name}` here differ from the `roles` its .proto declares; make them the same, or write `roles({name})` to take the .proto's"
                ),
            );
            if !roles.rpcs.is_empty() && matches!(plan.access, Access::Auth { general: true, .. }) {
                assert(
                    roles_at(roles),
                    quote!(!#policy.public),
                    format!(
                        "`{name}` is public in its .proto options, so it has no identity whose roles `roles(..)` could check"
                    ),
                );
            }
        }
        None => assert(
            handler,
            quote!(#policy.roles.is_empty()),
            format!(
                "`{name}` requires roles in its .proto options; enforce them with `roles({name})` (the verifier's identity must implement `tonic_intercept::Roles`)"
            ),
        ),
    }
    if !matches!(shape(plan), Shape::Full) {
        assert(
            handler,
            quote!(!#policy.declares_limits()),
            format!(
                "`{name}` declares limits in its .proto options; name it in `limit({name})` so that #[intercept] enforces them"
            ),
        );
    }
    for key in &plan.specific {
        let field = key.name.to_string();
        if !matches!(
            field.as_str(),
            "max_messages_in"
                | "max_messages_out"
                | "max_message_bytes"
                | "messages_per_second_in"
                | "messages_per_second_out"
                | "timeout_ms"
                | "idle_timeout_ms"
        ) {
            continue;
        }
        let ident = format_ident!("{field}");
        let span = key.name.span();
        let message = format!(
            "`{field}` of `{name}` differs from the value its .proto options declare; the .proto is the RPC's contract: remove `{field}` here or make it equal"
        );
        match (&key.value, key.value.word()) {
            (_, Some(w)) if w == "none" => assert(
                span,
                quote!(#policy.#ident.is_none()),
                format!(
                    "`{field} = none` switches off a limit that the .proto options of `{name}` declare; remove it from the .proto instead"
                ),
            ),
            (value, _) => {
                // The value as written: `limits_expr` already checks a constant's type
                // and that it is at least 1, so this adds no second error.
                let value = match value {
                    LimitValue::Int(v) => {
                        let v = Literal::u64_unsuffixed(v.base10_parse().unwrap_or(0));
                        quote!(#v)
                    }
                    LimitValue::Path(p) => quote!(#p),
                };
                let agrees = if field.starts_with("messages_per_second") {
                    quote!(agrees_u32)
                } else {
                    quote!(agrees_u64)
                };
                agreements.push(quote_spanned! {span=>
                    #[allow(clippy::unnecessary_cast)]
                    const _: () = ::core::assert!(
                        ::tonic_intercept::__private::#agrees(#policy.#ident, (#value) as u64),
                        #message
                    );
                });
            }
        }
    }
    quote!(#(#checks)* #(#agreements)*)
}

fn rewrite_handler(
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

    let per_identity = plan.limits.calls_per_second_per_identity.is_some();
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
    } else if plan.rpc.client_streaming {
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

fn rpc_path(service: &Service, plan: &RpcPlan) -> TokenStream {
    let module = &service.rpc_module;
    let name = Ident::new(&plan.rpc.name, plan.rpc.ident.span());
    quote!(#module::#name)
}

fn hooks_type(names: &Names, plan: &RpcPlan) -> TokenStream {
    if !has_adapter(plan) {
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
    if let Some(value) = &limits.idle_timeout_ms {
        let value = limit_value("idle_timeout_ms", value, quote!(u64));
        out.extend(
            quote!(.idle_timeout(::tonic_intercept::__private::Duration::from_millis(#value))),
        );
    }
    out
}

/// The call-admission settings of one RPC (concurrency, call rate), for its `static`.
fn admission_expr(limits: &Limits) -> TokenStream {
    let mut out = quote!(::tonic_intercept::__private::AdmissionConfig::new());
    for (key, value) in [
        ("max_in_flight", &limits.max_in_flight),
        ("calls_per_second", &limits.calls_per_second),
        ("call_burst", &limits.call_burst),
        (
            "calls_per_second_per_identity",
            &limits.calls_per_second_per_identity,
        ),
        ("queue", &limits.queue),
    ] {
        if let Some(value) = value {
            let setter = format_ident!("{key}");
            let value = limit_value(key, value, quote!(u32));
            out.extend(quote!(.#setter(#value)));
        }
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
