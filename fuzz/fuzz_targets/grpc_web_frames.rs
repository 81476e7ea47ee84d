//! The grpc-web guard's decoder (`tailor_browser::grpc_web::request_frames`):
//! any body, in either wire format, against any size limit.
//!
//! Invariants: no panic; a refusal is INVALID_ARGUMENT or RESOURCE_EXHAUSTED
//! with a short message that never echoes the body; what is accepted is
//! exactly one uncompressed message frame within the limit, the binary body
//! itself, and the same frame again when sent as base64 text (whole or in
//! separately padded pieces); every message within the limit is accepted in
//! both formats.
//!
//! Crash inputs kept as regression tests: `tailor-browser`'s unit tests
//! (`grpc_web::tests`).

#![no_main]

use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tailor_browser::grpc_web::request_frames;
use tailor_interceptors::protocol::Wire;
use tonic::Code;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    text: bool,
    /// Small limits are the interesting ones: the body is at most a few KiB.
    limit: u16,
    /// Where a well-formed text body is cut into two padded pieces.
    split: u16,
    body: &'a [u8],
}

fn frame(message: &[u8]) -> Vec<u8> {
    let mut frame = vec![0];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

fn check(body: &[u8], wire: Wire, limit: usize) -> Result<Bytes, tonic::Status> {
    let result = request_frames(Bytes::copy_from_slice(body), wire, limit);
    match &result {
        Err(status) => {
            assert!(
                matches!(
                    status.code(),
                    Code::InvalidArgument | Code::ResourceExhausted
                ),
                "{status:?}"
            );
            assert!(status.message().len() < 160, "{:?}", status.message());
        }
        Ok(frames) => {
            assert!(frames.len() >= 5);
            assert_eq!(frames[0], 0, "only an uncompressed message frame passes");
            let length = u32::from_be_bytes([frames[1], frames[2], frames[3], frames[4]]) as usize;
            assert_eq!(length, frames.len() - 5, "exactly one frame");
            assert!(length <= limit, "{length} bytes passed a limit of {limit}");
            if wire == Wire::GrpcWeb {
                assert_eq!(&frames[..], body, "a binary body passes as it is");
            }
        }
    }
    result
}

fuzz_target!(|input: Input<'_>| {
    let limit = usize::from(input.limit);
    let wire = if input.text {
        Wire::GrpcWebText
    } else {
        Wire::GrpcWeb
    };
    if let Ok(frames) = check(input.body, wire, limit) {
        // What passes in one format passes in the other, unchanged.
        let again = check(
            STANDARD.encode(&frames).as_bytes(),
            Wire::GrpcWebText,
            limit,
        );
        assert_eq!(again.unwrap(), frames);
        assert_eq!(check(&frames, Wire::GrpcWeb, limit).unwrap(), frames);
    }

    // The body as a message: accepted in both formats exactly when it is
    // within the limit, as one piece of base64 or two.
    let framed = frame(input.body);
    let within = input.body.len() <= limit;
    let binary = check(&framed, Wire::GrpcWeb, limit);
    assert_eq!(binary.is_ok(), within, "{binary:?}");
    if !within {
        assert_eq!(binary.unwrap_err().code(), Code::ResourceExhausted);
    }
    let text = check(
        STANDARD.encode(&framed).as_bytes(),
        Wire::GrpcWebText,
        limit,
    );
    assert_eq!(text.is_ok(), within, "{text:?}");
    let (a, b) = framed.split_at(usize::from(input.split) % (framed.len() + 1));
    let pieces = format!("{}\r\n{}", STANDARD.encode(a), STANDARD.encode(b));
    let pieces = check(pieces.as_bytes(), Wire::GrpcWebText, limit);
    assert_eq!(pieces.is_ok(), within, "{pieces:?}");
    if within {
        assert_eq!(&text.unwrap()[..], &framed[..]);
        assert_eq!(&pieces.unwrap()[..], &framed[..]);
    }
});
