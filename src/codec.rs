//! The codec every generated client and server uses: prost's protobuf
//! encoding, with small per-call buffers.
//!
//! tonic gives each call an encode buffer and a decode buffer of 8 KiB up
//! front and keeps them for as long as the call lasts. For a unary call
//! that is brief; a server stream holds both for its whole life, and a BFF
//! holds every open order watch twice (its client's stream and its own
//! stream to the orders service): 16 KiB of buffers for a stream that
//! carries a few hundred bytes every few seconds. Here both start at
//! [`BUFFER_BYTES`]; a message is encoded into exactly the room it needs,
//! reserved once from its encoded length, and a received message is read
//! into room reserved from the length in its frame header (tonic does
//! that itself), so large answers cost no extra copies.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic_prost::ProstDecoder;

/// Bytes each call's encode and decode buffers start with: a few order
/// status messages.
pub const BUFFER_BYTES: usize = 256;

/// How many bytes of ready stream messages are sent together (tonic's
/// default).
const YIELD_THRESHOLD: usize = 32 * 1024;

fn buffer_settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD)
}

/// `application/grpc+proto` with small buffers; see the module docs.
#[derive(Debug, Clone)]
pub struct SmallBufferCodec<T, U> {
    _messages: PhantomData<(T, U)>,
}

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self {
            _messages: PhantomData,
        }
    }
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = SizedEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        SizedEncoder {
            _message: PhantomData,
        }
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(buffer_settings())
    }
}

/// Encodes a message into room reserved once for all of it.
#[derive(Debug, Clone)]
pub struct SizedEncoder<T> {
    _message: PhantomData<T>,
}

impl<T: Message> Encoder for SizedEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding a message: {e}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffer_settings()
    }
}
