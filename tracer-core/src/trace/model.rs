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

    /// The agent's snapshot of what Node still held, written after its [`ALIVE`] notes (at
    /// the `exit` event, or when a SIGINT, SIGTERM or SIGHUP reached the thread): `a` is why (0:
    /// exit; else the signal number), `b` the number of `ALIVE` notes written just before it.
    /// A handle or timer the agent watches (see `agent.js`, `WATCHED`) that was created before
    /// a complete snapshot and is not listed in it was closed, whatever its missing `destroy`.
    pub const SNAPSHOT: u32 = 32;
    /// One handle or timer still open at a snapshot (id: the resource): `a` holds the
    /// `ALIVE_*` flags, `b` the timer's period in ms (0 for a one-shot timer or a handle);
    /// `text`, when present, the socket's endpoints (`local -> remote`) or the server's
    /// listen address (`listening 0.0.0.0:3000`).
    pub const ALIVE: u32 = 33;
    /// `ALIVE` flag: ref'd, so it holds the process open (`hasRef()`).
    pub const ALIVE_REF: u64 = 1;
    /// `ALIVE` flag: Node's own timer (the HTTP Date-header cache, the HTTP server's
    /// connection check), armed on the app's behalf.
    pub const ALIVE_NODE: u64 = 2;
    /// `ALIVE` flag: a server listening for connections.
    pub const ALIVE_LISTENING: u64 = 4;
    /// A repeating timer was created (id: the `Timeout`): `a` is its period in ms.
    pub const INTERVAL: u32 = 34;
    /// A process warning the app emitted (`process.emitWarning`, Node's own deprecations and
    /// `MaxListenersExceededWarning`): id is `executionAsyncId()` when it was emitted; `text`
    /// is `Name: message`, then its stack, one frame per line as in creation stacks.
    pub const WARNING: u32 = 35;
    /// The stream ended here (the event's time): `a` says how (one of `ENDED_*`), `b` the exit
    /// code or the signal number.
    pub const ENDED: u32 = 36;
    /// `ENDED`: the thread ran its exit handler.
    pub const ENDED_EXIT: u64 = 0;
    /// `ENDED`: a signal killed the process (time: when the recorder saw it gone).
    pub const ENDED_SIGNAL: u64 = 1;
    /// `ENDED`: gone without an exit handler or status (time: when the recorder saw it gone).
    pub const ENDED_VANISHED: u64 = 2;
    /// `ENDED`: still running when `record` stopped (time: the stop).
    pub const ENDED_STOPPED: u64 = 3;
    /// How the thread's promises were recorded (id 0), written before any event: `a` is one
    /// of `PROMISES_*`. Traces without it recorded them through async_hooks.
    pub const PROMISE_MODE: u32 = 37;
    /// `PROMISE_MODE`: through async_hooks, as Node sees them; a promise's destroy is its
    /// collection.
    pub const PROMISES_ASYNC_HOOKS: u64 = 0;
    /// `PROMISE_MODE`: through V8's promise hooks (async_hooks with `trackPromises: false` for
    /// the rest). Promise ids start at [`PROMISE_ID_BASE`]; collection is not seen: a
    /// promise's destroy is written by the recorder when it has settled and no callback of it
    /// runs (it plays no further part; see `ingest`).
    pub const PROMISES_V8: u64 = 1;
    /// The first promise id in a `PROMISES_V8` thread: the agent numbers promises from here up,
    /// above any async id Node gives the thread's other resources. Why a round decimal: ids
    /// are shown, and `#1000000000042` reads as promise 42.
    pub const PROMISE_ID_BASE: u64 = 1_000_000_000_000;

    // CPU samples: 64..=95.

    /// A node of a thread's CPU call tree (id 0): `a` its id (stable for the whole thread,
    /// from 1), `b` its parent's (0: a root), text `function\tfile:line:col` (1-based; file
    /// relative to the app's cwd), or a bare name (`(garbage collector)`, `(native)`).
    pub const CPU_FRAME: u32 = 64;
    /// One CPU sample of the thread (id 0): `a` the node on top of the stack, `b` the
    /// microseconds since the previous sample of its chunk (or since the chunk's start).
    /// Samples come after the [`CPU_CHUNK`] they belong to, in time order.
    pub const CPU_SAMPLE: u32 = 65;
    /// A chunk of samples starts (id 0): `a` its start time in CLOCK_MONOTONIC microseconds
    /// (the clock of [`super::TraceMeta::start_ns`]), `b` the sampling interval in
    /// microseconds. Chunks are written after the fact: their samples are older than the note.
    pub const CPU_CHUNK: u32 = 66;
    /// Line ticks of a node in the chunk (id 0): `a` the node, `b` = line * 2^20 + ticks.
    pub const CPU_LINES: u32 = 67;
    /// The type of a resource whose init the agent did not see (created before its hook),
    /// learned at its first callback: the id is the resource's, text the constructor's name.
    pub const UNSEEN_TYPE: u32 = 68;
    /// A chunk of samples ends (id 0): `a` its end time in CLOCK_MONOTONIC microseconds, `b`
    /// the samples left out: the thread had no JavaScript on its stack (idle), or the ring had
    /// no room for them.
    pub const CPU_CHUNK_END: u32 = 69;
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
