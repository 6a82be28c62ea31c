//! Where the agent is, and the private directory one recording shares with it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The JavaScript preload, carried inside the binary and written into each session, so that
/// the only file that must sit beside `asynctrace` is the native addon.
const AGENT_JS: &str = include_str!("../../tracer-agent/js/agent.js");

/// File name of the addon as cargo builds it.
pub const ADDON_FILE: &str = "libtracer_agent.so";

/// Finds the native addon: `$ASYNCTRACE_ADDON`, else beside the executable (where
/// `cargo build` puts both), else in `../lib/asynctrace/` (an installed layout).
pub fn locate_addon() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("ASYNCTRACE_ADDON") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("ASYNCTRACE_ADDON points to {}, which is not a file", p.display());
    }
    let exe = std::env::current_exe().context("cannot find the asynctrace executable's path")?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let candidates = [dir.join(ADDON_FILE), dir.join("../lib/asynctrace").join(ADDON_FILE)];
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    bail!(
        "cannot find the agent addon {ADDON_FILE} beside {}; build the whole workspace with \
         `cargo build --release` (it builds the addon too), or set ASYNCTRACE_ADDON to its path",
        exe.display()
    )
}

/// A private directory for one recording: the agent preload and one ring file per thread.
/// Removed when dropped (ring files would otherwise outlive us in /dev/shm).
pub struct Session {
    dir: PathBuf,
}

impl Session {
    /// Creates the directory on `/dev/shm` when it exists (rings are memory there), else in
    /// the temporary directory.
    pub fn create() -> anyhow::Result<Self> {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        sweep_stale(&base);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = base.join(format!("asynctrace-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir(&dir).with_context(|| format!("cannot create session directory {}", dir.display()))?;
        let session = Self { dir };
        std::fs::write(session.agent_js(), AGENT_JS).context("cannot write the agent preload")?;
        Ok(session)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn agent_js(&self) -> PathBuf {
        self.dir.join("agent.js")
    }
}

/// Removes session directories left by an `asynctrace` that was killed (SIGKILL runs no
/// clean-up), so their rings stop holding memory. A directory is stale when the pid in its
/// name (`asynctrace-<pid>-<nonce>`) is no longer running.
fn sweep_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("asynctrace-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let alive = rustix::process::Pid::from_raw(pid).is_some_and(|p| rustix::process::test_kill_process(p).is_ok());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `NODE_OPTIONS` with our preload added to whatever the user already had.
pub fn node_options(existing: Option<&std::ffi::OsStr>, agent_js: &Path) -> std::ffi::OsString {
    // NODE_OPTIONS splits on spaces unless quoted; escape what could end the quotes.
    let quoted = agent_js
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let mut v = std::ffi::OsString::new();
    if let Some(e) = existing.filter(|e| !e.is_empty()) {
        v.push(e);
        v.push(" ");
    }
    v.push(format!("--require \"{quoted}\""));
    v
}
