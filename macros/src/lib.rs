//! The `#[intercept]` attribute of [tonic-intercept](https://docs.rs/tonic-intercept).
//!
//! Use it through `tonic_intercept::intercept`; its reference lives there. The macro is
//! four steps, each a plain function over `proc_macro2` tokens so that it can be
//! unit-tested (`expand::intercept` runs them):
//!
//! - `parse`: the arguments into a syntax tree, grammar only;
//! - `resolve`: the RPCs of the service from the impl, and each RPC name to one of them;
//! - `check`: one function per rule, every mistake collected in one `ctxt::Ctxt`, and
//!   the plan of each RPC;
//! - `expand`: the plan into code, by step: `handler` (the policies' steps around the
//!   user's body), `hooks` (the hooks adapter), `proto` (the `.proto` agreement
//!   asserts), `values` (limit values as runtime builder calls).

#![warn(missing_docs)]

mod check;
mod ctxt;
mod expand;
mod parse;
mod resolve;

use proc_macro::TokenStream;

// The reference (every entry, its rules and the errors) is on the re-export,
// `tonic_intercept::intercept` (runtime/docs/intercept.md), where its examples compile
// as doctests against the runtime. Rustdoc appends the line below to that page, so it
// reads as a footnote there and as a pointer on this crate's own page.
/// Defined in `tonic-intercept-macros`; use it as `tonic_intercept::intercept`.
#[proc_macro_attribute]
pub fn intercept(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::intercept(args.into(), item.into()).into()
}
