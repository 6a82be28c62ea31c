//! What holds a process open at the end, how each stream ended, and the app's process
//! warnings: the parts of `leaks` (and of `info`) that come from the agent's notes
//! (`trace::notes`: `SNAPSHOT`/`ALIVE`, `ENDED`, `WARNING`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::context::{site_of_stack, Context, SiteId};
use super::lifecycle::{Key, Resource};
use crate::trace::{notes, Event, StreamId, StringId};

/// Handles and timers alive at the end with the same type, site and hold, as the agent's
/// snapshot saw them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AliveGroup {
    #[serde(rename = "type")]
    pub type_name: String,
    pub site: Option<String>,
    pub count: u64,
    /// Ref'd: they hold the process open.
    pub refd: bool,
    /// Node's own timers (the Date-header cache, a server's connection check).
    pub node_internal: bool,
    /// The example timer's period, when it repeats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_ms: Option<u64>,
    /// The example's endpoints (`local -> remote`) or listen address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub oldest_age_ms: f64,
    pub example: u64,
    pub pid: u32,
    pub thread: u32,
    /// What the snapshot was taken at: `exit`, or the signal that stopped the app.
    pub at: String,
}

/// How and when one stream ended.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StreamEndInfo {
    pub pid: u32,
    pub thread: u32,
    /// `exit`, `signal`, `vanished`, or `stopped` (still running when `record` stopped).
    pub how: String,
    /// The exit code or the signal number.
    pub code: u64,
    /// When, ms since the trace start.
    pub at_ms: f64,
}

/// One process warning (same text and place), with how often it came.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WarningGroup {
    /// `Name: message`.
    pub warning: String,
    /// The first frame of the app's (where `emitWarning` was reached from).
    pub site: Option<String>,
    pub stack: Vec<String>,
    pub count: u64,
    pub first_ms: f64,
    pub pid: u32,
    pub thread: u32,
}

#[derive(Debug)]
struct Acc {
    count: u64,
    oldest_ns: u64,
    example: (Key, u64),
    period_ms: u32,
    endpoint: Option<StringId>,
    why: u64,
}

/// Collects the three as the leaks pass reads the trace.
#[derive(Debug, Default)]
pub struct AliveAcc {
    groups: BTreeMap<(StreamId, StringId, Option<SiteId>, bool, bool), Acc>,
    ends: BTreeMap<StreamId, (u64, u64, u64)>,
    warnings: BTreeMap<(StreamId, StringId), (u64, u64)>,
}

/// Warnings kept per trace (distinct texts); more are counted into the last ones' groups.
const MAX_WARNINGS: usize = 1000;

impl AliveAcc {
    /// A resource the last snapshot of its stream listed as open, still alive at `end_ns`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add<X: Copy + AliveData>(
        &mut self,
        cx: &mut Context,
        key: Key,
        res: &Resource<X>,
        site: Option<SiteId>,
        refd: bool,
        node: bool,
        end_ns: u64,
        why: u64,
    ) {
        let _ = cx;
        let acc = self
            .groups
            .entry((key.0, res.type_name, site, refd, node))
            .or_insert_with(|| Acc {
                count: 0,
                oldest_ns: 0,
                example: (key, u64::MAX),
                period_ms: 0,
                endpoint: None,
                why,
            });
        acc.count += 1;
        acc.oldest_ns = acc.oldest_ns.max(end_ns.saturating_sub(res.init_ns));
        if (res.init_ns, key) < (acc.example.1, acc.example.0) {
            acc.example = (key, res.init_ns);
            acc.period_ms = res.data.period_ms();
            acc.endpoint = res.data.endpoint();
        }
    }

    pub(super) fn warning(&mut self, _cx: &mut Context, ev: &Event, text: Option<StringId>) {
        let Some(text) = text else { return };
        let n = self.warnings.len();
        if let Some(w) = self.warnings.get_mut(&(ev.stream, text)) {
            w.0 += 1;
        } else if n < MAX_WARNINGS {
            self.warnings.insert((ev.stream, text), (1, ev.time_ns));
        }
    }

    pub(super) fn ended(&mut self, stream: StreamId, time_ns: u64, how: u64, code: u64) {
        self.ends.insert(stream, (time_ns, how, code));
    }

    pub(super) fn finish(self, cx: &Context) -> (Vec<AliveGroup>, Vec<StreamEndInfo>, Vec<WarningGroup>) {
        let mut alive: Vec<AliveGroup> = self
            .groups
            .into_iter()
            .map(|((_, type_name, site, refd, node), a)| {
                let s = cx.stream(a.example.0 .0);
                AliveGroup {
                    type_name: cx.string(type_name).to_owned(),
                    site: cx.site_string(site),
                    count: a.count,
                    refd,
                    node_internal: node,
                    period_ms: (a.period_ms > 0).then_some(u64::from(a.period_ms)),
                    endpoint: a.endpoint.map(|t| cx.string(t).to_owned()),
                    oldest_age_ms: super::ms(a.oldest_ns),
                    example: a.example.0 .1,
                    pid: s.pid,
                    thread: s.thread,
                    at: signal_name(a.why),
                }
            })
            .collect();
        // Ref'd first (they are why the process did not end), the app's before Node's own.
        alive.sort_by(|a, b| {
            b.refd
                .cmp(&a.refd)
                .then(a.node_internal.cmp(&b.node_internal))
                .then(b.count.cmp(&a.count))
                .then_with(|| a.type_name.cmp(&b.type_name))
                .then_with(|| a.site.cmp(&b.site))
        });
        let ends = self
            .ends
            .into_iter()
            .map(|(stream, (t, how, code))| {
                let s = cx.stream(stream);
                StreamEndInfo {
                    pid: s.pid,
                    thread: s.thread,
                    how: match how {
                        notes::ENDED_EXIT => "exit",
                        notes::ENDED_SIGNAL => "signal",
                        notes::ENDED_VANISHED => "vanished",
                        _ => "stopped",
                    }
                    .to_owned(),
                    code,
                    at_ms: super::ms(t),
                }
            })
            .collect();
        let mut warnings: Vec<WarningGroup> = self
            .warnings
            .into_iter()
            .map(|((stream, text), (count, first))| {
                let s = cx.stream(stream);
                let full = cx.string(text);
                let (head, frames) = full.split_once('\n').unwrap_or((full, ""));
                WarningGroup {
                    warning: head.to_owned(),
                    site: site_of_stack(frames).map(str::to_owned),
                    stack: frames
                        .lines()
                        .filter(|l| !l.is_empty())
                        .map(super::context::format_frame)
                        .collect(),
                    count,
                    first_ms: super::ms(first),
                    pid: s.pid,
                    thread: s.thread,
                }
            })
            .collect();
        warnings.sort_by(|a, b| a.first_ms.total_cmp(&b.first_ms));
        (alive, ends, warnings)
    }
}

/// What the leaks pass keeps per resource that this module reads.
pub(super) trait AliveData {
    fn period_ms(&self) -> u32;
    fn endpoint(&self) -> Option<StringId>;
}

/// `exit` for 0, else the signal's name (`SIGTERM`), or its number.
pub fn signal_name(n: u64) -> String {
    match n {
        0 => "exit".to_owned(),
        1 => "SIGHUP".to_owned(),
        2 => "SIGINT".to_owned(),
        3 => "SIGQUIT".to_owned(),
        6 => "SIGABRT".to_owned(),
        9 => "SIGKILL".to_owned(),
        15 => "SIGTERM".to_owned(),
        n => format!("signal {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::synth::Synth;
    use super::super::{run, LeakClass, LeakOptions, Leaks};
    use crate::trace::{notes, TraceReader};

    /// A server closed cleanly whose sockets' destroy never came, a ref'd interval, an unref'd
    /// one, a fired one-shot timer and Node's Date-header timer, all alive in the trace; the
    /// exit snapshot lists the three still open.
    fn trace(snapshot_complete: bool) -> Vec<u8> {
        let mut s = Synth::in_memory();
        let st = s.stream(7, 0).unwrap();
        s.init(st, 0.0, 5, "TCPSERVERWRAP", 1, Some("app.js:1:1")).unwrap();
        s.init(st, 1.0, 6, "TCPWRAP", 5, None).unwrap();
        s.init(st, 1.0, 7, "Timeout", 1, Some("queue.js:10:3")).unwrap();
        s.note(st, 1.0, 7, notes::INTERVAL, 200, 0, None).unwrap();
        s.init(st, 1.0, 8, "Timeout", 1, Some("metrics.js:6:3")).unwrap();
        s.init(st, 1.0, 9, "Timeout", 1, Some("app.js:3:1")).unwrap();
        s.callback(st, 2.0, 9, 0.1).unwrap();
        s.init(st, 1.0, 10, "Timeout", 1, Some("app.js:4:1")).unwrap();
        s.init(st, 1.0, 11, "SIGNALWRAP", 1, Some("app.js:5:1")).unwrap();
        s.note(st, 9.0, 7, notes::ALIVE, notes::ALIVE_REF, 200, None).unwrap();
        s.note(st, 9.0, 8, notes::ALIVE, 0, 5000, None).unwrap();
        s.note(st, 9.0, 10, notes::ALIVE, notes::ALIVE_NODE, 0, None).unwrap();
        let listed = if snapshot_complete { 3 } else { 4 };
        s.note(st, 9.0, 0, notes::SNAPSHOT, 0, listed, None).unwrap();
        s.note(st, 9.5, 0, notes::ENDED, notes::ENDED_EXIT, 0, None).unwrap();
        s.end_stream(st, 12).unwrap();
        s.finish().unwrap()
    }

    fn leaks(buf: &[u8]) -> super::super::LeakReport {
        let mut pass = Leaks::new(LeakOptions::default());
        let mut reader = TraceReader::new(buf).unwrap();
        let mut cx = run(&mut reader, &mut pass).unwrap();
        pass.finish(&mut cx)
    }

    #[test]
    fn the_exit_snapshot_decides_what_is_open_and_what_holds_the_process() {
        let r = leaks(&trace(true));
        let got: Vec<(LeakClass, Option<&str>, Option<u64>)> =
            r.leaks.iter().map(|g| (g.class, g.site.as_deref(), g.refd)).collect();
        assert_eq!(
            got,
            vec![
                (LeakClass::PendingTimer, Some("queue.js:10:3"), Some(1)),
                (LeakClass::PendingTimer, Some("metrics.js:6:3"), Some(0)),
            ],
            "{r:#?}"
        );
        assert_eq!(r.leaks[0].period_ms, Some(200));
        assert_eq!(r.closed_at_exit, 3, "server, socket and the fired timer were closed");
        assert!(r.alive_at_end[0].refd && r.alive_at_end[0].site.as_deref() == Some("queue.js:10:3"));
        assert_eq!(r.ends[0].how, "exit");
        assert_eq!(r.ends[0].at_ms, 9.5);
        assert_eq!(r.leaks[0].oldest_age_ms, 8.5, "ages run to the end of the run");
    }

    #[test]
    fn without_a_complete_snapshot_the_trace_decides() {
        let r = leaks(&trace(false));
        let sites: Vec<Option<&str>> = r.leaks.iter().map(|g| g.site.as_deref()).collect();
        // The server and its socket look open; the fired one-shot timer is done either way, and
        // a signal listener never holds the loop.
        assert!(sites.contains(&Some("app.js:1:1")), "{sites:?}");
        assert!(!sites.contains(&Some("app.js:3:1")), "{sites:?}");
        assert!(!sites.contains(&Some("app.js:5:1")), "{sites:?}");
        assert!(r.leaks.iter().all(|g| g.refd.is_none()));
    }
}
