//! Refusals logged as summaries, so that a flood cannot fill a disk.
//!
//! A call refused before any work (a rate limit or quota, a busy server's
//! admission or shedding, any RESOURCE_EXHAUSTED) costs the server
//! microseconds; an access line for each would cost more than the call
//! and, at tens of thousands a second, fill the log's disk. The access log
//! still counts every such call in its metrics, but hands the line to a
//! [`RefusalLog`] instead: refusals are added up per (caller, calling BFF,
//! reason) and written once a second, one line per key, carrying how many
//! refusals it stands for (`refusals=`). The table of pending summaries
//! holds at most [`MAX_PENDING`] keys; refusals beyond it are added to one
//! `others` summary, so a flood of made-up callers is bounded too.
//! Pending summaries are written when the server's stack is dropped, too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tonic::Code;

/// How often pending summaries are written.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

/// Keys (caller, calling BFF, reason) pending at once; refusals of other
/// keys go to the `others` summary until the next write.
pub const MAX_PENDING: usize = 256;

/// The caller named on the summary of refusals beyond [`MAX_PENDING`] keys.
pub const OTHERS: &str = "others";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    caller: String,
    via: String,
    reason: &'static str,
}

/// What is known of one key's refusals since the last write.
#[derive(Debug, Clone)]
struct Pending {
    refusals: u64,
    /// The last refused call's method, status and request id: an example
    /// to look for in traces.
    method: String,
    code: Code,
    request_id: String,
}

/// One summary line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) caller: String,
    pub(crate) via: String,
    pub(crate) reason: &'static str,
    pub(crate) refusals: u64,
    pub(crate) method: String,
    pub(crate) code: Code,
    pub(crate) request_id: String,
}

#[derive(Debug, Default)]
struct Table {
    pending: HashMap<Key, Pending>,
    others: Option<Pending>,
}

/// One refused call, as the access log knows it.
pub(crate) struct Refused<'a> {
    pub(crate) caller: &'a str,
    pub(crate) via: &'a str,
    pub(crate) reason: &'static str,
    pub(crate) method: &'a str,
    pub(crate) code: Code,
    pub(crate) request_id: &'a str,
}

/// A server's pending refusal summaries; see the module docs.
#[derive(Debug)]
pub(crate) struct RefusalLog {
    server: &'static str,
    table: Mutex<Table>,
    writer: OnceLock<()>,
}

impl RefusalLog {
    /// The summaries of `server`, written by a task started with the first
    /// refusal.
    pub(crate) fn new(server: &'static str) -> Arc<Self> {
        Arc::new(Self {
            server,
            table: Mutex::new(Table::default()),
            writer: OnceLock::new(),
        })
    }

    /// Adds a refused call to its key's summary.
    pub(crate) fn note(self: &Arc<Self>, refused: Refused<'_>) {
        self.writer.get_or_init(|| self.start_writer());
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let key = Key {
            caller: refused.caller.to_owned(),
            via: refused.via.to_owned(),
            reason: refused.reason,
        };
        let fresh = || Pending {
            refusals: 0,
            method: String::new(),
            code: refused.code,
            request_id: String::new(),
        };
        let table = &mut *table;
        let pending = if table.pending.len() < MAX_PENDING || table.pending.contains_key(&key) {
            table.pending.entry(key).or_insert_with(fresh)
        } else {
            table.others.get_or_insert_with(fresh)
        };
        pending.refusals += 1;
        pending.code = refused.code;
        pending.method.clear();
        pending.method.push_str(refused.method);
        pending.request_id.clear();
        pending.request_id.push_str(refused.request_id);
    }

    /// Takes every pending summary, leaving the table empty.
    pub(crate) fn drain(&self) -> Vec<Summary> {
        let table = std::mem::take(&mut *self.table.lock().unwrap_or_else(|e| e.into_inner()));
        let others = table.others.map(|p| {
            (
                Key {
                    caller: OTHERS.to_owned(),
                    via: String::new(),
                    reason: OTHERS,
                },
                p,
            )
        });
        table
            .pending
            .into_iter()
            .chain(others)
            .map(|(key, p)| Summary {
                caller: key.caller,
                via: key.via,
                reason: key.reason,
                refusals: p.refusals,
                method: p.method,
                code: p.code,
                request_id: p.request_id,
            })
            .collect()
    }

    /// Writes every pending summary as one access line each.
    pub(crate) fn write(&self) {
        for summary in self.drain() {
            tracing::info!(
                target: "access",
                server = self.server,
                method = %summary.method,
                status = ?summary.code,
                refusals = summary.refusals,
                reason = summary.reason,
                request_id = %summary.request_id,
                // Callers choose these strings: escaped, as on every
                // access line.
                caller = %summary.caller.escape_debug(),
                via = %summary.via.escape_debug(),
                "refused calls"
            );
        }
    }

    /// Starts the task that writes the summaries every
    /// [`SUMMARY_INTERVAL`] while the log is in use; without a runtime,
    /// they are written when the log is dropped.
    fn start_writer(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let log: Weak<Self> = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(SUMMARY_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                match log.upgrade() {
                    Some(log) => log.write(),
                    None => return,
                }
            }
        });
    }
}

impl Drop for RefusalLog {
    fn drop(&mut self) {
        self.write();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused<'a>(caller: &'a str, reason: &'static str) -> Refused<'a> {
        Refused {
            caller,
            via: "",
            reason,
            method: "/tailor.partner.v1.PartnerService/ListProducts",
            code: Code::ResourceExhausted,
            request_id: "r-1",
        }
    }

    #[test]
    fn refusals_add_up_per_caller_and_reason() {
        let log = RefusalLog::new("partner-bff");
        for _ in 0..3 {
            log.note(refused("acme", "rate"));
        }
        log.note(refused("acme", "quota"));
        log.note(refused("globex", "rate"));
        let mut summaries = log.drain();
        summaries.sort_by(|a, b| (&a.caller, a.reason).cmp(&(&b.caller, b.reason)));
        let counts: Vec<_> = summaries
            .iter()
            .map(|s| (s.caller.as_str(), s.reason, s.refusals))
            .collect();
        assert_eq!(
            counts,
            [
                ("acme", "quota", 1),
                ("acme", "rate", 3),
                ("globex", "rate", 1)
            ]
        );
        assert!(log.drain().is_empty(), "a write empties the table");
    }

    #[test]
    fn the_table_is_bounded_and_the_rest_is_one_summary() {
        let log = RefusalLog::new("partner-bff");
        let callers: Vec<String> = (0..MAX_PENDING + 100).map(|i| format!("k{i}")).collect();
        for caller in &callers {
            log.note(refused(caller, "rate"));
            log.note(refused(caller, "rate"));
        }
        let summaries = log.drain();
        assert_eq!(summaries.len(), MAX_PENDING + 1);
        let others = summaries.iter().find(|s| s.caller == OTHERS).unwrap();
        assert_eq!(others.refusals, 200);
        let total: u64 = summaries.iter().map(|s| s.refusals).sum();
        assert_eq!(total, 2 * callers.len() as u64);
    }
}
