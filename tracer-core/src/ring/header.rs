//! Layout of the shared ring header: byte offsets into the first [`HEADER_SIZE`] bytes.
//!
//! The header is shared by three writers in two languages: the agent's JavaScript (through
//! `Int32Array` and `Float64Array` views, so every field is aligned to its width), the agent's
//! native code, and the reader in the `asynctrace` process. The addon hands these offsets to the
//! JavaScript side at start-up, so the numbers live only here.
//!
//! Ownership of each field: the writer owns `WRITE`, `STATE`, `DROPPED` and `EXIT_CODE`; the
//! reader owns `READ`; the rest is written once before the ring file is published (renamed into
//! place) and never changes.

/// Version of the ring layout. Bump when an offset, a field's meaning or the record size changes.
pub const RING_FORMAT_VERSION: u32 = 1;

/// First eight bytes of every ring file.
pub const MAGIC: [u8; 8] = *b"ATRACRNG";

/// u64 magic.
pub const OFF_MAGIC: usize = 0;
/// u32 [`RING_FORMAT_VERSION`].
pub const OFF_VERSION: usize = 8;
/// u32 record size in bytes.
pub const OFF_RECORD_SIZE: usize = 12;
/// u32 capacity in records, a power of two.
pub const OFF_CAPACITY: usize = 16;
/// u32 header size: where the records start.
pub const OFF_HEADER_SIZE: usize = 20;
/// u32 writer process id.
pub const OFF_PID: usize = 24;
/// u32 writer thread id (`worker_threads.threadId`, 0 for the main thread).
pub const OFF_THREAD: usize = 28;
/// u32, the low 32 bits of the monotonic write position, published with release ordering.
/// JavaScript cannot store a u64 without a BigInt, so the reader extends it: it owns the u64
/// read position and `write - read <= capacity < 2^32`, so the difference is unambiguous.
pub const OFF_WRITE: usize = 32;
/// u32 [`WriterState`].
pub const OFF_STATE: usize = 36;
/// u64 monotonic read position (records consumed), written only by the reader.
pub const OFF_READ: usize = 40;
/// f64 count of hook events dropped because the ring was full.
pub const OFF_DROPPED: usize = 48;
/// i32 exit code, valid once the state is [`WriterState::Exited`].
pub const OFF_EXIT_CODE: usize = 56;
/// f64 monotonic nanoseconds when the ring was created.
pub const OFF_START_NS: usize = 64;
/// 32 bytes: the writer's `process.version`, NUL padded.
pub const OFF_NODE_VERSION: usize = 72;
/// Length of the node version field.
pub const NODE_VERSION_LEN: usize = 32;
/// Size of the header; records start here (a multiple of the record size and of 64).
pub const HEADER_SIZE: usize = 128;

/// Where the writer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum WriterState {
    /// Created, hooks not enabled yet.
    Starting = 0,
    /// Hooks enabled.
    Running = 1,
    /// The writer ran its exit handler; `EXIT_CODE` is valid and nothing more will be written.
    Exited = 2,
    /// A worker thread was stopped before its exit handler could run (`worker.terminate()`,
    /// or the process exiting under it); nothing more will be written.
    Terminated = 3,
}

impl WriterState {
    /// Decodes a state word; unknown values read as `Running` (the safe assumption: keep reading).
    pub fn from_u32(v: u32) -> Self {
        match v {
            0 => Self::Starting,
            2 => Self::Exited,
            3 => Self::Terminated,
            _ => Self::Running,
        }
    }
}

/// Bytes of a ring with `capacity` records.
pub fn ring_bytes(capacity: u32) -> usize {
    HEADER_SIZE + capacity as usize * crate::record::RECORD_SIZE
}

/// The offsets, as `(name, offset)` pairs, for the agent to hand to JavaScript.
pub fn layout() -> [(&'static str, usize); 12] {
    [
        ("version", OFF_VERSION),
        ("recordSize", OFF_RECORD_SIZE),
        ("capacity", OFF_CAPACITY),
        ("headerSize", HEADER_SIZE),
        ("pid", OFF_PID),
        ("thread", OFF_THREAD),
        ("write", OFF_WRITE),
        ("state", OFF_STATE),
        ("read", OFF_READ),
        ("dropped", OFF_DROPPED),
        ("exitCode", OFF_EXIT_CODE),
        ("startNs", OFF_START_NS),
    ]
}
