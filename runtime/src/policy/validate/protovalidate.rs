//! Validation from the `.proto`: the `buf.validate` rules
//! ([protovalidate](https://protovalidate.com)) of a request message, checked by
//! [`prost-protovalidate`](prost_protovalidate) (feature `protovalidate`).
//!
//! Annotate the messages and build with `tonic-intercept-build`'s feature `protovalidate`:
//! it serves `import "buf/validate/validate.proto";` from memory (no copy of the file in
//! your tree) and implements [`ProtoValidate`] for every message whose `.proto` carries
//! rules (on its fields, oneofs, itself, or a message it contains). Then
//! `#[intercept(validate(CreateUser))]` checks each request message of `CreateUser`
//! against its rules, each message of a client stream included, exactly where a
//! hand-written [`Validate`](super::Validate) impl would run: a failure ends the call with
//! `INVALID_ARGUMENT` and one `google.rpc.BadRequest` field violation per rule broken,
//! with protovalidate's field path (`emails[1]`, `address.zip`) and message
//! (`value length must be at least 3 characters`).
//!
//! ```toml
//! [dependencies]
//! tonic-intercept = { version = "0.1", features = ["protovalidate"] }
//! [build-dependencies]
//! tonic-intercept-build = { version = "0.1", features = ["protovalidate"] }
//! ```
//!
//! ```protobuf
//! import "buf/validate/validate.proto";
//!
//! message CreateUserRequest {
//!   string name = 1 [(buf.validate.field).string.min_len = 3];
//!   string email = 2 [(buf.validate.field).string.email = true];
//! }
//! ```
//!
//! A hand-written [`Validate`](super::Validate) impl wins where both exist: the expansion
//! picks it at compile time for the concrete message type, so a message can keep checks
//! that its rules cannot say. A message with neither is the usual compile error at the
//! RPC's name in `validate(..)`.
//!
//! Each message is transcoded once into a [`DynamicMessage`] (one encode and decode) and
//! checked by one process-wide [`Validator`], which compiles each message type's rules
//! (CEL included) on first use and caches them. Rules that cannot be evaluated (a CEL
//! expression that does not compile) end the call with `INTERNAL` and a fixed message; the
//! cause is logged at `error` level, not sent to the client.
//!
//! Building this feature builds `prost-protovalidate-types`, whose build script runs
//! `protoc` (Debian's `protobuf-compiler`, or `PROTOC=/path/to/protoc`).
//!
//! Check a message directly, without a server (`no_run`: the descriptors come from a
//! build; `tests/tests/protovalidate.rs` runs this against a real `.proto`):
//!
//! ```no_run
//! # mod pb {
//! #     #[derive(Clone, PartialEq, prost::Message)]
//! #     pub struct CreateUserRequest {
//! #         #[prost(string, tag = "1")] pub name: String,
//! #         #[prost(string, tag = "2")] pub email: String,
//! #     }
//! #     // What tonic-intercept-build emits for a message with rules.
//! #     static DESCRIPTORS: &[u8] = &[];
//! #     impl tonic_intercept::validate::protovalidate::ProtoValidate for CreateUserRequest {
//! #         fn descriptor() -> &'static tonic_intercept::validate::protovalidate::prost_reflect::MessageDescriptor {
//! #             static D: std::sync::OnceLock<tonic_intercept::validate::protovalidate::prost_reflect::MessageDescriptor> = std::sync::OnceLock::new();
//! #             D.get_or_init(|| tonic_intercept::__private::proto_descriptor(DESCRIPTORS, "users.v1.CreateUserRequest"))
//! #         }
//! #     }
//! # }
//! use tonic_intercept::validate::Violations;
//! use tonic_intercept::validate::protovalidate::ProtoValidate;
//!
//! let request = pb::CreateUserRequest { name: "al".into(), email: "al@example.com".into() };
//! let mut violations = Violations::new();
//! request.validate_rules(&mut violations)?;
//! let found: Vec<_> = violations.iter().collect();
//! assert_eq!(found, [("name", "value length must be at least 3 characters")]);
//! # Ok::<(), tonic_intercept::validate::protovalidate::prost_protovalidate::Error>(())
//! ```

use std::sync::{LazyLock, Mutex};

use prost_protovalidate::{Error, RuntimeError, Validator};
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use tonic::Status;

use super::Violations;
use crate::call::Call;

pub use prost_protovalidate;
pub use prost_reflect;

/// A message whose `.proto` carries `buf.validate` rules, checked by
/// [`validate_rules`](Self::validate_rules).
///
/// `tonic-intercept-build` (feature `protovalidate`) implements it for each message with
/// rules; `#[intercept(validate(Rpc))]` uses it for a request message without a
/// hand-written [`Validate`](super::Validate) impl.
pub trait ProtoValidate: prost::Message + Sized {
    /// The message's descriptor, with the `buf.validate` rules in its options.
    fn descriptor() -> &'static MessageDescriptor;

    /// Checks `self` against its rules, recording one violation per rule broken, with
    /// protovalidate's field path and message (or `[rule id]` when a rule has no message),
    /// in protovalidate's order. `Err` when the rules cannot be evaluated (a CEL
    /// expression that does not compile, say).
    fn validate_rules(&self, violations: &mut Violations) -> Result<(), Error> {
        let dynamic = DynamicMessage::decode(Self::descriptor().clone(), &*self.encode_to_vec())
            .map_err(|e| {
                Error::Runtime(RuntimeError {
                    cause: format!("transcoding to a dynamic message: {e}"),
                })
            })?;
        match VALIDATOR.validate(&dynamic) {
            Ok(()) => Ok(()),
            Err(Error::Validation(error)) => {
                for v in error.violations() {
                    let description = if v.message().is_empty() {
                        declared_message(&v.rule_path(), v.rule_id())
                            .or_else(|| {
                                message_rule_message(
                                    Self::descriptor(),
                                    &v.field_path(),
                                    v.rule_id(),
                                )
                            })
                            .unwrap_or_else(|| format!("[{}]", v.rule_id()))
                    } else {
                        v.message().to_owned()
                    };
                    violations.field(v.field_path(), description);
                }
                Ok(())
            }
            Err(other) => Err(other),
        }
    }
}

/// The message `buf/validate/validate.proto` declares for the rule `rule_id` at
/// `rule_path` (`string.email`, `repeated.items.string.uuid`): prost-protovalidate leaves
/// the message of the well-known format rules (email, uuid, hostname, ...) empty, as the
/// conformance suite expects of the wire `Violation`; a client reading `BadRequest` gets
/// protovalidate's own text instead (`value is empty, which is not a valid UUID`).
#[cold]
fn declared_message(rule_path: &str, rule_id: &str) -> Option<String> {
    use prost_reflect::{Kind, Value};

    let pool = &*prost_protovalidate::types::DESCRIPTOR_POOL;
    let mut message = pool.get_message_by_name("buf.validate.FieldRules")?;
    let mut segments = rule_path.split('.').peekable();
    let field = loop {
        let field = message.get_field_by_name(segments.next()?)?;
        if segments.peek().is_none() {
            break field;
        }
        match field.kind() {
            Kind::Message(inner) => message = inner,
            _ => return None,
        }
    };
    let predefined = pool.get_extension_by_name("buf.validate.predefined")?;
    let options = field.options();
    let value = options.get_extension(&predefined);
    let Value::Message(predefined) = value.as_ref() else {
        return None;
    };
    let rules = predefined.get_field_by_name("cel")?;
    let Value::List(rules) = rules.as_ref() else {
        return None;
    };
    rules.iter().find_map(|rule| {
        let rule = rule.as_message()?;
        let id = rule.get_field_by_name("id")?;
        if id.as_str()? != rule_id {
            return None;
        }
        let message = rule.get_field_by_name("message")?;
        message.as_str().map(str::to_owned)
    })
}

/// The message of the message-level rule `(buf.validate.message).cel` with id `rule_id`
/// on the message at `field_path` under `root` (`""`: `root` itself): prost-protovalidate
/// reports those rules with their id and no message, as the conformance suite expects of
/// the wire `Violation`; the `.proto` author's text is what a client should read.
#[cold]
fn message_rule_message(
    root: &MessageDescriptor,
    field_path: &str,
    rule_id: &str,
) -> Option<String> {
    use prost_reflect::{Kind, Value};

    let mut message = root.clone();
    for segment in field_path.split('.').filter(|s| !s.is_empty()) {
        let name = segment.split('[').next()?;
        let field = message.get_field_by_name(name)?;
        let field = if field.is_map() && segment.contains('[') {
            field.kind().as_message()?.map_entry_value_field()
        } else {
            field
        };
        message = match field.kind() {
            Kind::Message(inner) => inner,
            _ => return None,
        };
    }
    // The extension as the message's own pool (the generator's) defines it.
    let extension = message
        .parent_pool()
        .get_extension_by_name("buf.validate.message")?;
    let options = message.options();
    let value = options.get_extension(&extension);
    let Value::Message(rules) = value.as_ref() else {
        return None;
    };
    let cel = rules.get_field_by_name("cel")?;
    let Value::List(cel) = cel.as_ref() else {
        return None;
    };
    cel.iter().find_map(|rule| {
        let rule = rule.as_message()?;
        let id = rule.get_field_by_name("id")?;
        if id.as_str()? != rule_id {
            return None;
        }
        let text = rule.get_field_by_name("message")?;
        text.as_str().filter(|t| !t.is_empty()).map(str::to_owned)
    })
}

/// One validator for the process: it caches each message type's compiled rules.
static VALIDATOR: LazyLock<Validator> = LazyLock::new(Validator::new);

/// The pools decoded so far, by the address and length of their encoded set.
static POOLS: Mutex<Vec<(usize, usize, DescriptorPool)>> = Mutex::new(Vec::new());

/// The descriptor of `name` in the encoded `FileDescriptorSet` `set`, which the generated
/// code includes once per package; each set is decoded once.
///
/// # Panics
///
/// When `set` does not decode or lacks `name`: the generator wrote both, so either is a
/// bug of the generator.
#[doc(hidden)] // reached through `__private::proto_descriptor`
pub fn descriptor(set: &'static [u8], name: &str) -> MessageDescriptor {
    let key = (set.as_ptr() as usize, set.len());
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    let pool = match pools.iter().find(|(p, l, _)| (*p, *l) == key) {
        Some((_, _, pool)) => pool.clone(),
        None => {
            let pool = DescriptorPool::decode(set)
                .expect("tonic-intercept-build wrote a valid FileDescriptorSet");
            pools.push((key.0, key.1, pool.clone()));
            pool
        }
    };
    pool.get_message_by_name(name).unwrap_or_else(|| {
        panic!("`{name}` is in the FileDescriptorSet tonic-intercept-build wrote")
    })
}

/// Validates one inbound message of `call` against its `.proto` rules: `Ok` when it is
/// valid, else `INVALID_ARGUMENT` with the violations as `google.rpc.BadRequest`, as
/// [`check`](super::check) does for a hand-written impl.
#[doc(hidden)] // reached through the expansion's `Pick`
pub fn check<M: ProtoValidate>(call: &Call, message: &M) -> Result<(), Status> {
    let mut violations = Violations::new();
    match message.validate_rules(&mut violations) {
        Ok(()) if violations.is_empty() => Ok(()),
        Ok(()) => Err(violations.into_status(call.rpc().method)),
        Err(error) => Err(unevaluable(call, M::descriptor(), &error)),
    }
}

#[cold]
#[inline(never)]
fn unevaluable(call: &Call, descriptor: &MessageDescriptor, error: &Error) -> Status {
    tracing::error!(
        rpc = call.rpc().method,
        message = descriptor.full_name(),
        %error,
        "the buf.validate rules of a request message cannot be evaluated"
    );
    Status::internal(format!(
        "{}: the validation rules of `{}` cannot be evaluated",
        call.rpc().method,
        descriptor.full_name()
    ))
}
