//! Where the mistakes of one `#[intercept]` are collected.
//!
//! As serde_derive's `Ctxt`: every rule reports into one context instead of returning at
//! its first error, and the errors are combined (`syn::Error::combine`) at the end, so one
//! build shows every independent mistake of the attribute.

use std::cell::RefCell;
use std::fmt::Display;

use proc_macro2::Span;

#[derive(Default)]
pub(crate) struct Ctxt {
    errors: RefCell<Option<syn::Error>>,
}

impl Ctxt {
    /// An error at `span`.
    pub(crate) fn error_at(&self, span: Span, message: impl Display) {
        self.syn_error(syn::Error::new(span, message));
    }

    pub(crate) fn syn_error(&self, error: syn::Error) {
        let mut errors = self.errors.borrow_mut();
        match &mut *errors {
            Some(all) => all.combine(error),
            None => *errors = Some(error),
        }
    }

    /// Every error reported so far, combined.
    pub(crate) fn check(self) -> syn::Result<()> {
        match self.errors.into_inner() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}
