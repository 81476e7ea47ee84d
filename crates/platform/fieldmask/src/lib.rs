//! Read masks (AIP-157) for any protobuf message, driven by its descriptor.
//!
//! A [`FieldMask`] is parsed once against a message descriptor, so an
//! unknown path is refused with the path named, before any work is done.
//! It then answers two questions:
//!
//! - [`FieldMask::selects`]: is any part of this field wanted? Handlers use
//!   it to skip downstream calls whose results the mask would drop.
//! - [`FieldMask::apply`]: the message with every unselected field cleared.
//!   This works on the wire encoding: fields are kept or dropped by number,
//!   and nested messages (also inside repeated fields) are pruned with
//!   their sub-mask. No per-message code exists anywhere.
//!
//! Paths are dot-separated field names (`top_reviews.text`); a path through
//! a repeated message field applies to every element; `*` or an empty mask
//! selects everything. Map fields and scalars can only be selected whole.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use bytes::{Buf, BufMut};
use prost::encoding::{
    DecodeContext, WireType, decode_key, decode_varint, encode_key, encode_varint, skip_field,
};
use prost_reflect::{Kind, MessageDescriptor};

/// Why a mask was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    /// A path names a field the message does not have.
    #[error("unknown field {path:?} in read mask for {message}")]
    UnknownPath {
        /// The path as given.
        path: String,
        /// The message it was checked against.
        message: String,
    },
    /// A path descends into a field that is not a message.
    #[error("read mask path {path:?} goes into {field}, which has no fields")]
    NotAMessage {
        /// The path as given.
        path: String,
        /// The scalar, enum or map field it went into.
        field: String,
    },
    /// An empty segment, as in `a..b` or a trailing dot.
    #[error("read mask path {0:?} is malformed")]
    Malformed(String),
    /// More paths than any message here has fields to name.
    #[error("read mask must hold at most {MAX_PATHS} paths")]
    TooManyPaths,
    /// A path longer than any that names a field.
    #[error("read mask paths must be at most {MAX_PATH_CHARS} characters")]
    PathTooLong,
}

/// The most paths a mask may hold, and the longest path: far above what
/// any real mask needs, and small enough that a refusal (which names the
/// path) stays small too.
pub const MAX_PATHS: usize = 64;
/// See [`MAX_PATHS`].
pub const MAX_PATH_CHARS: usize = 128;

/// The metadata header generic clients (grpcurl, `buf curl`) send a read
/// mask in: paths separated by commas or spaces, in one or several values.
pub const READ_MASK_HEADER: &str = "x-read-mask";

/// The mask a call asks for, by precedence: the request's own mask field
/// when it has paths, else the [`READ_MASK_HEADER`] value, else `preset`
/// (a view's paths; empty selects everything).
pub fn requested(
    message: &MessageDescriptor,
    field: &[String],
    header: Option<&str>,
    preset: &[&str],
) -> Result<FieldMask, MaskError> {
    if field.iter().any(|p| !p.trim().is_empty()) {
        return FieldMask::parse(message, field);
    }
    match header.filter(|h| !h.trim().is_empty()) {
        Some(list) => FieldMask::parse_list(message, list),
        None => FieldMask::parse(message, preset),
    }
}

/// Which fields of one message level are selected.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Node {
    /// `None`: the whole message. `Some`: only these fields, by number,
    /// each with what is selected inside it.
    fields: Option<BTreeMap<u32, Node>>,
}

impl Node {
    fn all() -> Self {
        Node { fields: None }
    }

    fn selects_all(&self) -> bool {
        self.fields.is_none()
    }
}

/// A parsed, validated read mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMask {
    root: Node,
    message: MessageDescriptor,
}

impl FieldMask {
    /// Everything of `message`.
    pub fn all(message: &MessageDescriptor) -> Self {
        FieldMask {
            root: Node::all(),
            message: message.clone(),
        }
    }

    /// Parses `paths` against `message`. No paths, or `*`, selects
    /// everything; a path that selects a field also selects all of it,
    /// whatever longer paths say.
    pub fn parse<S: AsRef<str>>(
        message: &MessageDescriptor,
        paths: &[S],
    ) -> Result<Self, MaskError> {
        let paths: Vec<&str> = paths
            .iter()
            .map(|p| p.as_ref().trim())
            .filter(|p| !p.is_empty())
            .collect();
        if paths.len() > MAX_PATHS {
            return Err(MaskError::TooManyPaths);
        }
        if paths.iter().any(|p| p.len() > MAX_PATH_CHARS) {
            return Err(MaskError::PathTooLong);
        }
        if paths.is_empty() || paths.contains(&"*") {
            return Ok(Self::all(message));
        }
        let mut root = Node {
            fields: Some(BTreeMap::new()),
        };
        for path in paths {
            add_path(&mut root, message, path)?;
        }
        Ok(FieldMask {
            root,
            message: message.clone(),
        })
    }

    /// Parses a list of paths separated by commas or spaces, as a metadata
    /// header carries it (`title,price_minor,top_reviews.text`).
    pub fn parse_list(message: &MessageDescriptor, list: &str) -> Result<Self, MaskError> {
        let paths: Vec<&str> = list.split([',', ' ']).collect();
        Self::parse(message, &paths)
    }

    /// Whether the mask selects everything.
    pub fn is_all(&self) -> bool {
        self.root.selects_all()
    }

    /// Whether any part of the field at `path` is selected: the field
    /// itself, something inside it, or a field around it. A path unknown to
    /// the message is never selected.
    pub fn selects(&self, path: &str) -> bool {
        let mut node = &self.root;
        let mut message = self.message.clone();
        for name in path.split('.') {
            let Some(fields) = &node.fields else {
                return true;
            };
            let Some(field) = message.get_field_by_name(name) else {
                return false;
            };
            let Some(inner) = fields.get(&field.number()) else {
                return false;
            };
            node = inner;
            match field.kind() {
                Kind::Message(m) => message = m,
                _ => return true,
            }
        }
        true
    }

    /// `message` with every unselected field cleared; handed back as it is
    /// when the mask selects everything.
    pub fn apply<M: prost::Message + Default>(&self, message: M) -> M {
        if self.is_all() {
            return message;
        }
        let pruned = prune(&message.encode_to_vec(), &self.root);
        M::decode(pruned.as_slice()).unwrap_or_default()
    }

    /// The encoded message `bytes` with every unselected field dropped.
    pub fn apply_encoded(&self, bytes: &[u8]) -> Vec<u8> {
        prune(bytes, &self.root)
    }
}

fn add_path(root: &mut Node, message: &MessageDescriptor, path: &str) -> Result<(), MaskError> {
    let mut node = root;
    let mut descriptor = message.clone();
    let mut names = path.split('.').peekable();
    while let Some(name) = names.next() {
        if name.is_empty() {
            return Err(MaskError::Malformed(path.to_owned()));
        }
        let field = descriptor
            .get_field_by_name(name)
            .ok_or_else(|| MaskError::UnknownPath {
                path: path.to_owned(),
                message: message.full_name().to_owned(),
            })?;
        let Some(fields) = node.fields.as_mut() else {
            // An enclosing field is selected whole already.
            return Ok(());
        };
        let last = names.peek().is_none();
        let child = fields.entry(field.number()).or_insert_with(|| Node {
            fields: Some(BTreeMap::new()),
        });
        if last {
            *child = Node::all();
            return Ok(());
        }
        match field.kind() {
            Kind::Message(inner) if !field.is_map() => {
                descriptor = inner;
                node = child;
            }
            _ => {
                return Err(MaskError::NotAMessage {
                    path: path.to_owned(),
                    field: field.full_name().to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// Copies the fields of one encoded message level that `node` selects,
/// pruning selected sub-messages with their own node. Bytes that do not
/// parse end the copy: the result is then what could be read before them.
fn prune(mut bytes: &[u8], node: &Node) -> Vec<u8> {
    let Some(fields) = &node.fields else {
        return bytes.to_vec();
    };
    let mut out = Vec::with_capacity(bytes.len());
    while bytes.has_remaining() {
        let start = bytes;
        let Ok((number, wire_type)) = decode_key(&mut bytes) else {
            break;
        };
        let key_len = start.len() - bytes.len();
        // The field's extent, whatever its wire type: groups too, which
        // proto3 never writes but a peer may send as unknown fields.
        if skip_field(wire_type, number, &mut bytes, DecodeContext::default()).is_err() {
            break;
        }
        let field = &start[..start.len() - bytes.len()];
        match fields.get(&number) {
            Some(child) if wire_type == WireType::LengthDelimited && !child.selects_all() => {
                let mut payload = &field[key_len..];
                let Ok(_) = decode_varint(&mut payload) else {
                    break;
                };
                let inner = prune(payload, child);
                encode_key(number, WireType::LengthDelimited, &mut out);
                encode_varint(inner.len() as u64, &mut out);
                out.put_slice(&inner);
            }
            Some(_) => out.extend_from_slice(field),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use prost_reflect::DescriptorPool;
    use tailor_proto::mobile::v1::{
        GetProductPageResponse, ListProductsResponse, ProductCard, ReviewSnippet, StockState,
    };

    use super::*;

    fn descriptor(name: &str) -> MessageDescriptor {
        DescriptorPool::decode(tailor_proto::FILE_DESCRIPTOR_SET)
            .unwrap()
            .get_message_by_name(name)
            .unwrap()
    }

    fn page() -> GetProductPageResponse {
        GetProductPageResponse {
            id: "prod-000001".into(),
            title: "Mug".into(),
            price_minor: 1299,
            currency_code: "EUR".into(),
            stock: StockState::Low.into(),
            rating_tenths: 45,
            top_reviews: vec![
                ReviewSnippet {
                    author_name: "Ada".into(),
                    rating: 5,
                    text: "Lovely".into(),
                },
                ReviewSnippet {
                    author_name: "Bob".into(),
                    rating: 4,
                    text: "Fine".into(),
                },
            ],
            related: vec![ProductCard {
                id: "prod-000002".into(),
                title: "Cup".into(),
                price_minor: 999,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    const PAGE: &str = "tailor.mobile.v1.GetProductPageResponse";

    #[test]
    fn scalar_paths_keep_only_those_fields() {
        let mask = FieldMask::parse(&descriptor(PAGE), &["title", "price_minor"]).unwrap();
        let masked = mask.apply(page());
        assert_eq!(
            masked,
            GetProductPageResponse {
                title: "Mug".into(),
                price_minor: 1299,
                ..Default::default()
            }
        );
    }

    #[test]
    fn nested_paths_through_repeated_fields_apply_to_every_element() {
        let mask = FieldMask::parse(
            &descriptor(PAGE),
            &["id", "top_reviews.rating", "related.id"],
        )
        .unwrap();
        let masked = mask.apply(page());
        assert_eq!(masked.id, "prod-000001");
        assert_eq!(
            masked.top_reviews,
            vec![
                ReviewSnippet {
                    rating: 5,
                    ..Default::default()
                },
                ReviewSnippet {
                    rating: 4,
                    ..Default::default()
                }
            ]
        );
        assert_eq!(masked.related[0].id, "prod-000002");
        assert_eq!(masked.related[0].title, "");
        assert_eq!(masked.title, "");
    }

    #[test]
    fn a_whole_field_wins_over_its_parts() {
        let mask =
            FieldMask::parse(&descriptor(PAGE), &["top_reviews.text", "top_reviews"]).unwrap();
        assert_eq!(mask.apply(page()).top_reviews, page().top_reviews);
        let mask =
            FieldMask::parse(&descriptor(PAGE), &["top_reviews", "top_reviews.text"]).unwrap();
        assert_eq!(mask.apply(page()).top_reviews, page().top_reviews);
    }

    #[test]
    fn empty_and_star_masks_select_everything() {
        for paths in [vec![], vec!["*"], vec!["", " "]] {
            let mask = FieldMask::parse(&descriptor(PAGE), &paths).unwrap();
            assert!(mask.is_all());
            assert_eq!(mask.apply(page()), page());
        }
    }

    #[test]
    fn unknown_and_malformed_paths_are_refused_by_name() {
        let d = descriptor(PAGE);
        let error = FieldMask::parse(&d, &["title", "colour"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("unknown field \"colour\" in read mask for {PAGE}")
        );
        let error = FieldMask::parse(&d, &["top_reviews.stars"]).unwrap_err();
        assert!(
            matches!(error, MaskError::UnknownPath { ref path, .. } if path == "top_reviews.stars")
        );
        let error = FieldMask::parse(&d, &["title.length"]).unwrap_err();
        assert!(matches!(error, MaskError::NotAMessage { .. }), "{error}");
        let error = FieldMask::parse(&d, &["top_reviews..text"]).unwrap_err();
        assert!(matches!(error, MaskError::Malformed(_)));
    }

    #[test]
    fn masks_too_long_to_be_real_are_refused_without_echoing_them() {
        let d = descriptor(PAGE);
        let long = "x".repeat(100_000);
        let error = FieldMask::parse(&d, &[long.as_str()]).unwrap_err();
        assert_eq!(error, MaskError::PathTooLong);
        assert!(error.to_string().len() < 100, "{error}");
        let many = vec!["title"; MAX_PATHS + 1];
        assert_eq!(
            FieldMask::parse(&d, &many).unwrap_err(),
            MaskError::TooManyPaths
        );
        let list = vec!["title"; 10_000].join(",");
        assert_eq!(
            FieldMask::parse_list(&d, &list).unwrap_err(),
            MaskError::TooManyPaths
        );
        assert!(FieldMask::parse(&d, &vec!["title"; MAX_PATHS]).is_ok());
    }

    #[test]
    fn selects_answers_for_fields_their_parts_and_their_wholes() {
        let d = descriptor(PAGE);
        let mask = FieldMask::parse_list(&d, "title,top_reviews.text").unwrap();
        assert!(mask.selects("title"));
        assert!(mask.selects("top_reviews"));
        assert!(mask.selects("top_reviews.text"));
        assert!(!mask.selects("top_reviews.rating"));
        assert!(!mask.selects("related"));
        assert!(!mask.selects("stock"));
        let whole = FieldMask::parse(&d, &["related"]).unwrap();
        assert!(whole.selects("related.title"));
        assert!(FieldMask::all(&d).selects("anything"));
    }

    #[test]
    fn the_request_field_wins_over_the_header_which_wins_over_the_view() {
        let d = descriptor(PAGE);
        let field = vec!["title".to_owned()];
        let preset = ["id"];
        let pick = |field: &[String], header| requested(&d, field, header, &preset).unwrap();
        assert!(pick(&field, Some("stock")).selects("title"));
        assert!(!pick(&field, Some("stock")).selects("stock"));
        assert!(pick(&[], Some("stock")).selects("stock"));
        assert!(pick(&[], None).selects("id") && !pick(&[], None).selects("title"));
        assert!(requested(&d, &[], Some(" "), &[]).unwrap().is_all());
        assert!(requested(&d, &[], Some("nope"), &[]).is_err());
    }

    #[test]
    fn fields_after_a_group_are_kept() {
        use prost::Message;
        use tailor_proto::orders::v1::CreateOrderResponse;
        let d = descriptor("tailor.orders.v1.CreateOrderResponse");
        let mask = FieldMask::parse(&d, &["replayed"]).unwrap();
        // An unknown group (field 14: one varint) before `replayed`: the
        // copy stopped at the group and dropped the selected field.
        let minimal = [0x73, 0x08, 0x05, 0x74, 0x10, 0x01];
        assert_eq!(mask.apply_encoded(&minimal), [0x10, 0x01]);
        // The input the field_mask fuzz target found it with.
        let mut found = b"eviews\x10\x10\x10\x10\x10\x10\x10\x10hha".to_vec();
        found.extend([0x1a; 86]);
        found.extend(b"lt_texthhhhhhh\xb4h\x10\xd6\x10\x10\xfa\x10\x10\x10");
        let masked = CreateOrderResponse::decode(mask.apply_encoded(&found).as_slice()).unwrap();
        assert_eq!(
            masked,
            CreateOrderResponse::decode(found.as_slice()).unwrap()
        );
        assert!(masked.replayed);
        // An unfinished group still ends the copy, as any unreadable bytes do.
        assert_eq!(mask.apply_encoded(&[0x10, 0x01, 0x73, 0x08]), [0x10, 0x01]);
    }

    #[test]
    fn works_for_any_message_including_lists_and_well_known_types() {
        let list = ListProductsResponse {
            products: vec![ProductCard {
                id: "a".into(),
                title: "b".into(),
                ..Default::default()
            }],
            next_page_token: "t".into(),
            ..Default::default()
        };
        let mask = FieldMask::parse(
            &descriptor("tailor.mobile.v1.ListProductsResponse"),
            &["products.title"],
        )
        .unwrap();
        let masked = mask.apply(list);
        assert_eq!(masked.products[0].title, "b");
        assert_eq!(masked.products[0].id, "");
        assert_eq!(masked.next_page_token, "");

        let time = prost_types::Timestamp {
            seconds: 7,
            nanos: 9,
        };
        let mask = FieldMask::parse(&descriptor("google.protobuf.Timestamp"), &["nanos"]).unwrap();
        assert_eq!(
            mask.apply(time),
            prost_types::Timestamp {
                seconds: 0,
                nanos: 9
            }
        );
    }
}
