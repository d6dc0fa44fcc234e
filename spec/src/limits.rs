//! The limit keys: one entry per key, and everything the macro and the generator derive
//! from it.

use crate::RpcKind;

/// One key of `#[intercept(limit(..))]` or of the `.proto`'s `RpcPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitKey {
    /// As written: `max_messages_in`.
    pub name: &'static str,
    /// The RPCs it can act on.
    pub fits: Fits,
    /// The Rust type of its value (the runtime builder's argument, the type a constant
    /// passed for it must have).
    pub value: ValueType,
    /// Its field of `RpcPolicy` in `tonic_intercept/v1/options.proto`, if the `.proto` may
    /// set it. Keys that land on the RPC's descriptor ([`LimitKey::on_descriptor`]) reach
    /// the runtime's `RpcPolicy` through its `Limits`, by their [`LimitKey::setter`].
    pub proto_field: Option<&'static str>,
    /// Accepted in `#[intercept(limit(..))]`.
    pub in_attribute: bool,
    /// How the runtime receives it.
    pub setter: Setter,
    /// In the `.proto`, the key whose value applies when this one is not set (on the RPC,
    /// then on the service): `messages_per_second` for the two rate keys.
    pub proto_default: Option<&'static str>,
    /// Keys this one only shapes: one of them must be set in the same `limit(..)`
    /// (`call_burst` shapes `calls_per_second`). Empty for a key that acts on its own.
    /// The rate keys' shaping arguments say it with [`Setter::RateShape`] instead.
    pub shapes: &'static [&'static str],
    /// Needs a verified identity: it acts only on RPCs covered by `auth(..)`.
    pub needs_identity: bool,
    /// May live in a backend shared by the replicas of the service
    /// (`limit(.., shared = self.rates)`): the call rates. Every other key protects one
    /// replica's own resources (its call slots, its streams, its sockets) and stays local.
    pub shared: bool,
    /// Another key that sets the same limit in other units (`calls_per_minute` for
    /// `calls_per_second`): at most one of the two in a `limit(..)`, and a `limit(..)`
    /// naming an RPC replaces the rival a `limit(..)` for every RPC set.
    pub rival: Option<&'static str>,
    /// What it limits, in one line.
    pub doc: &'static str,
}

/// Which RPCs a key can act on. A key on an RPC it does not fit can never act, so both
/// the macro and the generator refuse it there (and skip it where it comes from a
/// default for every RPC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fits {
    /// Any RPC.
    AnyRpc,
    /// RPCs whose requests stream (client-streaming, bidi).
    RequestStream,
    /// RPCs whose responses stream (server-streaming, bidi).
    ResponseStream,
    /// RPCs where at least one side streams.
    AnyStream,
}

impl Fits {
    /// Whether a key that fits like this can act on an RPC of `kind`.
    pub const fn allows(self, kind: RpcKind) -> bool {
        kind.admits(self)
    }

    /// What must stream, for messages: `requests`, `responses`, `either way`; `None` for
    /// [`Fits::AnyRpc`].
    pub const fn side(self) -> Option<&'static str> {
        match self {
            Fits::AnyRpc => None,
            Fits::RequestStream => Some("requests"),
            Fits::ResponseStream => Some("responses"),
            Fits::AnyStream => Some("either way"),
        }
    }
}

/// The Rust type of a key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// `u32`: rates, bursts, call counts (a token bucket's or a semaphore's size).
    U32,
    /// `u64`: message counts, byte sizes, milliseconds. Byte sizes are `u64` rather than
    /// `usize`, like the `.proto`'s `uint64`, the runtime's `RpcPolicy` and
    /// `ClientPolicy`, and the byte counts it reports: a limit means the same on every
    /// target, and a total over a stream may exceed a 32-bit `usize`.
    U64,
    /// One of these words.
    Word(&'static [&'static str]),
}

impl ValueType {
    /// `u32` or `u64`; `None` for a word.
    pub const fn rust_type(self) -> Option<&'static str> {
        match self {
            ValueType::U32 => Some("u32"),
            ValueType::U64 => Some("u64"),
            ValueType::Word(_) => None,
        }
    }

    /// The largest number it holds; `None` for a word.
    pub const fn max(self) -> Option<u64> {
        match self {
            ValueType::U32 => Some(u32::MAX as u64),
            ValueType::U64 => Some(u64::MAX),
            ValueType::Word(_) => None,
        }
    }
}

/// How a key reaches the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setter {
    /// `tonic_intercept::Limits::<method>(value)`.
    Limits(&'static str),
    /// `tonic_intercept::Limits::<method>(Duration::from_millis(value))`.
    LimitsMillis(&'static str),
    /// `tonic_intercept::Limits::<method>(value, burst, on_rate_exceeded)`: a message rate,
    /// shaped by the [`Setter::RateShape`] keys of the same `limit(..)`.
    LimitsRate(&'static str),
    /// An argument of the [`Setter::LimitsRate`] builders: `burst`, `on_rate_exceeded`.
    RateShape,
    /// `AdmissionConfig::<method>(value)`: admission of calls, before any message.
    Admission(&'static str),
    /// None of its own: a `.proto` default of the keys whose `proto_default` names it.
    ProtoDefault,
}

impl LimitKey {
    /// The runtime builder method that receives the value, if the key has one of its own.
    pub const fn builder(&self) -> Option<&'static str> {
        match self.setter {
            Setter::Limits(m)
            | Setter::LimitsMillis(m)
            | Setter::LimitsRate(m)
            | Setter::Admission(m) => Some(m),
            Setter::RateShape | Setter::ProtoDefault => None,
        }
    }

    /// Whether the `.proto`'s value lands on the RPC's descriptor, in the `Limits` of the
    /// runtime's `RpcPolicy` (built by [`LimitKey::builder`], read by
    /// [`LimitKey::getter`]). The macro asserts that its own value agrees with it.
    pub const fn on_descriptor(&self) -> bool {
        self.proto_field.is_some() && !matches!(self.setter, Setter::ProtoDefault)
    }

    /// The runtime's `Limits` getter of the value, `get_<builder>`, for keys that set a
    /// `Limits` value ([`Setter::Limits`], [`Setter::LimitsMillis`], [`Setter::LimitsRate`]).
    /// It returns an `Option` of the builder's argument: the number, a `Duration`, a
    /// `MessageRate`.
    pub fn getter(&self) -> Option<String> {
        match self.setter {
            Setter::Limits(m) | Setter::LimitsMillis(m) | Setter::LimitsRate(m) => {
                Some(format!("get_{m}"))
            }
            Setter::RateShape | Setter::Admission(_) | Setter::ProtoDefault => None,
        }
    }

    /// Whether the key can act on an RPC of `kind`.
    pub const fn fits(&self, kind: RpcKind) -> bool {
        kind.admits(self.fits)
    }

    /// The same limit for the other direction (`max_messages_in` for
    /// `max_messages_out`), if there is one.
    pub fn counterpart(&self) -> Option<&'static LimitKey> {
        let other = if let Some(stem) = self.name.strip_suffix("_in") {
            format!("{stem}_out")
        } else if let Some(stem) = self.name.strip_suffix("_out") {
            format!("{stem}_in")
        } else {
            return None;
        };
        limit_key(&other)
    }
}

/// Every limit key. Keys with a `.proto` field come in `RpcPolicy`'s order, and keys of
/// the attribute in the order its error messages list them.
pub const LIMIT_KEYS: &[LimitKey] = &[
    LimitKey {
        name: "max_messages_in",
        fits: Fits::RequestStream,
        value: ValueType::U64,
        proto_field: Some("max_messages_in"),
        in_attribute: true,
        setter: Setter::Limits("max_messages_in"),
        proto_default: None,
        shapes: &[],
        needs_identity: false,
        shared: false,
        rival: None,
        doc: "Request messages per stream.",
    },
    LimitKey {
        name: "max_messages_out",
        fits: Fits::ResponseStream,
        value: ValueType::U64,
        proto_field: Some("max_messages_out"),
        in_attribute: true,
        setter: Setter::Limits("max_messages_out"),
        proto_default: None,
        shapes: &[],
        needs_identity: false,
        shared: false,
        rival: None,
        doc: "Response messages per stream.",
    },
    LimitKey {
        name: "max_message_bytes",
        fits: Fits::AnyRpc,
        value: ValueType::U64,
        proto_field: Some("max_message_bytes"),
        in_attribute: true,
        setter: Setter::Limits("max_message_bytes"),
        proto_default: None,
        shapes: &[],
        needs_identity: false,
        shared: false,
        rival: None,
        doc: "Encoded bytes per message, either way.",
    },
    LimitKey {
        name: "max_total_bytes_in",
        fits: Fits::RequestStream,
        value: ValueType::U64,
        proto_field: Some("max_total_bytes_in"),
        in_attribute: true,
        setter: Setter::Limits("max_total_bytes_in"),
        proto_default: None,
        shapes: &[],
        needs_identity: false,
        shared: false,
        rival: None,
        doc: "Encoded bytes of all request messages of one call: a whole upload.",
    },
    LimitKey {
        name: "messages_per_second_in",
        fits: Fits::RequestStream,
        value: ValueType::U32,
        proto_field: Some("messages_per_second_in"),
        in_attribute: true,
        setter: Setter::LimitsRate("messages_per_second_in"),
        proto_default: Some("messages_per_second"),
        shapes: &[],
        needs_identity: false,
        shared: false,
        rival: None,
        doc: "Sustained rate of request messages.",
    },
    LimitKey {
        name: "messages_per_second_out",
        fits: Fits::ResponseStream,
        value: ValueType::U32,
        proto_field: Some("messages_per_second_out"),
        in_attribute: true,
        setter: Setter::LimitsRate("messages_per_second_out"),
        proto_default: Some("messages_per_second"),
        shapes: &[],
        needs_identity: false,
        shared: false,
        rival: None,
        doc: "Sustained rate of response messages.",
    },
    LimitKey {
        name: "messages_per_second",
        fits: Fits::AnyStream,
        value: ValueType::U32,
        proto_field: Some("messages_per_second"),
        in_attribute: false,
        setter: Setter::ProtoDefault,
        proto_default: None,
        shapes: &[],
        needs_identity: false,
        shared: false,
        rival: None,
        doc: "Sustained rate on the streaming side(s); the `_in` / `_out` keys win over it.",
    },
    LimitKey {
        name: "burst",
        fits: Fits::AnyRpc,
        value: ValueType::U32,
        proto_field: None,
        in_attribute: true,
        setter: Setter::RateShape,
        proto_default: None,
        shapes: &[],
        needs_identity: false,
        shared: false,
        rival: None,
        doc: "Messages that may pass back to back before a message rate paces them (default 1).",
    },
    LimitKey {
        name: "on_rate_exceeded",
        fits: Fits::AnyRpc,
        value: ValueType::Word(&["delay", "reject"]),
        proto_field: None,
        in_attribute: true,
        setter: Setter::RateShape,
        proto_default: None,
        shapes: &[],
        needs_identity: false,
        shared: false,
        rival: None,
        doc: "`delay` (backpressure, the default) or `reject` (RESOURCE_EXHAUSTED) a message that comes too fast.",
    },
    LimitKey {
        name: "timeout_ms",
        fits: Fits::AnyRpc,
        value: ValueType::U64,
        proto_field: Some("timeout_ms"),
        in_attribute: true,
        setter: Setter::LimitsMillis("timeout"),
        proto_default: None,
        shapes: &[],
        needs_identity: false,
        shared: false,
        rival: None,
        doc: "Server-side cap on the call's whole duration, in milliseconds.",
    },
    LimitKey {
        name: "idle_timeout_ms",
        fits: Fits::AnyStream,
        value: ValueType::U64,
        proto_field: Some("idle_timeout_ms"),
        in_attribute: true,
        setter: Setter::LimitsMillis("idle_timeout"),
        proto_default: None,
        shapes: &[],
        needs_identity: false,
        shared: false,
        rival: None,
        doc: "Longest wait for a stream's next message, either way, in milliseconds.",
    },
    LimitKey {
        name: "max_in_flight",
        fits: Fits::AnyRpc,
        value: ValueType::U32,
        proto_field: None,
        in_attribute: true,
        setter: Setter::Admission("max_in_flight"),
        proto_default: None,
        shapes: &[],
        needs_identity: false,
        shared: false,
        rival: None,
        doc: "Calls of the RPC running at once.",
    },
    LimitKey {
        name: "calls_per_second",
        fits: Fits::AnyRpc,
        value: ValueType::U32,
        proto_field: None,
        in_attribute: true,
        setter: Setter::Admission("calls_per_second"),
        proto_default: None,
        shapes: &[],
        needs_identity: false,
        shared: true,
        rival: Some("calls_per_minute"),
        doc: "Sustained rate of calls of the RPC, from all callers.",
    },
    LimitKey {
        name: "calls_per_minute",
        fits: Fits::AnyRpc,
        value: ValueType::U32,
        proto_field: None,
        in_attribute: true,
        setter: Setter::Admission("calls_per_minute"),
        proto_default: None,
        shapes: &[],
        needs_identity: false,
        shared: true,
        rival: Some("calls_per_second"),
        doc: "Sustained rate of calls of the RPC per minute, from all callers.",
    },
    LimitKey {
        name: "call_burst",
        fits: Fits::AnyRpc,
        value: ValueType::U32,
        proto_field: None,
        in_attribute: true,
        setter: Setter::Admission("call_burst"),
        proto_default: None,
        shapes: &["calls_per_second", "calls_per_minute"],
        needs_identity: false,
        shared: true,
        rival: None,
        doc: "Calls that may start back to back before `calls_per_second` or `calls_per_minute` paces them.",
    },
    LimitKey {
        name: "calls_per_second_per_peer",
        fits: Fits::AnyRpc,
        value: ValueType::U32,
        proto_field: None,
        in_attribute: true,
        setter: Setter::Admission("calls_per_second_per_peer"),
        proto_default: None,
        shapes: &[],
        needs_identity: false,
        shared: false,
        rival: None,
        doc: "Sustained rate of calls of the RPC from one peer IP address (IPv6: one /64).",
    },
    LimitKey {
        name: "calls_per_second_per_identity",
        fits: Fits::AnyRpc,
        value: ValueType::U32,
        proto_field: None,
        in_attribute: true,
        setter: Setter::Admission("calls_per_second_per_identity"),
        proto_default: None,
        shapes: &[],
        needs_identity: true,
        shared: true,
        rival: Some("calls_per_minute_per_identity"),
        doc: "Sustained rate of calls of the RPC from one verified identity.",
    },
    LimitKey {
        name: "calls_per_minute_per_identity",
        fits: Fits::AnyRpc,
        value: ValueType::U32,
        proto_field: None,
        in_attribute: true,
        setter: Setter::Admission("calls_per_minute_per_identity"),
        proto_default: None,
        shapes: &[],
        needs_identity: true,
        shared: true,
        rival: Some("calls_per_second_per_identity"),
        doc: "Sustained rate of calls of the RPC per minute from one verified identity.",
    },
    LimitKey {
        name: "queue",
        fits: Fits::AnyRpc,
        value: ValueType::U32,
        proto_field: None,
        in_attribute: true,
        setter: Setter::Admission("queue"),
        proto_default: None,
        shapes: &[
            "max_in_flight",
            "calls_per_second",
            "calls_per_minute",
            "calls_per_second_per_peer",
            "calls_per_second_per_identity",
            "calls_per_minute_per_identity",
        ],
        needs_identity: false,
        shared: false,
        rival: None,
        doc: "Calls that wait for admission instead of being refused at once.",
    },
];

/// A message rate's [`Setter::RateShape`] arguments where they are not set (in the
/// attribute, or ever in the `.proto`, which declares only the per-second value): the
/// numeric key's default, a burst of 1, and the worded key's first word, `delay`. The
/// runtime's `Limits::with_policy` gives a `.proto` rate the same when the attribute sets
/// no rate.
pub fn rate_shape_defaults() -> (u64, &'static str) {
    let word = LIMIT_KEYS
        .iter()
        .filter(|k| k.setter == Setter::RateShape)
        .find_map(|k| match k.value {
            ValueType::Word(words) => words.first().copied(),
            ValueType::U32 | ValueType::U64 => None,
        })
        .expect("a worded rate-shaping key");
    (1, word)
}

/// The keys that act on a unary RPC's one message or its whole call, for errors that
/// suggest them: "`max_message_bytes` or `timeout_ms`".
pub fn unary_alternatives() -> String {
    let keys: Vec<String> = LIMIT_KEYS
        .iter()
        .filter(|k| k.in_attribute && k.fits == Fits::AnyRpc)
        .filter(|k| matches!(k.setter, Setter::Limits(_) | Setter::LimitsMillis(_)))
        .map(|k| format!("`{}`", k.name))
        .collect();
    match keys.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The key named `name`.
pub fn limit_key(name: &str) -> Option<&'static LimitKey> {
    LIMIT_KEYS.iter().find(|k| k.name == name)
}

/// The candidate `word` was most likely meant to be, for a "did you mean" hint: the same
/// word up to case and underscores, or else the nearest by edit distance, if it is close
/// enough (at most a third of the candidate's length, and at least 2, edits away).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let squashed = |s: &str| s.to_lowercase().replace('_', "");
    let word_squashed = squashed(word);
    candidates
        .into_iter()
        .map(|candidate| {
            let distance = if squashed(candidate) == word_squashed {
                0
            } else {
                levenshtein(word, candidate)
            };
            (distance, candidate)
        })
        .filter(|(d, candidate)| *d <= (candidate.chars().count() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edits (insertions, deletions, substitutions) between `a` and `b`.
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
    #[test]
    fn unary_alternatives_are_the_per_message_and_per_call_limits() {
        assert_eq!(
            super::unary_alternatives(),
            "`max_message_bytes` or `timeout_ms`"
        );
    }

    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for (i, key) in LIMIT_KEYS.iter().enumerate() {
            assert_eq!(limit_key(key.name), Some(key));
            assert!(
                LIMIT_KEYS[i + 1..].iter().all(|k| k.name != key.name),
                "{} twice",
                key.name
            );
            assert!(!key.doc.is_empty(), "{} has no doc", key.name);
        }
        assert_eq!(limit_key("max_messages"), None);
    }

    #[test]
    fn the_attribute_lists_its_keys_in_this_order() {
        let keys: Vec<_> = LIMIT_KEYS
            .iter()
            .filter(|k| k.in_attribute)
            .map(|k| k.name)
            .collect();
        assert_eq!(
            keys.join(", "),
            "max_messages_in, max_messages_out, max_message_bytes, max_total_bytes_in, \
             messages_per_second_in, messages_per_second_out, burst, on_rate_exceeded, timeout_ms, idle_timeout_ms, \
             max_in_flight, calls_per_second, calls_per_minute, call_burst, calls_per_second_per_peer, \
             calls_per_second_per_identity, calls_per_minute_per_identity, queue"
        );
    }

    #[test]
    fn descriptor_keys_come_in_rpc_policy_order() {
        let keys: Vec<_> = LIMIT_KEYS
            .iter()
            .filter(|k| k.on_descriptor())
            .map(|k| k.proto_field.unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "max_messages_in",
                "max_messages_out",
                "max_message_bytes",
                "max_total_bytes_in",
                "messages_per_second_in",
                "messages_per_second_out",
                "timeout_ms",
                "idle_timeout_ms",
            ]
        );
    }

    #[test]
    fn every_key_reaches_the_runtime() {
        for key in LIMIT_KEYS {
            match key.setter {
                Setter::ProtoDefault => {
                    assert!(key.proto_field.is_some() && !key.in_attribute);
                    assert!(
                        LIMIT_KEYS.iter().any(|k| k.proto_default == Some(key.name)),
                        "nothing defaults to {}",
                        key.name
                    );
                }
                Setter::RateShape => assert!(key.in_attribute),
                _ => assert!(key.builder().is_some()),
            }
            if let Some(default) = key.proto_default {
                let default = limit_key(default).expect("a default is a key");
                assert_eq!(default.value, key.value);
                assert!(default.proto_field.is_some());
            }
            // A `.proto` field is one of the numbers `RpcPolicy` can carry.
            if key.proto_field.is_some() {
                assert!(key.value.rust_type().is_some(), "{}", key.name);
            }
            // What lands on the descriptor is a value of its `Limits`, read by a getter.
            if key.on_descriptor() {
                assert!(key.getter().is_some(), "{}", key.name);
            }
        }
    }

    #[test]
    fn shared_keys_are_the_call_rates_and_rivals_name_each_other() {
        let shared: Vec<_> = LIMIT_KEYS
            .iter()
            .filter(|k| k.shared)
            .map(|k| k.name)
            .collect();
        assert_eq!(
            shared,
            [
                "calls_per_second",
                "calls_per_minute",
                "call_burst",
                "calls_per_second_per_identity",
                "calls_per_minute_per_identity",
            ]
        );
        for key in LIMIT_KEYS {
            if let Some(rival) = key.rival {
                let rival = limit_key(rival).expect("a rival is a key");
                assert_eq!(rival.rival, Some(key.name));
                assert_eq!(
                    (rival.shared, rival.needs_identity),
                    (key.shared, key.needs_identity)
                );
            }
        }
    }

    #[test]
    fn getters_are_named_after_builders() {
        let getter = |name| limit_key(name).unwrap().getter();
        assert_eq!(
            getter("max_total_bytes_in").as_deref(),
            Some("get_max_total_bytes_in")
        );
        assert_eq!(getter("timeout_ms").as_deref(), Some("get_timeout"));
        assert_eq!(
            getter("messages_per_second_out").as_deref(),
            Some("get_messages_per_second_out")
        );
        assert_eq!(getter("burst"), None);
        assert_eq!(getter("queue"), None);
        assert_eq!(rate_shape_defaults(), (1, "delay"));
    }

    #[test]
    fn byte_sizes_are_u64_and_rates_u32() {
        let ty = |name| limit_key(name).unwrap().value;
        assert_eq!(ty("max_message_bytes"), ValueType::U64);
        assert_eq!(ty("max_messages_in"), ValueType::U64);
        assert_eq!(ty("timeout_ms"), ValueType::U64);
        assert_eq!(ty("messages_per_second_out"), ValueType::U32);
        assert_eq!(ty("queue").max(), Some(u64::from(u32::MAX)));
        assert_eq!(ty("queue").rust_type(), Some("u32"));
        assert_eq!(ty("on_rate_exceeded").rust_type(), None);
        assert_eq!(
            ty("on_rate_exceeded"),
            ValueType::Word(&["delay", "reject"])
        );
    }

    #[test]
    fn keys_fit_their_sides() {
        let key = |name| limit_key(name).unwrap();
        assert!(key("max_messages_in").fits(RpcKind::ClientStreaming));
        assert!(!key("max_messages_in").fits(RpcKind::ServerStreaming));
        assert!(key("max_messages_out").fits(RpcKind::BidiStreaming));
        assert!(!key("max_messages_out").fits(RpcKind::Unary));
        assert!(!key("idle_timeout_ms").fits(RpcKind::Unary));
        assert!(key("idle_timeout_ms").fits(RpcKind::ServerStreaming));
        assert!(key("timeout_ms").fits(RpcKind::Unary));
        assert!(key("max_total_bytes_in").fits(RpcKind::ClientStreaming));
        assert!(!key("max_total_bytes_in").fits(RpcKind::ServerStreaming));
        assert_eq!(key("max_total_bytes_in").counterpart(), None);
        assert!(Fits::AnyStream.allows(RpcKind::ClientStreaming));
        assert_eq!(Fits::RequestStream.side(), Some("requests"));
        assert_eq!(Fits::AnyRpc.side(), None);
    }

    #[test]
    fn builders_and_counterparts() {
        let key = |name| limit_key(name).unwrap();
        assert_eq!(key("timeout_ms").builder(), Some("timeout"));
        assert_eq!(key("idle_timeout_ms").builder(), Some("idle_timeout"));
        assert_eq!(
            key("max_in_flight").setter,
            Setter::Admission("max_in_flight")
        );
        assert_eq!(key("burst").builder(), None);
        assert_eq!(
            key("max_messages_in").counterpart().map(|k| k.name),
            Some("max_messages_out")
        );
        assert_eq!(
            key("messages_per_second_out").counterpart().map(|k| k.name),
            Some("messages_per_second_in")
        );
        assert_eq!(key("max_message_bytes").counterpart(), None);
    }

    #[test]
    fn did_you_mean() {
        let keys = || LIMIT_KEYS.iter().map(|k| k.name);
        assert_eq!(closest("max_message_out", keys()), Some("max_messages_out"));
        assert_eq!(closest("max_messages_ot", keys()), Some("max_messages_out"));
        assert_eq!(closest("timeout", keys()), Some("timeout_ms"));
        assert_eq!(closest("MaxInFlight", keys()), Some("max_in_flight"));
        assert_eq!(
            closest("max_total_bytes", keys()),
            Some("max_total_bytes_in")
        );
        assert_eq!(closest("retries", keys()), None);
        assert_eq!(closest("GetUsr", ["GetUser", "ListUsers"]), Some("GetUser"));
        assert_eq!(closest("anything", []), None);
    }

    #[test]
    fn edit_distance() {
        assert_eq!(levenshtein("GetUsr", "GetUser"), 1);
        assert_eq!(levenshtein("ListUser", "ListUsers"), 1);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }
}
