//! Ring files in shared memory: the only place that maps memory.
//!
//! A ring is a file in the session directory (on `/dev/shm` where it exists), named
//! `<pid>-<thread>.ring`. The writer creates it under a temporary name, writes the header, and
//! renames it into place, so a reader that lists the directory never sees half a header.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

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

/// Name of the ring file of a writer.
pub fn ring_file_name(pid: u32, thread: u32) -> String {
    format!("{pid}-{thread}{RING_SUFFIX}")
}

/// Creates, initialises and publishes a ring file in `dir`.
pub fn create(dir: &Path, capacity: u32, info: &WriterInfo) -> io::Result<SharedRing> {
    if !capacity.is_power_of_two() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "ring capacity must be a power of two",
        ));
    }
    let name = ring_file_name(info.pid, info.thread);
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(&tmp)?;
    file.set_len(header::ring_bytes(capacity) as u64)?;
    let map = MmapRaw::map_raw(&file)?;
    let ring = SharedRing {
        map,
        path: path.clone(),
    };
    init_header(&ring, capacity, info).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    std::fs::rename(&tmp, &path)?;
    Ok(ring)
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
        assert!(path.ends_with("7-1.ring"));
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
}
