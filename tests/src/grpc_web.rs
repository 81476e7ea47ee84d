//! A grpc-web client for tests, written from the protocol description so
//! it can also send what real clients never would (truncated frames, bad
//! base64, wrong content types) over HTTP/1.1 or HTTP/2.

use std::net::SocketAddr;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// The two grpc-web wire formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `application/grpc-web+proto`.
    Binary,
    /// `application/grpc-web-text+proto` (base64).
    Text,
}

impl Mode {
    /// Both formats.
    pub const ALL: [Mode; 2] = [Mode::Binary, Mode::Text];

    /// The request content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Mode::Binary => "application/grpc-web+proto",
            Mode::Text => "application/grpc-web-text+proto",
        }
    }
}

/// Which HTTP version to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http {
    /// HTTP/1.1, as most browsers send grpc-web to a plain-HTTP origin.
    One,
    /// HTTP/2 with prior knowledge.
    Two,
}

/// A length-prefixed message frame.
pub fn frame(message: &impl prost::Message) -> Vec<u8> {
    let payload = message.encode_to_vec();
    let mut frame = Vec::with_capacity(payload.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    frame
}

/// `bytes` as the body of a `mode` request.
pub fn body(mode: Mode, bytes: &[u8]) -> Bytes {
    match mode {
        Mode::Binary => Bytes::copy_from_slice(bytes),
        Mode::Text => base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into(),
    }
}

/// A grpc-web POST of `body` (already encoded for `mode`) to `path`.
pub fn request(address: SocketAddr, path: &str, mode: Mode, body: Bytes) -> Request<Full<Bytes>> {
    Request::post(format!("http://{address}{path}"))
        .header("content-type", mode.content_type())
        .header("accept", mode.content_type())
        .header("x-grpc-web", "1")
        .header("x-user-agent", "tailor-e2e")
        .body(Full::new(body))
        .unwrap()
}

/// Sends `request` and returns the response with its body still streaming.
pub async fn open(
    address: SocketAddr,
    http: Http,
    mut request: Request<Full<Bytes>>,
) -> http::Response<Incoming> {
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let io = TokioIo::new(tcp);
    match http {
        Http::One => {
            let host = HeaderValue::from_str(&address.to_string()).unwrap();
            request.headers_mut().insert(http::header::HOST, host);
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        }
        Http::Two => {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        }
    }
}

/// A whole grpc-web answer, decoded.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub http_status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Message payloads in order.
    pub messages: Vec<Bytes>,
    /// The trailers frame, or the headers of a trailers-only answer.
    pub trailers: HeaderMap,
}

impl Reply {
    /// `grpc-status`, if the answer has one.
    pub fn code(&self) -> Option<tonic::Code> {
        let value = self.trailers.get("grpc-status")?.to_str().ok()?;
        Some(tonic::Code::from_i32(value.parse().ok()?))
    }

    /// `grpc-message`, percent-decoded as far as tests need (spaces).
    pub fn message(&self) -> String {
        self.trailers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .replace("%20", " ")
    }

    /// The messages decoded as `M`.
    pub fn decode<M: prost::Message + Default>(&self) -> Vec<M> {
        self.messages
            .iter()
            .map(|m| M::decode(m.clone()).unwrap())
            .collect()
    }
}

/// Decodes a `-text` body: concatenated, separately padded base64 pieces.
pub fn decode_text(text: &[u8]) -> Vec<u8> {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for quad in text.chunks(4) {
        let mut buf = [0u8; 3];
        let n = engine.decode_slice(quad, &mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// Splits decoded frames into messages and trailers.
pub fn parse_frames(mut bytes: &[u8]) -> (Vec<Bytes>, HeaderMap) {
    let mut messages = Vec::new();
    let mut trailers = HeaderMap::new();
    while bytes.len() >= 5 {
        let flags = bytes[0];
        let length = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        let payload = &bytes[5..5 + length];
        if flags & 0x80 != 0 {
            for line in String::from_utf8_lossy(payload).split("\r\n") {
                if let Some((name, value)) = line.split_once(':') {
                    trailers.append(
                        http::HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes())
                            .unwrap(),
                        HeaderValue::from_str(value.trim()).unwrap(),
                    );
                }
            }
        } else {
            messages.push(Bytes::copy_from_slice(payload));
        }
        bytes = &bytes[5 + length..];
    }
    assert!(
        bytes.is_empty(),
        "{} stray bytes after the last frame",
        bytes.len()
    );
    (messages, trailers)
}

/// Reads the rest of `response` and decodes it as a `mode` answer.
pub async fn read(mode: Mode, response: http::Response<Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let raw = body.collect().await.unwrap().to_bytes();
    let decoded = match mode {
        Mode::Binary => raw.to_vec(),
        Mode::Text => decode_text(&raw),
    };
    let (messages, mut trailers) = parse_frames(&decoded);
    if trailers.is_empty() && parts.headers.contains_key("grpc-status") {
        trailers = parts.headers.clone();
    }
    Reply {
        http_status: parts.status,
        headers: parts.headers,
        messages,
        trailers,
    }
}

/// One grpc-web call of `message` to `path`, answer read whole.
pub async fn call(
    address: SocketAddr,
    http: Http,
    mode: Mode,
    path: &str,
    message: &impl prost::Message,
    extra_headers: &[(&'static str, &str)],
) -> Reply {
    let mut request = request(address, path, mode, body(mode, &frame(message)));
    for (name, value) in extra_headers {
        request
            .headers_mut()
            .append(*name, HeaderValue::from_str(value).unwrap());
    }
    read(mode, open(address, http, request).await).await
}
