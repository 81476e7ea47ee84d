//! Measurements shared by `tailor-bench` and the tests that assert their
//! targets.

#![forbid(unsafe_code)]

pub mod payload;
