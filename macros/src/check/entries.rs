//! Rules about single entries other than access and limits.

use syn::{Expr, Ident};

use super::RpcPlan;
use crate::ctxt::Ctxt;
use crate::parse::{Args, Entry, Idempotency, Roles};
use crate::resolve::{RpcId, Service};

// A replay cache stores one response per key, so it fits unary RPCs only; and its type
// is tied to one RPC's messages, so the entry names exactly one.
pub(super) fn idempotency_on_one_unary_rpc(
    cx: &Ctxt,
    service: &Service,
    entry: &Idempotency,
    ids: &[Option<RpcId>],
) {
    let [ident] = entry.rpcs.as_slice() else {
        let first = service.rpcs.first().map_or("MyRpc", |r| r.name.as_str());
        cx.error_at(
            entry.kw.span(),
            format!("`idempotency(..)` needs its cache and exactly one unary RPC: `idempotency(self.cache, {first})`; its cache is typed by that RPC"),
        );
        return;
    };
    let Some(Some(id)) = ids.first() else { return };
    let rpc = &service.rpcs[*id];
    if rpc.kind.streams() {
        cx.error_at(
            ident.span(),
            format!(
                "`idempotency(..)` replays a stored response, so it applies to unary RPCs only, but `{}` is {}",
                rpc.name,
                rpc.kind.describe()
            ),
        );
    }
}

// `metrics(ListUsers)`: an RPC name where the value belongs. Without this rule the
// RPC's name would be taken for a value and fail later with an unrelated type error.
pub(super) fn value_before_rpcs(
    cx: &Ctxt,
    kw: &Ident,
    value: &Expr,
    example: &str,
    service: &Service,
) {
    if let Expr::Path(path) = value
        && let Some(ident) = path.path.get_ident()
        && service.rpcs.iter().any(|r| *ident == r.name)
    {
        cx.error_at(
            ident.span(),
            format!("`{kw}(..)` takes its value first, then RPC names: `{kw}({example}, {ident})`"),
        );
    }
}

// `roles()` would require nothing, and an empty role can match no identity: both read
// as a check while checking nothing.
pub(super) fn roles_require_something(cx: &Ctxt, entry: &Roles) {
    if entry.roles.is_empty() && entry.rpcs.is_empty() {
        cx.error_at(entry.kw.span(), "`roles()` requires nothing: list roles, `roles(\"admin\")`, or name RPCs whose roles the .proto declares, `roles(DeleteUser)`");
    }
    for role in &entry.roles {
        if role.value().trim().is_empty() {
            cx.error_at(role.span(), "a role cannot be empty");
        }
    }
}

// `roles("admin")` for every RPC covers the authenticated ones; with none, it is a
// policy that does nothing, which is a mistake.
pub(super) fn general_roles_apply(cx: &Ctxt, args: &Args, plans: &[RpcPlan]) {
    for entry in &args.entries {
        if let Entry::Roles(r) = entry
            && r.rpcs.is_empty()
            && !plans
                .iter()
                .any(|p| p.roles.is_some_and(|covered| std::ptr::eq(covered, r)))
        {
            cx.error_at(r.kw.span(), "`roles(..)` applies to no RPC: it checks the identity of RPCs covered by `auth(..)`, and none is");
        }
    }
}
