//! Log and trace set-up shared by every binary.
//!
//! Logs: `tracing` to stderr, or to a file rotated by size
//! ([`RotatingFile`], `--log-file`), human-readable or JSON lines
//! (`--log-format json` / `TAILOR_LOG_FORMAT=json`), filtered by `RUST_LOG`
//! (default `info`). In JSON, every line written during a call carries the
//! call's `trace_id`, `span_id` and `request_id` (the trace layer's `call`
//! span, printed as `"span"`), the access line included; plain text keeps
//! its lines short and names the request id on the access line only.
//!
//! Traces: [`init_traces`] installs the process's OpenTelemetry tracer
//! provider as the standard `OTEL_*` environment variables say
//! (`tailor_telemetry::trace`).

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The size at which a log file is rotated unless configured: 16 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Rotated log files kept unless configured.
pub const DEFAULT_KEEP: usize = 3;

/// The `tracing` target of the span every call runs in (see
/// `tailor_interceptors::trace`).
const CALL_IDS_TARGET: &str = "call_ids";

/// Installs the global subscriber writing to stderr; a second call is a
/// no-op.
pub fn init(json: bool) {
    let ansi = std::io::stderr().is_terminal();
    match StderrLines::open() {
        Ok(lines) => install(json, ansi, lines),
        Err(_) => install(json, ansi, std::io::stderr),
    }
}

/// Stderr for log lines, each line written with one `write` of its own
/// and no lock around it. `std::io::stderr()` locks the stream for the
/// whole system call: a thread descheduled while it holds that lock, as
/// happens on a CPU a flood keeps busy, holds up every thread that logs,
/// and with them their calls, for as long as it waits for the CPU. That is
/// how a downstream service's mobile threads once held its web threads
/// back by several milliseconds. The kernel keeps a line of a log file
/// whole; on a pipe, a line longer than `PIPE_BUF` (4 KiB) may be
/// interleaved with another's.
#[derive(Debug)]
struct StderrLines(File);

impl StderrLines {
    fn open() -> std::io::Result<Self> {
        use std::os::fd::AsFd;
        let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
        Ok(Self(File::from(stderr)))
    }
}

impl<'a> MakeWriter<'a> for StderrLines {
    type Writer = &'a File;

    fn make_writer(&'a self) -> Self::Writer {
        &self.0
    }
}

/// Installs the global subscriber writing to `file`; a second call is a
/// no-op.
pub fn init_to_file(json: bool, file: RotatingFile) {
    let _ = INSTALLED.set(file.clone());
    install(json, false, file);
}

fn install<W>(json: bool, ansi: bool, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if !json {
        // Text lines would repeat the call's ids as a prefix on every line.
        filter = filter.add_directive(
            format!("{CALL_IDS_TARGET}=off")
                .parse()
                .expect("a valid directive"),
        );
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}

/// A log file that is rotated when it would pass a size: `path` is moved
/// to `path.1`, `path.1` to `path.2` and so on, the oldest beyond `keep`
/// is removed, and a new `path` is begun. At most `keep + 1` files exist,
/// each at most `max_bytes` (or one line, if a line is longer). Files are
/// created 0600 (logs name users and requests); an existing `path` is
/// appended to. A line never straddles two files.
///
/// Lines are written in batches: a line waits in memory until
/// [`FLUSH_BYTES`] have gathered or [`FLUSH_EVERY`] has passed (a thread
/// of its own writes them then), or until [`flush`] at exit, instead of
/// one system call for each line: every call writes an access line in
/// every process it passes. A process killed outright loses at most the
/// last [`FLUSH_EVERY`] of lines.
#[derive(Debug, Clone)]
pub struct RotatingFile {
    shared: Arc<Shared>,
}

/// Lines gathered before they are written at once.
pub const FLUSH_BYTES: usize = 32 * 1024;

/// The longest a line waits in memory.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    current: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    file: File,
    /// Bytes of the current file, the lines waiting to be written included.
    written: u64,
    /// Lines not yet written to `file`.
    waiting: Vec<u8>,
}

impl RotatingFile {
    /// Opens (or creates) `path`, and its directory if missing (0700), and
    /// starts the thread that writes waiting lines every [`FLUSH_EVERY`].
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let file = open_private(path)?;
        let written = file.metadata()?.len();
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            max_bytes: max_bytes.max(1),
            keep,
            current: Mutex::new(Current {
                file,
                written,
                waiting: Vec::new(),
            }),
        });
        let flushed = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(FLUSH_EVERY);
                    let Some(shared) = flushed.upgrade() else {
                        return;
                    };
                    // Nowhere to say it: the next write reports it.
                    let _ = shared.lock().write_waiting();
                }
            })?;
        Ok(Self { shared })
    }

    /// The `n`-th rotated file (`path.n`).
    pub fn rotated(&self, n: usize) -> PathBuf {
        self.shared.rotated(n)
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Moves the files one place down and begins a new `path`.
    fn rotate(&self, current: &mut Current) -> std::io::Result<()> {
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        current.file = open_private(&self.path)?;
        current.written = 0;
        Ok(())
    }
}

impl Current {
    /// Writes the waiting lines to the file.
    fn write_waiting(&mut self) -> std::io::Result<()> {
        if self.waiting.is_empty() {
            return Ok(());
        }
        let written = self.file.write_all(&self.waiting);
        self.waiting.clear();
        written
    }
}

fn open_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    // An older file keeps its mode on open: make it private too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

impl Write for &RotatingFile {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let shared = &self.shared;
        let mut current = shared.lock();
        if current.written > 0 && current.written + line.len() as u64 > shared.max_bytes {
            current.write_waiting()?;
            if let Err(error) = shared.rotate(&mut current) {
                // The cap holds even when the files cannot be moved (a full
                // or read-only directory): the current file starts over
                // rather than growing without bound.
                current.file.set_len(0)?;
                let note = format!("log rotation failed ({error}); earlier lines were dropped\n");
                current.file.write_all(note.as_bytes())?;
                current.written = note.len() as u64;
            }
        }
        current.waiting.extend_from_slice(line);
        current.written += line.len() as u64;
        if current.waiting.len() >= FLUSH_BYTES {
            current.write_waiting()?;
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.shared.lock().write_waiting()
    }
}

/// The log file [`init_to_file`] installed, for [`flush`].
static INSTALLED: std::sync::OnceLock<RotatingFile> = std::sync::OnceLock::new();

/// Writes the lines still waiting in the installed log file; servers call
/// it as they exit.
pub fn flush() {
    if let Some(file) = INSTALLED.get() {
        let _ = (&*file).flush();
    }
}

impl<'a> MakeWriter<'a> for RotatingFile {
    type Writer = &'a RotatingFile;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// Installs the W3C propagators and the tracer provider for the server
/// `server` (`web-bff`, `catalog`: the default service name), exporting
/// over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Run it before
/// the server's layers and channels are built: they keep the tracer that
/// is installed when they are made.
pub fn init_traces(server: &str) -> Result<tailor_telemetry::trace::Traces, String> {
    let traces = tailor_telemetry::trace::init(server).map_err(|e| e.to_string())?;
    if traces.exporting() {
        tracing::info!(
            service = %tailor_telemetry::trace::service_name(server),
            "exporting spans over OTLP"
        );
    }
    Ok(traces)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use tracing_subscriber::fmt::MakeWriter;

    use super::{RotatingFile, StderrLines};

    /// A thread that holds stderr (as one descheduled mid-write does)
    /// does not hold up another thread's log line.
    #[test]
    fn a_thread_holding_stderr_does_not_hold_up_log_lines() {
        let lines = StderrLines::open().unwrap();
        let held = std::io::stderr().lock();
        let (written, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let outcome = lines
                .make_writer()
                .write_all(b"a log line written while stderr is held\n");
            written.send(outcome.is_ok()).unwrap();
        });
        let outcome = done.recv_timeout(std::time::Duration::from_secs(10));
        drop(held);
        assert_eq!(outcome, Ok(true), "the line waited for the held stderr");
    }

    fn sizes(dir: &std::path::Path) -> Vec<(String, u64)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                (
                    entry.file_name().to_string_lossy().into_owned(),
                    entry.metadata().unwrap().len(),
                )
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn writing_past_the_cap_rotates_and_keeps_a_bounded_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs").join("catalog.log");
        let log = RotatingFile::open(&path, 1_000, 2).unwrap();
        let line = format!("{}\n", "x".repeat(99));
        for n in 0..1_000 {
            let mut line = line.clone();
            line.replace_range(0..4, &format!("{n:04}"));
            (&log).write_all(line.as_bytes()).unwrap();
        }
        (&log).flush().unwrap();
        let files = sizes(path.parent().unwrap());
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["catalog.log", "catalog.log.1", "catalog.log.2"]);
        assert!(files.iter().all(|(_, size)| *size <= 1_000), "{files:?}");
        let total: u64 = files.iter().map(|(_, size)| size).sum();
        assert!(total <= 3_000, "{total} bytes kept");
        // The newest lines are in the file, whole, the older ones behind.
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.ends_with(&format!("0999{}\n", "x".repeat(95))));
        assert!(current.lines().all(|l| l.len() == 99));
        let previous = std::fs::read_to_string(log.rotated(1)).unwrap();
        let first_current: u32 = current[..4].parse().unwrap();
        let last_previous: u32 = previous.lines().last().unwrap()[..4].parse().unwrap();
        assert_eq!(last_previous + 1, first_current);
    }

    #[test]
    fn files_are_private_and_an_existing_log_is_continued() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web-bff.log");
        std::fs::write(&path, "earlier\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let log = RotatingFile::open(&path, 20, 1).unwrap();
        (&log).write_all(b"later\n").unwrap();
        (&log).flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "earlier\nlater\n");
        (&log).write_all(b"rotated away\n").unwrap();
        (&log).flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "rotated away\n");
        for file in [path.clone(), log.rotated(1)] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
        // With nothing to keep, the file starts over.
        let bare = RotatingFile::open(&dir.path().join("bare.log"), 10, 0).unwrap();
        for _ in 0..5 {
            (&bare).write_all(b"0123456\n").unwrap();
        }
        (&bare).flush().unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("bare.log")).unwrap(),
            "0123456\n"
        );
        assert!(!dir.path().join("bare.log.1").exists());
    }

    /// A line waits in memory, and is in the file within the flush
    /// interval without anyone flushing.
    #[test]
    fn lines_reach_the_file_within_the_flush_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.log");
        let log = RotatingFile::open(&path, 1 << 20, 1).unwrap();
        (&log).write_all(b"one line\n").unwrap();
        let written = std::time::Instant::now();
        while std::fs::read_to_string(&path).unwrap() != "one line\n" {
            assert!(
                written.elapsed() < super::FLUSH_EVERY * 50,
                "the line never reached the file"
            );
            std::thread::sleep(super::FLUSH_EVERY / 10);
        }
        // A batch's worth is written at once.
        let line = format!("{}\n", "y".repeat(1023));
        for _ in 0..super::FLUSH_BYTES / line.len() {
            (&log).write_all(line.as_bytes()).unwrap();
        }
        let size = std::fs::metadata(&path).unwrap().len() as usize;
        assert!(size >= super::FLUSH_BYTES, "{size} bytes written");
    }
}
