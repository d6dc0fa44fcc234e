//! Each RPC's plan: the entries that cover it, with the rules that need the whole RPC.

use proc_macro2::Span;
use syn::Ident;

use super::limits::spec_of;
use super::{Access, Limits, RpcPlan};
use crate::ctxt::Ctxt;
use crate::parse::{self, Args, Entry, Limit};
use crate::resolve::{EntryRpcs, RpcId, RpcMethod};
use quote::ToTokens;
use tonic_intercept_spec::limit_key;

pub(super) fn rpc_plan<'a>(
    cx: &Ctxt,
    args: &'a Args,
    ids: &EntryRpcs,
    id: RpcId,
    rpc: &'a RpcMethod,
    access: Access<'a>,
) -> RpcPlan<'a> {
    let mut plan = RpcPlan {
        rpc,
        access,
        roles: None,
        hooks: Vec::new(),
        limits: Limits::default(),
        specific: Vec::new(),
        named_in_limit: false,
        metrics: None,
        trace: None,
        recover: false,
        validate: None,
        idempotency: None,
        shared: None,
    };
    let (mut general, mut specific) = (Vec::new(), Vec::new());
    for (entry, ids) in args.entries.iter().zip(ids) {
        let names_it = ids.contains(&Some(id));
        if !ids.is_empty() && !names_it {
            continue;
        }
        match entry {
            Entry::Limit(l) if l.rpcs.is_empty() => general.push(l),
            Entry::Limit(l) => {
                plan.named_in_limit = true;
                specific.push(l);
            }
            _ => cover(cx, &mut plan, entry, names_it),
        }
    }
    merge_limits(cx, &mut plan, &general, &specific);
    per_identity_rate_has_identity(cx, &plan);
    plan
}

// Each policy applies once per RPC: a second entry covering the same RPC would leave it
// unclear which one (or whether both) runs. Roles need a verified identity, so they are
// refused on a public RPC rather than silently skipped.
fn cover<'a>(cx: &Ctxt, plan: &mut RpcPlan<'a>, entry: &'a Entry, names_it: bool) {
    let name = &plan.rpc.name;
    // Where errors about this RPC in the entry point: its name there, or the keyword.
    let at = entry
        .rpc_names()
        .iter()
        .find(|i| **i == *name)
        .map_or_else(|| entry.span(), Ident::span);
    let once = |seen: bool, what: &str| {
        if seen {
            cx.error_at(at, format!("`{what}` is configured twice for `{name}`"));
        }
    };
    match entry {
        Entry::Public(_) | Entry::Auth(_) | Entry::Limit(_) => {}
        Entry::Hook(h) => plan.hooks.push(h),
        Entry::Roles(r) => {
            once(plan.roles.is_some(), "roles(..)");
            // `roles("admin")` for every RPC means every authenticated one.
            let authenticated = matches!(plan.access, Access::Auth { .. });
            if r.rpcs.is_empty() && !authenticated {
                return;
            }
            if matches!(plan.access, Access::Public) {
                cx.error_at(at, format!("`{name}` is public, so there is no verified identity whose roles `roles(..)` could check; remove it from `public(..)` or from `roles(..)`"));
            }
            plan.roles = Some(r);
        }
        Entry::Metrics(m) => {
            once(plan.metrics.is_some(), "metrics(..)");
            plan.metrics = Some(&m.value);
        }
        Entry::Trace(t) => {
            once(plan.trace.is_some(), "trace");
            plan.trace = Some(t);
        }
        Entry::Recover(_) => {
            once(plan.recover, "recover");
            plan.recover = true;
        }
        Entry::Validate(_) => {
            once(plan.validate.is_some(), "validate");
            plan.validate = Some(at);
        }
        Entry::Idempotency(i) if names_it => {
            once(plan.idempotency.is_some(), "idempotency(..)");
            plan.idempotency = Some(&i.cache);
        }
        Entry::Idempotency(_) => {}
    }
}

// A `limit` naming the RPC wins over one for every RPC, whatever their order. A general
// key applies where it fits: stream keys where that side streams, a per-identity rate
// where there is an identity. The keys of a `limit(.., shared = ..)` live in its backend.
fn merge_limits<'a>(
    cx: &Ctxt,
    plan: &mut RpcPlan<'a>,
    general: &[&'a Limit],
    specific: &[&'a Limit],
) {
    let identified = matches!(plan.access, Access::Auth { .. });
    for limit in general {
        let shared = limit.shared.is_some();
        for key in &limit.keys {
            let Some(spec) = spec_of(key) else { continue };
            if spec.needs_identity && !identified {
                continue;
            }
            if spec.fits(plan.rpc.kind) {
                plan.limits.set(spec, &key.value, shared);
            }
        }
    }
    for limit in specific {
        for key in &limit.keys {
            if let Some(spec) = spec_of(key) {
                plan.limits.set(spec, &key.value, limit.shared.is_some());
            }
            plan.specific.push(key);
        }
    }
    if !plan.limits.any_shared() {
        return;
    }
    // The backend of the shared keys that remain: a general one, then a specific one.
    for limit in general.iter().chain(specific) {
        let Some(shared) = &limit.shared else {
            continue;
        };
        one_backend_per_rpc(cx, plan, shared);
        plan.shared = Some(&shared.backend);
    }
}

// An RPC's shared rates are asked of one backend in one step; two backends for one RPC
// would be two stores whose refusals the server cannot order.
fn one_backend_per_rpc(cx: &Ctxt, plan: &RpcPlan, shared: &parse::Shared) {
    let Some(before) = plan.shared else { return };
    let text = |e: &syn::Expr| e.to_token_stream().to_string().replace(' ', "");
    if text(before) != text(&shared.backend) {
        let message = format!(
            "`{}`'s shared call rates name two backends, `{}` and `{}`; keep its rates in one",
            plan.rpc.name,
            text(before),
            text(&shared.backend)
        );
        cx.error_at(shared.kw.span(), message);
    }
}

// A per-identity rate keys its buckets by the verified identity; without `auth(..)`
// there is none, and the rate would silently never apply.
fn per_identity_rate_has_identity(cx: &Ctxt, plan: &RpcPlan) {
    if matches!(plan.access, Access::Auth { .. }) {
        return;
    }
    for written in &plan.specific {
        let Some(spec) = spec_of(written).filter(|s| s.needs_identity) else {
            continue;
        };
        if !plan.limits.is_set(spec.name) {
            continue;
        }
        let key = spec.name;
        // The same limit for all callers, where the table has one: `calls_per_second`.
        let instead = key
            .strip_suffix("_per_identity")
            .filter(|k| limit_key(k).is_some())
            .map(|k| format!("use `{k}`, or "))
            .unwrap_or_default();
        let span: Span = written.name.span();
        cx.error_at(span, format!("`{key}` needs a verified identity, but `{}` is not covered by `auth(..)`; {instead}cover it with `auth(..)`", plan.rpc.name));
    }
}
