//! berth.v1 messages as JSON, in the protobuf's own JSON mapping
//! (<https://protobuf.dev/programming-guides/json/>): lowerCamelCase keys
//! (each field's `json_name`), enums by value name (`"CONTAINER_STATE_RUNNING"`),
//! 64-bit integers as strings, bytes as base64, `Timestamp` as RFC 3339.
//!
//! The rendering is driven by the crate's own descriptor set
//! ([`crate::FILE_DESCRIPTOR_SET`]) rather than by hand-written code, so a
//! field added to the proto reaches the JSON with no change here. Unlike the
//! strictest form of the mapping, fields at their default value are kept
//! (`"restartCount": 0`), so a script can rely on every key being present;
//! unset message fields and unset `optional` fields are left out.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

/// Why a message could not be rendered as JSON. None of these can happen
/// with messages of this crate unless the build itself is broken, but a
/// client prints an error rather than aborting.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The embedded descriptor set does not decode.
    #[error("the berth.v1 descriptors built into this program are invalid: {0}")]
    Descriptors(String),
    /// The message is not described by the embedded descriptor set.
    #[error("no descriptor for message {0}")]
    UnknownMessage(String),
    /// The message's own encoding does not decode against its descriptor.
    #[error("cannot read a {name} against its descriptor")]
    Decode {
        /// Full name of the message.
        name: String,
        /// What the decoder said.
        #[source]
        source: prost::DecodeError,
    },
    /// serde_json refused the value.
    #[error("cannot render JSON")]
    Serialize(#[from] serde_json::Error),
}

/// The berth.v1 descriptors (and the well-known types they import), decoded
/// once from [`crate::FILE_DESCRIPTOR_SET`].
pub fn descriptor_pool() -> Result<&'static DescriptorPool, JsonError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| JsonError::Descriptors(e.clone()))
}

/// The options every rendering uses: canonical, but with default values kept.
fn options() -> SerializeOptions {
    SerializeOptions::new().skip_default_fields(false)
}

/// `message` as a JSON value (an object).
pub fn to_value<M: prost::Message + prost::Name>(
    message: &M,
) -> Result<serde_json::Value, JsonError> {
    Ok(serde_json::to_value(Rendered::new(message)?)?)
}

/// `message` as one line of JSON (no newline).
pub fn to_string<M: prost::Message + prost::Name>(message: &M) -> Result<String, JsonError> {
    Ok(serde_json::to_string(&Rendered::new(message)?)?)
}

/// A message read back against its descriptor, ready for serde.
struct Rendered(DynamicMessage);

impl Rendered {
    fn new<M: prost::Message + prost::Name>(message: &M) -> Result<Self, JsonError> {
        let name = M::full_name();
        let desc = descriptor_pool()?
            .get_message_by_name(&name)
            .ok_or_else(|| JsonError::UnknownMessage(name.clone()))?;
        // Both sides are generated from the same descriptors, so the
        // encoding round-trips exactly.
        let dynamic = DynamicMessage::decode(desc, message.encode_to_vec().as_slice())
            .map_err(|source| JsonError::Decode { name, source })?;
        Ok(Self(dynamic))
    }
}

impl serde::Serialize for Rendered {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_with_options(serializer, &options())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Container, ContainerState, ExitStatus};
    use serde_json::json;

    #[test]
    fn canonical_mapping_with_defaults_kept() {
        let c = Container {
            id: "abc".into(),
            state: ContainerState::Running as i32,
            created_at: Some(prost_types::Timestamp {
                seconds: 1_714_557_600,
                nanos: 500_000_000,
            }),
            exit: Some(ExitStatus {
                exit_code: 137,
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = to_value(&c).expect("renders");
        assert_eq!(v["id"], "abc");
        assert_eq!(v["state"], "CONTAINER_STATE_RUNNING");
        assert_eq!(v["createdAt"], "2024-05-01T10:00:00.500Z");
        assert_eq!(v["exit"]["exitCode"], 137);
        assert_eq!(v["exit"]["oomKilled"], false);
        // Defaults are kept, unset messages are left out.
        assert_eq!(v["restartCount"], 0);
        assert!(v.get("startedAt").is_none());
        assert_eq!(v["labels"], json!({}));
        let line = to_string(&c).expect("renders");
        assert!(!line.contains('\n'));
    }

    /// Every field of every message berthctl prints (and of the messages
    /// they hold), set to a value that is not its default, must reach the
    /// JSON under its `json_name` with a value that is not empty either.
    /// Messages with a `oneof` are checked once per member.
    #[test]
    fn every_field_of_printed_messages_reaches_json() {
        use crate::v1::*;
        check::<Container>();
        check::<Image>();
        check::<Event>();
        check::<InfoResponse>();
        check::<LogEntry>();
        check::<ExitStatus>();
        check::<StopContainerResponse>();
        check::<KillContainerResponse>();
        check::<RemoveContainerResponse>();
        check::<WaitContainerResponse>();
        check::<PauseContainerResponse>();
        check::<ResumeContainerResponse>();
        check::<UpdateContainerResponse>();
        check::<StartContainerResponse>();
        check::<CreateContainerResponse>();
        check::<RunContainerResponse>();
        check::<RunAttachedResponse>();
        check::<ImportImageResponse>();
        check::<RemoveImageResponse>();
        check::<PullImageProgress>();
        check::<LoginResponse>();
        check::<LogoutResponse>();
        // `kill -o json` prints the request it carried out.
        check::<KillContainerRequest>();
        check::<LayerProgress>();
    }

    fn check<M: prost::Message + prost::Name + Default>() {
        let pool = descriptor_pool().expect("descriptors");
        let desc = pool
            .get_message_by_name(&M::full_name())
            .expect("a descriptor");
        let widest_oneof = desc.oneofs().map(|o| o.fields().len()).max().unwrap_or(1);
        for choice in 0..widest_oneof {
            let full = filled(&desc, choice, 0);
            // Through the Rust type, as berthctl holds it: a field the struct
            // does not carry would be lost here.
            let typed = M::decode(full.encode_to_vec().as_slice()).expect("decodes");
            let json = to_value(&typed).expect("renders");
            let mut missing = Vec::new();
            reached(&full, &json, M::full_name(), &mut missing);
            assert!(
                missing.is_empty(),
                "fields missing from the JSON: {missing:?}"
            );
        }
    }

    use prost::Message as _;
    use prost_reflect::{Kind, MapKey, MessageDescriptor, ReflectMessage, Value};

    /// A message with every field set to a non-default value (the
    /// `choice`-th member of each oneof).
    fn filled(desc: &MessageDescriptor, choice: usize, depth: usize) -> DynamicMessage {
        let mut m = DynamicMessage::new(desc.clone());
        if desc.full_name() == "google.protobuf.Timestamp" {
            m.set_field_by_name("seconds", Value::I64(1_714_557_600));
            return m;
        }
        for field in desc.fields() {
            if let Some(oneof) = field.containing_oneof() {
                let members: Vec<_> = oneof.fields().collect();
                if members[choice % members.len()].number() != field.number() {
                    continue;
                }
            }
            let one = |kind: &Kind| sample(kind, choice, depth);
            let value = if field.is_map() {
                let Kind::Message(entry) = field.kind() else {
                    unreachable!("a map field is a message of entries")
                };
                let key = entry.map_entry_key_field();
                let val = entry.map_entry_value_field();
                let key = match one(&key.kind()) {
                    Value::String(s) => MapKey::String(s),
                    Value::I32(i) => MapKey::I32(i),
                    Value::I64(i) => MapKey::I64(i),
                    Value::U32(i) => MapKey::U32(i),
                    Value::U64(i) => MapKey::U64(i),
                    Value::Bool(b) => MapKey::Bool(b),
                    other => panic!("unexpected map key {other:?}"),
                };
                Value::Map([(key, one(&val.kind()))].into_iter().collect())
            } else if field.is_list() {
                Value::List(vec![one(&field.kind())])
            } else {
                one(&field.kind())
            };
            m.set_field(&field, value);
        }
        m
    }

    fn sample(kind: &Kind, choice: usize, depth: usize) -> Value {
        match kind {
            Kind::Double => Value::F64(1.5),
            Kind::Float => Value::F32(1.5),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(7),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(7),
            Kind::Uint32 | Kind::Fixed32 => Value::U32(7),
            Kind::Uint64 | Kind::Fixed64 => Value::U64(7),
            Kind::Bool => Value::Bool(true),
            Kind::String => Value::String("x".into()),
            Kind::Bytes => Value::Bytes(b"x".to_vec().into()),
            Kind::Enum(e) => Value::EnumNumber(
                e.values()
                    .map(|v| v.number())
                    .find(|n| *n != 0)
                    .unwrap_or(0),
            ),
            Kind::Message(m) => {
                assert!(depth < 8, "messages nest too deep: {}", m.full_name());
                Value::Message(filled(m, choice, depth + 1))
            }
        }
    }

    /// Checks that every field set in `m` is in `json` with a non-empty
    /// value, recursing into messages; collects what is not.
    fn reached(
        m: &DynamicMessage,
        json: &serde_json::Value,
        path: String,
        missing: &mut Vec<String>,
    ) {
        for (field, value) in m.fields() {
            let here = format!("{path}.{}", field.name());
            let Some(j) = json.get(field.json_name()) else {
                missing.push(here);
                continue;
            };
            let empty = match j {
                serde_json::Value::Null => true,
                serde_json::Value::Bool(b) => !b,
                serde_json::Value::Number(n) => n.as_f64() == Some(0.0),
                serde_json::Value::String(s) => s.is_empty() || s == "0",
                serde_json::Value::Array(a) => a.is_empty(),
                serde_json::Value::Object(o) => o.is_empty(),
            };
            if empty {
                missing.push(format!("{here} (empty: {j})"));
                continue;
            }
            match value {
                Value::Message(inner) if inner.descriptor().full_name().starts_with("berth.") => {
                    reached(inner, j, here, missing)
                }
                Value::List(items) => {
                    if let (Some(Value::Message(inner)), Some(first)) = (items.first(), j.get(0)) {
                        reached(inner, first, here, missing);
                    }
                }
                Value::Map(entries) => {
                    for v in entries.values() {
                        if let (Value::Message(inner), Some(obj)) = (v, j.as_object()) {
                            if let Some(first) = obj.values().next() {
                                reached(inner, first, here.clone(), missing);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
}
