//! The hooks adapter: the observers (tracing, metrics) and the user's hooks of one RPC
//! as one type implementing `Hooks<Rpc>`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::Ident;
use syn::spanned::Spanned;

use super::{Names, rpc_path};
use crate::check::RpcPlan;
use crate::resolve::Service;

/// The observers and hooks of one RPC, in the order they run: the tracing hook, the
/// metrics, then the user's hooks as declared.
pub(super) struct Member {
    pub ty: TokenStream,
    pub value: TokenStream,
}

pub(super) fn members(service: &Service, plan: &RpcPlan) -> Vec<Member> {
    let mut members = Vec::new();
    if let Some(trace) = plan.trace {
        let ty = match &trace.ty {
            Some(ty) => quote!(#ty),
            None => quote_spanned!(trace.kw.span()=> ::tonic_intercept::__private::TraceCalls),
        };
        let value = match &trace.value {
            Some(value) => {
                quote_spanned!(value.span()=> ::core::clone::Clone::clone(&#value))
            }
            None => {
                quote_spanned!(trace.kw.span()=> ::tonic_intercept::__private::TraceCalls::new())
            }
        };
        members.push(Member { ty, value });
    }
    if let Some(metrics) = plan.metrics {
        let module = &service.rpc_module;
        members.push(Member {
            ty: quote!(::tonic_intercept::__private::ServiceMetrics<#module::Service>),
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

pub(super) fn has_adapter(plan: &RpcPlan) -> bool {
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
pub(super) fn hooks_adapter(names: &Names, service: &Service, plan: &RpcPlan) -> TokenStream {
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
        quote_spanned!(ty.span()=> <#ty as ::tonic_intercept::__private::Hook<#rpc>>::#method(&self.#i, #args))
    };
    let n = members.len();
    let requests = (0..n).map(|i| call("on_request", quote!(call, message), i));
    let responses = (0..n).map(|i| call("on_response", quote!(call, message), i));
    let finishes = (0..n)
        .rev()
        .map(|i| call("on_finish", quote!(call, outcome), i));
    let validate = validate_method(plan, &rpc);
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
        impl ::tonic_intercept::__private::Hooks<#rpc> for #name {
            #validate

            fn on_request(
                &self,
                call: &::tonic_intercept::__private::Call,
                message: &<#rpc as ::tonic_intercept::__private::Rpc>::Request,
            ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
                #(#requests?;)*
                ::core::result::Result::Ok(())
            }

            fn on_response(
                &self,
                call: &::tonic_intercept::__private::Call,
                message: &<#rpc as ::tonic_intercept::__private::Rpc>::Response,
            ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
                #(#responses?;)*
                ::core::result::Result::Ok(())
            }

            fn on_finish(&self, call: &::tonic_intercept::__private::Call, outcome: &::tonic_intercept::__private::CallOutcome) {
                #(#finishes;)*
            }
        }
    }
}

/// `Hooks::validate`, where `validate` covers the RPC.
fn validate_method(plan: &RpcPlan, rpc: &TokenStream) -> TokenStream {
    let Some(at) = plan.validate else {
        return quote!();
    };
    // The message is bound to a name spanned at `validate`, so a message type without
    // `Validate` is reported there. Autoref specialization on the concrete message type
    // (this impl is not generic) picks its validation: a hand-written `Validate` impl, else
    // its `.proto`'s `buf.validate` rules (feature `protovalidate`), else the bound
    // `Validate` that reports the missing impl (runtime/src/policy/validate/pick.rs).
    let validated = Ident::new("validated", at);
    // `call` keeps the parameter's own (call-site) span: spanned at the user's tokens it
    // would not resolve when the attribute is written inside a `macro_rules!`.
    let call = quote!(call);
    let check = quote_spanned! {at=>
        {
            #[allow(unused_imports)]
            use ::tonic_intercept::__private::{
                ValidateByHand as _, ValidateByRules as _, ValidateMissing as _,
            };
            (&&&::tonic_intercept::__private::ValidatePick(#validated))
                .__tonic_intercept_validate(#call)
        }
    };
    quote! {
        fn validate(
            &self,
            call: &::tonic_intercept::__private::Call,
            message: &<#rpc as ::tonic_intercept::__private::Rpc>::Request,
        ) -> ::core::result::Result<(), ::tonic_intercept::__private::Status> {
            let #validated = message;
            #check
        }
    }
}
