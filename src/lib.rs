//! Tailor's contracts: the Rust code generated from `proto/` and the encoded
//! descriptor set that every server hands to reflection.
//!
//! `proto/` is the source of truth; nothing here is written by hand except
//! the module tree and the codec the generated clients and servers use
//! (`codec`: prost's encoding with small per-call buffers, so that
//! long-lived streams stay cheap). This crate holds no other behaviour.

#![forbid(unsafe_code)]
#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

/// Every file under `proto/` and its imports (well-known types included),
/// encoded as a `google.protobuf.FileDescriptorSet`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tailor_descriptor.bin"));

pub mod codec;

/// `tailor.type.v1`: types shared by several contracts.
pub mod r#type {
    /// `tailor.type.v1`
    pub mod v1 {
        tonic::include_proto!("tailor.r#type.v1");
    }
}

/// `tailor.catalog.v1`: products, categories, images, prices.
pub mod catalog {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("tailor.catalog.v1");
    }
}

/// `tailor.inventory.v1`: stock per product and warehouse, reservations.
pub mod inventory {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("tailor.inventory.v1");
    }
}

/// `tailor.reviews.v1`: ratings and review texts.
pub mod reviews {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("tailor.reviews.v1");
    }
}

/// `tailor.orders.v1`: idempotent orders and their status stream.
pub mod orders {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("tailor.orders.v1");
    }
}

/// `tailor.web.v1`: the web BFF's API.
pub mod web {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("tailor.web.v1");
    }
}

/// `tailor.mobile.v1`: the mobile BFF's API.
pub mod mobile {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("tailor.mobile.v1");
    }
}

/// `tailor.partner.v1`: the partner BFF's frozen API.
pub mod partner {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("tailor.partner.v1");
    }
}
