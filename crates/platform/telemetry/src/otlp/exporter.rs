//! The exporter thread: on its schedule, when woken by a full buffer, or
//! when asked to flush, it swaps the shared buffer for an empty one and
//! sends what it took as one `TraceService/Export` call, the request body
//! already protobuf, through a tonic client with a pass-through codec.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prost::Message as _;
use prost::bytes::BufMut as _;
use tokio::sync::mpsc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};

use super::encode::{self, ScopePart};
use super::{ExportConfig, Pending, Shared};

/// The OTLP/gRPC trace export method.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// What the processor asks of the exporter thread; each answers on its
/// sender once the buffered spans are exported (or failed to be).
pub(super) enum Command {
    /// Export what is buffered.
    Flush(std::sync::mpsc::Sender<()>),
    /// Export what is buffered, then stop.
    Shutdown(std::sync::mpsc::Sender<()>),
}

/// The processor's handle on its exporter thread.
#[derive(Debug)]
pub(super) struct Exporter {
    commands: mpsc::UnboundedSender<Command>,
    timeout: Duration,
}

impl Exporter {
    /// Starts the exporter thread for `config`.
    pub(super) fn start(shared: Arc<Shared>, config: ExportConfig) -> Result<Self, String> {
        let endpoint = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|e| format!("OTLP endpoint {}: {e}", config.endpoint))?
            .connect_timeout(config.timeout)
            .timeout(config.timeout);
        let (commands, received) = mpsc::unbounded_channel();
        let timeout = config.timeout;
        std::thread::Builder::new()
            .name("otlp-span-export".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => runtime.block_on(run(shared, config, endpoint, received)),
                    Err(error) => tracing::error!(%error, "span export thread: no runtime"),
                }
            })
            .map_err(|e| format!("starting the span export thread: {e}"))?;
        Ok(Exporter { commands, timeout })
    }

    /// Hands `command` to the thread; fails when the thread has stopped.
    pub(super) fn send(&self, command: Command) -> Result<(), ()> {
        self.commands.send(command).map_err(|_| ())
    }

    /// How long one export may take.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// The exporter thread's loop.
async fn run(
    shared: Arc<Shared>,
    config: ExportConfig,
    endpoint: Endpoint,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut client = Client::new(endpoint.connect_lazy(), &config);
    let mut taken = Pending::default();
    let mut health = Health::default();
    let mut schedule = tokio::time::interval(config.schedule_delay);
    schedule.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    schedule.tick().await;
    loop {
        let (answer, stop) = tokio::select! {
            _ = schedule.tick() => (None, false),
            () = shared.wake.notified() => (None, false),
            command = commands.recv() => match command {
                Some(Command::Flush(done)) => (Some(done), false),
                Some(Command::Shutdown(done)) => (Some(done), true),
                // The processor is gone without shutting down.
                None => (None, true),
            },
        };
        export(&shared, &mut taken, &mut client, &mut health).await;
        if let Some(done) = answer {
            let _ = done.send(());
        }
        if stop {
            return;
        }
    }
}

/// Whether exports have been failing, and spans dropped, so each run of
/// trouble is logged once.
#[derive(Debug, Default)]
struct Health {
    failing: bool,
    rejecting: bool,
    dropping: bool,
    dropped_seen: u64,
}

/// Takes what is buffered (leaving `taken`'s emptied buffers in its
/// place) and sends it.
async fn export(shared: &Shared, taken: &mut Pending, client: &mut Client, health: &mut Health) {
    std::mem::swap(&mut *shared.pending(), taken);
    note_drops(shared, health);
    if taken.spans == 0 {
        return;
    }
    let resource = shared.resource();
    let parts: Vec<ScopePart<'_>> = taken
        .scopes
        .iter()
        .filter(|s| !s.spans.is_empty())
        .map(|s| ScopePart {
            head: &s.head,
            spans: &s.spans,
            tail: &s.tail,
        })
        .collect();
    let request = encode::export_request(&resource, &parts);
    let spans = taken.spans as u64;
    taken.clear();
    let counts = &shared.counts;
    match client.export(request).await {
        Ok(rejected) => {
            let rejected = rejected.clamp(0, spans as i64) as u64;
            counts
                .exported
                .fetch_add(spans - rejected, Ordering::Relaxed);
            counts.failed.fetch_add(rejected, Ordering::Relaxed);
            if health.failing {
                tracing::info!(endpoint = client.endpoint, "exporting spans again");
                health.failing = false;
            }
            if rejected > 0 && !health.rejecting {
                tracing::warn!(
                    endpoint = client.endpoint,
                    rejected,
                    "the trace receiver rejected spans"
                );
            }
            health.rejecting = rejected > 0;
        }
        Err(error) => {
            counts.failed.fetch_add(spans, Ordering::Relaxed);
            if !health.failing {
                tracing::warn!(
                    endpoint = client.endpoint,
                    %error,
                    spans,
                    "exporting spans failed; they are dropped, and so are later ones until an export succeeds"
                );
                health.failing = true;
            }
        }
    }
}

/// Logs, once per run of them, spans dropped because the buffer was full.
fn note_drops(shared: &Shared, health: &mut Health) {
    let dropped = shared.counts.dropped.load(Ordering::Relaxed);
    let new = dropped - health.dropped_seen;
    if new > 0 && !health.dropping {
        tracing::warn!(
            dropped = new,
            limit = shared.max_queue_size,
            "spans are ending faster than they are exported: the span buffer is full and spans are dropped"
        );
    }
    health.dropping = new > 0;
    health.dropped_seen = dropped;
}

/// The gRPC client of the trace receiver.
struct Client {
    grpc: tonic::client::Grpc<Channel>,
    headers: MetadataMap,
    timeout: Duration,
    endpoint: String,
}

impl Client {
    fn new(channel: Channel, config: &ExportConfig) -> Self {
        let mut grpc = tonic::client::Grpc::new(channel);
        if let Some(encoding) = config.compression {
            grpc = grpc.send_compressed(encoding);
        }
        Client {
            grpc,
            headers: config.headers.clone(),
            timeout: config.timeout,
            endpoint: config.endpoint.clone(),
        }
    }

    /// Sends one encoded `ExportTraceServiceRequest`; the receiver's count
    /// of rejected spans, or why the call failed.
    async fn export(&mut self, body: Vec<u8>) -> Result<i64, String> {
        let mut request = tonic::Request::new(body);
        *request.metadata_mut() = self.headers.clone();
        request.set_timeout(self.timeout);
        let grpc = &mut self.grpc;
        let call = async move {
            grpc.ready().await.map_err(|e| e.to_string())?;
            grpc.unary(request, PathAndQuery::from_static(EXPORT_PATH), ExportCodec)
                .await
                .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(response)) => Ok(response
                .into_inner()
                .partial_success
                .map_or(0, |p| p.rejected_spans)),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }
}

/// `ExportTraceServiceResponse`, the part of it read here.
#[derive(Clone, PartialEq, prost::Message)]
struct ExportResponse {
    #[prost(message, optional, tag = "1")]
    partial_success: Option<PartialSuccess>,
}

/// `ExportTracePartialSuccess`.
#[derive(Clone, PartialEq, prost::Message)]
struct PartialSuccess {
    #[prost(int64, tag = "1")]
    rejected_spans: i64,
    #[prost(string, tag = "2")]
    error_message: String,
}

/// Sends a request already encoded; decodes the response.
#[derive(Debug, Clone, Copy)]
struct ExportCodec;

impl Codec for ExportCodec {
    type Encode = Vec<u8>;
    type Decode = ExportResponse;
    type Encoder = ExportCodec;
    type Decoder = ExportCodec;

    fn encoder(&mut self) -> Self::Encoder {
        ExportCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        ExportCodec
    }
}

impl Encoder for ExportCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ExportCodec {
    type Item = ExportResponse;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<ExportResponse>, tonic::Status> {
        ExportResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("export response: {e}")))
    }
}
