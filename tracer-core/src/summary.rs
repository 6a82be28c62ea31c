//! What `asynctrace info` shows: counts by hook and type, processes, threads, drops.
//! One streaming pass; memory grows with the number of strings and threads only.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Serialize;

use crate::trace::{Ending, EventKind, Item, StreamId, TraceError, TraceReader};

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
}

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
}

/// Reads the whole trace once and summarises it.
pub fn summarize<R: Read>(mut reader: TraceReader<R>) -> Result<TraceSummary, TraceError> {
    let meta = reader.meta().clone();
    let mut strings: Vec<String> = Vec::new();
    let mut types_by_id: BTreeMap<u32, u64> = BTreeMap::new();
    let mut events = EventCounts::default();
    let mut streams: BTreeMap<StreamId, StreamAcc> = BTreeMap::new();
    let mut last_ns = 0u64;
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
                    EventKind::Label { .. } | EventKind::Note { .. } => continue,
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
        p.threads.push(ThreadSummary {
            thread: s.thread,
            events: s.events,
            dropped: d,
            malformed: m,
            invalid_ids: s.invalid_ids,
            types: thread_types,
            exit,
        });
    }
    Ok(TraceSummary {
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
