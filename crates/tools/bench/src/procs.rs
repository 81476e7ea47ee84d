//! What the Tailor server processes on this machine (and any other
//! process named by pid) spend while a load
//! runs: CPU seconds (user + system, from `/proc/<pid>/stat`) and the
//! highest resident set seen (sampled from `/proc/<pid>/status` every
//! 100 ms).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The server binaries measured.
const SERVERS: [&str; 7] = [
    "tailor-catalog",
    "tailor-inventory",
    "tailor-reviews",
    "tailor-orders",
    "tailor-web-bff",
    "tailor-mobile-bff",
    "tailor-partner-bff",
];

/// Clock ticks a second, as `/proc/<pid>/stat` counts CPU time (100 on
/// Linux on x86-64 and arm64).
pub(crate) const TICKS: f64 = 100.0;

/// One process's use during a run.
#[derive(Debug, Clone)]
pub struct ProcessUse {
    /// Its binary (with the pid when one binary runs more than once).
    pub name: String,
    /// CPU seconds spent during the run.
    pub cpu_seconds: f64,
    /// The largest resident set seen, KiB.
    pub peak_rss_kib: u64,
}

fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Every Tailor server process (children of `launcher` when given): pid
/// and binary name.
pub(crate) fn servers(launcher: Option<u32>) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let binary = String::from_utf8_lossy(argv0);
        let binary = binary.rsplit('/').next().unwrap_or_default();
        if SERVERS.contains(&binary) && launcher.is_none_or(|l| parent_of(pid) == Some(l)) {
            found.push((pid, binary.to_owned()));
        }
    }
    found.sort();
    found
}

pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Samples the servers from a start instant until [`Sampler::finish`].
pub struct Sampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<ProcessUse>>,
}

impl Sampler {
    /// Starts sampling the servers (of the `launcher` process, when
    /// given) and the `extra` processes (name, pid); the run counts from
    /// `from`.
    pub fn start(from: Instant, launcher: Option<u32>, extra: &[(String, u32)]) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let extra = extra.to_vec();
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(from.into()).await;
            let mut processes = servers(launcher);
            processes.extend(extra.into_iter().map(|(name, pid)| (pid, name)));
            let start: BTreeMap<u32, u64> = processes
                .iter()
                .filter_map(|(pid, _)| Some((*pid, cpu_ticks(*pid)?)))
                .collect();
            let mut peak: BTreeMap<u32, u64> = BTreeMap::new();
            loop {
                for (pid, _) in &processes {
                    if let Some(rss) = rss_kib(*pid) {
                        let seen = peak.entry(*pid).or_default();
                        *seen = (*seen).max(rss);
                    }
                }
                tokio::select! {
                    _ = &mut stopped => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, name) in &processes {
                *counts.entry(name).or_default() += 1;
            }
            processes
                .iter()
                .filter_map(|(pid, name)| {
                    let spent = cpu_ticks(*pid)?.saturating_sub(*start.get(pid)?);
                    Some(ProcessUse {
                        name: if counts[name.as_str()] > 1 {
                            format!("{name}[{pid}]")
                        } else {
                            name.clone()
                        },
                        cpu_seconds: spent as f64 / TICKS,
                        peak_rss_kib: peak.get(pid).copied().unwrap_or(0),
                    })
                })
                .collect()
        });
        Self { stop, task }
    }

    /// Stops sampling; what each server spent since the start instant.
    pub async fn finish(self) -> Vec<ProcessUse> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}
