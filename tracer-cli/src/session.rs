//! Where the agent is, and the private directory one recording shares with it.
//!
//! Two places on disk, with different lives:
//!
//! - the **agent files**: the JavaScript preload (`agent.js`) and the Node-API addon, both
//!   carried inside the binary and written on first use into a per-user directory that is never
//!   removed, under names derived from their contents. So concurrent recorders, and different
//!   versions of asynctrace, share identical files and never overwrite each other's; and a
//!   process that inherits `NODE_OPTIONS` and starts after its recording ended (a detached
//!   background job) still finds the file `--require` names, or node would not start at all;
//! - the **session** directory, one per recording, holding the rings. It is locked (`flock`) for
//!   as long as its recorder lives, and a sweep removes only sessions whose lock it can take:
//!   a pid in the name is no proof of death (another pid namespace sharing `/dev/shm` reuses it).
//!
//! Both are private to the user (directories 0700, files 0600): rings carry argv, URLs and
//! stack paths, and a file another user could replace would run code in every traced app.
//!
//! The addon is a Node-API module built against N-API version 4 (`napi4`), whose ABI Node keeps
//! stable across releases: one build loads in every Node from 20 to 26, and it takes no symbol
//! from a particular Node (they are resolved in the process that loads it).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use rustix::fs::FlockOperation;

/// The JavaScript preload, as `build.rs` copied it from `tracer-agent/js/agent.js`.
const AGENT_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/agent.js"));

/// The native addon, built by `build.rs` (`cargo build -p tracer-agent`) and embedded.
const ADDON: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libtracer_agent.so"));

/// Hash of [`ADDON`], computed at build time: part of its file name.
const ADDON_HASH: &str = env!("ASYNCTRACE_ADDON_HASH");

/// Names an addon to load instead of the embedded one (an addon under development).
pub const ADDON_ENV: &str = "ASYNCTRACE_ADDON";

/// Overrides where session directories are created (default: `/dev/shm`, else the temporary
/// directory).
pub const SESSION_BASE_ENV: &str = "ASYNCTRACE_SESSION_BASE";

/// Below this much free space, `/dev/shm` cannot hold even a small ring: the session goes to the
/// temporary directory instead.
const MIN_FREE_SHM: u64 = 1 << 20;

/// The native addon for the agent: `$ASYNCTRACE_ADDON` when set, else the embedded one,
/// written once into the per-user directory (or, where that file system forbids running code,
/// into the per-user cache directory).
pub fn locate_addon() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(ADDON_ENV) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("{ADDON_ENV} points to {}, which is not a file", p.display());
    }
    let name = format!("libtracer_agent-{}-{ADDON_HASH}.so", env!("CARGO_PKG_VERSION"));
    let mut first_error = None;
    for dir in addon_dirs() {
        match dir.and_then(|d| write_agent_file(&d, &name, ADDON)) {
            Ok(p) => {
                prune_addons(&p);
                return Ok(p);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error
        .unwrap_or_else(|| anyhow::anyhow!("no private directory on a file system that allows running code"))
        .context(format!(
            "cannot write the agent addon; set TMPDIR to a directory where programs may run, \
             or {ADDON_ENV} to an addon file"
        )))
}

/// Where the addon may be written, in order, each made only when the one before failed: the
/// per-user temporary directory, then the per-user cache (for a temporary directory on a file
/// system mounted `noexec`, from which node could not load the addon, or one that is full).
fn addon_dirs() -> impl Iterator<Item = anyhow::Result<PathBuf>> {
    let exec_allowed = |d: PathBuf| {
        if noexec(&d) {
            bail!("{} is on a file system mounted noexec", d.display());
        }
        Ok(d)
    };
    let tmp = std::iter::once_with(move || private_dir().and_then(exec_allowed));
    let cache = std::iter::once_with(move || {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|c| Path::new(c).is_absolute())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")));
        base.map(|b| private_dir_at(&b.join("asynctrace")).and_then(exec_allowed))
    })
    .flatten();
    tmp.chain(cache)
}

/// How long an addon of another build stays after its last use. Every build of asynctrace
/// writes its own (a few hundred KiB), so without this they would pile up; a process started
/// after its recording ended does not need one (it runs untraced without loading it).
const ADDON_KEEP: Duration = Duration::from_secs(30 * 24 * 3600);

/// Marks `ours` as just used and removes addons of other builds unused for [`ADDON_KEEP`].
fn prune_addons(ours: &Path) {
    let _ = File::options()
        .write(true)
        .open(ours)
        .and_then(|f| f.set_modified(SystemTime::now()));
    let Some(dir) = ours.parent() else { return };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > ADDON_KEEP);
        if old && name.starts_with("libtracer_agent-") && name.ends_with(".so") && entry.path() != ours {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn noexec(dir: &Path) -> bool {
    rustix::fs::statvfs(dir).is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::NOEXEC))
}

/// A private directory for one recording: one ring file per thread. Locked while this value
/// lives, removed when dropped (ring files would otherwise outlive us in /dev/shm).
pub struct Session {
    dir: PathBuf,
    agent_js: PathBuf,
    /// The open directory, holding the lock that tells sweeps this session is alive.
    _lock: File,
}

impl Session {
    /// Creates the directory on `/dev/shm` when it exists and has room (rings are memory
    /// there), else in the temporary directory.
    pub fn create() -> anyhow::Result<Self> {
        let bases: Vec<PathBuf> = match std::env::var_os(SESSION_BASE_ENV) {
            Some(b) => vec![PathBuf::from(b)],
            None => {
                let shm = Path::new("/dev/shm");
                let mut v = Vec::new();
                if shm.is_dir() && !matches!(free_bytes(shm), Some(f) if f < MIN_FREE_SHM) {
                    v.push(shm.to_owned());
                }
                v.push(std::env::temp_dir());
                v
            }
        };
        let mut first_error = None;
        for base in &bases {
            sweep_stale(base);
            match create_locked_dir(base) {
                Ok((dir, lock)) => {
                    let agent_js = match write_preload() {
                        Ok(p) => p,
                        // No private place for it: fall back to the session itself (then a
                        // process started after the recording ends cannot start its preload).
                        Err(_) => {
                            let p = dir.join("agent.js");
                            write_private(&p, AGENT_JS.as_bytes())
                                .with_context(|| format!("cannot write the agent preload {}", p.display()))?;
                            p
                        }
                    };
                    return Ok(Self {
                        dir,
                        agent_js,
                        _lock: lock,
                    });
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| anyhow::anyhow!("no place for a session directory")))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The preload that `NODE_OPTIONS` requires.
    pub fn agent_js(&self) -> &Path {
        &self.agent_js
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_bytes(dir: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Makes `asynctrace-<pid>-<nonce>` in `base`, mode 0700, locked. It is created under a
/// hidden name and locked before it is renamed into place, so no sweep ever sees it unlocked.
fn create_locked_dir(base: &Path) -> anyhow::Result<(PathBuf, File)> {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!("asynctrace-{}-{nanos:x}", std::process::id());
    let tmp = base.join(format!(".{name}.new"));
    let dir = base.join(&name);
    DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .with_context(|| format!("cannot create session directory {}", tmp.display()))?;
    let lock = File::open(&tmp).with_context(|| format!("cannot open session directory {}", tmp.display()))?;
    rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive)
        .with_context(|| format!("cannot lock session directory {}", tmp.display()))?;
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        let _ = std::fs::remove_dir(&tmp);
        return Err(e).with_context(|| format!("cannot create session directory {}", dir.display()));
    }
    Ok((dir, lock))
}

/// Removes session directories whose recorder is gone (SIGKILL runs no clean-up), so their
/// rings stop holding memory. A recorder holds its session's lock for its whole life, and the
/// kernel drops the lock when it dies, whatever pid namespace it ran in.
fn sweep_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_session = name.strip_prefix("asynctrace-").is_some_and(|rest| {
            let mut parts = rest.split('-');
            matches!(
                (parts.next(), parts.next(), parts.next()),
                (Some(pid), Some(nonce), None)
                    if pid.parse::<u32>().is_ok() && u32::from_str_radix(nonce, 16).is_ok()
            )
        });
        // A half-made session of a recorder that died while creating it; young ones may be
        // about to be locked by a live recorder, so leave them a minute.
        let is_abandoned = name.starts_with(".asynctrace-")
            && name.ends_with(".new")
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(60));
        if !is_session && !is_abandoned {
            continue;
        }
        let path = entry.path();
        // An older asynctrace's session (its preload inside, no lock) can only be judged by the
        // pid in its name: removing it while its recorder runs would crash every node it starts.
        if is_session && path.join("agent.js").exists() && recorder_pid_alive(name) {
            continue;
        }
        let Ok(dir) = File::open(&path) else { continue };
        if rustix::fs::flock(&dir, FlockOperation::NonBlockingLockExclusive).is_ok() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Whether the pid in a session's name (`asynctrace-<pid>-<nonce>`) is running in our namespace.
fn recorder_pid_alive(name: &str) -> bool {
    name.strip_prefix("asynctrace-")
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<i32>().ok())
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
}

/// Writes the preload into the per-user directory under a name derived from its contents.
fn write_preload() -> anyhow::Result<PathBuf> {
    let dir = private_dir()?;
    let name = format!(
        "agent-{}-{}.js",
        env!("CARGO_PKG_VERSION"),
        env!("ASYNCTRACE_AGENT_JS_HASH")
    );
    write_agent_file(&dir, &name, AGENT_JS.as_bytes())
}

/// Writes `bytes` as `dir/name`, once, atomically (temporary file + rename), unless a private
/// file of ours with exactly these bytes is already there. The file is never removed: any
/// process that ever inherited a `NODE_OPTIONS` naming it can still start.
fn write_agent_file(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if let Ok(m) = std::fs::symlink_metadata(&path) {
        let ours = m.is_file() && m.uid() == rustix::process::geteuid().as_raw() && m.mode() & 0o077 == 0;
        if ours && m.len() == bytes.len() as u64 && std::fs::read(&path).is_ok_and(|b| b == bytes) {
            return Ok(path);
        }
    }
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".{name}-{}-{nanos:x}.tmp", std::process::id()));
    if let Err(e) = write_private(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", tmp.display()));
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// `<tmp>/asynctrace-preload-<uid>`, created 0700 if missing, and refused unless it is a real
/// directory owned by us that nobody else can write.
fn private_dir() -> anyhow::Result<PathBuf> {
    let uid = rustix::process::geteuid().as_raw();
    private_dir_at(&std::env::temp_dir().join(format!("asynctrace-preload-{uid}")))
}

/// `dir`, created 0700 (with its parents) if missing, and refused unless it is a real
/// directory owned by us that nobody else can write.
fn private_dir_at(dir: &Path) -> anyhow::Result<PathBuf> {
    let uid = rustix::process::geteuid().as_raw();
    match DirBuilder::new().mode(0o700).recursive(true).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
    let m = std::fs::symlink_metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if !m.is_dir() || m.uid() != uid {
        bail!("{} is not a directory of this user", dir.display());
    }
    if m.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", dir.display()))?;
    }
    Ok(dir.to_owned())
}

/// Creates `path` (which must not exist), readable and writable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Flags that turn on Node's permission model (Node 20 spells it `--experimental-permission`).
const PERMISSION_FLAGS: [&str; 2] = ["--permission", "--experimental-permission"];

/// `NODE_OPTIONS` with our preload added to whatever the user already had.
///
/// Where the user's own options turn on the permission model, reading the preload is allowed
/// too (Node 20 refuses to start otherwise). Only there: `--allow-fs-read` without the
/// permission flag is an error that stops node.
pub fn node_options(existing: Option<&std::ffi::OsStr>, agent_js: &Path) -> std::ffi::OsString {
    // NODE_OPTIONS splits on spaces unless quoted; escape what could end the quotes.
    let quoted = agent_js
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let mut v = std::ffi::OsString::new();
    let existing = existing.filter(|e| !e.is_empty());
    if let Some(e) = existing {
        v.push(e);
        v.push(" ");
    }
    v.push(format!("--require \"{quoted}\""));
    let permission = existing
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.split_whitespace().any(|w| PERMISSION_FLAGS.contains(&w)));
    if permission {
        v.push(format!(" --allow-fs-read=\"{quoted}\""));
    }
    v
}

/// The command's arguments (after the program), with reading the preload allowed when the
/// command is `node` with the permission model on its own command line. Other commands are
/// left alone: what they start gets the permission flag from elsewhere, or not at all.
pub fn command_args(command: &[std::ffi::OsString], agent_js: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = command.iter().skip(1).cloned().collect();
    let is_node = command
        .first()
        .and_then(|p| Path::new(p).file_name())
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("node"));
    let permission = args
        .iter()
        .map_while(|a| a.to_str().filter(|a| a.starts_with('-')))
        .any(|a| PERMISSION_FLAGS.contains(&a));
    if is_node && permission {
        let mut allow = std::ffi::OsString::from("--allow-fs-read=");
        allow.push(agent_js);
        args.insert(0, allow);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn reading_the_preload_is_allowed_only_where_the_permission_model_is_on() {
        let agent = Path::new("/p/agent.js");
        assert_eq!(
            command_args(&os(&["node", "--permission", "app.js"]), agent),
            os(&["--allow-fs-read=/p/agent.js", "--permission", "app.js"])
        );
        assert_eq!(
            command_args(&os(&["/usr/bin/node", "--experimental-permission", "app.js"]), agent),
            os(&["--allow-fs-read=/p/agent.js", "--experimental-permission", "app.js"])
        );
        // Without the flag, --allow-fs-read would stop node; the app's own argv is not node's.
        assert_eq!(command_args(&os(&["node", "app.js"]), agent), os(&["app.js"]));
        assert_eq!(
            command_args(&os(&["node", "app.js", "--permission"]), agent),
            os(&["app.js", "--permission"])
        );
        assert_eq!(
            command_args(&os(&["npm", "--permission"]), agent),
            os(&["--permission"])
        );
        let plain = node_options(Some("--max-old-space-size=100".as_ref()), agent);
        assert_eq!(plain, "--max-old-space-size=100 --require \"/p/agent.js\"");
        let perm = node_options(Some("--permission --allow-fs-read=/app".as_ref()), agent);
        assert_eq!(
            perm,
            "--permission --allow-fs-read=/app --require \"/p/agent.js\" --allow-fs-read=\"/p/agent.js\""
        );
    }

    /// A fresh private directory under the temporary directory, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let p = std::env::temp_dir().join(format!("asynctrace-unit-{tag}-{}-{nanos}", std::process::id()));
            DirBuilder::new().mode(0o700).create(&p).unwrap();
            Self(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn inode_and_mode(p: &Path) -> (u64, u32) {
        let m = std::fs::metadata(p).unwrap();
        (m.ino(), m.mode() & 0o777)
    }

    #[test]
    fn an_agent_file_is_reused_only_when_private_and_identical() {
        let dir = TempDir::new("agent-file");
        let path = write_agent_file(&dir.0, "a.so", b"addon").unwrap();
        let (ino, mode) = inode_and_mode(&path);
        assert_eq!(mode, 0o600);
        // Same bytes, private: the very file is reused.
        assert_eq!(write_agent_file(&dir.0, "a.so", b"addon").unwrap(), path);
        assert_eq!(inode_and_mode(&path).0, ino);
        // Same bytes, but others may write it: replaced by a private copy.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        write_agent_file(&dir.0, "a.so", b"addon").unwrap();
        let (ino2, mode2) = inode_and_mode(&path);
        assert!(ino2 != ino && mode2 == 0o600, "replaced: {mode2:o}");
        // Other bytes under the name (a damaged write): replaced.
        std::fs::write(&path, b"addoX").unwrap();
        write_agent_file(&dir.0, "a.so", b"addon").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"addon");
        // A symlink under the name is not followed: replaced by a file.
        let elsewhere = dir.0.join("elsewhere");
        std::fs::write(&elsewhere, b"addon").unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        write_agent_file(&dir.0, "a.so", b"addon").unwrap();
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn addons_of_other_builds_are_pruned_after_a_month_unused() {
        let dir = TempDir::new("prune");
        let ours = write_agent_file(&dir.0, "libtracer_agent-1-aa.so", b"ours").unwrap();
        let old = dir.0.join("libtracer_agent-0-bb.so");
        let recent = dir.0.join("libtracer_agent-0-cc.so");
        let preload = dir.0.join("agent-0-dd.js");
        let long_ago = SystemTime::now() - ADDON_KEEP - Duration::from_secs(3600);
        for p in [&old, &recent, &preload] {
            std::fs::write(p, b"x").unwrap();
        }
        for p in [&old, &preload, &ours] {
            File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
        prune_addons(&ours);
        assert!(!old.exists(), "an addon unused for longer than ADDON_KEEP goes");
        assert!(recent.exists(), "a recently used addon stays");
        assert!(preload.exists(), "preloads are never removed");
        assert!(ours.exists(), "ours stays, and is marked as used now");
        let age = std::fs::metadata(&ours)
            .unwrap()
            .modified()
            .unwrap()
            .elapsed()
            .unwrap_or_default();
        assert!(age < ADDON_KEEP);
    }
}
