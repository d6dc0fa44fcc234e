//! The `#[intercept]` attribute of [tonic-intercept](https://docs.rs/tonic-intercept).
//!
//! Use it through `tonic_intercept::intercept`; its reference lives there. This crate is a
//! thin shell: arguments are parsed (`attr`), checked against the service (`service`,
//! `check`) and expanded (`expand`), each step a plain function over `proc_macro2`
//! tokens so that it can be unit-tested.

mod attr;
mod check;
mod expand;
mod service;

use proc_macro::TokenStream;

/// Wraps every RPC of a tonic service impl in typed, compile-checked policies.
///
/// See the `tonic_intercept` crate documentation for the reference.
#[proc_macro_attribute]
pub fn intercept(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::intercept(args.into(), item.into()).into()
}
