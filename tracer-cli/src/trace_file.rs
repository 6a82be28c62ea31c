//! The file `record` writes.
//!
//! - Private: created with mode 0600, as `perf` creates `perf.data`, because a trace holds the
//!   app's argv and the URLs of its requests, query strings included.
//! - Written as `<output>.partial` beside the output and renamed over it only when complete, so
//!   a failed start or a failed write never destroys the trace already at that path, and a
//!   recorder killed mid-run leaves a file whose name says it is incomplete (every command
//!   still reads its complete prefix).
//! - An output that exists and is not a regular file (`/dev/null`, a named pipe, a terminal)
//!   is written directly: there is nothing to rename over it.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rustix::fs::OFlags;

/// The suffix of a trace being written.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// A trace file being written.
#[derive(Debug)]
pub struct TraceFile {
    target: PathBuf,
    /// `<target>.partial` while it is written; `None` when writing the target directly.
    partial: Option<PathBuf>,
    /// A second handle on the file, to make it durable before the rename.
    sync: File,
}

impl TraceFile {
    /// Creates the file to write the trace for `target` into, and returns it with a handle to
    /// write through.
    pub fn create(target: &Path) -> anyhow::Result<(Self, File)> {
        if target == Path::new("-") {
            bail!(
                "record cannot write the trace to stdout (`-o -`): the app's own output goes there; pass a file name"
            );
        }
        let special = match std::fs::metadata(target) {
            Ok(m) if m.is_dir() => bail!(
                "cannot create trace file {}: it is a directory; pass a file name with -o",
                target.display()
            ),
            Ok(m) => !m.is_file(),
            Err(_) => false,
        };
        let (partial, file) = if special {
            (None, open_special(target)?)
        } else {
            let partial = partial_path(target);
            // Why remove first: a partial file left by a killed recorder may have a looser mode,
            // and `mode` only applies to a file being created.
            match std::fs::remove_file(&partial) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("cannot replace the stale {}", partial.display())),
            }
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&partial)
                .with_context(|| format!("cannot create trace file {}", partial.display()))?;
            (Some(partial), file)
        };
        let sync = file
            .try_clone()
            .with_context(|| format!("cannot create trace file {}", target.display()))?;
        Ok((
            Self {
                target: target.to_owned(),
                partial,
                sync,
            },
            file,
        ))
    }

    /// Where the bytes are going now.
    pub fn writing_to(&self) -> &Path {
        self.partial.as_deref().unwrap_or(&self.target)
    }

    /// Whether the trace is written under a temporary name (and so can be sized and renamed).
    pub fn is_regular(&self) -> bool {
        self.partial.is_some()
    }

    /// Makes the complete trace durable and gives it its name, replacing any file there.
    pub fn commit(self) -> anyhow::Result<()> {
        let Some(partial) = &self.partial else { return Ok(()) };
        // Why sync before the rename: otherwise a crash soon after could leave an empty file
        // in place of both the old trace and the new one. Also where a full disk may surface.
        self.sync
            .sync_all()
            .with_context(|| format!("cannot write trace file {}", partial.display()))?;
        std::fs::rename(partial, &self.target)
            .with_context(|| format!("cannot rename {} to {}", partial.display(), self.target.display()))?;
        // Best effort: the rename itself is durable once its directory is.
        let dir = match self.target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let _ = File::open(dir).and_then(|d| d.sync_all());
        Ok(())
    }

    /// Removes what was written: the recording never started.
    pub fn discard(self) {
        if let Some(partial) = &self.partial {
            let _ = std::fs::remove_file(partial);
        }
    }
}

/// `t.bin` -> `t.bin.partial`, in the same directory (a rename cannot cross file systems).
pub fn partial_path(target: &Path) -> PathBuf {
    let mut name = OsString::from(target.as_os_str());
    name.push(PARTIAL_SUFFIX);
    PathBuf::from(name)
}

/// Opens an existing device or pipe for writing. Why non-blocking: opening a named pipe that no
/// program reads would wait forever; non-blocking, it fails at once and we can say why.
fn open_special(target: &Path) -> anyhow::Result<File> {
    let file = match OpenOptions::new()
        .write(true)
        .custom_flags(OFlags::NONBLOCK.bits() as i32)
        .open(target)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) => bail!(
            "cannot write trace file {}: it is a pipe that no program reads; start the reader first",
            target.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot create trace file {}", target.display())),
    };
    let flags = rustix::fs::fcntl_getfl(&file).with_context(|| format!("cannot write {}", target.display()))?;
    rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK)
        .with_context(|| format!("cannot write {}", target.display()))?;
    Ok(file)
}
