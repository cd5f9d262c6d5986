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
pub fn to_value<M: prost::Message + prost::Name>(message: &M) -> Result<serde_json::Value, JsonError> {
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
}
