//! Which fields a mobile call asks for: its read mask (request field,
//! `x-read-mask` header) or view, checked against the message descriptors
//! of the mobile API. The mask logic itself is `tailor-fieldmask`'s.

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, MessageDescriptor};
use tailor_fieldmask::{FieldMask, READ_MASK_HEADER, requested};
use tailor_proto::mobile::v1::ProductView;
use tonic::Status;
use tonic::metadata::MetadataMap;

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(tailor_proto::FILE_DESCRIPTOR_SET)
        .expect("the embedded descriptor set is valid")
});

fn descriptor(name: &str) -> MessageDescriptor {
    POOL.get_message_by_name(name)
        .expect("the mobile API's messages are in the descriptor set")
}

/// What a list row shows in the BASIC view.
const BASIC_CARD: &[&str] = &[
    "id",
    "title",
    "price_minor",
    "currency_code",
    "thumbnail_url",
];
/// What a product header shows in the BASIC view.
const BASIC_PAGE: &[&str] = &[
    "id",
    "title",
    "price_minor",
    "currency_code",
    "image_url",
    "stock",
];

fn resolve(
    message: &str,
    metadata: &MetadataMap,
    read_mask: Option<&prost_types::FieldMask>,
    view: i32,
    basic: &[&str],
) -> Result<FieldMask, Status> {
    let mut values = Vec::new();
    for value in metadata.get_all(READ_MASK_HEADER) {
        let value = value
            .to_str()
            .map_err(|_| Status::invalid_argument("x-read-mask is not valid text"))?;
        values.push(value);
    }
    let joined = values.join(",");
    let header = (!values.is_empty()).then_some(joined.as_str());
    let preset = if view == ProductView::Basic as i32 {
        basic
    } else {
        &[]
    };
    let field = read_mask.map_or(&[][..], |m| &m.paths[..]);
    requested(&descriptor(message), field, header, preset)
        .map_err(|error| Status::invalid_argument(error.to_string()))
}

/// The mask for each card of a list (paths of `ProductCard`).
pub fn card_mask(
    metadata: &MetadataMap,
    read_mask: Option<&prost_types::FieldMask>,
    view: i32,
) -> Result<FieldMask, Status> {
    resolve(
        "tailor.mobile.v1.ProductCard",
        metadata,
        read_mask,
        view,
        BASIC_CARD,
    )
}

/// The mask for a product screen (paths of `GetProductPageResponse`).
pub fn page_mask(
    metadata: &MetadataMap,
    read_mask: Option<&prost_types::FieldMask>,
    view: i32,
) -> Result<FieldMask, Status> {
    resolve(
        "tailor.mobile.v1.GetProductPageResponse",
        metadata,
        read_mask,
        view,
        BASIC_PAGE,
    )
}
