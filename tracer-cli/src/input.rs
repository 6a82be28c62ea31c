//! Opening a trace to read, whatever the path names, without ever hanging in `open`.
//!
//! A regular file is read as it is. A pipe is read as a stream when a program writes into it
//! (`asynctrace info <(zcat t.bin.gz)`, `cat t.bin | asynctrace info -`); a named pipe
//! that nobody writes into, which a plain `open` would wait on forever, is refused with one line
//! after a short grace, and so is a terminal.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Chain, Cursor, ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rustix::fs::OFlags;

/// What a trace is read from: the bytes a pipe probe took, then the rest of the file.
pub type Input = BufReader<Chain<Cursor<Vec<u8>>, File>>;

/// Opens `path` for reading as a trace.
pub fn open(path: &Path) -> anyhow::Result<Input> {
    // `-` is stdin, as for most Unix tools.
    let (path, name) = if path == Path::new("-") {
        (Path::new("/dev/stdin"), "stdin".to_string())
    } else {
        (path, path.display().to_string())
    };
    // Why non-blocking: `open` of a named pipe waits until a writer opens it, forever if none
    // does. Non-blocking, it returns at once and the probe below says whether a writer is there.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .with_context(|| format!("cannot read trace file {name}"))?;
    let kind = file
        .metadata()
        .with_context(|| format!("cannot read trace file {name}"))?
        .file_type();
    if kind.is_dir() {
        bail!("{name} is a directory; pass the trace file written by `asynctrace record`");
    }
    if kind.is_char_device() && rustix::termios::isatty(&file) {
        bail!("{name} is a terminal; pass a trace file, or pipe one in (`cat t.bin | asynctrace info -`)");
    }
    let mut head = Vec::new();
    if kind.is_fifo() || kind.is_socket() {
        // An anonymous pipe (`<(...)`, stdin) whose writer is gone gets no new one: no grace.
        let named = kind.is_fifo() && std::fs::canonicalize(path).is_ok();
        head = probe(&file, &name, if named { WRITER_GRACE } else { Duration::ZERO })?;
    }
    // From here on, reads wait for a pipe's writer like any reader of a pipe does.
    let flags = rustix::fs::fcntl_getfl(&file).with_context(|| format!("cannot read trace file {name}"))?;
    rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK)
        .with_context(|| format!("cannot read trace file {name}"))?;
    Ok(BufReader::with_capacity(256 * 1024, Cursor::new(head).chain(file)))
}

/// How long a pipe may stay without a writer before it is refused. Why wait at all: in
/// `cat t.bin > fifo & asynctrace info fifo` the writer may open the pipe just after us.
const WRITER_GRACE: Duration = Duration::from_secs(2);

/// Whether a pipe has a writer, without waiting for one in `open`: a non-blocking read returns
/// data (kept for the reader), `WouldBlock` (a writer is there, nothing written yet) or end of
/// file (no writer now; asked again until `grace` has passed). A writer blocked in its own
/// `open` of a named pipe already counts as one.
fn probe(mut file: &File, name: &str, grace: Duration) -> anyhow::Result<Vec<u8>> {
    let mut head = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + grace;
    loop {
        match file.read(&mut head) {
            Ok(0) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(0) => bail!(
                "{name} is a pipe with nothing in it and no program writing into it; start the program \
                 that writes the trace into it first, or pass the trace file itself"
            ),
            Ok(n) => {
                head.truncate(n);
                return Ok(head);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Vec::new()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read trace file {name}")),
        }
    }
}
