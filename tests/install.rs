//! Installing asynctrace the ways a user does, and recording with what was installed:
//! the npm tarballs (offline, into an empty folder, then `npx asynctrace`), `cargo install`,
//! and the one binary copied alone. Each install must record exactly what the reference hook
//! counts: the embedded agent is really loaded, not merely present.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::*;

/// `cargo install` below builds in the workspace's target directory: when the source changed
/// since the last build (a new commit changes `--version`), it relinks the very binary the
/// other tests run. Those hold this lock for reading, the install for writing.
static WORKSPACE_BINARY: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn binary_in_use() -> std::sync::RwLockReadGuard<'static, ()> {
    WORKSPACE_BINARY.read().unwrap_or_else(|e| e.into_inner())
}

/// `asynctrace info --format json` with the given binary.
fn info_with(bin: &Path, trace: &Path) -> serde_json::Value {
    let out = Command::new(bin)
        .args(["info", "--format", "json"])
        .arg(trace)
        .output()
        .unwrap();
    assert!(out.status.success(), "info failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The recorded inits per type equal the reference hook's for `fixture_name`.
fn assert_counts_match(info: &serde_json::Value, fixture_name: &str) {
    assert_eq!(info["dropped"].as_u64(), Some(0), "{info}");
    let expected = count_hook(fixture_name, &[]);
    assert_eq!(counts(&info["types"]), expected.types, "inits per type");
    // Promise destroys follow the garbage collector, which runs when it likes.
    let mut events = counts(&info["events"]);
    let mut want = expected.events;
    let destroys = events.remove("destroy").unwrap_or(0);
    want.remove("destroy");
    assert_eq!(events, want, "events per hook, destroy aside");
    assert!(destroys > 0 && destroys <= events["init"], "{destroys} destroys");
}

/// npm, isolated from the user's configuration and cache, and never reaching the network.
fn npm(scratch: &Scratch, dir: &Path) -> Command {
    npm_tool("npm", scratch, dir)
}

/// `npx`, set up as [`npm`].
fn npx(scratch: &Scratch, dir: &Path) -> Command {
    npm_tool("npx", scratch, dir)
}

fn npm_tool(program: &str, scratch: &Scratch, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    let rc = scratch.path("npmrc");
    if !rc.exists() {
        std::fs::write(&rc, "").unwrap();
    }
    cmd.current_dir(dir)
        .env("npm_config_userconfig", &rc)
        .env("npm_config_cache", scratch.path("npm-cache"))
        .env("npm_config_offline", "true")
        .env("npm_config_audit", "false")
        .env("npm_config_fund", "false")
        .env("npm_config_update_notifier", "false");
    cmd
}

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    out
}

/// Packs the tarballs from the binary under test; returns their paths.
fn pack(scratch: &Scratch) -> Vec<PathBuf> {
    let out = run(
        Command::new("bash")
            .arg(root().join("scripts/pack-npm.sh"))
            .arg("--binary")
            .arg(asynctrace())
            .arg("--out")
            .arg(scratch.path("tarballs")),
        "scripts/pack-npm.sh",
    );
    let tarballs: Vec<PathBuf> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(PathBuf::from)
        .collect();
    assert_eq!(tarballs.len(), 2, "the launcher and one platform package: {tarballs:?}");
    tarballs
}

/// An empty project with the tarballs installed offline, as `npm install ./asynctrace-*.tgz`.
fn npm_project(scratch: &Scratch) -> PathBuf {
    let tarballs = pack(scratch);
    let app = scratch.path("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("package.json"), r#"{"name":"app","private":true}"#).unwrap();
    run(
        npm(scratch, &app).arg("install").args(&tarballs),
        "npm install (offline)",
    );
    app
}

#[test]
fn npm_tarballs_install_offline_and_record_through_npx() {
    let _binary = binary_in_use();
    let scratch = Scratch::new("npm-install");
    let app = npm_project(&scratch);
    // The platform package carries the one binary and nothing beside it.
    let bin_dir = app.join("node_modules/@asynctrace/linux-x64-gnu/bin");
    let files: Vec<_> = std::fs::read_dir(&bin_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, ["asynctrace"], "only the binary in {}", bin_dir.display());

    std::fs::copy(fixture("http-slow.js"), app.join("server.js")).unwrap();
    let out = run(
        npx(&scratch, &app)
            .args(["asynctrace", "record", "-o", "t.bin", "--"])
            .arg(node())
            .arg("server.js"),
        "npx asynctrace record",
    );
    assert!(stderr(&out).contains("dropped 0"), "{}", stderr(&out));
    let trace = app.join("t.bin");
    assert_counts_match(&info_with(&asynctrace(), &trace), "http-slow.js");

    // The reports run through the launcher too, and give the fixture's answer.
    let out = run(
        npx(&scratch, &app).args(["asynctrace", "requests", "--format", "json", "t.bin"]),
        "npx asynctrace requests",
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = report.to_string();
    assert!(text.contains("/slow"), "the slow route is named: {text}");

    let out = run(
        npx(&scratch, &app).args(["asynctrace", "--version"]),
        "npx asynctrace --version",
    );
    let version = String::from_utf8(out.stdout).unwrap();
    assert!(
        version.starts_with(&format!("asynctrace {} (", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
}

#[test]
fn npm_global_install_puts_asynctrace_on_the_path() {
    let _binary = binary_in_use();
    let scratch = Scratch::new("npm-global");
    let tarballs = pack(&scratch);
    let prefix = scratch.path("prefix");
    run(
        npm(&scratch, &scratch.0)
            .args(["install", "--global", "--prefix"])
            .arg(&prefix)
            .args(&tarballs),
        "npm install --global (offline)",
    );
    let work = scratch.path("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::copy(fixture("timers.js"), work.join("app.js")).unwrap();
    let bin = prefix.join("bin/asynctrace");
    run(
        Command::new(&bin)
            .current_dir(&work)
            .args(["record", "-o", "t.bin", "--"])
            .arg(node())
            .arg("app.js"),
        "asynctrace record (npm -g)",
    );
    assert_counts_match(&info_with(&bin, &work.join("t.bin")), "timers.js");
}

#[test]
fn the_npm_launcher_passes_sigterm_to_the_app_and_its_status_back() {
    let _binary = binary_in_use();
    let scratch = Scratch::new("npm-signal");
    let app = npm_project(&scratch);
    let launcher = app.join("node_modules/.bin/asynctrace");
    let mut child = Command::new(&launcher)
        .current_dir(&app)
        .args(["record", "-o", "t.bin", "--"])
        .arg(node())
        .arg("-e")
        .arg(
            "process.on('SIGTERM', () => { setTimeout(() => process.exit(7), 10); });\
             setInterval(() => {}, 1000); console.log('ready');",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    support::wait_ready(&mut child);
    let pid = kill(child.id(), "TERM");
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "the app's own exit code, through asynctrace and the launcher (kill {pid}): {}",
        stderr(&out)
    );
    let info = info_with(&asynctrace(), &app.join("t.bin"));
    assert_eq!(info["processes"][0]["exit"]["code"].as_u64(), Some(7), "{info}");
}

/// `kill -<sig> <pid>`.
fn kill(pid: u32, sig: &str) -> u32 {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
    pid
}

/// A command with a bare environment: `PATH` holds `bin_dir` and node's directory only, and
/// `HOME` and `TMPDIR` are fresh folders in the scratch directory.
fn bare(scratch: &Scratch, program: &Path, bin_dir: &Path) -> Command {
    let node_dir = which(&node()).parent().unwrap().to_owned();
    let path = std::env::join_paths([bin_dir.to_owned(), node_dir]).unwrap();
    for d in ["home", "tmp"] {
        std::fs::create_dir_all(scratch.path(d)).unwrap();
    }
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", path)
        .env("HOME", scratch.path("home"))
        .env("TMPDIR", scratch.path("tmp"));
    cmd
}

/// The full path of a program named on PATH (or already a path).
fn which(program: &Path) -> PathBuf {
    if program.components().count() > 1 {
        return program.to_owned();
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{} is not on PATH", program.display()))
}

/// Records `timers.js` (copied out of the checkout) with `bin`, in a bare environment.
fn record_alone(scratch: &Scratch, bin: &Path) -> Output {
    let work = scratch.path("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::copy(fixture("timers.js"), work.join("app.js")).unwrap();
    let out = bare(scratch, bin, bin.parent().unwrap())
        .current_dir(&work)
        .args(["record", "-o", "t.bin", "--", "node", "app.js"])
        .output()
        .unwrap();
    assert!(out.status.success(), "record failed: {}", stderr(&out));
    assert_counts_match(&info_with(bin, &work.join("t.bin")), "timers.js");
    out
}

/// The agent files a recording wrote: private, named for their contents.
fn assert_private_agent_files(scratch: &Scratch) {
    let dirs: Vec<PathBuf> = std::fs::read_dir(scratch.path("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("asynctrace-preload-")
        })
        .collect();
    assert_eq!(dirs.len(), 1, "one per-user directory: {dirs:?}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dirs[0]), 0o700, "{}", dirs[0].display());
    let mut names: Vec<String> = Vec::new();
    for e in std::fs::read_dir(&dirs[0]).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
        names.push(p.file_name().unwrap().to_string_lossy().into_owned());
    }
    names.sort();
    assert_eq!(
        names.len(),
        2,
        "the preload and the addon, no temporary left: {names:?}"
    );
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        names[0].starts_with(&format!("agent-{version}-")) && names[0].ends_with(".js"),
        "{names:?}"
    );
    assert!(
        names[1].starts_with(&format!("libtracer_agent-{version}-")) && names[1].ends_with(".so"),
        "{names:?}"
    );
}

#[test]
fn the_binary_copied_alone_records_with_its_embedded_agent() {
    let _binary = binary_in_use();
    let scratch = Scratch::new("alone");
    let dir = scratch.path("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("asynctrace");
    std::fs::copy(asynctrace(), &bin).unwrap();
    record_alone(&scratch, &bin);
    assert_private_agent_files(&scratch);
    // A second recording reuses the same files rather than writing new ones.
    std::fs::remove_dir_all(scratch.path("work")).unwrap();
    record_alone(&scratch, &bin);
    assert_private_agent_files(&scratch);
}

#[test]
fn concurrent_recorders_share_the_agent_files_without_clashing() {
    let _binary = binary_in_use();
    let scratch = Scratch::new("concurrent");
    let work = scratch.path("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::copy(fixture("timers.js"), work.join("app.js")).unwrap();
    let bin = asynctrace();
    // Fresh TMPDIR: all of them find no agent files and write them at the same time.
    let children: Vec<_> = (0..4)
        .map(|i| {
            bare(&scratch, &bin, bin.parent().unwrap())
                .current_dir(&work)
                .args(["record", "-q", "-o", &format!("t{i}.bin"), "--", "node", "app.js"])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for i in 0..4 {
        assert_counts_match(&info_with(&bin, &work.join(format!("t{i}.bin"))), "timers.js");
    }
    assert_private_agent_files(&scratch);
}

#[test]
fn a_tampered_agent_file_is_replaced_not_loaded() {
    let _binary = binary_in_use();
    let scratch = Scratch::new("tampered");
    let dir = scratch.path("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("asynctrace");
    std::fs::copy(asynctrace(), &bin).unwrap();
    record_alone(&scratch, &bin);
    // Someone (or a full disk) left wrong bytes under the addon's name.
    let preload_dir = std::fs::read_dir(scratch.path("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("asynctrace-preload-")
        })
        .unwrap();
    let addon = std::fs::read_dir(&preload_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "so"))
        .unwrap();
    std::fs::write(&addon, b"not an addon").unwrap();
    std::fs::remove_dir_all(scratch.path("work")).unwrap();
    let out = record_alone(&scratch, &bin);
    assert!(!stderr(&out).contains("untraced"), "{}", stderr(&out));
    assert!(
        std::fs::metadata(&addon).unwrap().len() > 1000,
        "the addon was written again"
    );
    assert_private_agent_files(&scratch);
}

#[test]
fn cargo_install_gives_a_binary_that_records_with_only_itself_on_the_path() {
    let _rebuilding = WORKSPACE_BINARY.write().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("cargo-install");
    let install_root = scratch.path("root");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // The workspace's own target directory: the release build already there is reused, so
    // this installs in seconds instead of building everything again.
    run(
        Command::new(cargo)
            .current_dir(root())
            .args(["install", "--offline", "--locked", "--path", "tracer-cli", "--root"])
            .arg(&install_root)
            .env("CARGO_TARGET_DIR", root().join("target"))
            .env("CARGO_NET_OFFLINE", "true"),
        "cargo install --path tracer-cli",
    );
    let bin_dir = install_root.join("bin");
    let files: Vec<_> = std::fs::read_dir(&bin_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, ["asynctrace"], "cargo installs the one binary");
    let bin = bin_dir.join("asynctrace");
    record_alone(&scratch, &bin);
    assert_private_agent_files(&scratch);
}

#[test]
fn version_names_the_release_commit_and_trace_format() {
    let _binary = binary_in_use();
    let out = Command::new(asynctrace()).arg("--version").output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let format = tracer_core::trace::TRACE_FORMAT_VERSION;
    let prefix = format!("asynctrace {} (commit ", env!("CARGO_PKG_VERSION"));
    let suffix = format!(", trace format {format})\n");
    assert!(line.starts_with(&prefix) && line.ends_with(&suffix), "{line:?}");
    let commit = &line[prefix.len()..line.len() - suffix.len()];
    let in_checkout = Command::new("git")
        .current_dir(root())
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8(o.stdout).unwrap().trim().to_owned());
    match in_checkout {
        Some(head) => assert_eq!(commit, head, "the commit the binary was built from"),
        None => assert_eq!(commit, "unknown"),
    }

    // A trace names the same release and commit as its writer.
    let scratch = Scratch::new("writer-version");
    let trace = scratch.path("t.bin");
    let out = record(&trace, &[], "timers.js", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reader = tracer_core::trace::open(&trace).unwrap();
    assert_eq!(
        reader.meta().writer_version,
        format!("{} (commit {commit})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_trace_of_a_newer_format_is_refused_in_one_clear_line() {
    let _binary = binary_in_use();
    let scratch = Scratch::new("newer-format");
    let trace = scratch.path("t.bin");
    let out = record(&trace, &[], "timers.js", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut bytes = std::fs::read(&trace).unwrap();
    let newer = tracer_core::trace::TRACE_FORMAT_VERSION + 1;
    bytes[8..12].copy_from_slice(&newer.to_le_bytes());
    std::fs::write(&trace, &bytes).unwrap();
    let out = Command::new(asynctrace()).arg("info").arg(&trace).output().unwrap();
    assert_clean_failure(&out, &format!("trace format version {newer} is newer"));
    assert!(stderr(&out).contains("upgrade asynctrace"), "{}", stderr(&out));
}

#[test]
fn the_addon_is_written_to_the_cache_when_the_temporary_directory_is_noexec() {
    let _binary = binary_in_use();
    // A private mount namespace mounts a noexec tmpfs without privileges, where allowed.
    if !Command::new("unshare")
        .args(["-rm", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("skipped: `unshare -rm` (user and mount namespaces) is not available here");
        return;
    }
    let scratch = Scratch::new("noexec");
    let work = scratch.path("work");
    let noexec_tmp = scratch.path("noexec-tmp");
    for d in [&work, &noexec_tmp] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::copy(fixture("timers.js"), work.join("app.js")).unwrap();
    let bin = asynctrace();
    let out = bare(&scratch, &which(Path::new("unshare")), bin.parent().unwrap())
        .current_dir(&work)
        // sh and mount come from the system's PATH.
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("TMPDIR", &noexec_tmp)
        .args([
            "-rm",
            "sh",
            "-c",
            "mount -t tmpfs -o noexec none \"$TMPDIR\" && exec \"$@\"",
            "sh",
        ])
        .arg(&bin)
        .args(["record", "-o", "t.bin", "--"])
        .arg(which(&node()))
        .arg("app.js")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("untraced"), "{}", stderr(&out));
    assert_counts_match(&info_with(&bin, &work.join("t.bin")), "timers.js");
    let cache = scratch.path("home/.cache/asynctrace");
    let names: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.len() == 1 && names[0].starts_with("libtracer_agent-"),
        "the addon, in {}: {names:?}",
        cache.display()
    );
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}
