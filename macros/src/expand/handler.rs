//! The handler: each RPC's body becomes the steps of its policies in the fixed order,
//! then the user's body, unchanged and with its spans, inside an `async move` block whose
//! result goes through the runtime's `Guard`. Each step is one method of [`Steps`].

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Block, FnArg, Ident, ImplItemFn, Pat, ReturnType, Type};

use super::hooks::{Member, has_adapter, members};
use super::values::admission_expr;
use super::{Names, Shape, hooks_type, rpc_path, shape};
use crate::check::{Access, RpcPlan};
use crate::resolve::Service;

pub(super) fn rewrite_handler(
    f: &mut ImplItemFn,
    plan: &RpcPlan,
    service: &Service,
    names: &Names,
    stream: Option<&Type>,
) {
    let guarded = match shape(plan) {
        Shape::Untouched => return,
        Shape::AuthOnly => false,
        Shape::Full => true,
    };
    let steps = Steps::new(plan, service, guarded);
    // The handler's own request pattern is bound inside, after the policies.
    let Some(FnArg::Typed(arg)) = f.sig.inputs.iter_mut().nth(1) else {
        return;
    };
    let request = &steps.local.request;
    // An auth-only RPC stores the identity in the request: its parameter is `mut`
    // rather than moved into a second `mut` local, which would take another slot in the
    // handler's future (and so in async-trait's box).
    let new_pat: Pat = if !guarded && matches!(plan.access, Access::Auth { .. }) {
        syn::parse_quote!(mut #request)
    } else {
        syn::parse_quote!(#request)
    };
    let user_pat = std::mem::replace(&mut *arg.pat, new_pat);
    if guarded {
        let (output, body) = unwrap_user_stream(f, plan, stream);
        f.block = steps.guarded_body(names, &user_pat, &output, &body);
    } else {
        f.block = steps.inline_body(&user_pat, &f.block);
    }
}

/// The expansion's own locals, hygienic (`mixed_site`): the user's body cannot see them.
struct Locals {
    guard: Ident,
    request: Ident,
    status: Ident,
    error: Ident,
    ret: Ident,
    key: Ident,
    /// The caller's name in a shared backend.
    shared_name: Ident,
    call: Ident,
}

impl Locals {
    fn new() -> Self {
        let local = |name: &str| Ident::new(name, Span::mixed_site());
        Locals {
            guard: local("__ti_guard"),
            request: local("__ti_request"),
            status: local("__ti_status"),
            error: local("__ti_error"),
            ret: local("__ti_ret"),
            key: local("__ti_key"),
            shared_name: local("__ti_shared_name"),
            call: local("__ti_call"),
        }
    }
}

/// What the steps of one handler share.
struct Steps<'a> {
    plan: &'a RpcPlan<'a>,
    local: Locals,
    /// `pb::user_service_intercept::GetUser`
    rpc: TokenStream,
    /// What its `.proto` declares.
    policy: TokenStream,
    /// Its effective limits, from the impl's `Declared` table (`mod.rs`): one constant
    /// for the guard and the edge, so each value is checked once.
    declared: TokenStream,
    members: Vec<Member>,
    /// Where the steps find the call, and how they end it: an auth-only RPC has no guard.
    call_ref: TokenStream,
    reject: TokenStream,
    /// A per-identity call rate of this replica keys admission by the caller's identity.
    per_identity: bool,
    /// A per-identity call rate in a shared backend names the caller there.
    shared_identity: bool,
    /// Idempotency keys are scoped to the caller: one client cannot replay another's
    /// response by guessing its key.
    scoped: bool,
}

impl<'a> Steps<'a> {
    fn new(plan: &'a RpcPlan<'a>, service: &Service, guarded: bool) -> Self {
        let local = Locals::new();
        let rpc = rpc_path(service, plan);
        let policy = quote!(<#rpc as ::tonic_intercept::__private::Rpc>::DESCRIPTOR.policy);
        let position = service
            .rpcs
            .iter()
            .position(|r| r.name == plan.rpc.name)
            .unwrap_or_default();
        let position = proc_macro2::Literal::usize_unsuffixed(position);
        let declared_service = super::declared_service(service, plan.rpc);
        let declared = quote!(
            <Self as ::tonic_intercept::__private::Declared<#declared_service>>::LIMITS[#position].1
        );
        let Locals {
            guard, error, call, ..
        } = &local;
        let (call_ref, reject) = if guarded {
            (quote!(#guard.call()), quote!(#guard.reject(#error)))
        } else {
            (quote!(&#call), quote!(#error.1))
        };
        Steps {
            plan,
            rpc,
            policy,
            declared,
            members: members(service, plan),
            call_ref,
            reject,
            per_identity: plan
                .limits
                .iter_sharing()
                .any(|(k, _, shared)| k.needs_identity && !shared),
            shared_identity: plan
                .limits
                .iter_sharing()
                .any(|(k, _, shared)| k.needs_identity && shared),
            scoped: plan.idempotency.is_some() && matches!(plan.access, Access::Auth { .. }),
            local,
        }
    }

    /// Whether a step needs the caller's identity key after auth.
    fn keyed(&self) -> bool {
        self.per_identity || self.scoped
    }

    /// An observer's or hook's `on_call`, the `index`th member of the adapter.
    fn on_call(&self, index: usize) -> TokenStream {
        let Locals {
            guard,
            request,
            status,
            error,
            ..
        } = &self.local;
        let (rpc, call_ref, reject) = (&self.rpc, &self.call_ref, &self.reject);
        let ty = &self.members[index].ty;
        let i = syn::Index::from(index);
        quote_spanned! {ty.span()=>
            if let ::core::result::Result::Err(#status) =
                <#ty as ::tonic_intercept::__private::Hook<#rpc>>::on_call(&#guard.hooks().#i, #call_ref, #request.metadata()).await
            {
                let #error = (::tonic_intercept::__private::PolicyKind::Hook, #status);
                return ::core::result::Result::Err(#reject);
            }
        }
    }

    /// The observers' `on_call` (tracing, metrics), then the user's hooks'.
    fn on_calls(&self) -> (Vec<TokenStream>, Vec<TokenStream>) {
        let plan = self.plan;
        let observers = usize::from(plan.trace.is_some()) + usize::from(plan.metrics.is_some());
        let observe = (0..observers).map(|i| self.on_call(i)).collect();
        let user_hooks = (observers..self.members.len())
            .map(|i| self.on_call(i))
            .collect();
        (observe, user_hooks)
    }

    /// The verifier, then the roles, storing the identity for the handler.
    fn auth(&self) -> TokenStream {
        let Access::Auth {
            verifier, general, ..
        } = &self.plan.access
        else {
            return quote!();
        };
        let Locals {
            request,
            status,
            error,
            key,
            ..
        } = &self.local;
        let (call_ref, reject, policy) = (&self.call_ref, &self.reject, &self.policy);
        // The trait method is called directly on the user's expression: a verifier
        // lacking `Authenticate` is then one error, at that expression.
        let identity = Ident::new("__ti_identity", Span::mixed_site());
        let check = quote_spanned! {verifier.span()=>
            ::tonic_intercept::__private::Authenticate::authenticate(&#verifier, #call_ref, #request.metadata())
        };
        let roles = self.roles(&identity);
        let keep_key = self.keyed().then(|| {
            quote!(#key = ::core::option::Option::Some(::tonic_intercept::__private::identity_key(&#identity));)
        });
        // Spanned at `shared = ..`'s backend: an identity without `Display` is reported
        // there.
        let keep_name = match (self.shared_identity, self.plan.shared) {
            (true, Some(backend)) => {
                let name = &self.local.shared_name;
                // Bound to a name spanned at the backend, as `roles` does with its holder.
                let caller = Ident::new("caller_in_shared_backend", backend.span());
                Some(quote_spanned! {backend.span()=>
                    let #caller = &#identity;
                    #name = ::core::option::Option::Some(::tonic_intercept::__private::shared_identity(#caller));
                })
            }
            _ => None,
        };
        let step = quote! {
            match #check.await {
                ::core::result::Result::Ok(#identity) => {
                    #roles
                    #keep_key
                    #keep_name
                    ::tonic_intercept::__private::store_identity(&mut #request, #identity);
                }
                ::core::result::Result::Err(#status) => {
                    let #error = (::tonic_intercept::__private::PolicyKind::Auth, #status);
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

    /// The roles the identity must hold: listed here, or the `.proto`'s.
    fn roles(&self, identity: &Ident) -> Option<TokenStream> {
        let r = self.plan.roles?;
        let Locals { status, error, .. } = &self.local;
        let (call_ref, reject, policy) = (&self.call_ref, &self.reject, &self.policy);
        let list = if r.roles.is_empty() {
            quote!(#policy.roles)
        } else {
            let list = &r.roles;
            quote!(&[#(#list),*])
        };
        // Bound to a name spanned at `roles`, so an identity type without `Roles` is
        // reported there.
        let holder = Ident::new("identity_with_roles", r.kw.span());
        let authorize = quote_spanned! {r.kw.span()=>
            ::tonic_intercept::__private::authorize(#call_ref, #holder, #list)
        };
        Some(quote! {
            let #holder = &#identity;
            if let ::core::result::Result::Err(#status) = #authorize {
                let #error = (::tonic_intercept::__private::PolicyKind::Roles, #status);
                return ::core::result::Result::Err(#reject);
            }
        })
    }

    /// Concurrency and call rate, from one `static` per RPC; then the call rates kept in
    /// a shared backend.
    fn admission(&self) -> TokenStream {
        let shared = self.shared_admission();
        if !self.plan.limits.admits() {
            return shared;
        }
        let Locals {
            guard, error, key, ..
        } = &self.local;
        let reject = &self.reject;
        let config = admission_expr(&self.plan.limits, false);
        let identity = if self.per_identity {
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
            #shared
        }
    }

    /// The call rates of `limit(.., shared = backend)`: one `static` of rates per RPC, the
    /// backend the user's value, asked through a trait method called on it, so a value
    /// that is not a `RateBackend` is one error, at that value.
    fn shared_admission(&self) -> TokenStream {
        let Some(backend) = self.plan.shared else {
            return quote!();
        };
        let Locals {
            guard,
            error,
            shared_name,
            ..
        } = &self.local;
        let reject = &self.reject;
        let config = admission_expr(&self.plan.limits, true);
        let name = if self.shared_identity {
            quote!(#shared_name.as_deref())
        } else {
            quote!(::core::option::Option::None)
        };
        let ask = quote_spanned! {backend.span()=>
            ::tonic_intercept::__private::AdmitShared::admit_shared(&#backend, &__TONIC_INTERCEPT_SHARED_RATES, #guard.call(), #name).await
        };
        quote! {
            static __TONIC_INTERCEPT_SHARED_RATES: ::tonic_intercept::__private::SharedRates =
                ::tonic_intercept::__private::SharedRates::new(#config);
            let #error = #ask;
            if let ::core::result::Result::Err(#error) = #guard.settle_shared(#error) {
                return ::core::result::Result::Err(#reject);
            }
        }
    }

    /// The request's limits, validation and hooks: on the one request, or on each
    /// message of a request stream.
    fn admit_request(&self) -> TokenStream {
        let Locals {
            guard,
            request,
            error,
            ..
        } = &self.local;
        let reject = &self.reject;
        if self.plan.rpc.kind.streams_requests() {
            // Always wrapped: the limits a `.proto` declares apply to every guarded RPC,
            // whatever the attribute says.
            quote!(let #request = #guard.inbound(#request);)
        } else {
            quote! {
                if let ::core::result::Result::Err(#error) = #guard.admit_request(#request.get_ref()) {
                    return ::core::result::Result::Err(#reject);
                }
            }
        }
    }

    /// The handler through the guard's method for the RPC's kind; with idempotency, a
    /// stored response replayed instead, or this one stored: the call's key is read and
    /// checked, then the store (any `IdempotencyStore` of the RPC) is awaited before the
    /// handler and its ticket after it.
    fn run_handler(&self, handler: TokenStream) -> TokenStream {
        let Locals {
            guard,
            request,
            error,
            ret,
            key,
            ..
        } = &self.local;
        let (rpc, reject) = (&self.rpc, &self.reject);
        // The guard's method that runs the handler and what follows it.
        let method = format_ident!("{}", self.plan.rpc.kind.call_method());
        let Some(store) = self.plan.idempotency else {
            return quote!(#guard.#method(#handler).await);
        };
        let ticket = Ident::new("__ti_ticket", Span::mixed_site());
        let result = Ident::new("__ti_result", Span::mixed_site());
        let idempotency_key = Ident::new("__ti_idempotency_key", Span::mixed_site());
        // Under `auth(..)` keys belong to the caller: its `identity_key` for a store in
        // the process, and its identity itself (from the request's extensions; the
        // verifier is borrowed again only to name its type) for a store shared by
        // replicas, where a per-process hash would differ from replica to replica.
        let scope = match &self.plan.access {
            Access::Auth { verifier, .. } if self.scoped => quote! {
                ::tonic_intercept::__private::IdempotencyScope::of_caller(&#verifier, &#request, #key)
            },
            _ => quote!(::tonic_intercept::__private::IdempotencyScope::GLOBAL),
        };
        let begin = quote_spanned! {store.span()=>
            ::tonic_intercept::__private::IdempotencyStore::<#rpc>::begin(
                &#store, #guard.call(), #idempotency_key, #scope, #request.get_ref(),
            )
        };
        quote! {
            let #ticket = match ::tonic_intercept::__private::idempotency_key(#guard.call(), #request.metadata()) {
                ::core::result::Result::Ok(::core::option::Option::None) => ::core::option::Option::None,
                ::core::result::Result::Ok(::core::option::Option::Some(#idempotency_key)) => match #begin.await {
                    ::core::result::Result::Ok(::tonic_intercept::__private::Begin::Bypass) => ::core::option::Option::None,
                    ::core::result::Result::Ok(::tonic_intercept::__private::Begin::Run(#ticket)) => ::core::option::Option::Some(#ticket),
                    ::core::result::Result::Ok(::tonic_intercept::__private::Begin::Replay(#ret)) => {
                        return #guard.replay(#ret);
                    }
                    ::core::result::Result::Err(#error) => {
                        return ::core::result::Result::Err(#reject);
                    }
                },
                ::core::result::Result::Err(#error) => {
                    return ::core::result::Result::Err(#reject);
                }
            };
            let #result = #guard.#method(#handler).await;
            if let ::core::option::Option::Some(#ticket) = #ticket {
                ::tonic_intercept::__private::IdempotencyTicket::<#rpc>::complete(#ticket, &#result).await;
            }
            #result
        }
    }

    /// An auth-only RPC: nothing runs after the handler, so its body runs inline: no
    /// guard, no extra future, and an early `return` in it is just that.
    fn inline_body(&self, user_pat: &Pat, body: &Block) -> Block {
        let Locals { request, call, .. } = &self.local;
        let rpc = &self.rpc;
        let auth = self.auth();
        if auth.is_empty() {
            return syn::parse_quote! {{
                let #user_pat = #request;
                #body
            }};
        }
        // The call, for the verifier: no deadline is read, as nothing in an auth-only
        // RPC enforces or passes one on (see `Call::unbounded`).
        syn::parse_quote! {{
            let #call = ::tonic_intercept::__private::Call::unbounded(
                &<#rpc as ::tonic_intercept::__private::Rpc>::DESCRIPTOR,
                &#request,
            );
            #auth
            let #user_pat = #request;
            #body
        }}
    }

    /// A guarded RPC: the guard, then every step in the documented order, the handler
    /// last, all inside `run` (recovery, the span).
    fn guarded_body(&self, names: &Names, user_pat: &Pat, output: &Type, body: &Block) -> Block {
        let Locals {
            guard,
            request,
            ret,
            key,
            ..
        } = &self.local;
        let (plan, rpc) = (self.plan, &self.rpc);
        let hooks = hooks_type(names, plan);
        let member_values = self.members.iter().map(|m| &m.value);
        let hooks_value = if has_adapter(plan) {
            quote!(#hooks(#(#member_values,)*))
        } else {
            quote!(())
        };
        let limits = self.limits();
        let recover = plan.recover;
        let (observe, user_hooks) = self.on_calls();
        let key_slot = self.keyed().then(
            || quote!(let mut #key: ::core::option::Option<u64> = ::core::option::Option::None;),
        );
        let shared_name = &self.local.shared_name;
        let name_slot = self.shared_identity.then(|| {
            quote!(let mut #shared_name: ::core::option::Option<::std::string::String> = ::core::option::Option::None;)
        });
        let (auth, admission, admit) = (self.auth(), self.admission(), self.admit_request());
        let run_handler = self.run_handler(quote! {
            async move {
                let #user_pat = #request;
                let #ret: #output = #body;
                #ret
            }
        });
        let trace = plan
            .trace
            .as_ref()
            .map(|_| quote!(#guard.trace(#request.metadata());));
        let outcome = Ident::new("__ti_outcome", Span::mixed_site());
        let panic = Ident::new("__ti_panic", Span::mixed_site());
        syn::parse_quote! {{
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
                #name_slot
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
        }}
    }

    /// The message limits: the attribute's, then the `.proto`'s over them, as the impl
    /// declares them to the edge.
    fn limits(&self) -> TokenStream {
        let mut limits = self.declared.clone();
        if self.plan.metrics.is_some() {
            limits.extend(quote!(.measure_bytes()));
        }
        limits
    }
}

/// The handler's return type and body with the user's own stream type where they name
/// `Self::<Rpc>Stream`, which the expansion wraps; the signature takes the trait's form.
fn unwrap_user_stream(f: &mut ImplItemFn, plan: &RpcPlan, stream: Option<&Type>) -> (Type, Block) {
    let mut output = match &f.sig.output {
        ReturnType::Type(_, ty) => (**ty).clone(),
        ReturnType::Default => syn::parse_quote!(()),
    };
    let mut body = f.block.clone();
    if let Some(stream) = stream {
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
    (output, body)
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
