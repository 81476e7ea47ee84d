//! `tailor-bench report`: turns the records `tailor-bench load --record`
//! appended (and the `h2load` records `scripts/perf-report.sh` adds) into
//! a markdown performance report, with a table per scenario, the Node.js
//! peer against the Rust web BFF, the h2load cross-check and issue 13's
//! targets, plus an SVG chart of throughput per scenario and concurrency.
//!
//! Record lines are tab-separated:
//!
//! ```text
//! level   <label> <scenario> <concurrency> <seconds> <ok> <errors> <calls/s> <p50 ms> <p99 ms> <mean ms> <errors by status>
//! process <label> <concurrency> <name> <CPU s> <CPU ms/call> <peak RSS MiB>
//! h2load  <label> <concurrency> <req/s> <mean ms> <min ms> <max ms> <requests> <2xx> <failed>
//! watches <label> <bff> <streams> <connections> <users> <placed> <place s> <first messages> <failed> <ended early> <open s> <hold s> <retries> <fulfilment step ms> <errors> <date>
//! watch-process <label> <name> <RSS KiB before placing> <after placing> <watches open> <peak> <after closing> <CPU s placing> <opening> <holding>
//! feeds   <label> <streams> <stalled> <failed> <open s> <hold s> <RSS KiB before> <connected> <stalled> <end> <peak> <slope KiB/s> <window bytes> <date>
//! ```
//!
//! The last three come from `tailor-bench streams` and make the Streams
//! section.

use std::fmt::Write as _;
use std::path::PathBuf;

/// Flags of `tailor-bench report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The records file (`tailor-bench load --record`).
    #[arg(long)]
    records: PathBuf,
    /// Where the markdown goes.
    #[arg(long)]
    out: PathBuf,
    /// Where the SVG chart of throughput goes (linked from the markdown by
    /// its file name, so put it beside it).
    #[arg(long)]
    svg: Option<PathBuf>,
    /// The command that produced the records, quoted in the report.
    #[arg(long, default_value = "scripts/perf-report.sh")]
    command: String,
    /// When the records were made, quoted in the report.
    #[arg(long, default_value = "")]
    date: String,
    /// Seconds measured per level, and of warm-up before each.
    #[arg(long, default_value = "")]
    timing: String,
    /// What else the machine was doing (for example its load average
    /// before and after the run), quoted under the machine.
    #[arg(long, default_value = "")]
    conditions: String,
    /// Users order calls were spread over.
    #[arg(long, default_value_t = 1000)]
    users: u32,
    /// Products in the stack.
    #[arg(long, default_value_t = 10_000)]
    products: u32,
}

/// The labels `scripts/perf-report.sh` gives its open-loop runs at half of
/// the web page's saturation: the page, and its two costliest downstream
/// calls offered the same rate.
const HALF_PAGE: &str = "web-page-half-saturation";
const HALF_CATALOG_GET: &str = "catalog-get-half-saturation";
const HALF_CATALOG_RELATED: &str = "catalog-related-half-saturation";

/// The label prefix of the rounds `scripts/perf-report.sh` runs of native
/// gRPC and grpc-web in turn (`alternating-web-page`,
/// `alternating-web-page-grpc-web`, ...), one level record per round.
const ALTERNATING: &str = "alternating-";

/// The scenarios run in alternating rounds: native first, then each
/// grpc-web variant measured against it.
const GRPC_WEB_VARIANTS: [&str; 2] = ["web-page-grpc-web", "web-page-grpc-web-text"];

/// One level of one target.
#[derive(Debug, Clone)]
struct Level {
    label: String,
    scenario: String,
    concurrency: usize,
    rate: f64,
    p50: f64,
    p99: f64,
    mean: f64,
    ok: u64,
    errors: u64,
    errors_text: String,
}

/// One process during one level of one target.
#[derive(Debug, Clone)]
struct Process {
    label: String,
    concurrency: usize,
    name: String,
    cpu_ms_per_call: f64,
    peak_rss_mib: f64,
}

/// One h2load run.
#[derive(Debug, Clone)]
struct H2load {
    label: String,
    concurrency: usize,
    rate: f64,
    mean: f64,
    min: f64,
    max: f64,
    requests: u64,
    success: u64,
    failed: u64,
}

/// One run of open order watches (`tailor-bench streams --scenario
/// watch-orders`).
#[derive(Debug, Clone)]
struct Watches {
    label: String,
    bff: String,
    streams: u64,
    connections: u64,
    users: u64,
    placed: u64,
    place_seconds: f64,
    first: u64,
    failed: u64,
    ended_early: u64,
    open_seconds: f64,
    hold_seconds: f64,
    fulfilment_step: String,
    errors_text: String,
    date: String,
}

/// One process through a run of open order watches, memory in KiB.
#[derive(Debug, Clone)]
struct WatchProcess {
    label: String,
    name: String,
    before: u64,
    placed: u64,
    open: u64,
    peak: u64,
    closed: u64,
    cpu_opening: f64,
    cpu_holding: f64,
}

/// One run of stalled feed readers (`tailor-bench streams --scenario
/// stalled-feeds`), memory in KiB.
#[derive(Debug, Clone)]
struct Feeds {
    label: String,
    streams: u64,
    stalled: u64,
    hold_seconds: f64,
    before: u64,
    connected: u64,
    stalled_rss: u64,
    end: u64,
    peak: u64,
    slope: f64,
    window: u64,
    date: String,
}

#[derive(Debug, Default)]
struct Records {
    levels: Vec<Level>,
    processes: Vec<Process>,
    h2load: Vec<H2load>,
    watches: Vec<Watches>,
    watch_processes: Vec<WatchProcess>,
    feeds: Vec<Feeds>,
}

fn parse(text: &str) -> Result<Records, String> {
    let mut records = Records::default();
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        let bad = || format!("records line {}: {line:?}", n + 1);
        let num = |i: usize| -> Result<f64, String> {
            fields.get(i).and_then(|v| v.parse().ok()).ok_or_else(bad)
        };
        let int = |i: usize| -> Result<u64, String> {
            fields.get(i).and_then(|v| v.parse().ok()).ok_or_else(bad)
        };
        match fields.first() {
            Some(&"level") if fields.len() >= 12 => records.levels.push(Level {
                label: fields[1].to_owned(),
                scenario: fields[2].to_owned(),
                concurrency: int(3)? as usize,
                ok: int(5)?,
                errors: int(6)?,
                rate: num(7)?,
                p50: num(8)?,
                p99: num(9)?,
                mean: num(10)?,
                errors_text: fields[11].to_owned(),
            }),
            Some(&"process") if fields.len() >= 7 => records.processes.push(Process {
                label: fields[1].to_owned(),
                concurrency: int(2)? as usize,
                name: fields[3].to_owned(),
                cpu_ms_per_call: num(5)?,
                peak_rss_mib: num(6)?,
            }),
            Some(&"h2load") if fields.len() >= 10 => records.h2load.push(H2load {
                label: fields[1].to_owned(),
                concurrency: int(2)? as usize,
                rate: num(3)?,
                mean: num(4)?,
                min: num(5)?,
                max: num(6)?,
                requests: int(7)?,
                success: int(8)?,
                failed: int(9)?,
            }),
            Some(&"watches") if fields.len() >= 17 => records.watches.push(Watches {
                label: fields[1].to_owned(),
                bff: fields[2].to_owned(),
                streams: int(3)?,
                connections: int(4)?,
                users: int(5)?,
                placed: int(6)?,
                place_seconds: num(7)?,
                first: int(8)?,
                failed: int(9)?,
                ended_early: int(10)?,
                open_seconds: num(11)?,
                hold_seconds: num(12)?,
                fulfilment_step: fields[14].to_owned(),
                errors_text: fields[15].to_owned(),
                date: fields[16].to_owned(),
            }),
            Some(&"watch-process") if fields.len() >= 11 => {
                records.watch_processes.push(WatchProcess {
                    label: fields[1].to_owned(),
                    name: fields[2].to_owned(),
                    before: int(3)?,
                    placed: int(4)?,
                    open: int(5)?,
                    peak: int(6)?,
                    closed: int(7)?,
                    cpu_opening: num(9)?,
                    cpu_holding: num(10)?,
                })
            }
            Some(&"feeds") if fields.len() >= 15 => records.feeds.push(Feeds {
                label: fields[1].to_owned(),
                streams: int(2)?,
                stalled: int(3)?,
                hold_seconds: num(6)?,
                before: int(7)?,
                connected: int(8)?,
                stalled_rss: int(9)?,
                end: int(10)?,
                peak: int(11)?,
                slope: num(12)?,
                window: int(13)?,
                date: fields[14].to_owned(),
            }),
            Some(&"") | None => {}
            _ => return Err(bad()),
        }
    }
    Ok(records)
}

impl Records {
    fn labels(&self) -> Vec<String> {
        let mut labels: Vec<String> = Vec::new();
        for level in &self.levels {
            if level.label.starts_with(ALTERNATING) {
                continue;
            }
            if !labels.contains(&level.label) {
                labels.push(level.label.clone());
            }
        }
        labels
    }

    fn levels_of(&self, label: &str) -> Vec<&Level> {
        self.levels.iter().filter(|l| l.label == label).collect()
    }

    fn level(&self, label: &str, concurrency: usize) -> Option<&Level> {
        self.levels
            .iter()
            .find(|l| l.label == label && l.concurrency == concurrency)
    }

    fn process(&self, label: &str, concurrency: usize, name: &str) -> Option<&Process> {
        self.processes
            .iter()
            .find(|p| p.label == label && p.concurrency == concurrency && p.name == name)
    }

    /// The level of a target with the most calls a second.
    fn best(&self, label: &str) -> Option<&Level> {
        self.levels_of(label)
            .into_iter()
            .max_by(|a, b| a.rate.total_cmp(&b.rate))
    }
}

/// The process that answers a target's calls: the BFF, the catalog for
/// the floor, or a process measured by name beside the servers (a peer).
fn front(records: &Records, label: &str, scenario: &str) -> String {
    let servers = [
        "tailor-catalog",
        "tailor-inventory",
        "tailor-reviews",
        "tailor-orders",
        "tailor-web-bff",
        "tailor-mobile-bff",
        "tailor-partner-bff",
    ];
    if let Some(peer) = records
        .processes
        .iter()
        .find(|p| p.label == label && !servers.contains(&p.name.as_str()))
    {
        return peer.name.clone();
    }
    match scenario {
        "catalog-get" | "catalog-related" => "tailor-catalog",
        s if s.starts_with("web-") => "tailor-web-bff",
        "mobile-page" | "order-placement" => "tailor-mobile-bff",
        s if s.starts_with("partner-") => "tailor-partner-bff",
        _ => "tailor-web-bff",
    }
    .to_owned()
}

const DOWNSTREAMS: [&str; 4] = [
    "tailor-catalog",
    "tailor-inventory",
    "tailor-reviews",
    "tailor-orders",
];

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown (no model name in /proc/cpuinfo)".to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or("unknown".to_owned(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "- CPUs (nproc): {cpus}\n- CPU model: {model}\n- memory: {memory}\n- Linux {}\n",
        kernel.trim()
    )
}

fn met(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**not met**" }
}

/// Calls a second: whole numbers, but a decimal for slow calls (feeds).
fn rate_cell(rate: f64) -> String {
    if rate < 10.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate:.0}")
    }
}

fn cpu_cell(process: Option<&Process>) -> String {
    process.map_or("–".to_owned(), |p| format!("{:.3}", p.cpu_ms_per_call))
}

fn scenario_table(records: &Records, label: &str, out: &mut String) {
    let levels = records.levels_of(label);
    let Some(first) = levels.first() else {
        return;
    };
    let front = front(records, label, &first.scenario);
    let mut columns = vec![front.clone()];
    columns.extend(
        DOWNSTREAMS
            .iter()
            .filter(|d| **d != front)
            .map(|d| (*d).to_owned()),
    );
    let short = |name: &str| name.trim_start_matches("tailor-").to_owned();
    let _ = writeln!(out, "### {label}\n");
    let _ = write!(out, "| concurrency | calls/s | p50 ms | p99 ms | errors |");
    for c in &columns {
        let _ = write!(out, " CPU ms/call {} |", short(c));
    }
    let _ = writeln!(out, " peak RSS MiB {} |", short(&front));
    let _ = write!(out, "|---:|---:|---:|---:|---|");
    for _ in &columns {
        let _ = write!(out, "---:|");
    }
    let _ = writeln!(out, "---:|");
    for level in levels {
        let _ = write!(
            out,
            "| {} | {} | {:.2} | {:.2} | {} |",
            level.concurrency,
            rate_cell(level.rate),
            level.p50,
            level.p99,
            level.errors_text
        );
        for c in &columns {
            let _ = write!(
                out,
                " {} |",
                cpu_cell(records.process(label, level.concurrency, c))
            );
        }
        let rss = records
            .process(label, level.concurrency, &front)
            .map_or("–".to_owned(), |p| format!("{:.1}", p.peak_rss_mib));
        let _ = writeln!(out, " {rss} |");
    }
    let _ = writeln!(out);
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    })
}

/// The calls/s of each alternating round of `scenario`, in order.
fn rounds(records: &Records, scenario: &str) -> Vec<f64> {
    records
        .levels_of(&format!("{ALTERNATING}{scenario}"))
        .iter()
        .map(|l| l.rate)
        .collect()
}

/// Native gRPC and the grpc-web variants run in turn at one concurrency,
/// so that the machine's drift between scenarios minutes apart does not
/// decide their ratio: each round's figures and the medians.
fn alternating_section(records: &Records, out: &mut String) -> Option<(usize, f64)> {
    let native = rounds(records, "web-page");
    let concurrency = records
        .levels_of(&format!("{ALTERNATING}web-page"))
        .first()?
        .concurrency;
    let native_median = median(native.clone())?;
    let variants: Vec<Vec<f64>> = GRPC_WEB_VARIANTS
        .iter()
        .map(|v| rounds(records, v))
        .collect();
    let _ = writeln!(
        out,
        "## grpc-web against native gRPC, in turns
"
    );
    let _ = writeln!(
        out,
        "The web product page at concurrency {concurrency}, {} of native gRPC, \
         grpc-web and grpc-web text one after the other, each level as long as above. The \
         scenarios above run minutes apart, and these machines drift by tens of per cent in \
         minutes; in turns, each round's three figures were measured within seconds of each \
         other. The target's ratio is of the medians.\n",
        match native.len() {
            1 => "one round".to_owned(),
            n => format!("{n} rounds"),
        }
    );
    let _ = writeln!(
        out,
        "| round | native calls/s | grpc-web calls/s | grpc-web text calls/s |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|");
    for (n, rate) in native.iter().enumerate() {
        let cell = |v: &Vec<f64>| v.get(n).map_or("–".to_owned(), |r| format!("{r:.0}"));
        let _ = writeln!(
            out,
            "| {} | {rate:.0} | {} | {} |",
            n + 1,
            cell(&variants[0]),
            cell(&variants[1])
        );
    }
    let cell = |v: &Vec<f64>| median(v.clone()).map_or("–".to_owned(), |r| format!("{r:.0}"));
    let _ = writeln!(
        out,
        "| median | {native_median:.0} | {} | {} |\n",
        cell(&variants[0]),
        cell(&variants[1])
    );
    Some((concurrency, native_median))
}

/// Writes the SVG chart: calls/s against concurrency, one line per target.
fn chart(records: &Records) -> String {
    let labels = records.labels();
    let mut levels: Vec<usize> = records.levels.iter().map(|l| l.concurrency).collect();
    levels.sort_unstable();
    levels.dedup();
    let top = records
        .levels
        .iter()
        .map(|l| l.rate)
        .fold(1.0_f64, f64::max);
    // A round top for the y axis: 1, 2 or 5 times a power of ten.
    let magnitude = 10f64.powf(top.log10().floor());
    let y_max = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= top)
        .unwrap_or(top);
    let (width, height) = (760.0, 420.0);
    let (left, right, top_margin, bottom) = (70.0, 230.0, 30.0, 50.0);
    let plot_w = width - left - right;
    let plot_h = height - top_margin - bottom;
    let x = |i: usize| {
        if levels.len() <= 1 {
            left + plot_w / 2.0
        } else {
            left + plot_w * i as f64 / (levels.len() - 1) as f64
        }
    };
    let y = |rate: f64| top_margin + plot_h * (1.0 - rate / y_max);
    let colours = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
        "#bcbd22", "#17becf", "#000000",
    ];
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="14">Throughput (calls/s) by concurrency</text>"#,
        left + plot_w / 2.0
    );
    for step in 0..=5 {
        let value = y_max * step as f64 / 5.0;
        let py = y(value);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{value:.0}</text>"##,
            left + plot_w,
            left - 6.0,
            py + 4.0
        );
    }
    for (i, level) in levels.iter().enumerate() {
        let px = x(i);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{top_margin}" x2="{px:.1}" y2="{:.1}" stroke="#eee"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{level}</text>"##,
            top_margin + plot_h,
            top_margin + plot_h + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">concurrency (calls in flight)</text>"#,
        left + plot_w / 2.0,
        height - 10.0
    );
    for (n, label) in labels.iter().enumerate() {
        let colour = colours[n % colours.len()];
        let points: Vec<String> = levels
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let level = records.level(label, *c)?;
                Some(format!("{:.1},{:.1}", x(i), y(level.rate)))
            })
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        for point in &points {
            let (px, py) = point.split_once(',').unwrap_or_default();
            let _ = writeln!(
                svg,
                r#"<circle cx="{px}" cy="{py}" r="3" fill="{colour}"/>"#
            );
        }
        let ly = top_margin + 10.0 + 20.0 * n as f64;
        let lx = left + plot_w + 20.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="3"/><text x="{}" y="{}">{label}</text>"#,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The order watches the web BFF must hold, and the memory it may take
/// for them: 100 MB (10^8 bytes).
const WATCH_TARGET_STREAMS: u64 = 10_000;
const WATCH_TARGET_BYTES: f64 = 100e6;
/// The stalled feed readers the partner BFF must hold with flat memory,
/// and how much it may gain over the hold (by the fitted slope) and still
/// count as flat.
const FEED_TARGET_READERS: u64 = 100;
const FEED_FLAT_KIB: f64 = 1024.0;

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn megabytes(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

/// MiB a thousand streams added: from before they opened to with them open.
fn per_thousand(open: u64, before: u64, streams: u64) -> String {
    if streams == 0 {
        return "–".to_owned();
    }
    format!(
        "{:.2}",
        (open as f64 - before as f64) / 1024.0 * 1000.0 / streams as f64
    )
}

/// What the feed run's hold gained by its fitted slope, KiB.
fn hold_gain(feeds: &Feeds) -> f64 {
    feeds.slope * feeds.hold_seconds
}

/// The Streams section: open order watches and stalled feed readers.
fn streams_section(records: &Records, out: &mut String) {
    if records.watches.is_empty() && records.feeds.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Streams
"
    );
    let _ = writeln!(
        out,
        "Long-lived streams held by `tailor-bench streams` (`--scenario watch-orders`, \
         `--scenario stalled-feeds`); `scripts/perf-report.sh` runs both after the load \
         scenarios on its stack, which it starts with `--fulfilment-step-ms 3600000` so that no \
         order moves on while it is watched. Each measurement below carries its date: where it \
         differs from the date at the top, the streams were measured on a stack of their own, \
         started as the script starts its stack. Resident memory (RSS) is read from `/proc/<pid>/status`, sampled \
         every 250 ms while the streams are held (for the watches from the first one opened); \
         CPU from `/proc/<pid>/stat`. MiB per 1,000 \
         streams is the RSS with the streams open less the RSS right before they were opened, \
         divided by the streams held.\n"
    );
    for run in &records.watches {
        let per_connection = run.streams.div_ceil(run.connections.max(1));
        let _ = writeln!(out, "### Open order watches: {}\n", run.label);
        let _ = writeln!(
            out,
            "{} of {} `WatchOrder` streams on the {} BFF had their first message (the order's \
             current state) {:.2} s after the first was opened, spread round robin over {} \
             client connections (up to {per_connection} streams on each; a BFF allows 256 \
             streams on one client connection), watching the orders {} users had just placed \
             through the same BFF ({} orders in {:.2} s, at most 8 a user, the watches one user \
             may hold). They were then held open {:.1} s and closed. The BFF carries all of \
             them to the orders service as streams on its one HTTP/2 connection to it. The \
             orders service's fulfilment step was {} s, so orders stayed placed while watched \
             ({} watches ended early, {} failed; errors: {}). Measured {}.\n",
            run.first,
            run.streams,
            run.bff,
            run.open_seconds,
            run.connections,
            run.users,
            run.placed,
            run.place_seconds,
            run.hold_seconds,
            run.fulfilment_step
                .parse::<u64>()
                .map_or(run.fulfilment_step.clone(), |ms| format!("{}", ms / 1000)),
            run.ended_early,
            run.failed,
            run.errors_text,
            run.date
        );
        let _ = writeln!(
            out,
            "| process | RSS MiB before placing | after placing | with {} watches open | peak | after closing | MiB per 1,000 watches | CPU s opening | CPU s holding |",
            run.first
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for p in records
            .watch_processes
            .iter()
            .filter(|p| p.label == run.label)
        {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} |",
                p.name.trim_start_matches("tailor-"),
                mib(p.before),
                mib(p.placed),
                mib(p.open),
                mib(p.peak),
                mib(p.closed),
                per_thousand(p.open, p.placed, run.first),
                p.cpu_opening,
                p.cpu_holding
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "A watch is two HTTP/2 streams in the BFF, its client's and its own to the orders \
             service, each with tonic's per-call state and encode or decode buffer (256 bytes to \
             start, `src/codec.rs`), the state of the layers the call passes (its server span \
             and the client span of the downstream call among them) and its slot among the \
             user's watches. The orders service holds, for each, a task with a channel to the \
             stream (tokio allocates a channel's first 32 slots at once) and a subscription to \
             the order changes. What placing the orders added to the BFF (the orders remembered \
             for their retries, the users' order rates) stays after the watches close.\n"
        );
    }
    for feeds in &records.feeds {
        let growth = feeds.stalled_rss.saturating_sub(feeds.connected);
        let windows = feeds.window * feeds.stalled / 1024;
        let _ = writeln!(out, "### Stalled feed readers: {}\n", feeds.label);
        let _ = writeln!(
            out,
            "{} of {} partner catalogue feeds (`StreamCatalogFeed`), each on a client \
             connection of its own with the protocol's initial {}-byte flow-control windows \
             (stream and connection), read for their first message and then not read at all \
             for {:.1} s. Growth when stalled is from the connections open and idle to every \
             reader stalled; the readers' windows are what the BFF may have sent them unread; \
             the slope is the least-squares fit of the samples over the hold. Measured {}.\n",
            feeds.stalled, feeds.streams, feeds.window, feeds.hold_seconds, feeds.date
        );
        let _ = writeln!(
            out,
            "| readers | RSS MiB before | connections open | all stalled | end of hold | peak | growth when stalled KiB | KiB per reader | readers' windows KiB | slope over the hold KiB/s |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {growth} | {:.0} | {windows} | {:+.1} |\n",
            feeds.stalled,
            mib(feeds.before),
            mib(feeds.connected),
            mib(feeds.stalled_rss),
            mib(feeds.end),
            mib(feeds.peak),
            growth as f64 / feeds.stalled.max(1) as f64,
            feeds.slope
        );
        let _ = writeln!(
            out,
            "What a stalled reader holds in the partner BFF, besides its connection and stream: \
             the rest of the catalogue page its feed is in (the feed asks the catalog for 100 \
             products at a time and keeps the page, decoded, until the reader has taken it), and \
             the batch of encoded messages that waits for the reader's window (up to 32 KiB, \
             tonic's yield threshold, in a buffer that has grown to hold it). So a stalled reader \
             costs about a page, whatever its window, and nothing more for as long as it stays \
             stalled, which the slope shows. Fitting within the windows would take smaller \
             pages (`FEED_PAGE_SIZE` in the partner BFF's `feed.rs`) or the page kept encoded, \
             and a smaller yield threshold (`src/codec.rs`).\n"
        );
    }
}

/// The stream targets, one line each.
fn stream_targets(records: &Records) -> Vec<String> {
    let mut targets = Vec::new();
    let web = records
        .watches
        .iter()
        .filter(|w| w.bff == "web")
        .max_by_key(|w| w.first);
    match web {
        Some(run) => {
            let bff = records
                .watch_processes
                .iter()
                .find(|p| p.label == run.label && p.name == "tailor-web-bff");
            if let Some(bff) = bff {
                let peak = megabytes(bff.peak);
                let all_open = run.first == run.streams;
                let fits = peak * 1e6 <= WATCH_TARGET_BYTES;
                let verdict = if run.streams >= WATCH_TARGET_STREAMS {
                    met(all_open && fits).to_owned()
                } else {
                    format!(
                        "not measured at this size (10,000 asked for, {} run)",
                        run.streams
                    )
                };
                targets.push(format!(
                    "Web BFF holding 10,000 open `WatchOrder` streams in ≤ 100 MB RSS: {} of {} \
                     watches open, peak {peak:.1} MB ({} MiB; {} MiB before they opened, {} MiB \
                     per 1,000 watches): {verdict}.",
                    run.first,
                    run.streams,
                    mib(bff.peak),
                    mib(bff.placed),
                    per_thousand(bff.open, bff.placed, run.first),
                ));
            }
        }
        None => targets.push(
            "Web BFF holding 10,000 open `WatchOrder` streams in ≤ 100 MB RSS: not measured \
             (no watch-orders run on the web BFF)."
                .to_owned(),
        ),
    }
    match records.feeds.iter().max_by_key(|f| f.stalled) {
        Some(feeds) => {
            let growth = feeds.stalled_rss.saturating_sub(feeds.connected);
            let windows = feeds.window * feeds.stalled / 1024;
            let gain = hold_gain(feeds);
            // Memory given back over the hold is not growth.
            let flat = gain <= FEED_FLAT_KIB;
            let trend = if !flat {
                "growing"
            } else if gain < -FEED_FLAT_KIB {
                "falling"
            } else {
                "flat"
            };
            let bounded = growth <= windows;
            let verdict = if feeds.streams >= FEED_TARGET_READERS {
                met(feeds.stalled == feeds.streams && flat && bounded).to_owned()
            } else {
                format!(
                    "not measured at this size ({FEED_TARGET_READERS} asked for, {} run)",
                    feeds.streams
                )
            };
            targets.push(format!(
                "Partner feed's memory flat with {FEED_TARGET_READERS} stalled readers (the \
                 fitted slope gains at most {FEED_FLAT_KIB:.0} KiB over the hold, and stalling \
                 grows RSS by no more than the readers' windows): {} of {} readers stalled; slope \
                 {:+.1} KiB/s over {:.1} s ({gain:+.0} KiB: {}); {growth} KiB grown when they \
                 stalled ({:.0} KiB a reader) against {windows} KiB of windows ({}): {verdict}.",
                feeds.stalled,
                feeds.streams,
                feeds.slope,
                feeds.hold_seconds,
                trend,
                growth as f64 / feeds.stalled.max(1) as f64,
                if bounded {
                    "within them"
                } else {
                    "beyond them"
                },
            ));
        }
        None => targets.push(format!(
            "Partner feed's memory flat with {FEED_TARGET_READERS} stalled readers: not \
             measured (no stalled-feeds run)."
        )),
    }
    targets
}

fn markdown(records: &Records, args: &Args, svg_name: Option<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Performance\n");
    let _ = writeln!(
        out,
        "Generated by `{}`{}; rerun it to replace this file with this machine's figures. \
         Every figure below comes from that run.\n",
        args.command,
        if args.date.is_empty() {
            String::new()
        } else {
            format!(" on {}", args.date)
        }
    );
    let _ = writeln!(
        out,
        "These machines drift by tens of per cent within minutes, so one run's figures move \
         with the machine. What each change to the hot path bought, measured by alternating \
         two builds (`scripts/perf-compare.sh`), is in \
         [performance-changes.md](performance-changes.md).\n"
    );
    let _ = writeln!(out, "## Machine\n\n{}", machine());
    if !args.conditions.is_empty() {
        let _ = writeln!(out, "Conditions: {}\n", args.conditions);
    }
    let _ = writeln!(out, "## Method\n");
    let _ = writeln!(
        out,
        "One `tailor up --any-ports --products {products}` stack on this machine, with the load \
         generator (`tailor-bench load`, closed loop: each caller calls again as soon as its \
         answer arrives) on the same cores, so the load generator's own CPU is taken from the \
         servers'. {timing}Native gRPC calls share one HTTP/2 connection; grpc-web uses one \
         HTTP/1.1 keep-alive connection per caller, as browsers do. Products are cycled \
         through all {products}. CPU per call is each process's user + system time (from \
         `/proc/<pid>/stat`) during the measured seconds divided by the calls made; peak RSS is \
         sampled every 100 ms.\n\n\
         - `catalog-get` is the floor: one catalog `GetProduct` straight to the catalog over \
         mutual TLS with the web BFF's certificate.\n\
         - `catalog-related` is the web page's costliest downstream call measured the same \
         way: the catalog's `ListRelatedProducts` as the web BFF asks for it (8 cards, the \
         card fields).\n\
         - `web-page-half-saturation`, `catalog-get-half-saturation` and \
         `catalog-related-half-saturation` run in open loop instead: calls are sent at a fixed \
         rate, half the best `web-page` throughput, whether or not earlier ones have been \
         answered (their concurrency column is the most allowed in flight). They measure the \
         page's p99 against its downstream calls' at the same rate.\n\
         - `order-placement` is the mobile BFF's `PlaceOrder` of one unit, each call with a \
         fresh idempotency key, as a signed-in user (an HS256 token minted with the \
         development secret `tailor up` runs the BFFs with). Calls are spread over {users} \
         users (order n is placed by `bench-user-<n % {users}>`, one order sequence across all callers), so the per-user order rate (10 at once, then one \
         every 10 s) does not decide the throughput; each order reserves stock, so \
         FAILED_PRECONDITION errors mean products ran out of stock.\n\
         - `partner-feed` reads the partner catalogue feed to its end ({products} products): \
         calls/s are whole feeds a second. The partner scenarios use the development key; \
         the script raises its plan's rate limit for the run \
         (`TAILOR_PARTNER_PLAN_LIMITS`), so the token bucket does not decide the throughput.\n",
        products = args.products,
        users = args.users,
        timing = if args.timing.is_empty() {
            String::new()
        } else {
            format!("{}. ", args.timing)
        }
    );
    let _ = writeln!(out, "Command:\n\n```\n{}\n```\n", args.command);
    let _ = writeln!(
        out,
        "## Rerunning it\n\n\
         ```\n\
         scripts/perf-report.sh            # 10 s a level; about 15 minutes\n\
         scripts/perf-report.sh 30         # 30 s a level\n\
         scripts/perf-report.sh --smoke    # proves the pipeline in about two minutes; writes target/perf-smoke/\n\
         ```\n\n\
         Run it on an otherwise quiet machine (it refuses to start while another \
         `tailor-bench load` or `chaos` runs). It needs Node.js 20 or later with \
         `npm ci --prefix crates/tools/bench/node-peer` done (the script runs it when \
         `node_modules` is missing) and installs h2load (`nghttp2-client`) with apt-get when \
         missing. Besides this file it writes `performance-throughput.svg` (the chart) and \
         `performance-records.tsv` (every level's figures, as `tailor-bench load --record` \
         appends them; `tailor-bench report --records <file> --out <file.md>` turns them into \
         this report again). The pieces: `tailor-bench load --scenario <name> --record <file>` \
         for each scenario, `--process node-peer=<pid>` to measure the Node.js peer's CPU \
         beside the servers, `tailor-bench streams --scenario <watch-orders|stalled-feeds> \
         --record <file>` for the Streams section, and `tailor-bench report`.\n"
    );

    let _ = writeln!(out, "## Scenarios\n");
    let _ = writeln!(
        out,
        "Errors are by gRPC status; CPU columns are milliseconds of CPU per call of the \
         process answering the calls and of each downstream service (– when not measured).\n"
    );
    if let Some(name) = svg_name {
        let _ = writeln!(out, "![Throughput by scenario and concurrency]({name})\n");
    }
    for label in records.labels() {
        scenario_table(records, &label, &mut out);
    }
    let alternating = alternating_section(records, &mut out);

    let node = "web-page-node-peer";
    let _ = writeln!(out, "## Node.js peer against the Rust web BFF\n");
    if records.levels_of(node).is_empty() {
        let _ = writeln!(out, "Not run.\n");
    } else {
        let _ = writeln!(
            out,
            "The same `web-page` load against `crates/tools/bench/node-peer` \
             (`@connectrpc/connect-node`, the same five downstream calls over mutual TLS) and \
             against the Rust web BFF, at equal concurrency.\n"
        );
        let _ = writeln!(
            out,
            "| concurrency | Rust pages/s | Node pages/s | Rust p50 ms | Node p50 ms | Rust BFF CPU ms/page | Node CPU ms/page | Node ÷ Rust CPU |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|");
        for level in records.levels_of(node) {
            let c = level.concurrency;
            let rust = records.level("web-page", c);
            let rust_cpu = records.process("web-page", c, "tailor-web-bff");
            let node_cpu = records.process(node, c, "node-peer");
            let ratio = match (rust_cpu, node_cpu) {
                (Some(r), Some(n)) if r.cpu_ms_per_call > 0.0 => {
                    format!("{:.1}×", n.cpu_ms_per_call / r.cpu_ms_per_call)
                }
                _ => "–".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {c} | {} | {:.0} | {} | {:.2} | {} | {} | {ratio} |",
                rust.map_or("–".to_owned(), |r| format!("{:.0}", r.rate)),
                level.rate,
                rust.map_or("–".to_owned(), |r| format!("{:.2}", r.p50)),
                level.p50,
                cpu_cell(rust_cpu),
                cpu_cell(node_cpu),
            );
        }
        let _ = writeln!(out);
    }

    let _ = writeln!(out, "## Cross-check with h2load\n");
    if records.h2load.is_empty() {
        let _ = writeln!(out, "Not run.\n");
    } else {
        let _ = writeln!(
            out,
            "h2load (nghttp2) sends the same framed `GetProductPageRequest` for one product over \
             one plaintext HTTP/2 connection with as many streams in flight as the concurrency; \
             `tailor-bench load` ran the same target with the same product (`--products 1`) and \
             concurrency right before it. h2load counts HTTP statuses only: a gRPC error inside \
             a 200 answer (`grpc-status` in the trailers) counts as a success there. Its \
             latency figures are min/mean/max (no percentiles).\n"
        );
        let _ = writeln!(
            out,
            "| tool | target | concurrency | calls/s | mean ms | p50 ms | p99 ms | min–max ms | errors |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---|---|");
        for run in &records.h2load {
            let bench = records.level(&run.label, run.concurrency);
            if let Some(b) = bench {
                let _ = writeln!(
                    out,
                    "| tailor-bench | {} | {} | {:.0} | {:.3} | {:.3} | {:.3} | – | {} |",
                    run.label, b.concurrency, b.rate, b.mean, b.p50, b.p99, b.errors_text
                );
            }
            let _ = writeln!(
                out,
                "| h2load | {} | {} | {:.0} | {:.3} | – | – | {:.3}–{:.3} | {} of {} not 2xx, {} failed |",
                run.label,
                run.concurrency,
                run.rate,
                run.mean,
                run.min,
                run.max,
                run.requests.saturating_sub(run.success),
                run.requests,
                run.failed
            );
            if let Some(b) = bench {
                let _ = writeln!(
                    out,
                    "\nh2load's throughput is {:.0}% of tailor-bench's and its mean latency {:.0}% of \
                     tailor-bench's for the same target and concurrency.\n",
                    100.0 * run.rate / b.rate.max(f64::MIN_POSITIVE),
                    100.0 * run.mean / b.mean.max(f64::MIN_POSITIVE)
                );
            }
        }
        let _ = writeln!(out);
    }

    streams_section(records, &mut out);

    let _ = writeln!(out, "## Issue 13's targets\n");
    let mut targets: Vec<String> = Vec::new();
    if let Some(best) = records.best("web-page") {
        targets.push(format!(
            "Whole stack ≥ 2,000 web product pages/s: {:.0} pages/s (at concurrency {}): {}.",
            best.rate,
            best.concurrency,
            met(best.rate >= 2000.0)
        ));
        if let Some(cpu) = records.process("web-page", best.concurrency, "tailor-web-bff") {
            targets.push(format!(
                "Web BFF ≤ 0.4 ms CPU per page: {:.3} ms (at concurrency {}, its best throughput): {}.",
                cpu.cpu_ms_per_call,
                best.concurrency,
                met(cpu.cpu_ms_per_call <= 0.4)
            ));
        }
    }
    let ratios: Vec<(usize, f64)> = records
        .levels_of(node)
        .iter()
        .filter_map(|level| {
            let c = level.concurrency;
            let rust = records.process("web-page", c, "tailor-web-bff")?;
            let node = records.process(node, c, "node-peer")?;
            (rust.cpu_ms_per_call > 0.0).then(|| (c, node.cpu_ms_per_call / rust.cpu_ms_per_call))
        })
        .collect();
    if let Some((c, lowest)) = ratios.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1)) {
        let all: Vec<String> = ratios
            .iter()
            .map(|(c, r)| format!("{r:.1}× at {c}"))
            .collect();
        targets.push(format!(
            "Web BFF CPU per page ≥ 15× less than the Node.js peer's, at equal concurrency: \
             {} (lowest {lowest:.1}× at concurrency {c}): {}.",
            all.join(", "),
            met(lowest >= 15.0)
        ));
    } else {
        targets.push(
            "Web BFF CPU per page ≥ 15× less than the Node.js peer's: not measured (the Node \
             peer was not run)."
                .to_owned(),
        );
    }
    // The page's downstream calls run at once; the slowest of those
    // measured straight at their service stands for them.
    let slowest = ["catalog-get", "catalog-related"]
        .into_iter()
        .filter_map(|scenario| records.level(scenario, 1).map(|level| (scenario, level)))
        .max_by(|(_, a), (_, b)| a.p50.total_cmp(&b.p50));
    if let (Some(page), Some((scenario, floor))) = (records.level("web-page", 1), slowest) {
        let above = page.p50 - floor.p50;
        targets.push(format!(
            "At concurrency 1, page p50 ≤ 0.2 ms above its slowest downstream call: page p50 \
             {:.3} ms, {scenario} p50 {:.3} ms (the slowest of the direct calls measured: \
             catalog-get, catalog-related), {above:.3} ms above: {}.",
            page.p50,
            floor.p50,
            met(above <= 0.2)
        ));
    }
    // At half of saturation: the page and its slowest downstream call,
    // each offered the same open-loop rate, half the page's best.
    let slowest_half = [HALF_CATALOG_GET, HALF_CATALOG_RELATED]
        .into_iter()
        .filter_map(|label| records.best(label).map(|level| (label, level)))
        .max_by(|(_, a), (_, b)| a.p99.total_cmp(&b.p99));
    if let (Some(page), Some((label, floor))) = (records.best(HALF_PAGE), slowest_half) {
        let above = page.p99 - floor.p99;
        targets.push(format!(
            "At half of saturation, page p99 ≤ 1 ms above its slowest downstream call: \
             offered half the best web-page throughput in open loop, the page answered \
             {:.0} pages/s with p99 {:.3} ms; {label}, offered the same rate straight at \
             the catalog, p99 {:.3} ms; {above:.3} ms above: {}.",
            page.rate,
            page.p99,
            floor.p99,
            met(above <= 1.0)
        ));
    }
    if let Some((concurrency, native)) = alternating {
        for variant in GRPC_WEB_VARIANTS {
            if let Some(web) = median(rounds(records, variant)) {
                let share = web / native.max(f64::MIN_POSITIVE);
                let best = records
                    .best(variant)
                    .zip(records.best("web-page"))
                    .map(|(w, n)| {
                        format!(
                            "; the best levels above, minutes apart, {:.1}%",
                            100.0 * w.rate / n.rate.max(f64::MIN_POSITIVE)
                        )
                    })
                    .unwrap_or_default();
                targets.push(format!(
                    "{variant} throughput ≥ 85% of native: {web:.0} against {native:.0} \
                     calls/s (medians of the rounds in turns at concurrency {concurrency}), \
                     {:.1}%{best}: {}.",
                    share * 100.0,
                    met(share >= 0.85)
                ));
            }
        }
    } else if let Some(native) = records.best("web-page") {
        for variant in GRPC_WEB_VARIANTS {
            if let Some(web) = records.best(variant) {
                let share = web.rate / native.rate.max(f64::MIN_POSITIVE);
                targets.push(format!(
                    "{variant} throughput ≥ 85% of native: {:.0} against {:.0} calls/s (the \
                     best level of each), {:.1}%: {}.",
                    web.rate,
                    native.rate,
                    share * 100.0,
                    met(share >= 0.85)
                ));
            }
        }
    }
    targets.extend(stream_targets(records));
    for target in targets {
        let _ = writeln!(out, "- {target}");
    }
    let _ = writeln!(out);
    let errors: Vec<String> = records
        .levels
        .iter()
        .filter(|l| l.errors > 0)
        .map(|l| {
            format!(
                "{} at {}: {} of {} calls ({})",
                l.label,
                l.concurrency,
                l.errors,
                l.ok + l.errors,
                l.errors_text
            )
        })
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(
            out,
            "Runs with errors (their calls/s count successful calls only): {}.\n\n\
             RESOURCE_EXHAUSTED is the stack refusing overload rather than queueing it: each \
             downstream service admits 8 calls at once and queues 32 more per client type \
             (`--admission`), a BFF sheds calls beyond 256 in flight, and the BFFs' bulkheads \
             bound calls in flight per service. UNAVAILABLE at high concurrency is a page whose \
             required catalogue call failed while the catalog was refusing the overload.\n",
            errors.join("; ")
        );
    }
    out
}

/// Reads the records and writes the report (and the chart).
pub async fn run(args: Args) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.records)
        .map_err(|e| format!("reading {}: {e}", args.records.display()))?;
    let records = parse(&text)?;
    if records.levels.is_empty() {
        return Err(format!("{} holds no level records", args.records.display()));
    }
    let svg_name = match &args.svg {
        Some(path) => {
            std::fs::write(path, chart(&records))
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            path.file_name().map(|n| n.to_string_lossy().into_owned())
        }
        None => None,
    };
    std::fs::write(&args.out, markdown(&records, &args, svg_name.as_deref()))
        .map_err(|e| format!("writing {}: {e}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORDS: &str = "level\tweb-page\tweb-page\t1\t1.000\t900\t0\t900.0\t1.100\t2.000\t1.050\tnone\n\
        process\tweb-page\t1\ttailor-web-bff\t0.300\t0.3333\t20.0\n\
        level\tcatalog-get\tcatalog-get\t1\t1.000\t2000\t0\t2000.0\t0.450\t0.900\t0.480\tnone\n\
        level\tweb-page-node-peer\tweb-page\t1\t1.000\t500\t0\t500.0\t1.900\t3.000\t2.000\tnone\n\
        process\tweb-page-node-peer\t1\tnode-peer\t1.000\t2.0000\t80.0\n\
        h2load\tweb-page\t1\t950.0\t1.000\t0.500\t4.000\t950\t950\t0\n\
        level\tweb-page-half-saturation\tweb-page\t128\t1.000\t450\t0\t450.0\t1.200\t2.400\t1.300\tnone\n\
        level\tcatalog-related-half-saturation\tcatalog-related\t128\t1.000\t450\t0\t450.0\t0.400\t1.100\t0.450\tnone\n\
        level\talternating-web-page\tweb-page\t128\t1.000\t1000\t0\t1000.0\t9.0\t20.0\t10.0\tnone\n\
        level\talternating-web-page-grpc-web\tweb-page-grpc-web\t128\t1.000\t880\t0\t880.0\t9.0\t20.0\t10.0\tnone\n\
        level\talternating-web-page\tweb-page\t128\t1.000\t1100\t0\t1100.0\t9.0\t20.0\t10.0\tnone\n\
        level\talternating-web-page-grpc-web\tweb-page-grpc-web\t128\t1.000\t950\t0\t950.0\t9.0\t20.0\t10.0\tnone\n\
        level\talternating-web-page\tweb-page\t128\t1.000\t900\t0\t900.0\t9.0\t20.0\t10.0\tnone\n\
        level\talternating-web-page-grpc-web\tweb-page-grpc-web\t128\t1.000\t700\t0\t700.0\t9.0\t20.0\t10.0\tnone\n";

    #[test]
    fn records_become_tables_targets_and_a_chart() {
        let records = parse(RECORDS).unwrap();
        assert_eq!(records.levels.len(), 11);
        let args = Args {
            records: PathBuf::new(),
            out: PathBuf::new(),
            svg: None,
            command: "scripts/perf-report.sh".into(),
            date: String::new(),
            timing: String::new(),
            conditions: String::new(),
            users: 1000,
            products: 10_000,
        };
        let report = markdown(&records, &args, Some("chart.svg"));
        assert!(report.contains("### web-page\n"), "{report}");
        assert!(report.contains("0.333"), "{report}");
        // 2.0 / 0.3333 of the Node peer against the web BFF.
        assert!(report.contains("6.0×"), "{report}");
        // 1.1 - 0.45 above the floor.
        assert!(report.contains("0.650 ms above: **not met**"), "{report}");
        // 2.4 - 1.1 above the related call's p99 at the same rate.
        assert!(
            report.contains("p99 1.100 ms; 1.300 ms above: **not met**"),
            "{report}"
        );
        // Rounds in turns: a row each, the medians, and their ratio as the
        // target (880 of 1000), not a table of their own.
        assert!(report.contains("| 2 | 1100 | 950 | – |"), "{report}");
        assert!(report.contains("| median | 1000 | 880 | – |"), "{report}");
        assert!(
            report.contains(
                "web-page-grpc-web throughput ≥ 85% of native: 880 against 1000 calls/s \
                 (medians of the rounds in turns at concurrency 128), 88.0%: **met**."
            ),
            "{report}"
        );
        assert!(!report.contains("### alternating-"), "{report}");
        assert!(
            report.contains("| h2load | web-page | 1 | 950 |"),
            "{report}"
        );
        let svg = chart(&records);
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "{svg}"
        );
    }

    #[test]
    fn stream_records_make_the_streams_section_and_their_targets() {
        let text = format!(
            "{RECORDS}\
             watches\twatch-orders-web\tweb\t10000\t50\t1250\t10000\t25.000\t10000\t0\t0\t12.500\t10.000\t3\t3600000\tnone\t2026-11-27 18:00 UTC\n\
             watch-process\twatch-orders-web\ttailor-web-bff\t20480\t30720\t133120\t140000\t40960\t20.000\t8.000\t0.100\n\
             watch-process\twatch-orders-web\ttailor-orders\t15360\t25600\t76800\t80000\t30720\t10.000\t4.000\t0.050\n\
             feeds\tstalled-feeds\t100\t100\t0\t2.000\t10.000\t20000\t26000\t30000\t30100\t30500\t2.500\t65535\t2026-11-27 18:05 UTC\n"
        );
        let records = parse(&text).unwrap();
        assert_eq!(records.watches.len(), 1);
        assert_eq!(records.watch_processes.len(), 2);
        assert_eq!(records.feeds.len(), 1);
        let args = Args {
            records: PathBuf::new(),
            out: PathBuf::new(),
            svg: None,
            command: "scripts/perf-report.sh".into(),
            date: String::new(),
            timing: String::new(),
            conditions: String::new(),
            users: 1000,
            products: 10_000,
        };
        let report = markdown(&records, &args, None);
        assert!(report.contains("## Streams\n"), "{report}");
        // (133120 - 30720) KiB over 10,000 watches: 10.00 MiB per 1,000.
        assert!(
            report
                .contains("| web-bff | 20.0 | 30.0 | 130.0 | 136.7 | 40.0 | 10.00 | 8.00 | 0.10 |"),
            "{report}"
        );
        // 140000 KiB is 143.4 MB: over 100 MB.
        assert!(
            report.contains("10000 of 10000 watches open, peak 143.4 MB (136.7 MiB; 30.0 MiB before they opened, 10.00 MiB per 1,000 watches): **not met**"),
            "{report}"
        );
        // 4000 KiB grown against 100 x 64 KiB of windows, 25 KiB gained
        // over the hold: flat.
        assert!(
            report.contains("| 100 | 19.5 | 25.4 | 29.3 | 29.4 | 29.8 | 4000 | 40 | 6399 | +2.5 |"),
            "{report}"
        );
        assert!(
            report.contains(
                "slope +2.5 KiB/s over 10.0 s (+25 KiB: flat); 4000 KiB grown when they stalled \
                 (40 KiB a reader) against 6399 KiB of windows (within them): **met**"
            ),
            "{report}"
        );

        // A run smaller than the target asks for does not measure it.
        let small = text.replace(
            "feeds\tstalled-feeds\t100\t100",
            "feeds\tstalled-feeds\t8\t8",
        );
        let report = markdown(&parse(&small).unwrap(), &args, None);
        assert!(
            report.contains("(beyond them): not measured at this size (100 asked for, 8 run)."),
            "{report}"
        );
    }

    #[test]
    fn a_malformed_line_is_refused() {
        assert!(parse("level\tonly\ttwo\n").is_err());
    }
}
