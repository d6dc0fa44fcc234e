//! `limit(..)` entries: the keys each may set, their values, the RPCs they fit, and the
//! limits each RPC ends up with.

use syn::Ident;

use super::is_none;
use crate::ctxt::Ctxt;
use crate::parse::{Limit, LimitKey, LimitValue};
use crate::resolve::{self, RpcId, RpcMethod, Service};

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

    /// Sets a key; `none` clears it.
    pub fn set(&mut self, key: &str, value: &LimitValue) {
        let slot = match key {
            "max_messages_in" => &mut self.max_messages_in,
            "max_messages_out" => &mut self.max_messages_out,
            "max_message_bytes" => &mut self.max_message_bytes,
            "messages_per_second_in" => &mut self.messages_per_second_in,
            "messages_per_second_out" => &mut self.messages_per_second_out,
            "burst" => &mut self.burst,
            "timeout_ms" => &mut self.timeout_ms,
            "idle_timeout_ms" => &mut self.idle_timeout_ms,
            "max_in_flight" => &mut self.max_in_flight,
            "calls_per_second" => &mut self.calls_per_second,
            "call_burst" => &mut self.call_burst,
            "calls_per_second_per_identity" => &mut self.calls_per_second_per_identity,
            "queue" => &mut self.queue,
            "on_rate_exceeded" => {
                self.reject_when_too_fast = value.word().is_some_and(|w| w == "reject");
                return;
            }
            _ => return,
        };
        *slot = (!is_none(value)).then(|| value.clone());
    }
}

const LIMIT_KEYS: &str = "max_messages_in, max_messages_out, max_message_bytes, messages_per_second_in, messages_per_second_out, burst, on_rate_exceeded, timeout_ms, idle_timeout_ms, max_in_flight, calls_per_second, call_burst, calls_per_second_per_identity, queue";

/// Which side of an RPC a limit key needs to be streaming.
#[derive(Clone, Copy, PartialEq)]
pub enum Needs {
    Nothing,
    RequestStream,
    ResponseStream,
    AnyStream,
}

pub fn needs(key: &str) -> Option<Needs> {
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

pub fn fits(rpc: &RpcMethod, needs: Needs) -> bool {
    match needs {
        Needs::Nothing => true,
        Needs::RequestStream => rpc.client_streaming,
        Needs::ResponseStream => rpc.server_streaming,
        Needs::AnyStream => rpc.client_streaming || rpc.server_streaming,
    }
}

/// The `limit(..)` entries seen so far.
pub struct Limited<'a> {
    service: &'a Service,
    general: bool,
    specific: Vec<bool>,
}

impl<'a> Limited<'a> {
    pub fn new(service: &'a Service) -> Self {
        let specific = vec![false; service.rpcs.len()];
        Limited {
            service,
            general: false,
            specific,
        }
    }

    /// Every rule about one `limit(..)` entry, in the order its errors are reported.
    pub fn entry(&mut self, cx: &Ctxt, limit: &Limit, ids: &[Option<RpcId>]) {
        sets_something(cx, limit);
        for key in known_keys_once(cx, limit) {
            value_fits_key(cx, limit, key);
        }
        shaping_keys_have_subject(cx, limit);
        if limit.rpcs.is_empty() {
            self.general_once(cx, limit);
            general_keys_apply_somewhere(cx, limit, self.service);
        }
        for (ident, id) in limit.rpcs.iter().zip(ids) {
            let Some(id) = *id else { continue };
            self.specific_once(cx, ident, id);
            keys_fit_rpc(cx, limit, &self.service.rpcs[id]);
        }
    }

    // Two `limit(..)` for every RPC, or two naming one RPC, would make the result depend
    // on which key wins; merging them says it once.
    fn general_once(&mut self, cx: &Ctxt, limit: &Limit) {
        if self.general {
            cx.error_at(limit.kw.span(), "`limit(..)` for every RPC is configured twice; merge the keys into one `limit(..)`");
        }
        self.general = true;
    }

    fn specific_once(&mut self, cx: &Ctxt, ident: &Ident, id: RpcId) {
        if self.specific[id] {
            let message = format!(
                "`{ident}` is configured twice: merge its keys into one `limit({ident}, ..)`"
            );
            cx.error_at(ident.span(), message);
        }
        self.specific[id] = true;
    }
}

// `limit(ListItems)` alone guards the RPC so that the `.proto`'s limits apply; a
// `limit()` naming nothing and setting nothing does nothing, which is a mistake.
fn sets_something(cx: &Ctxt, limit: &Limit) {
    if limit.keys.is_empty() && limit.rpcs.is_empty() {
        cx.error_at(
            limit.kw.span(),
            format!("`limit(..)` sets nothing; add at least one of: {LIMIT_KEYS}"),
        );
    }
}

// An unknown key would otherwise be ignored, leaving the RPC without the limit the user
// meant; a key set twice in one entry leaves it unclear which value holds.
fn known_keys_once<'a>(cx: &Ctxt, limit: &'a Limit) -> Vec<&'a LimitKey> {
    let mut known: Vec<&LimitKey> = Vec::new();
    for key in &limit.keys {
        let name = key.name.to_string();
        if needs(&name).is_none() {
            let valid = LIMIT_KEYS.split(", ");
            let hint = match resolve::nearest(&name, valid) {
                Some(near) => format!("did you mean `{near}`? "),
                None => String::new(),
            };
            let message = format!("unknown limit `{name}`; {hint}valid keys are: {LIMIT_KEYS}");
            cx.error_at(key.name.span(), message);
            continue;
        }
        if known.iter().any(|k| k.name == key.name) {
            cx.error_at(
                key.name.span(),
                format!("`{name}` is set twice in this `limit(..)`"),
            );
        }
        known.push(key);
    }
    known
}

// A value must be one the key can hold: a limit of zero would refuse everything, a
// number must fit the key's type, and the words (`none`, `delay`, `reject`) have one
// meaning each. A constant is checked where it is used: the expansion asserts it is at
// least 1, at its path.
fn value_fits_key(cx: &Ctxt, limit: &Limit, key: &LimitKey) {
    let name = key.name.to_string();
    let at = key.value.span();
    let word = key.value.word().map(Ident::to_string);
    match (&key.value, name.as_str(), word.as_deref()) {
        (_, "on_rate_exceeded", Some("delay" | "reject")) => {}
        (_, "on_rate_exceeded", _) => cx.error_at(
            at,
            "`on_rate_exceeded` is `delay` (backpressure) or `reject` (RESOURCE_EXHAUSTED)",
        ),
        (_, _, Some("none")) if limit.rpcs.is_empty() => cx.error_at(
            at,
            format!("`{name} = none` switches a limit off for the RPCs named in `limit(Rpc, ..)`; here, leave `{name}` out"),
        ),
        (_, "burst", Some("none")) => cx.error_at(
            at,
            "`burst` cannot be `none`; leave it out for the default of 1",
        ),
        (LimitValue::Int(v), "queue", _)
            if v.base10_parse::<u64>().is_ok_and(|x| x > u64::from(u32::MAX)) =>
        {
            cx.error_at(at, "`queue` must fit in a u32");
        }
        (_, _, Some("none")) => {}
        (_, _, Some(w @ ("delay" | "reject"))) => cx.error_at(
            at,
            format!("`{name}` takes a number or a constant, not `{w}`"),
        ),
        (LimitValue::Path(_), _, _) => {}
        (LimitValue::Int(v), _, _) => match v.base10_parse::<u64>() {
            Ok(0) => cx.error_at(at, format!("`{name}` must be at least 1: a limit of zero would refuse everything; to leave it unlimited, remove the key")),
            Ok(x) if is_u32(&name) && x > u64::from(u32::MAX) => {
                cx.error_at(at, format!("`{name}` must fit in a u32"));
            }
            Ok(_) => {}
            Err(e) => cx.error_at(at, format!("`{name}` must be a whole number: {e}")),
        },
    }
}

/// Rates, bursts and concurrency are `u32` in the runtime; counts, sizes and times `u64`.
fn is_u32(name: &str) -> bool {
    name.starts_with("messages_per_second")
        || name.starts_with("calls_per_second")
        || name.ends_with("burst")
        || name == "max_in_flight"
}

// `burst`, `on_rate_exceeded`, `call_burst` and `queue` shape another key's limit;
// alone they shape nothing, which is a mistake rather than a default.
fn shaping_keys_have_subject(cx: &Ctxt, limit: &Limit) {
    let has = |k: &str| limit.keys.iter().any(|key| key.name == k);
    let has_rate = has("messages_per_second_in") || has("messages_per_second_out");
    for key in &limit.keys {
        let name = key.name.to_string();
        if (name == "burst" || name == "on_rate_exceeded") && !has_rate {
            cx.error_at(key.name.span(), format!("`{name}` shapes a rate: add `messages_per_second_in` or `messages_per_second_out` to this `limit(..)`"));
        }
        if name == "call_burst" && !has("calls_per_second") {
            cx.error_at(key.name.span(), "`call_burst` shapes `calls_per_second`: add `calls_per_second` to this `limit(..)`");
        }
        if name == "queue"
            && !has("max_in_flight")
            && !has("calls_per_second")
            && !has("calls_per_second_per_identity")
        {
            cx.error_at(key.name.span(), "`queue` holds calls that `max_in_flight` or `calls_per_second` would refuse: add one of them to this `limit(..)`");
        }
    }
}

// A general `limit(..)` applies each key where it fits; a stream key that fits no RPC
// of the service can never act.
fn general_keys_apply_somewhere(cx: &Ctxt, limit: &Limit, service: &Service) {
    for key in &limit.keys {
        let name = key.name.to_string();
        let Some(need) = needs(&name) else { continue };
        if service.rpcs.iter().any(|r| fits(r, need)) {
            continue;
        }
        let side = match need {
            Needs::RequestStream => "its requests",
            Needs::ResponseStream => "its responses",
            _ => "either way",
        };
        let message = format!(
            "`{name}` applies to no RPC: no RPC of `{}` streams {side}",
            service.name
        );
        cx.error_at(key.name.span(), message);
    }
}

// A stream limit on an RPC whose side does not stream can never act: it is a mistake
// about the RPC, so it is refused rather than ignored.
fn keys_fit_rpc(cx: &Ctxt, limit: &Limit, rpc: &RpcMethod) {
    for key in &limit.keys {
        let name = key.name.to_string();
        let Some(need) = needs(&name) else { continue };
        if fits(rpc, need) {
            continue;
        }
        let message = if need == Needs::AnyStream {
            format!(
                "`{name}` limits the wait for a stream's next message, but `{}` is unary: use `timeout_ms`",
                rpc.name
            )
        } else {
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
            format!(
                "`{name}` limits a stream of {side}, but `{}` is {}: {why}",
                rpc.name,
                rpc.kind()
            )
        };
        cx.error_at(key.name.span(), message);
    }
}
