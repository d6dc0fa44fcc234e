//! Who may call each RPC: `public(..)` and `auth(..)`.

use proc_macro2::Span;
use syn::{Expr, Ident};

use super::Access;
use crate::ctxt::Ctxt;
use crate::parse::{Auth, Public, Rpcs};
use crate::resolve::{RpcId, Service};

/// The access entries seen so far.
pub(super) struct AccessEntries<'a> {
    service: &'a Service,
    public: Vec<bool>,
    all_public: Option<&'a Ident>,
    specific_auth: Vec<Option<(&'a Expr, Span)>>,
    general_auth: Option<&'a Expr>,
}

impl<'a> AccessEntries<'a> {
    pub(super) fn new(service: &'a Service) -> Self {
        let n = service.rpcs.len();
        AccessEntries {
            service,
            public: vec![false; n],
            all_public: None,
            specific_auth: vec![None; n],
            general_auth: None,
        }
    }

    // Deny by default: each RPC is public or has exactly one auth rule, so that no RPC
    // (a streaming one added later, say) is reachable without anyone deciding it. Listing
    // an RPC public twice is a slip that hides which entry was meant.
    pub(super) fn public(&mut self, cx: &Ctxt, entry: &'a Public, ids: &[Option<RpcId>]) {
        let names = match &entry.rpcs {
            Rpcs::All => {
                if self.all_public.is_some() {
                    cx.error_at(entry.kw.span(), "`public(*)` is configured twice");
                }
                self.all_public = Some(&entry.kw);
                return;
            }
            Rpcs::Named(names) => names,
        };
        for (ident, id) in names.iter().zip(ids) {
            let Some(id) = *id else { continue };
            if self.public[id] {
                let message =
                    format!("`{ident}` is configured twice: it is already listed in `public(..)`");
                cx.error_at(ident.span(), message);
            }
            self.public[id] = true;
        }
    }

    // One verifier per RPC: with two, which one runs would depend on entry order, which
    // the attribute promises does not matter.
    pub(super) fn auth(&mut self, cx: &Ctxt, entry: &'a Auth, ids: &[Option<RpcId>]) {
        if entry.rpcs.is_empty() {
            if self.general_auth.is_some() {
                let last = self.service.rpcs.last();
                cx.error_at(
                    entry.kw.span(),
                    format!(
                        "`auth(..)` for every RPC is configured twice; keep one, or name the RPCs each verifier covers: `auth(self.admin, {})`",
                        last.map_or("MyRpc", |r| r.name.as_str())
                    ),
                );
            }
            self.general_auth = Some(&entry.verifier);
        }
        for (ident, id) in entry.rpcs.iter().zip(ids) {
            let Some(id) = *id else { continue };
            if self.specific_auth[id].is_some() {
                let message = format!(
                    "`{ident}` is configured twice: another `auth(.., {ident})` already covers it"
                );
                cx.error_at(ident.span(), message);
            }
            self.specific_auth[id] = Some((&entry.verifier, ident.span()));
        }
    }

    // An RPC both public and authenticated is a contradiction: one of the two entries is
    // a mistake, and silently preferring either would hide it. An RPC neither public nor
    // covered here must be public in its `.proto`; the expansion asserts that, because
    // only the compiler sees the generated constants.
    pub(super) fn finish(mut self, cx: &Ctxt) -> Vec<Access<'a>> {
        if let Some(kw) = self.all_public {
            if self.general_auth.is_some() || self.specific_auth.iter().any(Option::is_some) {
                cx.error_at(kw.span(), "`public(*)` makes every RPC public, so `auth(..)` would cover nothing; remove one of them");
            }
            self.public.iter_mut().for_each(|p| *p = true);
        }
        let mut access = Vec::new();
        for (id, rpc) in self.service.rpcs.iter().enumerate() {
            let public = self.public[id];
            if public && self.specific_auth[id].is_some() {
                let name = &rpc.name;
                let message = format!(
                    "`{name}` is both public and covered by `auth(.., {name})`; choose one"
                );
                cx.error_at(rpc.ident.span(), message);
            }
            access.push(if public {
                Access::Public
            } else if let Some((verifier, at)) = self.specific_auth[id] {
                let general = false;
                Access::Auth {
                    verifier,
                    general,
                    at,
                }
            } else if let Some(verifier) = self.general_auth {
                let at = syn::spanned::Spanned::span(verifier);
                let general = true;
                Access::Auth {
                    verifier,
                    general,
                    at,
                }
            } else {
                Access::FromProto
            });
        }
        access
    }
}
