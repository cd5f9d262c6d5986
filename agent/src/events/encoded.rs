//! Events kept in their protobuf encoding.
//!
//! berthd keeps the last few thousand events in memory for subscribers and
//! sends each to every subscriber. Kept as decoded `Event`s, every event was
//! five or six small allocations scattered over the heap (about 450 bytes
//! each, and pinning pages the allocator could otherwise give back), and
//! every delivery cloned and re-encoded it. Kept encoded, an event is one
//! slice of a shared 64 KiB chunk, encoded once at publication; a delivery
//! is a reference count and a copy of those bytes into the HTTP/2 frame.

use berth::v1::Event;
use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{DecodeContext, WireType};
use prost::{DecodeError, Message};

/// Bytes per chunk of the in-memory cache; one event is about 150.
const CHUNK: usize = 64 * 1024;

/// An `Event` in its protobuf encoding, sent as it is: the generated Events
/// server streams these (see `agent/build.rs`), and the wire format is that
/// of `Event`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EncodedEvent(Bytes);

impl EncodedEvent {
    /// Encodes `ev` into a buffer of its own.
    pub fn new(ev: &Event) -> Self {
        EncodedEvent(Bytes::from(ev.encode_to_vec()))
    }

    /// The encoding.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The same event in an allocation of its own. An `EncodedEvent` from
    /// the cache keeps its whole 64 KiB chunk alive: one that is held for
    /// long, apart from its neighbours, should be a copy.
    pub fn detached(&self) -> Self {
        EncodedEvent(Bytes::copy_from_slice(&self.0))
    }

    /// The event, decoded.
    #[cfg(test)]
    pub fn decode_event(&self) -> Result<Event, DecodeError> {
        Event::decode(self.0.clone())
    }
}

/// Encoding writes the stored bytes; decoding keeps every field's bytes as
/// they came, so a decoded `EncodedEvent` encodes to its input.
impl Message for EncodedEvent {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl bytes::Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let mut out = BytesMut::from(std::mem::take(&mut self.0));
        prost::encoding::encode_key(tag, wire_type, &mut out);
        // prost's own decoders check lengths and report truncation.
        match wire_type {
            WireType::Varint => {
                prost::encoding::encode_varint(prost::encoding::decode_varint(buf)?, &mut out);
            }
            WireType::SixtyFourBit => {
                let mut v = 0u64;
                prost::encoding::fixed64::merge(wire_type, &mut v, buf, ctx)?;
                out.put_u64_le(v);
            }
            WireType::ThirtyTwoBit => {
                let mut v = 0u32;
                prost::encoding::fixed32::merge(wire_type, &mut v, buf, ctx)?;
                out.put_u32_le(v);
            }
            WireType::LengthDelimited => {
                let mut v = Bytes::new();
                prost::encoding::bytes::merge(wire_type, &mut v, buf, ctx)?;
                prost::encoding::encode_varint(v.len() as u64, &mut out);
                out.put(v);
            }
            // proto3 has no groups: the error names the wire type.
            WireType::StartGroup | WireType::EndGroup => {
                prost::encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
            }
        }
        self.0 = out.freeze();
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0 = Bytes::new();
    }
}

/// A published event as the bus keeps it: the fields subscribers filter on
/// most, and the encoding.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    /// `Event.seq`.
    pub seq: u64,
    /// `Event.type`.
    pub r#type: i32,
    /// `Event.action`.
    pub action: i32,
    /// The whole event.
    pub encoded: EncodedEvent,
}

impl StoredEvent {
    fn of(ev: &Event, encoded: EncodedEvent) -> Self {
        StoredEvent {
            seq: ev.seq,
            r#type: ev.r#type,
            action: ev.action,
            encoded,
        }
    }

    /// The event encoded as `body` (a record of the event log), in a
    /// buffer of its own; `None` when its seq is below `from`. Only the kept
    /// fields are decoded, and only a kept event is copied.
    pub fn from_log(body: &[u8], from: u64) -> Result<Option<Self>, DecodeError> {
        let head = EventHead::decode(body)?;
        Ok((head.seq >= from).then(|| StoredEvent {
            seq: head.seq,
            r#type: head.r#type,
            action: head.action,
            encoded: EncodedEvent(Bytes::copy_from_slice(body)),
        }))
    }

    /// The fields of the event that the other filters need, decoded.
    pub fn key(&self) -> Result<EventKey, DecodeError> {
        EventKey::decode(self.encoded.0.clone())
    }
}

/// The fields of an `Event` (same tags) that [`StoredEvent`] keeps decoded.
#[derive(Clone, PartialEq, Message)]
struct EventHead {
    #[prost(uint64, tag = "1")]
    seq: u64,
    #[prost(int32, tag = "3")]
    r#type: i32,
    #[prost(int32, tag = "4")]
    action: i32,
}

/// The part of an `Event` (same tags) that container and label filters
/// look at. Decoding skips the other fields and allocates nothing but the
/// label list: the strings are slices of the stored encoding.
#[derive(Clone, PartialEq, Message)]
pub struct EventKey {
    /// `Event.id`.
    #[prost(bytes = "bytes", tag = "5")]
    pub id: Bytes,
    /// `Event.name`.
    #[prost(bytes = "bytes", tag = "6")]
    pub name: Bytes,
    /// `Event.labels`, as the wire carries a map: one entry message each.
    #[prost(message, repeated, tag = "7")]
    pub labels: Vec<Label>,
}

/// One entry of `Event.labels`.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    /// The label's key.
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    /// Its value.
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

impl EventKey {
    /// The value of label `key`; as in a decoded map, the last entry of a
    /// key counts.
    pub fn label(&self, key: &str) -> Option<&[u8]> {
        self.labels
            .iter()
            .rev()
            .find(|l| l.key == key.as_bytes())
            .map(|l| &l.value[..])
    }
}

/// Encodes events into shared chunks, so that thousands of cached events
/// are a few large allocations, freed chunk by chunk as the cache moves on.
#[derive(Default)]
pub struct Chunks {
    current: BytesMut,
}

impl Chunks {
    /// Encodes `ev` into the current chunk (a new one when it is full).
    pub fn store(&mut self, ev: &Event) -> StoredEvent {
        let len = ev.encoded_len();
        if self.current.capacity() - self.current.len() < len {
            self.current = BytesMut::with_capacity(CHUNK.max(len));
        }
        // Cannot fail: the capacity was checked above.
        let _ = ev.encode(&mut self.current);
        StoredEvent::of(ev, EncodedEvent(self.current.split().freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth::v1::{EventAction, ExitStatus, ObjectType};

    fn sample(seq: u64) -> Event {
        Event {
            seq,
            time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            r#type: ObjectType::Container as i32,
            action: EventAction::Exited as i32,
            id: format!("{seq:064x}"),
            name: format!("c{seq}"),
            labels: [("app".to_string(), "web".to_string())].into(),
            exit: Some(ExitStatus {
                exit_code: 3,
                ..Default::default()
            }),
            image: "busybox".into(),
            instance_id: "0123456789abcdef".into(),
            ..Default::default()
        }
    }

    #[test]
    fn chunks_keep_each_event_exactly_and_share_allocations() {
        let mut chunks = Chunks::default();
        let stored: Vec<_> = (1..=2000).map(|s| chunks.store(&sample(s))).collect();
        for (i, st) in stored.iter().enumerate() {
            let want = sample(i as u64 + 1);
            assert_eq!(st.seq, want.seq);
            assert_eq!(st.r#type, want.r#type);
            assert_eq!(st.action, want.action);
            assert_eq!(st.encoded.decode_event().unwrap(), want);
            let key = st.key().unwrap();
            assert_eq!(key.id, want.id.as_bytes());
            assert_eq!(key.name, want.name.as_bytes());
            assert_eq!(key.label("app"), Some(&b"web"[..]));
            assert_eq!(key.label("tier"), None);
        }
        // Consecutive events sit next to each other in one chunk.
        let (a, b) = (stored[0].encoded.bytes(), stored[1].encoded.bytes());
        assert_eq!(a.as_ptr_range().end, b.as_ptr());
    }

    #[test]
    fn the_last_entry_of_a_label_counts_as_in_a_decoded_map() {
        let two = [
            Label {
                key: Bytes::from_static(b"app"),
                value: Bytes::from_static(b"old"),
            },
            Label {
                key: Bytes::from_static(b"app"),
                value: Bytes::from_static(b"new"),
            },
        ];
        let wire = EventKey {
            labels: two.to_vec(),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(Event::decode(wire.as_slice()).unwrap().labels["app"], "new");
        assert_eq!(
            EventKey::decode(wire.as_slice()).unwrap().label("app"),
            Some(&b"new"[..])
        );
    }

    #[test]
    fn a_detached_copy_is_equal_and_owns_its_bytes() {
        let mut chunks = Chunks::default();
        let st = chunks.store(&sample(1));
        let copy = st.encoded.detached();
        assert_eq!(copy, st.encoded);
        assert_ne!(copy.bytes().as_ptr(), st.encoded.bytes().as_ptr());
    }

    #[test]
    fn an_event_larger_than_a_chunk_gets_one_of_its_own() {
        let mut chunks = Chunks::default();
        let mut big = sample(1);
        big.name = "n".repeat(CHUNK * 2);
        let st = chunks.store(&big);
        assert_eq!(st.encoded.decode_event().unwrap(), big);
        assert_eq!(
            chunks.store(&sample(2)).encoded.decode_event().unwrap(),
            sample(2)
        );
    }

    #[test]
    fn an_event_read_back_from_the_log_keeps_its_fields_and_bytes() {
        let ev = sample(7);
        let body = ev.encode_to_vec();
        let st = StoredEvent::from_log(&body, 7).unwrap().unwrap();
        assert_eq!((st.seq, st.r#type, st.action), (7, ev.r#type, ev.action));
        assert_eq!(st.encoded.bytes(), body.as_slice());
        assert!(StoredEvent::from_log(&body, 8).unwrap().is_none());
        assert!(StoredEvent::from_log(&body[..body.len() - 1], 0).is_err());
    }

    #[test]
    fn decoding_an_encoded_event_gives_back_the_same_bytes() {
        let ev = sample(9);
        let bytes = ev.encode_to_vec();
        let decoded = EncodedEvent::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.bytes(), bytes.as_slice());
        assert_eq!(decoded.encode_to_vec(), bytes);
        assert!(EncodedEvent::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    /// The hand-declared structs above re-declare `berth.v1.Event`'s field
    /// tags: each of their fields, encoded alone, must carry the tag and a
    /// wire type of the field of that name in the real descriptor, and
    /// decode a type that the proto's type is on the wire.
    #[test]
    fn hand_declared_fields_match_the_proto() {
        use prost_types::field_descriptor_proto::Type;
        use prost_types::{DescriptorProto, FileDescriptorSet};

        let set = FileDescriptorSet::decode(berth::FILE_DESCRIPTOR_SET).unwrap();
        let event: &DescriptorProto = set
            .file
            .iter()
            .filter(|f| f.package() == "berth.v1")
            .flat_map(|f| &f.message_type)
            .find(|m| m.name() == "Event")
            .expect("berth.v1.Event in the descriptor");
        let labels_entry = event
            .nested_type
            .iter()
            .find(|m| m.name() == "LabelsEntry")
            .expect("Event.labels is a map");

        /// The (tag, wire type) of the one field `msg` encodes. A varint
        /// field is set to 1 by the callers: it must be on the wire as 1,
        /// not zigzag-encoded (a `sint` declaration would read the proto's
        /// `int`/`enum` values wrong).
        fn key_of(msg: &impl Message) -> (u32, WireType) {
            let bytes = msg.encode_to_vec();
            let mut buf = bytes.as_slice();
            let (tag, wt) = prost::encoding::decode_key(&mut buf).unwrap();
            if wt == WireType::Varint {
                assert_eq!(
                    prost::encoding::decode_varint(&mut buf).unwrap(),
                    1,
                    "tag {tag}"
                );
            } else {
                prost::encoding::skip_field(wt, tag, &mut buf, DecodeContext::default()).unwrap();
            }
            assert!(buf.is_empty(), "one field was set, more were encoded");
            (tag, wt)
        }
        fn wire_of(t: Type) -> WireType {
            match t {
                Type::Double | Type::Fixed64 | Type::Sfixed64 => WireType::SixtyFourBit,
                Type::Float | Type::Fixed32 | Type::Sfixed32 => WireType::ThirtyTwoBit,
                Type::String | Type::Bytes | Type::Message => WireType::LengthDelimited,
                Type::Group => WireType::StartGroup,
                _ => WireType::Varint,
            }
        }
        let check = |msg: &DescriptorProto, name: &str, key: (u32, WireType), decodes: &[Type]| {
            let f = msg
                .field
                .iter()
                .find(|f| f.name() == name)
                .unwrap_or_else(|| panic!("{}.{name} is not in the proto", msg.name()));
            assert_eq!(
                (f.number() as u32, wire_of(f.r#type())),
                key,
                "{}.{name}: the hand-declared tag or wire type differs from the proto",
                msg.name()
            );
            assert!(
                decodes.contains(&f.r#type()),
                "{}.{name} is {:?} in the proto: the hand-declared field cannot decode it",
                msg.name(),
                f.r#type()
            );
        };
        let varint32 = [Type::Int32, Type::Enum];
        let text = [Type::String, Type::Bytes];
        let some = Bytes::from_static(b"x");

        check(
            event,
            "seq",
            key_of(&EventHead {
                seq: 1,
                ..Default::default()
            }),
            &[Type::Uint64],
        );
        check(
            event,
            "type",
            key_of(&EventHead {
                r#type: 1,
                ..Default::default()
            }),
            &varint32,
        );
        check(
            event,
            "action",
            key_of(&EventHead {
                action: 1,
                ..Default::default()
            }),
            &varint32,
        );
        let key = |k: EventKey| key_of(&k);
        check(
            event,
            "id",
            key(EventKey {
                id: some.clone(),
                ..Default::default()
            }),
            &text,
        );
        check(
            event,
            "name",
            key(EventKey {
                name: some.clone(),
                ..Default::default()
            }),
            &text,
        );
        let one_label = EventKey {
            labels: vec![Label::default()],
            ..Default::default()
        };
        check(event, "labels", key(one_label), &[Type::Message]);
        let label = |l: Label| key_of(&l);
        let entry_key = Label {
            key: some.clone(),
            ..Default::default()
        };
        check(labels_entry, "key", label(entry_key), &text);
        let entry_value = Label {
            value: some,
            ..Default::default()
        };
        check(labels_entry, "value", label(entry_value), &text);
    }
}
