//! The `.proto` agreement: what an RPC's `.proto` options declare must agree with the
//! attribute. The generated constants are only visible to the compiler, so these are
//! `const` items beside the impl, each spanned at the user's token that it is about.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::Ident;
use tonic_intercept_spec::Setter;

use super::{Shape, rpc_path, shape};
use crate::check::{Access, RpcPlan, spec_of};
use crate::parse::{LimitKey, LimitValue, Roles};
use crate::resolve::Service;

/// The `const` checks of one RPC.
struct Asserts<'a> {
    plan: &'a RpcPlan<'a>,
    /// `<Rpc as Rpc>::DESCRIPTOR.policy`: what its `.proto` declares; its limit values are
    /// read through `.limits().get_<builder>()`, named by the spec table.
    policy: TokenStream,
    out: Vec<TokenStream>,
}

impl Asserts<'_> {
    fn assert(&mut self, span: Span, cond: TokenStream, message: String) {
        self.out.push(quote_spanned! {span=>
            const _: () = ::core::assert!(#cond, #message);
        });
    }
}

/// The checks of one RPC, and its value agreements for [`agreements`] to hold.
pub(super) fn proto_checks(service: &Service, plan: &RpcPlan) -> (TokenStream, Vec<TokenStream>) {
    let rpc = rpc_path(service, plan);
    let policy = quote!(<#rpc as ::tonic_intercept::__private::Rpc>::DESCRIPTOR.policy);
    let mut asserts = Asserts {
        plan,
        policy,
        out: Vec::new(),
    };
    access_agrees(&mut asserts);
    roles_agree(&mut asserts);
    proto_limits_enforced(&mut asserts);
    let none = plan.specific.iter().filter(|k| switches_off(k));
    for key in none.clone() {
        switched_off_limit_not_declared(&mut asserts, key);
    }
    let values = plan.specific.iter().filter(|k| !switches_off(k));
    let agreements = limit_values_agree(&asserts, values.copied().collect());
    let checks = asserts.out;
    (quote!(#(#checks)*), agreements)
}

/// `key = none`.
fn switches_off(key: &LimitKey) -> bool {
    key.value.word().is_some_and(|w| w == "none")
}

// Deny by default reaches the `.proto`: an RPC neither public nor covered by `auth(..)`
// here must be public there; and an RPC the `.proto` makes public cannot also be named
// in an `auth(..)`, which would contradict it.
fn access_agrees(a: &mut Asserts) {
    let (name, policy) = (&a.plan.rpc.name, a.policy.clone());
    match a.plan.access {
        Access::FromProto => a.assert(
            a.plan.rpc.ident.span(),
            quote!(#policy.public),
            format!(
                "RPC `{name}` is neither public nor covered by auth; add it to `public(..)`, or add `auth(<verifier>)` (every non-public RPC) or `auth(<verifier>, {name})`, or declare `public: true` in its .proto options"
            ),
        ),
        Access::Auth { general: false, at, .. } => a.assert(
            at,
            quote!(!#policy.public),
            format!(
                "`{name}` is public in its .proto options, but `auth(.., {name})` covers it; remove `{name}` from this `auth(..)` or `public: true` from the .proto"
            ),
        ),
        Access::Public | Access::Auth { general: true, .. } => {}
    }
}

// Roles the `.proto` declares are part of the RPC's contract: they must be enforced
// (`roles(Rpc)`), and roles listed here must be the same ones.
fn roles_agree(a: &mut Asserts) {
    let (name, policy) = (&a.plan.rpc.name, a.policy.clone());
    let Some(roles) = a.plan.roles else {
        let message = format!(
            "`{name}` requires roles in its .proto options; enforce them with `roles({name})` (the verifier's identity must implement `tonic_intercept::Roles`)"
        );
        a.assert(
            a.plan.rpc.ident.span(),
            quote!(#policy.roles.is_empty()),
            message,
        );
        return;
    };
    let at = roles_at(roles, name);
    if roles.roles.is_empty() {
        let message = format!(
            "`roles({name})` takes the roles from the .proto, but the .proto declares no `roles` for `{name}`; list them here, `roles(\"admin\", {name})`, or declare them in the .proto"
        );
        a.assert(at, quote!(!#policy.roles.is_empty()), message);
        return;
    }
    let list = &roles.roles;
    a.assert(
        at,
        quote!(#policy.roles.is_empty() || ::tonic_intercept::__private::same_roles(#policy.roles, &[#(#list),*])),
        format!(
            "the roles of `{name}` here differ from the `roles` its .proto declares; make them the same, or write `roles({name})` to take the .proto's"
        ),
    );
    if !roles.rpcs.is_empty() && matches!(a.plan.access, Access::Auth { general: true, .. }) {
        a.assert(
            at,
            quote!(!#policy.public),
            format!(
                "`{name}` is public in its .proto options, so it has no identity whose roles `roles(..)` could check"
            ),
        );
    }
}

/// Where a `roles(..)` entry names the RPC, or its keyword.
fn roles_at(roles: &Roles, rpc: &str) -> Span {
    roles
        .rpcs
        .iter()
        .find(|i| **i == rpc)
        .map_or_else(|| roles.kw.span(), Ident::span)
}

// Limits in the `.proto` act only in a guarded handler; an RPC the attribute leaves
// unguarded would silently drop them.
fn proto_limits_enforced(a: &mut Asserts) {
    if matches!(shape(a.plan), Shape::Full) {
        return;
    }
    let (name, policy) = (&a.plan.rpc.name, a.policy.clone());
    let message = format!(
        "`{name}` declares limits in its .proto options; name it in `limit({name})` so that #[intercept] enforces them"
    );
    a.assert(
        a.plan.rpc.ident.span(),
        quote!(!#policy.declares_limits()),
        message,
    );
}

// `key = none` for an RPC switches off a limit set for every RPC here; it cannot switch
// off the `.proto`'s, which is the RPC's contract.
fn switched_off_limit_not_declared(a: &mut Asserts, key: &LimitKey) {
    let Some((field, getter)) = spec_of(key)
        .filter(|s| s.on_descriptor())
        .and_then(|s| Some((s.proto_field?, s.getter()?)))
    else {
        return;
    };
    let (name, policy) = (&a.plan.rpc.name, a.policy.clone());
    let getter = format_ident!("{getter}");
    let message = format!(
        "`{field} = none` switches off a limit that the .proto options of `{name}` declare; remove it from the .proto instead"
    );
    a.assert(
        key.name.span(),
        quote!(#policy.limits().#getter().is_none()),
        message,
    );
}

// A value here for a key the `.proto` also sets must be the same: the `.proto` is the
// RPC's contract, and two values would leave the reader guessing which holds. The error
// names both values, so it is built by the runtime's `proto_disagreement` (the compiler
// cannot format numbers in a `const` panic) and panics at the user's key.
fn limit_values_agree(a: &Asserts, keys: Vec<&LimitKey>) -> Vec<TokenStream> {
    let name = &a.plan.rpc.name;
    let policy = &a.policy;
    let mut checks = Vec::new();
    for key in keys {
        let Some(spec) = spec_of(key).filter(|s| s.on_descriptor()) else {
            continue;
        };
        let Some(getter) = spec.getter() else {
            continue;
        };
        let field = spec.proto_field.unwrap_or(spec.name);
        let getter = format_ident!("{getter}");
        // The getter's value as the `.proto` wrote it: a number of the key's unit.
        let number = match spec.setter {
            Setter::LimitsMillis(_) => quote!(v.as_millis() as u64),
            Setter::LimitsRate(_) => quote!(v.per_second as u64),
            _ => quote!(v as u64),
        };
        // The value as written: `limits_expr` already checks a constant's type and that
        // it is at least 1, so this adds no second error.
        let value = match &key.value {
            LimitValue::Int(v) => {
                let v = Literal::u64_unsuffixed(v.base10_parse().unwrap_or(0));
                quote!(#v)
            }
            LimitValue::Path(p) => quote!(#p),
        };
        let parts = [
            format!("`{field}` of `{name}` differs from its .proto options: the .proto says "),
            ", this says ".to_string(),
            format!("; the .proto is the RPC's contract: remove `{field}` here or make it equal"),
        ];
        let capacity = parts.iter().map(String::len).sum::<usize>() + 2 * 20;
        // Never taken (the parts and the digits are UTF-8), but a `const` cannot unwrap.
        let fallback =
            format!("`{field}` of `{name}` differs from the value its .proto options declare");
        checks.push(quote_spanned! {key.name.span()=>
            #[allow(clippy::unnecessary_cast)]
            const _: () = {
                const __TONIC_INTERCEPT_PROTO: ::core::option::Option<u64> = match #policy.limits().#getter() {
                    ::core::option::Option::Some(v) => ::core::option::Option::Some(#number),
                    ::core::option::Option::None => ::core::option::Option::None,
                };
                const __TONIC_INTERCEPT_THIS: u64 = (#value) as u64;
                if let ::core::option::Option::Some(proto) = __TONIC_INTERCEPT_PROTO {
                    if proto != __TONIC_INTERCEPT_THIS {
                        let (bytes, len) = ::tonic_intercept::__private::proto_disagreement::<#capacity>(
                            [#(#parts),*],
                            proto,
                            __TONIC_INTERCEPT_THIS,
                        );
                        match ::core::str::from_utf8(bytes.split_at(len).0) {
                            ::core::result::Result::Ok(message) => ::core::panic!("{}", message),
                            ::core::result::Result::Err(_) => ::core::panic!(#fallback),
                        }
                    }
                }
            };
        });
    }
    checks
}

/// The value agreements of every RPC, in one `const` block.
pub(super) fn agreements(checks: &[TokenStream]) -> TokenStream {
    if checks.is_empty() {
        return TokenStream::new();
    }
    quote! {
        const _: () = {
            #(#checks)*
        };
    }
}
