//! Ring files in shared memory: the only place that maps memory.
//!
//! A ring is a file in the session directory (on `/dev/shm` where it exists), named
//! `<pid>-<thread>-<nonce>.ring`: a pid can be reused within one recording (pid namespaces, a
//! long run), and two writers must never share a file. The writer creates it under a temporary
//! name, reserves its memory, writes the header, and links it into place without replacing
//! anything, so a reader that lists the directory never sees half a header.
//!
//! Ring files are sparse until written: on a full tmpfs, the first touch of an unbacked page
//! kills the writer with SIGBUS. [`create`] therefore allocates every page up front, so a lack
//! of memory is an error at creation ([`is_out_of_space`]) that the agent can answer with a
//! smaller ring, never a fault in the app.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use memmap2::MmapRaw;

use crate::ring::{header, init_header, RingMemory, WriterInfo};

/// Suffix of published ring files.
pub const RING_SUFFIX: &str = ".ring";

/// A mapped ring file.
pub struct SharedRing {
    map: MmapRaw,
    path: PathBuf,
}

// SAFETY: an `MmapRaw` of a file we created with `ring_bytes(capacity)` bytes is page-aligned
// (so 64-aligned), readable and writable, and stays mapped as long as this value lives.
unsafe impl RingMemory for SharedRing {
    fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }
    fn len(&self) -> usize {
        self.map.len()
    }
}

// SAFETY: see `RingMemory`; the ring protocol synchronises all access through atomics.
unsafe impl Send for SharedRing {}

// SAFETY: as for `Send`: shared access is only through the ring's atomics and copies.
unsafe impl Sync for SharedRing {}

impl SharedRing {
    /// Path of the ring file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Name of the ring file of a writer; `nonce` tells apart writers that share a pid and thread.
pub fn ring_file_name(pid: u32, thread: u32, nonce: u64) -> String {
    format!("{pid}-{thread}-{nonce:x}{RING_SUFFIX}")
}

/// Whether a [`create`] error means the file system had no room for the ring.
pub fn is_out_of_space(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error())
        || e.raw_os_error() == Some(rustix::io::Errno::DQUOT.raw_os_error())
}

/// A nonce that differs between calls in this process and, with high likelihood, between
/// processes that reuse a pid (the clock has moved on).
fn nonce() -> u64 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) as u64;
    (t.tv_sec as u64).wrapping_mul(1_000_000_007) ^ (t.tv_nsec as u64) ^ (n << 40)
}

/// Creates, initialises and publishes a ring file in `dir`, readable and writable by its owner
/// only (records carry argv, URLs and stack paths).
///
/// All of its memory is allocated here: when the file system is short of space this fails
/// (see [`is_out_of_space`]) and leaves nothing behind.
pub fn create(dir: &Path, capacity: u32, info: &WriterInfo) -> io::Result<SharedRing> {
    if !capacity.is_power_of_two() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "ring capacity must be a power of two",
        ));
    }
    let len = header::ring_bytes(capacity);
    let mut attempts = 0;
    let (file, tmp) = loop {
        let tmp = dir.join(format!(".{}.tmp", ring_file_name(info.pid, info.thread, nonce())));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(f) => break (f, tmp),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 16 => attempts += 1,
            Err(e) => return Err(e),
        }
    };
    let cleanup = |e: io::Error| {
        let _ = std::fs::remove_file(&tmp);
        e
    };
    file.set_len(len as u64).map_err(cleanup)?;
    match rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, len as u64) {
        Ok(()) => {}
        // File systems without fallocate: the pages stay sparse, as before.
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => {}
        Err(e) => return Err(cleanup(e.into())),
    }
    let map = MmapRaw::map_raw(&file).map_err(cleanup)?;
    let mut ring = SharedRing { map, path: tmp.clone() };
    init_header(&ring, capacity, info).map_err(|e| cleanup(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    // Publish under a name no other writer holds: a hard link fails rather than replace.
    loop {
        let path = dir.join(ring_file_name(info.pid, info.thread, nonce()));
        match std::fs::hard_link(&tmp, &path) {
            Ok(()) => {
                let _ = std::fs::remove_file(&tmp);
                ring.path = path;
                return Ok(ring);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 32 => attempts += 1,
            Err(e) => return Err(cleanup(e)),
        }
    }
}

impl SharedRing {
    /// Gives this writer's ring memory back: the shared pages are replaced in place by private
    /// zero pages, so a late touch through a pointer someone still holds (an external
    /// `ArrayBuffer` of a torn-down worker) hits harmless memory instead of faulting, and the
    /// file's pages are freed once the reader has unmapped and unlinked the file. The address
    /// range stays reserved for as long as the process lives (the mapping is never unmapped).
    ///
    /// Safe because the region stays valid memory of the same size and protection: whoever
    /// still touches it (only through raw pointers and atomics, as for any shared ring, whose
    /// contents another process may change at any time) sees zeros, never a fault.
    pub fn release(&self) -> io::Result<()> {
        let ptr = self.map.as_mut_ptr().cast::<std::ffi::c_void>();
        let len = self.map.len();
        // SAFETY: `ptr..ptr + len` is exactly the mapping this value owns (page-aligned, from
        // mmap); MAP_FIXED replaces it atomically with an anonymous mapping of the same size and
        // protection, so the range stays valid for reads and writes. The region is only ever
        // accessed through raw pointers and atomics (see `RingMemory`), never through Rust
        // references that assume its contents stay put.
        unsafe {
            rustix::mm::mmap_anonymous(
                ptr,
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::FIXED,
            )
        }?;
        Ok(())
    }
}

/// Maps an existing ring file for reading.
///
/// # Safety
/// The file must not be truncated while it is mapped (the pages would fault with SIGBUS).
/// asynctrace's agent never truncates a ring; the session directory is private to `record`.
pub unsafe fn open(path: &Path) -> io::Result<SharedRing> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    if len < header::HEADER_SIZE as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("ring file {} is too small", path.display()),
        ));
    }
    let map = MmapRaw::map_raw(&file)?;
    Ok(SharedRing {
        map,
        path: path.to_owned(),
    })
}

/// Opens a file only to check it exists and is readable (used for error messages).
pub fn probe(path: &Path) -> io::Result<File> {
    File::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{decode, encode, Record};
    use crate::ring::{Consumer, Producer};

    #[test]
    fn a_ring_written_through_one_mapping_reads_through_another() {
        let dir = std::env::temp_dir().join(format!("asynctrace-shm-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let info = WriterInfo {
            pid: 7,
            thread: 1,
            node_version: "v24.0.0".into(),
            start_ns: 5,
        };
        let w = create(&dir, 16, &info).unwrap();
        let path = w.path().to_owned();
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("7-1-") && name.ends_with(".ring"), "{name}");
        let mut p = Producer::attach(w).unwrap();
        p.push(&encode(&Record::Destroy { id: 77 })).unwrap();
        // SAFETY: nobody truncates the file during the test.
        let r = unsafe { open(&path) }.unwrap();
        let mut c = Consumer::open(r).unwrap();
        assert_eq!(c.writer(), info);
        let mut out = Vec::new();
        c.pop_into(&mut out, 8).unwrap();
        assert_eq!(decode(&out[0]).unwrap(), Record::Destroy { id: 77 });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writers_with_the_same_pid_and_thread_get_separate_private_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("asynctrace-shm-reuse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let info = WriterInfo {
            pid: 9,
            thread: 0,
            node_version: "v20.0.0".into(),
            start_ns: 1,
        };
        let a = create(&dir, 16, &info).unwrap();
        let b = create(&dir, 16, &info).unwrap();
        assert_ne!(a.path(), b.path());
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(files.len(), 2, "no temporary file left behind");
        for f in files {
            assert_eq!(f.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        }
        // Released memory reads as zeros through the writer's mapping, while the file keeps
        // what was written.
        Producer::attach(&a)
            .unwrap()
            .push(&encode(&Record::Destroy { id: 5 }))
            .unwrap();
        a.release().unwrap();
        // SAFETY: the region is mapped, readable and at least a header long.
        assert_eq!(unsafe { *a.as_ptr() }, 0);
        // SAFETY: nobody truncates the file during the test.
        let mut c = Consumer::open(unsafe { open(a.path()) }.unwrap()).unwrap();
        let mut out = Vec::new();
        c.pop_into(&mut out, 8).unwrap();
        assert_eq!(decode(&out[0]).unwrap(), Record::Destroy { id: 5 });
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
