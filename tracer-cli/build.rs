//! Puts the agent inside the `asynctrace` binary, and records where the binary came from.
//!
//! The agent is two files that every traced Node process loads: the JavaScript preload
//! (`tracer-agent/js/agent.js`) and the Node-API addon (`libtracer_agent.so`, the `tracer-agent`
//! crate). Both are embedded (`include_bytes!` of copies in `OUT_DIR`), so the one binary is a
//! complete install: `cargo install --path tracer-cli` and a copied binary can record.
//!
//! Cargo cannot hand one crate's `cdylib` to another crate on stable (artifact dependencies are
//! unstable), so this script builds the addon with a nested `cargo build -p tracer-agent` of the
//! same workspace, lock file and profile, in a target directory of its own beside the outer
//! one's build output (the outer build holds the lock of its own directory for as long as this
//! script runs). The nested build is incremental: when nothing changed it costs a fraction of
//! a second.
//!
//! `ASYNCTRACE_EMBED_ADDON=<path>` embeds an addon built elsewhere instead (a cross build), and
//! nothing is built. The preload is always read from `tracer-agent/js/`: this script needs the
//! repository's layout, so `tracer-cli` cannot be built from a crate packaged alone.
//!
//! Also sets `ASYNCTRACE_GIT_COMMIT` (the commit of the checkout, or `unknown` outside one)
//! for `asynctrace --version`.

use std::collections::hash_map::DefaultHasher;
use std::env;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::process::Command;

const ADDON_FILE: &str = "libtracer_agent.so";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("tracer-cli sits in the workspace")
        .to_owned();
    println!("cargo:rerun-if-changed=build.rs");

    let agent_js = workspace.join("tracer-agent/js/agent.js");
    assert!(
        agent_js.is_file(),
        "the agent's source ({}) is not here; asynctrace builds from its repository, where \
         tracer-agent sits beside tracer-cli",
        agent_js.display()
    );
    println!("cargo:rerun-if-changed={}", agent_js.display());
    // Only agent.js is embedded and written out: a module it required from beside itself
    // would be missing at run time.
    let js_dir = workspace.join("tracer-agent/js");
    println!("cargo:rerun-if-changed={}", js_dir.display());
    for entry in std::fs::read_dir(&js_dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        if name != "agent.js" {
            println!(
                "cargo:warning={} is not embedded: the preload must be the one file agent.js",
                entry.path().display()
            );
        }
    }
    embed(&agent_js, &out_dir.join("agent.js"), "ASYNCTRACE_AGENT_JS_HASH");

    println!("cargo:rerun-if-env-changed=ASYNCTRACE_EMBED_ADDON");
    let addon = match env::var_os("ASYNCTRACE_EMBED_ADDON").filter(|p| !p.is_empty()) {
        Some(p) => {
            let p = PathBuf::from(p);
            println!("cargo:rerun-if-changed={}", p.display());
            p
        }
        None => build_addon(&workspace, &out_dir),
    };
    embed(&addon, &out_dir.join(ADDON_FILE), "ASYNCTRACE_ADDON_HASH");

    println!("cargo:rustc-env=ASYNCTRACE_GIT_COMMIT={}", git_commit(&workspace));
}

/// Copies `from` to `to` and exports a hash of its bytes as `env_name`, for names on disk
/// that change whenever the contents do.
fn embed(from: &Path, to: &Path, env_name: &str) {
    let bytes = std::fs::read(from).unwrap_or_else(|e| panic!("cannot read {}: {e}", from.display()));
    let mut h = DefaultHasher::new();
    h.write(&bytes);
    println!("cargo:rustc-env={env_name}={:016x}", h.finish());
    // Written only when different, so an unchanged agent does not relink the binary.
    if std::fs::read(to).ok().as_deref() != Some(&bytes[..]) {
        std::fs::write(to, &bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", to.display()));
    }
}

/// Builds `tracer-agent` with a nested cargo and returns the path of the addon.
fn build_addon(workspace: &Path, out_dir: &Path) -> PathBuf {
    let agent = workspace.join("tracer-agent");
    if !agent.join("Cargo.toml").is_file() {
        panic!(
            "the agent's source ({}) is not here to build its addon; build from the asynctrace \
             repository",
            agent.display()
        );
    }
    for p in [
        agent.join("Cargo.toml"),
        agent.join("build.rs"),
        agent.join("src"),
        workspace.join("tracer-core/Cargo.toml"),
        workspace.join("tracer-core/src"),
        workspace.join("Cargo.toml"),
        workspace.join("Cargo.lock"),
    ] {
        println!("cargo:rerun-if-changed={}", p.display());
    }

    // OUT_DIR is <target>/[<triple>/]<profile>/build/tracer-cli-<hash>/out: the nested build
    // goes to <that profile dir>/agent-build, shared by every build of this profile (check,
    // build, clippy) rather than redone per OUT_DIR.
    let target_dir = out_dir
        .ancestors()
        .nth(3)
        .filter(|_| out_dir.ancestors().nth(2).and_then(Path::file_name) == Some("build".as_ref()))
        .map(|profile_dir| profile_dir.join("agent-build"))
        .unwrap_or_else(|| out_dir.join("agent-build"));

    let release = env::var("PROFILE").as_deref() == Ok("release");
    let target = env::var("TARGET").expect("TARGET");
    let host = env::var("HOST").expect("HOST");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--quiet", "-p", "tracer-agent", "--lib"])
        .arg("--target-dir")
        .arg(&target_dir);
    if release {
        cmd.arg("--release");
    }
    if target != host {
        cmd.args(["--target", &target]);
    }
    // Variables the outer cargo set for this script that would mislead the nested one: a
    // clippy or check wrapper would make it skip code generation, and a target directory
    // set in the environment would send it into the outer build's locked directory.
    // The addon's line tables would triple its size, in the binary and on disk where it is
    // written, for panics that it catches and never prints.
    cmd.env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    for var in [
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the agent addon: {e}"));
    if !out.status.success() {
        panic!(
            "building the agent addon (cargo build -p tracer-agent, in {}) failed:\n{}",
            target_dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut built = target_dir;
    if target != host {
        built.push(&target);
    }
    built.push(if release { "release" } else { "debug" });
    built.push(ADDON_FILE);
    assert!(built.is_file(), "the agent build did not produce {}", built.display());
    built
}

/// The checkout's commit, or `unknown` when this is not a git checkout (a packaged crate).
fn git_commit(workspace: &Path) -> String {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").current_dir(workspace).args(args).output().ok()?;
        let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (out.status.success() && !s.is_empty()).then_some(s)
    };
    let Some(commit) = git(&["rev-parse", "HEAD"]) else {
        return "unknown".to_owned();
    };
    // Rerun when HEAD moves: a commit or checkout changes HEAD or the branch it names.
    // (Only files that exist: cargo reruns a script on every build for a missing one.)
    let mut watch = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watch.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watch {
        if let Some(p) = git(&["rev-parse", "--git-path", &name]) {
            let p = workspace.join(p);
            if p.is_file() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    commit
}
