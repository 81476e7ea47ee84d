//! Lanes: a downstream service serves each client type's connections on
//! threads of their own.
//!
//! Fair admission decides which calls a service runs, but a call's work
//! starts before it: reading the HTTP/2 frames, decrypting them, waking the
//! task. On one runtime, a web call arriving while a flooded mobile BFF
//! keeps the service busy waits behind every mobile task already queued,
//! however fairly its slot is then handed out. With lanes, the connection
//! is handed, once its TLS handshake has named the calling BFF, to a
//! runtime kept for that client type. The operating system then shares the
//! CPU between the client types' threads: a web thread that has slept
//! while the mobile one worked is run as soon as a web call arrives, and a
//! mobile flood queues on the mobile threads only.
//!
//! Sharing the CPU fairly still lets a flood slow the others down: the
//! flooded lane's threads are always ready to run, and a web call waits
//! for its turn. Where that matters more than using every CPU for
//! whoever needs it, a lane can be given CPUs of its own ([`LaneCpus`],
//! `--lane-cpus web=0-3,mobile=4-5,partner=6`): its threads run there and
//! nowhere else, and no other lane's threads run on CPUs reserved for
//! another. A lane not named runs on every CPU the process may use.

use std::ops::RangeInclusive;
use std::str::FromStr;
use std::sync::Arc;

use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;
use tailor_interceptors::context::CLIENT_TYPES;
use tokio::runtime::{Handle, Runtime};

/// The CPUs reserved for some client types' lanes, as
/// `<client type>=<cpu>` or `<client type>=<first>-<last>`,
/// comma-separated (`web=0,mobile=1,partner=1`). Lanes may share CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaneCpus(Vec<(&'static str, RangeInclusive<usize>)>);

impl LaneCpus {
    /// The CPUs reserved for `client`'s lane, if any.
    pub fn of(&self, client: &str) -> Option<RangeInclusive<usize>> {
        self.0
            .iter()
            .find(|(name, _)| *name == client)
            .map(|(_, cpus)| cpus.clone())
    }
}

impl FromStr for LaneCpus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut lanes: Vec<(&'static str, RangeInclusive<usize>)> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (client, cpus) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected <client type>=<cpus>"))?;
            let client = CLIENT_TYPES
                .iter()
                .find(|&&known| known == client.trim() && known != "unknown")
                .ok_or_else(|| {
                    format!(
                        "`{}` is not a client type (web, mobile, partner)",
                        client.trim()
                    )
                })?;
            if lanes.iter().any(|(name, _)| name == client) {
                return Err(format!("`{client}` is given CPUs twice"));
            }
            let cpu = |number: &str| {
                number
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| format!("`{cpus}`: expected a CPU number or a range such as 2-3"))
            };
            let (first, last) = cpus.split_once('-').unwrap_or((cpus, cpus));
            let (first, last) = (cpu(first)?, cpu(last)?);
            if first > last {
                return Err(format!("`{cpus}`: the range runs backwards"));
            }
            if last >= CpuSet::count() {
                return Err(format!("`{cpus}`: CPU {last} is beyond what can be named"));
            }
            lanes.push((client, first..=last));
        }
        Ok(Self(lanes))
    }
}

/// Confines the calling thread to `cpus`.
fn pin_current_thread(cpus: &RangeInclusive<usize>) -> nix::Result<()> {
    let mut set = CpuSet::new();
    for cpu in cpus.clone() {
        set.set(cpu)?;
    }
    sched_setaffinity(Pid::from_raw(0), &set)
}

/// One runtime per client type, each with as many worker threads as the
/// process may use CPUs, or as its lane has CPUs reserved.
pub(crate) struct Lanes {
    lanes: Vec<(&'static str, Runtime)>,
}

impl Lanes {
    /// Starts the lanes of `server`, their threads named
    /// `<server>-<client type>` and confined to the CPUs `cpus` reserves
    /// for them. CPUs this machine does not have, or this process may not
    /// use, are an error here rather than a warning on every thread.
    pub(crate) fn start(server: &'static str, cpus: &LaneCpus) -> std::io::Result<Arc<Self>> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Callers of no known client type (none in this stack) are served
        // where connections are accepted.
        let lanes = CLIENT_TYPES
            .iter()
            .filter(|&&client| client != "unknown")
            .map(|&client| {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder
                    .worker_threads(threads)
                    .thread_name(format!("{server}-{client}"))
                    .enable_all();
                if let Some(reserved) = cpus.of(client) {
                    // Tried once on a thread of its own, so that a bad
                    // range is refused at start.
                    let probe = reserved.clone();
                    std::thread::spawn(move || pin_current_thread(&probe))
                        .join()
                        .map_err(|_| std::io::Error::other("the CPU probe panicked"))?
                        .map_err(|error| {
                            std::io::Error::other(format!(
                                "{client} lane's CPUs {}-{}: {error}",
                                reserved.start(),
                                reserved.end()
                            ))
                        })?;
                    builder.worker_threads(reserved.clone().count());
                    builder.on_thread_start(move || {
                        if let Err(error) = pin_current_thread(&reserved) {
                            tracing::warn!(%error, client, "lane thread not confined to its CPUs");
                        }
                    });
                }
                Ok((client, builder.build()?))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Arc::new(Self { lanes }))
    }

    /// The runtime that serves `client`'s connections.
    pub(crate) fn of(&self, client: &str) -> Option<&Handle> {
        self.lanes
            .iter()
            .find(|(name, _)| *name == client)
            .map(|(_, runtime)| runtime.handle())
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        // Dropped at the end of the server's drain, inside the runtime
        // that accepted connections: a lane does not block it.
        for (_, runtime) in self.lanes.drain(..) {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.lanes.iter().map(|(name, _)| name))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_cpus_are_read_and_bad_ones_refused() {
        let cpus: LaneCpus = "web=0, mobile=1-3,partner=1".parse().unwrap();
        assert_eq!(cpus.of("web"), Some(0..=0));
        assert_eq!(cpus.of("mobile"), Some(1..=3));
        assert_eq!(cpus.of("partner"), Some(1..=1));
        assert_eq!("".parse::<LaneCpus>().unwrap(), LaneCpus::default());
        for (bad, says) in [
            ("web", "expected <client type>=<cpus>"),
            ("desktop=0", "`desktop` is not a client type"),
            ("unknown=0", "`unknown` is not a client type"),
            ("web=0,web=1", "`web` is given CPUs twice"),
            ("web=a", "expected a CPU number"),
            ("web=1-", "expected a CPU number"),
            ("web=3-1", "runs backwards"),
            ("web=1000000", "beyond what can be named"),
        ] {
            let error = bad.parse::<LaneCpus>().unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    /// The CPUs the calling thread may run on, as the kernel lists them.
    fn allowed_here() -> String {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_owned()
    }

    #[test]
    fn a_lane_with_cpus_runs_there_and_the_others_anywhere() {
        let everywhere = std::thread::spawn(allowed_here).join().unwrap();
        let lanes = Lanes::start("pinned", &"mobile=0".parse().unwrap()).unwrap();
        let on = |client: &str| {
            let lane = lanes.of(client).unwrap();
            lane.block_on(lane.spawn(async { allowed_here() })).unwrap()
        };
        let blocking_on = |client: &str| {
            let lane = lanes.of(client).unwrap();
            lane.block_on(lane.spawn_blocking(allowed_here)).unwrap()
        };
        assert_eq!(on("mobile"), "0");
        assert_eq!(blocking_on("mobile"), "0");
        assert_eq!(on("web"), everywhere);
        assert_eq!(blocking_on("partner"), everywhere);
    }

    #[test]
    fn cpus_the_process_cannot_use_are_refused_at_start() {
        // Far past any CPU of a test machine, still a nameable one.
        let error = Lanes::start("pinned", &"web=1023".parse().unwrap()).unwrap_err();
        assert!(
            error.to_string().contains("web lane's CPUs 1023-1023"),
            "{error}"
        );
    }
}
