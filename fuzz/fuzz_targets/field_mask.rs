//! Read masks (`tailor_fieldmask`) parsed against every message of the
//! contracts and applied to any bytes.
//!
//! Paths are built from fields the message really has (descending into
//! message fields, so deep masks are reached) mixed with arbitrary text,
//! and also as one header value split the way `x-read-mask` is.
//!
//! Invariants: no panic; a refusal names a bounded amount of the input;
//! every path of an accepted mask is selected; applying a mask never
//! grows the bytes and is idempotent; the mask that selects everything
//! hands the bytes back unchanged; when the bytes are a valid message, so
//! is the masked result, without the fields the mask leaves out and with
//! every field it names whole, unchanged.
//!
//! Crash inputs kept as regression tests: `tailor-fieldmask`'s unit tests.

#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor};
use tailor_fieldmask::{FieldMask, requested};

static MESSAGES: LazyLock<Vec<MessageDescriptor>> = LazyLock::new(|| {
    DescriptorPool::decode(tailor_proto::FILE_DESCRIPTOR_SET)
        .unwrap()
        .all_messages()
        .collect()
});

#[derive(Debug, Arbitrary)]
enum Segment {
    /// The n-th field of the message reached so far.
    Field(u8),
    /// Anything at all.
    Text(String),
}

#[derive(Debug, Arbitrary)]
enum Mask {
    /// A list of paths, as a request's mask field carries them.
    Paths(Vec<Vec<Segment>>),
    /// One header value.
    Header(String),
}

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    message: u16,
    mask: Mask,
    /// A path asked about with `selects`.
    probe: String,
    bytes: &'a [u8],
}

/// The path `segments` spell in `message`, descending through message
/// fields as far as they go.
fn path(message: &MessageDescriptor, segments: &[Segment]) -> String {
    let mut names = Vec::new();
    let mut current = Some(message.clone());
    for segment in segments {
        match segment {
            Segment::Text(text) => {
                names.push(text.clone());
                current = None;
            }
            Segment::Field(n) => {
                let Some(message) = current.clone() else {
                    names.push(format!("f{n}"));
                    continue;
                };
                let fields: Vec<_> = message.fields().collect();
                if fields.is_empty() {
                    names.push(format!("f{n}"));
                    current = None;
                    continue;
                }
                let field = &fields[usize::from(*n) % fields.len()];
                names.push(field.name().to_owned());
                current = match field.kind() {
                    Kind::Message(inner) if !field.is_map() => Some(inner),
                    _ => None,
                };
            }
        }
    }
    names.join(".")
}

/// Whether `bytes` are `message` as prost's generated code would accept
/// it. `DynamicMessage` alone is laxer: it decodes a map field sent with a
/// varint wire type as if it were length-delimited (prost-reflect 0.16),
/// which generated code refuses and no encoder produces.
fn strict(message: &MessageDescriptor, mut bytes: &[u8], depth: u32) -> bool {
    if depth > 32 {
        return false;
    }
    while !bytes.is_empty() {
        let Ok((number, wire_type)) = decode_key(&mut bytes) else {
            return false;
        };
        let mut value = bytes;
        if skip_field(wire_type, number, &mut bytes, DecodeContext::default()).is_err() {
            return false;
        }
        let Some(field) = message.get_field(number) else {
            continue;
        };
        if let Kind::Message(inner) = field.kind() {
            if wire_type != WireType::LengthDelimited {
                return false;
            }
            let Ok(len) = decode_varint(&mut value) else {
                return false;
            };
            if !strict(&inner, &value[..len as usize], depth + 1) {
                return false;
            }
        }
    }
    true
}

fuzz_target!(|input: Input<'_>| {
    let messages = &*MESSAGES;
    let message = &messages[usize::from(input.message) % messages.len()];
    let (paths, parsed) = match &input.mask {
        Mask::Paths(list) => {
            let paths: Vec<String> = list.iter().map(|s| path(message, s)).collect();
            let parsed = FieldMask::parse(message, &paths);
            // The same paths in the request's field win over any header.
            let via_field = requested(message, &paths, Some(&input.probe), &[]);
            if paths.iter().any(|p| !p.trim().is_empty()) {
                assert_eq!(via_field, parsed);
            }
            (paths, parsed)
        }
        Mask::Header(value) => {
            let paths = value.split([',', ' ']).map(str::to_owned).collect();
            let parsed = FieldMask::parse_list(message, value);
            let _ = requested(message, &[], Some(value), &["*"]);
            (paths, parsed)
        }
    };
    let mask = match parsed {
        Ok(mask) => mask,
        Err(error) => {
            // The refusal names at most one path, of at most 128 characters
            // (escaped, up to ten each), whatever the input.
            assert!(error.to_string().len() < 2048, "{error}");
            return;
        }
    };
    let _ = mask.selects(&input.probe);
    for p in &paths {
        let p = p.trim();
        if !p.is_empty() && p != "*" {
            assert!(mask.selects(p), "{p:?} is in the mask but not selected");
        }
    }

    let masked = mask.apply_encoded(input.bytes);
    assert!(masked.len() <= input.bytes.len());
    assert_eq!(mask.apply_encoded(&masked), masked, "masking is idempotent");
    assert_eq!(
        FieldMask::all(message).apply_encoded(input.bytes),
        input.bytes
    );

    let Ok(original) = DynamicMessage::decode(message.clone(), input.bytes) else {
        return;
    };
    if !strict(message, input.bytes, 0) {
        return;
    }
    let result = DynamicMessage::decode(message.clone(), masked.as_slice())
        .expect("a valid message stays valid when masked");
    for field in message.fields() {
        if !mask.selects(field.name()) {
            assert!(
                !result.has_field(&field),
                "{} was not selected",
                field.name()
            );
        } else if field.containing_oneof().is_none()
            && paths.iter().any(|p| p.trim() == field.name())
        {
            assert_eq!(
                original.get_field(&field),
                result.get_field(&field),
                "{} was selected whole",
                field.name()
            );
        }
    }
});
