//! What a trace holds, as the reader hands it out: the vocabulary every analysis speaks.

use serde::{Deserialize, Serialize};

/// One writer thread (a Node process's main thread or a worker), numbered in order of
/// appearance in the trace. Async ids are only unique within a stream.
pub type StreamId = u32;

/// Index into the trace's string table (type names, stacks, labels, metadata).
pub type StringId = u32;

/// Written once at the start of a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TraceMeta {
    /// The command that `record` ran.
    pub command: Vec<String>,
    /// Working directory of `record`.
    pub cwd: String,
    /// Wall-clock start, milliseconds since the Unix epoch.
    pub start_unix_ms: u64,
    /// Monotonic clock (CLOCK_MONOTONIC, ns) at the start; event times are relative to it.
    pub start_ns: u64,
    /// Version of asynctrace that wrote the trace.
    pub writer_version: String,
    /// Resolution of event timestamps in nanoseconds (the agent's clock tick).
    pub clock_tick_ns: u64,
}

/// A writer thread appeared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    pub stream: StreamId,
    pub pid: u32,
    /// `worker_threads.threadId`; 0 for the main thread.
    pub thread: u32,
    /// `process.version` of the writer.
    pub node_version: String,
}

/// How a writer thread ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ending {
    /// Ran its exit handler with this code.
    Exited { code: i32 },
    /// The process was killed by this signal (known for the process `record` started).
    Signaled { signal: i32 },
    /// Gone without an exit handler and with no status known (SIGKILL of a child, crash).
    Vanished,
    /// Still running when the recording stopped.
    Running,
    /// A worker thread stopped before its exit handler ran: `worker.terminate()`, or its
    /// process exiting under it.
    Terminated,
}

/// Written when a writer thread's ring is drained for the last time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEnd {
    pub stream: StreamId,
    /// Hook events recorded (init + before + after + destroy + promiseResolve).
    pub events: u64,
    /// Hook events the agent dropped because the ring was full.
    pub dropped: u64,
    /// Records that failed validation and were skipped.
    pub malformed: u64,
    pub ending: Ending,
}

/// The five async_hooks callbacks, plus the agent's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// `init(asyncId, type, triggerAsyncId)`; `exec` is `executionAsyncId()` at init;
    /// `stack` is the creation stack (one frame per line, innermost first) when recorded.
    Init {
        type_name: StringId,
        trigger: u64,
        exec: u64,
        stack: Option<StringId>,
    },
    Before,
    After,
    Destroy,
    /// `promiseResolve(asyncId)`; `by` is `executionAsyncId()` when it ran: the resource whose
    /// callback settled the promise (0: not recorded, as in traces of format version 2).
    PromiseResolve {
        by: u64,
    },
    /// A label for the resource, e.g. `GET /users/7` for an HTTP request.
    Label {
        text: StringId,
    },
    /// Something the agent learnt beyond the five hooks, about the event's id (0: about the
    /// stream as a whole). What `a`, `b` and `text` mean depends on `code`: see [`notes`].
    /// Readers skip codes they do not know, so new notes need no format bump.
    Note {
        code: u32,
        a: u64,
        b: u64,
        text: Option<StringId>,
    },
}

/// The codes of [`EventKind::Note`]. Each names what its operands mean. Codes are below 2^16
/// (they travel in the ring record's 16-bit field).
pub mod notes {
    // HTTP requests, outgoing calls and wait causes: 1..=31.

    /// Node began handling an incoming HTTP request (`http.server.request.start`). `id`: the
    /// resource running then (the connection's parser, HTTPINCOMINGMESSAGE); `a`: the
    /// request's number in its thread (from 1); `b`: the async id of its socket (0: unknown);
    /// text: `METHOD URL`.
    pub const REQUEST_START: u32 = 1;
    /// The response of request `a` finished (`http.server.response.finish`: `res.end` flushed).
    /// `id`: the resource running then; `b`: the status code.
    pub const REQUEST_FINISH: u32 = 2;
    /// A Timeout's delay, written at its init: `id` the Timeout, `a` the delay in µs, `b` 1
    /// for an interval.
    pub const TIMER: u32 = 3;
    /// An outgoing call started (`http.request`, `fetch`): `id` the resource running then,
    /// `a` the call's number in its thread, text `METHOD host/path`.
    pub const OUTGOING_START: u32 = 4;
    /// The response of outgoing call `a` arrived: `id` the resource that received it (the
    /// client parser, HTTPCLIENTREQUEST, or the socket for `fetch`), `b` the status code.
    pub const OUTGOING_FINISH: u32 = 5;

    // What is alive at the end, warnings, ends of runs: 32..=63.

    // CPU samples: 64..=95.
}

/// One hook event of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event {
    pub stream: StreamId,
    /// Nanoseconds since [`TraceMeta::start_ns`] (never negative; clamped at 0).
    pub time_ns: u64,
    /// The async id of the resource.
    pub id: u64,
    pub kind: EventKind,
}

/// What the reader yields, in file order. Strings and stream starts always come before the
/// events that use them; events of one stream come in the order they happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    String {
        id: StringId,
        text: String,
    },
    StreamStart(StreamInfo),
    /// The agent's metadata for a stream, a JSON object: `argv`, `execArgv`, `cwd`, `ppid`,
    /// `isMainThread`, ...
    StreamMeta {
        stream: StreamId,
        json: String,
    },
    Event(Event),
    StreamEnd(StreamEnd),
}
