//! The rules a policy must obey, checked before anything is generated, and the plan they
//! leave: what to generate for each RPC.
//!
//! Each rule is one function that reports into the `Ctxt`, so a single build shows every
//! mistake of the attribute. The entries are walked in declared order and each entry's
//! rules run in turn, so errors come out in the order the user wrote the entries.

mod access;
mod entries;
mod limits;
mod plan;

use syn::Expr;

use crate::ctxt::Ctxt;
use crate::parse::{self, Args, Entry, LimitValue};
use crate::resolve::{EntryRpcs, RpcMethod, Service};

/// What to generate for each RPC.
pub(crate) struct Plan<'a> {
    pub rpcs: Vec<RpcPlan<'a>>,
}

/// One RPC's policies. They run in a fixed, documented order whatever the order of the
/// entries: recovery, tracing, metrics, deadline, auth, roles, admission (concurrency,
/// call rate), hooks' `on_call`; then per message: limits, validation, hooks; then the
/// idempotency replay and the handler.
pub(crate) struct RpcPlan<'a> {
    pub rpc: &'a RpcMethod,
    pub access: Access<'a>,
    /// The `roles(..)` entry covering this RPC; no role strings: the `.proto`'s.
    pub roles: Option<&'a parse::Roles>,
    /// The user's hooks in declared order.
    pub hooks: Vec<&'a parse::Hook>,
    pub limits: Limits,
    /// Keys set by a `limit(..)` naming this RPC: they must agree with the `.proto`.
    pub specific: Vec<&'a parse::LimitKey>,
    /// Named in a `limit(..)`, even without keys: guarded, so the `.proto`'s limits apply.
    pub named_in_limit: bool,
    pub metrics: Option<&'a Expr>,
    pub trace: Option<&'a parse::Trace>,
    pub recover: bool,
    /// Where `validate` names this RPC (or the keyword, for every RPC).
    pub validate: Option<proc_macro2::Span>,
    pub idempotency: Option<&'a Expr>,
    /// The backend of the RPC's shared call rates (`limit(.., shared = self.rates)`).
    pub shared: Option<&'a Expr>,
}

/// Who may call an RPC.
#[derive(Clone, Copy)]
pub(crate) enum Access<'a> {
    /// `public(..)` in the attribute.
    Public,
    /// `auth(verifier)`; `general`: it covers every RPC not public, so a `.proto`
    /// declaring the RPC public turns it off; `at`: where the entry names the RPC.
    Auth {
        verifier: &'a Expr,
        general: bool,
        at: proc_macro2::Span,
    },
    /// Neither: the `.proto` must declare it public (checked at compile time).
    FromProto,
}

pub(crate) use limits::{Limits, spec_of};

/// Checks every rule; the plan is meaningful only if `cx` holds no error.
pub(crate) fn check<'a>(
    cx: &Ctxt,
    args: &'a Args,
    service: &'a Service,
    ids: &EntryRpcs,
) -> Plan<'a> {
    let mut access_entries = access::AccessEntries::new(service);
    let mut limit_entries = limits::LimitEntries::new(service);
    for (entry, ids) in args.entries.iter().zip(ids) {
        match entry {
            Entry::Public(p) => access_entries.public(cx, p, ids),
            Entry::Auth(a) => access_entries.auth(cx, a, ids),
            Entry::Limit(l) => limit_entries.entry(cx, l, ids),
            Entry::Idempotency(i) => {
                entries::idempotency_on_one_unary_rpc(cx, service, i, ids);
                entries::value_before_rpcs(cx, &i.kw, &i.cache, "self.cache", service);
            }
            Entry::Roles(r) => entries::roles_require_something(cx, r),
            Entry::Metrics(m) => {
                entries::value_before_rpcs(cx, &m.kw, &m.value, "self.metrics", service);
            }
            Entry::Trace(t) => {
                if let Some(value) = &t.value {
                    let example = "self.trace: TraceCalls";
                    entries::value_before_rpcs(cx, &t.kw, value, example, service);
                }
            }
            Entry::Hook(_) | Entry::Recover(_) | Entry::Validate(_) => {}
        }
    }
    let access = access_entries.finish(cx);
    let rpcs: Vec<RpcPlan> = service
        .rpcs
        .iter()
        .zip(access)
        .enumerate()
        .map(|(id, (rpc, access))| plan::rpc_plan(cx, args, ids, id, rpc, access))
        .collect();
    entries::general_roles_apply(cx, args, &rpcs);
    Plan { rpcs }
}

/// `none` as a limit's value.
fn is_none(value: &LimitValue) -> bool {
    value.word().is_some_and(|w| w == "none")
}
