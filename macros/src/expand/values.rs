//! Values: the limits an RPC ends up with, as the runtime's builder calls.

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::check::Limits;
use crate::parse::LimitValue;

pub fn limits_expr(limits: &Limits) -> TokenStream {
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
pub fn admission_expr(limits: &Limits) -> TokenStream {
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
