//! Each RPC's plan: the entries that cover it, with the rules that need the whole RPC.

use proc_macro2::Span;
use syn::Ident;

use super::limits::spec_of;
use super::{Access, Limits, RpcPlan};
use crate::ctxt::Ctxt;
use crate::parse::{self, Args, Entry, Limit};
use crate::resolve::{EntryRpcs, RpcId, RpcMethod};
use quote::ToTokens;
use tonic_intercept_spec::{LIMIT_KEYS, LimitKey, limit_key};

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
    // The `shared = ..` each key was set under, by its place in the table.
    let mut backends: Vec<Option<&'a parse::Shared>> = vec![None; LIMIT_KEYS.len()];
    let mut set =
        |plan: &mut RpcPlan<'a>, spec: &LimitKey, key: &parse::LimitKey, limit: &'a Limit| {
            plan.limits.set(spec, &key.value, limit.shared.is_some());
            let place = |name: &str| LIMIT_KEYS.iter().position(|k| k.name == name);
            if let Some(i) = place(spec.name) {
                backends[i] = limit.shared.as_ref();
            }
        };
    for limit in general {
        for key in &limit.keys {
            let Some(spec) = spec_of(key) else { continue };
            if spec.needs_identity && !identified {
                continue;
            }
            if spec.fits(plan.rpc.kind) {
                set(plan, spec, key, limit);
            }
        }
    }
    for limit in specific {
        let earlier = plan.specific.len();
        for key in &limit.keys {
            if let Some(spec) = spec_of(key) {
                once_across_local_and_shared(cx, plan, earlier, key, spec);
                set(plan, spec, key, limit);
            }
            plan.specific.push(key);
        }
    }
    // The backend of the shared keys that remain (a key replaced by the RPC's own
    // `limit(..)` takes its entry's backend with it).
    for (key, _, shared) in plan.limits.iter_sharing() {
        let place = LIMIT_KEYS.iter().position(|k| k.name == key.name);
        let Some(backend) = place.and_then(|i| backends[i]).filter(|_| shared) else {
            continue;
        };
        if !one_backend_per_rpc(cx, plan.rpc, plan.shared, backend) {
            return;
        }
        plan.shared = Some(&backend.backend);
    }
}

// An RPC's local `limit(..)` and its shared one each set their own keys: a rate in both
// (or in both units, one in each) would leave two buckets for the same calls.
fn once_across_local_and_shared(
    cx: &Ctxt,
    plan: &RpcPlan,
    earlier: usize,
    key: &parse::LimitKey,
    spec: &tonic_intercept_spec::LimitKey,
) {
    let earlier = plan.specific[..earlier]
        .iter()
        .filter_map(|k| spec_of(k))
        .find(|k| k.name == spec.name || Some(k.name) == spec.rival);
    if let Some(earlier) = earlier {
        let message = if earlier.name == spec.name {
            format!(
                "`{}` is set for `{}` in two `limit(..)`; keep it in one",
                spec.name, plan.rpc.name
            )
        } else {
            format!(
                "`{}` and `{}` are the same limit in two units, set for `{}` in two `limit(..)`; keep one",
                spec.name, earlier.name, plan.rpc.name
            )
        };
        cx.error_at(key.name.span(), message);
    }
}

// An RPC's shared rates are asked of one backend in one step; two backends for one RPC
// would be two stores whose refusals the server cannot order.
fn one_backend_per_rpc(
    cx: &Ctxt,
    rpc: &RpcMethod,
    before: Option<&syn::Expr>,
    shared: &parse::Shared,
) -> bool {
    let Some(before) = before else { return true };
    let text = |e: &syn::Expr| e.to_token_stream().to_string().replace(' ', "");
    if text(before) != text(&shared.backend) {
        let message = format!(
            "`{}`'s shared call rates name two backends, `{}` and `{}`; keep its rates in one",
            rpc.name,
            text(before),
            text(&shared.backend)
        );
        cx.error_at(shared.kw.span(), message);
        return false;
    }
    true
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
