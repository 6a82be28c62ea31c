//! What `asynctrace info` shows: counts by hook and type, processes, threads, drops.
//! One streaming pass; memory grows with the number of strings and threads only.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Serialize;

use crate::trace::{notes, Ending, EventKind, Item, StreamId, TraceError, TraceReader};

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct EventCounts {
    pub init: u64,
    pub before: u64,
    pub after: u64,
    pub destroy: u64,
    #[serde(rename = "promiseResolve")]
    pub promise_resolve: u64,
}

impl EventCounts {
    pub fn total(&self) -> u64 {
        self.init + self.before + self.after + self.destroy + self.promise_resolve
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ThreadSummary {
    pub thread: u32,
    pub events: u64,
    pub dropped: u64,
    /// Records the agent mangled (failed validation), skipped.
    pub malformed: u64,
    /// Hook events whose async ids the app itself made invalid (an `AsyncResource` with
    /// `triggerAsyncId: -1`, `emitInit` of -1 or 1.5), skipped: ids Node would reject.
    pub invalid_ids: u64,
    /// Init count per resource type in this thread.
    pub types: BTreeMap<String, u64>,
    /// How the thread ended: `{"code": N}`, `{"signal": "SIGKILL"}`, `"vanished"`, `"running"`,
    /// `"terminated"`;
    /// null when the trace was cut before the thread ended.
    pub exit: Option<ExitJson>,
    /// What held the thread open at its end, from the agent's last complete snapshot (at
    /// exit, or at the signal that stopped it); null when none was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_open: Option<HeldOpen>,
    /// How its promises were recorded: `async-hooks` (their destroy is their collection) or
    /// `v8` (V8's promise hooks: their destroy is their end, collection is not seen).
    pub promises: &'static str,
}

/// The handles and timers a snapshot found open (`leaks` names them).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct HeldOpen {
    /// `exit`, or the signal (`SIGTERM`) it was taken at.
    pub at: String,
    /// Ref'd (holding the process open), not counting Node's own timers.
    pub refd: u64,
    pub unrefd: u64,
    /// The first ref'd one: a timer's period or a socket's endpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example: Option<String>,
}

/// A process warning the app emitted, with how often.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WarningSummary {
    pub pid: u32,
    pub thread: u32,
    /// `Name: message`.
    pub warning: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum ExitJson {
    Code { code: i32 },
    Signal { signal: String },
    Other(&'static str),
}

impl From<&Ending> for ExitJson {
    fn from(e: &Ending) -> Self {
        match e {
            Ending::Exited { code } => ExitJson::Code { code: *code },
            Ending::Signaled { signal } => ExitJson::Signal {
                signal: signal_name(*signal),
            },
            Ending::Vanished => ExitJson::Other("vanished"),
            Ending::Running => ExitJson::Other("running"),
            Ending::Terminated => ExitJson::Other("terminated"),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProcessSummary {
    pub pid: u32,
    pub argv: Vec<String>,
    /// Node's own options (`-e <script>`, `--inspect`), which `argv` leaves out.
    #[serde(rename = "execArgv")]
    pub exec_argv: Vec<String>,
    pub node: String,
    /// The main thread's ending, which is the process's.
    pub exit: Option<ExitJson>,
    pub threads: Vec<ThreadSummary>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TraceSummary {
    pub command: Vec<String>,
    pub start_unix_ms: u64,
    /// Time of the last event, in milliseconds from the start.
    pub duration_ms: f64,
    pub events: EventCounts,
    /// Init count per resource type.
    pub types: BTreeMap<String, u64>,
    pub dropped: u64,
    /// Records the agent mangled, skipped (see [`ThreadSummary::malformed`]).
    pub malformed: u64,
    /// Events with invalid async ids from the app, skipped (see
    /// [`ThreadSummary::invalid_ids`]).
    pub invalid_ids: u64,
    pub truncated: bool,
    pub processes: Vec<ProcessSummary>,
    /// Process warnings (`MaxListenersExceededWarning`, deprecations), in order of first
    /// appearance; `leaks` shows their stacks.
    pub warnings: Vec<WarningSummary>,
}

/// One `ALIVE` note: flags, period, text.
type Listed = (u64, u64, Option<u32>);

struct StreamAcc {
    pid: u32,
    thread: u32,
    node: String,
    argv: Vec<String>,
    exec_argv: Vec<String>,
    events: u64,
    types: BTreeMap<u32, u64>,
    invalid_ids: u64,
    end: Option<crate::trace::StreamEnd>,
    /// `ALIVE` notes since the last snapshot: (flags, period, text).
    listing: Vec<Listed>,
    /// The last complete snapshot: why it was taken, and what it listed.
    held: Option<(u64, Vec<Listed>)>,
    v8_promises: bool,
}

/// Reads the whole trace once and summarises it.
pub fn summarize<R: Read>(mut reader: TraceReader<R>) -> Result<TraceSummary, TraceError> {
    let meta = reader.meta().clone();
    let mut strings: Vec<String> = Vec::new();
    let mut types_by_id: BTreeMap<u32, u64> = BTreeMap::new();
    let mut events = EventCounts::default();
    let mut streams: BTreeMap<StreamId, StreamAcc> = BTreeMap::new();
    let mut last_ns = 0u64;
    let mut warnings: Vec<(StreamId, u32, u64)> = Vec::new();
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Event(ev) => {
                last_ns = last_ns.max(ev.time_ns);
                match ev.kind {
                    EventKind::Init { type_name, .. } => {
                        events.init += 1;
                        *types_by_id.entry(type_name).or_default() += 1;
                        if let Some(s) = streams.get_mut(&ev.stream) {
                            *s.types.entry(type_name).or_default() += 1;
                        }
                    }
                    EventKind::Before => events.before += 1,
                    EventKind::After => events.after += 1,
                    EventKind::Destroy => events.destroy += 1,
                    EventKind::PromiseResolve { .. } => events.promise_resolve += 1,
                    EventKind::Note { code, a, b, text } => {
                        note(&mut streams, &mut warnings, &ev, code, a, b, text);
                        continue;
                    }
                    EventKind::Label { .. } => continue,
                }
                if let Some(s) = streams.get_mut(&ev.stream) {
                    s.events += 1;
                }
            }
            Item::String { id, text } => {
                let i = id as usize;
                if strings.len() <= i {
                    strings.resize(i + 1, String::new());
                }
                strings[i] = text;
            }
            Item::StreamStart(info) => {
                streams.insert(
                    info.stream,
                    StreamAcc {
                        pid: info.pid,
                        thread: info.thread,
                        node: info.node_version,
                        argv: Vec::new(),
                        exec_argv: Vec::new(),
                        events: 0,
                        types: BTreeMap::new(),
                        invalid_ids: 0,
                        end: None,
                        listing: Vec::new(),
                        held: None,
                        v8_promises: false,
                    },
                );
            }
            Item::StreamMeta { stream, json } => {
                if let Some(s) = streams.get_mut(&stream) {
                    if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(&json) {
                        // The agent's metadata at the stream's start; the recorder's own note
                        // (`invalid_ids`) at its end carries no argv and must not erase it.
                        let strings = |key: &str| match m.get(key) {
                            Some(serde_json::Value::Array(a)) => {
                                Some(a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                            }
                            _ => None,
                        };
                        if let Some(argv) = strings("argv") {
                            s.argv = argv;
                        }
                        if let Some(exec_argv) = strings("execArgv") {
                            s.exec_argv = exec_argv;
                        }
                        if let Some(n) = m.get("invalid_ids").and_then(serde_json::Value::as_u64) {
                            s.invalid_ids += n;
                        }
                    }
                }
            }
            Item::StreamEnd(end) => {
                if let Some(s) = streams.get_mut(&end.stream) {
                    s.end = Some(end);
                }
            }
        }
    }
    let truncated = reader.truncated();
    let name = |id: u32| {
        strings
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| format!("<string {id}>"))
    };
    let mut types = BTreeMap::new();
    for (id, n) in types_by_id {
        *types.entry(name(id)).or_default() += n;
    }
    let pids: BTreeMap<StreamId, (u32, u32)> = streams.iter().map(|(k, s)| (*k, (s.pid, s.thread))).collect();
    let mut processes: BTreeMap<u32, ProcessSummary> = BTreeMap::new();
    let (mut dropped, mut malformed, mut invalid_ids) = (0, 0, 0);
    for s in streams.into_values() {
        let p = processes.entry(s.pid).or_insert_with(|| ProcessSummary {
            pid: s.pid,
            argv: Vec::new(),
            exec_argv: Vec::new(),
            node: s.node.clone(),
            exit: None,
            threads: Vec::new(),
        });
        let exit = s.end.as_ref().map(|e| ExitJson::from(&e.ending));
        if s.thread == 0 {
            p.argv = s.argv.clone();
            p.exec_argv = s.exec_argv.clone();
            p.node = s.node.clone();
            p.exit = exit.clone();
        }
        let (d, m) = s.end.as_ref().map(|e| (e.dropped, e.malformed)).unwrap_or((0, 0));
        dropped += d;
        malformed += m;
        invalid_ids += s.invalid_ids;
        let mut thread_types = BTreeMap::new();
        for (id, n) in &s.types {
            *thread_types.entry(name(*id)).or_default() += n;
        }
        let held_open = s.held.as_ref().map(|(why, list)| {
            let mine = |f: &u64| f & notes::ALIVE_NODE == 0;
            let refd: Vec<_> = list
                .iter()
                .filter(|(f, _, _)| mine(f) && f & notes::ALIVE_REF != 0)
                .collect();
            HeldOpen {
                at: if *why == 0 {
                    "exit".to_owned()
                } else {
                    signal_name(i32::try_from(*why).unwrap_or(0))
                },
                refd: refd.len() as u64,
                unrefd: list
                    .iter()
                    .filter(|(f, _, _)| mine(f) && f & notes::ALIVE_REF == 0)
                    .count() as u64,
                example: refd.first().and_then(|(_, period, text)| match (period, text) {
                    (_, Some(t)) => Some(name(*t)),
                    (p, None) if *p > 0 => Some(format!("a timer every {p} ms")),
                    _ => None,
                }),
            }
        });
        p.threads.push(ThreadSummary {
            held_open,
            thread: s.thread,
            events: s.events,
            dropped: d,
            malformed: m,
            invalid_ids: s.invalid_ids,
            types: thread_types,
            exit,
            promises: if s.v8_promises { "v8" } else { "async-hooks" },
        });
    }
    let warnings = warnings
        .into_iter()
        .map(|(stream, text, count)| {
            let (pid, thread) = pids.get(&stream).copied().unwrap_or((0, 0));
            let full = name(text);
            WarningSummary {
                pid,
                thread,
                warning: full.lines().next().unwrap_or("").to_owned(),
                count,
            }
        })
        .collect();
    Ok(TraceSummary {
        warnings,
        command: meta.command,
        start_unix_ms: meta.start_unix_ms,
        duration_ms: last_ns as f64 / 1e6,
        events,
        types,
        dropped,
        malformed,
        invalid_ids,
        truncated,
        processes: processes.into_values().collect(),
    })
}

/// Reads the notes `info` shows: snapshots of what was alive, and warnings.
fn note(
    streams: &mut BTreeMap<StreamId, StreamAcc>,
    warnings: &mut Vec<(StreamId, u32, u64)>,
    ev: &crate::trace::Event,
    code: u32,
    a: u64,
    b: u64,
    text: Option<u32>,
) {
    let Some(s) = streams.get_mut(&ev.stream) else { return };
    match code {
        notes::ALIVE => s.listing.push((a, b, text)),
        notes::PROMISE_MODE => s.v8_promises = a == notes::PROMISES_V8,
        notes::SNAPSHOT => {
            let list = std::mem::take(&mut s.listing);
            if list.len() as u64 == b {
                s.held = Some((a, list));
            }
        }
        notes::WARNING => {
            let Some(text) = text else { return };
            let n = warnings.len();
            match warnings.iter_mut().find(|w| w.0 == ev.stream && w.1 == text) {
                Some(w) => w.2 += 1,
                None if n < 1000 => warnings.push((ev.stream, text, 1)),
                None => {}
            }
        }
        _ => {}
    }
}

/// `SIGKILL` for 9, and so on; `signal N` for the rest.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}
