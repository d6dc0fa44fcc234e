//! The rules a policy must obey, checked before anything is generated. Every mistake in
//! one attribute is collected, so a single build shows them all.

use syn::{Expr, Ident};

use crate::attr::{self, Args, Entry, LimitValue, Rpcs};
use crate::service::{RpcMethod, Service};

/// What to generate for each RPC.
pub struct Plan<'a> {
    pub rpcs: Vec<RpcPlan<'a>>,
}

pub struct RpcPlan<'a> {
    pub rpc: &'a RpcMethod,
    /// Call-start steps in declared order.
    pub steps: Vec<Step<'a>>,
    /// The hooks of this RPC in declared order; `Step::Hook(i)` indexes it.
    pub hooks: Vec<&'a attr::Hook>,
    pub limits: Limits,
    /// Whether the first `limit` entry of this RPC comes before its first hook.
    pub limits_first: bool,
}

pub enum Step<'a> {
    Auth(&'a Expr),
    Hook(usize),
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
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.max_messages_in.is_none()
            && self.max_messages_out.is_none()
            && self.max_message_bytes.is_none()
            && self.messages_per_second_in.is_none()
            && self.messages_per_second_out.is_none()
            && self.timeout_ms.is_none()
    }

    /// Whether anything checks request messages one by one.
    pub fn checks_requests(&self) -> bool {
        self.max_messages_in.is_some()
            || self.max_message_bytes.is_some()
            || self.messages_per_second_in.is_some()
    }
}

const LIMIT_KEYS: &str = "max_messages_in, max_messages_out, max_message_bytes, messages_per_second_in, messages_per_second_out, burst, on_rate_exceeded, timeout_ms";

/// Which side of an RPC a limit key needs to be streaming.
#[derive(Clone, Copy, PartialEq)]
enum Needs {
    Nothing,
    RequestStream,
    ResponseStream,
}

fn needs(key: &str) -> Option<Needs> {
    Some(match key {
        "max_messages_in" | "messages_per_second_in" => Needs::RequestStream,
        "max_messages_out" | "messages_per_second_out" => Needs::ResponseStream,
        "max_message_bytes" | "timeout_ms" | "burst" | "on_rate_exceeded" => Needs::Nothing,
        _ => return None,
    })
}

fn fits(rpc: &RpcMethod, needs: Needs) -> bool {
    match needs {
        Needs::Nothing => true,
        Needs::RequestStream => rpc.client_streaming,
        Needs::ResponseStream => rpc.server_streaming,
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
    let mut specific_auth: Vec<Option<&Expr>> = vec![None; n];
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
                    specific_auth[id] = Some(&a.verifier);
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
                            let side = if need == Needs::RequestStream {
                                "requests"
                            } else {
                                "responses"
                            };
                            errors.at(key.name.span(), format!("`{key_name}` applies to no RPC: no RPC of `{}` streams its {side}", service.name));
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
            Entry::Hook(_) => {}
        }
    }
    let misspelt_access = args.entries.iter().zip(&resolved).any(|(entry, ids)| {
        matches!(entry, Entry::Public(_) | Entry::Auth(_)) && ids.contains(&None)
    });
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
        // A misspelt name in `public(..)` or `auth(..)` is already reported; the RPC it
        // meant would be reported again here as uncovered.
        if !public[id] && specific_auth[id].is_none() && general_auth.is_none() && !misspelt_access
        {
            errors.at(
                rpc.ident.span(),
                format!(
                    "RPC `{}` is neither public nor covered by auth; add it to `public(..)`, or add `auth(<verifier>)` (every non-public RPC) or `auth(<verifier>, {})`",
                    rpc.name, rpc.name
                ),
            );
        }
    }

    if let Some(e) = errors.0 {
        return Err(e);
    }

    let rpcs = service
        .rpcs
        .iter()
        .enumerate()
        .map(|(id, rpc)| {
            let mut plan = RpcPlan {
                rpc,
                steps: Vec::new(),
                hooks: Vec::new(),
                limits: Limits::default(),
                limits_first: true,
            };
            let mut seen_limit = false;
            let (mut general, mut specific) = (Vec::new(), Vec::new());
            let applies = |ids: &[Option<usize>]| ids.is_empty() || ids.contains(&Some(id));
            for (entry, ids) in args.entries.iter().zip(&resolved) {
                match entry {
                    Entry::Public(_) => {}
                    Entry::Auth(a) if !public[id] => {
                        let covers = if a.rpcs.is_empty() {
                            specific_auth[id].is_none()
                        } else {
                            ids.contains(&Some(id))
                        };
                        if covers {
                            plan.steps.push(Step::Auth(&a.verifier));
                        }
                    }
                    Entry::Auth(_) => {}
                    Entry::Hook(h) if applies(ids) => {
                        if !seen_limit && plan.hooks.is_empty() {
                            plan.limits_first = false;
                        }
                        plan.steps.push(Step::Hook(plan.hooks.len()));
                        plan.hooks.push(h);
                    }
                    Entry::Hook(_) => {}
                    Entry::Limit(l) if applies(ids) => {
                        seen_limit = true;
                        if l.rpcs.is_empty() {
                            general.push(l);
                        } else {
                            specific.push(l);
                        }
                    }
                    Entry::Limit(_) => {}
                }
            }
            // A `limit` naming the RPC wins over one for every RPC, whatever their order.
            for l in general {
                for key in &l.keys {
                    let name = key.name.to_string();
                    if fits(rpc, needs(&name).unwrap_or(Needs::Nothing)) {
                        apply(&mut plan.limits, &name, &key.value);
                    }
                }
            }
            for l in specific {
                for key in &l.keys {
                    apply(&mut plan.limits, &key.name.to_string(), &key.value);
                }
            }
            if plan.hooks.is_empty() {
                plan.limits_first = true;
            }
            plan
        })
        .collect();
    Ok(Plan { rpcs })
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
    if limit.keys.is_empty() {
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
                Ok(x) if name.starts_with("messages_per_second") || name == "burst" => {
                    if x > u64::from(u32::MAX) {
                        errors.at(v.span(), format!("`{name}` must fit in a u32"));
                    }
                }
                Ok(_) => {}
                Err(e) => errors.at(v.span(), format!("`{name}` must be a whole number: {e}")),
            },
        }
    }
    for key in &limit.keys {
        let name = key.name.to_string();
        if (name == "burst" || name == "on_rate_exceeded") && !has_rate {
            errors.at(key.name.span(), format!("`{name}` shapes a rate: add `messages_per_second_in` or `messages_per_second_out` to this `limit(..)`"));
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
