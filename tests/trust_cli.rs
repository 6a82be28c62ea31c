//! The command line tells the truth and ends cleanly: closed pipes, pipes and FIFOs as input,
//! full disks, failed starts, killed recorders, file modes, and the small lies of error lines.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Every report, with the arguments that make it write to stdout.
const REPORTS: &[&[&str]] = &[
    &["info"],
    &["info", "--format", "json"],
    &["tree"],
    &["leaks"],
    &["slow"],
    &["requests"],
    &["flame"],
    &["flame", "--folded"],
    &["export", "--format", "folded", "-o", "-"],
    &["export", "--format", "chrome", "-o", "-"],
    &["export", "--format", "speedscope"],
];

fn report(args: &[&str], trace: &Path) -> Command {
    let mut cmd = Command::new(asynctrace());
    cmd.args(args).arg(trace);
    cmd
}

/// The write end of a pipe whose read end is already closed: what a `| head -1` that has
/// finished leaves behind. Made with a child that holds the read end and exits.
fn closed_pipe() -> Stdio {
    let mut holder = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
    let write_end = holder.stdin.take().unwrap();
    holder.wait().unwrap();
    Stdio::from(write_end)
}

/// Waits for `child`, killing it and failing the test if it never ends. Not a timing
/// assertion: the bound is minutes, far above any run, and only tells a hang from an answer.
fn wait_or_fail(mut child: Child, what: &str) -> Output {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} never finished (it hangs)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `pid` waits in `open` for the other end of a FIFO, so that the test does not
/// depend on how fast the writer starts. Gives up quietly where the kernel hides `wchan`.
fn wait_until_blocked_in_open(pid: u32) {
    for _ in 0..500 {
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        if wchan == "wait_for_partner" {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(st.success(), "mkfifo {}", path.display());
}

fn no_panic(out: &Output) {
    let err = stderr(out);
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "no panic: {err}"
    );
}

// r13: a closed stdout or stderr ends a report quietly (status 0), as it does for rg.

#[test]
fn r13_every_report_ends_quietly_when_its_reader_closed_stdout() {
    let s = Scratch::new("closed-stdout");
    let (full, _) = full_and_truncated(&s);
    for args in REPORTS {
        let out = report(args, &full)
            .stdout(closed_pipe())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        no_panic(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?} ends quietly");
    }
}

#[test]
fn r13_every_report_ends_quietly_when_stderr_is_a_closed_pipe() {
    // A truncated trace makes every report warn on stderr, which is a closed pipe here.
    let s = Scratch::new("closed-stderr");
    let (_, cut) = full_and_truncated(&s);
    for args in REPORTS {
        let out = report(args, &cut)
            .stdout(Stdio::null())
            .stderr(closed_pipe())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?} with stderr closed");
        let out = report(args, &cut)
            .stdout(closed_pipe())
            .stderr(closed_pipe())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?} with stdout and stderr closed");
    }
}

#[test]
fn r13_dash_o_dash_writes_to_stdout() {
    let s = Scratch::new("dash-o");
    let (full, _) = full_and_truncated(&s);
    for args in [
        &["export", "--format", "folded", "-o", "-"][..],
        &["flame", "--folded", "-o", "-"][..],
    ] {
        let out = report(args, &full).current_dir(&s.0).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(!out.stdout.is_empty(), "{args:?} printed the stacks");
        assert!(!s.path("-").exists(), "{args:?} wrote no file named -");
    }
}

#[test]
fn r13_a_fifo_without_a_writer_is_refused_instead_of_waiting_forever() {
    let s = Scratch::new("fifo-nowriter");
    let fifo = s.path("trace.fifo");
    mkfifo(&fifo);
    // One command per way of opening a trace (reports, folded stacks, chrome export).
    let commands: [&[&str]; 4] = [
        &["info"],
        &["tree"],
        &["flame", "--folded"],
        &["export", "--format", "chrome", "-o", "-"],
    ];
    for args in commands {
        let child = report(args, &fifo)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = wait_or_fail(child, &format!("{args:?} on a FIFO without a writer"));
        assert_clean_failure(&out, "no program writing into it");
    }
}

#[test]
fn r13_a_fifo_with_a_writer_is_read_as_a_stream() {
    let s = Scratch::new("fifo-writer");
    let (full, _) = full_and_truncated(&s);
    let expected = info(&full);
    let fifo = s.path("trace.fifo");
    mkfifo(&fifo);
    // The writer opens first and waits in open() for a reader, as `cat t.bin > fifo &` does.
    let writer = Command::new("sh")
        .arg("-c")
        .arg("cat \"$0\" > \"$1\"")
        .arg(&full)
        .arg(&fifo)
        .spawn()
        .unwrap();
    wait_until_blocked_in_open(writer.id());
    let child = report(&["info", "--format", "json"], &fifo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_or_fail(child, "info on a FIFO with a writer");
    wait_or_fail(writer, "the FIFO's writer");
    assert!(out.status.success(), "{}", stderr(&out));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["events"], expected["events"]);
    assert_eq!(got["truncated"], false);
}

#[test]
fn r13_a_pipe_on_stdin_is_read_as_a_stream() {
    let s = Scratch::new("stdin-pipe");
    let (full, _) = full_and_truncated(&s);
    let expected = info(&full);
    let bytes = std::fs::read(&full).unwrap();
    let mut child = report(&["info", "--format", "json"], Path::new("-"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = wait_or_fail(child, "info on a pipe");
    feeder.join().unwrap().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["events"], expected["events"]);
}

#[test]
fn r13_record_to_a_fifo_without_a_reader_is_refused_before_the_app_runs() {
    let s = Scratch::new("record-fifo");
    let fifo = s.path("out.fifo");
    mkfifo(&fifo);
    let marker = s.path("ran");
    let child = record_node(&fifo)
        .arg("-e")
        .arg("require('fs').writeFileSync(process.argv[1], '')")
        .arg(&marker)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_or_fail(child, "record -o <fifo without a reader>");
    assert_clean_failure(&out, "no program reads");
    assert!(!marker.exists(), "the app did not run");
}

// r14: `record` exits with the app's status whatever happens to its stderr or its trace.

#[test]
fn r14_record_keeps_the_app_status_when_stderr_is_a_closed_pipe() {
    let s = Scratch::new("record-closed-stderr");
    let trace = s.path("t.bin");
    let out = record_node(&trace)
        .arg(fixture("exit-code.js"))
        .arg("3")
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(closed_pipe())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "the app's status, not a panic's 101");
    assert_eq!(info(&trace)["truncated"], false);
}

#[test]
fn r14_record_keeps_the_app_status_when_the_disk_fills() {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root (run the tests as root to check a full disk)");
        return;
    }
    let s = Scratch::new("full-disk");
    let disk = s.path("disk");
    std::fs::create_dir(&disk).unwrap();
    // A private mount namespace: the 1 MiB tmpfs disappears with the shell, so the partial
    // trace is summarised inside it. 60,000 iterations make ~2 MiB of trace.
    let script = r#"
        mount -t tmpfs -o size=1m tmpfs "$DISK" || exit 90
        echo previous > "$DISK/t.bin"
        "$BIN" record -o "$DISK/t.bin" -- "$NODE" "$FIXTURE" 60000 2> "$OUT/record.err"
        echo $? > "$OUT/status"
        cat "$DISK/t.bin" > "$OUT/kept"
        "$BIN" info --format json "$DISK/t.bin.partial" > "$OUT/info.json" 2> "$OUT/info.err"
        stat -c %a "$DISK/t.bin.partial" > "$OUT/mode"
        exit 0
    "#;
    let st = Command::new("unshare")
        .args(["--mount", "sh", "-c", script])
        .env("DISK", &disk)
        .env("BIN", asynctrace())
        .env("NODE", which_node())
        .env("FIXTURE", fixture("many-events.js"))
        .env("OUT", &s.0)
        .status()
        .unwrap();
    assert!(st.success(), "the tmpfs shell ran");
    let read = |name: &str| std::fs::read_to_string(s.path(name)).unwrap();
    let err = read("record.err");
    assert_eq!(read("status").trim(), "0", "the app's status: {err}");
    assert!(err.contains("No space left on device"), "says why: {err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("error")).count(),
        1,
        "one line: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(read("kept"), "previous\n", "the trace already there is kept");
    let v: serde_json::Value = serde_json::from_str(&read("info.json")).expect("the partial trace is readable");
    assert_eq!(v["truncated"], true);
    assert!(v["events"]["init"].as_u64().unwrap() > 0, "{v}");
    assert!(read("info.err").contains("truncated"));
    assert_eq!(read("mode").trim(), "600");
}

#[test]
fn r14_record_to_dev_full_says_so_before_the_app_runs() {
    let s = Scratch::new("dev-full");
    let marker = s.path("ran");
    let out = Command::new(asynctrace())
        .args(["record", "-o", "/dev/full", "--"])
        .arg(node())
        .arg("-e")
        .arg("require('fs').writeFileSync(process.argv[1], '')")
        .arg(&marker)
        .output()
        .unwrap();
    assert_clean_failure(&out, "No space left on device");
    assert!(!marker.exists(), "the app did not run");
}

// r15: a trace is written under a temporary name and renamed when complete.

#[test]
fn r15_a_failed_start_keeps_the_existing_trace() {
    let s = Scratch::new("keep");
    let keep = s.path("keep.bin");
    std::fs::write(&keep, b"the previous trace").unwrap();
    let out = Command::new(asynctrace())
        .arg("record")
        .arg("-o")
        .arg(&keep)
        .args(["--", "definitely-not-a-command-asynctrace"])
        .output()
        .unwrap();
    assert_clean_failure(&out, "command not found");
    assert_eq!(std::fs::read(&keep).unwrap(), b"the previous trace");
    assert!(!s.path("keep.bin.partial").exists(), "nothing left behind");
}

#[test]
fn r15_a_killed_recorder_leaves_a_partial_trace_that_every_command_reads() {
    let s = Scratch::new("killed-recorder");
    let keep = s.path("keep.bin");
    std::fs::write(&keep, b"the previous trace").unwrap();
    let partial = s.path("keep.bin.partial");
    let mut recorder = record_node(&keep)
        .arg(fixture("spin.js"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    support::wait_ready(&mut recorder);
    // The writer flushes every 100 ms: wait until events are on disk (a block past the header).
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::metadata(&partial).map_or(0, |m| m.len()) < 4096 {
        assert!(Instant::now() < deadline, "the partial trace never grew");
        std::thread::sleep(Duration::from_millis(20));
    }
    let app = first_child(recorder.id());
    recorder.kill().unwrap();
    recorder.wait().unwrap();
    if let Some(app) = app {
        let _ = Command::new("kill").arg("-KILL").arg(app.to_string()).status();
    }
    assert_eq!(
        std::fs::read(&keep).unwrap(),
        b"the previous trace",
        "the old trace is intact"
    );
    let mode = std::fs::metadata(&partial).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the partial trace is private too");
    for args in REPORTS {
        let out = report(args, &partial).output().unwrap();
        no_panic(&out);
        assert!(
            out.status.success(),
            "{args:?} reads the partial trace: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("truncated"), "{args:?} warns: {}", stderr(&out));
    }
    let v = info(&partial);
    assert!(v["events"]["init"].as_u64().unwrap() > 0, "{v}");
}

fn first_child(pid: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

// r16: the trace holds argv and URLs: only its owner may read it.

#[test]
fn r16_the_trace_file_is_private_even_over_a_readable_one() {
    let s = Scratch::new("mode");
    let trace = s.path("t.bin");
    std::fs::write(&trace, b"old").unwrap();
    std::fs::set_permissions(&trace, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A partial file left readable by an older run must not lend its mode either.
    let stale = s.path("t.bin.partial");
    std::fs::write(&stale, b"stale").unwrap();
    std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = record(&trace, &[], "exit-code.js", &["0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mode = std::fs::metadata(&trace).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!stale.exists(), "the stale partial file is gone");
    assert_eq!(info(&trace)["truncated"], false);
}

// r17: small things every user sees.

#[test]
fn r17_a_missing_file_is_named_once_by_every_command() {
    let s = Scratch::new("missing");
    let missing = s.path("nope.bin");
    let mut commands: Vec<&[&str]> = REPORTS.to_vec();
    commands.push(&["export", "--format", "chrome", "-o", "out.json"]);
    for args in commands {
        let out = report(args, &missing).current_dir(&s.0).output().unwrap();
        assert_clean_failure(&out, "nope.bin");
        let err = stderr(&out);
        let reason = "No such file or directory";
        assert_eq!(err.matches(reason).count(), 1, "{args:?} says it once: {err}");
        assert_eq!(err.matches("nope.bin").count(), 1, "{args:?} names it once: {err}");
    }
}

#[test]
fn r17_info_shows_node_options_such_as_an_eval_script() {
    let s = Scratch::new("execargv");
    let trace = s.path("t.bin");
    let script = "setTimeout(() => {}, 1) // watchdog";
    let out = record_node(&trace)
        .args(["--no-warnings", "-e", script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v = info(&trace);
    assert_eq!(
        v["processes"][0]["execArgv"],
        serde_json::json!(["--no-warnings", "-e", script])
    );
    let text = Command::new(asynctrace()).arg("info").arg(&trace).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("pid "))
        .expect("a process line");
    assert!(
        line.ends_with(&format!(" --no-warnings -e '{script}'")),
        "the process line shows the script: {line}"
    );
}

#[test]
fn r17_record_of_a_command_that_starts_no_node_says_so_and_keeps_its_status() {
    let s = Scratch::new("no-node");
    for (args, code) in [(&["true"][..], 0), (&["sh", "-c", "exit 3"][..], 3)] {
        let trace = s.path("t.bin");
        let out = Command::new(asynctrace())
            .arg("record")
            .arg("-o")
            .arg(&trace)
            .arg("--")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        let warning: Vec<&str> = err.lines().filter(|l| l.contains("no Node.js process")).collect();
        assert_eq!(warning.len(), 1, "{args:?}: {err}");
        assert!(warning[0].contains("NODE_OPTIONS"), "says what to check: {err}");
        assert_eq!(info(&trace)["processes"], serde_json::json!([]));
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `node()` as an absolute path, for a shell with another PATH.
fn which_node() -> PathBuf {
    let n = node();
    if n.components().count() > 1 {
        return n;
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {}", n.display()))
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn record_refuses_to_mix_its_trace_with_the_apps_stdout() {
    let s = Scratch::new("record-dash");
    let out = Command::new(asynctrace())
        .args(["record", "-o", "-", "--"])
        .arg(node())
        .args(["-e", "1"])
        .current_dir(&s.0)
        .output()
        .unwrap();
    assert_clean_failure(&out, "stdout");
    assert!(!s.path("-").exists() && !s.path("-.partial").exists());
}

#[test]
fn r13_an_empty_pipe_whose_writer_is_gone_is_refused() {
    // `true | asynctrace info -`: an anonymous pipe never gets a new writer.
    let mut writer = Command::new("true").stdout(Stdio::piped()).spawn().unwrap();
    let read_end = writer.stdout.take().unwrap();
    writer.wait().unwrap();
    let child = report(&["info"], Path::new("-"))
        .stdin(Stdio::from(read_end))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_or_fail(child, "info on an empty pipe");
    assert_clean_failure(&out, "stdin is a pipe with nothing in it");
}
