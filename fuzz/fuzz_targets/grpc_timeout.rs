//! `grpc-timeout` values (`tailor_interceptors::deadline`), which every
//! server parses from every call's metadata.
//!
//! Invariants: no panic; a value is accepted only in the protocol's shape
//! (one to eight digits and a unit), and the deadline it sets can be
//! reached from now without overflow; a duration formatted for a
//! downstream call parses back to no more time than there was.
//!
//! Crash inputs kept as regression tests: `tailor-interceptors`'s unit
//! tests (`deadline::tests`).

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tailor_interceptors::deadline::{format_grpc_timeout, parse_grpc_timeout};

fuzz_target!(|input: (&str, u64, u32)| {
    let (value, secs, nanos) = input;
    if let Some(timeout) = parse_grpc_timeout(value) {
        let (digits, unit) = value.split_at(value.len() - 1);
        assert!((1..=8).contains(&digits.len()), "{value:?}");
        assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{value:?}");
        assert!(["H", "M", "S", "m", "u", "n"].contains(&unit), "{value:?}");
        assert!(Instant::now().checked_add(timeout).is_some(), "{value:?}");
    }
    let left = Duration::new(secs % (100_000_000 * 3600), nanos % 1_000_000_000);
    let formatted = format_grpc_timeout(left);
    let parsed = parse_grpc_timeout(&formatted).expect("a formatted timeout parses");
    assert!(
        parsed <= left.max(Duration::from_micros(1)),
        "{left:?} became {formatted} ({parsed:?})"
    );
});
