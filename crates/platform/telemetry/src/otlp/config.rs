//! Where and how spans are exported, from the standard environment
//! variables, read the way the OpenTelemetry SDKs read them.

use std::time::Duration;

use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};

use crate::env;

/// The export settings of an [`super::OtlpSpanProcessor`].
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// The OTLP/gRPC endpoint, `http://host:port`.
    pub endpoint: String,
    /// Metadata sent with every export (`OTEL_EXPORTER_OTLP_HEADERS`).
    pub headers: MetadataMap,
    /// How long one export may take (`OTEL_EXPORTER_OTLP_TIMEOUT`, bounded
    /// by `OTEL_BSP_EXPORT_TIMEOUT`); default 10 s.
    pub timeout: Duration,
    /// Request compression (`OTEL_EXPORTER_OTLP_COMPRESSION`: `gzip`,
    /// `zstd` or `none`).
    pub compression: Option<CompressionEncoding>,
    /// How often buffered spans are exported (`OTEL_BSP_SCHEDULE_DELAY`
    /// ms); default 1 s.
    pub schedule_delay: Duration,
    /// Spans buffered at most; beyond, spans are dropped and counted
    /// (`OTEL_BSP_MAX_QUEUE_SIZE`); default 2048.
    pub max_queue_size: usize,
    /// Spans that wake the exporter before its schedule
    /// (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`); default 512.
    pub max_export_batch_size: usize,
}

/// The default of `OTEL_EXPORTER_OTLP_TIMEOUT`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default of `OTEL_BSP_SCHEDULE_DELAY`: the SDKs' 5 s, shortened so a
/// trace shows up while one still looks at the page that made it.
const DEFAULT_SCHEDULE_DELAY: Duration = Duration::from_secs(1);
const DEFAULT_MAX_QUEUE_SIZE: usize = 2048;
const DEFAULT_MAX_EXPORT_BATCH_SIZE: usize = 512;

impl ExportConfig {
    /// Exports to `endpoint` with every other setting at its default.
    pub fn new(endpoint: impl Into<String>) -> Self {
        ExportConfig {
            endpoint: endpoint.into(),
            headers: MetadataMap::new(),
            timeout: DEFAULT_TIMEOUT,
            compression: None,
            schedule_delay: DEFAULT_SCHEDULE_DELAY,
            max_queue_size: DEFAULT_MAX_QUEUE_SIZE,
            max_export_batch_size: DEFAULT_MAX_EXPORT_BATCH_SIZE,
        }
    }

    /// The settings the environment gives, the traces-specific variable
    /// (`OTEL_EXPORTER_OTLP_TRACES_*`) before the general one; an error
    /// names a variable whose value cannot be used.
    pub fn from_env() -> Result<Self, String> {
        let endpoint = signal_env("ENDPOINT").unwrap_or_else(|| "http://localhost:4317".into());
        let insecure = signal_env("INSECURE").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let mut config = ExportConfig::new(with_scheme(endpoint, insecure));
        if let Some(headers) = signal_env("HEADERS") {
            config.headers = parse_headers(&headers);
        }
        if let Some(ms) = signal_env("TIMEOUT").and_then(|v| v.trim().parse().ok()) {
            config.timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = number("OTEL_BSP_EXPORT_TIMEOUT") {
            config.timeout = config.timeout.min(Duration::from_millis(ms as u64));
        }
        config.compression = match signal_env("COMPRESSION").as_deref().map(str::trim) {
            None | Some("none") => None,
            Some("gzip") => Some(CompressionEncoding::Gzip),
            Some("zstd") => Some(CompressionEncoding::Zstd),
            Some(other) => {
                return Err(format!(
                    "OTEL_EXPORTER_OTLP_COMPRESSION={other}: gzip, zstd or none"
                ));
            }
        };
        if let Some(ms) = number("OTEL_BSP_SCHEDULE_DELAY") {
            config.schedule_delay = Duration::from_millis(ms.max(1) as u64);
        }
        if let Some(size) = number("OTEL_BSP_MAX_QUEUE_SIZE") {
            config.max_queue_size = size.max(1);
        }
        if let Some(size) = number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") {
            config.max_export_batch_size = size.max(1);
        }
        config.max_export_batch_size = config.max_export_batch_size.min(config.max_queue_size);
        if config.endpoint.starts_with("https:") {
            return Err(format!(
                "{}: only plaintext OTLP/gRPC (http://) is built in; export to a local collector",
                config.endpoint
            ));
        }
        Ok(config)
    }
}

/// `OTEL_EXPORTER_OTLP_TRACES_<name>`, else `OTEL_EXPORTER_OTLP_<name>`.
fn signal_env(name: &str) -> Option<String> {
    env(&format!("OTEL_EXPORTER_OTLP_TRACES_{name}"))
        .or_else(|| env(&format!("OTEL_EXPORTER_OTLP_{name}")))
}

fn number(name: &str) -> Option<usize> {
    let value = env(name)?;
    match value.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => {
            tracing::warn!(variable = name, value, "not a number; using the default");
            None
        }
    }
}

/// An endpoint without a scheme is `https://` unless insecure is asked for,
/// as the OTLP exporter specification says.
fn with_scheme(endpoint: String, insecure: bool) -> String {
    let has_scheme = endpoint
        .split_once("://")
        .is_some_and(|(scheme, _)| !scheme.contains(['/', '?', '#']));
    match (has_scheme, insecure) {
        (true, _) => endpoint,
        (false, true) => format!("http://{endpoint}"),
        (false, false) => format!("https://{endpoint}"),
    }
}

/// `key1=value1,key2=value2`, values percent-decoded; pairs that are not
/// valid gRPC metadata are reported and left out.
pub(crate) fn parse_headers(text: &str) -> MetadataMap {
    let mut headers = MetadataMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            tracing::warn!(pair, "OTEL_EXPORTER_OTLP_HEADERS: not key=value; left out");
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let value = percent_decode(value.trim());
        match (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            (Ok(key), Ok(value)) if !value.is_empty() => {
                headers.append(key, value);
            }
            _ => tracing::warn!(
                key,
                "OTEL_EXPORTER_OTLP_HEADERS: not valid metadata; left out"
            ),
        }
    }
    headers
}

/// `%XX` escapes decoded; a malformed escape is kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_pairs_with_percent_decoded_values() {
        let headers = parse_headers("api-key=a%20b%3Dc, X-Tenant = acme ,broken,=x");
        assert_eq!(headers.get("api-key").unwrap(), "a b=c");
        assert_eq!(headers.get("x-tenant").unwrap(), "acme");
        assert_eq!(headers.len(), 2);
    }

    #[test]
    fn an_endpoint_without_a_scheme_is_tls_unless_insecure() {
        assert_eq!(with_scheme("c:4317".into(), true), "http://c:4317");
        assert_eq!(with_scheme("c:4317".into(), false), "https://c:4317");
        assert_eq!(with_scheme("http://c:4317".into(), false), "http://c:4317");
    }
}
