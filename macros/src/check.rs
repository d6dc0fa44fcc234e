//! The rules a policy must obey, checked before anything is generated. Every mistake in
//! one attribute is collected, so a single build shows them all.

use syn::{Expr, Ident};

use crate::attr::{self, Args, Entry, LimitValue, Rpcs};
use crate::service::{RpcMethod, Service};

/// What to generate for each RPC.
pub struct Plan<'a> {
    pub rpcs: Vec<RpcPlan<'a>>,
}

/// One RPC's policies. They run in a fixed, documented order whatever the order of the
/// entries: recovery, tracing, metrics, deadline, auth, roles, admission (concurrency,
/// call rate), hooks' `on_call`; then per message: limits, validation, hooks; then the
/// idempotency replay and the handler.
pub struct RpcPlan<'a> {
    pub rpc: &'a RpcMethod,
    pub access: Access<'a>,
    /// The `roles(..)` entry covering this RPC; no role strings: the `.proto`'s.
    pub roles: Option<&'a attr::Roles>,
    /// The user's hooks in declared order.
    pub hooks: Vec<&'a attr::Hook>,
    pub limits: Limits,
    /// Keys set by a `limit(..)` naming this RPC: they must agree with the `.proto`.
    pub specific: Vec<&'a attr::LimitKey>,
    /// Named in a `limit(..)`, even without keys: guarded, so the `.proto`'s limits apply.
    pub named_in_limit: bool,
    pub metrics: Option<&'a Expr>,
    pub trace: Option<&'a attr::Trace>,
    pub recover: bool,
    /// Where `validate` names this RPC (or the keyword, for every RPC).
    pub validate: Option<proc_macro2::Span>,
    pub idempotency: Option<&'a Expr>,
}

/// Who may call an RPC.
pub enum Access<'a> {
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

/// The limits of one RPC: each key's value as written (a literal or a constant).
#[derive(Default, Clone)]
pub struct Limits {
    pub max_messages_in: Option<LimitValue>,
    pub max_messages_out: Option<LimitValue>,
    pub max_message_bytes: Option<LimitValue>,
    pub messages_per_second_in: Option<LimitValue>,
    pub messages_per_second_out: Option<LimitValue>,
    pub burst: Option<LimitValue>,
    pub reject_when_too_fast: bool,
    pub timeout_ms: Option<LimitValue>,
    pub idle_timeout_ms: Option<LimitValue>,
    pub max_in_flight: Option<LimitValue>,
    pub calls_per_second: Option<LimitValue>,
    pub call_burst: Option<LimitValue>,
    pub calls_per_second_per_identity: Option<LimitValue>,
    pub queue: Option<LimitValue>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.max_messages_in.is_none()
            && self.max_messages_out.is_none()
            && self.max_message_bytes.is_none()
            && self.messages_per_second_in.is_none()
            && self.messages_per_second_out.is_none()
            && self.timeout_ms.is_none()
            && self.idle_timeout_ms.is_none()
            && !self.admits()
    }

    /// Whether anything limits calls (rather than messages).
    pub fn admits(&self) -> bool {
        self.max_in_flight.is_some()
            || self.calls_per_second.is_some()
            || self.calls_per_second_per_identity.is_some()
    }
}

const LIMIT_KEYS: &str = "max_messages_in, max_messages_out, max_message_bytes, messages_per_second_in, messages_per_second_out, burst, on_rate_exceeded, timeout_ms, idle_timeout_ms, max_in_flight, calls_per_second, call_burst, calls_per_second_per_identity, queue";

/// Which side of an RPC a limit key needs to be streaming.
#[derive(Clone, Copy, PartialEq)]
enum Needs {
    Nothing,
    RequestStream,
    ResponseStream,
    AnyStream,
}

fn needs(key: &str) -> Option<Needs> {
    Some(match key {
        "max_messages_in" | "messages_per_second_in" => Needs::RequestStream,
        "max_messages_out" | "messages_per_second_out" => Needs::ResponseStream,
        "idle_timeout_ms" => Needs::AnyStream,
        "max_message_bytes"
        | "timeout_ms"
        | "burst"
        | "on_rate_exceeded"
        | "max_in_flight"
        | "calls_per_second"
        | "call_burst"
        | "calls_per_second_per_identity"
        | "queue" => Needs::Nothing,
        _ => return None,
    })
}

fn fits(rpc: &RpcMethod, needs: Needs) -> bool {
    match needs {
        Needs::Nothing => true,
        Needs::RequestStream => rpc.client_streaming,
        Needs::ResponseStream => rpc.server_streaming,
        Needs::AnyStream => rpc.client_streaming || rpc.server_streaming,
    }
}

#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(e) => e.combine(error),
            None => self.0 = Some(error),
        }
    }
    fn at(&mut self, span: proc_macro2::Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }
}

pub fn check<'a>(args: &'a Args, service: &'a Service) -> syn::Result<Plan<'a>> {
    let mut errors = Errors::default();

    // Every RPC name must exist: a typo would otherwise silently leave an RPC without
    // the policy the user meant for it.
    let mut resolve = |ident: &Ident| -> Option<usize> {
        let name = ident.to_string();
        let found = service.rpcs.iter().position(|r| r.name == name);
        if found.is_none() {
            let hint = match nearest(&name, service) {
                Some(near) => format!("; did you mean `{near}`?"),
                None => String::new(),
            };
            errors.at(
                ident.span(),
                format!(
                    "`{name}` is not an RPC of `{}`{hint} (its RPCs: {})",
                    service.name,
                    service.names()
                ),
            );
        }
        found
    };

    let n = service.rpcs.len();
    let mut resolved: Vec<Vec<Option<usize>>> = Vec::new();
    for entry in &args.entries {
        resolved.push(names_of(entry).iter().map(&mut resolve).collect());
    }

    // Deny by default: each RPC is public or has exactly one auth rule, so that no
    // RPC (a streaming one added later, say) is reachable without anyone deciding it.
    let mut public = vec![false; n];
    let mut all_public: Option<&Ident> = None;
    let mut specific_auth: Vec<Option<(&Expr, proc_macro2::Span)>> = vec![None; n];
    let mut general_auth: Option<&Expr> = None;
    let mut general_limit = false;
    let mut specific_limit = vec![false; n];
    for (entry, ids) in args.entries.iter().zip(&resolved) {
        match entry {
            Entry::Public(p) => {
                if let Rpcs::All = &p.rpcs {
                    if all_public.is_some() {
                        errors.at(p.kw.span(), "`public(*)` is configured twice");
                    }
                    all_public = Some(&p.kw);
                }
                for (ident, id) in names_of(entry).iter().zip(ids) {
                    let Some(id) = *id else { continue };
                    if public[id] {
                        errors.at(ident.span(), format!("`{ident}` is configured twice: it is already listed in `public(..)`"));
                    }
                    public[id] = true;
                }
            }
            Entry::Auth(a) => {
                if a.rpcs.is_empty() {
                    if general_auth.is_some() {
                        errors.at(
                            a.kw.span(),
                            format!(
                                "`auth(..)` for every RPC is configured twice; keep one, or name the RPCs each verifier covers: `auth(self.admin, {})`",
                                service.rpcs.last().map_or("MyRpc", |r| r.name.as_str())
                            ),
                        );
                    }
                    general_auth = Some(&a.verifier);
                }
                for (ident, id) in a.rpcs.iter().zip(ids) {
                    let Some(id) = *id else { continue };
                    if specific_auth[id].is_some() {
                        errors.at(ident.span(), format!("`{ident}` is configured twice: another `auth(.., {ident})` already covers it"));
                    }
                    specific_auth[id] = Some((&a.verifier, ident.span()));
                }
            }
            Entry::Limit(l) => {
                check_limit_keys(l, &mut errors);
                if l.rpcs.is_empty() {
                    if general_limit {
                        errors.at(l.kw.span(), "`limit(..)` for every RPC is configured twice; merge the keys into one `limit(..)`");
                    }
                    general_limit = true;
                    for key in &l.keys {
                        let key_name = key.name.to_string();
                        if let Some(need) = needs(&key_name)
                            && !service.rpcs.iter().any(|r| fits(r, need))
                        {
                            let side = match need {
                                Needs::RequestStream => "its requests",
                                Needs::ResponseStream => "its responses",
                                _ => "either way",
                            };
                            errors.at(key.name.span(), format!("`{key_name}` applies to no RPC: no RPC of `{}` streams {side}", service.name));
                        }
                    }
                }
                for (ident, id) in l.rpcs.iter().zip(ids) {
                    let Some(id) = *id else { continue };
                    if specific_limit[id] {
                        errors.at(ident.span(), format!("`{ident}` is configured twice: merge its keys into one `limit({ident}, ..)`"));
                    }
                    specific_limit[id] = true;
                    check_limit_fits(l, &service.rpcs[id], &mut errors);
                }
            }
            Entry::Idempotency(i) => match i.rpcs.as_slice() {
                [ident] => {
                    if let Some(Some(id)) = ids.first() {
                        let rpc = &service.rpcs[*id];
                        if rpc.client_streaming || rpc.server_streaming {
                            errors.at(ident.span(), format!("`idempotency(..)` replays a stored response, so it applies to unary RPCs only, but `{}` is {}", rpc.name, rpc.kind()));
                        }
                    }
                }
                _ => errors.at(i.kw.span(), format!("`idempotency(..)` needs its cache and exactly one unary RPC: `idempotency(self.cache, {})`; its cache is typed by that RPC", service.rpcs.first().map_or("MyRpc", |r| r.name.as_str()))),
            },
            Entry::Roles(r) => {
                if r.roles.is_empty() && r.rpcs.is_empty() {
                    errors.at(r.kw.span(), "`roles()` requires nothing: list roles, `roles(\"admin\")`, or name RPCs whose roles the .proto declares, `roles(DeleteUser)`");
                }
                for role in &r.roles {
                    if role.value().trim().is_empty() {
                        errors.at(role.span(), "a role cannot be empty");
                    }
                }
            }
            Entry::Metrics(m) => value_not_rpc(&m.kw, &m.value, "self.metrics", service, &mut errors),
            Entry::Trace(t) => {
                if let Some(value) = &t.value {
                    value_not_rpc(&t.kw, value, "self.trace: TraceCalls", service, &mut errors);
                }
            }
            Entry::Hook(_) | Entry::Recover(_) | Entry::Validate(_) => {}
        }
        if let Entry::Idempotency(i) = entry {
            value_not_rpc(&i.kw, &i.cache, "self.cache", service, &mut errors);
        }
    }
    if let Some(kw) = all_public {
        if general_auth.is_some() || specific_auth.iter().any(Option::is_some) {
            errors.at(kw.span(), "`public(*)` makes every RPC public, so `auth(..)` would cover nothing; remove one of them");
        }
        public = vec![true; n];
    }
    for (id, rpc) in service.rpcs.iter().enumerate() {
        if public[id] && specific_auth[id].is_some() {
            errors.at(
                rpc.ident.span(),
                format!(
                    "`{}` is both public and covered by `auth(.., {})`; choose one",
                    rpc.name, rpc.name
                ),
            );
        }
    }
    // An RPC neither public nor covered by auth here must be public in its `.proto`;
    // the expansion asserts it, because only the compiler sees the generated constants.

    let mut plans = Vec::new();
    for (id, rpc) in service.rpcs.iter().enumerate() {
        let access = if public[id] {
            Access::Public
        } else if let Some((verifier, at)) = specific_auth[id] {
            Access::Auth {
                verifier,
                general: false,
                at,
            }
        } else if let Some(verifier) = general_auth {
            Access::Auth {
                verifier,
                general: true,
                at: syn::spanned::Spanned::span(verifier),
            }
        } else {
            Access::FromProto
        };
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
        };
        let (mut general, mut specific) = (Vec::new(), Vec::new());
        let applies = |ids: &[Option<usize>]| ids.is_empty() || ids.contains(&Some(id));
        let names_it = |ids: &[Option<usize>]| ids.contains(&Some(id));
        // The first RPC name of an entry, where a "configured twice" error points.
        let at = |entry: &Entry| {
            names_of(entry)
                .iter()
                .find(|i| **i == rpc.name)
                .map_or_else(|| entry_span(entry), Ident::span)
        };
        let twice = |errors: &mut Errors, entry: &Entry, what: &str| {
            errors.at(
                at(entry),
                format!("`{what}` is configured twice for `{}`", rpc.name),
            );
        };
        for (entry, ids) in args.entries.iter().zip(&resolved) {
            if !applies(ids) {
                continue;
            }
            match entry {
                Entry::Public(_) | Entry::Auth(_) => {}
                Entry::Hook(h) => plan.hooks.push(h),
                Entry::Limit(l) => {
                    if l.rpcs.is_empty() {
                        general.push(l);
                    } else {
                        plan.named_in_limit = true;
                        specific.push(l);
                    }
                }
                Entry::Roles(r) => {
                    if plan.roles.is_some() {
                        twice(&mut errors, entry, "roles(..)");
                    }
                    // `roles("admin")` for every RPC means every authenticated one.
                    if r.rpcs.is_empty() && !matches!(plan.access, Access::Auth { .. }) {
                        continue;
                    }
                    if matches!(plan.access, Access::Public) {
                        errors.at(at(entry), format!("`{}` is public, so there is no verified identity whose roles `roles(..)` could check; remove it from `public(..)` or from `roles(..)`", rpc.name));
                    }
                    plan.roles = Some(r);
                }
                Entry::Metrics(m) => {
                    if plan.metrics.is_some() {
                        twice(&mut errors, entry, "metrics(..)");
                    }
                    plan.metrics = Some(&m.value);
                }
                Entry::Trace(t) => {
                    if plan.trace.is_some() {
                        twice(&mut errors, entry, "trace");
                    }
                    plan.trace = Some(t);
                }
                Entry::Recover(_) => {
                    if plan.recover {
                        twice(&mut errors, entry, "recover");
                    }
                    plan.recover = true;
                }
                Entry::Validate(_) => {
                    if plan.validate.is_some() {
                        twice(&mut errors, entry, "validate");
                    }
                    plan.validate = Some(at(entry));
                }
                Entry::Idempotency(i) if names_it(ids) => {
                    if plan.idempotency.is_some() {
                        twice(&mut errors, entry, "idempotency(..)");
                    }
                    plan.idempotency = Some(&i.cache);
                }
                Entry::Idempotency(_) => {}
            }
        }
        // A `limit` naming the RPC wins over one for every RPC, whatever their order.
        // A general key applies where it fits: stream keys where that side streams, a
        // per-identity rate where there is an identity.
        let identified = matches!(plan.access, Access::Auth { .. });
        for l in general {
            for key in &l.keys {
                let name = key.name.to_string();
                if name == "calls_per_second_per_identity" && !identified {
                    continue;
                }
                if fits(rpc, needs(&name).unwrap_or(Needs::Nothing)) {
                    apply(&mut plan.limits, &name, &key.value);
                }
            }
        }
        for l in specific {
            for key in &l.keys {
                apply(&mut plan.limits, &key.name.to_string(), &key.value);
                plan.specific.push(key);
            }
        }
        if let Some(per_identity) = specific_key(&plan, "calls_per_second_per_identity")
            && plan.limits.calls_per_second_per_identity.is_some()
            && !matches!(plan.access, Access::Auth { .. })
        {
            errors.at(per_identity.name.span(), format!("`calls_per_second_per_identity` needs a verified identity, but `{}` is not covered by `auth(..)`; use `calls_per_second`, or cover it with `auth(..)`", rpc.name));
        }
        plans.push(plan);
    }

    // `roles("admin")` for every RPC covers the authenticated ones; with none, it is a
    // policy that does nothing, which is a mistake.
    for entry in &args.entries {
        if let Entry::Roles(r) = entry
            && r.rpcs.is_empty()
            && !plans
                .iter()
                .any(|p| p.roles.is_some_and(|covered| std::ptr::eq(covered, r)))
        {
            errors.at(r.kw.span(), "`roles(..)` applies to no RPC: it checks the identity of RPCs covered by `auth(..)`, and none is");
        }
    }

    match errors.0 {
        Some(e) => Err(e),
        None => Ok(Plan { rpcs: plans }),
    }
}

/// `metrics(ListUsers)`: an RPC name where the value belongs.
fn value_not_rpc(kw: &Ident, value: &Expr, example: &str, service: &Service, errors: &mut Errors) {
    if let Expr::Path(path) = value
        && let Some(ident) = path.path.get_ident()
        && service.rpcs.iter().any(|r| *ident == r.name)
    {
        errors.at(
            ident.span(),
            format!("`{kw}(..)` takes its value first, then RPC names: `{kw}({example}, {ident})`"),
        );
    }
}

fn specific_key<'a>(plan: &RpcPlan<'a>, key: &str) -> Option<&'a attr::LimitKey> {
    plan.specific.iter().copied().find(|k| k.name == key)
}

fn entry_span(entry: &Entry) -> proc_macro2::Span {
    match entry {
        Entry::Public(p) => p.kw.span(),
        Entry::Auth(a) => a.kw.span(),
        Entry::Roles(r) => r.kw.span(),
        Entry::Limit(l) => l.kw.span(),
        Entry::Hook(h) => syn::spanned::Spanned::span(&h.ty),
        Entry::Metrics(m) => m.kw.span(),
        Entry::Trace(t) => t.kw.span(),
        Entry::Recover(s) | Entry::Validate(s) => s.kw.span(),
        Entry::Idempotency(i) => i.kw.span(),
    }
}

fn names_of(entry: &Entry) -> &[Ident] {
    match entry {
        Entry::Public(p) => match &p.rpcs {
            Rpcs::All => &[],
            Rpcs::Named(names) => names,
        },
        Entry::Auth(a) => &a.rpcs,
        Entry::Limit(l) => &l.rpcs,
        Entry::Hook(h) => &h.rpcs,
        Entry::Roles(r) => &r.rpcs,
        Entry::Metrics(m) => &m.rpcs,
        Entry::Trace(t) => &t.rpcs,
        Entry::Recover(s) | Entry::Validate(s) => &s.rpcs,
        Entry::Idempotency(i) => &i.rpcs,
    }
}

/// Sets a key; `none` clears it.
fn apply(limits: &mut Limits, key: &str, value: &LimitValue) {
    let slot = match key {
        "max_messages_in" => &mut limits.max_messages_in,
        "max_messages_out" => &mut limits.max_messages_out,
        "max_message_bytes" => &mut limits.max_message_bytes,
        "messages_per_second_in" => &mut limits.messages_per_second_in,
        "messages_per_second_out" => &mut limits.messages_per_second_out,
        "burst" => &mut limits.burst,
        "timeout_ms" => &mut limits.timeout_ms,
        "idle_timeout_ms" => &mut limits.idle_timeout_ms,
        "max_in_flight" => &mut limits.max_in_flight,
        "calls_per_second" => &mut limits.calls_per_second,
        "call_burst" => &mut limits.call_burst,
        "calls_per_second_per_identity" => &mut limits.calls_per_second_per_identity,
        "queue" => &mut limits.queue,
        "on_rate_exceeded" => {
            limits.reject_when_too_fast = value.word().is_some_and(|w| w == "reject");
            return;
        }
        _ => return,
    };
    *slot = match value.word() {
        Some(w) if w == "none" => None,
        _ => Some(value.clone()),
    };
}

fn value_span(value: &LimitValue) -> proc_macro2::Span {
    match value {
        LimitValue::Int(v) => v.span(),
        LimitValue::Path(p) => syn::spanned::Spanned::span(p),
    }
}

// Keys are checked where they are written, so each error points at the key or value.
fn check_limit_keys(limit: &attr::Limit, errors: &mut Errors) {
    // `limit(ListItems)` alone guards the RPC so that the `.proto`'s limits apply.
    if limit.keys.is_empty() && limit.rpcs.is_empty() {
        errors.at(
            limit.kw.span(),
            format!("`limit(..)` sets nothing; add at least one of: {LIMIT_KEYS}"),
        );
    }
    let mut seen: Vec<String> = Vec::new();
    let mut has_rate = false;
    for key in &limit.keys {
        let name = key.name.to_string();
        if needs(&name).is_none() {
            errors.at(
                key.name.span(),
                format!("unknown limit `{name}`; valid keys are: {LIMIT_KEYS}"),
            );
            continue;
        }
        if seen.contains(&name) {
            errors.at(
                key.name.span(),
                format!("`{name}` is set twice in this `limit(..)`"),
            );
        }
        seen.push(name.clone());
        has_rate |= name.starts_with("messages_per_second");
        let word = key.value.word().map(Ident::to_string);
        match (&key.value, name.as_str(), word.as_deref()) {
            (_, "on_rate_exceeded", Some("delay" | "reject")) => {}
            (_, "on_rate_exceeded", _) => {
                errors.at(
                    value_span(&key.value),
                    "`on_rate_exceeded` is `delay` (backpressure) or `reject` (RESOURCE_EXHAUSTED)",
                );
            }
            (_, _, Some("none")) if limit.rpcs.is_empty() => {
                errors.at(
                    value_span(&key.value),
                    format!("`{name} = none` switches a limit off for the RPCs named in `limit(Rpc, ..)`; here, leave `{name}` out"),
                );
            }
            (_, "burst", Some("none")) => {
                errors.at(value_span(&key.value), "`burst` cannot be `none`; leave it out for the default of 1");
            }
            (LimitValue::Int(v), "queue", _) if v.base10_parse::<u64>().is_ok_and(|x| x > u64::from(u32::MAX)) => {
                errors.at(v.span(), "`queue` must fit in a u32");
            }
            (_, _, Some("none")) => {}
            (_, _, Some(w @ ("delay" | "reject"))) => {
                errors.at(
                    value_span(&key.value),
                    format!("`{name}` takes a number or a constant, not `{w}`"),
                );
            }
            // A constant is checked where it is used: the expansion asserts it is at
            // least 1, at this path.
            (LimitValue::Path(_), _, _) => {}
            (LimitValue::Int(v), _, _) => match v.base10_parse::<u64>() {
                Ok(0) => errors.at(v.span(), format!("`{name}` must be at least 1: a limit of zero would refuse everything; to leave it unlimited, remove the key")),
                Ok(x) if name.starts_with("messages_per_second")
                    || name.starts_with("calls_per_second")
                    || name.ends_with("burst")
                    || name == "max_in_flight" =>
                {
                    if x > u64::from(u32::MAX) {
                        errors.at(v.span(), format!("`{name}` must fit in a u32"));
                    }
                }
                Ok(_) => {}
                Err(e) => errors.at(v.span(), format!("`{name}` must be a whole number: {e}")),
            },
        }
    }
    let has = |k: &str| limit.keys.iter().any(|key| key.name == k);
    for key in &limit.keys {
        let name = key.name.to_string();
        if (name == "burst" || name == "on_rate_exceeded") && !has_rate {
            errors.at(key.name.span(), format!("`{name}` shapes a rate: add `messages_per_second_in` or `messages_per_second_out` to this `limit(..)`"));
        }
        if name == "call_burst" && !has("calls_per_second") {
            errors.at(key.name.span(), "`call_burst` shapes `calls_per_second`: add `calls_per_second` to this `limit(..)`");
        }
        if name == "queue"
            && !has("max_in_flight")
            && !has("calls_per_second")
            && !has("calls_per_second_per_identity")
        {
            errors.at(key.name.span(), "`queue` holds calls that `max_in_flight` or `calls_per_second` would refuse: add one of them to this `limit(..)`");
        }
    }
}

// A stream limit on an RPC whose side does not stream can never act: it is a mistake
// about the RPC, so it is refused rather than ignored.
fn check_limit_fits(limit: &attr::Limit, rpc: &RpcMethod, errors: &mut Errors) {
    for key in &limit.keys {
        let name = key.name.to_string();
        let Some(need) = needs(&name) else { continue };
        if fits(rpc, need) {
            continue;
        }
        if need == Needs::AnyStream {
            errors.at(
                key.name.span(),
                format!(
                    "`{name}` limits the wait for a stream's next message, but `{}` is unary: use `timeout_ms`",
                    rpc.name
                ),
            );
            continue;
        }
        let (side, counterpart) = match need {
            Needs::RequestStream => ("requests", name.replace("_in", "_out")),
            _ => ("responses", name.replace("_out", "_in")),
        };
        let why = if rpc.client_streaming || rpc.server_streaming {
            format!(
                "its {side} do not stream; did you mean `{counterpart}`? (`max_message_bytes` limits single messages)"
            )
        } else {
            "neither side streams; use `max_message_bytes` or `timeout_ms`".to_string()
        };
        errors.at(
            key.name.span(),
            format!(
                "`{name}` limits a stream of {side}, but `{}` is {}: {why}",
                rpc.name,
                rpc.kind()
            ),
        );
    }
}

fn nearest<'a>(name: &str, service: &'a Service) -> Option<&'a str> {
    let lower = name.to_lowercase().replace('_', "");
    service
        .rpcs
        .iter()
        .map(|r| {
            let distance = if r.name.to_lowercase() == lower {
                0
            } else {
                levenshtein(name, &r.name)
            };
            (distance, r.name.as_str())
        })
        .filter(|(d, candidate)| *d <= (candidate.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::levenshtein;

    #[test]
    fn edit_distance() {
        assert_eq!(levenshtein("GetUsr", "GetUser"), 1);
        assert_eq!(levenshtein("ListUser", "ListUsers"), 1);
        assert_eq!(levenshtein("", "abc"), 3);
    }
}
