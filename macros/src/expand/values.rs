//! Values: the limits an RPC ends up with, as the runtime's builder calls, each derived
//! from the key's entry in `tonic_intercept_spec::LIMIT_KEYS`.

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use tonic_intercept_spec::naming::upper_camel;
use tonic_intercept_spec::{LimitKey, Setter, ValueType, rate_shape_defaults};

use crate::check::Limits;
use crate::parse::LimitValue;

/// `Limits::new().<builder>(value)..` for the message limits of one RPC.
pub(super) fn limits_expr(limits: &Limits) -> TokenStream {
    let mut out = quote!(::tonic_intercept::__private::Limits::new());
    let (burst, mode) = rate_shape(limits);
    for (key, value) in limits.iter() {
        let value = || limit_value(key, value);
        match key.setter {
            Setter::Limits(builder) => {
                let (builder, value) = (format_ident!("{builder}"), value());
                out.extend(quote!(.#builder(#value)));
            }
            Setter::LimitsMillis(builder) => {
                let (builder, value) = (format_ident!("{builder}"), value());
                out.extend(quote!(
                    .#builder(::tonic_intercept::__private::Duration::from_millis(#value))
                ));
            }
            Setter::LimitsRate(builder) => {
                let (builder, value) = (format_ident!("{builder}"), value());
                out.extend(quote!(
                    .#builder(#value, #burst, ::tonic_intercept::__private::OnRateExceeded::#mode)
                ));
            }
            Setter::RateShape | Setter::Admission(_) | Setter::ProtoDefault => {}
        }
    }
    out
}

/// The arguments a rate builder takes after the rate: the numeric shaping key (the
/// burst) and the worded one (`OnRateExceeded`), each its table default unless set.
fn rate_shape(limits: &Limits) -> (TokenStream, TokenStream) {
    let shaping = || {
        tonic_intercept_spec::LIMIT_KEYS
            .iter()
            .filter(|k| k.setter == Setter::RateShape)
    };
    let set = |key: &LimitKey| limits.iter().find(|(k, _)| k.name == key.name);
    let (default_burst, default_word) = rate_shape_defaults();
    let burst = match shaping().find_map(|k| set(k).filter(|_| k.value.rust_type().is_some())) {
        Some((key, value)) => limit_value(key, value),
        None => {
            let burst = Literal::u64_unsuffixed(default_burst);
            quote!(#burst)
        }
    };
    let word = shaping()
        .filter(|key| matches!(key.value, ValueType::Word(_)))
        .find_map(|key| set(key).and_then(|(_, value)| value.word()))
        .map_or_else(|| default_word.to_string(), |word| word.to_string());
    let mode = format_ident!("{}", upper_camel(&word));
    (burst, quote!(#mode))
}

/// The call-admission settings of one RPC (concurrency, call rate), for its `static`:
/// those of this replica (`shared` false) or those kept in a shared backend.
pub(super) fn admission_expr(limits: &Limits, shared: bool) -> TokenStream {
    let mut out = quote!(::tonic_intercept::__private::AdmissionConfig::new());
    for (key, value, _) in limits.iter_sharing().filter(|(_, _, s)| *s == shared) {
        if let Setter::Admission(builder) = key.setter {
            let builder = format_ident!("{builder}");
            let value = limit_value(key, value);
            out.extend(quote!(.#builder(#value)));
        }
    }
    out
}

/// A literal as is; a constant through a `const` of the key's type that asserts it is at
/// least 1, spanned at the user's path so both a wrong type and a zero point there.
fn limit_value(key: &LimitKey, value: &LimitValue) -> TokenStream {
    match value {
        LimitValue::Int(v) => {
            let v = Literal::u64_unsuffixed(v.base10_parse().unwrap_or(0));
            quote!(#v)
        }
        LimitValue::Path(path) => {
            let ty = format_ident!("{}", key.value.rust_type().unwrap_or("u64"));
            let message = format!(
                "`{}` must be at least 1: a limit of zero would refuse everything; to leave it unlimited, remove the key",
                key.name
            );
            // Item names are not hygienic: this one must not be a name users write.
            quote_spanned! {path.span()=> {
                const __TONIC_INTERCEPT_LIMIT: #ty = #path;
                const _: () = ::core::assert!(__TONIC_INTERCEPT_LIMIT > 0, #message);
                __TONIC_INTERCEPT_LIMIT
            }}
        }
    }
}
