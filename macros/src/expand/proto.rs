//! The `.proto` agreement: what an RPC's `.proto` options declare must agree with the
//! attribute.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::Ident;

use super::{Shape, rpc_path, shape};
use crate::check::{Access, RpcPlan};
use crate::parse::LimitValue;
use crate::resolve::Service;

/// What the `.proto` declares must agree with the attribute. The generated constants are
/// only visible to the compiler, so these are `const` assertions, each spanned at the
/// user's token that it is about.
pub fn proto_checks(service: &Service, plan: &RpcPlan) -> TokenStream {
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
    let roles_at = |roles: &crate::parse::Roles| {
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
