//! `limit(..)` entries: the keys each may set, their values, the RPCs they fit, and the
//! limits each RPC ends up with.
//!
//! Everything about a key (its name, the RPCs it fits, its type, how the runtime receives
//! it) comes from the table `tonic_intercept_spec::LIMIT_KEYS`, so a key added there
//! needs no edit here. What stays here are the rules about how keys combine.

use quote::ToTokens;
use syn::Ident;
use tonic_intercept_spec::{
    Fits, LIMIT_KEYS, LimitKey, Setter, ValueType, closest, limit_key, unary_alternatives,
};

use super::is_none;
use crate::ctxt::Ctxt;
use crate::parse::{self, Limit, LimitValue};
use crate::resolve::{RpcId, RpcMethod, Service};

/// The limits of one RPC: each key's value as written (a literal, a constant or a word),
/// in the table's order.
#[derive(Clone)]
pub(crate) struct Limits {
    values: Vec<Option<LimitValue>>,
    /// Whether each value came from a `limit(.., shared = ..)`.
    shared: Vec<bool>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            values: vec![None; LIMIT_KEYS.len()],
            shared: vec![false; LIMIT_KEYS.len()],
        }
    }
}

impl Limits {
    /// The keys set, in the table's order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'static LimitKey, &LimitValue)> {
        LIMIT_KEYS
            .iter()
            .zip(&self.values)
            .filter_map(|(key, value)| Some((key, value.as_ref()?)))
    }

    /// The keys set, with whether each lives in a shared backend.
    pub(crate) fn iter_sharing(
        &self,
    ) -> impl Iterator<Item = (&'static LimitKey, &LimitValue, bool)> {
        LIMIT_KEYS
            .iter()
            .zip(self.values.iter().zip(&self.shared))
            .filter_map(|(key, (value, shared))| Some((key, value.as_ref()?, *shared)))
    }

    /// Sets a key, in a shared backend or not; `none` clears it. Setting a key clears its
    /// rival: `calls_per_minute` for one RPC replaces the `calls_per_second` a
    /// `limit(..)` for every RPC gave it.
    pub(crate) fn set(&mut self, key: &LimitKey, value: &LimitValue, shared: bool) {
        let position = |name: &str| LIMIT_KEYS.iter().position(|k| k.name == name);
        if let Some(i) = position(key.name) {
            self.values[i] = (!is_none(value)).then(|| value.clone());
            self.shared[i] = shared;
        }
        if let Some(i) = key.rival.and_then(position) {
            self.values[i] = None;
        }
    }

    /// Whether the key named `name` is set.
    pub(crate) fn is_set(&self, name: &str) -> bool {
        self.iter().any(|(key, _)| key.name == name)
    }

    /// Whether nothing limits the RPC: only keys that shape another key's limit are set.
    pub(crate) fn is_empty(&self) -> bool {
        self.iter().all(|(key, _)| shapes_another(key))
    }

    /// Whether anything limits calls (rather than messages) in this replica.
    pub(crate) fn admits(&self) -> bool {
        self.iter_sharing().any(|(key, _, shared)| {
            !shared && matches!(key.setter, Setter::Admission(_)) && !shapes_another(key)
        })
    }
}

fn shapes_another(key: &LimitKey) -> bool {
    key.setter == Setter::RateShape || !key.shapes.is_empty()
}

/// The error for a key of [`LimitKey::shapes`] written without any key it shapes.
fn shapes_nothing(key: &LimitKey) -> String {
    let name = key.name;
    match key.shapes {
        [one] => format!("`{name}` shapes `{one}`: add `{one}` to this `limit(..)`"),
        many => {
            let (last, rest) = many
                .split_last()
                .expect("a key that shapes others names them");
            let rest = rest.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>();
            format!(
                "`{name}` works with {} or `{last}`: add one of them to this `limit(..)`",
                rest.join(", ")
            )
        }
    }
}

/// The keys `limit(..)` accepts, as its errors list them.
fn attribute_keys() -> impl Iterator<Item = &'static str> {
    LIMIT_KEYS.iter().filter(|k| k.in_attribute).map(|k| k.name)
}

/// The table's entry for a key written in `limit(..)`.
pub(crate) fn spec_of(key: &parse::LimitKey) -> Option<&'static LimitKey> {
    limit_key(&key.name.to_string()).filter(|k| k.in_attribute)
}

/// The `limit(..)` entries seen so far.
pub(super) struct LimitEntries<'a> {
    service: &'a Service,
    general: bool,
    /// Per RPC: named by a local `limit(..)`, by a `limit(.., shared = ..)`.
    specific: Vec<[bool; 2]>,
}

impl<'a> LimitEntries<'a> {
    pub(super) fn new(service: &'a Service) -> Self {
        let specific = vec![[false; 2]; service.rpcs.len()];
        LimitEntries {
            service,
            general: false,
            specific,
        }
    }

    /// Every rule about one `limit(..)` entry, in the order its errors are reported.
    pub(super) fn entry(&mut self, cx: &Ctxt, limit: &Limit, ids: &[Option<RpcId>]) {
        sets_something(cx, limit);
        for (key, spec) in known_keys_once(cx, limit) {
            value_fits_key(cx, limit, key, spec);
        }
        shaping_keys_have_subject(cx, limit);
        rivals_apart(cx, limit);
        if let Some(shared) = &limit.shared {
            shared_keys_are_call_rates(cx, limit);
            shared_shares_a_rate(cx, limit, shared);
        }
        if limit.rpcs.is_empty() {
            self.general_once(cx, limit);
            general_keys_apply_somewhere(cx, limit, self.service);
        }
        for (ident, id) in limit.rpcs.iter().zip(ids) {
            let Some(id) = *id else { continue };
            self.specific_once(cx, ident, id, limit.shared.is_some());
            keys_fit_rpc(cx, limit, &self.service.rpcs[id]);
        }
    }

    // Two `limit(..)` for every RPC, or two naming one RPC, would make the result depend
    // on which key wins; merging them says it once. An RPC may have one local `limit(..)`
    // and one `shared` (what lives in this replica and what the fleet shares); a key in
    // both is refused where the RPC's limits are merged.
    fn general_once(&mut self, cx: &Ctxt, limit: &Limit) {
        if self.general {
            cx.error_at(limit.kw.span(), "`limit(..)` for every RPC is configured twice; merge the keys into one `limit(..)`");
        }
        self.general = true;
    }

    fn specific_once(&mut self, cx: &Ctxt, ident: &Ident, id: RpcId, shared: bool) {
        let seen = &mut self.specific[id][usize::from(shared)];
        if *seen {
            let message = if shared {
                format!(
                    "`{ident}` has two shared `limit(..)`: merge its keys into one `limit({ident}, .., shared = ..)`"
                )
            } else {
                format!(
                    "`{ident}` is configured twice: merge its keys into one `limit({ident}, ..)`"
                )
            };
            cx.error_at(ident.span(), message);
        }
        *seen = true;
    }
}

// `limit(ListItems)` alone guards the RPC so that the `.proto`'s limits apply; a
// `limit()` naming nothing and setting nothing does nothing, which is a mistake.
fn sets_something(cx: &Ctxt, limit: &Limit) {
    if limit.keys.is_empty() && limit.rpcs.is_empty() {
        let keys = attribute_keys().collect::<Vec<_>>().join(", ");
        let message = format!("`limit(..)` sets nothing; add at least one of: {keys}");
        cx.error_at(limit.kw.span(), message);
    }
}

// An unknown key would otherwise be ignored, leaving the RPC without the limit the user
// meant; a key set twice in one entry leaves it unclear which value holds.
fn known_keys_once<'a>(
    cx: &Ctxt,
    limit: &'a Limit,
) -> Vec<(&'a parse::LimitKey, &'static LimitKey)> {
    let mut known: Vec<(&parse::LimitKey, &LimitKey)> = Vec::new();
    for key in &limit.keys {
        let name = key.name.to_string();
        let Some(spec) = spec_of(key) else {
            let hint = match closest(&name, attribute_keys()) {
                Some(near) => format!("did you mean `{near}`? "),
                None => String::new(),
            };
            let keys = attribute_keys().collect::<Vec<_>>().join(", ");
            let message = format!("unknown limit `{name}`; {hint}valid keys are: {keys}");
            cx.error_at(key.name.span(), message);
            continue;
        };
        if known.iter().any(|(k, _)| k.name == key.name) {
            let message = format!("`{name}` is set twice in this `limit(..)`");
            cx.error_at(key.name.span(), message);
        }
        known.push((key, spec));
    }
    known
}

// A value must be one the key can hold: a limit of zero would refuse everything, a
// number must fit the key's type, and a word-valued key takes its words only. `none`
// switches off, for the RPCs named, a limit set for every RPC. A constant is checked
// where it is used: the expansion gives it the key's type and asserts it is at least 1.
fn value_fits_key(cx: &Ctxt, limit: &Limit, key: &parse::LimitKey, spec: &LimitKey) {
    let name = spec.name;
    let at = key.value.span();
    let word = key.value.word().map(Ident::to_string);
    if let ValueType::Word(words) = spec.value {
        if !word.as_deref().is_some_and(|w| words.contains(&w)) {
            let words = words.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>();
            let written = key.value.to_token_stream().to_string().replace(' ', "");
            let message = format!(
                "`{name}` takes {}, not `{written}`: {}",
                words.join(" or "),
                spec.doc
            );
            cx.error_at(at, message);
        }
        return;
    }
    match (&key.value, word.as_deref()) {
        (_, Some("none")) if limit.rpcs.is_empty() => cx.error_at(
            at,
            format!("`{name} = none` switches a limit off for the RPCs named in `limit(Rpc, ..)`; here, leave `{name}` out"),
        ),
        (_, Some("none")) if spec.setter == Setter::RateShape => cx.error_at(
            at,
            format!("`{name}` cannot be `none`; leave it out for its default"),
        ),
        (_, Some("none")) => {}
        (_, Some(w)) if is_word(w) => cx.error_at(
            at,
            format!("`{name}` takes a number or a constant, not `{w}`"),
        ),
        (LimitValue::Path(_), _) => {}
        (LimitValue::Int(v), _) => match v.base10_parse::<u64>() {
            Ok(0) => cx.error_at(at, format!("`{name}` must be at least 1: a limit of zero would refuse everything; to leave it unlimited, remove the key")),
            Ok(x) if spec.value.max().is_some_and(|max| x > max) => {
                let ty = spec.value.rust_type().unwrap_or("its type");
                cx.error_at(at, format!("`{name}` must fit in a {ty}"));
            }
            Ok(_) => {}
            Err(e) => cx.error_at(at, format!("`{name}` must be a whole number: {e}")),
        },
    }
}

/// A word some key takes (`delay`, `reject`).
fn is_word(word: &str) -> bool {
    LIMIT_KEYS.iter().any(|k| match k.value {
        ValueType::Word(words) => words.contains(&word),
        _ => false,
    })
}

// `burst`, `on_rate_exceeded`, `call_burst` and `queue` shape another key's limit;
// alone they shape nothing, which is a mistake rather than a default.
fn shaping_keys_have_subject(cx: &Ctxt, limit: &Limit) {
    let has = |k: &str| limit.keys.iter().any(|key| key.name == k);
    let rates: Vec<&str> = LIMIT_KEYS
        .iter()
        .filter(|k| k.in_attribute && matches!(k.setter, Setter::LimitsRate(_)))
        .map(|k| k.name)
        .collect();
    for key in &limit.keys {
        let Some(spec) = spec_of(key) else { continue };
        let name = spec.name;
        if spec.setter == Setter::RateShape && !rates.iter().any(|r| has(r)) {
            let rates = rates.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>();
            let message = format!(
                "`{name}` shapes a rate: add {} to this `limit(..)`",
                rates.join(" or ")
            );
            cx.error_at(key.name.span(), message);
        }
        if !spec.shapes.is_empty() && !spec.shapes.iter().any(|s| has(s)) {
            cx.error_at(key.name.span(), shapes_nothing(spec));
        }
    }
}

// `calls_per_second` and `calls_per_minute` are one limit in two units: both in one
// `limit(..)` would leave two rates for the same calls.
fn rivals_apart(cx: &Ctxt, limit: &Limit) {
    for (i, key) in limit.keys.iter().enumerate() {
        let Some(rival) = spec_of(key).and_then(|s| s.rival) else {
            continue;
        };
        if limit.keys[..i].iter().any(|k| k.name == rival) {
            let message = format!(
                "`{}` and `{rival}` are the same limit in two units; keep one",
                key.name
            );
            cx.error_at(key.name.span(), message);
        }
    }
}

/// The keys `shared = ..` may carry, as its errors list them.
fn shareable_keys() -> String {
    let keys: Vec<String> = LIMIT_KEYS
        .iter()
        .filter(|k| k.shared)
        .map(|k| format!("`{}`", k.name))
        .collect();
    keys.join(", ")
}

// Only call rates mean one thing across replicas. `max_in_flight`, the per-peer rate,
// `queue` and every stream limit protect one replica's own slots, sockets and memory:
// shared, they would let one replica's load refuse calls on another.
fn shared_keys_are_call_rates(cx: &Ctxt, limit: &Limit) {
    for key in &limit.keys {
        let Some(spec) = spec_of(key).filter(|s| !s.shared) else {
            continue;
        };
        let message = format!(
            "`{}` protects this replica's own resources and stays local: move it to a `limit(..)` without `shared`; `shared` keeps {} in the backend",
            spec.name,
            shareable_keys()
        );
        cx.error_at(key.name.span(), message);
    }
}

// `shared = ..` without a call rate would share nothing.
fn shared_shares_a_rate(cx: &Ctxt, limit: &Limit, shared: &parse::Shared) {
    let shares = limit
        .keys
        .iter()
        .filter_map(spec_of)
        .any(|s| s.shared && !shapes_another(s));
    if !shares {
        let message = format!(
            "`shared` needs a call rate to keep in the backend: add one of {} to this `limit(..)`",
            shareable_keys()
        );
        cx.error_at(shared.kw.span(), message);
    }
}

// A general `limit(..)` applies each key where it fits; a stream key that fits no RPC
// of the service can never act.
fn general_keys_apply_somewhere(cx: &Ctxt, limit: &Limit, service: &Service) {
    for key in &limit.keys {
        let Some(spec) = spec_of(key) else { continue };
        if service.rpcs.iter().any(|r| spec.fits(r.kind)) {
            continue;
        }
        let side = match spec.fits {
            Fits::RequestStream => "its requests",
            Fits::ResponseStream => "its responses",
            _ => "either way",
        };
        let message = format!(
            "`{}` applies to no RPC: no RPC of `{}` streams {side}",
            spec.name, service.name
        );
        cx.error_at(key.name.span(), message);
    }
}

// A stream limit on an RPC whose side does not stream can never act: it is a mistake
// about the RPC, so it is refused rather than ignored.
fn keys_fit_rpc(cx: &Ctxt, limit: &Limit, rpc: &RpcMethod) {
    for key in &limit.keys {
        let Some(spec) = spec_of(key) else { continue };
        if spec.fits(rpc.kind) {
            continue;
        }
        let name = spec.name;
        let message = match spec.fits.side() {
            Some("either way") | None => format!(
                "`{name}` limits a stream, either way, but `{}` is unary: use `timeout_ms` for the whole call",
                rpc.name
            ),
            Some(side) => {
                let why = match (rpc.kind.streams(), spec.counterpart()) {
                    (true, Some(other)) => format!(
                        "its {side} do not stream; did you mean `{}`? (`max_message_bytes` limits single messages)",
                        other.name
                    ),
                    (true, None) => format!("its {side} do not stream"),
                    (false, _) => format!("neither side streams; use {}", unary_alternatives()),
                };
                format!(
                    "`{name}` limits a stream of {side}, but `{}` is {}: {why}",
                    rpc.name,
                    rpc.kind.describe()
                )
            }
        };
        cx.error_at(key.name.span(), message);
    }
}
